//! df: the byte and inode tables it prints, each filesystem's usage, and the disk check.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ParseError, line_error};
use crate::health::{CheckName, CheckResult};

/// Space and inodes of the filesystem holding one configured path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub path: String,
    pub total_bytes: u64,
    pub avail_bytes: u64,
    /// 0 on filesystems without fixed inodes (btrfs, some network filesystems).
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// Parses `df -P -B1 PATH...`: one `(mount point, total bytes, available bytes)` per data line,
/// in argument order (df omits paths it cannot stat, reporting them on stderr).
pub fn df_bytes(stdout: &str) -> Result<Vec<(String, u64, u64)>, ParseError> {
    df_table(stdout)
}

/// Parses `df -P -i PATH...`: one `(mount point, total inodes, free inodes)` per data line.
/// Filesystems without fixed inodes report `0 0 0 -` and parse as (mount, 0, 0).
pub fn df_inodes(stdout: &str) -> Result<Vec<(String, u64, u64)>, ParseError> {
    df_table(stdout)
}

/// Both df tables have the same shape: `device total used free capacity mount`. The capacity
/// column (`26%` or `-`) anchors the parse, so device and mount names may contain spaces; a
/// device name alone on a line (non-POSIX wrapping) is joined with the next line.
fn df_table(stdout: &str) -> Result<Vec<(String, u64, u64)>, ParseError> {
    const WHAT: &str = "df";
    let mut out = Vec::new();
    let mut carried: Option<String> = None;
    for (i, raw) in stdout.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("Filesystem") {
            continue;
        }
        let joined;
        let line = match carried.take() {
            Some(device) => {
                joined = format!("{device} {line}");
                joined.as_str()
            }
            None => line,
        };
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() == 1 {
            carried = Some(tokens[0].to_owned());
            continue;
        }
        let df_num = |t: &str| -> Option<u64> { if t == "-" { Some(0) } else { t.parse().ok() } };
        let anchor = (4..tokens.len().saturating_sub(1)).find(|&p| {
            let cap = tokens[p];
            (cap == "-"
                || cap
                    .strip_suffix('%')
                    .is_some_and(|n| n.parse::<u32>().is_ok()))
                && tokens[p - 3..p].iter().all(|t| df_num(t).is_some())
        });
        let Some(p) = anchor else {
            return Err(line_error(
                WHAT,
                i + 1,
                line,
                "expected `filesystem total used available capacity% mount-point`",
            ));
        };
        let total = df_num(tokens[p - 3]).unwrap_or(0);
        let free = df_num(tokens[p - 1]).unwrap_or(0);
        out.push((tokens[p + 1..].join(" "), total, free));
    }
    if let Some(device) = carried {
        return Err(line_error(
            WHAT,
            stdout.lines().count(),
            &device,
            "device name without figures",
        ));
    }
    Ok(out)
}

/// Joins the two df tables by mount point (a mount missing from the inode table gets 0 inodes).
pub fn disk_usage(bytes: &[(String, u64, u64)], inodes: &[(String, u64, u64)]) -> Vec<DiskUsage> {
    bytes
        .iter()
        .map(|(path, total, avail)| {
            let (inodes_total, inodes_free) = inodes
                .iter()
                .find(|(p, _, _)| p == path)
                .map_or((0, 0), |&(_, t, f)| (t, f));
            DiskUsage {
                path: path.clone(),
                total_bytes: *total,
                avail_bytes: *avail,
                inodes_total,
                inodes_free,
            }
        })
        .collect()
}

/// The disk check: fails if any path has less than `min_free_bytes` available, or (where the
/// filesystem has fixed inodes) less than 1 % of its inodes free. Skipped with no paths.
/// Value: the per-path usage; threshold: `min_free_bytes`.
pub fn disk_check(disks: &[DiskUsage], min_free_bytes: u64) -> CheckResult {
    if disks.is_empty() {
        return CheckResult::skipped(CheckName::Disk, "no disk paths to check");
    }
    let mut bad = Vec::new();
    for d in disks {
        if d.avail_bytes < min_free_bytes {
            bad.push(format!(
                "{}: {} free < {}",
                d.path,
                human_bytes(d.avail_bytes),
                human_bytes(min_free_bytes)
            ));
        }
        if d.inodes_total > 0 && u128::from(d.inodes_free) * 100 < u128::from(d.inodes_total) {
            bad.push(format!(
                "{}: {:.2}% of inodes free ({} of {}) < 1%",
                d.path,
                d.inodes_free as f64 * 100.0 / d.inodes_total as f64,
                d.inodes_free,
                d.inodes_total
            ));
        }
    }
    let value = serde_json::to_value(disks).unwrap_or(serde_json::Value::Null);
    let result = if bad.is_empty() {
        let free: Vec<String> = disks
            .iter()
            .map(|d| format!("{}: {} free", d.path, human_bytes(d.avail_bytes)))
            .collect();
        CheckResult::pass(CheckName::Disk, free.join(", "))
    } else {
        CheckResult::fail(CheckName::Disk, bad.join("; "))
    };
    result
        .with_value(value)
        .with_threshold(json!(min_free_bytes))
}

/// Decimal human size with one decimal, as config sizes are written: "3.2 GB", "512 B".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1000.0;
    let mut unit = 0;
    while x >= 999.95 && unit + 1 < UNITS.len() {
        x /= 1000.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Outcome;

    const DF_BYTES: &str = "\
Filesystem                                            1-blocks          Used     Available Capacity Mounted on
/dev/mapper/vg0-root                              502392610816  123456789012  353313214464      26% /
/dev/mapper/luks-4f1c2a3b-5d6e-7f80-9a1b-2c3d4e5f6a7b 3936551211008 3733089390592    3218587648     100% /data
";

    const DF_INODES: &str = "\
Filesystem                                              Inodes    IUsed     IFree IUse% Mounted on
/dev/mapper/vg0-root                                  31227904   812345  30415559    3% /
/dev/mapper/luks-4f1c2a3b-5d6e-7f80-9a1b-2c3d4e5f6a7b 244195328 11048911 233146417    5% /data
";

    #[test]
    fn df_debian_outputs() {
        let bytes = df_bytes(DF_BYTES).unwrap();
        assert_eq!(
            bytes,
            vec![
                ("/".to_owned(), 502_392_610_816, 353_313_214_464),
                ("/data".to_owned(), 3_936_551_211_008, 3_218_587_648),
            ]
        );
        let inodes = df_inodes(DF_INODES).unwrap();
        assert_eq!(inodes[1], ("/data".to_owned(), 244_195_328, 233_146_417));

        let disks = disk_usage(&bytes, &inodes);
        assert_eq!(disks[0].inodes_total, 31_227_904);
        let r = disk_check(&disks, 10_000_000_000);
        assert_eq!(r.outcome, Outcome::Fail);
        assert_eq!(r.message, "/data: 3.2 GB free < 10.0 GB");
        assert_eq!(r.threshold, Some(json!(10_000_000_000u64)));
        assert_eq!(r.value.as_ref().unwrap()[1]["path"], json!("/data"));

        let r = disk_check(&disks, 1_000_000_000);
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(r.message, "/: 353.3 GB free, /data: 3.2 GB free");
    }

    #[test]
    fn df_btrfs_wrapped_and_spaces() {
        let inodes = "\
Filesystem     Inodes IUsed IFree IUse% Mounted on
/dev/nvme1n1p1      0     0     0     - /srv/scratch
/dev/mapper/a-very-long-volume-group-name-scratch
                  100    99     1    99% /mnt/my disk
";
        let rows = df_inodes(inodes).unwrap();
        assert_eq!(
            rows,
            vec![
                ("/srv/scratch".to_owned(), 0, 0),
                ("/mnt/my disk".to_owned(), 100, 1),
            ]
        );
        let err = df_bytes(
            "Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/sda1 12 oops 3 4% /\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"/dev/sda1 12 oops 3 4% /\""),
            "{err}"
        );
    }

    #[test]
    fn disk_check_inodes_and_empty() {
        let d = |path: &str, it, ifree| DiskUsage {
            path: path.into(),
            total_bytes: 1_000_000_000_000,
            avail_bytes: 500_000_000_000,
            inodes_total: it,
            inodes_free: ifree,
        };
        // btrfs (0 inodes) is fine; 0.5 % free is not; exactly 1 % is.
        let r = disk_check(
            &[
                d("/", 0, 0),
                d("/data", 1_000_000, 5_000),
                d("/x", 1000, 10),
            ],
            10_000_000_000,
        );
        assert_eq!(r.outcome, Outcome::Fail);
        assert_eq!(
            r.message,
            "/data: 0.50% of inodes free (5000 of 1000000) < 1%"
        );
        assert_eq!(disk_check(&[], 1).outcome, Outcome::Skipped);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(3_218_587_648), "3.2 GB");
        assert_eq!(human_bytes(10_000_000_000), "10.0 GB");
        assert_eq!(human_bytes(999_999_999), "1.0 GB");
        assert_eq!(human_bytes(3_936_551_211_008), "3.9 TB");
        assert_eq!(human_bytes(u64::MAX), "18.4 EB");
    }
}
