//! Issue 13 at startup, against the spawned binary and a fake Ironic:
//! failed version discovery is retried (never "plain HTTP for life"),
//! Ironic's TLS policy from the lookup reply is applied, and absurd
//! numeric parameters are clamped and logged once instead of panicking.

mod common;
use common::{
    FakeServer, Killed, agent_command, agent_log, fake_ironic, fake_root, first_heartbeat,
    free_port,
};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "IronicIssuedToken_abcdefghijklmnopqrstuvwxyz12";

/// Ironic whose `GET /` fails the first `fail_root` times and whose lookup
/// reply carries `extra_config`.
fn ironic(fail_root: usize, extra_config: Value) -> FakeServer {
    let mut config = json!({"heartbeat_timeout": 1e20, "agent_token": TOKEN});
    if let (Some(c), Some(x)) = (config.as_object_mut(), extra_config.as_object()) {
        c.extend(x.clone());
    }
    fake_ironic(fail_root, config)
}

fn spawn(root: &std::path::Path, port: u16, api: &str) -> Killed {
    let p = port.to_string();
    Killed(
        agent_command(
            root,
            port,
            &[
                "--advertise-port",
                &p,
                "--advertise-host",
                "127.0.0.1",
                "--api-url",
                api,
            ],
        )
        .spawn()
        .unwrap(),
    )
}

/// A TLS handshake with only `version` offered; the agent's own PEM is the
/// trust anchor, as the conductor uses it.
fn handshake(
    port: u16,
    pem: &str,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    if out.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("no 200: {out:?}"))
    }
}

#[test]
fn failed_discovery_is_retried_and_ironic_tls_policy_applies() {
    let t = fake_root("quiet");
    let ironic = ironic(2, json!({"tls_min_version": "1.3"}));
    let port = free_port();
    let mut child = spawn(t.path(), port, &ironic.url);
    let beat = first_heartbeat(&ironic, &mut child.0, t.path());
    assert_eq!(beat["callback_url"], format!("https://127.0.0.1:{port}"));
    let lookup = ironic
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/v1/lookup"))
        .unwrap();
    assert_eq!(
        lookup.header("X-OpenStack-Ironic-API-Version"),
        Some("1.62"),
        "lookup must not go out at the 1.31 fallback"
    );
    let pem = beat["agent_verify_ca"].as_str().unwrap();
    handshake(port, pem, &rustls::version::TLS13).unwrap();
    assert!(
        handshake(port, pem, &rustls::version::TLS12).is_err(),
        "TLS 1.2 accepted although Ironic asked for 1.3"
    );
}

#[test]
fn cipher_suites_from_the_command_line() {
    let t = fake_root("ipa-tls-cipher-suites=ECDHE-ECDSA-AES128-GCM-SHA256");
    let ironic = ironic(0, json!({}));
    let port = free_port();
    let mut child = spawn(t.path(), port, &ironic.url);
    let beat = first_heartbeat(&ironic, &mut child.0, t.path());
    let pem = beat["agent_verify_ca"].as_str().unwrap();
    // Only a TLS 1.2 suite is allowed, so a 1.3-only client is refused.
    handshake(port, pem, &rustls::version::TLS12).unwrap();
    assert!(handshake(port, pem, &rustls::version::TLS13).is_err());
}

#[test]
fn absurd_numbers_are_clamped_and_logged_once() {
    let t = fake_root(
        "ipa-http-request-timeout=1e20 ipa-lookup-interval=1e300 ipa-ip-lookup-timeout=-1 \
         ipa-hardware-initialization-delay=0.1 ipa-lookup-timeout=inf",
    );
    let ironic = ironic(0, json!({}));
    let port = free_port();
    let mut child = spawn(t.path(), port, &ironic.url);
    first_heartbeat(&ironic, &mut child.0, t.path());
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.0.try_wait().unwrap().is_none(), "agent died");
    let log = agent_log(t.path());
    for key in [
        "ipa-http-request-timeout",
        "ipa-lookup-interval",
        "ipa-ip-lookup-timeout",
        "ipa-lookup-timeout",
    ] {
        let n = log
            .lines()
            .filter(|l| l.contains(&format!("{key}=")))
            .count();
        assert_eq!(n, 1, "{key} logged {n} times:\n{log}");
    }
    assert!(
        log.contains("heartbeat_timeout 100000000000000000000"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
