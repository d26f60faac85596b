//! Resource samples (GPU, CPU, memory per node and instant) as the sampler stores them and the
//! nightly summary reads them, and the pure parsing of the sampler's probe output.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
