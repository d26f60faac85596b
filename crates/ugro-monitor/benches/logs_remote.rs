//! Remote log benchmark (run by hand; results go to docs/benchmarks.md), over the testkit's
//! real OpenSSH server on loopback and one persistent russh session, as the daemon holds it:
//! 1. the last 5 lines of a 2 GiB sparse log (`logs::remote_tail`): wall time and bytes on the
//!    channel;
//! 2. follow latency: a line carrying its write time is appended at a spread of moments; the
//!    daemon's remote follow loop (`RemoteFollow::step` every `logs::REMOTE_POLL`) reports it;
//!    measured from the append to the step returning it (the HTTP hop to ugroctl is the local
//!    follow's, measured by benches/logs_bench.py).
//!
//!   cargo bench -p ugro-monitor --bench logs_remote

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ugro_monitor::config::RemoteHost;
use ugro_monitor::logs::{ChannelBytes, FollowEvent, REMOTE_POLL, RemoteFollow, remote_tail};
use ugro_monitor::ssh::NodeSession;
use ugro_testkit::sshd::Sshd;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn stats(name: &str, mut xs: Vec<f64>) {
    xs.sort_by(f64::total_cmp);
    let p = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: n {} median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        xs.len(),
        p(0.5),
        p(0.95),
        xs[xs.len() - 1]
    );
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let sshd = Sshd::start();
    let session = NodeSession::new(RemoteHost::loopback(
        sshd.port(),
        sshd.user(),
        sshd.client_key(),
        sshd.known_hosts(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train_val.log");
    let f = std::fs::File::create(&log).unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let mut h = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..100 {
        writeln!(h, "epoch {i}: loss 0.{i}").unwrap();
    }
    let path = log.to_string_lossy().into_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        session.ensure_connected(true).await.unwrap();
        // 1. -n 5 on 2 GiB.
        let mut walls = Vec::new();
        let mut bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let (c, ChannelBytes(b)) = remote_tail(&session, "box", &path, 5, 1 << 20)
                .await
                .unwrap();
            walls.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = b;
            assert!(c.bytes.ends_with(b"epoch 99: loss 0.99\n"));
        }
        stats("remote -n 5 on a 2 GiB log (one exec)", walls);
        println!("bytes on the channel per call: {bytes}");

        // 2. Follow latency.
        let size = std::fs::metadata(&log).unwrap().len();
        let mut fol = RemoteFollow {
            path: path.clone(),
            ino: None,
            offset: size,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
        let poller = async {
            loop {
                for e in fol.step(&session, "box").await.unwrap() {
                    if let FollowEvent::Data { bytes, .. } = e {
                        let seen = now_ns();
                        for line in String::from_utf8_lossy(&bytes).lines() {
                            if let Some(t) = line.split(' ').nth(2) {
                                let t: u128 = t.parse().unwrap();
                                let _ = tx.send((seen - t) as f64 / 1e6);
                            }
                        }
                    }
                }
                tokio::time::sleep(REMOTE_POLL).await;
            }
        };
        let writer = async {
            let mut lat = Vec::new();
            for i in 0..n {
                // Spread the appends over the poll period.
                tokio::time::sleep(Duration::from_millis(200 + (i as u64 * 137) % 500)).await;
                writeln!(h, "bench {i} {}", now_ns()).unwrap();
                lat.push(rx.recv().await.unwrap());
            }
            lat
        };
        tokio::select! {
            _ = poller => unreachable!(),
            lat = writer => stats("remote follow: append -> chunk read over SSH", lat),
        }
    });
}
