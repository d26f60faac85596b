//! /proc/loadavg: the 1, 5 and 15 minute load averages, and the load check built from them.

use serde_json::json;

use super::{ParseError, line_error};
use crate::health::{CheckName, CheckResult, LOAD_BUSY_PER_CORE, fmt_num};

/// Parses /proc/loadavg (`0.52 0.58 0.59 2/1234 56789`) into the 1, 5 and 15 minute averages.
pub fn loadavg(text: &str) -> Result<(f64, f64, f64), ParseError> {
    const WHAT: &str = "loadavg";
    let Some((i, line)) = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(ParseError::Missing {
            what: WHAT,
            field: "load averages",
        });
    };
    let line = line.trim();
    let nums: Vec<Option<f64>> = line
        .split_whitespace()
        .take(3)
        .map(|t| t.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0))
        .collect();
    match nums.as_slice() {
        [Some(a), Some(b), Some(c)] => Ok((*a, *b, *c)),
        _ => Err(line_error(
            WHAT,
            i + 1,
            line,
            "expected three load averages",
        )),
    }
}

/// The load check, on the load per core. Overloaded — both the 5- and the 15-minute averages
/// above `per_core_max` runnable tasks per core (sustained, and still so) — fails. Busy — the
/// 15-minute average above [`LOAD_BUSY_PER_CORE`] (or `per_core_max` when lower), or only the
/// 5-minute one above `per_core_max` — fails as a warning only ([`CheckResult::warn`]): the
/// score drops, the state holds. Value: `{"load1", "load5", "load15"}`; threshold: the
/// overloaded load (`cores × per_core_max`). Skipped when the core count is unknown (0).
pub fn load_check(
    (load1, load5, load15): (f64, f64, f64),
    cores: u32,
    per_core_max: f64,
) -> CheckResult {
    if cores == 0 {
        return CheckResult::skipped(CheckName::Load, "core count unknown");
    }
    let value = json!({"load1": load1, "load5": load5, "load15": load15});
    let n = f64::from(cores);
    let plural = if cores == 1 { "" } else { "s" };
    let busy_per_core = LOAD_BUSY_PER_CORE.min(per_core_max);
    let (per5, per15) = (load5 / n, load15 / n);
    let what = format!("load {load15:.2} (15 min), {load5:.2} (5 min) on {cores} core{plural}");
    let result = if per5 > per_core_max && per15 > per_core_max {
        CheckResult::fail(
            CheckName::Load,
            format!(
                "overloaded: {what}, {per15:.2} per core > {}",
                fmt_num(per_core_max)
            ),
        )
    } else if per15 > busy_per_core {
        CheckResult::warn(
            CheckName::Load,
            format!(
                "busy: {what}, {per15:.2} per core > {} over 15 min; overloaded above {} per core",
                fmt_num(busy_per_core),
                fmt_num(per_core_max)
            ),
        )
    } else if per5 > per_core_max {
        CheckResult::warn(
            CheckName::Load,
            format!(
                "busy: {what}, {per5:.2} per core > {} over 5 min; overloaded when the 15-minute average is above it too",
                fmt_num(per_core_max)
            ),
        )
    } else {
        CheckResult::pass(CheckName::Load, format!("{what}, {per15:.2} per core"))
    };
    result
        .with_value(value)
        .with_threshold(json!(n * per_core_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_loadavg() {
        assert_eq!(
            loadavg("0.52 0.58 0.59 2/1234 56789\n").unwrap(),
            (0.52, 0.58, 0.59)
        );
        assert_eq!(
            loadavg("\n12.04 9.80 7.15 17/2048 1234").unwrap(),
            (12.04, 9.8, 7.15)
        );
        let err = loadavg("0.52 zero\n").unwrap_err();
        assert!(err.to_string().contains("\"0.52 zero\""), "{err}");
        assert!(matches!(loadavg(""), Err(ParseError::Missing { .. })));
    }
}
