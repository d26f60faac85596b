//! The one allowed stand-in for absent GPU hardware: an executable `nvidia-smi` shell script
//! printing what the real tool prints for the CSV queries the monitor uses (healthy, lost GPU,
//! hang, driver error, hot GPU). Put its directory first on PATH (e.g. via
//! [`crate::sshd::SshdOptions::path_prepend`]) to give a "host" its GPUs.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `--query-gpu` field list the monitor asks for.
pub const QUERY_GPU_FIELDS: &str = "index,uuid,name,temperature.gpu,utilization.gpu,memory.used,memory.total,power.draw,ecc.errors.uncorrected.volatile.total";

/// The `--query-compute-apps` field list the monitor asks for.
pub const QUERY_APPS_FIELDS: &str = "pid,process_name,used_memory";

/// Model name printed for every fake GPU.
pub const GPU_NAME: &str = "NVIDIA A100-SXM4-80GB";

/// What the fake `nvidia-smi` simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeGpu {
    /// `count` idle, healthy GPUs; exit 0.
    Healthy { count: u32 },
    /// GPU `lost_index` has fallen off the bus: its line is replaced by
    /// `Unable to determine the device handle for GPU0000:XX:00.0: GPU is lost.  Reboot the
    /// system to recover this GPU`, the others are listed; exit 15.
    Lost { count: u32, lost_index: u32 },
    /// Never returns (`exec sleep 3600`), like nvidia-smi stuck in the driver.
    Hang,
    /// `NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. …`; exit 9.
    DriverError,
    /// Healthy, but GPU `hot_index` reports `temp_c` °C.
    Hot {
        count: u32,
        hot_index: u32,
        temp_c: u32,
    },
}

/// The driver-error message real nvidia-smi prints (stdout) when the driver is not loaded.
pub const DRIVER_ERROR_MESSAGE: &str = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.";

/// Exit code of nvidia-smi when a GPU is lost.
pub const EXIT_GPU_LOST: i32 = 15;
/// Exit code of nvidia-smi when the driver cannot be reached.
pub const EXIT_DRIVER_ERROR: i32 = 9;

/// Deterministic, realistic-looking UUID of fake GPU `index` (`GPU-xxxxxxxx-xxxx-…`).
pub fn fake_gpu_uuid(index: u32) -> String {
    let a = splitmix64(0x5f2c_3a4e_0b1d_4c7e ^ u64::from(index));
    let b = splitmix64(a);
    format!(
        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        (a & 0x0fff) | 0x4000,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// PCI bus number (two hex digits) of fake GPU `index`, laid out like a DGX A100.
pub fn fake_gpu_bus(index: u32) -> String {
    const DGX: [u32; 8] = [0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD];
    let bus = DGX
        .get(index as usize)
        .copied()
        .unwrap_or(0x10 + (index * 0x0B) % 0xE0);
    format!("{bus:02X}")
}

/// The line real nvidia-smi prints in place of a lost GPU's row.
pub fn lost_gpu_line(index: u32) -> String {
    format!(
        "Unable to determine the device handle for GPU0000:{}:00.0: GPU is lost.  Reboot the system to recover this GPU",
        fake_gpu_bus(index)
    )
}

/// The row printed for a healthy GPU `index` for [`QUERY_GPU_FIELDS`] with
/// `--format=csv,noheader,nounits` (temperature overridable for the hot GPU).
pub fn healthy_gpu_line(index: u32, temp_c: Option<u32>) -> String {
    let g = GpuValues::new(index, temp_c);
    format!(
        "{}, {}, {GPU_NAME}, {}, {}, {}, 81920, {}, 0",
        index, g.uuid, g.temp, g.util, g.mem_used, g.power
    )
}

/// The `--query-compute-apps` field list the sampler asks for (per-GPU process counts).
pub const QUERY_SAMPLER_APPS_FIELDS: &str = "gpu_uuid,pid,used_memory";

/// Utilization (%) the fake reports for a GPU that has at least one [`FakeApp`].
pub const BUSY_GPU_UTILIZATION: u32 = 97;

/// Memory used (MiB) the fake reports for a GPU without processes.
pub const IDLE_GPU_MEMORY_USED_MIB: u32 = 4;

/// A compute process the fake nvidia-smi lists under `--query-compute-apps` (fields `pid`,
/// `process_name`, `gpu_uuid`, `gpu_name`, `gpu_bus_id`, `used_memory`/`used_gpu_memory`).
/// A GPU with processes reports [`BUSY_GPU_UTILIZATION`] % and
/// [`IDLE_GPU_MEMORY_USED_MIB`] + the processes' memory as used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeApp {
    /// Index of the GPU the process runs on (must be < the mode's count).
    pub gpu: u32,
    pub pid: u32,
    /// What nvidia-smi shows as the process name (the executable path, e.g. `/usr/bin/python3`).
    pub process_name: String,
    /// None prints `[N/A]`, as nvidia-smi does inside containers.
    pub used_memory_mib: Option<u32>,
}

/// Writes (atomically: temp file + rename) an executable `dir/nvidia-smi` for `mode`. May be
/// called again while tests run to switch modes; running instances keep the old script.
pub fn install_fake_nvidia_smi(dir: &Path, mode: FakeGpu) {
    install_fake_nvidia_smi_with_apps(dir, mode, &[]);
}

/// Like [`install_fake_nvidia_smi`], with compute processes on some GPUs (ignored by the modes
/// without GPU readings: `Hang`, `DriverError`; a `Lost` mode fails the apps query as the real
/// tool does).
pub fn install_fake_nvidia_smi_with_apps(dir: &Path, mode: FakeGpu, apps: &[FakeApp]) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    fs::create_dir_all(dir).expect("create fake nvidia-smi dir");
    let script = script(mode, apps);
    let tmp = dir.join(format!(
        ".nvidia-smi.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&tmp, script).expect("write fake nvidia-smi");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, dir.join("nvidia-smi")).expect("install fake nvidia-smi");
}

struct GpuValues {
    uuid: String,
    temp: u32,
    util: u32,
    mem_used: u32,
    power: String,
    serial: String,
}

impl GpuValues {
    fn new(index: u32, temp_c: Option<u32>) -> Self {
        Self {
            uuid: fake_gpu_uuid(index),
            temp: temp_c.unwrap_or(31 + (index * 7) % 9),
            util: 0,
            mem_used: IDLE_GPU_MEMORY_USED_MIB,
            power: format!("{:.2}", 58.0 + f64::from((index * 371) % 900) / 100.0),
            serial: format!("1324{:09}", splitmix64(u64::from(index)) % 1_000_000_000),
        }
    }
}

/// Quotes `s` for a POSIX shell as one word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const SCRIPT_BODY: &str = r#"
query_gpu=; query_apps=; noheader=0; nounits=0; list=0
for a in "$@"; do
  case "$a" in
    --query-gpu=*) query_gpu=${a#--query-gpu=} ;;
    --query-compute-apps=*) query_apps=${a#--query-compute-apps=} ;;
    --format=*)
      case ",${a#--format=}," in *,noheader,*) noheader=1 ;; esac
      case ",${a#--format=}," in *,nounits,*) nounits=1 ;; esac ;;
    -L|--list-gpus) list=1 ;;
    *) echo "fake nvidia-smi (ugro-testkit): unsupported argument: $a" >&2; exit 2 ;;
  esac
done

lost_line() {
  eval "b=\$BUS_$1"
  echo "Unable to determine the device handle for GPU0000:$b:00.0: GPU is lost.  Reboot the system to recover this GPU"
}

gpu_field() {
  unit=
  case "$2" in
    index) v=$1 ;;
    uuid|gpu_uuid) eval "v=\$UUID_$1" ;;
    name|gpu_name) v="$NAME" ;;
    serial) eval "v=\$SERIAL_$1" ;;
    pci.bus_id|gpu_bus_id) eval "v=00000000:\$BUS_$1:00.0" ;;
    count) v=$COUNT ;;
    driver_version) v=535.183.01 ;;
    persistence_mode) v=Enabled ;;
    pstate) v=P0 ;;
    temperature.gpu) eval "v=\$TEMP_$1" ;;
    utilization.gpu) eval "v=\$UTIL_$1"; unit=% ;;
    utilization.memory) v=0; unit=% ;;
    memory.used) eval "v=\$MEMU_$1"; unit=MiB ;;
    memory.total) v=81920; unit=MiB ;;
    memory.free) eval "v=\$((81920 - MEMU_$1))"; unit=MiB ;;
    power.draw) eval "v=\$PWR_$1"; unit=W ;;
    power.limit) v=400.00; unit=W ;;
    ecc.errors.uncorrected.volatile.total|ecc.errors.corrected.volatile.total) v=0 ;;
    *) return 1 ;;
  esac
}

app_field() {
  unit=
  case "$2" in
    pid) eval "v=\$APP_PID_$1" ;;
    process_name) eval "v=\$APP_NAME_$1" ;;
    gpu_uuid) eval "g=\$APP_GPU_$1"; eval "v=\$UUID_$g" ;;
    gpu_name) v="$NAME" ;;
    gpu_bus_id) eval "g=\$APP_GPU_$1"; eval "v=00000000:\$BUS_$g:00.0" ;;
    used_memory|used_gpu_memory) eval "v=\$APP_MEM_$1"; unit=MiB ;;
    *) return 1 ;;
  esac
}

invalid_field() {
  echo "Field \"$1\" is not a valid field to query."
  echo
  exit 2
}

IFS=,
set -f

if [ -n "$query_gpu" ]; then
  for f in $query_gpu; do gpu_field 0 "$f" || invalid_field "$f"; done
  if [ $noheader = 0 ]; then
    line=; sep=
    for f in $query_gpu; do
      gpu_field 0 "$f"
      if [ -n "$unit" ]; then h="$f [$unit]"; else h="$f"; fi
      line="$line$sep$h"; sep=", "
    done
    printf '%s\n' "$line"
  fi
  rc=0; i=0
  while [ $i -lt $COUNT ]; do
    if [ $i = $LOST ]; then
      lost_line $i; rc=15
    else
      line=; sep=
      for f in $query_gpu; do
        gpu_field $i "$f"
        if [ -n "$unit" ] && [ $nounits = 0 ]; then v="$v $unit"; fi
        line="$line$sep$v"; sep=", "
      done
      printf '%s\n' "$line"
    fi
    i=$((i + 1))
  done
  exit $rc
fi

if [ -n "$query_apps" ]; then
  for f in $query_apps; do app_field 0 "$f" || invalid_field "$f"; done
  if [ $LOST -ge 0 ]; then lost_line $LOST; exit 15; fi
  if [ $noheader = 0 ]; then
    line=; sep=
    for f in $query_apps; do
      app_field 0 "$f"
      if [ -n "$unit" ]; then h="$f [$unit]"; else h="$f"; fi
      line="$line$sep$h"; sep=", "
    done
    printf '%s\n' "$line"
  fi
  i=0
  while [ $i -lt $APPS ]; do
    line=; sep=
    for f in $query_apps; do
      app_field $i "$f"
      if [ -n "$unit" ] && [ $nounits = 0 ] && [ "$v" != "[N/A]" ]; then v="$v $unit"; fi
      line="$line$sep$v"; sep=", "
    done
    printf '%s\n' "$line"
    i=$((i + 1))
  done
  exit 0
fi

if [ $list = 1 ]; then
  rc=0; i=0
  while [ $i -lt $COUNT ]; do
    if [ $i = $LOST ]; then
      lost_line $i; rc=15
    else
      eval "u=\$UUID_$i"
      echo "GPU $i: $NAME (UUID: $u)"
    fi
    i=$((i + 1))
  done
  exit $rc
fi

echo "fake nvidia-smi (ugro-testkit): only --query-gpu=, --query-compute-apps= and -L are supported" >&2
exit 2
"#;

fn script(mode: FakeGpu, apps: &[FakeApp]) -> String {
    let mut s = format!("#!/bin/sh\n# fake nvidia-smi written by ugro-testkit; mode: {mode:?}\n");
    let (count, lost, hot) = match mode {
        FakeGpu::Hang => {
            s.push_str("exec sleep 3600\n");
            return s;
        }
        FakeGpu::DriverError => {
            let _ = writeln!(
                s,
                "echo \"{DRIVER_ERROR_MESSAGE}\"\nexit {EXIT_DRIVER_ERROR}"
            );
            return s;
        }
        FakeGpu::Healthy { count } => (count, None, None),
        FakeGpu::Lost { count, lost_index } => {
            assert!(
                lost_index < count,
                "lost_index {lost_index} >= count {count}"
            );
            (count, Some(lost_index), None)
        }
        FakeGpu::Hot {
            count,
            hot_index,
            temp_c,
        } => {
            assert!(hot_index < count, "hot_index {hot_index} >= count {count}");
            (count, None, Some((hot_index, temp_c)))
        }
    };
    let _ = writeln!(s, "COUNT={count}");
    let _ = writeln!(s, "LOST={}", lost.map_or(-1, i64::from));
    let _ = writeln!(s, "NAME='{GPU_NAME}'");
    let _ = writeln!(s, "APPS={}", apps.len());
    for (k, a) in apps.iter().enumerate() {
        assert!(a.gpu < count, "app on GPU {} but only {count} GPUs", a.gpu);
        let _ = writeln!(
            s,
            "APP_GPU_{k}={}; APP_PID_{k}={}; APP_NAME_{k}={}; APP_MEM_{k}={}",
            a.gpu,
            a.pid,
            sh_quote(&a.process_name),
            a.used_memory_mib
                .map_or_else(|| "'[N/A]'".to_owned(), |m| m.to_string())
        );
    }
    for i in 0..count {
        let temp = hot.and_then(|(h, t)| (h == i).then_some(t));
        let mut g = GpuValues::new(i, temp);
        let mine: Vec<&FakeApp> = apps.iter().filter(|a| a.gpu == i).collect();
        if !mine.is_empty() {
            g.util = BUSY_GPU_UTILIZATION;
            g.mem_used += mine
                .iter()
                .map(|a| a.used_memory_mib.unwrap_or(0))
                .sum::<u32>();
        }
        let _ = writeln!(
            s,
            "UUID_{i}={}; BUS_{i}={}; SERIAL_{i}={}; TEMP_{i}={}; UTIL_{i}={}; MEMU_{i}={}; PWR_{i}={}",
            g.uuid,
            fake_gpu_bus(i),
            g.serial,
            g.temp,
            g.util,
            g.mem_used,
            g.power
        );
    }
    s.push_str(SCRIPT_BODY);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(dir: &Path, args: &[&str]) -> (i32, String) {
        let out = Command::new(dir.join("nvidia-smi"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
        )
    }

    fn query() -> String {
        format!("--query-gpu={QUERY_GPU_FIELDS}")
    }

    const FMT: &str = "--format=csv,noheader,nounits";

    #[test]
    fn uuid_looks_real() {
        let u = fake_gpu_uuid(0);
        assert_eq!(u.len(), 40, "{u}");
        assert!(u.starts_with("GPU-"));
        assert_ne!(fake_gpu_uuid(0), fake_gpu_uuid(1));
    }

    #[test]
    fn healthy_lines() {
        let d = tempfile::tempdir().unwrap();
        install_fake_nvidia_smi(d.path(), FakeGpu::Healthy { count: 8 });
        let (rc, out) = run(d.path(), &[&query(), FMT]);
        assert_eq!(rc, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 8, "{out}");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(*l, healthy_gpu_line(i as u32, None));
            assert_eq!(l.split(", ").count(), 9);
        }
        assert!(lines[0].starts_with("0, GPU-"), "{}", lines[0]);
        assert!(lines[0].contains(", NVIDIA A100-SXM4-80GB, "));

        let (rc, out) = run(
            d.path(),
            &[&format!("--query-gpu={QUERY_GPU_FIELDS}"), "--format=csv"],
        );
        assert_eq!(rc, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 9);
        assert!(
            lines[0].starts_with(
                "index, uuid, name, temperature.gpu, utilization.gpu [%], memory.used [MiB]"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains(" MiB, 81920 MiB, "), "{}", lines[1]);

        let (rc, out) = run(
            d.path(),
            &[&format!("--query-compute-apps={QUERY_APPS_FIELDS}"), FMT],
        );
        assert_eq!((rc, out.as_str()), (0, ""));

        let (rc, out) = run(d.path(), &["--query-gpu=index,bogus", FMT]);
        assert_eq!(rc, 2);
        assert!(out.contains("Field \"bogus\" is not a valid field to query."));

        let (rc, out) = run(d.path(), &["-L"]);
        assert_eq!(rc, 0);
        assert!(
            out.starts_with("GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-"),
            "{out}"
        );
    }

    #[test]
    fn compute_apps_for_the_sampler_and_busy_gpus() {
        let d = tempfile::tempdir().unwrap();
        let apps = [
            FakeApp {
                gpu: 1,
                pid: 4242,
                process_name: "/usr/bin/python3".into(),
                used_memory_mib: Some(10240),
            },
            FakeApp {
                gpu: 1,
                pid: 4243,
                process_name: "it's python".into(),
                used_memory_mib: None,
            },
            FakeApp {
                gpu: 2,
                pid: 77,
                process_name: "train".into(),
                used_memory_mib: Some(512),
            },
        ];
        install_fake_nvidia_smi_with_apps(d.path(), FakeGpu::Healthy { count: 4 }, &apps);
        let (rc, out) = run(
            d.path(),
            &[
                &format!("--query-compute-apps={QUERY_SAMPLER_APPS_FIELDS}"),
                FMT,
            ],
        );
        assert_eq!(rc, 0);
        let (u1, u2) = (fake_gpu_uuid(1), fake_gpu_uuid(2));
        assert_eq!(
            out,
            format!("{u1}, 4242, 10240\n{u1}, 4243, [N/A]\n{u2}, 77, 512\n")
        );
        let (rc, out) = run(
            d.path(),
            &[
                &format!("--query-compute-apps={QUERY_APPS_FIELDS}"),
                "--format=csv",
            ],
        );
        assert_eq!(rc, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "pid, process_name, used_memory [MiB]");
        assert_eq!(lines[1], "4242, /usr/bin/python3, 10240 MiB");
        assert_eq!(lines[2], "4243, it's python, [N/A]");

        // Busy GPUs: utilization and memory follow their processes; idle ones stay idle.
        let (rc, out) = run(d.path(), &[&query(), FMT]);
        assert_eq!(rc, 0);
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split(", ").collect()).collect();
        assert_eq!(rows[0][4..6], ["0", "4"]);
        assert_eq!(rows[1][4..6], ["97", "10244"]);
        assert_eq!(rows[2][4..6], ["97", "516"]);
        assert_eq!(
            rows[3],
            healthy_gpu_line(3, None).split(", ").collect::<Vec<_>>()
        );
    }

    #[test]
    fn lost_hot_driver_error_and_switch() {
        let d = tempfile::tempdir().unwrap();
        install_fake_nvidia_smi(
            d.path(),
            FakeGpu::Lost {
                count: 4,
                lost_index: 2,
            },
        );
        let (rc, out) = run(d.path(), &[&query(), FMT]);
        assert_eq!(rc, EXIT_GPU_LOST);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2], lost_gpu_line(2));
        assert_eq!(
            lines[2],
            "Unable to determine the device handle for GPU0000:47:00.0: GPU is lost.  Reboot the system to recover this GPU"
        );
        assert_eq!(lines[3], healthy_gpu_line(3, None));
        let (rc, _) = run(
            d.path(),
            &[&format!("--query-compute-apps={QUERY_APPS_FIELDS}"), FMT],
        );
        assert_eq!(rc, EXIT_GPU_LOST);

        install_fake_nvidia_smi(
            d.path(),
            FakeGpu::Hot {
                count: 2,
                hot_index: 1,
                temp_c: 91,
            },
        );
        let (rc, out) = run(d.path(), &[&query(), FMT]);
        assert_eq!(rc, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1].split(", ").nth(3), Some("91"));
        assert_eq!(lines[1], healthy_gpu_line(1, Some(91)));

        install_fake_nvidia_smi(d.path(), FakeGpu::DriverError);
        let (rc, out) = run(d.path(), &[&query(), FMT]);
        assert_eq!(rc, EXIT_DRIVER_ERROR);
        assert_eq!(out.trim_end(), DRIVER_ERROR_MESSAGE);
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "temp files left behind"
        );
    }
}
