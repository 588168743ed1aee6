//! The HTTP server under the API: our own accept loop over hyper's HTTP/1.1
//! connection, so that a hostile network cannot hold the agent up.
//!
//! `axum::serve` was enough for a friendly conductor, but it has no
//! header-read or idle timeout, no connection cap, and its graceful shutdown
//! waits for every open connection: one client that sent one byte kept the
//! agent from exiting after `finalize_rescue` (issue 13). hyper's connection
//! builder gives the header-read timeout; this module adds the rest, in one
//! place that sees every connection:
//!
//! - a TLS handshake and a request head must arrive within
//!   [`Limits::header_read_timeout`]; a connection with no request in flight
//!   is closed after [`Limits::idle_timeout`] (a client that dribbles a
//!   header byte by byte counts as idle);
//! - at most [`Limits::max_connections`] connections; a new client always
//!   gets in, by closing the connection that has been idle longest (or, if
//!   every connection has a request in flight, the oldest one);
//! - when the run state leaves `Serving`, the listener closes, idle
//!   connections are dropped at once, and in-flight responses (the
//!   `finalize_rescue` answer) get at most [`Limits::exit_grace`];
//! - the few errors hyper answers itself, before any handler runs (400 for
//!   a malformed request line, 414, 431, 501, 505), are rewritten into the
//!   spec's JSON error body by [`JsonErrors`], because Ironic reads
//!   `faultstring` on every status >= 400.

use crate::extensions::{Control, RunState};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Time allowed for a TLS handshake and for a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight is closed after this long.
/// Ironic opens a new connection for nearly every call, so this costs the
/// conductor nothing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Concurrent connections. Far below the 1,024 file descriptors a ramdisk
/// process gets, so the agent's own files and sockets never run out; a
/// conductor needs one or two.
pub const MAX_CONNECTIONS: usize = 256;
/// After `finalize_rescue` (or `lockdown`) is answered, in-flight responses
/// get this long before the process moves on regardless.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Largest request head hyper buffers (request line + headers); beyond it
/// hyper answers 431 (rewritten to JSON).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The server's limits; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`EXIT_GRACE`].
    pub exit_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            exit_grace: EXIT_GRACE,
        }
    }
}

/// What the accept loop knows about one connection.
struct Conn {
    /// Requests handed to the router whose response head is not written yet.
    in_flight: AtomicUsize,
    /// When the connection was accepted.
    opened: Instant,
    /// Accept time, then the end of the last response.
    last_active: Mutex<Instant>,
    /// Close now (idle, evicted, or the grace period is over).
    kill: Notify,
    /// Finish the current response, then close.
    drain: Notify,
}

impl Conn {
    fn new() -> Self {
        let now = Instant::now();
        Conn {
            in_flight: AtomicUsize::new(0),
            opened: now,
            last_active: Mutex::new(now),
            kill: Notify::new(),
            drain: Notify::new(),
        }
    }
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }
    fn idle_since(&self) -> Instant {
        self.last_active.lock().map(|t| *t).unwrap_or(self.opened)
    }
    fn touch(&self) {
        if let Ok(mut t) = self.last_active.lock() {
            *t = Instant::now();
        }
    }
}

type Table = Arc<Mutex<HashMap<u64, Arc<Conn>>>>;

/// Picks the connection to close so a new one fits: the longest idle, or
/// the oldest when every one has a request in flight.
fn victim(table: &HashMap<u64, Arc<Conn>>) -> Option<u64> {
    let idle = table
        .iter()
        .filter(|(_, c)| c.idle())
        .min_by_key(|(_, c)| c.idle_since());
    idle.or_else(|| table.iter().min_by_key(|(_, c)| c.opened))
        .map(|(id, _)| *id)
}

/// Serves `app` on `listener` (HTTPS when `tls` is set) until `control`
/// leaves [`RunState::Serving`], within `limits`. Returns the final state
/// once in-flight responses are written or the grace period is over.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    control: Control,
    limits: Limits,
) -> RunState {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let table: Table = Arc::default();
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    let mut reap = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    let stopped = control.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = reap.tick() => close_idle(&table, limits.idle_timeout),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: free a descriptor, back off.
                        log::debug!("accept failed: {e}");
                        make_room(&table, 1);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                make_room(&table, limits.max_connections);
                let conn = Arc::new(Conn::new());
                next_id += 1;
                let id = next_id;
                if let Ok(mut t) = table.lock() {
                    t.insert(id, conn.clone());
                }
                let table = table.clone();
                let app = app.clone();
                let acceptor = acceptor.clone();
                tasks.spawn(async move {
                    connection(tcp, acceptor, app, conn, limits).await;
                    log::debug!("connection from {peer} closed");
                    if let Ok(mut t) = table.lock() {
                        t.remove(&id);
                    }
                });
            }
        }
    }
    drop(listener);
    shut_down(&table, &mut tasks, limits.exit_grace).await;
    control.get()
}

/// Closes connections idle for longer than `idle_timeout`.
fn close_idle(table: &Table, idle_timeout: Duration) {
    let Ok(t) = table.lock() else { return };
    for c in t.values() {
        if c.idle() && c.idle_since().elapsed() >= idle_timeout {
            c.kill.notify_one();
        }
    }
}

/// Makes room for one more connection when the table is full. The victim
/// leaves the table at once, so a burst of accepts closes one connection
/// each instead of picking the same one again before its task has run.
fn make_room(table: &Table, max: usize) {
    let Ok(mut t) = table.lock() else { return };
    if t.len() >= max.max(1)
        && let Some(id) = victim(&t)
        && let Some(c) = t.remove(&id)
    {
        log::debug!(
            "{} connections open: closed the longest idle one",
            t.len() + 1
        );
        c.kill.notify_one();
    }
}

/// Stops every connection: idle ones at once, busy ones after their
/// response or when `grace` is over, whichever comes first.
async fn shut_down(table: &Table, tasks: &mut JoinSet<()>, grace: Duration) {
    if let Ok(t) = table.lock() {
        for c in t.values() {
            if c.idle() {
                c.kill.notify_one();
            } else {
                c.drain.notify_one();
            }
        }
    }
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        log::warn!(
            "{} connection(s) still open after {} ms; closing them",
            tasks.len(),
            grace.as_millis()
        );
    }
    tasks.abort_all();
}

/// One connection: the TLS handshake (bounded), then hyper's HTTP/1.1
/// state machine until it ends or the accept loop closes it.
async fn connection(
    tcp: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    conn: Arc<Conn>,
    limits: Limits,
) {
    let _ = tcp.set_nodelay(true);
    match acceptor {
        None => http(tcp, app, conn, limits).await,
        Some(acceptor) => {
            let hs = tokio::select! {
                r = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp)) => r,
                _ = conn.kill.notified() => return,
            };
            match hs {
                Ok(Ok(stream)) => http(stream, app, conn, limits).await,
                Ok(Err(e)) => log::debug!("TLS handshake failed: {e}"),
                Err(_) => log::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn http<T>(io: T, app: axum::Router, conn: Arc<Conn>, limits: Limits)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(JsonErrors::new(io, conn.clone()));
    let svc = Tracked {
        inner: TowerToHyperService::new(app),
        conn: conn.clone(),
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .writev(false);
    let served = builder.serve_connection(io, svc);
    tokio::pin!(served);
    tokio::select! {
        r = served.as_mut() => {
            if let Err(e) = r { log::debug!("connection error: {e}"); }
            return;
        }
        _ = conn.kill.notified() => return,
        _ = conn.drain.notified() => served.as_mut().graceful_shutdown(),
    }
    tokio::select! {
        _ = served => {}
        _ = conn.kill.notified() => {}
    }
}

/// Counts the requests of a connection that are in the router or whose
/// response head is not yet written (decremented by [`JsonErrors`]).
struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<hyper::Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.conn.in_flight.fetch_add(1, Ordering::SeqCst);
        self.conn.touch();
        self.inner.call(req)
    }
}

/// Passes bytes through, except a response head written while no request
/// is in the router: that is an error hyper produced on its own (bad
/// request line, head too large, …) with an empty body, which becomes the
/// spec's JSON error body. Also notes the end of each response.
struct JsonErrors<T> {
    io: T,
    conn: Arc<Conn>,
    /// A rewritten response still to be written.
    pending: Vec<u8>,
}

impl<T> JsonErrors<T> {
    fn new(io: T, conn: Arc<Conn>) -> Self {
        JsonErrors {
            io,
            conn,
            pending: Vec::new(),
        }
    }
}

/// The spec's error response for a status hyper chose itself.
fn json_error_response(status: u16) -> Vec<u8> {
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let desc = match status {
        414 => "The length of the requested URL exceeds the capacity limit for this server.",
        431 => "One or more header fields exceeds the maximum size.",
        505 => "The server does not support the HTTP protocol version used in the request.",
        501 => "The server does not support the action requested by the browser.",
        _ => "The browser (or proxy) sent a request that this server could not understand.",
    };
    let body = crate::api::fault_body(status, &format!("{status} {reason}: {desc}"));
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status of a response head at the start of `buf`, if it is one.
fn response_status(buf: &[u8]) -> Option<u16> {
    // hyper answers an HTTP/1.0 request with an HTTP/1.0 status line.
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes what is left of a rewritten response.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(status) = response_status(buf)
            && status >= 200
        {
            let answered = self
                .conn
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            self.conn.touch();
            if !answered && status >= 400 {
                self.pending = json_error_response(status);
                // hyper's own bytes are replaced, so report them written.
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit, so the
/// connection cap, not the 1,024 default, decides when clients are turned
/// away. Failure only costs headroom.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max.min(65536);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_a_head() {
        assert_eq!(response_status(b"HTTP/1.1 431 Request"), Some(431));
        assert_eq!(response_status(b"HTTP/1.0 200 OK"), Some(200));
        assert_eq!(response_status(b"{\"x\":1}"), None);
        assert_eq!(response_status(b"HTTP/1.1 1"), None);
    }

    #[test]
    fn rewritten_error_is_json() {
        let r = String::from_utf8(json_error_response(431)).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["faultcode"], "Client");
        assert!(v["faultstring"].as_str().unwrap().starts_with("431 "));
    }

    #[test]
    fn victim_prefers_the_longest_idle() {
        let mut t = HashMap::new();
        let busy = Arc::new(Conn::new());
        busy.in_flight.store(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        let old_idle = Arc::new(Conn::new());
        std::thread::sleep(Duration::from_millis(5));
        let new_idle = Arc::new(Conn::new());
        t.insert(1, busy);
        t.insert(2, new_idle);
        t.insert(3, old_idle);
        assert_eq!(victim(&t), Some(3));
        t.remove(&2);
        t.remove(&3);
        assert_eq!(victim(&t), Some(1));
    }
}
