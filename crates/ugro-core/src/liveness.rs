//! Which background tasks are alive, judged from when each last reported ("beat") against the
//! longest gap it promised. The daemon's systemd watchdog pings only while all are alive.

use std::time::Duration;

/// What a task promised and when it last kept the promise. Times are offsets from any fixed
/// origin chosen by the caller (e.g. the daemon's start), so this stays clock-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub task: String,
    /// When the task last reported, as time since the caller's origin.
    pub last: Duration,
    /// Longest gap between two reports that still counts as alive.
    pub max_gap: Duration,
    /// Set when the task has ended (returned or panicked); an ended task is never alive.
    pub ended: bool,
}

/// One task that is not alive and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    pub task: String,
    /// Time since its last report.
    pub silent_for: Duration,
    pub ended: bool,
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ended {
            write!(f, "task '{}' has ended", self.task)
        } else {
            write!(
                f,
                "task '{}' silent for {}s",
                self.task,
                self.silent_for.as_secs()
            )
        }
    }
}

/// Is this beat alive at `now`?
pub fn is_alive(beat: &Beat, now: Duration) -> bool {
    !beat.ended && now.saturating_sub(beat.last) <= beat.max_gap
}

/// The tasks that are not alive at `now`, in the order given.
pub fn stalled(beats: &[Beat], now: Duration) -> Vec<Stalled> {
    beats
        .iter()
        .filter(|b| !is_alive(b, now))
        .map(|b| Stalled {
            task: b.task.clone(),
            silent_for: now.saturating_sub(b.last),
            ended: b.ended,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(task: &str, last: u64, max_gap: u64) -> Beat {
        Beat {
            task: task.into(),
            last: Duration::from_secs(last),
            max_gap: Duration::from_secs(max_gap),
            ended: false,
        }
    }

    #[test]
    fn alive_within_gap_and_stalled_past_it() {
        let b = beat("housekeeping", 100, 60);
        assert!(is_alive(&b, Duration::from_secs(100)));
        assert!(is_alive(&b, Duration::from_secs(160)));
        assert!(!is_alive(&b, Duration::from_secs(161)));
    }

    #[test]
    fn ended_task_is_never_alive() {
        let mut b = beat("control", 100, 60);
        b.ended = true;
        assert!(!is_alive(&b, Duration::from_secs(100)));
        let s = stalled(&[b], Duration::from_secs(100));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].to_string(), "task 'control' has ended");
    }

    #[test]
    fn reports_only_the_stalled_ones_with_their_silence() {
        let beats = [beat("a", 10, 5), beat("b", 18, 5), beat("c", 0, 30)];
        let s = stalled(&beats, Duration::from_secs(20));
        assert_eq!(
            s,
            vec![Stalled {
                task: "a".into(),
                silent_for: Duration::from_secs(10),
                ended: false
            }]
        );
        assert_eq!(s[0].to_string(), "task 'a' silent for 10s");
    }

    #[test]
    fn a_beat_from_the_future_counts_as_alive() {
        // A beat recorded after `now` was sampled must not underflow or count as silence.
        assert!(is_alive(&beat("a", 50, 1), Duration::from_secs(40)));
    }
}
