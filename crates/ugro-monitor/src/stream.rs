//! The change stream (`GET /v1/stream`, server-sent events): the [`Changes`] hub every part
//! publishes to (numbered messages, a bounded ring for clients that come back with
//! `Last-Event-ID`, a bounded queue per client: a client that falls behind is disconnected), the
//! task that turns changes of the run list and of node health into messages ([`supervise`]),
//! and the handler ([`handler`]), which any listener's router can mount.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::defaults;
use crate::health::Health;
use crate::http::{ApiError, Disconnect, Peer};
use crate::runs::Runs;
use crate::store::NewEvent;
use crate::supervise::BEAT_EVERY;

/// A comment is sent to an idle stream this often, so proxies and clients see it alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most stream clients at once (on every listener together). The control socket serves
/// [`crate::http::MAX_CONNECTIONS`]; streams never take more than this many of them, so at
/// least 56 stay for ordinary requests, the 16 kept for root and the daemon's uid among them.
pub const MAX_STREAMS: usize = 200;
/// Most stream clients of one peer uid other than root and the daemon's own (half of its
/// connection cap, so its streams never keep it from asking for a list).
pub const MAX_STREAMS_PER_UID: usize = crate::http::MAX_CONNECTIONS_PER_UID / 2;
/// Most stream clients on the TCP listener (dashboards), so they never take the places of the
/// socket's clients (`ugroctl --watch`, `events -f`).
pub const MAX_STREAMS_TCP: usize = MAX_STREAMS / 2;
/// Most messages waiting for one client; one more and the client is disconnected.
pub const CLIENT_QUEUE_MESSAGES: usize = 2048;
/// Most bytes of messages waiting for one client; past it the client is disconnected.
pub const CLIENT_QUEUE_BYTES: usize = 2 * 1024 * 1024;
/// A change of more runs than this at once (a root's first scan) is one `reset` message (refetch
/// the list) instead of one message per run.
pub const BURST_RESET: usize = 1000;

/// What a message is about; a client chooses kinds with `?kinds=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Run,
    Node,
    Event,
    Summary,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Run, Kind::Node, Kind::Event, Kind::Summary];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Node => "node",
            Kind::Event => "event",
            Kind::Summary => "summary",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Kind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    pub const ALL: Kinds = Kinds(0b1111);

    /// `run,node,event,summary` (any of them, comma separated, at least one).
    pub fn parse(s: &str) -> Result<Kinds, String> {
        let mut bits = 0;
        for word in s.split(',').map(str::trim) {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.as_str() == word)
                .ok_or_else(|| {
                    format!("unknown kind \"{word}\" in kinds: use run, node, event or summary")
                })?;
            bits |= kind.bit();
        }
        Ok(Kinds(bits))
    }

    pub fn has(self, k: Kind) -> bool {
        self.0 & k.bit() != 0
    }
}

/// One numbered message of the stream.
#[derive(Debug)]
pub struct Message {
    pub id: u64,
    pub kind: Kind,
    /// The SSE event name: the kind's name, or `reset`.
    pub name: &'static str,
    /// JSON.
    pub data: Bytes,
}

impl Message {
    /// What the message costs the ring and a client's queue.
    fn cost(&self) -> usize {
        self.data.len() + 64
    }

    fn to_sse(&self) -> SseEvent {
        // Our JSON is compact (no raw newlines); `data` would split lines anyway.
        SseEvent::default()
            .id(self.id.to_string())
            .event(self.name)
            .data(String::from_utf8_lossy(&self.data))
    }
}

/// Bounds of the hub.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub ring_messages: usize,
    pub ring_bytes: usize,
    pub client_messages: usize,
    pub client_bytes: usize,
    pub streams: usize,
    pub streams_per_uid: usize,
    /// Of `streams`, the most on TCP (a subscriber without a peer uid).
    pub streams_tcp: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ring_messages: defaults::STREAM_RING_MESSAGES,
            ring_bytes: defaults::STREAM_RING_BYTES,
            client_messages: CLIENT_QUEUE_MESSAGES,
            client_bytes: CLIENT_QUEUE_BYTES,
            streams: MAX_STREAMS,
            streams_per_uid: MAX_STREAMS_PER_UID,
            streams_tcp: MAX_STREAMS_TCP,
        }
    }
}

/// The hub: numbers messages, keeps the newest in a ring, hands each to every client that
/// asked for its kind.
#[derive(Debug)]
pub struct Changes {
    inner: Arc<Mutex<Inner>>,
    limits: Limits,
    closed: CancellationToken,
    nodes: Notify,
}

#[derive(Debug)]
struct Inner {
    /// The id of the newest message (ids start past the daemon's start time in microseconds,
    /// so a client's id from an earlier daemon is always older than this one's ring).
    last_id: u64,
    /// Every id up to this one has left the ring (or was never in it).
    gone_upto: u64,
    ring: VecDeque<Arc<Message>>,
    ring_bytes: usize,
    clients: Vec<ClientQueue>,
    streams: usize,
    per_uid: HashMap<u32, usize>,
    /// Streams on TCP.
    tcp: usize,
}

#[derive(Debug)]
struct ClientQueue {
    tx: mpsc::Sender<Arc<Message>>,
    kinds: Kinds,
    queued: Arc<AtomicUsize>,
    /// Cancelled to disconnect the client.
    drop: CancellationToken,
}

/// Why a stream was not opened.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("the daemon is serving {0} change streams already")]
    TooMany(usize),
    #[error("uid {uid} holds {max} change streams already")]
    TooManyForUid { uid: u32, max: usize },
    #[error("the HTTP listener serves {0} change streams already")]
    TooManyOnTcp(usize),
    #[error("the daemon is stopping")]
    Closed,
}

/// Where a new client starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No `Last-Event-ID`: live messages only; the id is the newest so far.
    Fresh(u64),
    /// Every message after the client's id is replayed first.
    Resume,
    /// The client's id is older than the ring holds (or unknown): it must refetch. The id is
    /// the newest so far.
    Reset(u64),
}

impl Changes {
    /// A hub whose first message is numbered past `start` (microseconds since the epoch).
    pub fn new(limits: Limits, start: DateTime<Utc>) -> Self {
        let base = start.timestamp_micros().max(0) as u64;
        Self {
            inner: Arc::new(Mutex::new(Inner {
                last_id: base,
                gone_upto: base,
                ring: VecDeque::new(),
                ring_bytes: 0,
                clients: Vec::new(),
                streams: 0,
                per_uid: HashMap::new(),
                tcp: 0,
            })),
            limits,
            closed: CancellationToken::new(),
            nodes: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers a message, keeps it in the ring and queues it for every client of its kind. A
    /// client whose queue is full is disconnected (it may come back with `Last-Event-ID`).
    pub fn publish(&self, kind: Kind, name: &'static str, data: impl Into<Bytes>) -> u64 {
        let mut g = self.lock();
        g.last_id += 1;
        let msg = Arc::new(Message {
            id: g.last_id,
            kind,
            name,
            data: data.into(),
        });
        let cost = msg.cost();
        g.ring_bytes += cost;
        g.ring.push_back(msg.clone());
        while g.ring.len() > self.limits.ring_messages
            || (g.ring_bytes > self.limits.ring_bytes && g.ring.len() > 1)
        {
            let Some(old) = g.ring.pop_front() else { break };
            g.ring_bytes -= old.cost();
            g.gone_upto = old.id;
        }
        let limit = self.limits.client_bytes;
        g.clients.retain(|c| {
            if !c.kinds.has(kind) {
                return !c.tx.is_closed();
            }
            if c.queued.load(Ordering::Acquire) + cost > limit {
                tracing::info!(
                    id = msg.id,
                    "change stream client too slow; disconnecting it"
                );
                c.drop.cancel();
                return false;
            }
            c.queued.fetch_add(cost, Ordering::AcqRel);
            match c.tx.try_send(msg.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(
                        id = msg.id,
                        "change stream client too slow; disconnecting it"
                    );
                    c.drop.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        msg.id
    }

    /// A stored event (`id` from the store), as `/v1/events` shows it.
    pub fn event(&self, id: i64, at: DateTime<Utc>, e: &NewEvent) {
        let at = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
        let ev = ugro_api::Event {
            id,
            time: at,
            kind: e.kind.as_str().to_string(),
            subject: e.subject.clone(),
            severity: crate::view::severity(e.severity),
            message: e.message.clone(),
        };
        self.publish_json(Kind::Event, &ev);
    }

    /// A summary that was made, as `/v1/summaries` lists it.
    pub fn summary(&self, info: &ugro_api::SummaryInfo) {
        self.publish_json(Kind::Summary, info);
    }

    fn publish_json(&self, kind: Kind, v: &impl serde::Serialize) {
        match serde_json::to_vec(v) {
            Ok(b) => {
                self.publish(kind, kind.as_str(), b);
            }
            Err(e) => {
                tracing::error!(error = %e, kind = kind.as_str(), "cannot serialise a change")
            }
        }
    }

    /// Tells the stream task that a node's report may have changed.
    pub fn nodes_changed(&self) {
        self.nodes.notify_one();
    }

    /// Ends every stream (the daemon is stopping); no new one opens.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Opens a client's queue. `last` is the client's `Last-Event-ID` (None: none sent);
    /// `peer` is `(uid, privileged)` when known; `drop` is cancelled when the client is too
    /// slow (a listener may close the connection on it).
    pub fn subscribe(
        &self,
        kinds: Kinds,
        last: Option<u64>,
        peer: Option<(u32, bool)>,
        drop: CancellationToken,
    ) -> Result<Subscription, SubscribeError> {
        if self.closed.is_cancelled() {
            return Err(SubscribeError::Closed);
        }
        let mut g = self.lock();
        g.clients.retain(|c| !c.tx.is_closed());
        if g.streams >= self.limits.streams {
            return Err(SubscribeError::TooMany(self.limits.streams));
        }
        // No peer credentials: a client of the TCP listener.
        let tcp = peer.is_none();
        if tcp && g.tcp >= self.limits.streams_tcp {
            return Err(SubscribeError::TooManyOnTcp(self.limits.streams_tcp));
        }
        let uid = peer.filter(|(_, privileged)| !privileged).map(|(u, _)| u);
        if let Some(uid) = uid
            && g.per_uid.get(&uid).copied().unwrap_or(0) >= self.limits.streams_per_uid
        {
            return Err(SubscribeError::TooManyForUid {
                uid,
                max: self.limits.streams_per_uid,
            });
        }
        let (start, replay) = match last {
            None => (Start::Fresh(g.last_id), VecDeque::new()),
            Some(l) if l >= g.gone_upto && l <= g.last_id => (
                Start::Resume,
                g.ring
                    .iter()
                    .filter(|m| m.id > l && kinds.has(m.kind))
                    .cloned()
                    .collect(),
            ),
            Some(_) => (Start::Reset(g.last_id), VecDeque::new()),
        };
        let (tx, rx) = mpsc::channel(self.limits.client_messages.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        g.clients.push(ClientQueue {
            tx,
            kinds,
            queued: queued.clone(),
            drop: drop.clone(),
        });
        g.streams += 1;
        g.tcp += usize::from(tcp);
        if let Some(uid) = uid {
            *g.per_uid.entry(uid).or_insert(0) += 1;
        }
        Ok(Subscription {
            start,
            replay,
            rx,
            queued,
            drop,
            hub: self.inner.clone(),
            uid,
            tcp,
        })
    }

    /// Stream clients connected now.
    pub fn streams(&self) -> usize {
        self.lock().streams
    }
}

/// One client's messages: the replay first, then live ones. Gives its place back on drop.
#[derive(Debug)]
pub struct Subscription {
    pub start: Start,
    replay: VecDeque<Arc<Message>>,
    rx: mpsc::Receiver<Arc<Message>>,
    queued: Arc<AtomicUsize>,
    /// Cancelled when the hub disconnects this client.
    pub drop: CancellationToken,
    hub: Arc<Mutex<Inner>>,
    uid: Option<u32>,
    tcp: bool,
}

impl Stream for Subscription {
    type Item = Arc<Message>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(m) = self.replay.pop_front() {
            return Poll::Ready(Some(m));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(m)) => {
                self.queued.fetch_sub(m.cost(), Ordering::AcqRel);
                Poll::Ready(Some(m))
            }
            other => other,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut g = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        g.streams = g.streams.saturating_sub(1);
        if self.tcp {
            g.tcp = g.tcp.saturating_sub(1);
        }
        if let Some(uid) = self.uid
            && let Some(n) = g.per_uid.get_mut(&uid)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.per_uid.remove(&uid);
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    kinds: Option<String>,
    /// For clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

/// What the stream's task and endpoint need from the daemon: the hub itself, the runs and
/// node reports it compares, and the daemon's uid (its own clients are never refused). The
/// daemon's `Shared` implements it.
pub trait StreamHost: Send + Sync + 'static {
    fn changes(&self) -> &Changes;
    fn runs(&self) -> &Runs;
    fn health(&self) -> &Health;
    /// The daemon's effective uid.
    fn uid(&self) -> u32;
    /// Events the store kept while writes failed, as they are recorded (taken once).
    fn late_events(&self) -> Option<mpsc::Receiver<crate::store::RecordedLate>>;
}

/// `GET /v1/stream[?kinds=run,node,event,summary]`, resumable with `Last-Event-ID`.
pub async fn handler<H: StreamHost>(State(host): State<Arc<H>>, parts: Parts) -> Response {
    match open(&host, &parts) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn open<H: StreamHost>(host: &Arc<H>, parts: &Parts) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    let Query(q) =
        Query::<StreamQuery>::try_from_uri(&parts.uri).map_err(|e| bad(e.body_text()))?;
    let kinds = match q.kinds.as_deref() {
        None => Kinds::ALL,
        Some(s) => Kinds::parse(s).map_err(bad)?,
    };
    let last = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.last_event_id)
        .filter(|s| !s.trim().is_empty())
        // An id this daemon could not have sent is older than anything it holds.
        .map(|s| s.trim().parse::<u64>().unwrap_or(0));
    let peer = parts
        .extensions
        .get::<Peer>()
        .map(|p| (p.uid, p.uid == 0 || p.uid == host.uid()));
    let drop = parts
        .extensions
        .get::<Disconnect>()
        .map_or_else(CancellationToken::new, |d| d.0.clone());
    let sub = host
        .changes()
        .subscribe(kinds, last, peer, drop)
        .map_err(|e| {
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!("{e}; try again shortly"),
            );
            if matches!(e, SubscribeError::Closed) {
                err.code = "stopping";
            }
            err
        })?;
    let first = match sub.start {
        Start::Fresh(id) => Some(SseEvent::default().id(id.to_string())),
        Start::Resume => None,
        Start::Reset(id) => Some(reset_event(
            id,
            "the Last-Event-ID is older than the messages kept: fetch the lists again",
        )),
    };
    let end = {
        let (closed, dropped) = (host.changes().closed.clone(), sub.drop.clone());
        async move {
            tokio::select! {
                _ = closed.cancelled() => {}
                _ = dropped.cancelled() => {}
            }
        }
    };
    let events = futures_util::stream::iter(first)
        .chain(sub.map(|m| m.to_sse()))
        .map(Ok::<_, Infallible>)
        .take_until(end);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn reset_event(id: u64, reason: &str) -> SseEvent {
    SseEvent::default()
        .id(id.to_string())
        .event("reset")
        .data(serde_json::json!({ "reason": reason }).to_string())
}

/// A fingerprint of bytes or a value (not stable across builds: only compared in memory).
fn fingerprint(f: impl FnOnce(&mut std::collections::hash_map::DefaultHasher)) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    f(&mut h);
    h.finish()
}

/// Feeds a serializer's output into a hasher without keeping it.
struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The last published fingerprint of each run, by id.
type Seen = HashMap<String, u64>;

/// Compares the run list with `seen` and publishes what changed (`publish` false: only learns
/// the list). Runs on the blocking pool: it serialises every run (20,000 runs: see
/// docs/benchmarks.md).
fn diff_runs(host: &impl StreamHost, seen: &mut Seen, publish: bool) {
    let list = host.runs().list(None, None);
    let mut next = Seen::with_capacity(list.len());
    let mut changed = Vec::new();
    let mut n_changed = 0usize;
    for r in &list {
        // The wire form, as `/v1/runs` serialises it.
        let r = ugro_api::RunInfo::from(r);
        let fp = fingerprint(|h| {
            let _ = serde_json::to_writer(HashWriter(h), &r);
        });
        let id = r.id.clone();
        if publish && seen.get(&id) != Some(&fp) {
            // Past the burst bound only the count matters (a reset is sent instead).
            if changed.len() <= BURST_RESET {
                changed.push(r);
            }
            n_changed += 1;
        }
        next.insert(id, fp);
    }
    let gone: Vec<String> = if publish {
        seen.keys()
            .filter(|id| !next.contains_key(*id))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    *seen = next;
    if publish {
        publish_runs(host, changed, n_changed, gone);
    }
}

/// Publishes changed and gone runs: one message each, or one `reset` past [`BURST_RESET`]
/// (`n_changed` counts the changed runs, `changed` may hold only the first of them).
fn publish_runs(
    host: &impl StreamHost,
    changed: Vec<ugro_api::RunInfo>,
    n_changed: usize,
    gone: Vec<String>,
) {
    if n_changed == 0 && gone.is_empty() {
        return;
    }
    let hub = host.changes();
    if n_changed + gone.len() > BURST_RESET {
        tracing::debug!(
            changed = n_changed,
            gone = gone.len(),
            "many runs changed at once; the stream says reset"
        );
        let data = serde_json::json!({
            "reason": format!(
                "{} runs changed at once: fetch the run list again",
                n_changed + gone.len()
            )
        });
        hub.publish(Kind::Run, "reset", data.to_string());
        return;
    }
    for r in &changed {
        hub.publish_json(Kind::Run, r);
    }
    for id in gone {
        hub.publish(
            Kind::Run,
            "run",
            serde_json::json!({ "id": id, "removed": true }).to_string(),
        );
    }
}

/// Like [`diff_runs`] for the runs in `ids` only (the run list says which changed).
fn diff_some_runs(host: &impl StreamHost, seen: &mut Seen, ids: HashSet<String>) {
    let mut changed = Vec::new();
    let mut gone = Vec::new();
    for id in ids {
        match host.runs().get(&id) {
            Some(r) => {
                let r = ugro_api::RunInfo::from(&r);
                let fp = fingerprint(|h| {
                    let _ = serde_json::to_writer(HashWriter(h), &r);
                });
                if seen.insert(id, fp) != Some(fp) {
                    changed.push(r);
                }
            }
            None => {
                if seen.remove(&id).is_some() {
                    gone.push(id);
                }
            }
        }
    }
    let n = changed.len();
    publish_runs(host, changed, n, gone);
}

/// What of a node's report makes a `node` message: its state, verdict, score, each check's
/// outcome and the open alerts (not the measured values, times and GPU readings of every
/// sweep).
fn node_fingerprint(node: &serde_json::Value) -> u64 {
    let pick = |v: &serde_json::Value, keys: &[&str]| -> serde_json::Value {
        keys.iter()
            .map(|k| (k.to_string(), v.get(*k).cloned().unwrap_or_default()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let list = |key: &str, keys: &[&str]| -> Vec<serde_json::Value> {
        node.get(key)
            .and_then(|c| c.as_array())
            .map(|a| a.iter().map(|c| pick(c, keys)).collect())
            .unwrap_or_default()
    };
    let key = serde_json::json!([
        pick(
            node,
            &["host", "state", "healthy", "observed", "score", "restored"]
        ),
        list("checks", &["name", "passed", "status", "warning"]),
        list("alerts", &["severity", "message"]),
    ]);
    fingerprint(|h| key.to_string().hash(h))
}

/// Compares the nodes' reports with `seen` and publishes what changed.
fn diff_nodes(host: &impl StreamHost, seen: &mut Seen, publish: bool) {
    let mut next = Seen::new();
    for n in host.health().reports() {
        // The wire form, as `/v1/nodes` serialises it.
        let n = ugro_api::NodeHealth::from(&n);
        let Ok(v) = serde_json::to_value(&n) else {
            continue;
        };
        let name = n.name.clone();
        let fp = node_fingerprint(&v);
        if publish && seen.get(&name) != Some(&fp) {
            host.changes().publish_json(Kind::Node, &v);
        }
        next.insert(name, fp);
    }
    if publish {
        for name in seen.keys().filter(|n| !next.contains_key(*n)) {
            host.changes().publish(
                Kind::Node,
                "node",
                serde_json::json!({ "name": name, "removed": true }).to_string(),
            );
        }
    }
    *seen = next;
}

/// Diffs the run list on the blocking pool; gives back what it learnt.
async fn diff_runs_blocking<H: StreamHost>(host: &Arc<H>, seen: Seen, publish: bool) -> Seen {
    let s = host.clone();
    let started = std::time::Instant::now();
    match tokio::task::spawn_blocking(move || {
        let mut seen = seen;
        diff_runs(&*s, &mut seen, publish);
        seen
    })
    .await
    {
        Ok(seen) => {
            tracing::trace!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "run list compared"
            );
            seen
        }
        Err(e) => {
            tracing::error!(error = %e, "comparing the run list failed; learning it afresh");
            Seen::new()
        }
    }
}

/// The stream's task: publishes a `run` message for every run whose JSON changed each time the
/// run list moves, and a `node` message when a node's verdict or a check's outcome changes.
/// Ends every stream when the daemon stops.
pub async fn supervise<H: StreamHost>(
    host: Arc<H>,
    cancel: CancellationToken,
    hb: crate::systemd::Heartbeat,
) {
    let mut generation = host.runs().watch_generation();
    generation.borrow_and_update();
    host.runs().take_touched();
    let mut runs = diff_runs_blocking(&host, Seen::new(), false).await;
    let mut nodes = Seen::new();
    diff_nodes(&*host, &mut nodes, false);
    let mut late = host.late_events();
    let mut beat = tokio::time::interval(BEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            // An event the store could not take at first is published once it is recorded.
            got = async { match late.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                match got {
                    Some((id, at, e)) => host.changes().event(id, at, &e),
                    None => late = None,
                }
            }
            _ = beat.tick() => {
                hb.beat();
                // Nodes a reload added or removed do not sweep at once.
                diff_nodes(&*host, &mut nodes, true);
            }
            changed = generation.changed() => {
                if changed.is_err() {
                    break;
                }
                generation.borrow_and_update();
                match host.runs().take_touched() {
                    // Only these runs changed: compare them alone (20,000 runs: see
                    // docs/benchmarks.md for what a whole comparison costs).
                    Some(ids) => diff_some_runs(&*host, &mut runs, ids),
                    None => runs = diff_runs_blocking(&host, runs, true).await,
                }
            }
            _ = host.changes().nodes.notified() => diff_nodes(&*host, &mut nodes, true),
        }
    }
    host.changes().close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(ring: usize, client: usize) -> Changes {
        Changes::new(
            Limits {
                ring_messages: ring,
                ring_bytes: usize::MAX,
                client_messages: client,
                client_bytes: usize::MAX,
                streams: 3,
                streams_per_uid: 2,
                streams_tcp: 2,
            },
            DateTime::from_timestamp(1_000, 0).unwrap_or_default(),
        )
    }

    fn ids(sub: &mut Subscription) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(m) = sub.replay.pop_front() {
            out.push(m.id);
        }
        while let Ok(m) = sub.rx.try_recv() {
            out.push(m.id);
        }
        out
    }

    #[test]
    fn resume_replays_exactly_what_followed() {
        let h = hub(8, 16);
        let a = h.publish(Kind::Run, "run", "1");
        let b = h.publish(Kind::Event, "event", "2");
        let c = h.publish(Kind::Run, "run", "3");
        let mut s = h
            .subscribe(Kinds::ALL, Some(a), None, CancellationToken::new())
            .unwrap();
        assert_eq!(s.start, Start::Resume);
        let d = h.publish(Kind::Node, "node", "4");
        assert_eq!(ids(&mut s), vec![b, c, d]);
        assert_eq!(b, a + 1);
    }

    #[test]
    fn an_id_older_than_the_ring_or_unknown_is_a_reset() {
        let h = hub(2, 16);
        let first = h.publish(Kind::Run, "run", "1");
        h.publish(Kind::Run, "run", "2");
        let last = h.publish(Kind::Run, "run", "3");
        // `first` left the ring: what followed it is all there, so it still resumes…
        let s = h.subscribe(Kinds::ALL, Some(first), None, CancellationToken::new());
        assert_eq!(s.unwrap().start, Start::Resume);
        // …but the one before it is gone.
        let s = h.subscribe(Kinds::ALL, Some(first - 1), None, CancellationToken::new());
        assert_eq!(s.unwrap().start, Start::Reset(last));
        let s = h.subscribe(Kinds::ALL, Some(last + 5), None, CancellationToken::new());
        assert_eq!(s.unwrap().start, Start::Reset(last));
    }

    #[test]
    fn kinds_filter_live_and_replayed_messages() {
        let h = hub(8, 16);
        let a = h.publish(Kind::Run, "run", "1");
        let b = h.publish(Kind::Event, "event", "2");
        let kinds = Kinds::parse("event,summary").unwrap();
        let mut s = h
            .subscribe(kinds, Some(a - 1), None, CancellationToken::new())
            .unwrap();
        h.publish(Kind::Node, "node", "3");
        let e = h.publish(Kind::Summary, "summary", "4");
        assert_eq!(ids(&mut s), vec![b, e]);
        assert!(Kinds::parse("run,bogus").is_err());
        assert!(Kinds::parse("").is_err());
    }

    #[test]
    fn a_full_queue_disconnects_only_that_client() {
        let h = hub(64, 2);
        let slow_drop = CancellationToken::new();
        let _slow = h
            .subscribe(Kinds::ALL, None, None, slow_drop.clone())
            .unwrap();
        let mut fast = h
            .subscribe(Kinds::ALL, None, None, CancellationToken::new())
            .unwrap();
        for i in 0..5 {
            h.publish(Kind::Run, "run", format!("{i}"));
            assert_eq!(ids(&mut fast).len(), 1);
        }
        assert!(slow_drop.is_cancelled());
        assert!(!fast.drop.is_cancelled());
    }

    #[test]
    fn streams_are_bounded_in_all_and_per_uid() {
        let h = hub(8, 8);
        let t = CancellationToken::new;
        let a = h
            .subscribe(Kinds::ALL, None, Some((1000, false)), t())
            .unwrap();
        let _b = h
            .subscribe(Kinds::ALL, None, Some((1000, false)), t())
            .unwrap();
        assert!(matches!(
            h.subscribe(Kinds::ALL, None, Some((1000, false)), t()),
            Err(SubscribeError::TooManyForUid { uid: 1000, .. })
        ));
        let _c = h.subscribe(Kinds::ALL, None, Some((0, true)), t()).unwrap();
        assert!(matches!(
            h.subscribe(Kinds::ALL, None, Some((0, true)), t()),
            Err(SubscribeError::TooMany(3))
        ));
        drop(a);
        assert_eq!(h.streams(), 2);
        assert!(
            h.subscribe(Kinds::ALL, None, Some((1000, false)), t())
                .is_ok()
        );
    }

    #[test]
    fn tcp_streams_leave_places_for_the_socket() {
        let h = hub(8, 8);
        let t = CancellationToken::new;
        let a = h.subscribe(Kinds::ALL, None, None, t()).unwrap();
        let _b = h.subscribe(Kinds::ALL, None, None, t()).unwrap();
        assert!(matches!(
            h.subscribe(Kinds::ALL, None, None, t()),
            Err(SubscribeError::TooManyOnTcp(2))
        ));
        // The socket's clients still get the last place.
        let _c = h.subscribe(Kinds::ALL, None, Some((0, true)), t()).unwrap();
        drop(a);
        assert!(h.subscribe(Kinds::ALL, None, None, t()).is_ok());
    }

    #[test]
    fn node_fingerprint_ignores_measurements() {
        let a = serde_json::json!({"name": "n", "state": "healthy", "score": 100,
            "last_check": "2026-01-01T00:00:00Z",
            "checks": [{"name": "latency", "passed": true, "status": "pass", "value": 3.0}]});
        let mut b = a.clone();
        b["last_check"] = "2026-01-01T00:01:00Z".into();
        b["checks"][0]["value"] = 4.0.into();
        assert_eq!(node_fingerprint(&a), node_fingerprint(&b));
        b["checks"][0]["status"] = "fail".into();
        assert_ne!(node_fingerprint(&a), node_fingerprint(&b));
    }
}
