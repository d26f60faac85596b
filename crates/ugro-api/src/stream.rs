//! The client side of the change stream (`GET /v1/stream`, server-sent events over the Unix
//! socket): opening it with a deadline and a `Last-Event-ID`, reading its messages (parsed by
//! the `sse-stream` crate), noticing a daemon that went silent, and decoding each message into a
//! [`Change`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, Empty, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;

use crate::client::{Client, ClientError};
use crate::{
    ErrorBody, Event, NodeHealth, PROTOCOL_HEADER, PROTOCOL_VERSION, RunInfo, SummaryInfo,
};

/// The daemon sends a keep-alive comment every 15 s; a stream silent for this long is dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(45);

/// One decoded message of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A run's JSON as in `/v1/runs` (new or changed).
    Run(Box<RunInfo>),
    /// A run left the list.
    RunRemoved(String),
    /// A node's JSON as in `/v1/nodes`.
    Node(Box<NodeHealth>),
    /// A node left the configuration.
    NodeRemoved(String),
    /// A stored event as in `/v1/events`.
    Event(Event),
    /// A summary that was made, as `/v1/summaries` lists it.
    Summary(SummaryInfo),
    /// Messages were missed: fetch the lists again. Carries the daemon's reason.
    Reset(String),
    /// A message without data (the first one carries the newest id only), or of a name this
    /// client does not know.
    Other,
}

/// One raw message: its id, event name and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

impl Message {
    /// Decodes the data by the event name.
    pub fn decode(&self) -> Result<Change, String> {
        #[derive(serde::Deserialize)]
        struct Removed {
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            name: Option<String>,
            removed: bool,
        }
        #[derive(serde::Deserialize)]
        struct Reset {
            #[serde(default)]
            reason: String,
        }
        let err = |e: serde_json::Error| format!("{} message {:?}: {e}", self.event, self.id);
        let removed = || {
            serde_json::from_str::<Removed>(&self.data)
                .ok()
                .filter(|r| r.removed)
        };
        Ok(match self.event.as_str() {
            "run" => match removed() {
                Some(r) => Change::RunRemoved(r.id.unwrap_or_default()),
                None => Change::Run(Box::new(serde_json::from_str(&self.data).map_err(err)?)),
            },
            "node" => match removed() {
                Some(r) => Change::NodeRemoved(r.name.unwrap_or_default()),
                None => Change::Node(Box::new(serde_json::from_str(&self.data).map_err(err)?)),
            },
            "event" => Change::Event(serde_json::from_str(&self.data).map_err(err)?),
            "summary" => Change::Summary(serde_json::from_str(&self.data).map_err(err)?),
            "reset" => Change::Reset(
                serde_json::from_str::<Reset>(&self.data)
                    .map(|r| r.reason)
                    .unwrap_or_default(),
            ),
            _ => Change::Other,
        })
    }
}

type Events = sse_stream::SseByteStream<
    futures_util::stream::BoxStream<'static, Result<Bytes, hyper::Error>>,
>;

/// An open change stream. Dropping it closes the connection.
pub struct ChangeStream {
    events: Events,
    last_id: Option<u64>,
    /// Milliseconds (since `opened`) when bytes last arrived, keep-alive comments included.
    heard: Arc<AtomicU64>,
    opened: Instant,
    conn: tokio::task::JoinHandle<()>,
    uri: String,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("path", &self.path)
            .field("uri", &self.uri)
            .field("last_id", &self.last_id)
            .finish()
    }
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl ChangeStream {
    /// The id of the newest message read (or the one the client opened with): give it to
    /// [`Client::stream`] to resume.
    pub fn last_event_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The next message; `None` when the daemon ended the stream (it is stopping, or this
    /// client fell behind); an error when the connection broke or went silent past
    /// [`SILENCE_LIMIT`].
    pub async fn next(&mut self) -> Option<Result<Message, ClientError>> {
        loop {
            let since = self.heard.load(Ordering::Acquire);
            let quiet = self
                .opened
                .elapsed()
                .saturating_sub(Duration::from_millis(since));
            let wait = SILENCE_LIMIT.saturating_sub(quiet);
            if wait.is_zero() {
                return Some(Err(self.transport(format!(
                    "no message nor keep-alive for {}s",
                    SILENCE_LIMIT.as_secs()
                ))));
            }
            match tokio::time::timeout(wait, self.events.next()).await {
                Err(_) => continue,
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some(Err(self.transport(e.to_string()))),
                Ok(Some(Ok(sse))) => {
                    if let Some(id) = sse.id.as_deref().and_then(|s| s.trim().parse().ok()) {
                        self.last_id = Some(id);
                    }
                    return Some(Ok(Message {
                        id: sse.id.as_deref().and_then(|s| s.trim().parse().ok()),
                        event: sse.event.unwrap_or_else(|| "message".to_string()),
                        data: sse.data.unwrap_or_default(),
                    }));
                }
            }
        }
    }

    fn transport(&self, message: String) -> ClientError {
        ClientError::Transport {
            path: self.path.clone(),
            method: Method::GET,
            uri: self.uri.clone(),
            message,
        }
    }
}

impl Client {
    /// Opens `GET /v1/stream` for `kinds` (empty: all), resuming after `last_event_id`. The
    /// connection and the answer's head are bounded by the client's deadline; the stream then
    /// lasts until dropped.
    pub async fn stream(
        &self,
        kinds: &[&str],
        last_event_id: Option<u64>,
    ) -> Result<ChangeStream, ClientError> {
        let uri = if kinds.is_empty() {
            "/v1/stream".to_string()
        } else {
            format!("/v1/stream?kinds={}", kinds.join(","))
        };
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.open_stream(&uri, last_event_id)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                path: self.path().to_path_buf(),
                method: Method::GET,
                uri,
                timeout,
            }),
        }
    }

    /// Opens another server-sent-event endpoint of the daemon (a log follow,
    /// `/v1/logs/{id}?follow=true`) the same way, resuming after `last_event_id`.
    pub async fn sse(
        &self,
        uri: &str,
        last_event_id: Option<u64>,
    ) -> Result<ChangeStream, ClientError> {
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.open_stream(uri, last_event_id)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                path: self.path().to_path_buf(),
                method: Method::GET,
                uri: uri.to_owned(),
                timeout,
            }),
        }
    }

    async fn open_stream(
        &self,
        uri: &str,
        last_event_id: Option<u64>,
    ) -> Result<ChangeStream, ClientError> {
        let path = self.path().to_path_buf();
        let transport = |message: String| ClientError::Transport {
            path: path.clone(),
            method: Method::GET,
            uri: uri.to_owned(),
            message,
        };
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(http::header::HOST, "ugro-monitor")
            .header(http::header::ACCEPT, "text/event-stream")
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string());
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| transport(e.to_string()))?;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                conn.abort();
                return Err(transport(e.to_string()));
            }
        };
        let status = resp.status();
        let protocol: Option<u32> = resp
            .headers()
            .get(PROTOCOL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if let Some(daemon) = protocol
            && daemon != PROTOCOL_VERSION
        {
            conn.abort();
            return Err(ClientError::ProtocolMismatch {
                daemon,
                client: PROTOCOL_VERSION,
            });
        }
        if !status.is_success() {
            let r = api_error(status, resp.into_body()).await;
            conn.abort();
            return Err(r.unwrap_or_else(|m| ClientError::Decode {
                method: Method::GET,
                uri: uri.to_owned(),
                message: m,
            }));
        }
        if protocol.is_none() {
            conn.abort();
            return Err(ClientError::Decode {
                method: Method::GET,
                uri: uri.to_owned(),
                message: format!(
                    "no {PROTOCOL_HEADER} header: is {} really a ugro-monitor socket?",
                    path.display()
                ),
            });
        }
        let opened = Instant::now();
        let heard = Arc::new(AtomicU64::new(0));
        let seen = heard.clone();
        let bytes = BodyDataStream::new(resp.into_body())
            .inspect(move |_| {
                seen.store(opened.elapsed().as_millis() as u64, Ordering::Release);
            })
            .boxed();
        Ok(ChangeStream {
            events: sse_stream::SseByteStream::new(bytes),
            last_id: last_event_id,
            heard,
            opened,
            conn,
            uri: uri.to_owned(),
            path,
        })
    }
}

/// The error envelope of a refused stream.
async fn api_error(status: StatusCode, body: Incoming) -> Result<ClientError, String> {
    let bytes = Limited::new(body, 64 * 1024)
        .collect()
        .await
        .map_err(|e| format!("{status}: reading body: {e}"))?
        .to_bytes();
    let e = serde_json::from_slice::<ErrorBody>(&bytes).map_err(|_| {
        format!(
            "{status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )
    })?;
    Ok(ClientError::Api {
        status,
        code: e.error.code,
        message: e.error.message,
        details: e.error.details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one canned HTTP head and then `chunks`, each written on its own, on a fresh socket.
    async fn serve(dir: &std::path::Path, chunks: Vec<&'static str>) -> std::path::PathBuf {
        let path = dir.join("peer.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nugro-protocol: 1\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
            for c in chunks {
                s.write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes())
                    .await
                    .unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            s.write_all(b"0\r\n\r\n").await.unwrap();
        });
        path
    }

    #[tokio::test]
    async fn messages_split_anywhere_are_read_whole_with_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = serve(
            dir.path(),
            vec![
                "id: 7\n\n: keep-alive\n\nid: 8\nevent: res",
                "et\ndata: {\"reason\":\"too old\"}\n\nid: 9\nevent: run\ndata: {\"id\":\"a\",\"removed\":true}\n",
                "\n",
            ],
        )
        .await;
        let mut s = Client::new(&path).stream(&["run"], Some(3)).await.unwrap();
        assert_eq!(s.last_event_id(), Some(3));
        let first = s.next().await.unwrap().unwrap();
        assert_eq!(
            (first.id, first.decode().unwrap()),
            (Some(7), Change::Other)
        );
        let second = s.next().await.unwrap().unwrap();
        assert_eq!(second.decode().unwrap(), Change::Reset("too old".into()));
        let third = s.next().await.unwrap().unwrap();
        assert_eq!(third.decode().unwrap(), Change::RunRemoved("a".into()));
        assert_eq!(s.last_event_id(), Some(9));
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn bad_data_is_an_error_not_a_panic() {
        let m = Message {
            id: Some(1),
            event: "run".into(),
            data: "{not json".into(),
        };
        assert!(m.decode().is_err());
        let m = Message {
            id: None,
            event: "later".into(),
            data: String::new(),
        };
        assert_eq!(m.decode().unwrap(), Change::Other);
    }
}
