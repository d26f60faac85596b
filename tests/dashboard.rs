//! The web dashboard in a real headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol by the testkit's client) against the real daemon: its `[http]` listener, real run
//! directories (inotify) and the change stream behind the page's script.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ugro_testkit::chromium::{Chromium, Page};
use ugro_testkit::runs::{Trainer, append, find_run, write_epoch, write_file};
use ugro_testkit::sshd::free_port;
use ugro_testkit::{Daemon, DaemonOptions};

const DEADLINE: Duration = Duration::from_secs(60);
const RUN: &str = "exp/run_1";
const XSS: &str = "exp/<img src=x onerror=alert(1)>";

/// The trainers of these tests: 10 epochs and a fresh log (running).
const TRAINER: Trainer = Trainer::new(10).log("train_val_0.log", "epoch 0\n");

/// A daemon over `root` serving the dashboard on `listen` (with `extra` in `[http]`); its URL.
fn daemon(root: &Path, listen: &str, extra: &str) -> (Daemon, String) {
    let port = free_port();
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "[http]\nlisten = \"{listen}:{port}\"\n{extra}\n[[roots]]\npath = \"{}\"\nstall_after = \"30m\"\n",
            root.display()
        ),
        ..DaemonOptions::default()
    });
    let url = format!("http://127.0.0.1:{port}");
    ugro_testkit::wait_for("the dashboard listening", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (d, url)
}

/// `curl -s -i URL [headers]`: status code and the whole answer.
fn curl(url: &str, headers: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "20", "--compressed", url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = ugro_testkit::output_within(&mut cmd, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// The JS expression for the overview row of run `id`.
fn row(id: &str) -> String {
    format!(
        "[...document.querySelectorAll('tr[data-run]')].find(e => e.dataset.run === {})",
        serde_json::to_string(id).unwrap()
    )
}

async fn browser() -> (Chromium, Page) {
    let c = Chromium::start().unwrap();
    let page = c.connect().await.unwrap().new_page().await.unwrap();
    (c, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_nodes_and_runs_and_follows_a_new_epoch_without_a_reload() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join(RUN);
    TRAINER.done(2).write(&run);
    let (d, url) = daemon(root.path(), "127.0.0.1", "");
    ugro_testkit::wait_for("the run listed", DEADLINE, || find_run(&d, RUN));
    let (_c, page) = browser().await;
    page.navigate(&format!("{url}/")).await.unwrap();

    let nodes = page
        .eval("[...document.querySelectorAll('tr[data-node]')].map(e => e.dataset.node)")
        .await
        .unwrap();
    assert_eq!(nodes, serde_json::json!(["local"]), "the node table");
    let ep = format!("{}.cells[1].textContent.trim()", row(RUN));
    assert_eq!(page.eval(&ep).await.unwrap(), "2/10");
    assert_eq!(
        page.eval(&format!("{}.querySelector('progress').value", row(RUN)))
            .await
            .unwrap(),
        20.0
    );
    // The script is connected to the stream before the file changes.
    page.wait_true(
        "document.getElementById('live').textContent === 'live'",
        DEADLINE,
    )
    .await
    .unwrap();
    page.eval("window.notReloaded = true").await.unwrap();

    write_epoch(&run, 2);
    let took = page
        .wait_true(
            &format!("{}.querySelector('progress').value === 30", row(RUN)),
            Duration::from_secs(1),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", d.log()));
    assert_eq!(page.eval(&ep).await.unwrap(), "3/10");
    assert_eq!(
        page.eval("window.notReloaded === true").await.unwrap(),
        true,
        "the page changed in place, not by a reload"
    );
    eprintln!("the page showed the new epoch {took:?} after the file was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_named_like_markup_shows_as_text_and_no_script_runs() {
    let root = tempfile::tempdir().unwrap();
    TRAINER.done(1).write(&root.path().join(XSS));
    let (d, url) = daemon(root.path(), "127.0.0.1", "");
    ugro_testkit::wait_for("the run listed", DEADLINE, || find_run(&d, XSS));
    let (_c, page) = browser().await;
    page.eval("1").await.unwrap();

    page.navigate(&format!("{url}/")).await.unwrap();
    let text = page
        .eval(&format!("{}.querySelector('td.id').textContent", row(XSS)))
        .await;
    assert_eq!(text.unwrap(), XSS, "the id is shown as text");
    assert_eq!(
        page.eval("document.querySelectorAll('img').length")
            .await
            .unwrap(),
        0,
        "no element was injected"
    );
    // The run's own page, reached through the overview's link (percent-encoded).
    let href = page
        .eval(&format!("{}.querySelector('a').href", row(XSS)))
        .await
        .unwrap();
    page.navigate(href.as_str().unwrap()).await.unwrap();
    assert_eq!(
        page.eval("document.querySelector('h1').textContent")
            .await
            .unwrap(),
        XSS
    );
    assert_eq!(
        page.eval("document.querySelectorAll('img:not(.chart)').length")
            .await
            .unwrap(),
        0,
        "no element was injected into the run page"
    );
    // Give a would-be handler time to fire, then look for any dialog.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        page.events("Page.javascriptDialogOpening").is_empty(),
        "a dialog opened: {:?}",
        page.events("Page.javascriptDialogOpening")
    );
    // The headers that keep a missed escape from running anyway.
    let (code, head) = curl(&format!("{url}/"), &[]);
    assert_eq!(code, 200);
    for want in [
        "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(
            head.to_lowercase().contains(&want.to_lowercase()),
            "{want} in\n{head}"
        );
    }
}

/// The JS expression for the text of the run page's log tail.
const TAIL_TEXT: &str = "document.getElementById('logtail').textContent";
/// A log line a browser would run if it were ever taken as markup.
const MARKUP_LINE: &str =
    "<script>window.pwned = 1</script><b id=bold>bold</b><img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_page_shows_the_log_tail_and_follows_new_lines_as_text() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join(RUN);
    TRAINER.done(2).write(&run);
    let log = run.join("train_val_0.log");
    // More lines than the page shows, the last of them markup.
    for i in 1..80 {
        append(&log, &format!("step {i} loss 0.{i}\n"));
    }
    append(&log, &format!("{MARKUP_LINE}\n"));
    let (d, url) = daemon(root.path(), "127.0.0.1", "");
    ugro_testkit::wait_for("the run listed", DEADLINE, || find_run(&d, RUN));
    let (_c, page) = browser().await;
    page.navigate(&format!("{url}/runs/{RUN}")).await.unwrap();

    // Rendered on the server: the last lines only, the markup as text.
    let text = page.eval(TAIL_TEXT).await.unwrap();
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("no log tail: {}", d.log()));
    assert!(text.contains("step 79 loss 0.79\n"), "{text}");
    assert!(!text.contains("step 1 loss"), "only the last lines: {text}");
    assert!(text.ends_with(&format!("{MARKUP_LINE}\n")), "{text}");
    assert_eq!(
        page.eval("document.querySelectorAll('#logtail *').length")
            .await
            .unwrap(),
        0,
        "no element inside the log tail"
    );

    // Followed live: a line appended to the log appears on the open page, markup as text.
    page.eval("window.notReloaded = true").await.unwrap();
    // The follow starts where the page's text ended, so a line written before it connected is
    // not lost either.
    append(&log, "epoch 2 appended after the page loaded\n");
    append(&log, &format!("live {MARKUP_LINE}\n"));
    let took = page
        .wait_true(
            &format!(
                "{TAIL_TEXT}.endsWith('epoch 2 appended after the page loaded\\n' + {})",
                serde_json::to_string(&format!("live {MARKUP_LINE}\n")).unwrap()
            ),
            Duration::from_secs(10),
        )
        .await;
    let took = match took {
        Ok(t) => t,
        Err(e) => panic!(
            "{e}\ntail: {:?}\ndaemon log:\n{}",
            page.eval(TAIL_TEXT).await,
            d.log()
        ),
    };
    assert_eq!(
        page.eval("document.querySelectorAll('#logtail *, #bold').length")
            .await
            .unwrap(),
        0,
        "the followed lines were added as text, not markup"
    );
    assert_eq!(
        page.eval("window.pwned === undefined && window.notReloaded === true")
            .await
            .unwrap(),
        true,
        "no script ran and the page was not reloaded"
    );
    assert!(
        page.events("Page.javascriptDialogOpening").is_empty(),
        "a dialog opened"
    );
    eprintln!("the appended lines showed on the run page after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_every_request_needs_the_token() {
    let root = tempfile::tempdir().unwrap();
    TRAINER.done(2).write(&root.path().join(RUN));
    let token_file = root.path().join("token");
    let token = "s3cret-token-for-the-test";
    write_file(&token_file, &format!("{token}\n"));
    let (d, url) = daemon(
        root.path(),
        "0.0.0.0",
        &format!("token_file = \"{}\"\n", token_file.display()),
    );
    ugro_testkit::wait_for("the run listed", DEADLINE, || find_run(&d, RUN));

    for path in [
        "/",
        "/runs/exp/run_1",
        "/v1/stream",
        "/v1/logs/exp/run_1?lines=5",
        "/v1/logs/exp/run_1?follow=true",
        "/metrics",
        "/assets/live.js",
    ] {
        let (code, _) = curl(&format!("{url}{path}"), &[]);
        assert_eq!(code, 401, "{path} without the token");
        let (code, _) = curl(&format!("{url}{path}"), &["Authorization: Bearer wrong"]);
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let bearer = format!("Authorization: Bearer {token}");
    let (code, body) = curl(&format!("{url}/"), &[&bearer]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(RUN));
    let (code, body) = curl(&format!("{url}/v1/logs/{RUN}?lines=5"), &[&bearer]);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"text\":\"epoch 0\\n\""),
        "the log window: {body}"
    );
    // No control action is offered on the TCP listener, token or not.
    let out = ugro_testkit::output_within(
        Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            &bearer,
            &format!("{url}/v1/reload"),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    // A browser: the token once in the address, then the cookie (also for the EventSource).
    let (_c, page) = browser().await;
    page.navigate(&format!("{url}/")).await.unwrap();
    assert!(page.html().await.unwrap().contains("401 Unauthorized"));
    page.navigate(&format!("{url}/?token={token}"))
        .await
        .unwrap();
    assert_eq!(
        page.eval("location.search").await.unwrap(),
        "",
        "the token left the address bar"
    );
    assert_eq!(
        page.eval(&format!("{}.cells[1].textContent.trim()", row(RUN)))
            .await
            .unwrap(),
        "2/10"
    );
    page.wait_true(
        "document.getElementById('live').textContent === 'live'",
        DEADLINE,
    )
    .await
    .unwrap();
    assert_eq!(
        page.eval("document.cookie").await.unwrap(),
        "",
        "the cookie is HttpOnly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_with_javascript_off() {
    let root = tempfile::tempdir().unwrap();
    TRAINER.done(4).write(&root.path().join(RUN));
    TRAINER.done(1).write(&root.path().join("exp/run_2"));
    let (d, url) = daemon(root.path(), "127.0.0.1", "");
    ugro_testkit::wait_for("the runs listed", DEADLINE, || {
        find_run(&d, RUN)?;
        find_run(&d, "exp/run_2")
    });
    let (_c, page) = browser().await;
    page.set_script_disabled(true).await.unwrap();
    let start = Instant::now();
    page.navigate(&format!("{url}/")).await.unwrap();
    let html = page.html().await.unwrap();
    for want in [
        "exp/run_1",
        "exp/run_2",
        "data-node=\"local\"",
        "4/10",
        "1/10",
    ] {
        assert!(html.contains(want), "{want} in the overview:\n{html}");
    }
    assert!(html.contains(">static<"), "the script did not run");
    page.navigate(&format!("{url}/runs/{RUN}")).await.unwrap();
    let html = page.html().await.unwrap();
    assert!(
        html.contains("Epoch timeline") && html.contains("4/10"),
        "{html}"
    );
    assert!(
        html.contains("id=\"logtail\"") && html.contains("epoch 0\n</pre>"),
        "the log tail is rendered on the server: {html}"
    );
    page.navigate(&format!("{url}/nodes/local")).await.unwrap();
    assert!(page.html().await.unwrap().contains("Checks"));
    page.navigate(&format!("{url}/summaries")).await.unwrap();
    assert!(page.html().await.unwrap().contains("Summaries"));
    eprintln!("four pages without JavaScript in {:?}", start.elapsed());
}

/// Not a check: writes docs/dashboard-overview.png and docs/dashboard-run.png from the example
/// runs of scripts/example-runs.sh plus a few trainer runs, through the real browser.
/// `cargo nextest run -p ugro-e2e --test dashboard --run-ignored only screenshots`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the docs' screenshots; run by hand"]
async fn screenshots_for_the_docs() {
    let root = tempfile::tempdir().unwrap();
    let out = ugro_testkit::output_within(
        Command::new("bash")
            .arg(ugro_testkit::repo_root().join("scripts/example-runs.sh"))
            .arg(root.path()),
        DEADLINE,
    );
    assert!(out.status.success(), "{out:?}");
    for (name, done) in [
        ("resnet50/lr_0.1", 7),
        ("resnet50/lr_0.01", 3),
        ("vit_b16/seed_1", 9),
    ] {
        TRAINER
            .done(done)
            .write(&root.path().join("sweep").join(name));
    }
    let (d, url) = daemon(root.path(), "127.0.0.1", "");
    ugro_testkit::wait_for("the runs listed", DEADLINE, || {
        find_run(&d, "sweep/vit_b16/seed_1")?;
        find_run(&d, "example/trainer_failed")
    });
    std::thread::sleep(Duration::from_secs(3));
    let (_c, page) = browser().await;
    let docs = ugro_testkit::repo_root().join("docs");
    page.navigate(&format!("{url}/")).await.unwrap();
    page.wait_true(
        "document.getElementById('live').textContent === 'live'",
        DEADLINE,
    )
    .await
    .unwrap();
    page.screenshot(&docs.join("dashboard-overview.png"), 1100)
        .await
        .unwrap();
    page.navigate(&format!("{url}/runs/example/trainer_running"))
        .await
        .unwrap();
    page.wait_true("document.querySelector('img.chart').complete", DEADLINE)
        .await
        .unwrap();
    page.screenshot(&docs.join("dashboard-run.png"), 1100)
        .await
        .unwrap();
}
