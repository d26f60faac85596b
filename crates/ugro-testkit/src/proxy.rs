//! A latency-injecting TCP proxy (stand-in for `tc netem`, which is unavailable here): listens
//! on 127.0.0.1 and forwards to a target, delivering every chunk in each direction `delay`
//! after it was read, so a request/response round trip gets ≈ 2 × delay added. Plain std
//! threads, so it works from ordinary `#[test]` functions.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// At most this many client connections are open at once; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);
const CHUNK: usize = 64 * 1024;
/// Chunks buffered per direction before the reader waits (back-pressure).
const QUEUE: usize = 1024;

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    delay_us: AtomicU64,
    connections: AtomicUsize,
    threads: AtomicUsize,
    next_id: AtomicU64,
    /// Both sockets of every open connection, to shut them down on Drop.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }
}

/// A running delay proxy; dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct DelayProxy {
    port: u16,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl DelayProxy {
    /// Starts a proxy on 127.0.0.1:<random port> forwarding to `target` with `delay` added to
    /// every chunk in each direction.
    pub fn start(target: SocketAddr, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        shared
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
        let sh = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("delay-proxy-{port}"))
            .spawn(move || accept_loop(&listener, target, &sh))
            .expect("spawn proxy thread");
        Self {
            port,
            target,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port the proxy listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port()`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Where connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The current one-way delay.
    pub fn delay(&self) -> Duration {
        self.shared.delay()
    }

    /// Changes the one-way delay; applies to chunks read from now on (byte order is kept).
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Client connections currently open (accepted and not yet fully closed).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Closes every open connection now (both sides), as a network cut would; the proxy keeps
    /// accepting new ones.
    pub fn drop_connections(&self) {
        let open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        for (a, b) in open.values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.drop_connections();
        if let Some(h) = self.acceptor.take() {
            // The accept loop polls the stop flag every 20 ms.
            let _ = h.join();
        }
        // Connection threads see the shut-down sockets / stop flag and finish promptly.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.threads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            self.drop_connections();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if shared.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                // Counted from accept, so connections() is right while upstream connects.
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let guard = Arc::new(ConnGuard {
                    id: shared.next_id.fetch_add(1, Ordering::SeqCst),
                    shared: shared.clone(),
                });
                let sh = shared.clone();
                let spawned = spawn_counted(shared, "delay-proxy-conn", move || {
                    if let Err(e) = start_connection(client, target, &sh, &guard) {
                        eprintln!("ugro-testkit delay proxy: {e}");
                    }
                });
                if let Err(e) = spawned {
                    eprintln!("ugro-testkit delay proxy: cannot spawn a thread: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                std::thread::sleep(POLL);
            }
            Err(e) => {
                eprintln!("ugro-testkit delay proxy: accept: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Decrements the open-connection count when the last thread of a connection ends.
#[derive(Debug)]
struct ConnGuard {
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Decrements the live-thread count when a proxy thread ends.
#[derive(Debug)]
struct ThreadGuard(Arc<Shared>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.0.threads.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Spawns a thread counted in `shared.threads` for as long as it runs.
fn spawn_counted(
    shared: &Arc<Shared>,
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    shared.threads.fetch_add(1, Ordering::SeqCst);
    let guard = ThreadGuard(shared.clone());
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _t = guard;
            f();
        })
        .map(drop)
}

fn start_connection(
    client: TcpStream,
    target: SocketAddr,
    shared: &Arc<Shared>,
    guard: &Arc<ConnGuard>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let id = guard.id;
    let upstream = match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            let _ = client.shutdown(Shutdown::Both);
            return Err(std::io::Error::new(
                e.kind(),
                format!("connect to {target}: {e}"),
            ));
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared
        .open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (client.try_clone()?, upstream.try_clone()?));
    if shared.stop.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return Ok(());
    }
    pipe(client.try_clone()?, upstream.try_clone()?, shared, guard)?;
    pipe(upstream, client, shared, guard)?;
    Ok(())
}

enum Msg {
    Data(Instant, Vec<u8>),
    Eof,
}

/// Starts the reader and writer threads for one direction `from` → `to`.
fn pipe(
    from: TcpStream,
    to: TcpStream,
    shared: &Arc<Shared>,
    guard: &Arc<ConnGuard>,
) -> std::io::Result<()> {
    let (tx, rx) = sync_channel::<Msg>(QUEUE);
    let (sh_r, g_r) = (shared.clone(), guard.clone());
    let from_w = from.try_clone()?;
    spawn_counted(shared, "delay-proxy-rd", move || {
        reader(from, &tx, &sh_r);
        drop(g_r);
    })?;
    let (sh_w, g_w) = (shared.clone(), guard.clone());
    spawn_counted(shared, "delay-proxy-wr", move || {
        writer(&rx, to, from_w, &sh_w);
        drop(g_w);
    })?;
    Ok(())
}

fn reader(mut from: TcpStream, tx: &SyncSender<Msg>, shared: &Shared) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let due = Instant::now() + shared.delay();
                if tx.send(Msg::Data(due, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
    }
    let _ = tx.send(Msg::Eof);
}

/// Delivers chunks in order, each no earlier than its due time. On EOF half-closes `to`; on a
/// write error closes both directions.
fn writer(rx: &Receiver<Msg>, mut to: TcpStream, from: TcpStream, shared: &Shared) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let msg = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Msg::Data(due, bytes) => {
                while let Some(left) = due.checked_duration_since(Instant::now()) {
                    if left.is_zero() || shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(left.min(POLL));
                }
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                if to.write_all(&bytes).is_err() {
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Msg::Eof => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1 (one thread per connection, closes on EOF).
    fn echo_server() -> (SocketAddr, Arc<AtomicBool>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = c.read(&mut buf) {
                                if n == 0 || c.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        (addr, stop)
    }

    #[test]
    fn echoes_in_order_with_delay_and_counts() {
        let (addr, stop) = echo_server();
        let proxy = DelayProxy::start(addr, Duration::from_millis(50));
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let chunk = format!("{i:05};");
            c.write_all(chunk.as_bytes()).unwrap();
            sent.extend_from_slice(chunk.as_bytes());
        }
        let mut got = vec![0u8; sent.len()];
        c.read_exact(&mut got).unwrap();
        let rtt = t0.elapsed();
        assert_eq!(got, sent);
        assert!(rtt >= Duration::from_millis(100), "{rtt:?}");
        assert_eq!(proxy.connections(), 1);

        proxy.set_delay(Duration::ZERO);
        let t0 = Instant::now();
        c.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        c.read_exact(&mut one).unwrap();
        assert!(
            t0.elapsed() < Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );

        drop(c);
        crate::wait_for("connection count 0", Duration::from_secs(5), || {
            (proxy.connections() == 0).then_some(())
        });
        drop(proxy);
        stop.store(true, Ordering::SeqCst);
    }

    #[test]
    fn drop_closes_connections() {
        let (addr, stop) = echo_server();
        let proxy = DelayProxy::start(addr, Duration::ZERO);
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        let port = proxy.port();
        drop(proxy);
        let mut rest = Vec::new();
        // EOF or reset, but promptly.
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        stop.store(true, Ordering::SeqCst);
    }

    #[test]
    fn unreachable_target_closes_client() {
        let port = crate::sshd::free_port();
        let proxy = DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], port)), Duration::ZERO);
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        crate::wait_for("connection count 0", Duration::from_secs(5), || {
            (proxy.connections() == 0).then_some(())
        });
    }
}
