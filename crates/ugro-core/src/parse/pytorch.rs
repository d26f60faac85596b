//! The PyTorch probe: the Python program it runs and the pytorch check built from its JSON output.

use crate::health::{CheckName, CheckResult};

/// The Python program the PyTorch probe runs (`python -c`): imports torch, checks CUDA, and
/// runs a tiny matmul on every visible GPU. Prints one JSON object.
pub const PYTORCH_PROBE: &str = r#"import json, sys
try:
    import torch
except Exception as e:
    print(json.dumps({"error": "import torch failed: %s" % e})); sys.exit(0)
r = {"torch": torch.__version__, "cuda": bool(torch.cuda.is_available()), "count": 0, "devices": []}
if r["cuda"]:
    r["count"] = torch.cuda.device_count()
    for i in range(r["count"]):
        try:
            a = torch.ones(64, 64, device="cuda:%d" % i)
            r["devices"].append({"index": i, "ok": float((a @ a).sum().item()) == 262144.0})
        except Exception as e:
            r["devices"].append({"index": i, "ok": False, "error": str(e)[:200]})
print(json.dumps(r))
"#;

/// Judges the output of [`PYTORCH_PROBE`]: torch imports, CUDA is available, at least
/// `expected` devices are visible, and the matmul worked on each.
pub fn pytorch_check(stdout: &str, exit_status: Option<u32>, expected: Option<u32>) -> CheckResult {
    let name = CheckName::Pytorch;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let Some(v) = line.and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()) else {
        let tail: String = stdout
            .trim()
            .chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return CheckResult::fail(
            name,
            format!("python exited with {exit_status:?} and printed no result: {tail:?}"),
        );
    };
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return CheckResult::fail(name, err.to_string()).with_value(v.clone());
    }
    let cuda = v.get("cuda").and_then(|c| c.as_bool()).unwrap_or(false);
    let count = v.get("count").and_then(|c| c.as_u64()).unwrap_or(0);
    let version = v
        .get("torch")
        .and_then(|t| t.as_str())
        .unwrap_or("?")
        .to_string();
    let bad: Vec<String> = v
        .get("devices")
        .and_then(|d| d.as_array())
        .map(|ds| {
            ds.iter()
                .filter(|d| d.get("ok").and_then(|o| o.as_bool()) != Some(true))
                .map(|d| {
                    format!(
                        "cuda:{} {}",
                        d.get("index").and_then(|i| i.as_u64()).unwrap_or(0),
                        d.get("error")
                            .and_then(|e| e.as_str())
                            .unwrap_or("matmul gave a wrong result")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let want = u64::from(expected.unwrap_or(0));
    let result = if want > 0 && !cuda {
        CheckResult::fail(name, format!("torch {version}: CUDA not available"))
    } else if count < want {
        CheckResult::fail(
            name,
            format!("torch {version} sees {count} GPUs, expected {want}"),
        )
    } else if !bad.is_empty() {
        CheckResult::fail(
            name,
            format!("torch {version}: matmul failed on {}", bad.join(", ")),
        )
    } else {
        CheckResult::pass(
            name,
            format!(
                "torch {version}, CUDA {}, {count} GPU(s) ran a matmul",
                if cuda { "available" } else { "not available" }
            ),
        )
    };
    result.with_value(v).with_threshold(serde_json::json!(want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Outcome;

    #[test]
    fn healthy_torch_passes_and_missing_gpus_fail() {
        let ok = r#"{"torch": "2.5.1", "cuda": true, "count": 2, "devices": [{"index": 0, "ok": true}, {"index": 1, "ok": true}]}"#;
        assert_eq!(pytorch_check(ok, Some(0), Some(2)).outcome, Outcome::Pass);
        let r = pytorch_check(ok, Some(0), Some(4));
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(
            r.message.contains("sees 2 GPUs, expected 4"),
            "{}",
            r.message
        );
    }

    #[test]
    fn import_error_cuda_off_bad_matmul_and_garbage_fail_with_reasons() {
        let r = pytorch_check(
            r#"{"error": "import torch failed: No module named 'torch'"}"#,
            Some(0),
            None,
        );
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(r.message.contains("No module named"));
        let r = pytorch_check(
            r#"{"torch": "2.5.1", "cuda": false, "count": 0, "devices": []}"#,
            Some(0),
            Some(8),
        );
        assert!(r.message.contains("CUDA not available"));
        let r = pytorch_check(
            r#"{"torch": "2.5.1", "cuda": true, "count": 1, "devices": [{"index": 0, "ok": false, "error": "CUDA error: an illegal memory access"}]}"#,
            Some(0),
            Some(1),
        );
        assert!(r.message.contains("cuda:0 CUDA error"), "{}", r.message);
        let r = pytorch_check("Traceback (most recent call last):\n  boom", Some(1), None);
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(r.message.contains("boom"));
    }

    #[test]
    fn cpu_only_torch_passes_when_no_gpus_are_expected() {
        let r = pytorch_check(
            r#"{"torch": "2.5.1", "cuda": false, "count": 0, "devices": []}"#,
            Some(0),
            None,
        );
        assert_eq!(r.outcome, Outcome::Pass);
    }
}
