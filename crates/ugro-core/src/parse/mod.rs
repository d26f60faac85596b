//! Parsers of probe output (nvidia-smi CSV, df, /proc/loadavg, /proc/meminfo, `ps`, the PyTorch
//! probe, batched remote command sections) and the gpu, disk, load, memory and pytorch checks
//! built from what they parse. This module owns [`ParseError`]; each probe has its own module,
//! re-exported here so callers use `parse::<item>`.

mod df;
mod loadavg;
mod meminfo;
mod nvidia_smi;
mod ps;
mod pytorch;
mod sections;

pub use df::{DiskUsage, df_bytes, df_inodes, disk_check, disk_usage, human_bytes};
pub use loadavg::{load_check, loadavg};
pub use meminfo::{DEFAULT_MIN_AVAILABLE_FRACTION, meminfo, memory_check};
pub use nvidia_smi::{GpuReading, NVIDIA_SMI_QUERY, NvidiaSmi, gpu_check, nvidia_smi_gpus};
pub use ps::{PS_COMMAND, PsProcess, ps_processes};
pub use pytorch::{PYTORCH_PROBE, pytorch_check};
pub use sections::{section_rc, sections};

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
