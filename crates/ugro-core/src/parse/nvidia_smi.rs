//! nvidia-smi: the `--query-gpu` CSV it prints, and the gpu check built from it.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ParseError, line_error};
use crate::health::{CheckName, CheckResult};

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
}
