//! The nightly summary: snapshots of runs and nodes, their diff, the window's events and
//! samples, and the Markdown/HTML rendering (docs/ARCHITECTURE.md "Contracts" → Semantics, summary).
//!
//! [`build`] is pure and linear-ish in its input (runs are looked up in a hash map, samples are
//! grouped once per node and per sampling bucket); [`render_markdown`], [`render_html`] and
//! [`subject`] only format a built [`Summary`]. The [`Summary`] keeps every item; the renderers
//! cap long lists ([`LIST_CAP`], [`EVENT_CAP`]) and say how many were left out.
//!
//! Decisions where the design is silent:
//! - The window is half-open at its start: a time `t` is in it iff `window_start < t <= window_end`,
//!   so consecutive windows never count the same moment twice.
//! - A run the previous snapshot did not know (or every run, for the first summary) is judged by
//!   its timestamps: it finished or failed in the window when its `last_update` is in the window;
//!   its new epochs are all of them when it started in the window, else those whose
//!   `epoch_times` fall in the window. A stuck run it did not know counts as newly stuck.
//! - Only bottlenecks, besides run changes and key events, make a window not quiet; idle
//!   periods alone do not.
//! - "At one instant" means one sampling bucket: `floor(at / sample_interval)`; a bucket's time is
//!   its earliest sample.
//! - Epoch progress is reported for trainer and generic runs (evaluators have no epochs).
//! - Durations are reported only when strictly longer than one hour ("more than one hour"), and
//!   measured from the first to the last sample that met the condition.
//! - The fourth bottleneck first planned ("planned experiments waiting while no GPU is idle") needs a
//!   queue of planned experiments, which ugro-monitor does not have; it is not reported.
//!
//! One module per section, all re-exported here: `input` (snapshots, events, the build input),
//! `model` (the summary's content), `build`, `headline` (headline counts and the subject),
//! `markdown` and `html`.

mod build;
#[cfg(test)]
mod fixtures;
mod headline;
mod html;
mod input;
mod markdown;
mod model;

pub use build::{
    DEFAULT_LONG_RUNNING, GPU_BUSY_PCT, GPU_IDLE_PCT, KEY_EVENT_KINDS, MEMORY_LOW_PCT,
    MIN_CONDITION, NEAR_COMPLETION_PCT, REASON_MAX_CHARS, build,
};
pub use headline::{headline, subject};
pub use html::render_html;
pub use input::{EventRecord, NodeSnapshot, ProcessSnapshot, RunSnapshot, Snapshot, SummaryInput};
pub use markdown::{EVENT_CAP, EVENT_MAX_CHARS, LIST_CAP, neutralise_controls, render_markdown};
pub use model::{
    Bottleneck, BottleneckKind, CpuUsage, EpochChange, EpochProgress, EpochRange, Eta,
    ExperimentStats, FailedRun, GpuRef, GpuUsage, Headline, IdlePeriod, LongRunning,
    NearCompletion, NodeHealth, NodeRef, NodeUsage, ProgressOverview, ResourceUtilization, RunRef,
    StatusCounts, Summary,
};
