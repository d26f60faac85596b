//! The dashboard's TCP listener is bounded like the socket: a flood of idle connections is cut
//! at `MAX_TCP_CONNECTIONS` (the rest closed at once), every idle one is closed at the header
//! deadline, and the control socket answers all along.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use ugro_testkit::sshd::free_port;
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

/// The listener's cap (crates/ugro-monitor/src/web/mod.rs `MAX_TCP_CONNECTIONS`).
const CAP: usize = 128;
const FLOOD: usize = CAP + 40;

/// Has the daemon closed this connection (EOF or reset), without blocking?
fn closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn curl_status(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            url,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_flood_of_idle_tcp_connections_is_capped_and_timed_out_and_the_socket_answers() {
    let port = free_port();
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..DaemonOptions::default()
    });
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for("the listener answering", Duration::from_secs(30), || {
        (curl_status(&url) == "200").then_some(())
    });

    let mut conns: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Past the cap, connections are closed at once; the first CAP are held (idle, no request).
    let cut = wait_for(
        "the connections past the cap closed",
        Duration::from_secs(5),
        || {
            let n = conns.iter_mut().map(closed).filter(|c| *c).count();
            (n >= FLOOD - CAP).then_some(n)
        },
    );
    assert!(
        cut < FLOOD,
        "idle connections under the cap are kept until their deadline: {cut} of {FLOOD} closed"
    );

    // The control socket is another listener: it answers during the flood.
    let status = d.ctl_json(&["status"]);
    assert!(status["pid"].is_number(), "{status}");

    // Idle connections are closed at the header deadline (10 s), which frees the listener.
    wait_for(
        "every idle connection closed by the header deadline",
        Duration::from_secs(20),
        || conns.iter_mut().all(closed).then_some(()),
    );
    drop(conns);
    assert_eq!(curl_status(&url), "200", "the listener serves again");
}
