//! Who may do what on the control socket, with real users and groups and the socket's own
//! permissions (no chmod in the test): the socket is 0660 and belongs to `control_group`; a
//! member through a supplementary group may change the daemon; a user outside the group cannot
//! even connect; a user who can connect through the daemon's own group but is not in
//! `control_group` may read and gets 403 on every changing endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ugro_core::event::EventKind;
use ugro_testkit::{Daemon, DaemonOptions, ctl_with_groups, output_within, setpriv};

/// A uid with no passwd entry (SO_PEERCRED reports it all the same).
const USER: u32 = 54322;

/// A throw-away system group, deleted on drop.
struct Group {
    name: String,
    gid: u32,
}

impl Group {
    fn new() -> Self {
        let name = format!("ugro-t{}", std::process::id());
        let out = Command::new("groupadd")
            .args(["--system", &name])
            .output()
            .expect("groupadd");
        assert!(out.status.success(), "groupadd: {out:?}");
        let gid = nix::unistd::Group::from_name(&name)
            .unwrap()
            .expect("group just made")
            .gid
            .as_raw();
        Self { name, gid }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).status();
    }
}

/// Runs `args` as USER with `groups` as its supplementary groups, with a deadline.
fn as_user(groups: &[u32], args: &[&str]) -> Output {
    let (program, rest) = args.split_first().unwrap();
    output_within(
        setpriv(USER, USER, groups, program).args(rest),
        Duration::from_secs(30),
    )
}

/// The status line and body of a raw `METHOD PATH` with a JSON body, sent as USER.
fn raw_as_user(groups: &[u32], socket: &Path, method: &str, path: &str) -> String {
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect({socket:?})
body = b'{{"send": false}}'
s.sendall(b"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
data = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    data += c
print(data.decode("latin-1"))
"#,
        socket = socket.display().to_string()
    );
    let out = as_user(groups, &["/usr/bin/python3", "-c", &script]);
    assert!(out.status.success(), "{method} {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn control_group_owns_the_socket_members_may_change_others_cannot_connect() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root to make a group and act as other users; CI runs as root"
    );
    let group = Group::new();
    let d = Daemon::start(&DaemonOptions {
        control_group: Some(group.name.clone()),
        ..Default::default()
    });
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), group.gid, "the socket belongs to control_group");

    // A member through a supplementary group (its own gid is not the group's): may reload.
    let out = ctl_with_groups(&d.socket, &["reload"], (USER, USER), &[group.gid]);
    assert!(
        out.status.success(),
        "member's reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = d.ctl_json(&[
        "events",
        "--since",
        "1h",
        "--kind",
        EventKind::ConfigReloaded.as_str(),
    ]);
    assert_eq!(ev["events"].as_array().unwrap().len(), 1, "{ev}");

    // Outside the group: the socket's mode stops it at connect(), and ugroctl says so.
    let out = ctl_with_groups(&d.socket, &["status"], (USER, USER), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&d.socket.display().to_string()) && stderr.contains("ermission denied"),
        "{stderr}"
    );
}

#[test]
fn a_reader_outside_control_group_gets_403_on_every_changing_endpoint() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root to act as other users; CI runs as root"
    );
    // No control_group: the socket keeps the daemon's group (root's, gid 0). A user with that
    // group among its supplementary groups can connect and read, and is not allowed to change.
    let d = Daemon::start(&DaemonOptions::default());
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let daemon_gid = meta.gid();

    let out = ctl_with_groups(
        &d.socket,
        &["--json", "status"],
        (USER, USER),
        &[daemon_gid],
    );
    assert!(
        out.status.success(),
        "reader's status: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for (method, path) in [
        ("POST", "/v1/reload".to_string()),
        ("POST", "/v1/nodes/local/check".to_string()),
        ("POST", "/v1/summary".to_string()),
        ("POST", format!("/v1/summaries/{today}/send")),
    ] {
        let answer = raw_as_user(&[daemon_gid], &d.socket, method, &path);
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        assert!(
            answer.contains("\"code\":\"forbidden\""),
            "{path}: {answer}"
        );
        assert!(answer.contains(&format!("uid {USER}")), "{path}: {answer}");
    }
    let out = ctl_with_groups(&d.socket, &["reload"], (USER, USER), &[daemon_gid]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(forbidden)"), "{stderr}");

    // Nothing was changed by the refused calls.
    let ev = d.ctl_json(&["events", "--since", "1h", "--kind", "config."]);
    assert_eq!(ev["events"].as_array().unwrap().len(), 0, "{ev}");
    let sums = d.ctl_json(&["summary", "--list"]);
    assert_eq!(sums["summaries"].as_array().unwrap().len(), 0, "{sums}");
}
