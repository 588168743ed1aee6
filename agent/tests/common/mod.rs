//! Test helpers: a tiny scripted HTTP server standing in for Ironic, and an
//! in-process agent API server.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> (u16, String) + Send + Sync>;

/// A fake HTTP server on 127.0.0.1; records every request.
pub struct FakeServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Req) -> (u16, String) + Send + Sync + 'static) -> Self {
        Self::serve(None, handler)
    }

    /// The same over HTTPS with `tls`; a request whose handshake fails is
    /// not recorded.
    pub fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Req) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        Self::serve(Some(tls), handler)
    }

    fn serve(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Req) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let handler: Handler = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                match &tls {
                    None => answer(stream, &recorded, &handler),
                    Some(cfg) => {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                        let mut tls = rustls::StreamOwned::new(conn, stream);
                        answer(&mut tls, &recorded, &handler);
                        let _ = tls.flush();
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    }
                }
            }
        });
        FakeServer { url, requests }
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request from `stream`, records it and writes the handler's
/// answer.
fn answer(mut stream: impl Read + Write, recorded: &Mutex<Vec<Req>>, handler: &Handler) {
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let req = Req {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    recorded.lock().unwrap().push(req.clone());
    let (status, body) = handler(&req);
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes());
}

/// A port nobody listens on.
pub fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

/// A plain HTTP client that never turns a status into an error.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

pub fn get(url: &str) -> (u16, serde_json::Value) {
    let r = client().get(url).call().unwrap();
    let status = r.status().as_u16();
    let text = r.into_body().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

pub fn post(url: &str, body: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.into_body().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The agent binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ipa-agent");

/// The node UUID the fake Ironic's lookup returns.
pub const NODE_UUID: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A spawned agent, killed and reaped when dropped.
pub struct Killed(pub Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `--root` with one NIC (eth0) and `cmdline` as the kernel command line.
pub fn fake_root(cmdline: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let eth0 = t.path().join("sys/class/net/eth0");
    std::fs::create_dir_all(eth0.join("device")).unwrap();
    std::fs::write(eth0.join("address"), "52:54:00:12:34:56\n").unwrap();
    std::fs::create_dir_all(t.path().join("proc")).unwrap();
    std::fs::write(t.path().join("proc/cmdline"), cmdline).unwrap();
    t
}

/// The agent binary with `--root root`, listening on 127.0.0.1:`port`,
/// then `extra`; stdout discarded.
pub fn agent_base_command(root: &Path, port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--root", root.to_str().unwrap()])
        .args(["--listen-host", "127.0.0.1"])
        .args(["--listen-port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null());
    cmd
}

/// [`agent_base_command`] with stderr into `root/agent.log` (see
/// [`agent_log`]).
pub fn agent_command(root: &Path, port: u16, extra: &[&str]) -> Command {
    let log = std::fs::File::create(root.join("agent.log")).unwrap();
    let mut cmd = agent_base_command(root, port, extra);
    cmd.stderr(log);
    cmd
}

/// What the agent spawned by [`agent_command`] has logged so far.
pub fn agent_log(root: &Path) -> String {
    std::fs::read_to_string(root.join("agent.log")).unwrap_or_default()
}

/// Waits until something listens on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "agent did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fake Ironic's answers: `GET /` gives API version 1.99 (but fails
/// with 503 the first `fail_root` times), a lookup gives the node and
/// `config`, a heartbeat is accepted, anything else is 404.
pub fn ironic_handler(
    fail_root: usize,
    config: serde_json::Value,
) -> impl Fn(&Req) -> (u16, String) + Send + Sync + 'static {
    let roots = std::sync::atomic::AtomicUsize::new(0);
    move |r| {
        if r.path == "/" {
            if roots.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail_root {
                (503, "{}".into())
            } else {
                (
                    200,
                    serde_json::json!({"default_version": {"version": "1.99"}}).to_string(),
                )
            }
        } else if r.path.starts_with("/v1/lookup") {
            (
                200,
                serde_json::json!({"node": {"uuid": NODE_UUID}, "config": config}).to_string(),
            )
        } else if r.path.starts_with("/v1/heartbeat/") {
            (202, String::new())
        } else {
            (404, "{}".into())
        }
    }
}

/// A plain-HTTP fake Ironic answering as [`ironic_handler`].
pub fn fake_ironic(fail_root: usize, config: serde_json::Value) -> FakeServer {
    FakeServer::start(ironic_handler(fail_root, config))
}

/// The body of the first heartbeat `ironic` received from the agent
/// `child` (spawned with `root`); fails if the agent exits first or none
/// comes within 20 s.
pub fn first_heartbeat(ironic: &FakeServer, child: &mut Child, root: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = ironic
            .requests()
            .iter()
            .find(|r| r.path.starts_with("/v1/heartbeat/"))
        {
            return serde_json::from_str(&r.body).unwrap();
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("agent exited with {s}: {}", agent_log(root));
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat: {}",
            agent_log(root)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A CA made here and a certificate for 127.0.0.1 it signed.
pub struct TestPki {
    pub ca: rcgen::Certificate,
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    TestPki {
        ca: ca_cert,
        issuer,
        cert,
        key,
    }
}

impl TestPki {
    /// A server configuration presenting the 127.0.0.1 certificate; with
    /// `client_ca`, clients must present a certificate from this CA.
    pub fn server_config(&self, client_ca: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_ca {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(v)
        } else {
            builder.with_no_client_auth()
        };
        let cfg = builder
            .with_single_cert(
                vec![self.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.key.serialize_der().into()),
            )
            .unwrap();
        Arc::new(cfg)
    }
}

/// Runs the future `serve` makes from a listener on 127.0.0.1 in a thread
/// of its own; returns the listener's port.
pub fn serve_in_thread<F, Fut>(serve: F) -> u16
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            let _ = serve(l).await;
        });
    });
    rx.recv().unwrap()
}

/// The `faultstring` of an error body.
pub fn fault(v: &serde_json::Value) -> &str {
    v["faultstring"].as_str().unwrap()
}
