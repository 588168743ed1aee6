//! Files served over HTTP so that one URL works for a VM and for Ironic.
//!
//! A QEMU guest on user-mode networking reaches the host's loopback only as
//! [`GUEST_HOST`] (`10.0.2.2`), so image URLs must name that address. The
//! conductor, on the host, cannot reach `10.0.2.2`, yet it sends HEAD
//! requests to the very URL it hands the agent. So the server listens
//! twice on 127.0.0.1: on `port` for the guest (`10.0.2.2:port` arrives at
//! `127.0.0.1:port`), and on `proxy_port` as an HTTP proxy that the Ironic
//! process uses (`http_proxy`) and that answers only for
//! `http://10.0.2.2:port/...`, from the same files. Everything stays on
//! loopback.
//!
//! Every request is recorded (which listener, method, path), so a test can
//! check that the conductor and the agent both fetched what they should.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The host as a QEMU user-mode guest sees it.
pub const GUEST_HOST: &str = "10.0.2.2";

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Whether it came through the proxy listener (the conductor).
    pub via_proxy: bool,
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path, e.g. `/raw.img`.
    pub path: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    files: Mutex<BTreeMap<String, PathBuf>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// The two listeners; both stop when this is dropped.
pub struct ImageServer {
    port: u16,
    proxy_port: u16,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ImageServer {
    /// Starts both listeners on free loopback ports.
    pub fn start() -> io::Result<Self> {
        let origin = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let proxy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = origin.local_addr()?.port();
        let proxy_port = proxy.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let threads = [(origin, false), (proxy, true)]
            .into_iter()
            .map(|(listener, via_proxy)| {
                let shared = shared.clone();
                std::thread::spawn(move || accept_loop(listener, via_proxy, port, shared))
            })
            .collect();
        Ok(ImageServer {
            port,
            proxy_port,
            shared,
            threads,
        })
    }

    /// Serves `file` as `/name`; returns the URL the guest (and, through
    /// the proxy, Ironic) uses.
    pub fn add(&self, name: &str, file: &Path) -> String {
        if let Ok(mut files) = self.shared.files.lock() {
            files.insert(format!("/{name}"), file.to_path_buf());
        }
        self.url(name)
    }

    /// `http://10.0.2.2:port/name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{GUEST_HOST}:{}/{name}", self.port)
    }

    /// The proxy for the Ironic process's `http_proxy`.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for port in [self.port, self.proxy_port] {
            // Wake the accept() so the thread sees the flag.
            let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, port));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, via_proxy: bool, origin_port: u16, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let _ = serve(conn, via_proxy, origin_port, &shared);
        });
    }
}

/// Answers one request and closes the connection.
fn serve(conn: TcpStream, via_proxy: bool, origin_port: u16, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    // Through the proxy the target is absolute and must name the guest URL.
    let origin = format!("http://{GUEST_HOST}:{origin_port}");
    let path = if via_proxy {
        target.strip_prefix(&origin).map(str::to_string)
    } else {
        target.starts_with('/').then(|| target.to_string())
    };
    let file = path
        .as_ref()
        .and_then(|p| shared.files.lock().ok()?.get(p).cloned());
    let mut out = conn;
    let status = match (&path, &file, method.as_str()) {
        (None, _, _) => respond(&mut out, 403, &format!("only {origin}/ is served here\n"))?,
        (_, None, _) => respond(&mut out, 404, "no such file\n")?,
        (_, Some(_), m) if m != "GET" && m != "HEAD" => respond(&mut out, 405, "GET or HEAD\n")?,
        (_, Some(f), m) => send_file(&mut out, f, m == "GET")?,
    };
    if let Ok(mut seen) = shared.seen.lock() {
        seen.push(Seen {
            via_proxy,
            method,
            path: path.unwrap_or_else(|| target.to_string()),
            status,
        });
    }
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}

fn respond(out: &mut TcpStream, status: u16, text: &str) -> io::Result<u16> {
    write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    Ok(status)
}

/// 200 with the length and a binary type (the conductor refuses HTML), and
/// the bytes for a GET.
fn send_file(out: &mut TcpStream, file: &Path, body: bool) -> io::Result<u16> {
    let mut f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    if body {
        io::copy(&mut f, out)?;
    }
    Ok(200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn exchange(port: u16, request: &str) -> String {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn origin_and_proxy_serve_the_same_file_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.img");
        std::fs::write(&file, b"image bytes").unwrap();
        let server = ImageServer::start().unwrap();
        let url = server.add("a.img", &file);
        assert_eq!(url, format!("http://10.0.2.2:{}/a.img", server.port));

        let got = exchange(server.port, "GET /a.img HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.contains("Content-Length: 11\r\n") && got.ends_with("image bytes"));

        let head = exchange(
            server.proxy_port,
            &format!("HEAD {url} HTTP/1.1\r\nHost: 10.0.2.2\r\n\r\n"),
        );
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        assert!(head.contains("Content-Type: application/octet-stream"));

        let other = exchange(
            server.proxy_port,
            "GET http://example.org/a.img HTTP/1.1\r\n\r\n",
        );
        assert!(other.starts_with("HTTP/1.1 403"), "{other}");
        let missing = exchange(server.port, "GET /b.img HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        let seen = server.seen();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            seen[1],
            Seen {
                via_proxy: true,
                method: "HEAD".into(),
                path: "/a.img".into(),
                status: 200
            }
        );
    }
}
