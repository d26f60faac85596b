//! Parsers of probe output (nvidia-smi CSV, df, /proc/loadavg, /proc/meminfo, batched remote
//! command sections) and the gpu, disk, load and memory checks built from what they parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::health::{CheckName, CheckResult, LOAD_BUSY_PER_CORE, fmt_num};

/// Default fraction of memory that must stay available (the memory check's threshold).
pub const DEFAULT_MIN_AVAILABLE_FRACTION: f64 = 0.05;

/// Probe output that could not be understood. Quotes the offending line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what}: {reason} on line {line_no}: {line:?}")]
    Line {
        /// Which output: "nvidia-smi", "df", "loadavg", "meminfo".
        what: &'static str,
        /// 1-based.
        line_no: usize,
        line: String,
        reason: String,
    },
    #[error("{what}: no {field} found")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
}

fn line_error(
    what: &'static str,
    line_no: usize,
    line: &str,
    reason: impl Into<String>,
) -> ParseError {
    ParseError::Line {
        what,
        line_no,
        line: line.to_owned(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// nvidia-smi

/// The `--query-gpu` fields [`nvidia_smi_gpus`] expects, in this order. Run as
/// `nvidia-smi --query-gpu=<this> --format=csv,noheader,nounits`.
pub const NVIDIA_SMI_QUERY: &str = "index,uuid,name,temperature.gpu,utilization.gpu,memory.used,memory.total,power.draw,ecc.errors.uncorrected.volatile.total";

const NVIDIA_SMI_FIELDS: usize = 9;

/// One GPU as nvidia-smi reported it. Fields the GPU does not support are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuReading {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub temperature_c: Option<f64>,
    pub utilization_pct: Option<f64>,
    pub memory_used_mib: Option<f64>,
    pub memory_total_mib: Option<f64>,
    pub power_w: Option<f64>,
    pub ecc_uncorrected: Option<u64>,
}

/// What one nvidia-smi run said: the GPUs it could read and the faults it reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NvidiaSmi {
    pub gpus: Vec<GpuReading>,
    /// Lines reporting a fault (lost GPU, GPU requiring reset, driver unreachable), verbatim.
    pub problems: Vec<String>,
}

/// Markers of a line that reports a fault rather than a reading. Such a line goes to
/// [`NvidiaSmi::problems`] and never counts as a GPU.
const NVIDIA_SMI_FAULTS: &[&str] = &[
    "gpu is lost",
    "gpu requires reset",
    "[unknown error]",
    "unable to determine the device handle",
    "nvidia-smi has failed",
    "failed to initialize nvml",
    "driver/library version mismatch",
    "nvml library version",
];

/// Parses `nvidia-smi --query-gpu=`[`NVIDIA_SMI_QUERY`]` --format=csv,noheader,nounits`.
///
/// `[N/A]`, `[Not Supported]`, `N/A` and other bracketed placeholders become `None`. Lines
/// reporting a fault (e.g. `Unable to determine the device handle for GPU0000:3B:00.0: GPU is
/// lost.  Reboot the system to recover this GPU`, a field reading `[GPU requires reset]` or
/// `[Unknown Error]`, `NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA
/// driver...`) go to `problems`, trimmed. `No devices were found` means no GPUs. Any other line
/// without the 9 expected fields, or with a field that is not what it should be, is an error.
pub fn nvidia_smi_gpus(stdout: &str) -> Result<NvidiaSmi, ParseError> {
    const WHAT: &str = "nvidia-smi";
    let mut out = NvidiaSmi::default();
    for (i, raw) in stdout.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.eq_ignore_ascii_case("No devices were found") {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if NVIDIA_SMI_FAULTS.iter().any(|m| lower.contains(m)) {
            out.problems.push(line.to_owned());
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != NVIDIA_SMI_FIELDS {
            return Err(line_error(
                WHAT,
                i + 1,
                line,
                format!(
                    "expected {NVIDIA_SMI_FIELDS} comma-separated fields ({NVIDIA_SMI_QUERY}), found {}",
                    fields.len()
                ),
            ));
        }
        let num = |k: usize, field: &str| -> Result<Option<f64>, ParseError> {
            let v = fields[k];
            if is_placeholder(v) {
                return Ok(None);
            }
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(line_error(
                    WHAT,
                    i + 1,
                    line,
                    format!("{field}: expected a number, found {v:?}"),
                )),
            }
        };
        let index = fields[0].parse::<u32>().map_err(|_| {
            line_error(
                WHAT,
                i + 1,
                line,
                format!("index: expected a GPU index, found {:?}", fields[0]),
            )
        })?;
        let ecc_uncorrected = if is_placeholder(fields[8]) {
            None
        } else {
            Some(fields[8].parse::<u64>().map_err(|_| {
                line_error(
                    WHAT,
                    i + 1,
                    line,
                    format!("ecc errors: expected a count, found {:?}", fields[8]),
                )
            })?)
        };
        out.gpus.push(GpuReading {
            index,
            uuid: fields[1].to_owned(),
            name: fields[2].to_owned(),
            temperature_c: num(3, "temperature.gpu")?,
            utilization_pct: num(4, "utilization.gpu")?,
            memory_used_mib: num(5, "memory.used")?,
            memory_total_mib: num(6, "memory.total")?,
            power_w: num(7, "power.draw")?,
            ecc_uncorrected,
        });
    }
    Ok(out)
}

fn is_placeholder(v: &str) -> bool {
    v.is_empty() || v == "N/A" || (v.starts_with('[') && v.ends_with(']'))
}

/// The gpu check from one nvidia-smi run.
///
/// `expected`: the node's declared GPU count. `exit_ok`: nvidia-smi exited 0. Skipped when no GPU
/// is declared (None or 0), none was found and nothing was reported wrong (covers nvidia-smi
/// missing). Otherwise passes iff there is no problem line, nvidia-smi exited 0 and at least
/// `expected` GPUs were read. Value: `{"count", "gpus": [GpuReading]}`; threshold: `expected`.
pub fn gpu_check(readings: &NvidiaSmi, expected: Option<u32>, exit_ok: bool) -> CheckResult {
    let want = expected.unwrap_or(0);
    let found = readings.gpus.len();
    if want == 0 && found == 0 && readings.problems.is_empty() {
        return CheckResult::skipped(CheckName::Gpu, "no GPUs declared and none found");
    }
    let mut faults: Vec<String> = readings.problems.clone();
    if found < want as usize {
        faults.push(format!(
            "found {found} GPU{}, expected {want}",
            if found == 1 { "" } else { "s" }
        ));
    }
    if !exit_ok && readings.problems.is_empty() {
        faults.push("nvidia-smi exited with an error".to_owned());
    }
    let value = json!({
        "count": found,
        "gpus": serde_json::to_value(&readings.gpus).unwrap_or(serde_json::Value::Null),
    });
    let result = if faults.is_empty() {
        let message = match expected {
            Some(n) if n > 0 => format!("{found} GPUs found, expected {n}"),
            _ => format!("{found} GPU{} found", if found == 1 { "" } else { "s" }),
        };
        CheckResult::pass(CheckName::Gpu, message)
    } else {
        CheckResult::fail(CheckName::Gpu, faults.join("; "))
    };
    let result = result.with_value(value);
    match expected {
        Some(n) => result.with_threshold(json!(n)),
        None => result,
    }
}

// ---------------------------------------------------------------------------------------------
// df

/// Space and inodes of the filesystem holding one configured path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub path: String,
    pub total_bytes: u64,
    pub avail_bytes: u64,
    /// 0 on filesystems without fixed inodes (btrfs, some network filesystems).
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// Parses `df -P -B1 PATH...`: one `(mount point, total bytes, available bytes)` per data line,
/// in argument order (df omits paths it cannot stat, reporting them on stderr).
pub fn df_bytes(stdout: &str) -> Result<Vec<(String, u64, u64)>, ParseError> {
    df_table(stdout)
}

/// Parses `df -P -i PATH...`: one `(mount point, total inodes, free inodes)` per data line.
/// Filesystems without fixed inodes report `0 0 0 -` and parse as (mount, 0, 0).
pub fn df_inodes(stdout: &str) -> Result<Vec<(String, u64, u64)>, ParseError> {
    df_table(stdout)
}

/// Both df tables have the same shape: `device total used free capacity mount`. The capacity
/// column (`26%` or `-`) anchors the parse, so device and mount names may contain spaces; a
/// device name alone on a line (non-POSIX wrapping) is joined with the next line.
fn df_table(stdout: &str) -> Result<Vec<(String, u64, u64)>, ParseError> {
    const WHAT: &str = "df";
    let mut out = Vec::new();
    let mut carried: Option<String> = None;
    for (i, raw) in stdout.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("Filesystem") {
            continue;
        }
        let joined;
        let line = match carried.take() {
            Some(device) => {
                joined = format!("{device} {line}");
                joined.as_str()
            }
            None => line,
        };
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() == 1 {
            carried = Some(tokens[0].to_owned());
            continue;
        }
        let df_num = |t: &str| -> Option<u64> { if t == "-" { Some(0) } else { t.parse().ok() } };
        let anchor = (4..tokens.len().saturating_sub(1)).find(|&p| {
            let cap = tokens[p];
            (cap == "-"
                || cap
                    .strip_suffix('%')
                    .is_some_and(|n| n.parse::<u32>().is_ok()))
                && tokens[p - 3..p].iter().all(|t| df_num(t).is_some())
        });
        let Some(p) = anchor else {
            return Err(line_error(
                WHAT,
                i + 1,
                line,
                "expected `filesystem total used available capacity% mount-point`",
            ));
        };
        let total = df_num(tokens[p - 3]).unwrap_or(0);
        let free = df_num(tokens[p - 1]).unwrap_or(0);
        out.push((tokens[p + 1..].join(" "), total, free));
    }
    if let Some(device) = carried {
        return Err(line_error(
            WHAT,
            stdout.lines().count(),
            &device,
            "device name without figures",
        ));
    }
    Ok(out)
}

/// Joins the two df tables by mount point (a mount missing from the inode table gets 0 inodes).
pub fn disk_usage(bytes: &[(String, u64, u64)], inodes: &[(String, u64, u64)]) -> Vec<DiskUsage> {
    bytes
        .iter()
        .map(|(path, total, avail)| {
            let (inodes_total, inodes_free) = inodes
                .iter()
                .find(|(p, _, _)| p == path)
                .map_or((0, 0), |&(_, t, f)| (t, f));
            DiskUsage {
                path: path.clone(),
                total_bytes: *total,
                avail_bytes: *avail,
                inodes_total,
                inodes_free,
            }
        })
        .collect()
}

/// The disk check: fails if any path has less than `min_free_bytes` available, or (where the
/// filesystem has fixed inodes) less than 1 % of its inodes free. Skipped with no paths.
/// Value: the per-path usage; threshold: `min_free_bytes`.
pub fn disk_check(disks: &[DiskUsage], min_free_bytes: u64) -> CheckResult {
    if disks.is_empty() {
        return CheckResult::skipped(CheckName::Disk, "no disk paths to check");
    }
    let mut bad = Vec::new();
    for d in disks {
        if d.avail_bytes < min_free_bytes {
            bad.push(format!(
                "{}: {} free < {}",
                d.path,
                human_bytes(d.avail_bytes),
                human_bytes(min_free_bytes)
            ));
        }
        if d.inodes_total > 0 && u128::from(d.inodes_free) * 100 < u128::from(d.inodes_total) {
            bad.push(format!(
                "{}: {:.2}% of inodes free ({} of {}) < 1%",
                d.path,
                d.inodes_free as f64 * 100.0 / d.inodes_total as f64,
                d.inodes_free,
                d.inodes_total
            ));
        }
    }
    let value = serde_json::to_value(disks).unwrap_or(serde_json::Value::Null);
    let result = if bad.is_empty() {
        let free: Vec<String> = disks
            .iter()
            .map(|d| format!("{}: {} free", d.path, human_bytes(d.avail_bytes)))
            .collect();
        CheckResult::pass(CheckName::Disk, free.join(", "))
    } else {
        CheckResult::fail(CheckName::Disk, bad.join("; "))
    };
    result
        .with_value(value)
        .with_threshold(json!(min_free_bytes))
}

/// Decimal human size with one decimal, as config sizes are written: "3.2 GB", "512 B".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1000.0;
    let mut unit = 0;
    while x >= 999.95 && unit + 1 < UNITS.len() {
        x /= 1000.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Parses /proc/loadavg (`0.52 0.58 0.59 2/1234 56789`) into the 1, 5 and 15 minute averages.
pub fn loadavg(text: &str) -> Result<(f64, f64, f64), ParseError> {
    const WHAT: &str = "loadavg";
    let Some((i, line)) = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(ParseError::Missing {
            what: WHAT,
            field: "load averages",
        });
    };
    let line = line.trim();
    let nums: Vec<Option<f64>> = line
        .split_whitespace()
        .take(3)
        .map(|t| t.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0))
        .collect();
    match nums.as_slice() {
        [Some(a), Some(b), Some(c)] => Ok((*a, *b, *c)),
        _ => Err(line_error(
            WHAT,
            i + 1,
            line,
            "expected three load averages",
        )),
    }
}

/// Parses /proc/meminfo into (MemTotal, MemAvailable) in bytes. Without MemAvailable (kernels
/// before 3.14) the available memory is estimated as MemFree + Buffers + Cached.
pub fn meminfo(text: &str) -> Result<(u64, u64), ParseError> {
    const WHAT: &str = "meminfo";
    const KEYS: [&str; 5] = ["MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached"];
    let mut found: [Option<u64>; 5] = [None; 5];
    for (i, raw) in text.lines().enumerate() {
        let Some((key, rest)) = raw.split_once(':') else {
            continue;
        };
        let Some(slot) = KEYS.iter().position(|k| *k == key.trim()) else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let kb = parts.next().and_then(|n| n.parse::<u64>().ok());
        let unit = parts.next();
        match (kb, unit, parts.next()) {
            (Some(kb), Some("kB"), None) => found[slot] = Some(kb.saturating_mul(1024)),
            _ => {
                return Err(line_error(
                    WHAT,
                    i + 1,
                    raw.trim(),
                    "expected `Key: <number> kB`",
                ));
            }
        }
    }
    let [total, available, free, buffers, cached] = found;
    let total = total.ok_or(ParseError::Missing {
        what: WHAT,
        field: "MemTotal",
    })?;
    let available = match (available, free) {
        (Some(a), _) => a,
        (None, Some(f)) => f
            .saturating_add(buffers.unwrap_or(0))
            .saturating_add(cached.unwrap_or(0)),
        (None, None) => {
            return Err(ParseError::Missing {
                what: WHAT,
                field: "MemAvailable or MemFree",
            });
        }
    };
    Ok((total, available))
}

/// The load check, on the load per core. Overloaded — both the 5- and the 15-minute averages
/// above `per_core_max` runnable tasks per core (sustained, and still so) — fails. Busy — the
/// 15-minute average above [`LOAD_BUSY_PER_CORE`] (or `per_core_max` when lower), or only the
/// 5-minute one above `per_core_max` — fails as a warning only ([`CheckResult::warn`]): the
/// score drops, the state holds. Value: `{"load1", "load5", "load15"}`; threshold: the
/// overloaded load (`cores × per_core_max`). Skipped when the core count is unknown (0).
pub fn load_check(
    (load1, load5, load15): (f64, f64, f64),
    cores: u32,
    per_core_max: f64,
) -> CheckResult {
    if cores == 0 {
        return CheckResult::skipped(CheckName::Load, "core count unknown");
    }
    let value = json!({"load1": load1, "load5": load5, "load15": load15});
    let n = f64::from(cores);
    let plural = if cores == 1 { "" } else { "s" };
    let busy_per_core = LOAD_BUSY_PER_CORE.min(per_core_max);
    let (per5, per15) = (load5 / n, load15 / n);
    let what = format!("load {load15:.2} (15 min), {load5:.2} (5 min) on {cores} core{plural}");
    let result = if per5 > per_core_max && per15 > per_core_max {
        CheckResult::fail(
            CheckName::Load,
            format!(
                "overloaded: {what}, {per15:.2} per core > {}",
                fmt_num(per_core_max)
            ),
        )
    } else if per15 > busy_per_core {
        CheckResult::warn(
            CheckName::Load,
            format!(
                "busy: {what}, {per15:.2} per core > {} over 15 min; overloaded above {} per core",
                fmt_num(busy_per_core),
                fmt_num(per_core_max)
            ),
        )
    } else if per5 > per_core_max {
        CheckResult::warn(
            CheckName::Load,
            format!(
                "busy: {what}, {per5:.2} per core > {} over 5 min; overloaded when the 15-minute average is above it too",
                fmt_num(per_core_max)
            ),
        )
    } else {
        CheckResult::pass(CheckName::Load, format!("{what}, {per15:.2} per core"))
    };
    result
        .with_value(value)
        .with_threshold(json!(n * per_core_max))
}

/// The memory check: fails when available memory < `min_available_fraction` × total (the daemon
/// passes [`DEFAULT_MIN_AVAILABLE_FRACTION`]). Value: `{"total_bytes", "available_bytes"}`;
/// threshold: the minimum available bytes. Skipped when the total is unknown (0).
pub fn memory_check(total: u64, available: u64, min_available_fraction: f64) -> CheckResult {
    if total == 0 {
        return CheckResult::skipped(CheckName::Memory, "memory size unknown");
    }
    let fraction = if min_available_fraction.is_nan() {
        0.0
    } else {
        min_available_fraction.clamp(0.0, 1.0)
    };
    let min_bytes = (total as f64 * fraction).ceil();
    let pct = available as f64 * 100.0 / total as f64;
    let summary = format!(
        "{} available of {} ({pct:.1}%)",
        human_bytes(available),
        human_bytes(total)
    );
    let result = if (available as f64) < min_bytes {
        CheckResult::fail(
            CheckName::Memory,
            format!("{summary} < {}%", fmt_num(fraction * 100.0)),
        )
    } else {
        CheckResult::pass(CheckName::Memory, summary)
    };
    result
        .with_value(json!({"total_bytes": total, "available_bytes": available}))
        .with_threshold(json!(min_bytes as u64))
}

// ---------------------------------------------------------------------------------------------
// batched remote commands

/// Splits the output of one batched remote command into the output of each probe.
///
/// Format: each probe's output is preceded by a line `{marker}{name}` and may be followed by a
/// line `{marker}{name}:rc={N}` carrying its exit status. For example, with marker `@@ugro:`,
/// the script
///
/// ```text
/// echo '@@ugro:loadavg'; timeout 5 cat /proc/loadavg; echo "@@ugro:loadavg:rc=$?"
/// echo '@@ugro:nproc'; timeout 5 nproc; echo "@@ugro:nproc:rc=$?"
/// ```
///
/// prints output that splits into `{"loadavg": "0.1 0.2 0.3 1/2 3\n", "loadavg.rc": "0",
/// "nproc": "8\n", "nproc.rc": "0"}`. Section text is kept verbatim, line endings included.
/// Output before the first marker (login banners) and between an rc line and the next section
/// is dropped. A repeated name replaces the earlier section. Probes print to stdout only, so a
/// probe whose output lacks a final newline may glue a following marker to its last line: end
/// each probe with `echo` if that can happen.
pub fn sections(output: &str, marker: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if marker.is_empty() {
        return out;
    }
    let mut current: Option<String> = None;
    for line in output.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = bare.strip_prefix(marker) {
            let rest = rest.trim();
            if let Some((name, rc)) = rest.rsplit_once(":rc=")
                && rc.parse::<i64>().is_ok()
            {
                out.insert(format!("{name}.rc"), rc.to_owned());
                current = None;
            } else {
                out.insert(rest.to_owned(), String::new());
                current = Some(rest.to_owned());
            }
            continue;
        }
        if let Some(name) = &current
            && let Some(text) = out.get_mut(name)
        {
            text.push_str(line);
        }
    }
    out
}

/// The exit status recorded for probe `name` by [`sections`], if any.
pub fn section_rc(sections: &BTreeMap<String, String>, name: &str) -> Option<i32> {
    sections.get(&format!("{name}.rc"))?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Outcome;

    const HEALTHY_8: &str = "\
0, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d60, NVIDIA A100-SXM4-80GB, 34, 0, 4, 81920, 61.24, 0
1, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d61, NVIDIA A100-SXM4-80GB, 36, 97, 71234, 81920, 312.87, 0
2, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d62, NVIDIA A100-SXM4-80GB, 35, 98, 71234, 81920, 305.02, 0
3, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d63, NVIDIA A100-SXM4-80GB, 91, 100, 79001, 81920, 398.50, 2
4, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d64, NVIDIA A100-SXM4-80GB, 33, 0, 4, 81920, 60.11, 0
5, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d65, NVIDIA A100-SXM4-80GB, 32, 0, 4, 81920, 59.87, 0
6, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d66, NVIDIA A100-SXM4-80GB, 34, 0, 4, 81920, 62.40, 0
7, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d67, NVIDIA A100-SXM4-80GB, 35, 0, 4, 81920, 61.05, 0
";

    #[test]
    fn nvidia_smi_healthy_eight() {
        let smi = nvidia_smi_gpus(HEALTHY_8).unwrap();
        assert!(smi.problems.is_empty());
        assert_eq!(smi.gpus.len(), 8);
        let g = &smi.gpus[3];
        assert_eq!(g.index, 3);
        assert_eq!(g.uuid, "GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d63");
        assert_eq!(g.name, "NVIDIA A100-SXM4-80GB");
        assert_eq!(g.temperature_c, Some(91.0));
        assert_eq!(g.utilization_pct, Some(100.0));
        assert_eq!(g.memory_used_mib, Some(79001.0));
        assert_eq!(g.memory_total_mib, Some(81920.0));
        assert_eq!(g.power_w, Some(398.5));
        assert_eq!(g.ecc_uncorrected, Some(2));

        let r = gpu_check(&smi, Some(8), true);
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(r.message, "8 GPUs found, expected 8");
        assert_eq!(r.threshold, Some(json!(8)));
        let v = r.value.unwrap();
        assert_eq!(v["count"], json!(8));
        assert_eq!(v["gpus"][3]["temperature_c"], json!(91.0));

        let alerts = crate::health::alerts(&[], &smi.gpus, crate::health::DEFAULT_GPU_TEMP_MAX);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].message, "GPU 3 at 91 °C (> 85 °C)");
    }

    #[test]
    fn nvidia_smi_placeholders_are_none() {
        // GeForce cards: no power reading on some drivers, no ECC.
        let out = "\
0, GPU-1b2c3d4e-0000-1111-2222-333344445555, NVIDIA GeForce RTX 3090, 45, 12, 1024, 24576, [N/A], [N/A]
1, GPU-1b2c3d4e-0000-1111-2222-333344445556, NVIDIA GeForce RTX 3090, 44, 0, 1, 24576, 21.50, [Not Supported]
";
        let smi = nvidia_smi_gpus(out).unwrap();
        assert_eq!(smi.gpus.len(), 2);
        assert_eq!(smi.gpus[0].power_w, None);
        assert_eq!(smi.gpus[0].ecc_uncorrected, None);
        assert_eq!(smi.gpus[1].power_w, Some(21.5));
        assert_eq!(smi.gpus[1].ecc_uncorrected, None);
        assert_eq!(gpu_check(&smi, Some(2), true).outcome, Outcome::Pass);
        assert_eq!(gpu_check(&smi, None, true).message, "2 GPUs found");
        assert_eq!(gpu_check(&smi, None, true).threshold, None);
    }

    #[test]
    fn nvidia_smi_lost_gpu() {
        let out = "\
0, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d60, NVIDIA A100-SXM4-80GB, 34, 0, 4, 81920, 61.24, 0
1, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d61, NVIDIA A100-SXM4-80GB, 36, 97, 71234, 81920, 312.87, 0
Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.  Reboot the system to recover this GPU
3, GPU-4d0a1c8e-5c6f-2b3a-9e8d-1f2a3b4c5d63, NVIDIA A100-SXM4-80GB, 35, 0, 4, 81920, 60.00, 0
4, [GPU requires reset], [GPU requires reset], [GPU requires reset], [N/A], [N/A], [N/A], [N/A], [N/A]
";
        let smi = nvidia_smi_gpus(out).unwrap();
        assert_eq!(smi.gpus.len(), 3);
        assert_eq!(
            smi.problems,
            vec![
                "Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.  Reboot the system to recover this GPU",
                "4, [GPU requires reset], [GPU requires reset], [GPU requires reset], [N/A], [N/A], [N/A], [N/A], [N/A]",
            ]
        );
        let r = gpu_check(&smi, Some(5), false);
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(
            r.message.contains("GPU0000:3B:00.0: GPU is lost"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("found 3 GPUs, expected 5"),
            "{}",
            r.message
        );
        // Even with no count declared, a lost GPU fails the check.
        assert_eq!(gpu_check(&smi, None, true).outcome, Outcome::Fail);
    }

    #[test]
    fn nvidia_smi_driver_failure() {
        let out = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n";
        let smi = nvidia_smi_gpus(out).unwrap();
        assert!(smi.gpus.is_empty());
        assert_eq!(smi.problems.len(), 1);
        let r = gpu_check(&smi, Some(8), false);
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(
            r.message.starts_with("NVIDIA-SMI has failed"),
            "{}",
            r.message
        );
        assert!(
            r.message.ends_with("found 0 GPUs, expected 8"),
            "{}",
            r.message
        );

        let mismatch = "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.183\n";
        let smi = nvidia_smi_gpus(mismatch).unwrap();
        assert_eq!(smi.problems.len(), 2);
    }

    #[test]
    fn nvidia_smi_malformed_line_is_quoted() {
        let out = "0, GPU-aaaa, NVIDIA A100-SXM4-80GB, 34, 0\n";
        let err = nvidia_smi_gpus(out).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"0, GPU-aaaa, NVIDIA A100-SXM4-80GB, 34, 0\""),
            "{msg}"
        );
        assert!(msg.contains("found 5"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");

        let out = "0, GPU-aaaa, NVIDIA A100, hot, 0, 4, 81920, 61.24, 0\n";
        let msg = nvidia_smi_gpus(out).unwrap_err().to_string();
        assert!(msg.contains("temperature.gpu"), "{msg}");
        assert!(msg.contains("\"hot\""), "{msg}");
        let out = "x, GPU-aaaa, NVIDIA A100, 30, 0, 4, 81920, 61.24, 0\n";
        assert!(nvidia_smi_gpus(out).is_err());
    }

    #[test]
    fn gpu_check_no_gpus() {
        let none = nvidia_smi_gpus("No devices were found\n").unwrap();
        assert_eq!(none, NvidiaSmi::default());
        // CPU node, nvidia-smi missing or finding nothing.
        assert_eq!(gpu_check(&none, None, false).outcome, Outcome::Skipped);
        assert_eq!(gpu_check(&none, Some(0), true).outcome, Outcome::Skipped);
        // Declared GPUs and none found.
        let r = gpu_check(&none, Some(2), false);
        assert_eq!(r.outcome, Outcome::Fail);
        assert_eq!(
            r.message,
            "found 0 GPUs, expected 2; nvidia-smi exited with an error"
        );
        // Too few.
        let one = nvidia_smi_gpus(&HEALTHY_8[..HEALTHY_8.find('\n').unwrap()]).unwrap();
        assert_eq!(
            gpu_check(&one, Some(2), true).message,
            "found 1 GPU, expected 2"
        );
        // Bad exit even with every GPU read.
        assert_eq!(gpu_check(&one, Some(1), false).outcome, Outcome::Fail);
    }

    const DF_BYTES: &str = "\
Filesystem                                            1-blocks          Used     Available Capacity Mounted on
/dev/mapper/vg0-root                              502392610816  123456789012  353313214464      26% /
/dev/mapper/luks-4f1c2a3b-5d6e-7f80-9a1b-2c3d4e5f6a7b 3936551211008 3733089390592    3218587648     100% /data
";

    const DF_INODES: &str = "\
Filesystem                                              Inodes    IUsed     IFree IUse% Mounted on
/dev/mapper/vg0-root                                  31227904   812345  30415559    3% /
/dev/mapper/luks-4f1c2a3b-5d6e-7f80-9a1b-2c3d4e5f6a7b 244195328 11048911 233146417    5% /data
";

    #[test]
    fn df_debian_outputs() {
        let bytes = df_bytes(DF_BYTES).unwrap();
        assert_eq!(
            bytes,
            vec![
                ("/".to_owned(), 502_392_610_816, 353_313_214_464),
                ("/data".to_owned(), 3_936_551_211_008, 3_218_587_648),
            ]
        );
        let inodes = df_inodes(DF_INODES).unwrap();
        assert_eq!(inodes[1], ("/data".to_owned(), 244_195_328, 233_146_417));

        let disks = disk_usage(&bytes, &inodes);
        assert_eq!(disks[0].inodes_total, 31_227_904);
        let r = disk_check(&disks, 10_000_000_000);
        assert_eq!(r.outcome, Outcome::Fail);
        assert_eq!(r.message, "/data: 3.2 GB free < 10.0 GB");
        assert_eq!(r.threshold, Some(json!(10_000_000_000u64)));
        assert_eq!(r.value.as_ref().unwrap()[1]["path"], json!("/data"));

        let r = disk_check(&disks, 1_000_000_000);
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(r.message, "/: 353.3 GB free, /data: 3.2 GB free");
    }

    #[test]
    fn df_btrfs_wrapped_and_spaces() {
        let inodes = "\
Filesystem     Inodes IUsed IFree IUse% Mounted on
/dev/nvme1n1p1      0     0     0     - /srv/scratch
/dev/mapper/a-very-long-volume-group-name-scratch
                  100    99     1    99% /mnt/my disk
";
        let rows = df_inodes(inodes).unwrap();
        assert_eq!(
            rows,
            vec![
                ("/srv/scratch".to_owned(), 0, 0),
                ("/mnt/my disk".to_owned(), 100, 1),
            ]
        );
        let err = df_bytes(
            "Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/sda1 12 oops 3 4% /\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"/dev/sda1 12 oops 3 4% /\""),
            "{err}"
        );
    }

    #[test]
    fn disk_check_inodes_and_empty() {
        let d = |path: &str, it, ifree| DiskUsage {
            path: path.into(),
            total_bytes: 1_000_000_000_000,
            avail_bytes: 500_000_000_000,
            inodes_total: it,
            inodes_free: ifree,
        };
        // btrfs (0 inodes) is fine; 0.5 % free is not; exactly 1 % is.
        let r = disk_check(
            &[
                d("/", 0, 0),
                d("/data", 1_000_000, 5_000),
                d("/x", 1000, 10),
            ],
            10_000_000_000,
        );
        assert_eq!(r.outcome, Outcome::Fail);
        assert_eq!(
            r.message,
            "/data: 0.50% of inodes free (5000 of 1000000) < 1%"
        );
        assert_eq!(disk_check(&[], 1).outcome, Outcome::Skipped);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(3_218_587_648), "3.2 GB");
        assert_eq!(human_bytes(10_000_000_000), "10.0 GB");
        assert_eq!(human_bytes(999_999_999), "1.0 GB");
        assert_eq!(human_bytes(3_936_551_211_008), "3.9 TB");
        assert_eq!(human_bytes(u64::MAX), "18.4 EB");
    }

    #[test]
    fn proc_loadavg() {
        assert_eq!(
            loadavg("0.52 0.58 0.59 2/1234 56789\n").unwrap(),
            (0.52, 0.58, 0.59)
        );
        assert_eq!(
            loadavg("\n12.04 9.80 7.15 17/2048 1234").unwrap(),
            (12.04, 9.8, 7.15)
        );
        let err = loadavg("0.52 zero\n").unwrap_err();
        assert!(err.to_string().contains("\"0.52 zero\""), "{err}");
        assert!(matches!(loadavg(""), Err(ParseError::Missing { .. })));
    }

    const MEMINFO: &str = "\
MemTotal:       65853612 kB
MemFree:         1203404 kB
MemAvailable:   41234560 kB
Buffers:          912344 kB
Cached:         38012456 kB
SwapCached:            0 kB
Active:         20123456 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
DirectMap1G:    51380224 kB
";

    #[test]
    fn proc_meminfo() {
        assert_eq!(
            meminfo(MEMINFO).unwrap(),
            (65_853_612 * 1024, 41_234_560 * 1024)
        );
        // Old kernel: no MemAvailable.
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 200 kB\n";
        assert_eq!(meminfo(old).unwrap(), (1_024_000, 310 * 1024));
        let err = meminfo("MemTotal: lots\n").unwrap_err();
        assert!(err.to_string().contains("\"MemTotal: lots\""), "{err}");
        assert!(matches!(
            meminfo("MemFree: 1 kB\n"),
            Err(ParseError::Missing {
                field: "MemTotal",
                ..
            })
        ));
    }

    #[test]
    fn load_and_memory_checks() {
        let r = load_check((0.52, 0.58, 0.59), 8, 2.0);
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(
            r.message,
            "load 0.59 (15 min), 0.58 (5 min) on 8 cores, 0.07 per core"
        );
        assert_eq!(r.threshold, Some(json!(16.0)));
        assert_eq!(
            r.value,
            Some(json!({"load1": 0.52, "load5": 0.58, "load15": 0.59}))
        );
        // Exactly one runnable task per core is not busy yet.
        assert_eq!(load_check((9.0, 8.0, 8.0), 8, 2.0).outcome, Outcome::Pass);
        assert_eq!(
            load_check((1.0, 1.0, 1.0), 0, 2.0).outcome,
            Outcome::Skipped
        );
        // Overloaded: both averages above 2 per core.
        let r = load_check((20.0, 17.0, 16.5), 8, 2.0);
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(!r.warning);
        assert_eq!(
            r.message,
            "overloaded: load 16.50 (15 min), 17.00 (5 min) on 8 cores, 2.06 per core > 2"
        );
        // The 15-minute average has come down: still busy, not overloaded.
        let r = load_check((3.0, 5.0, 3.9), 2, 2.0);
        assert!(r.is_warning(), "{r:?}");
        assert!(r.message.starts_with("busy: "), "{}", r.message);
        // A burst: only the 5-minute average above the limit.
        let r = load_check((12.0, 9.0, 3.0), 4, 2.0);
        assert!(r.is_warning(), "{r:?}");
        assert!(r.message.contains("over 5 min"), "{}", r.message);
        // A limit below 1 per core lowers the busy line with it.
        assert!(load_check((0.0, 0.0, 1.8), 2, 0.8).is_warning());

        let (total, avail) = meminfo(MEMINFO).unwrap();
        let r = memory_check(total, avail, DEFAULT_MIN_AVAILABLE_FRACTION);
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(r.message, "42.2 GB available of 67.4 GB (62.6%)");
        let r = memory_check(64_000_000_000, 1_200_000_000, 0.05);
        assert_eq!(r.outcome, Outcome::Fail);
        assert_eq!(r.message, "1.2 GB available of 64.0 GB (1.9%) < 5%");
        assert_eq!(r.threshold, Some(json!(3_200_000_000u64)));
        assert_eq!(memory_check(0, 0, 0.05).outcome, Outcome::Skipped);
    }

    #[test]
    fn sections_split_and_rc() {
        let out = "Welcome to gpu1!\n@@ugro:loadavg\n0.1 0.2 0.3 1/2 3\n@@ugro:nproc\n8\n";
        let s = sections(out, "@@ugro:");
        assert_eq!(
            s,
            BTreeMap::from([
                ("loadavg".to_owned(), "0.1 0.2 0.3 1/2 3\n".to_owned()),
                ("nproc".to_owned(), "8\n".to_owned()),
            ])
        );

        let out = "@@ugro:df\nFilesystem 1-blocks\n/dev/sda1 1 2 3 4% /\n@@ugro:df:rc=0\n\
                   @@ugro:meminfo\n@@ugro:meminfo:rc=124\n@@ugro:nproc\n16";
        let s = sections(out, "@@ugro:");
        assert_eq!(s["df"], "Filesystem 1-blocks\n/dev/sda1 1 2 3 4% /\n");
        assert_eq!(section_rc(&s, "df"), Some(0));
        assert_eq!(s["meminfo"], "");
        assert_eq!(section_rc(&s, "meminfo"), Some(124));
        assert_eq!(s["nproc"], "16");
        assert_eq!(section_rc(&s, "nproc"), None);
        assert!(sections(out, "").is_empty());
    }
}

/// The Python program the PyTorch probe runs (`python -c`): imports torch, checks CUDA, and
/// runs a tiny matmul on every visible GPU. Prints one JSON object.
pub const PYTORCH_PROBE: &str = r#"import json, sys
try:
    import torch
except Exception as e:
    print(json.dumps({"error": "import torch failed: %s" % e})); sys.exit(0)
r = {"torch": torch.__version__, "cuda": bool(torch.cuda.is_available()), "count": 0, "devices": []}
if r["cuda"]:
    r["count"] = torch.cuda.device_count()
    for i in range(r["count"]):
        try:
            a = torch.ones(64, 64, device="cuda:%d" % i)
            r["devices"].append({"index": i, "ok": float((a @ a).sum().item()) == 262144.0})
        except Exception as e:
            r["devices"].append({"index": i, "ok": False, "error": str(e)[:200]})
print(json.dumps(r))
"#;

/// Judges the output of [`PYTORCH_PROBE`]: torch imports, CUDA is available, at least
/// `expected` devices are visible, and the matmul worked on each.
pub fn pytorch_check(stdout: &str, exit_status: Option<u32>, expected: Option<u32>) -> CheckResult {
    let name = CheckName::Pytorch;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let Some(v) = line.and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()) else {
        let tail: String = stdout
            .trim()
            .chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return CheckResult::fail(
            name,
            format!("python exited with {exit_status:?} and printed no result: {tail:?}"),
        );
    };
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return CheckResult::fail(name, err.to_string()).with_value(v.clone());
    }
    let cuda = v.get("cuda").and_then(|c| c.as_bool()).unwrap_or(false);
    let count = v.get("count").and_then(|c| c.as_u64()).unwrap_or(0);
    let version = v
        .get("torch")
        .and_then(|t| t.as_str())
        .unwrap_or("?")
        .to_string();
    let bad: Vec<String> = v
        .get("devices")
        .and_then(|d| d.as_array())
        .map(|ds| {
            ds.iter()
                .filter(|d| d.get("ok").and_then(|o| o.as_bool()) != Some(true))
                .map(|d| {
                    format!(
                        "cuda:{} {}",
                        d.get("index").and_then(|i| i.as_u64()).unwrap_or(0),
                        d.get("error")
                            .and_then(|e| e.as_str())
                            .unwrap_or("matmul gave a wrong result")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let want = u64::from(expected.unwrap_or(0));
    let result = if want > 0 && !cuda {
        CheckResult::fail(name, format!("torch {version}: CUDA not available"))
    } else if count < want {
        CheckResult::fail(
            name,
            format!("torch {version} sees {count} GPUs, expected {want}"),
        )
    } else if !bad.is_empty() {
        CheckResult::fail(
            name,
            format!("torch {version}: matmul failed on {}", bad.join(", ")),
        )
    } else {
        CheckResult::pass(
            name,
            format!(
                "torch {version}, CUDA {}, {count} GPU(s) ran a matmul",
                if cuda { "available" } else { "not available" }
            ),
        )
    };
    result.with_value(v).with_threshold(serde_json::json!(want))
}

#[cfg(test)]
mod pytorch_tests {
    use super::*;
    use crate::health::Outcome;

    #[test]
    fn healthy_torch_passes_and_missing_gpus_fail() {
        let ok = r#"{"torch": "2.5.1", "cuda": true, "count": 2, "devices": [{"index": 0, "ok": true}, {"index": 1, "ok": true}]}"#;
        assert_eq!(pytorch_check(ok, Some(0), Some(2)).outcome, Outcome::Pass);
        let r = pytorch_check(ok, Some(0), Some(4));
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(
            r.message.contains("sees 2 GPUs, expected 4"),
            "{}",
            r.message
        );
    }

    #[test]
    fn import_error_cuda_off_bad_matmul_and_garbage_fail_with_reasons() {
        let r = pytorch_check(
            r#"{"error": "import torch failed: No module named 'torch'"}"#,
            Some(0),
            None,
        );
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(r.message.contains("No module named"));
        let r = pytorch_check(
            r#"{"torch": "2.5.1", "cuda": false, "count": 0, "devices": []}"#,
            Some(0),
            Some(8),
        );
        assert!(r.message.contains("CUDA not available"));
        let r = pytorch_check(
            r#"{"torch": "2.5.1", "cuda": true, "count": 1, "devices": [{"index": 0, "ok": false, "error": "CUDA error: an illegal memory access"}]}"#,
            Some(0),
            Some(1),
        );
        assert!(r.message.contains("cuda:0 CUDA error"), "{}", r.message);
        let r = pytorch_check("Traceback (most recent call last):\n  boom", Some(1), None);
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(r.message.contains("boom"));
    }

    #[test]
    fn cpu_only_torch_passes_when_no_gpus_are_expected() {
        let r = pytorch_check(
            r#"{"torch": "2.5.1", "cuda": false, "count": 0, "devices": []}"#,
            Some(0),
            None,
        );
        assert_eq!(r.outcome, Outcome::Pass);
    }
}

/// The `ps` command whose output [`ps_processes`] reads: pid, user, seconds since start, full
/// command line, no header.
pub const PS_COMMAND: &str = "ps -eo pid=,user=,etimes=,args= -ww";

/// One process from [`PS_COMMAND`]'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsProcess {
    pub pid: u32,
    pub user: String,
    /// Seconds since the process started.
    pub elapsed_seconds: u64,
    pub args: String,
}

/// Parses [`PS_COMMAND`]'s output; lines that do not parse (kernel threads without args are
/// fine) are skipped.
pub fn ps_processes(stdout: &str) -> Vec<PsProcess> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let user = it.next()?.to_string();
            let elapsed_seconds = it.next()?.parse().ok()?;
            let args = it.collect::<Vec<_>>().join(" ");
            (!args.is_empty()).then_some(PsProcess {
                pid,
                user,
                elapsed_seconds,
                args,
            })
        })
        .collect()
}

#[cfg(test)]
mod ps_tests {
    use super::*;

    #[test]
    fn ps_output_parses_and_keeps_full_command_lines() {
        let out = "      1 root         86400 /sbin/init\n   4242 alice         3600 python train.py --work-dir /data/runs/a --lr 0.1\n    2 root 86400\ngarbage line\n";
        let p = ps_processes(out);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].pid, 4242);
        assert_eq!(p[1].user, "alice");
        assert_eq!(p[1].elapsed_seconds, 3600);
        assert_eq!(
            p[1].args,
            "python train.py --work-dir /data/runs/a --lr 0.1"
        );
    }
}
