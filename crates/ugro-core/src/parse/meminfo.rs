//! /proc/meminfo: total and available memory, and the memory check built from them.

use serde_json::json;

use super::{ParseError, human_bytes, line_error};
use crate::health::{CheckName, CheckResult, fmt_num};

/// Default fraction of memory that must stay available (the memory check's threshold).
pub const DEFAULT_MIN_AVAILABLE_FRACTION: f64 = 0.05;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Outcome;
    use crate::parse::load_check;

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
}
