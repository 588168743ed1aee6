//! Issue 13, "no private CA can be trusted": the spawned agent looks a node
//! up at an Ironic served over HTTPS with a certificate from a CA made by
//! the test, trusting it through each source in turn (`ipa-cafile`, IPA's
//! config file, the virtual media's `ironic.crt`, the system bundle), with
//! a client certificate when Ironic demands one, and not at all without.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ipa-agent");
const TOKEN: &str = "IronicIssuedToken_abcdefghijklmnopqrstuvwxyz12";

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
    client_cert_pem: String,
    client_key_pem: String,
}

/// A CA, Ironic's certificate for 127.0.0.1 and a client certificate, all
/// made here. With `require_client`, Ironic refuses clients without one.
fn pki(require_client: bool) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let ckey = KeyPair::generate().unwrap();
    let cparams = CertificateParams::new(vec!["ipa-agent".to_string()]).unwrap();
    let ccert = cparams.signed_by(&ckey, &issuer).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let v =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(v)
    } else {
        builder.with_no_client_auth()
    };
    let server = builder
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
        client_cert_pem: ccert.pem(),
        client_key_pem: ckey.serialize_pem(),
    }
}

/// Ironic over HTTPS: answers `/`, lookup and heartbeats; counts requests
/// that made it through the handshake.
struct Ironic {
    url: String,
    requests: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

fn ironic(cfg: Arc<rustls::ServerConfig>) -> Ironic {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let paths = Arc::new(Mutex::new(Vec::new()));
    let (r, p) = (requests.clone(), paths.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.is_empty() {
                continue;
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            r.fetch_add(1, Ordering::SeqCst);
            p.lock().unwrap().push(path.clone());
            let (status, body) = if path == "/" {
                (200, r#"{"default_version":{"version":"1.99"}}"#.to_string())
            } else if path.starts_with("/v1/lookup") {
                (
                    200,
                    format!(
                        r#"{{"node":{{"uuid":"1be26c0b-03f2-4d2e-ae87-c02d7f33c123"}},"config":{{"heartbeat_timeout":60,"agent_token":"{TOKEN}"}}}}"#
                    ),
                )
            } else {
                (202, String::new())
            };
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    Ironic {
        url,
        requests,
        paths,
    }
}

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root(cmdline: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let eth0 = t.path().join("sys/class/net/eth0");
    std::fs::create_dir_all(eth0.join("device")).unwrap();
    std::fs::write(eth0.join("address"), "52:54:00:12:34:56\n").unwrap();
    std::fs::create_dir_all(t.path().join("proc")).unwrap();
    std::fs::write(t.path().join("proc/cmdline"), cmdline).unwrap();
    t
}

fn put(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn spawn(root: &Path, ironic: &Ironic) -> Agent {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let log = std::fs::File::create(root.join("agent.log")).unwrap();
    Agent(
        Command::new(BIN)
            .args([
                "--root",
                root.to_str().unwrap(),
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                &port,
                "--advertise-host",
                "127.0.0.1",
                "--lookup-timeout",
                "4",
                "--api-url",
                &ironic.url,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Whether the agent looked the node up within a few seconds.
fn looked_up(ironic: &Ironic, agent: &mut Agent) -> bool {
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        if ironic
            .paths
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("/v1/heartbeat/"))
        {
            return true;
        }
        if agent.0.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn log(root: &Path) -> String {
    std::fs::read_to_string(root.join("agent.log")).unwrap_or_default()
}

#[test]
fn without_a_trusted_ca_there_is_no_lookup() {
    let p = pki(false);
    let ironic = ironic(p.server.clone());
    let t = root("quiet");
    let mut a = spawn(t.path(), &ironic);
    assert!(!looked_up(&ironic, &mut a), "{}", log(t.path()));
    assert_eq!(ironic.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn ipa_cafile_on_the_command_line() {
    let p = pki(false);
    let ironic = ironic(p.server.clone());
    let t = root("ipa-cafile=/opt/ca/private.pem");
    put(t.path(), "/opt/ca/private.pem", &p.ca_pem);
    let mut a = spawn(t.path(), &ironic);
    assert!(looked_up(&ironic, &mut a), "{}", log(t.path()));
    assert!(log(t.path()).contains("/opt/ca/private.pem"));
}

#[test]
fn cafile_in_ipa_config_dir_as_ironic_vmedia_writes_it() {
    let p = pki(false);
    let ironic = ironic(p.server.clone());
    let t = root("quiet");
    put(
        t.path(),
        "/etc/ironic-python-agent.d/ironic-tls.conf",
        "[DEFAULT]\ncafile = /etc/pki/ironic-ca.pem\n",
    );
    put(t.path(), "/etc/pki/ironic-ca.pem", &p.ca_pem);
    let mut a = spawn(t.path(), &ironic);
    assert!(looked_up(&ironic, &mut a), "{}", log(t.path()));
}

#[test]
fn ironic_crt_alone_and_system_bundle_alone() {
    for path in [
        "/etc/ironic-python-agent/ironic.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    ] {
        let p = pki(false);
        let ironic = ironic(p.server.clone());
        let t = root("quiet");
        put(t.path(), path, &p.ca_pem);
        let mut a = spawn(t.path(), &ironic);
        assert!(looked_up(&ironic, &mut a), "{path}: {}", log(t.path()));
    }
}

#[test]
fn client_certificate_when_ironic_demands_one() {
    let p = pki(true);
    let ironic = ironic(p.server.clone());
    // Without a client certificate the handshake fails.
    let t = root("ipa-cafile=/ca.pem");
    put(t.path(), "/ca.pem", &p.ca_pem);
    let mut a = spawn(t.path(), &ironic);
    assert!(!looked_up(&ironic, &mut a));
    drop(a);
    // With certfile/keyfile from IPA's config file it succeeds.
    let t = root("quiet");
    put(
        t.path(),
        "/etc/ironic-python-agent/ironic-python-agent.conf",
        "[DEFAULT]\ncafile=/ca.pem\ncertfile=/c.pem\nkeyfile=/k.pem\n",
    );
    put(t.path(), "/ca.pem", &p.ca_pem);
    put(t.path(), "/c.pem", &p.client_cert_pem);
    put(t.path(), "/k.pem", &p.client_key_pem);
    let mut a = spawn(t.path(), &ironic);
    assert!(looked_up(&ironic, &mut a), "{}", log(t.path()));
    assert!(!log(t.path()).contains("PRIVATE KEY"));
}

#[test]
fn insecure_still_works_and_warns_at_every_lookup() {
    let p = pki(false);
    let ironic = ironic(p.server.clone());
    let t = root("ipa-insecure=1");
    let mut a = spawn(t.path(), &ironic);
    assert!(looked_up(&ironic, &mut a), "{}", log(t.path()));
    let l = log(t.path());
    let lookups = ironic
        .paths
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.starts_with("/v1/lookup"))
        .count();
    let warnings = l.lines().filter(|x| x.contains("NOT verified")).count();
    assert!(lookups >= 1 && warnings >= lookups, "{l}");
}
