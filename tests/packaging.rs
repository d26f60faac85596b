//! Packaging: the systemd unit passes `systemd-analyze verify`, `scripts/install.sh` installs
//! (and uninstalls) what it says without ever overwriting a config, and the shipped configs are
//! valid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNIT: &str = "ugro-monitor.service";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `target/<profile>/`: the test executable lives in its `deps/`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps/")
        .to_path_buf()
}

fn built_binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --bins` first",
        path.display()
    );
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `scripts/install.sh ARGS` from a cwd outside the repository (the script must find its
/// own way), with a clean `PREFIX`/`SYSTEMD_DIR`/`UGRO_BIN_DIR` unless `env` sets them.
fn install_sh(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/install.sh"))
        .args(args)
        .current_dir(cwd.path())
        .env_remove("PREFIX")
        .env_remove("SYSTEMD_DIR")
        .env_remove("UGRO_BIN_DIR")
        .env_remove("DESTDIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run scripts/install.sh")
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let daemon = built_binary("ugro-monitor");
    let unit = std::fs::read_to_string(repo_root().join("systemd").join(UNIT)).unwrap();
    assert!(
        unit.contains("/usr/local/bin/ugro-monitor"),
        "the unit should start /usr/local/bin/ugro-monitor"
    );
    // verify checks that the Exec*= binaries exist: point them at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT);
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/ugro-monitor", daemon.to_str().unwrap()),
    )
    .unwrap();

    let out = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .current_dir(dir.path())
        .env_remove("SYSTEMD_LOG_LEVEL")
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run systemd-analyze ({e}): install it (Debian: apt-get install systemd) — this test does not pass without it"
        ),
    };
    assert!(
        out.status.success(),
        "{}",
        describe("systemd-analyze verify", &out)
    );
    let stderr = text(&out.stderr);
    let about_unit: Vec<&str> = stderr.lines().filter(|l| l.contains(UNIT)).collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze warned about the unit:\n{}",
        about_unit.join("\n")
    );
}

#[test]
fn install_dry_run_lists_everything_and_touches_nothing() {
    let destdir = tempfile::tempdir().unwrap();
    let out = install_sh(&["--dry-run"], &[("DESTDIR", destdir.path())]);
    assert!(
        out.status.success(),
        "{}",
        describe("install.sh --dry-run", &out)
    );
    let stdout = text(&out.stdout);
    for expected in [
        "bin/ugro-monitor",
        "bin/ugroctl",
        "ugro-monitor.service",
        "sysusers.d",
        "/etc/ugro/ugro.toml",
        "systemctl daemon-reload",
        "cargo build --release --locked",
    ] {
        assert!(
            stdout.contains(expected),
            "dry run does not mention {expected:?}:\n{stdout}"
        );
    }
    let d = destdir.path().display().to_string();
    assert!(
        stdout.contains(&format!("{d}/usr/local/bin/ugro-monitor")),
        "dry run does not put DESTDIR in front of the paths:\n{stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(destdir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "dry run created {left:?}");
}

#[test]
fn install_into_destdir_never_overwrites_config() {
    built_binary("ugro-monitor");
    built_binary("ugroctl");
    let destdir = tempfile::tempdir().unwrap();
    let d = destdir.path();
    let config = d.join("etc/ugro/ugro.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let custom = "# the operator's own config\n[daemon]\ncontrol_group = \"\"\n";
    std::fs::write(&config, custom).unwrap();

    let bins = bin_dir();
    let env = [
        ("DESTDIR", d),
        ("PREFIX", Path::new("/usr/local")),
        ("UGRO_BIN_DIR", bins.as_path()),
    ];
    let out = install_sh(&["--no-build"], &env);
    assert!(
        out.status.success(),
        "{}",
        describe("install.sh --no-build", &out)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("kept"),
        "no word on the kept config:\n{stdout}"
    );
    for next in [
        "systemd-sysusers",
        "systemctl daemon-reload",
        "systemctl enable --now ugro-monitor",
        "ugroctl status",
    ] {
        assert!(stdout.contains(next), "next steps lack {next:?}:\n{stdout}");
    }

    let installed = [
        (d.join("usr/local/bin/ugro-monitor"), 0o755),
        (d.join("usr/local/bin/ugroctl"), 0o755),
        (d.join("etc/systemd/system").join(UNIT), 0o644),
        (d.join("usr/lib/sysusers.d/ugro-monitor.conf"), 0o644),
    ];
    for (path, want) in &installed {
        assert_eq!(
            mode(path),
            *want,
            "mode of {} is {:o}",
            path.display(),
            mode(path)
        );
    }
    assert_eq!(
        std::fs::read(d.join("usr/local/bin/ugro-monitor")).unwrap(),
        std::fs::read(bins.join("ugro-monitor")).unwrap(),
        "installed daemon differs from the built one"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("etc/systemd/system").join(UNIT)).unwrap(),
        std::fs::read_to_string(repo_root().join("systemd").join(UNIT)).unwrap(),
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), custom);

    let out = install_sh(&["--uninstall"], &env);
    assert!(
        out.status.success(),
        "{}",
        describe("install.sh --uninstall", &out)
    );
    for (path, _) in &installed {
        assert!(!path.exists(), "{} survived --uninstall", path.display());
    }
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        custom,
        "--uninstall must keep the config"
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("/etc/ugro") && stdout.contains("/var/lib/ugro"),
        "--uninstall does not say what it kept:\n{stdout}"
    );
}

#[test]
fn fresh_install_puts_the_example_config_in_place() {
    built_binary("ugro-monitor");
    built_binary("ugroctl");
    let destdir = tempfile::tempdir().unwrap();
    let bins = bin_dir();
    let out = install_sh(
        &["--no-build"],
        &[
            ("DESTDIR", destdir.path()),
            ("UGRO_BIN_DIR", bins.as_path()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        describe("install.sh --no-build", &out)
    );
    let config = destdir.path().join("etc/ugro/ugro.toml");
    assert_eq!(mode(&config), 0o644);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        std::fs::read_to_string(repo_root().join("config/ugro.example.toml")).unwrap()
    );
}

#[test]
fn example_and_quickstart_configs_pass_check_config() {
    let daemon = built_binary("ugro-monitor");
    for name in ["ugro.example.toml", "quickstart.toml"] {
        let path = repo_root().join("config").join(name);
        let out = Command::new(&daemon)
            .arg("--config")
            .arg(&path)
            .arg("--check-config")
            .env_remove("UGRO_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("ugro-monitor --check-config {name}"), &out)
        );
    }
}
