//! This machine's own readings, for every part that needs them (health, run tracking,
//! sampler): local programs run with a deadline ([`run_local`]) and NVML — loaded once and
//! kept, its absence retried at most every [`NVML_RETRY`] and logged once — read by one function
//! that returns the GPUs and their compute processes together ([`gpus_and_apps`]).

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ugro_core::parse::GpuReading;
use ugro_core::sample::ComputeApp;

use crate::ssh::{Exec, ExecOutput, MAX_OUTPUT};

/// How long NVML's absence (no driver) is believed before loading it is tried again: a driver
/// may be installed while the daemon runs.
pub const NVML_RETRY: Duration = Duration::from_secs(300);

/// Runs a local program with a deadline; killed when it overruns. A missing program is exit
/// status 127, as from a shell.
pub async fn run_local(program: &str, args: &[&str], deadline: Duration) -> Result<Exec, String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Exec::Done(ExecOutput {
                exit_status: Some(127),
                stderr: format!("{program}: not found"),
                ..Default::default()
            }));
        }
        Err(e) => return Err(format!("cannot run {program}: {e}")),
    };
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Exec::Done(ExecOutput {
            stdout: String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(MAX_OUTPUT)])
                .into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(MAX_OUTPUT)])
                .into_owned(),
            exit_status: out.status.code().map(|c| c as u32),
            truncated: out.stdout.len() > MAX_OUTPUT,
        })),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        // Dropping the future drops the child: kill_on_drop kills it.
        Err(_) => Ok(Exec::Hung),
    }
}

/// What NVML reads of this machine in one pass.
#[derive(Debug, Clone, Default)]
pub struct NvmlReadings {
    pub gpus: Vec<GpuReading>,
    /// The compute processes on those GPUs; `None` when NVML could not list them (then the
    /// readings are still good).
    pub apps: Option<Vec<ComputeApp>>,
}

static NVML: OnceLock<nvml_wrapper::Nvml> = OnceLock::new();
/// Why NVML is absent, and since when that is believed.
static ABSENT: Mutex<Option<(Instant, String)>> = Mutex::new(None);
static ABSENT_LOGGED: std::sync::Once = std::sync::Once::new();

/// The loaded NVML, loading it when it is not and its absence is not recent news.
fn nvml() -> Result<&'static nvml_wrapper::Nvml, String> {
    if let Some(n) = NVML.get() {
        return Ok(n);
    }
    let mut absent = ABSENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((since, why)) = absent.as_ref()
        && since.elapsed() < NVML_RETRY
    {
        return Err(why.clone());
    }
    match nvml_wrapper::Nvml::init() {
        Ok(n) => {
            *absent = None;
            Ok(NVML.get_or_init(|| n))
        }
        Err(e) => {
            let why = e.to_string();
            ABSENT_LOGGED.call_once(|| {
                tracing::info!(reason = %why, "NVML not available on this machine; using nvidia-smi if present");
            });
            *absent = Some((Instant::now(), why.clone()));
            Err(why)
        }
    }
}

/// Reads every GPU and its compute processes through NVML (blocking; see [`gpus_and_apps`]).
/// `Err` with the reason when NVML is absent or fails.
pub fn nvml_readings() -> Result<NvmlReadings, String> {
    use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
    use nvml_wrapper::enums::device::UsedGpuMemory;
    let nvml = nvml()?;
    let count = nvml.device_count().map_err(|e| e.to_string())?;
    let mut out = NvmlReadings {
        gpus: Vec::new(),
        apps: Some(Vec::new()),
    };
    for i in 0..count {
        let d = nvml
            .device_by_index(i)
            .map_err(|e| format!("GPU {i}: {e}"))?;
        let mem = d.memory_info().ok();
        let uuid = d.uuid().unwrap_or_default();
        match (d.running_compute_processes(), out.apps.as_mut()) {
            (Ok(procs), Some(list)) => list.extend(procs.into_iter().map(|p| ComputeApp {
                gpu_uuid: uuid.clone(),
                pid: p.pid,
                used_memory_mib: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b / (1024 * 1024)),
                    UsedGpuMemory::Unavailable => None,
                },
            })),
            _ => out.apps = None,
        }
        out.gpus.push(GpuReading {
            index: i,
            uuid,
            name: d.name().unwrap_or_default(),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
            utilization_pct: d.utilization_rates().ok().map(|u| f64::from(u.gpu)),
            memory_used_mib: mem.as_ref().map(|m| m.used as f64 / 1048576.0),
            memory_total_mib: mem.as_ref().map(|m| m.total as f64 / 1048576.0),
            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
            ecc_uncorrected: d
                .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
                .ok(),
        });
    }
    Ok(out)
}

/// How reading NVML within a deadline went.
#[derive(Debug)]
pub enum NvmlOutcome {
    Read(NvmlReadings),
    /// NVML is absent or failed; the reason (fall back to `nvidia-smi`).
    Absent(String),
    /// The reader did not answer within the deadline (a wedged driver).
    Hung,
}

/// [`nvml_readings`] off the async runtime, within `deadline`.
pub async fn gpus_and_apps(deadline: Duration) -> NvmlOutcome {
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(nvml_readings)).await {
        Ok(Ok(Ok(r))) => NvmlOutcome::Read(r),
        Ok(Ok(Err(why))) => NvmlOutcome::Absent(why),
        Ok(Err(e)) => NvmlOutcome::Absent(format!("the NVML reader failed: {e}")),
        Err(_) => NvmlOutcome::Hung,
    }
}
