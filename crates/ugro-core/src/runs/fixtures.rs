//! Test fixtures shared by the runs modules' unit tests: times, files, epochs, a run view builder
//! and status rules.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::{CONFIG_JSON, EpochView, FileInfo, RunView, StatusRules, VALIDATION_SCORES};

pub(super) const H: i64 = 3600;

pub(super) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(secs)
}

pub(super) fn fi(size: u64, secs: i64) -> FileInfo {
    FileInfo {
        size,
        mtime: at(secs),
    }
}

/// A complete epoch whose files were written at `secs`, with these validation scores.
pub(super) fn epoch(secs: i64, scores: Value) -> EpochView {
    let mut e = EpochView::default();
    e.files
        .insert("training_losses.pt".into(), fi(1024, secs - 60));
    e.files
        .insert("optimizer_buffer.json".into(), fi(200, secs - 30));
    e.files.insert(VALIDATION_SCORES.into(), fi(100, secs));
    e.json
        .insert("optimizer_buffer.json".into(), Ok(json!({"lr": 0.001})));
    e.json.insert(VALIDATION_SCORES.into(), Ok(scores));
    e
}

pub(super) fn plain_epoch(secs: i64) -> EpochView {
    epoch(secs, json!({"acc": 0.5}))
}

#[derive(Default)]
pub(super) struct B(RunView);

impl B {
    pub(super) fn file(mut self, name: &str, size: u64, secs: i64) -> Self {
        self.0.files.insert(name.into(), fi(size, secs));
        self
    }
    pub(super) fn json(mut self, name: &str, secs: i64, v: Value) -> Self {
        self.0.files.insert(name.into(), fi(100, secs));
        self.0.json.insert(name.into(), Ok(v));
        self
    }
    pub(super) fn json_err(mut self, name: &str, size: u64, secs: i64, reason: &str) -> Self {
        self.0.files.insert(name.into(), fi(size, secs));
        self.0.json.insert(name.into(), Err(reason.into()));
        self
    }
    pub(super) fn dir(mut self, name: &str) -> Self {
        self.0.add_subdir(name);
        self
    }
    pub(super) fn epoch(mut self, i: u32, e: EpochView) -> Self {
        self.0.add_subdir(&format!("epoch_{i}"));
        self.0.epochs.insert(i, e);
        self
    }
    /// Complete epochs 0..n, epoch i finished at `start + (i+1) × every`.
    pub(super) fn epochs(mut self, n: u32, start: i64, every: i64) -> Self {
        for i in 0..n {
            self = self.epoch(i, plain_epoch(start + (i64::from(i) + 1) * every));
        }
        self
    }
    pub(super) fn build(self) -> RunView {
        self.0
    }
}

pub(super) fn trainer(n: u32, total: u32) -> B {
    B::default()
        .json(CONFIG_JSON, 0, json!({"epochs": total}))
        .epochs(n, 0, H)
}

pub(super) fn rules() -> StatusRules {
    StatusRules {
        stall_after: Duration::from_secs(30 * 60),
        outdated_after: Duration::from_secs(30 * 86_400),
    }
}
