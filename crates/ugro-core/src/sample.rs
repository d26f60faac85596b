//! Resource samples (GPU, CPU, memory per node and instant) as the sampler stores them and the
//! nightly summary reads them, and the pure parsing of the sampler's probe output.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::parse::{self, GpuReading, NVIDIA_SMI_QUERY, ParseError};

/// One GPU at one sampling instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub node: String,
    pub at: DateTime<Utc>,
    /// The GPU's index on its node.
    pub gpu: u32,
    /// 0–100.
    pub utilization_pct: f64,
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    pub temperature_c: Option<f64>,
    pub power_w: Option<f64>,
    /// Compute processes on the GPU, when known.
    pub processes: Option<u32>,
}

/// A node's CPU and memory at one sampling instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSample {
    pub node: String,
    pub at: DateTime<Utc>,
    /// 0–100 over all cores since the previous sample; None for a node's first sample (the
    /// figure needs two readings of /proc/stat).
    pub cpu_pct: Option<f64>,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub cores: u32,
    pub memory_available_bytes: u64,
    pub memory_total_bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// nvidia-smi compute apps

/// The `--query-compute-apps` fields [`compute_apps`] expects, in this order. Run as
/// `nvidia-smi --query-compute-apps=<this> --format=csv,noheader,nounits`.
pub const COMPUTE_APPS_QUERY: &str = "gpu_uuid,pid,used_memory";

/// One compute process on one GPU, as `nvidia-smi --query-compute-apps` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeApp {
    pub gpu_uuid: String,
    pub pid: u32,
    /// None when nvidia-smi cannot tell (`[N/A]`, e.g. inside containers or on MIG devices).
    pub used_memory_mib: Option<u64>,
}

/// Parses `nvidia-smi --query-compute-apps=`[`COMPUTE_APPS_QUERY`]`
/// --format=csv,noheader,nounits`, e.g. `GPU-4f1c2a3b-…, 4242, 10240`.
///
/// Blank lines, `No running processes found` and any other line that is not three fields with a
/// GPU uuid and a pid are skipped (the output only refines the GPU readings, so a line that
/// cannot be read must not spoil the rest). A memory figure that is a placeholder (`[N/A]`) or
/// not a number becomes `None`.
pub fn compute_apps(stdout: &str) -> Vec<ComputeApp> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            let (uuid, pid, mem) = (fields.next()?, fields.next()?, fields.next()?);
            if fields.next().is_some()
                || uuid.is_empty()
                || uuid.contains(char::is_whitespace)
                || uuid.starts_with('[')
            {
                return None;
            }
            Some(ComputeApp {
                gpu_uuid: uuid.to_owned(),
                pid: pid.parse().ok()?,
                used_memory_mib: mem.parse().ok(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// /proc/stat

/// Cumulative CPU time of all cores from the aggregate `cpu` line of /proc/stat, in clock ticks.
/// Two readings give the CPU utilisation between them ([`cpu_pct`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTimes {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is already
    /// inside user and nice).
    pub total: u64,
    /// idle + iowait: time no task ran.
    pub idle: u64,
}

impl CpuTimes {
    /// Parses the first `cpu ` line of /proc/stat (the whole file or just that line), e.g.
    /// `cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0`. Kernels before 2.6
    /// print only the first four figures; missing ones count as 0.
    pub fn parse(stat: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "/proc/stat";
        let Some((i, line)) = stat
            .lines()
            .enumerate()
            .find(|(_, l)| l.split_whitespace().next() == Some("cpu"))
        else {
            return Err(ParseError::Missing {
                what: WHAT,
                field: "the aggregate `cpu` line",
            });
        };
        let bad = |reason: &str| ParseError::Line {
            what: WHAT,
            line_no: i + 1,
            line: line.trim().to_owned(),
            reason: reason.to_owned(),
        };
        let figures: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad("expected clock-tick counts after `cpu`"))?;
        if figures.len() < 4 {
            return Err(bad("expected at least user, nice, system and idle"));
        }
        let at = |k: usize| figures.get(k).copied().unwrap_or(0);
        let total = (0..8).map(at).fold(0u64, u64::saturating_add);
        Ok(Self {
            total,
            idle: at(3).saturating_add(at(4)),
        })
    }
}

/// CPU utilisation (0–100, all cores) between two readings of /proc/stat. None when no time
/// passed or the counters went backwards (the node rebooted in between).
pub fn cpu_pct(prev: CpuTimes, cur: CpuTimes) -> Option<f64> {
    let total = cur.total.checked_sub(prev.total)?;
    let idle = cur.idle.checked_sub(prev.idle)?;
    if total == 0 || idle > total {
        return None;
    }
    Some(((total - idle) as f64 * 100.0 / total as f64).clamp(0.0, 100.0))
}

// ---------------------------------------------------------------------------------------------
// building samples

/// One sample per GPU from nvidia-smi (or NVML) readings. A GPU whose utilisation or memory
/// is unknown (`[N/A]`) gets no sample: a made-up 0 % would read as an idle GPU. `apps`: the
/// compute processes when they could be listed (each GPU's count of distinct pids, 0 when
/// none), None when not (the samples' `processes` stay unknown).
pub fn gpu_samples(
    node: &str,
    at: DateTime<Utc>,
    gpus: &[GpuReading],
    apps: Option<&[ComputeApp]>,
) -> Vec<GpuSample> {
    let per_uuid: Option<BTreeMap<&str, HashSet<u32>>> = apps.map(|apps| {
        let mut m: BTreeMap<&str, HashSet<u32>> = BTreeMap::new();
        for a in apps {
            m.entry(a.gpu_uuid.as_str()).or_default().insert(a.pid);
        }
        m
    });
    gpus.iter()
        .filter_map(|g| {
            let mib = |v: Option<f64>| v.filter(|m| *m >= 0.0).map(|m| m.round() as u64);
            Some(GpuSample {
                node: node.to_owned(),
                at,
                gpu: g.index,
                utilization_pct: g.utilization_pct?.clamp(0.0, 100.0),
                memory_used_mib: mib(g.memory_used_mib)?,
                memory_total_mib: mib(g.memory_total_mib)?,
                temperature_c: g.temperature_c,
                power_w: g.power_w,
                processes: match &per_uuid {
                    Some(m) if !g.uuid.is_empty() => {
                        Some(m.get(g.uuid.as_str()).map_or(0, |p| p.len() as u32))
                    }
                    _ => None,
                },
            })
        })
        .collect()
}

/// A node's sample from the text of /proc/loadavg, /proc/meminfo and /proc/stat (its `cpu`
/// line suffices) and its core count. `prev`: the node's previous /proc/stat reading, for the
/// CPU figure. Returns the sample and this reading (the next call's `prev`).
pub fn node_sample(
    node: &str,
    at: DateTime<Utc>,
    loadavg: &str,
    cores: u32,
    meminfo: &str,
    stat: &str,
    prev: Option<CpuTimes>,
) -> Result<(NodeSample, CpuTimes), ParseError> {
    let (load1, load5, load15) = parse::loadavg(loadavg)?;
    let (memory_total_bytes, memory_available_bytes) = parse::meminfo(meminfo)?;
    let cpu = CpuTimes::parse(stat)?;
    Ok((
        NodeSample {
            node: node.to_owned(),
            at,
            cpu_pct: prev.and_then(|p| cpu_pct(p, cpu)),
            load1,
            load5,
            load15,
            cores,
            memory_available_bytes,
            memory_total_bytes,
        },
        cpu,
    ))
}

// ---------------------------------------------------------------------------------------------
// the remote sample command

/// Marker between the parts of [`sample_command`]'s output (see [`parse::sections`]).
pub const SAMPLE_MARKER: &str = "@@ugro:";

/// The shell batch that samples a remote node in one exec: /proc/loadavg, `nproc`,
/// /proc/meminfo, the `cpu` line of /proc/stat, then `nvidia-smi --query-gpu` and, only when
/// that worked, `--query-compute-apps`. Each part is behind its own [`SAMPLE_MARKER`] section
/// with its own exit status, so a missing (127), failing or hung (124) nvidia-smi spoils
/// nothing else. Each nvidia-smi runs under `timeout -k 1 T` with T chosen so that both
/// together end a second before `deadline` (the exec's own deadline): a stuck driver costs
/// the GPU figures of one sample, never the CPU ones.
pub fn sample_command(deadline: Duration) -> String {
    let t = deadline.as_secs().saturating_sub(4) / 2;
    let t = t.max(1);
    format!(
        "echo {m}loadavg; cat /proc/loadavg; echo {m}loadavg:rc=$?\n\
         echo {m}nproc; nproc; echo {m}nproc:rc=$?\n\
         echo {m}meminfo; cat /proc/meminfo; echo {m}meminfo:rc=$?\n\
         echo {m}stat; head -n 1 /proc/stat; echo {m}stat:rc=$?\n\
         echo {m}gpus; timeout -k 1 {t} nvidia-smi --query-gpu={NVIDIA_SMI_QUERY} \
         --format=csv,noheader,nounits; rc=$?; echo; echo {m}gpus:rc=$rc\n\
         if [ $rc -eq 0 ]; then echo {m}apps; timeout -k 1 {t} nvidia-smi \
         --query-compute-apps={COMPUTE_APPS_QUERY} --format=csv,noheader,nounits; rc=$?; echo; \
         echo {m}apps:rc=$rc; fi\n",
        m = SAMPLE_MARKER
    )
}

/// Parses the output of [`sample_command`] into the node's GPU samples, its node sample and
/// its /proc/stat reading (pass it as `prev_cpu` next time).
///
/// The /proc parts must all be there and parse. The GPU part is optional: no nvidia-smi, a
/// failing or hung one, or no GPUs give no GPU samples. When nvidia-smi reported a fault for
/// some GPUs (a lost GPU) the others still get samples; output that nvidia-smi reported as a
/// success but that does not parse is an error. Process counts come from the compute-apps
/// part, matched by GPU uuid, when that part succeeded.
pub fn parse_sample(
    output: &str,
    node: &str,
    at: DateTime<Utc>,
    prev_cpu: Option<CpuTimes>,
) -> Result<(Vec<GpuSample>, NodeSample, CpuTimes), ParseError> {
    let s = parse::sections(output, SAMPLE_MARKER);
    let part = |name: &'static str| -> Result<&str, ParseError> {
        match (s.get(name), parse::section_rc(&s, name)) {
            (Some(text), Some(0)) => Ok(text.as_str()),
            (Some(_), Some(rc)) => Err(ParseError::Line {
                what: name,
                line_no: 1,
                line: s.get(name).map(|t| t.trim().to_owned()).unwrap_or_default(),
                reason: format!("exited with {rc}"),
            }),
            _ => Err(ParseError::Missing {
                what: "sample output",
                field: name,
            }),
        }
    };
    let nproc = part("nproc")?.trim();
    let cores = nproc.parse::<u32>().map_err(|_| ParseError::Line {
        what: "nproc",
        line_no: 1,
        line: nproc.to_owned(),
        reason: "expected a core count".to_owned(),
    })?;
    let (node_sample, cpu) = node_sample(
        node,
        at,
        part("loadavg")?,
        cores,
        part("meminfo")?,
        part("stat")?,
        prev_cpu,
    )?;
    let gpus = match (s.get("gpus"), parse::section_rc(&s, "gpus")) {
        (Some(text), rc) => match parse::nvidia_smi_gpus(text) {
            Ok(smi) => smi.gpus,
            Err(e) if rc == Some(0) => return Err(e),
            Err(_) => Vec::new(),
        },
        (None, _) => Vec::new(),
    };
    let apps = match (s.get("apps"), parse::section_rc(&s, "apps")) {
        (Some(text), Some(0)) => Some(compute_apps(text)),
        _ => None,
    };
    Ok((
        gpu_samples(node, at, &gpus, apps.as_deref()),
        node_sample,
        cpu,
    ))
}

// ---------------------------------------------------------------------------------------------
// when to sample, and outages

/// The first multiple of `interval` since the epoch strictly after `after`: sampling ticks are
/// aligned to the interval (every 5 minutes at :00, :05, …), so all nodes share instants.
pub fn next_tick(after: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let step = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let ms = after.timestamp_millis();
    let next = ms.div_euclid(step).saturating_add(1).saturating_mul(step);
    // No representable tick after `after`: the end of time, never `after` itself (a caller
    // waiting for it would spin).
    DateTime::from_timestamp_millis(next).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When the sample after the one at `last` is due, at `now`. Normally the next tick after
/// `last` (possibly already past, when a slow round ended just after it: it then runs at once
/// rather than being skipped). After a long stall (suspend, clock jump: more than half an
/// interval behind) or with no previous sample, the next tick after `now`.
pub fn next_due(
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    interval: Duration,
) -> DateTime<Utc> {
    let fresh = next_tick(now, interval);
    let Some(last) = last else {
        return fresh;
    };
    let due = next_tick(last, interval);
    let half = chrono::Duration::from_std(interval / 2).unwrap_or(chrono::Duration::MAX);
    // Checked: an interval too long to add means "not stalled".
    let stalled = due.checked_add_signed(half).is_some_and(|t| t < now);
    if stalled || due > fresh { fresh } else { due }
}

/// Whether a node can be sampled, kept across samples so that an outage is reported once when
/// it begins and once when it ends, never once per failed sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outage {
    /// The first failed sample of the current outage.
    pub since: Option<DateTime<Utc>>,
}

impl Outage {
    /// A sample failed at `at`. True when this begins an outage (report it).
    pub fn failed(&mut self, at: DateTime<Utc>) -> bool {
        if self.since.is_some() {
            return false;
        }
        self.since = Some(at);
        true
    }

    /// A sample succeeded at `at`. When this ends an outage, returns when it began and how long
    /// it lasted (report it).
    pub fn succeeded(&mut self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, chrono::Duration)> {
        let since = self.since.take()?;
        Some((since, (at - since).max(chrono::Duration::zero())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod compute_apps_tests {
    use super::*;

    #[test]
    fn compute_apps_parse_real_output_and_skip_the_rest() {
        let out = "\
GPU-4f1c2a3b-5d6e-7f80-9a1b-2c3d4e5f6a7b, 4242, 10240
GPU-4f1c2a3b-5d6e-7f80-9a1b-2c3d4e5f6a7b, 4243, [N/A]

GPU-0a1b2c3d-0000-1111-2222-333344445555, 77, 512
No running processes found
garbage, line
GPU-x, notapid, 12
GPU-y, 12, 13, 14
[N/A], 12, 13
";
        let apps = compute_apps(out);
        assert_eq!(
            apps,
            vec![
                ComputeApp {
                    gpu_uuid: "GPU-4f1c2a3b-5d6e-7f80-9a1b-2c3d4e5f6a7b".into(),
                    pid: 4242,
                    used_memory_mib: Some(10240),
                },
                ComputeApp {
                    gpu_uuid: "GPU-4f1c2a3b-5d6e-7f80-9a1b-2c3d4e5f6a7b".into(),
                    pid: 4243,
                    used_memory_mib: None,
                },
                ComputeApp {
                    gpu_uuid: "GPU-0a1b2c3d-0000-1111-2222-333344445555".into(),
                    pid: 77,
                    used_memory_mib: Some(512),
                },
            ]
        );
        assert!(compute_apps("").is_empty());
        assert!(compute_apps("\n\n").is_empty());
        assert!(compute_apps("No running processes found\n").is_empty());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 5, 0).unwrap()
    }

    const LOADAVG: &str = "12.04 9.80 7.15 17/2048 123456\n";
    const MEMINFO: &str = "\
MemTotal:       1056768000 kB
MemFree:         12034040 kB
MemAvailable:   812345600 kB
Buffers:          912344 kB
Cached:         380124560 kB
";
    const STAT_1: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0\n\
                          cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n";
    // +2000 user, +500 system, +2400 idle, +100 iowait since STAT_1: 5000 ticks, 2500 idle.
    const STAT_2: &str = "cpu  10134153 290696 3085219 46830883 16783 0 25195 0 175628 0\n";

    fn uuid(i: u32) -> String {
        format!("GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d6{i}")
    }

    /// nvidia-smi on a DGX: 8 GPUs, two of which run jobs, one reporting no power figure.
    fn smi_8() -> String {
        (0..8)
            .map(|i| {
                let (util, mem) = match i {
                    1 => (97, 71234),
                    2 => (98, 40960),
                    _ => (0, 4),
                };
                let power = if i == 5 {
                    "[N/A]".to_owned()
                } else {
                    format!("{:.2}", 61.0 + f64::from(i) * 30.5)
                };
                format!(
                    "{i}, {}, NVIDIA A100-SXM4-80GB, {}, {util}, {mem}, 81920, {power}, 0\n",
                    uuid(i),
                    30 + i
                )
            })
            .collect()
    }

    fn apps_8() -> String {
        format!(
            "{u1}, 4242, 71230\n{u1}, 4243, [N/A]\n{u2}, 77, 40956\n{u1}, 4242, 10\n",
            u1 = uuid(1),
            u2 = uuid(2)
        )
    }

    fn output(gpus: Option<(&str, i32)>, apps: Option<(&str, i32)>) -> String {
        let mut o = format!(
            "Last login: Sun Nov 22 09:00:00 2026\n\
             @@ugro:loadavg\n{LOADAVG}@@ugro:loadavg:rc=0\n\
             @@ugro:nproc\n128\n@@ugro:nproc:rc=0\n\
             @@ugro:meminfo\n{MEMINFO}@@ugro:meminfo:rc=0\n\
             @@ugro:stat\n{}\n@@ugro:stat:rc=0\n",
            STAT_2.lines().next().unwrap()
        );
        if let Some((text, rc)) = gpus {
            o.push_str(&format!("@@ugro:gpus\n{text}\n@@ugro:gpus:rc={rc}\n"));
        }
        if let Some((text, rc)) = apps {
            o.push_str(&format!("@@ugro:apps\n{text}\n@@ugro:apps:rc={rc}\n"));
        }
        o
    }

    #[test]
    fn proc_stat_parses_and_cpu_pct_follows_the_deltas() {
        let a = CpuTimes::parse(STAT_1).unwrap();
        assert_eq!(
            a,
            CpuTimes {
                total: 10132153 + 290696 + 3084719 + 46828483 + 16683 + 25195,
                idle: 46828483 + 16683,
            }
        );
        let b = CpuTimes::parse(STAT_2).unwrap();
        assert_eq!(cpu_pct(a, b), Some(50.0));
        // No time passed, or counters reset by a reboot: no figure.
        assert_eq!(cpu_pct(b, b), None);
        assert_eq!(cpu_pct(b, a), None);
        // A 2.4 kernel's four figures.
        let old = CpuTimes::parse("cpu 10 20 30 40\n").unwrap();
        assert_eq!(
            old,
            CpuTimes {
                total: 100,
                idle: 40
            }
        );

        let err = CpuTimes::parse("cpu 1 2 x 4\n").unwrap_err();
        assert!(err.to_string().contains("\"cpu 1 2 x 4\""), "{err}");
        assert!(CpuTimes::parse("cpu 1 2 3\n").is_err());
        assert!(matches!(
            CpuTimes::parse("cpu0 1 2 3 4\nintr 5\n"),
            Err(ParseError::Missing { .. })
        ));
    }

    #[test]
    fn eight_gpus_with_processes_and_na_power() {
        let prev = CpuTimes::parse(STAT_1).unwrap();
        let out = output(Some((&smi_8(), 0)), Some((&apps_8(), 0)));
        let (gpus, node, cpu) = parse_sample(&out, "gpu3", at(), Some(prev)).unwrap();

        assert_eq!(cpu, CpuTimes::parse(STAT_2).unwrap());
        assert_eq!(
            node,
            NodeSample {
                node: "gpu3".into(),
                at: at(),
                cpu_pct: Some(50.0),
                load1: 12.04,
                load5: 9.8,
                load15: 7.15,
                cores: 128,
                memory_available_bytes: 812_345_600 * 1024,
                memory_total_bytes: 1_056_768_000 * 1024,
            }
        );
        assert_eq!(gpus.len(), 8);
        assert_eq!(
            gpus[1],
            GpuSample {
                node: "gpu3".into(),
                at: at(),
                gpu: 1,
                utilization_pct: 97.0,
                memory_used_mib: 71234,
                memory_total_mib: 81920,
                temperature_c: Some(31.0),
                power_w: Some(91.5),
                // pid 4242 listed twice (two contexts) counts once.
                processes: Some(2),
            }
        );
        assert_eq!(gpus[2].processes, Some(1));
        assert_eq!(gpus[0].processes, Some(0), "listed apps, none on GPU 0");
        assert_eq!(gpus[5].power_w, None);
        assert_eq!(gpus[5].utilization_pct, 0.0);
        assert_eq!(
            gpus.iter().map(|g| g.gpu).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn no_gpu_node_and_first_sample_without_cpu_figure() {
        // nvidia-smi not installed: `timeout` exits 127; the apps part never ran.
        let out = output(Some(("", 127)), None);
        let (gpus, node, _) = parse_sample(&out, "cpu1", at(), None).unwrap();
        assert!(gpus.is_empty());
        assert_eq!(
            node.cpu_pct, None,
            "one reading of /proc/stat gives no figure"
        );
        assert_eq!(node.cores, 128);
        // The same without any GPU section at all, and with "No devices were found".
        assert!(
            parse_sample(&output(None, None), "cpu1", at(), None)
                .unwrap()
                .0
                .is_empty()
        );
        let none = output(Some(("No devices were found", 6)), None);
        assert!(
            parse_sample(&none, "cpu1", at(), None)
                .unwrap()
                .0
                .is_empty()
        );
    }

    #[test]
    fn faulty_or_hung_nvidia_smi_spoils_only_the_gpu_part() {
        // One GPU lost (exit 15): the others are sampled; apps did not run, counts unknown.
        let mut smi = smi_8();
        smi = smi.replacen(
            &smi.lines().nth(3).unwrap().to_owned(),
            "Unable to determine the device handle for GPU0000:4E:00.0: GPU is lost.  Reboot the system to recover this GPU",
            1,
        );
        let (gpus, node, _) =
            parse_sample(&output(Some((&smi, 15)), None), "gpu3", at(), None).unwrap();
        assert_eq!(gpus.len(), 7);
        assert!(gpus.iter().all(|g| g.gpu != 3 && g.processes.is_none()));
        assert_eq!(node.cores, 128);

        // Hung (killed by timeout, partial line) and a failed apps query.
        let partial = "0, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d60, NVIDIA A1";
        let (gpus, _, _) =
            parse_sample(&output(Some((partial, 124)), None), "gpu3", at(), None).unwrap();
        assert!(gpus.is_empty());
        let (gpus, _, _) = parse_sample(
            &output(Some((&smi_8(), 0)), Some(("", 124))),
            "gpu3",
            at(),
            None,
        )
        .unwrap();
        assert_eq!(gpus.len(), 8);
        assert!(gpus.iter().all(|g| g.processes.is_none()));

        // A driver that cannot report utilisation: no made-up idle sample for that GPU.
        let na = smi_8().replacen(", 0, 4, 81920,", ", [N/A], 4, 81920,", 1);
        let (gpus, _, _) = parse_sample(&output(Some((&na, 0)), None), "gpu3", at(), None).unwrap();
        assert_eq!(gpus.len(), 7);
        assert_eq!(gpus[0].gpu, 1);

        // Output nvidia-smi called a success but that is not its CSV: an error, quoted.
        let err = parse_sample(
            &output(Some(("0, GPU-x, A100, hot", 0)), None),
            "gpu3",
            at(),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"0, GPU-x, A100, hot\""), "{err}");
    }

    #[test]
    fn missing_or_failed_proc_parts_are_errors() {
        let full = output(None, None);
        let no_stat = full.replace("@@ugro:stat:rc=0", "@@ugro:stat:rc=1");
        let err = parse_sample(&no_stat, "n", at(), None).unwrap_err();
        assert!(err.to_string().contains("stat"), "{err}");
        assert!(err.to_string().contains("exited with 1"), "{err}");

        let cut = &full[..full.find("@@ugro:meminfo").unwrap()];
        let err = parse_sample(cut, "n", at(), None).unwrap_err();
        assert_eq!(
            err,
            ParseError::Missing {
                what: "sample output",
                field: "meminfo"
            }
        );
        let bad_nproc = full.replace("\n128\n", "\nmany\n");
        assert!(
            parse_sample(&bad_nproc, "n", at(), None)
                .unwrap_err()
                .to_string()
                .contains("\"many\"")
        );
        assert!(parse_sample("", "n", at(), None).is_err());
    }

    #[test]
    fn sample_command_bounds_nvidia_smi_within_the_deadline() {
        let c = sample_command(Duration::from_secs(30));
        assert!(
            c.contains(&format!(
                "timeout -k 1 13 nvidia-smi --query-gpu={NVIDIA_SMI_QUERY} --format=csv,noheader,nounits"
            )),
            "{c}"
        );
        assert!(
            c.contains(&format!(
                "timeout -k 1 13 nvidia-smi --query-compute-apps={COMPUTE_APPS_QUERY} --format=csv,noheader,nounits"
            )),
            "{c}"
        );
        for part in ["loadavg", "nproc", "meminfo", "stat", "gpus", "apps"] {
            assert!(c.contains(&format!("echo @@ugro:{part};")), "{part}: {c}");
            assert!(
                c.contains(&format!("echo @@ugro:{part}:rc=")),
                "{part}: {c}"
            );
        }
        // 10 s (the smallest interval): two nvidia-smi runs of ≤ 3 + 1 s each fit.
        assert!(sample_command(Duration::from_secs(10)).contains("timeout -k 1 3 nvidia-smi"));
        assert!(sample_command(Duration::from_secs(1)).contains("timeout -k 1 1 nvidia-smi"));
    }

    #[test]
    fn ticks_align_to_the_interval_and_a_late_round_is_not_skipped() {
        let t = |h, m, s| Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).unwrap();
        let five = Duration::from_secs(300);
        assert_eq!(next_tick(t(10, 3, 17), five), t(10, 5, 0));
        assert_eq!(next_tick(t(10, 5, 0), five), t(10, 10, 0), "strictly after");
        assert_eq!(
            next_tick(t(10, 0, 3), Duration::from_secs(10)),
            t(10, 0, 10)
        );
        // First sample: the next tick.
        assert_eq!(next_due(None, t(10, 3, 17), five), t(10, 5, 0));
        // On time: the tick after the last one.
        assert_eq!(next_due(Some(t(10, 5, 0)), t(10, 5, 2), five), t(10, 10, 0));
        // The round of 10:05 ended at 10:10:01: 10:10 is due at once, not skipped.
        assert_eq!(
            next_due(Some(t(10, 5, 0)), t(10, 10, 1), five),
            t(10, 10, 0)
        );
        // Suspended for an hour: back on the grid after now, no burst of catch-up samples.
        assert_eq!(next_due(Some(t(10, 5, 0)), t(11, 7, 0), five), t(11, 10, 0));
        // The clock went back: never wait for a tick beyond the next one from now.
        assert_eq!(next_due(Some(t(10, 5, 0)), t(9, 0, 1), five), t(9, 5, 0));
        // A new interval after a reload: the grid of the new interval.
        assert_eq!(
            next_due(Some(t(10, 5, 0)), t(10, 5, 1), Duration::from_secs(60)),
            t(10, 6, 0)
        );
    }

    #[test]
    fn an_interval_too_long_for_a_date_neither_panics_nor_spins() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        // "500000000y" applied by a reload used to panic here (`due + half` overflowed).
        let huge = Duration::from_secs(500_000_000 * 31_557_600);
        assert!(
            next_tick(now, huge) > now,
            "strictly after, even when unrepresentable"
        );
        let due = next_due(Some(now), now, huge);
        assert!(
            due > now,
            "a due time in the past would make the sampler spin: {due}"
        );
        assert!(next_due(None, now, Duration::MAX) > now);
    }

    #[test]
    fn an_outage_is_reported_once_when_it_begins_and_once_when_it_ends() {
        let t = |m| Utc.with_ymd_and_hms(2026, 11, 22, 10, m, 0).unwrap();
        let mut o = Outage::default();
        assert_eq!(o.succeeded(t(0)), None, "up and staying up: nothing to say");
        assert!(o.failed(t(5)));
        assert!(!o.failed(t(10)));
        assert!(!o.failed(t(15)));
        assert_eq!(
            o.succeeded(t(20)),
            Some((t(5), chrono::Duration::minutes(15)))
        );
        assert_eq!(o.succeeded(t(25)), None);
        assert!(o.failed(t(30)), "a new outage is reported again");
    }
}
