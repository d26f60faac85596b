//! Trainer epochs: which are complete, their completion times, and the robust median epoch time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::failure::truncate_chars;
use super::{EpochView, RunView, TRAINER_EXPECTED};

/// A gap between two epoch completions longer than this many times the plain median is a
/// restart (the run was down), not an epoch, and [`median_epoch_duration`] leaves it out.
pub const RESTART_GAP_FACTOR: u32 = 5;

/// Why an epoch is not complete (the first expected file, in [`TRAINER_EXPECTED`] order, that is
/// missing, empty, unread or invalid JSON), or `None` when it is complete.
pub fn epoch_gap(e: &EpochView) -> Option<String> {
    for name in TRAINER_EXPECTED {
        match e.files.get(name) {
            None => return Some(format!("{name} missing")),
            Some(f) if f.size == 0 => return Some(format!("{name} empty")),
            Some(_) => {}
        }
        if name.ends_with(".json") {
            match e.json.get(name) {
                None => return Some(format!("{name} not read")),
                Some(Err(reason)) => {
                    return Some(format!("{name}: {}", truncate_chars(reason, 160)));
                }
                Some(Ok(_)) => {}
            }
        }
    }
    None
}

/// Every expected file exists, is non-empty and (for `.json`) parses.
pub fn epoch_complete(e: &EpochView) -> bool {
    epoch_gap(e).is_none()
}

/// Epochs counted from `epoch_0` upward while complete; the first gap stops the count. The
/// summarised epochs ([`RunView::completed`]) count, then the read ones that follow them.
pub fn completed_epochs(view: &RunView) -> u32 {
    let mut n = view.completed.count();
    while view.epochs.get(&n).is_some_and(epoch_complete) {
        n += 1;
    }
    n
}

/// The newest file mtime of each of the first `completed` epochs, in epoch order (epochs the view
/// lacks or that hold no files are skipped).
pub fn epoch_completion_times(view: &RunView, completed: u32) -> Vec<DateTime<Utc>> {
    let summarised = view.completed.count().min(completed);
    let mut out: Vec<DateTime<Utc>> = view.completed.times[..summarised as usize].to_vec();
    out.extend(
        (summarised..completed)
            .filter_map(|i| view.epochs.get(&i))
            .filter_map(|e| e.files.values().map(|f| f.mtime).max()),
    );
    out
}

fn median_of_sorted(xs: &[f64]) -> Option<f64> {
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// Robust median time per epoch. Takes the durations between consecutive completion times
/// (sorted first), computes the lower median `m`, drops durations longer than
/// [`RESTART_GAP_FACTOR`] × `m` (the run was down: a restart, not an epoch), and returns the
/// median of the rest. `None` with fewer than 2 times.
pub fn median_epoch_duration(times: &[DateTime<Utc>]) -> Option<Duration> {
    if times.len() < 2 {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut diffs: Vec<f64> = sorted
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1000.0)
        .collect();
    diffs.sort_by(f64::total_cmp);
    let lower_median = diffs[(diffs.len() - 1) / 2];
    let limit = lower_median * f64::from(RESTART_GAP_FACTOR);
    let kept: Vec<f64> = diffs.into_iter().filter(|d| *d <= limit).collect();
    let m = median_of_sorted(&kept)?;
    Duration::try_from_secs_f64(m).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::fixtures::*;

    #[test]
    fn empty_expected_file_stops_the_count() {
        let mut e1 = plain_epoch(2 * H);
        e1.files.insert("training_losses.pt".into(), fi(0, 2 * H));
        assert!(!epoch_complete(&e1));
        assert_eq!(epoch_gap(&e1), Some("training_losses.pt empty".into()));
        let v = B::default()
            .epoch(0, plain_epoch(H))
            .epoch(1, e1)
            .epoch(2, plain_epoch(3 * H))
            .build();
        assert_eq!(completed_epochs(&v), 1);
    }

    #[test]
    fn unread_json_expected_file_is_not_complete() {
        let mut e = plain_epoch(H);
        e.json.remove("optimizer_buffer.json");
        assert_eq!(epoch_gap(&e), Some("optimizer_buffer.json not read".into()));
    }

    #[test]
    fn completion_time_is_newest_artifact_per_epoch() {
        let mut e0 = plain_epoch(H);
        e0.files.insert("extra.txt".into(), fi(1, H + 500));
        let v = B::default()
            .epoch(0, e0)
            .epoch(1, plain_epoch(2 * H))
            .epoch(2, plain_epoch(3 * H))
            .build();
        assert_eq!(epoch_completion_times(&v, 2), vec![at(H + 500), at(2 * H)]);
        assert!(epoch_completion_times(&v, 0).is_empty());
    }

    #[test]
    fn median_needs_two_times() {
        assert_eq!(median_epoch_duration(&[]), None);
        assert_eq!(median_epoch_duration(&[at(0)]), None);
        assert_eq!(
            median_epoch_duration(&[at(0), at(H)]),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn median_of_regular_epochs() {
        let times = [at(0), at(H), at(3 * H), at(4 * H), at(6 * H)];
        // diffs 1, 2, 1, 2 h → median 1.5 h
        assert_eq!(
            median_epoch_duration(&times),
            Some(Duration::from_secs(5400))
        );
        // Order does not matter.
        let mut shuffled = times;
        shuffled.reverse();
        assert_eq!(
            median_epoch_duration(&shuffled),
            Some(Duration::from_secs(5400))
        );
    }

    #[test]
    fn median_is_robust_to_a_restart_gap() {
        // 1 h epochs, the run was down for a day between epochs 3 and 4.
        let times = [at(0), at(H), at(2 * H), at(3 * H), at(27 * H), at(28 * H)];
        assert_eq!(
            median_epoch_duration(&times),
            Some(Duration::from_secs(3600))
        );
        // Even with only three completions.
        let times = [at(0), at(H), at(21 * H)];
        assert_eq!(
            median_epoch_duration(&times),
            Some(Duration::from_secs(3600))
        );
        // Moderate variation is not a restart.
        let times = [at(0), at(H), at(3 * H)];
        assert_eq!(
            median_epoch_duration(&times),
            Some(Duration::from_secs(5400))
        );
    }
}
