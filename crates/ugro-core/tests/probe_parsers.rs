//! Property tests of the probe parsers fed by the outside world — nvidia-smi CSV (readings and
//! compute apps), `ps`, `df`, /proc/loadavg, /proc/meminfo, /proc/stat, the batched-probe
//! sections, the PyTorch probe — and of the checks built from their numbers: arbitrary text and
//! extreme values (NaN, infinities, u64::MAX) never panic, and the output stays bounded by the
//! input. Cases per property: `UGRO_FUZZ_CASES` (default 256); the file runs in seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use ugro_core::parse;
use ugro_core::sample::{self, CpuTimes};

fn cases() -> u32 {
    std::env::var("UGRO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A field as a probe might print it: a number of any size or sign, a placeholder, junk.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
        Just("[N/A]".to_string()),
        Just("[Not Supported]".to_string()),
        Just("[GPU requires reset]".to_string()),
        Just("N/A".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just(String::new()),
        "[ -~]{0,12}",
        "GPU-[0-9a-f-]{0,36}",
    ]
}

/// Lines of `sep`-joined fields, `n` fields each (around what the parser expects).
fn lines(sep: &'static str, n: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::collection::vec(field(), n), 0..6).prop_map(move |rows| {
        rows.iter()
            .map(|r| r.join(sep))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A well-formed nvidia-smi reading line with any numbers in its numeric fields (so the checks
/// behind the parser see NaN, infinities and huge values too).
fn gpu_line() -> impl Strategy<Value = String> {
    (
        any::<u32>(),
        "GPU-[0-9a-f]{8}",
        prop::collection::vec(
            prop_oneof![
                any::<f64>().prop_map(|f| f.to_string()),
                Just("[N/A]".to_string())
            ],
            5,
        ),
        prop_oneof![
            any::<u64>().prop_map(|u| u.to_string()),
            Just("[N/A]".to_string())
        ],
    )
        .prop_map(|(i, uuid, nums, ecc)| {
            format!("{i}, {uuid}, NVIDIA A100, {}, {ecc}", nums.join(", "))
        })
}

/// A well-formed `ps -eo pid=,user=,etimes=,args=` line with any numbers and arguments.
fn ps_line() -> impl Strategy<Value = String> {
    (any::<u64>(), "[a-z]{0,8}", any::<i64>(), ".{0,60}")
        .prop_map(|(pid, user, et, args)| format!("{pid:>7} {user} {et:>8} {args}"))
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nvidia_smi_csv_never_panics(
        text in prop_oneof![
            lines(", ", 7..11),
            ".{0,300}",
            prop::collection::vec(gpu_line(), 0..9).prop_map(|l| l.join("\n")),
        ]
    ) {
        let n_lines = text.lines().count();
        if let Ok(smi) = parse::nvidia_smi_gpus(&text) {
            prop_assert!(smi.gpus.len() + smi.problems.len() <= n_lines);
            for expected in [None, Some(0), Some(8), Some(u32::MAX)] {
                for exit_ok in [true, false] {
                    let c = parse::gpu_check(&smi, expected, exit_ok);
                    prop_assert!(!c.message.is_empty());
                    prop_assert!(serde_json::to_string(&c.value).is_ok());
                }
            }
        }
    }

    #[test]
    fn compute_apps_never_panic(text in prop_oneof![lines(", ", 2..4), ".{0,300}"]) {
        prop_assert!(sample::compute_apps(&text).len() <= text.lines().count());
    }

    #[test]
    fn ps_never_panics(
        text in prop_oneof![
            lines(" ", 3..6),
            ".{0,300}",
            prop::collection::vec(ps_line(), 0..9).prop_map(|l| l.join("\n")),
        ]
    ) {
        for p in parse::ps_processes(&text) {
            prop_assert!(p.args.len() <= text.len());
        }
    }

    #[test]
    fn df_never_panics(text in prop_oneof![lines(" ", 3..7), ".{0,300}"], min_free in any::<u64>()) {
        let bytes = parse::df_bytes(&text).unwrap_or_default();
        let inodes = parse::df_inodes(&text).unwrap_or_default();
        prop_assert!(bytes.len() <= text.lines().count());
        let disks = parse::disk_usage(&bytes, &inodes);
        let c = parse::disk_check(&disks, min_free);
        prop_assert!(!c.message.is_empty());
    }

    #[test]
    fn loadavg_and_load_check_never_panic(
        text in prop_oneof![lines(" ", 3..6), ".{0,80}"],
        loads in (any::<f64>(), any::<f64>(), any::<f64>()),
        cores in any::<u32>(),
        per_core in any::<f64>(),
    ) {
        let _ = parse::loadavg(&text);
        let c = parse::load_check(loads, cores, per_core);
        prop_assert!(!c.message.is_empty());
        prop_assert!(serde_json::to_string(&c.value).is_ok());
    }

    #[test]
    fn meminfo_and_memory_check_never_panic(
        text in "((MemTotal|MemAvailable|MemFree|Cached|Junk): {0,8}[0-9a-z ]{0,24}\n){0,6}",
        total in any::<u64>(),
        available in any::<u64>(),
        fraction in any::<f64>(),
    ) {
        let _ = parse::meminfo(&text);
        let c = parse::memory_check(total, available, fraction);
        prop_assert!(!c.message.is_empty());
    }

    #[test]
    fn proc_stat_and_cpu_pct_never_panic(
        text in prop_oneof!["cpu ( {0,2}[0-9]{0,22}){0,12}\n.{0,40}", ".{0,120}"],
        a in prop::collection::vec(any::<u64>(), 4..10),
        b in prop::collection::vec(any::<u64>(), 4..10),
    ) {
        let _ = CpuTimes::parse(&text);
        let line = |v: &[u64]| format!("cpu  {}", v.iter().map(u64::to_string).collect::<Vec<_>>().join(" "));
        if let (Ok(x), Ok(y)) = (CpuTimes::parse(&line(&a)), CpuTimes::parse(&line(&b)))
            && let Some(p) = sample::cpu_pct(x, y)
        {
            prop_assert!((0.0..=100.0).contains(&p), "{p}");
        }
    }

    #[test]
    fn sections_and_samples_never_panic(
        parts in prop::collection::vec(
            (prop::sample::select(vec!["loadavg", "meminfo", "stat", "nproc", "gpus", "apps", "junk"]),
             prop::option::of(any::<i32>()),
             ".{0,80}"),
            0..8,
        ),
    ) {
        // The batched output: each part behind its marker, some with an exit code line.
        let mut out = String::new();
        for (name, rc, body) in &parts {
            out.push_str(&format!("{}{name}\n{body}\n", sample::SAMPLE_MARKER));
            if let Some(rc) = rc {
                out.push_str(&format!("{}{name}:rc={rc}\n", sample::SAMPLE_MARKER));
            }
        }
        let s = parse::sections(&out, sample::SAMPLE_MARKER);
        prop_assert!(s.len() <= parts.len() * 2 + 1);
        for name in s.keys() {
            let _ = parse::section_rc(&s, name);
        }
        let _ = sample::parse_sample(&out, "gpu1", now(), None);
    }

    #[test]
    fn pytorch_probe_never_panics(
        text in prop_oneof![
            ".{0,200}",
            "\\{\"cuda\": (true|false|1|null), \"devices\": (-?[0-9]{1,20}|null|\"x\")(, \"[a-z]{1,8}\": [0-9a-z\"]{0,10}){0,3}\\}",
        ],
        status in prop::option::of(any::<u32>()),
        expected in prop::option::of(any::<u32>()),
    ) {
        let c = parse::pytorch_check(&text, status, expected);
        prop_assert!(!c.message.is_empty());
    }
}
