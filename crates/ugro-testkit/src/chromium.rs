//! A real headless Chromium (Debian's `chromium`) in a fresh profile, and a small DevTools
//! protocol client over its websocket (tokio-tungstenite): targets, navigation, script
//! evaluation, dialog events and screenshots — the few commands the dashboard tests need.
//!
//! Why not chromiumoxide or headless_chrome: both generate bindings for the whole protocol and
//! take minutes to compile on the project's two cores; this is one file of plain JSON messages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// How long Chromium gets to write its DevTools port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one protocol command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Protocol events kept (the oldest are dropped).
const EVENTS_KEPT: usize = 10_000;

/// Where Debian installs the browser.
pub fn binary() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A running headless Chromium; killed on drop.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
    /// The browser's DevTools websocket URL.
    pub ws_url: String,
}

impl Chromium {
    /// Starts the browser in a new temporary profile with an ephemeral DevTools port and waits
    /// (≤ 30 s) for the port file it writes.
    pub fn start() -> Result<Chromium, String> {
        let bin = binary().ok_or("chromium is not installed (apt-get install chromium)")?;
        let profile = tempfile::Builder::new()
            .prefix("ugro-chromium")
            .tempdir()
            .map_err(|e| format!("temp profile: {e}"))?;
        let log = std::fs::File::create(profile.path().join("stderr.log"))
            .map_err(|e| format!("chromium log: {e}"))?;
        let child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--remote-debugging-port=0")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut c = Chromium {
            child,
            ws_url: String::new(),
            _profile: profile,
        };
        c.ws_url = c.wait_port()?;
        Ok(c)
    }

    fn wait_port(&mut self) -> Result<String, String> {
        let file = self._profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    return Ok(format!("ws://127.0.0.1:{port}{path}"));
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromium exited with {status}: {}", self.stderr()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "chromium wrote no DevToolsActivePort within {START_TIMEOUT:?}: {}",
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the browser wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self._profile.path().join("stderr.log")).unwrap_or_default()
    }

    /// Opens a protocol connection to the browser.
    pub async fn connect(&self) -> Result<Cdp, String> {
        Cdp::connect(&self.ws_url).await
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;
type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// A DevTools protocol connection: commands by id, events kept in order.
#[derive(Clone)]
pub struct Cdp {
    sink: Arc<tokio::sync::Mutex<Sink>>,
    pending: Pending,
    events: Arc<Mutex<Vec<Value>>>,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for Cdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cdp")
    }
}

impl Cdp {
    async fn connect(url: &str) -> Result<Cdp, String> {
        let (ws, _) = tokio::time::timeout(CALL_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| format!("connecting to {url} timed out"))?
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (p, ev) = (pending.clone(), events.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    let tx = p.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                    if let Some(tx) = tx {
                        let _ = tx.send(v);
                    }
                } else {
                    let mut ev = ev.lock().unwrap_or_else(|e| e.into_inner());
                    if ev.len() >= EVENTS_KEPT {
                        ev.remove(0);
                    }
                    ev.push(v);
                }
            }
        });
        Ok(Cdp {
            sink: Arc::new(tokio::sync::Mutex::new(sink)),
            pending,
            events,
            next: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Sends a command (to a page when `session` is set) and waits for its result.
    pub async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        self.sink
            .lock()
            .await
            .send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| format!("{method}: sending: {e}"))?;
        let v = tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .map_err(|_| format!("{method}: no answer within {CALL_TIMEOUT:?}"))?
            .map_err(|_| format!("{method}: the connection closed"))?;
        match v.get("error") {
            Some(e) => Err(format!("{method}: {e}")),
            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Events named `method` (of `session`, when set) received so far.
    pub fn events(&self, session: Option<&str>, method: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e["method"] == method)
            .filter(|e| session.is_none_or(|s| e["sessionId"] == s))
            .cloned()
            .collect()
    }

    /// A new page (tab) attached in flat mode, with page events on.
    pub async fn new_page(&self) -> Result<Page, String> {
        let t = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target = t["targetId"].as_str().ok_or("no targetId")?.to_string();
        let a = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await?;
        let session = a["sessionId"].as_str().ok_or("no sessionId")?.to_string();
        let page = Page {
            cdp: self.clone(),
            session,
        };
        page.call("Page.enable", json!({})).await?;
        page.call("Runtime.enable", json!({})).await?;
        Ok(page)
    }
}

/// One attached page.
#[derive(Debug, Clone)]
pub struct Page {
    cdp: Cdp,
    pub session: String,
}

impl Page {
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.cdp.call(Some(&self.session), method, params).await
    }

    /// Events of this page named `method`.
    pub fn events(&self, method: &str) -> Vec<Value> {
        self.cdp.events(Some(&self.session), method)
    }

    /// Navigates and waits (≤ 30 s) for the load event; the HTTP status of the document.
    pub async fn navigate(&self, url: &str) -> Result<(), String> {
        let before = self.events("Page.loadEventFired").len();
        let r = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(e) = r.get("errorText") {
            return Err(format!("navigating to {url}: {e}"));
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.events("Page.loadEventFired").len() <= before {
            if Instant::now() >= deadline {
                return Err(format!("{url} did not load within {CALL_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Evaluates `expr` in the page and returns its value (promises awaited).
    pub async fn eval(&self, expr: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("evaluating {expr}: {e}"));
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Polls `expr` until it is `true`, at most `timeout`; how long it took.
    pub async fn wait_true(&self, expr: &str, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if self.eval(expr).await? == Value::Bool(true) {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                return Err(format!("`{expr}` not true within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Turns script execution off (or on) for this page.
    pub async fn set_script_disabled(&self, disabled: bool) -> Result<(), String> {
        self.call(
            "Emulation.setScriptExecutionDisabled",
            json!({ "value": disabled }),
        )
        .await
        .map(|_| ())
    }

    /// The page's visible HTML.
    pub async fn html(&self) -> Result<String, String> {
        let doc = self.call("DOM.getDocument", json!({ "depth": 0 })).await?;
        let node = doc["root"]["nodeId"].clone();
        let r = self
            .call("DOM.getOuterHTML", json!({ "nodeId": node }))
            .await?;
        Ok(r["outerHTML"].as_str().unwrap_or_default().to_string())
    }

    /// A PNG of the whole page, written to `path`.
    pub async fn screenshot(&self, path: &Path, width: u32) -> Result<(), String> {
        use base64::Engine as _;
        let h = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .await?
            .as_u64()
            .unwrap_or(900)
            .min(4000);
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": h, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .map_err(|e| format!("screenshot: {e}"))?;
        std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}
