//! Scores: flattening a scores document, which keys are better lower, and the best of a history.

use std::collections::BTreeMap;

use serde_json::Value;

/// Scores by flattened key (`"val.accuracy"`).
pub type Scores = BTreeMap<String, f64>;

/// The numeric leaves of a scores document, keys joined with `.`. Arrays are skipped entirely
/// (per-datapoint lists would explode the map), as are strings, booleans and null. A bare number
/// gets the key `"value"`.
pub fn flatten_scores(v: &Value) -> Scores {
    let mut out = Scores::new();
    flatten_into(v, String::new(), &mut out);
    out
}

fn flatten_into(v: &Value, prefix: String, out: &mut Scores) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64()
                && x.is_finite()
            {
                let key = if prefix.is_empty() {
                    "value".to_owned()
                } else {
                    prefix
                };
                out.insert(key, x);
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(v, key, out);
            }
        }
        Value::Array(_) | Value::String(_) | Value::Bool(_) | Value::Null => {}
    }
}

/// Whether smaller is better for a score key: the lowercased key contains `loss` or `error`, or
/// one of its alphanumeric tokens is `err`, `mae`, `mse`, `rmse`, `epe`, `wer`, `cer`, `ppl` or
/// `perplexity`. Everything else is larger-is-better.
pub fn lower_is_better(key: &str) -> bool {
    let k = key.to_lowercase();
    k.contains("loss")
        || k.contains("error")
        || k.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| {
            matches!(
                t,
                "err" | "mae" | "mse" | "rmse" | "epe" | "wer" | "cer" | "ppl" | "perplexity"
            )
        })
}

/// The best value of each key over a history: the minimum for [`lower_is_better`] keys, the
/// maximum otherwise. Keys may appear in only some entries.
pub fn best_scores(history: &[Scores]) -> Scores {
    let mut best = Scores::new();
    for scores in history {
        merge_best(&mut best, scores);
    }
    best
}

/// Folds one entry of a history into the running best ([`best_scores`]).
pub(super) fn merge_best(best: &mut Scores, scores: &Scores) {
    for (k, &v) in scores {
        match best.get_mut(k) {
            Some(b) => {
                *b = if lower_is_better(k) {
                    b.min(v)
                } else {
                    b.max(v)
                }
            }
            None => {
                best.insert(k.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flatten_keeps_numeric_leaves_with_dotted_keys() {
        let v = json!({
            "val": {"accuracy": 0.93, "loss": 0.07, "per_class": [0.9, 0.8], "name": "x"},
            "epoch": 3,
            "ok": true,
            "none": null,
            "deep": {"a": {"b": {"c": -1.5}}},
        });
        let s = flatten_scores(&v);
        let want: Scores = [
            ("val.accuracy".to_owned(), 0.93),
            ("val.loss".to_owned(), 0.07),
            ("epoch".to_owned(), 3.0),
            ("deep.a.b.c".to_owned(), -1.5),
        ]
        .into_iter()
        .collect();
        assert_eq!(s, want);
        assert_eq!(
            flatten_scores(&json!(0.5)),
            [("value".to_owned(), 0.5)].into()
        );
        assert!(flatten_scores(&json!([1, 2, 3])).is_empty());
    }

    #[test]
    fn best_scores_min_for_losses_and_errors_max_otherwise() {
        let h: Vec<Scores> = vec![
            [
                ("acc", 0.7),
                ("val.Loss", 0.9),
                ("top1_error", 0.3),
                ("mean_err", 2.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            [
                ("acc", 0.8),
                ("val.Loss", 0.5),
                ("top1_error", 0.2),
                ("new", 1.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            [
                ("acc", 0.75),
                ("val.Loss", 0.6),
                ("top1_error", 0.25),
                ("mean_err", 1.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        ];
        let b = best_scores(&h);
        assert_eq!(b["acc"], 0.8);
        assert_eq!(b["val.Loss"], 0.5);
        assert_eq!(b["top1_error"], 0.2);
        assert_eq!(b["mean_err"], 1.0);
        assert_eq!(b["new"], 1.0);
        assert!(best_scores(&[]).is_empty());
    }

    #[test]
    fn lower_is_better_keys() {
        for k in [
            "loss",
            "val.LOSS",
            "train_loss_total",
            "error",
            "top5Error",
            "err",
            "abs_rel.err",
            "rmse",
            "val.mae",
            "epe",
            "wer",
            "ppl",
        ] {
            assert!(lower_is_better(k), "{k}");
        }
        for k in [
            "accuracy",
            "f1",
            "miou",
            "terrain_acc",
            "interrupt_rate",
            "auroc",
        ] {
            assert!(!lower_is_better(k), "{k}");
        }
    }
}
