//! Property tests of the run-file parsers fed by the outside world (`progress.json`,
//! `config.json`, evaluation and validation scores, epoch dir names, log tails and their
//! failure classification): arbitrary bytes and values never panic and give bounded output.
//! Cases per property: `UGRO_FUZZ_CASES` (default 256); the whole file runs in a few seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::Value;
use ugro_core::runs::{
    self as core, EpochView, FileInfo, JsonRead, RunStatus, RunView, RunnerKind, StatusRules,
};

fn cases() -> u32 {
    std::env::var("UGRO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs)
}

/// Any JSON value, a few levels deep, with the keys the parsers look for among random ones.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("epochs".to_owned()),
        Just("mission_current".to_owned()),
        Just("mission_total".to_owned()),
        Just("completed_epochs".to_owned()),
        Just("total_epochs".to_owned()),
        Just("progress_percent".to_owned()),
        Just("status".to_owned()),
        Just("eta_seconds".to_owned()),
        Just("rate_per_hour".to_owned()),
        Just("rate_per_sec".to_owned()),
        Just("early_stopped".to_owned()),
        Just("early_stopped_at_epoch".to_owned()),
        Just("val_loss".to_owned()),
        "[a-z_]{0,12}",
        any::<String>(),
    ];
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1e308)),
        Just(Value::from(-0.0)),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        prop_oneof![
            Just("done".to_owned()),
            Just("finished".to_owned()),
            Just("running".to_owned()),
            any::<String>()
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What a caller read from a JSON file: a value, or one of the reasons.
fn json_read() -> impl Strategy<Value = JsonRead> {
    prop_oneof![
        4 => json_value().prop_map(Ok),
        1 => any::<String>().prop_map(Err),
        1 => Just(Err("unreadable: 500 MiB, over the 16 MiB read limit".to_owned())),
    ]
}

fn file_info() -> impl Strategy<Value = FileInfo> {
    (
        prop_oneof![Just(0u64), any::<u64>(), 1u64..4096],
        -1_000_000i64..4_000_000_000,
    )
        .prop_map(|(size, secs)| FileInfo {
            size,
            mtime: at(secs),
        })
}

fn epoch_view() -> impl Strategy<Value = EpochView> {
    let names = prop::sample::subsequence(core::TRAINER_EXPECTED.to_vec(), 0..=3);
    (
        names,
        prop::collection::vec(file_info(), 3),
        prop::collection::vec(json_read(), 2),
    )
        .prop_map(|(names, infos, reads)| {
            let mut e = EpochView::default();
            let mut reads = reads.into_iter();
            for (name, info) in names.into_iter().zip(infos) {
                e.files.insert(name.to_owned(), info);
                if name.ends_with(".json")
                    && let Some(r) = reads.next()
                {
                    e.json.insert(name.to_owned(), r);
                }
            }
            e
        })
}

/// A run dir view: any of the run JSON files, logs, sub-dirs and epochs.
fn run_view() -> impl Strategy<Value = RunView> {
    let run_json = prop::sample::subsequence(
        vec![
            core::CONFIG_JSON,
            core::PROGRESS_JSON,
            core::EVALUATOR_SCORES,
        ],
        0..=3,
    );
    let dir_name = prop_oneof![
        (0u32..12).prop_map(|i| format!("epoch_{i}")),
        Just("epoch_01".to_owned()),
        Just("epoch_".to_owned()),
        any::<String>(),
    ];
    let log_name = prop_oneof![
        Just("train_val.log".to_owned()),
        Just("eval_1.log".to_owned()),
        "[a-z_/]{0,10}\\.log",
        any::<String>(),
    ];
    (
        run_json,
        prop::collection::vec((file_info(), json_read()), 3),
        prop::collection::vec((log_name, file_info()), 0..4),
        prop::collection::vec(dir_name, 0..6),
        prop::collection::btree_map(0u32..10, epoch_view(), 0..5),
    )
        .prop_map(|(names, reads, logs, dirs, epochs)| {
            let mut v = RunView::default();
            for (name, (info, read)) in names.into_iter().zip(reads) {
                v.files.insert(name.to_owned(), info);
                v.json.insert(name.to_owned(), read);
            }
            v.files.extend(logs);
            for d in &dirs {
                v.add_subdir(d);
            }
            for (i, e) in epochs {
                v.add_subdir(&format!("epoch_{i}"));
                v.epochs.insert(i, e);
            }
            v.fold_completed();
            v
        })
}

/// Log-like text: lines mixing the phrases the classifier looks for with arbitrary text.
fn log_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("Traceback (most recent call last):".to_owned()),
        Just("  File \"train.py\", line 3, in <module>".to_owned()),
        Just("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB".to_owned()),
        Just("RuntimeError: NCCL error in: ../torch/csrc".to_owned()),
        Just("loss is nan".to_owned()),
        Just("OSError: [Errno 28] No space left on device".to_owned()),
        Just("FileNotFoundError: [Errno 2] No such file or directory: 'x'".to_owned()),
        Just("Killed".to_owned()),
        Just("slurmstepd: error: *** JOB 1 ON n1 CANCELLED DUE TO PREEMPTION ***".to_owned()),
        Just("[rank3]: ValueError: bad".to_owned()),
        Just("exit code: 137".to_owned()),
        "[ -~]{0,80}",
        any::<String>(),
    ];
    prop::collection::vec(line, 0..40).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn json_of_any_bytes_parses_or_says_why_briefly(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for r in [core::read_json(&bytes), core::validate_json(&bytes)] {
            if let Err(why) = r {
                prop_assert!(why.len() < 600, "{why}");
                prop_assert!(why == "empty" || why.starts_with("invalid JSON at line"), "{why}");
            }
        }
    }

    #[test]
    fn json_text_round_trips_through_the_reader(v in json_value()) {
        let text = serde_json::to_vec(&v).unwrap();
        // (Equal up to the last digit of big floats: serde_json's default float parsing.)
        prop_assert!(core::read_json(&text).is_ok_and(|r| r.is_object() == v.is_object()));
        prop_assert_eq!(core::validate_json(&text).ok(), Some(Value::Null));
    }

    #[test]
    fn scores_of_any_value_are_bounded_by_its_leaves(v in json_value()) {
        fn leaves(v: &Value) -> usize {
            match v {
                Value::Array(a) => a.iter().map(leaves).sum(),
                Value::Object(m) => m.values().map(leaves).sum(),
                _ => 1,
            }
        }
        let scores = core::flatten_scores(&v);
        prop_assert!(scores.len() <= leaves(&v));
        prop_assert!(scores.values().all(|x| x.is_finite()));
        let best = core::best_scores(&[scores.clone(), scores.clone()]);
        prop_assert_eq!(best.len(), scores.len());
    }

    #[test]
    fn any_run_view_evaluates_to_bounded_progress(view in run_view(), root_epochs in prop::option::of(0u32..2000), now in 0i64..5_000_000_000) {
        let e = core::evaluate(&view, root_epochs);
        let p = &e.progress;
        prop_assert!(p.percentage.is_finite() && (0.0..=100.0).contains(&p.percentage), "{p:?}");
        if let Some(r) = p.rate_per_hour {
            prop_assert!(r.is_finite() && r >= 0.0, "{p:?}");
        }
        if e.kind == RunnerKind::Trainer {
            prop_assert!(p.completed_epochs <= view.completed.count() + view.epochs.len() as u32);
        }
        if e.complete {
            prop_assert_eq!(p.percentage, 100.0);
            prop_assert_eq!(p.eta_seconds, Some(0));
        }
        // Diagnostics quote file names and reasons, each cut short: never the files themselves.
        if let Some(d) = &e.diagnostic {
            prop_assert!(d.chars().count() < 8192, "{} chars", d.chars().count());
        }
        prop_assert_eq!(core::detect(&view).kind, e.kind);
        let rules = StatusRules::default();
        for alive in [false, true] {
            let s = core::status(&e, &rules, alive, at(now));
            prop_assert!(s != RunStatus::Stuck || alive);
        }
        let times = core::epoch_completion_times(&view, p.completed_epochs);
        prop_assert!(times.len() <= p.completed_epochs as usize);
    }

    #[test]
    fn epoch_dir_names_are_canonical(name in prop_oneof![any::<String>(), "epoch_[0-9]{0,12}"]) {
        if let Some(i) = core::epoch_dir_index(&name) {
            prop_assert_eq!(format!("epoch_{i}"), name);
        }
    }

    #[test]
    fn any_log_tail_classifies_briefly(text in prop_oneof![log_text(), any::<String>()]) {
        if let Some(f) = core::classify_failure(&text) {
            prop_assert!(f.message.chars().count() <= core::MAX_ERROR_CHARS, "{}", f.message.len());
            prop_assert!(f.excerpt.chars().count() <= core::MAX_ERROR_CHARS, "{}", f.excerpt.len());
            prop_assert!(f.error_text().chars().count() <= core::MAX_ERROR_CHARS);
        }
        let f = core::failure_from_log(&text);
        prop_assert!(f.message.chars().count() <= core::MAX_ERROR_CHARS);
    }

    #[test]
    fn log_tails_of_any_bytes_are_bounded(bytes in prop::collection::vec(any::<u8>(), 0..4096), pad in prop::option::weighted(0.25, (any::<u8>(), (core::MAX_LOG_TAIL - 4096)..(core::MAX_LOG_TAIL + 4096)))) {
        let mut bytes = bytes;
        // Long inputs: arbitrary bytes, then padding with one byte past the bound (cheap to
        // generate), then the arbitrary bytes again.
        if let Some((junk, n)) = pad {
            let head = bytes.clone();
            bytes.resize(bytes.len() + n, junk);
            bytes.extend(head);
        }
        let t = core::log_tail_text(&bytes);
        // Each invalid byte becomes U+FFFD (3 bytes): the bound is on the bytes read.
        prop_assert!(t.len() <= core::MAX_LOG_TAIL * 3);
        let _ = core::classify_failure(&t);
    }
}

#[test]
fn the_property_inputs_reach_every_runner_kind() {
    // A sanity check of the generators: hand-made views of each kind evaluate as that kind.
    let mut v = RunView::default();
    v.files.insert(
        core::PROGRESS_JSON.into(),
        FileInfo {
            size: 10,
            mtime: at(0),
        },
    );
    v.json.insert(
        core::PROGRESS_JSON.into(),
        Ok(serde_json::json!({"mission_current": u64::MAX, "mission_total": -1, "progress_percent": 1e308})),
    );
    let e = core::evaluate(&v, None);
    assert_eq!(e.kind, RunnerKind::Generic);
    assert_eq!(e.progress.percentage, 100.0);
    let _: BTreeMap<String, f64> = core::flatten_scores(&Value::Null);
}
