//! Email delivery and the durable outbox against a real SMTP server (Debian's aiosmtpd started by the testkit) and a real SQLite store in a temp dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use ugro_core::health::Severity;
use ugro_monitor::config::{Config, EmailConfig, TlsMode};
use ugro_monitor::mail::{self, CHART_CID, Email, MailError};
use ugro_monitor::outbox::{self, NewOutboxMessage, Outbox, OutboxEntry, OutboxHost, OutboxState};
use ugro_monitor::store::{EventFilter, NewEvent, Store};
use ugro_monitor::systemd::Heartbeats;
use ugro_testkit::smtp::{SmtpOptions, SmtpServer, TestCa};

const SECTIONS: [&str; 4] = [
    "Experiment Statistics",
    "Key Events",
    "Progress Overview",
    "Resource Utilization",
];

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn email_config(server: &SmtpServer, host: &str, tls: TlsMode) -> EmailConfig {
    EmailConfig {
        enabled: true,
        smtp_host: host.to_string(),
        smtp_port: server.port(),
        tls,
        username: None,
        password_file: None,
        ca_file: None,
        from: "ugro-monitor <ugro@lab.test>".into(),
        to: vec!["team@lab.test".into(), "Ops <ops@lab.test>".into()],
    }
}

fn summary_email() -> Email {
    let text = SECTIONS
        .iter()
        .map(|s| format!("## {s}\n\n- something about {s}\n"))
        .collect::<Vec<_>>()
        .join("\n");
    let html = format!(
        "<html><body>{}<img src=\"cid:{CHART_CID}\" alt=\"GPU utilisation\"></body></html>",
        SECTIONS
            .iter()
            .map(|s| format!("<h2>{s}</h2>"))
            .collect::<String>()
    );
    Email {
        subject: "[ugro] 2026-11-22 — 12 running, 3 failed, 1 node unhealthy".into(),
        text,
        html,
        chart_png: Some(PNG.to_vec()),
    }
}

fn write_password(dir: &Path, password: &str) -> std::path::PathBuf {
    let p = dir.join("smtp-password");
    std::fs::write(&p, format!("{password}\n")).unwrap();
    p
}

async fn send(cfg: &EmailConfig, message: &lettre::Message) -> Result<(), MailError> {
    let m = NewOutboxMessage::from_message(None, message);
    mail::send_raw(
        cfg,
        &m.envelope_from,
        &m.recipients,
        &m.message,
        Duration::from_secs(20),
    )
    .await
}

/// Checks a delivered summary: subject, the four sections in the text part, the HTML part
/// referring to the chart, and the inline PNG with Content-ID <gpu-chart>.
fn assert_summary(raw: &[u8]) {
    let msg = MessageParser::default().parse(raw).expect("parse message");
    assert_eq!(
        msg.subject(),
        Some("[ugro] 2026-11-22 — 12 running, 3 failed, 1 node unhealthy")
    );
    let text = msg.body_text(0).expect("text part").to_string();
    let mut at = 0;
    for s in SECTIONS {
        let pos = text[at..]
            .find(s)
            .unwrap_or_else(|| panic!("section {s} missing or out of order in:\n{text}"));
        at += pos + s.len();
    }
    let html = msg.body_html(0).expect("html part").to_string();
    assert!(html.contains("<h2>Key Events</h2>"), "{html}");
    assert!(html.contains("cid:gpu-chart"), "{html}");
    let root = msg.root_part();
    let ct = root.content_type().expect("root content type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    let image = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("png"))
        })
        .expect("an image/png part");
    assert_eq!(image.content_id(), Some("gpu-chart"));
    assert_eq!(image.contents(), PNG);
    let related = msg.parts.iter().any(|p| {
        p.content_type()
            .is_some_and(|c| c.subtype() == Some("related"))
    });
    assert!(related, "no multipart/related part");
    // aiosmtpd's Mailbox handler records the envelope recipients.
    let raw_text = String::from_utf8_lossy(raw);
    assert!(
        raw_text.contains("X-RcptTo: team@lab.test, ops@lab.test"),
        "{raw_text}"
    );
}

#[tokio::test]
async fn starttls_with_auth_delivers_text_html_and_inline_chart() {
    let ca = TestCa::generate();
    let server = SmtpServer::start(SmtpOptions::starttls(&ca).with_auth("ugro", "c0rrect horse"));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = email_config(&server, "localhost", TlsMode::Starttls);
    cfg.ca_file = Some(ca.ca_pem().to_path_buf());
    cfg.username = Some("ugro".into());
    cfg.password_file = Some(write_password(dir.path(), "c0rrect horse"));

    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();
    send(&cfg, &message).await.unwrap();
    let msgs = server
        .wait_for_messages_async(1, Duration::from_secs(10))
        .await;
    assert_eq!(msgs.len(), 1);
    assert_summary(&msgs[0]);
}

#[tokio::test]
async fn implicit_tls_delivers_to_an_ip_address() {
    let ca = TestCa::generate();
    let server = SmtpServer::start(SmtpOptions::implicit_tls(&ca));
    let mut cfg = email_config(&server, "127.0.0.1", TlsMode::Tls);
    cfg.ca_file = Some(ca.ca_pem().to_path_buf());
    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();
    send(&cfg, &message).await.unwrap();
    let msgs = server
        .wait_for_messages_async(1, Duration::from_secs(10))
        .await;
    assert_summary(&msgs[0]);
}

#[tokio::test]
async fn plain_smtp_delivers() {
    let server = SmtpServer::start(SmtpOptions::plain());
    let cfg = email_config(&server, "127.0.0.1", TlsMode::None);
    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();
    send(&cfg, &message).await.unwrap();
    let msgs = server
        .wait_for_messages_async(1, Duration::from_secs(10))
        .await;
    assert_summary(&msgs[0]);
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    // A server without STARTTLS must not get the message in clear text.
    let server = SmtpServer::start(SmtpOptions::plain());
    let cfg = email_config(&server, "127.0.0.1", TlsMode::Starttls);
    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();
    let err = send(&cfg, &message).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    assert!(text.contains("starttls"), "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_clear_error() {
    let ca = TestCa::generate();
    let other = TestCa::generate();
    let server = SmtpServer::start(SmtpOptions::starttls(&ca));
    let mut cfg = email_config(&server, "localhost", TlsMode::Starttls);
    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();

    for ca_file in [Some(other.ca_pem().to_path_buf()), None] {
        cfg.ca_file = ca_file;
        let err = send(&cfg, &message).await.unwrap_err();
        assert!(matches!(err, MailError::Smtp { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "sending email via SMTP server localhost:{}",
                server.port()
            )),
            "{text}"
        );
        assert!(
            text.contains("invalid peer certificate: UnknownIssuer"),
            "{text}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn an_auth_failure_never_shows_the_password() {
    let ca = TestCa::generate();
    let server = SmtpServer::start(SmtpOptions::starttls(&ca).with_auth("ugro", "the-right-one"));
    let dir = tempfile::tempdir().unwrap();
    let secret = "Wr0ng-s3cret-Pa55";
    let mut cfg = email_config(&server, "localhost", TlsMode::Starttls);
    cfg.ca_file = Some(ca.ca_pem().to_path_buf());
    cfg.username = Some("ugro".into());
    cfg.password_file = Some(write_password(dir.path(), secret));
    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();

    let err = send(&cfg, &message).await.unwrap_err();
    let display = err.to_string();
    let debug = format!("{err:?}");
    assert!(display.contains("535"), "{display}");
    assert!(
        display.contains(&format!("localhost:{}", server.port())),
        "{display}"
    );
    assert!(!display.contains(secret), "{display}");
    assert!(!debug.contains(secret), "{debug}");

    // Without a username the server's "auth required" comes back, and nothing is delivered.
    cfg.username = None;
    let err = send(&cfg, &message).await.unwrap_err();
    assert!(err.to_string().contains("530"), "{err}");
    assert!(server.messages().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The outbox, driven through its sender loop with a real store.

/// What the sender needs, without a whole daemon: events go to the store like the daemon's;
/// the email settings can be changed as a reload would.
struct Host {
    store: Store,
    outbox: Outbox,
    config: watch::Sender<Arc<Config>>,
    heartbeats: Arc<Heartbeats>,
}

impl Host {
    /// Changes the email settings as a reload would.
    fn set_email(&self, f: impl FnOnce(&mut EmailConfig)) {
        self.config.send_modify(|c| f(&mut Arc::make_mut(c).email));
    }
}

impl ugro_monitor::host::Host for Host {
    fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.config.subscribe()
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn heartbeats(&self) -> &Arc<Heartbeats> {
        &self.heartbeats
    }

    async fn event(&self, e: NewEvent) {
        self.store.record_event(Utc::now(), &e).await.unwrap();
    }
}

impl OutboxHost for Host {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

struct Worker {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    heartbeats: Arc<Heartbeats>,
}

impl Worker {
    fn start(host: &Arc<Host>) -> Self {
        let heartbeats = Heartbeats::new();
        let hb = heartbeats.register("outbox", Duration::from_secs(60));
        let cancel = CancellationToken::new();
        let (h, c) = (host.clone(), cancel.clone());
        let task = tokio::spawn(async move { outbox::run(&*h, &c, &hb).await });
        Self {
            cancel,
            task,
            heartbeats,
        }
    }

    /// Stops the sender like the daemon does, within its stop budget.
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .expect("sender stops within 3 s")
            .unwrap();
    }
}

async fn open_host(path: &Path, email: EmailConfig) -> Arc<Host> {
    let mut config = ugro_monitor::config::parse(Path::new("/etc/ugro/ugro.toml"), "").unwrap();
    config.email = email;
    Arc::new(Host {
        store: Store::open(path).await.unwrap(),
        outbox: Outbox::new(),
        config: watch::Sender::new(Arc::new(config)),
        heartbeats: Heartbeats::new(),
    })
}

async fn entry(store: &Store, id: i64) -> OutboxEntry {
    store
        .outbox_list(1000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.id == id)
        .expect("entry listed")
}

async fn wait_entry(
    store: &Store,
    id: i64,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&OutboxEntry) -> bool,
) -> OutboxEntry {
    let start = Instant::now();
    loop {
        let e = entry(store, id).await;
        if ok(&e) {
            return e;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; entry: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn email_events(store: &Store) -> Vec<(String, Severity, String)> {
    let (events, _) = store
        .events(&EventFilter {
            kind: Some("email.".into()),
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    events
        .into_iter()
        .map(|e| (e.kind, e.severity, e.message))
        .collect()
}

fn kinds(events: &[(String, Severity, String)]) -> Vec<&str> {
    events.iter().map(|(k, _, _)| k.as_str()).collect()
}

/// A plain server that is down (stopped) when the test begins, on a known port.
fn server_that_is_down() -> SmtpServer {
    let mut server = SmtpServer::start(SmtpOptions::plain());
    server.stop();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_at_enqueue_is_delivered_when_it_comes_back() {
    let mut server = server_that_is_down();
    let dir = tempfile::tempdir().unwrap();
    let cfg = email_config(&server, "127.0.0.1", TlsMode::None);
    let host = open_host(&dir.path().join("ugro.db"), cfg.clone()).await;
    let worker = Worker::start(&host);

    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();
    let date = NaiveDate::from_ymd_opt(2026, 11, 22);
    let id = outbox::enqueue(&*host, date, message).await.unwrap();

    // Stored before anything was sent, then retried: the first failure is an event, the
    // second only a log line.
    let e = wait_entry(
        &host.store,
        id,
        "two failed attempts",
        Duration::from_secs(20),
        |e| e.attempts >= 2,
    )
    .await;
    assert_eq!(e.state, OutboxState::Pending);
    assert_eq!(e.summary_date, date);
    assert_eq!(e.recipients, ["team@lab.test", "ops@lab.test"]);
    assert!(
        e.last_error
            .as_deref()
            .unwrap()
            .contains(&format!("127.0.0.1:{}", server.port())),
        "{e:?}"
    );
    assert!(e.next_attempt.unwrap() > Utc::now() - chrono::Duration::seconds(1));
    let events = email_events(&host.store).await;
    assert_eq!(kinds(&events), ["email.deferred"], "{events:?}");
    assert_eq!(events[0].1, Severity::Warning);
    assert!(events[0].2.contains("retrying"), "{events:?}");
    assert!(server.messages().is_empty());

    server.restart();
    let e = wait_entry(&host.store, id, "delivery", Duration::from_secs(30), |e| {
        e.state == OutboxState::Delivered
    })
    .await;
    assert!(e.attempts >= 3, "{e:?}");
    assert!(e.done.is_some() && e.next_attempt.is_none());
    let msgs = server
        .wait_for_messages_async(1, Duration::from_secs(5))
        .await;
    assert_summary(&msgs[0]);

    let events = email_events(&host.store).await;
    assert_eq!(
        kinds(&events),
        ["email.deferred", "email.delivered"],
        "{events:?}"
    );
    assert_eq!(events[1].1, Severity::Info);
    assert!(events[1].2.contains("2 recipients"), "{events:?}");
    assert!(
        events[1]
            .2
            .contains(&format!("after {} attempts", e.attempts)),
        "{events:?}"
    );
    assert!(worker.heartbeats.stalled().is_empty());
    worker.stop().await;
    // Exactly once.
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_email_survives_a_daemon_restart() {
    let mut server = server_that_is_down();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ugro.db");
    let cfg = email_config(&server, "127.0.0.1", TlsMode::None);

    // First "daemon": SMTP is down, the email is queued and fails once.
    let host = open_host(&db, cfg.clone()).await;
    let worker = Worker::start(&host);
    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();
    let id = outbox::enqueue(&*host, None, message).await.unwrap();
    wait_entry(
        &host.store,
        id,
        "a failed attempt",
        Duration::from_secs(15),
        |e| e.attempts >= 1,
    )
    .await;
    worker.stop().await;
    host.store.close().await;
    drop(host);

    // SMTP comes back while the daemon is down; the second daemon delivers from the file.
    server.restart();
    let host = open_host(&db, cfg).await;
    let e = entry(&host.store, id).await;
    assert_eq!(e.state, OutboxState::Pending);
    let worker = Worker::start(&host);
    let e = wait_entry(&host.store, id, "delivery", Duration::from_secs(20), |e| {
        e.state == OutboxState::Delivered
    })
    .await;
    assert!(e.attempts >= 2, "{e:?}");
    let msgs = server
        .wait_for_messages_async(1, Duration::from_secs(5))
        .await;
    assert_summary(&msgs[0]);
    let events = email_events(&host.store).await;
    assert_eq!(
        kinds(&events),
        ["email.deferred", "email.delivered"],
        "{events:?}"
    );
    worker.stop().await;
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_still_failing_24h_after_it_was_queued_is_given_up() {
    let server = server_that_is_down();
    let dir = tempfile::tempdir().unwrap();
    let cfg = email_config(&server, "127.0.0.1", TlsMode::None);
    let host = open_host(&dir.path().join("ugro.db"), cfg.clone()).await;
    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();
    // Queued 24 h and a minute ago (e.g. email was disabled meanwhile).
    let created = Utc::now() - chrono::Duration::hours(24) - chrono::Duration::minutes(1);
    let old = host
        .store
        .outbox_enqueue(created, &NewOutboxMessage::from_message(None, &message))
        .await
        .unwrap();
    // A fresh one failing at the same time is only deferred.
    let fresh = outbox::enqueue(&*host, None, message).await.unwrap();

    let worker = Worker::start(&host);
    let e = wait_entry(
        &host.store,
        old,
        "giving up",
        Duration::from_secs(15),
        |e| e.state == OutboxState::GivenUp,
    )
    .await;
    assert_eq!(e.attempts, 1);
    assert!(e.done.is_some());
    assert!(e.last_error.is_some());
    let f = wait_entry(
        &host.store,
        fresh,
        "a failed attempt",
        Duration::from_secs(15),
        |e| e.attempts >= 1,
    )
    .await;
    assert_eq!(f.state, OutboxState::Pending);
    worker.stop().await;

    let events = email_events(&host.store).await;
    let given_up: Vec<_> = events.iter().filter(|e| e.0 == "email.given_up").collect();
    assert_eq!(given_up.len(), 1, "{events:?}");
    assert_eq!(given_up[0].1, Severity::Critical);
    assert!(
        given_up[0].2.contains(&format!("email #{old}")),
        "{events:?}"
    );
    assert!(given_up[0].2.contains("24.0 h"), "{events:?}");
    let deferred: Vec<_> = events.iter().filter(|e| e.0 == "email.deferred").collect();
    assert_eq!(deferred.len(), 1, "{events:?}");
    assert!(
        deferred[0].2.contains(&format!("email #{fresh}")),
        "{events:?}"
    );

    // Done entries past the retention are pruned, pending ones never.
    assert_eq!(host.store.outbox_prune(Utc::now()).await.unwrap(), 1);
    let left = host.store.outbox_list(100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_email_keeps_the_queue_until_enabled() {
    let server = SmtpServer::start(SmtpOptions::plain());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = email_config(&server, "127.0.0.1", TlsMode::None);
    cfg.enabled = false;
    let host = open_host(&dir.path().join("ugro.db"), cfg.clone()).await;
    let worker = Worker::start(&host);
    let message = mail::build_message(&cfg, &summary_email(), Utc::now()).unwrap();
    let id = outbox::enqueue(&*host, None, message).await.unwrap();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = entry(&host.store, id).await;
    assert_eq!((e.state, e.attempts), (OutboxState::Pending, 0));
    assert!(server.messages().is_empty());

    // A reload enables email: the next look at the queue sends it.
    host.set_email(|e| e.enabled = true);
    host.outbox.wake();
    wait_entry(&host.store, id, "delivery", Duration::from_secs(10), |e| {
        e.state == OutboxState::Delivered && e.attempts == 1
    })
    .await;
    server
        .wait_for_messages_async(1, Duration::from_secs(5))
        .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_one_batch_is_all_delivered_once() {
    let server = SmtpServer::start(SmtpOptions::plain());
    let dir = tempfile::tempdir().unwrap();
    let cfg = email_config(&server, "127.0.0.1", TlsMode::None);
    let host = open_host(&dir.path().join("ugro.db"), cfg.clone()).await;
    let n = outbox::BATCH as usize + 3;
    let mut ids = Vec::new();
    for i in 0..n {
        let mut email = summary_email();
        email.subject = format!("message {i}");
        let message = mail::build_message(&cfg, &email, Utc::now()).unwrap();
        ids.push(
            host.store
                .outbox_enqueue(Utc::now(), &NewOutboxMessage::from_message(None, &message))
                .await
                .unwrap(),
        );
    }
    let worker = Worker::start(&host);
    for id in &ids {
        wait_entry(&host.store, *id, "delivery", Duration::from_secs(30), |e| {
            e.state == OutboxState::Delivered
        })
        .await;
    }
    let msgs = server
        .wait_for_messages_async(n, Duration::from_secs(5))
        .await;
    worker.stop().await;
    assert_eq!(msgs.len(), n);
    let mut subjects: Vec<String> = msgs
        .iter()
        .map(|m| {
            MessageParser::default()
                .parse(m)
                .unwrap()
                .subject()
                .unwrap()
                .to_string()
        })
        .collect();
    subjects.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("message {i}")).collect();
    want.sort();
    assert_eq!(subjects, want);
    let delivered = email_events(&host.store)
        .await
        .into_iter()
        .filter(|e| e.0 == "email.delivered")
        .count();
    assert_eq!(delivered, n);
}
