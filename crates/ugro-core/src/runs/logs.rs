//! Which files are a run's logs: the kind's own patterns (`train_val*.log`, `eval_*.log`), any
//! `*.log` in the run's `logs/` subfolder (the long-job layout, `logs/training_*.log`), and a
//! root's `log_globs` (`*` and `?` within one path component, matched on the path relative to
//! the run dir).

use super::{RunView, RunnerKind, is_log_of};

/// The run subfolder whose `*.log` files are logs of the run, whatever its kind.
pub const LOGS_DIR: &str = "logs";
/// Most path components a `log_globs` pattern may have (`NAME` or `DIR/NAME`): a scan lists
/// at most one level below a run dir for logs.
pub const MAX_LOG_GLOB_DEPTH: usize = 2;
/// Longest `log_globs` pattern accepted.
pub const MAX_LOG_GLOB_LEN: usize = 256;

/// Whether `path` (relative to the run dir, `/`-separated) matches `pattern`: `*` matches any
/// run of characters and `?` one character, neither across a `/`; everything else literally.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    pat.len() == parts.len()
        && pat
            .iter()
            .zip(&parts)
            .all(|(p, s)| component_match(p.as_bytes(), s.as_bytes()))
}

/// One component: iterative wildcard matching with one back-tracking point (linear in practice,
/// never exponential).
fn component_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                // `?` consumes one whole UTF-8 character.
                let len = if c == b'?' { utf8_len(s[si]) } else { 1 };
                pi += 1;
                si = (si + len).min(s.len());
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    while si < s.len() && (s[si] & 0xC0) == 0x80 {
                        si += 1;
                    }
                    star = Some((sp, si));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Why a `log_globs` pattern is refused, or `None` when it is usable: relative, no `.` or `..`
/// components, no empty component, at most [`MAX_LOG_GLOB_DEPTH`] components (wildcards only
/// in the last), at most [`MAX_LOG_GLOB_LEN`] bytes.
pub fn log_glob_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("empty pattern".into());
    }
    if pattern.len() > MAX_LOG_GLOB_LEN {
        return Some(format!("longer than {MAX_LOG_GLOB_LEN} bytes"));
    }
    if pattern.starts_with('/') {
        return Some("must be relative to the run dir".into());
    }
    let parts: Vec<&str> = pattern.split('/').collect();
    if parts.len() > MAX_LOG_GLOB_DEPTH {
        return Some(format!(
            "at most {MAX_LOG_GLOB_DEPTH} path components (NAME or DIR/NAME)"
        ));
    }
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Some("empty, `.` or `..` path component".into());
    }
    if parts[..parts.len() - 1]
        .iter()
        .any(|p| p.contains(['*', '?']))
    {
        return Some("wildcards are allowed only in the file name, not in the directory".into());
    }
    None
}

/// The sub-directories a scan lists for logs besides the run dir: [`LOGS_DIR`] and the
/// directory part of each glob.
pub fn log_dirs(globs: &[String]) -> Vec<&str> {
    let mut dirs = vec![LOGS_DIR];
    for g in globs {
        if let Some((d, _)) = g.split_once('/')
            && !dirs.contains(&d)
        {
            dirs.push(d);
        }
    }
    dirs
}

/// Whether `path` (relative to the run dir) is one of the run's logs for a run of `kind`: the
/// kind's pattern ([`is_log_of`], which includes `logs/*.log`) or one of `globs`.
pub fn is_run_log(kind: RunnerKind, globs: &[String], path: &str) -> bool {
    is_log_of(kind, path) || globs.iter().any(|g| glob_match(g, path))
}

/// Every log file of a run whatever its kind (the choice offered by the logs API): any `*.log`
/// in the run dir or `logs/`, and the root's globs; by name.
pub fn all_logs(view: &RunView) -> Vec<&str> {
    view.files
        .keys()
        .map(String::as_str)
        .filter(|n| is_run_log(RunnerKind::Unknown, &view.log_globs, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs_match_within_components() {
        assert!(glob_match("*.out", "job.out"));
        assert!(glob_match("stdout/*.txt", "stdout/a.txt"));
        assert!(!glob_match("*.out", "stdout/job.out"), "* never crosses /");
        assert!(glob_match("job_??.err", "job_12.err"));
        assert!(!glob_match("job_??.err", "job_1.err"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("*", "é.log"));
        assert!(glob_match("?.log", "é.log"));
        assert!(glob_match("run.log", "run.log"));
        assert!(!glob_match("run.log", "run.log.1"));
    }

    #[test]
    fn glob_problems() {
        assert_eq!(log_glob_problem("*.out"), None);
        assert_eq!(log_glob_problem("stdout/*.txt"), None);
        for bad in [
            "",
            "/var/log/*.log",
            "a/b/c.log",
            "../x.log",
            "./x",
            "a//b",
            "*/x.log",
        ] {
            assert!(log_glob_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn the_logs_subfolder_counts_for_every_kind() {
        for k in RunnerKind::ALL {
            assert!(is_run_log(k, &[], "logs/training_20251110.log"), "{k}");
            assert!(!is_run_log(k, &[], "logs/notes.txt"), "{k}");
        }
        for k in [RunnerKind::Trainer, RunnerKind::Evaluator] {
            assert!(!is_run_log(k, &[], "logs/deep/x.log"), "{k}");
        }
        let globs = vec!["*.out".to_string(), "stdout/*.txt".to_string()];
        assert!(is_run_log(RunnerKind::Trainer, &globs, "job.out"));
        assert!(is_run_log(RunnerKind::Trainer, &globs, "stdout/1.txt"));
        assert!(!is_run_log(RunnerKind::Trainer, &globs, "notes.txt"));
        assert_eq!(log_dirs(&globs), vec!["logs", "stdout"]);
    }

    #[test]
    fn the_newest_log_may_be_in_logs_or_matched_by_a_glob() {
        use crate::runs::evaluate;
        use crate::runs::fixtures::{H, trainer};
        let v = trainer(2, 10)
            .file("train_val.log", 10, H)
            .file("logs/training_20251110.log", 10, 2 * H)
            .build();
        let e = evaluate(&v, None);
        assert_eq!(
            e.newest_log.map(|(n, _)| n).as_deref(),
            Some("logs/training_20251110.log")
        );
        let mut v = trainer(2, 10)
            .file("train_val.log", 10, H)
            .file("job.out", 10, 3 * H)
            .build();
        assert_eq!(
            evaluate(&v, None).newest_log.map(|(n, _)| n).as_deref(),
            Some("train_val.log")
        );
        v.log_globs = vec!["*.out".into()];
        let e = evaluate(&v, None);
        assert_eq!(e.newest_log.map(|(n, _)| n).as_deref(), Some("job.out"));
        assert_eq!(all_logs(&v), ["job.out", "train_val.log"]);
    }

    proptest! {
        #[test]
        fn a_literal_pattern_matches_only_itself(s in "[a-z_./]{0,12}", t in "[a-z_./]{0,12}") {
            prop_assume!(!s.contains(['*', '?']));
            prop_assert_eq!(glob_match(&s, &t), s == t);
        }

        #[test]
        fn star_matches_any_component(s in "[^/]{0,16}") {
            prop_assert!(glob_match("*", &s));
            let with_suffix = format!("{s}.log");
            prop_assert!(glob_match("*.log", &with_suffix));
        }

        #[test]
        fn matching_never_panics(p in ".{0,20}", s in ".{0,40}") {
            let _ = glob_match(&p, &s);
            let _ = log_glob_problem(&p);
        }
    }
}
