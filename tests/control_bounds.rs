//! The control socket under a hostile or careless local user: connections that send half a
//! request, or nothing at all, by the hundred. The daemon must close them by its deadlines,
//! refuse a user's connections past their share at once, and keep answering everyone else —
//! `ugroctl` gets its answer within its own timeout while the flood goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use ugro_testkit::{Daemon, DaemonOptions, ctl_as, ctl_with_groups, setpriv, wait_output};

const NOBODY: (u32, u32) = (65534, 65534);
/// A uid with no passwd entry: SO_PEERCRED reports it all the same.
const OTHER: (u32, u32) = (54321, 54321);

/// Opens HALF connections that send a request head and half its body, and IDLE connections
/// that send nothing; prints "open" once all are connected, then for each connection whether
/// the daemon closed it (and with what status line) within HOLD seconds.
const FLOOD: &str = r#"
import socket, sys, time, select
path, half, idle, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
conns = []
for i in range(half + idle):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if i < half:
        s.sendall(b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"send\": ")
    conns.append(s)
print("open", flush=True)
got = {}
start = time.time()
deadline = start + hold
while len(got) < len(conns) and time.time() < deadline:
    live = [s for s in conns if s.fileno() not in got]
    r, _, _ = select.select(live, [], [], 0.2)
    for s in r:
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        got[s.fileno()] = data.split(b"\r\n", 1)[0].decode("latin-1")
        last = time.time()
closed = len(got)
print("last_close_after", round(last - start, 1) if got else -1, flush=True)
print("closed", closed, "of", len(conns), flush=True)
statuses = {}
for v in got.values():
    k = v.split(" ")[1] if v.startswith("HTTP/1.1 ") else "closed"
    statuses[k] = statuses.get(k, 0) + 1
for k, n in sorted(statuses.items()):
    print("status", k, n, flush=True)
"#;

/// The group that owns the daemon's socket (0660): users given it may connect and read.
fn socket_gid(d: &Daemon) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(&d.socket).unwrap().gid()
}

/// `ugroctl ARGS` as root (`None`) or as `ids` with the socket's group `gid` as a
/// supplementary group.
fn ctl_with_group(
    socket: &std::path::Path,
    args: &[&str],
    ids: Option<(u32, u32)>,
    gid: u32,
) -> std::process::Output {
    match ids {
        None => ctl_as(socket, args, None),
        Some(ids) => ctl_with_groups(socket, args, ids, &[gid]),
    }
}

#[test]
fn a_flood_of_half_sent_and_idle_connections_does_not_stall_the_api() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to act as other uids; CI runs as root"
    );
    let d = Daemon::start(&DaemonOptions::default());
    let gid = socket_gid(&d);

    // As nobody, given the socket's group so it may connect (a reader, not allowed to change
    // the daemon): 70 half-sent bodies and 500 silent connections (the reported attack).
    let mut flood = setpriv(NOBODY.0, NOBODY.1, &[gid], "/usr/bin/python3");
    flood
        .args(["-c", FLOOD])
        .arg(&d.socket)
        .args(["70", "500", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut flood = flood.spawn().unwrap();
    let mut flood_out = BufReader::new(flood.stdout.take().unwrap());
    let mut line = String::new();
    flood_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open", "the flood could not connect");

    // While it holds its connections, root, another user and nobody itself get answers
    // within ugroctl's own timeout.
    for ids in [None, Some(OTHER), Some(NOBODY)] {
        let out = ctl_with_group(
            &d.socket,
            &["--timeout", "15s", "--json", "status"],
            ids,
            gid,
        );
        assert!(
            out.status.success(),
            "ugroctl status as {ids:?} during the flood: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
    }
    let out = ctl_with_group(&d.socket, &["--timeout", "15s", "health"], Some(OTHER), gid);
    assert_ne!(
        out.status.code(),
        Some(2),
        "health during the flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every flood connection was ended by the daemon: refused at once past the user's share,
    // or closed at the header/body deadline — none is held open for the flood's 30 s.
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        for l in flood_out.lines() {
            rest.push_str(&l.unwrap());
            rest.push('\n');
        }
        rest
    });
    let done = wait_output(flood, Duration::from_secs(60));
    let text = reader.join().unwrap();
    assert!(
        text.contains("closed 570 of 570"),
        "the daemon left flood connections open: {text}\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    // How each ended: 503 at once past the user's share; 403 at once for the bodies (nobody may
    // not reload, and is told so before the body is read); a silent connection closed at the
    // header deadline. Nothing else.
    let mut ended = std::collections::BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("status ") {
            let (k, n) = rest.split_once(' ').unwrap();
            ended.insert(k.to_string(), n.parse::<u32>().unwrap());
        }
    }
    for k in ended.keys() {
        assert!(
            ["503", "403", "closed"].contains(&k.as_str()),
            "unexpected ending {k}: {text}"
        );
    }
    // The daemon's deadlines are 5 s (headers, body) and 2 s (a refusal's answer): all 570
    // ended long before the flood's own 30 s.
    let last: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("last_close_after "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(last < 20.0, "flood connections held for {last} s: {text}");
    assert!(
        ended.get("403").copied().unwrap_or(0) >= 1,
        "a half-sent body that got a place is refused before it is read: {text}"
    );
    assert!(d.ctl(&["status"]).status.success());
}

/// Sends `head` (and nothing more) on a fresh connection; returns the whole answer.
fn send_raw(d: &Daemon, head: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(head).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_body_that_stops_coming_gets_408_with_the_envelope() {
    let d = Daemon::start(&DaemonOptions::default());
    // Root may reload, so its body is waited for — but not for ever.
    let answer = send_raw(
        &d,
        b"POST /v1/summary HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"send\": ",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
    assert!(answer.contains("ugro-protocol: 1"), "{answer}");
    // Headers that never end: the connection is closed at the header deadline.
    let answer = send_raw(&d, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n");
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(d.ctl(&["status"]).status.success());
}

#[test]
fn oversized_targets_and_headers_and_bad_parameters_get_the_envelope() {
    let d = Daemon::start(&DaemonOptions::default());
    let long = format!(
        "GET /v1/events?kind={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = send_raw(&d, long.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(answer.contains("\"code\":\"uri_too_long\""), "{answer}");
    assert!(answer.contains("ugro-protocol: 1"), "{answer}");

    let mut many = String::from("GET /v1/status HTTP/1.1\r\nHost: x\r\n");
    for i in 0..80 {
        many.push_str(&format!("x-filler-{i}: {}\r\n", "b".repeat(100)));
    }
    many.push_str("\r\n");
    let answer = send_raw(&d, many.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains("\"code\":\"headers_too_large\""),
        "{answer}"
    );

    // Query parameters out of range are 400 with the envelope, never a handler panic.
    let client = d.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for uri in [
        "/v1/events?since=300000y",
        "/v1/events?since=500000000y",
        "/v1/events?since=9999999999999999999s",
        "/v1/events?since=-1h",
        "/v1/events?limit=99999999999",
        "/v1/events?limit=-1",
        "/v1/runs?status=%FF",
        "/v1/runs?root=%00",
        "/v1/summaries/2026-13-45",
        "/v1/summaries/%FF%FE",
    ] {
        let (status, _, bytes) = rt
            .block_on(client.raw(http::Method::GET, uri, None))
            .unwrap();
        let body = String::from_utf8_lossy(&bytes);
        assert!(
            status.is_client_error(),
            "{uri}: {status} {body}\n{}",
            d.log()
        );
        let e: ugro_api::ErrorBody = serde_json::from_slice(&bytes)
            .unwrap_or_else(|err| panic!("{uri}: not the envelope ({err}): {body}"));
        assert!(!e.error.message.is_empty(), "{uri}");
    }
    assert!(
        !d.log().contains("panicked"),
        "a handler panicked:\n{}",
        d.log()
    );
    assert!(d.ctl(&["status"]).status.success());
}
