//! Config files through the real `ugro-monitor --check-config`: every file under
//! fixtures/config/invalid must fail with exit 78 and print each line of its `.expected`
//! (`{file}` stands for the file's path: every message is `file:line:col: …` with the bad
//! value quoted); every file under fixtures/config/valid must pass with exit 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn check_config(path: &Path) -> std::process::Output {
    let child = Command::new(ugro_testkit::bin("ugro-monitor"))
        .arg("--config")
        .arg(path)
        .arg("--check-config")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ugro_testkit::wait_output(child, std::time::Duration::from_secs(10))
}

#[test]
fn every_invalid_config_fails_with_its_located_messages() {
    let mut failures = Vec::new();
    for file in fixtures("invalid") {
        let out = check_config(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = std::fs::read_to_string(file.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} has no .expected file", file.display()));
        if out.status.code() != Some(78) {
            failures.push(format!(
                "{}: exit {:?}, want 78",
                file.display(),
                out.status.code()
            ));
        }
        for want in expected.lines().filter(|l| !l.trim().is_empty()) {
            let want = want.replace("{file}", &file.display().to_string());
            if !stderr.lines().any(|l| l.starts_with(&want)) {
                failures.push(format!(
                    "{}:\n  want a line starting {want:?}\n  got:\n{stderr}",
                    file.display()
                ));
            }
        }
        let problems = stderr
            .lines()
            .filter(|l| l.starts_with(&*file.display().to_string()))
            .count();
        let wanted = expected.lines().filter(|l| !l.trim().is_empty()).count();
        if problems != wanted {
            failures.push(format!(
                "{}: {problems} problem lines, want {wanted}:\n{stderr}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_valid_config_passes() {
    for file in fixtures("valid") {
        let out = check_config(&file);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": OK ("));
    }
}

#[test]
fn unreadable_config_is_exit_78_with_the_path() {
    let out = check_config(Path::new("/nonexistent/ugro.toml"));
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read config file /nonexistent/ugro.toml")
    );
}

#[test]
fn daemon_refuses_to_start_on_an_invalid_config() {
    let file = fixtures("invalid").into_iter().next().unwrap();
    let child = Command::new(ugro_testkit::bin("ugro-monitor"))
        .arg("--config")
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = ugro_testkit::wait_output(child, std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not started"));
}
