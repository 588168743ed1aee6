//! Issue 13, "no private CA can be trusted": the spawned agent looks a node
//! up at an Ironic served over HTTPS with a certificate from a CA made by
//! the test, trusting it through each source in turn (`ipa-cafile`, IPA's
//! config file, the virtual media's `ironic.crt`, the system bundle), with
//! a client certificate when Ironic demands one, and not at all without.

mod common;
use common::{
    FakeServer, Killed, agent_command, agent_log, fake_root as root, free_port, ironic_handler,
    test_pki,
};
use rcgen::{CertificateParams, KeyPair};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let p = test_pki();
    let ckey = KeyPair::generate().unwrap();
    let cparams = CertificateParams::new(vec!["ipa-agent".to_string()]).unwrap();
    let ccert = cparams.signed_by(&ckey, &p.issuer).unwrap();
    Pki {
        ca_pem: p.ca.pem(),
        server: p.server_config(require_client),
        client_cert_pem: ccert.pem(),
        client_key_pem: ckey.serialize_pem(),
    }
}

/// Ironic over HTTPS: answers `/`, lookup and heartbeats; records the
/// requests that made it through the handshake.
fn ironic(cfg: Arc<rustls::ServerConfig>) -> FakeServer {
    FakeServer::start_tls(
        cfg,
        ironic_handler(0, json!({"heartbeat_timeout": 60, "agent_token": TOKEN})),
    )
}

/// A fresh [`pki`] and an [`ironic`] serving its server certificate.
fn pki_and_ironic(require_client: bool) -> (Pki, FakeServer) {
    let p = pki(require_client);
    let ironic = ironic(p.server.clone());
    (p, ironic)
}

/// The paths Ironic was asked for.
fn paths(ironic: &FakeServer) -> Vec<String> {
    ironic.requests().into_iter().map(|r| r.path).collect()
}

fn put(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn spawn(root: &Path, ironic: &FakeServer) -> Killed {
    Killed(
        agent_command(
            root,
            free_port(),
            &[
                "--advertise-host",
                "127.0.0.1",
                "--lookup-timeout",
                "4",
                "--api-url",
                &ironic.url,
            ],
        )
        .spawn()
        .unwrap(),
    )
}

/// Starts the agent against `ironic` on a root with `cmdline` and `files`
/// (path, text); whether it looked the node up, and the root (its log in
/// `agent.log`).
fn try_lookup(
    ironic: &FakeServer,
    cmdline: &str,
    files: &[(&str, &str)],
) -> (bool, tempfile::TempDir) {
    let t = root(cmdline);
    for (path, text) in files {
        put(t.path(), path, text);
    }
    let mut a = spawn(t.path(), ironic);
    (looked_up(ironic, &mut a), t)
}

/// Whether the agent looked the node up within a few seconds.
fn looked_up(ironic: &FakeServer, agent: &mut Killed) -> bool {
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        if paths(ironic)
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

#[test]
fn without_a_trusted_ca_there_is_no_lookup() {
    let (_p, ironic) = pki_and_ironic(false);
    let (ok, t) = try_lookup(&ironic, "quiet", &[]);
    assert!(!ok, "{}", agent_log(t.path()));
    assert!(ironic.requests().is_empty());
}

#[test]
fn ipa_cafile_on_the_command_line() {
    let (p, ironic) = pki_and_ironic(false);
    let (ok, t) = try_lookup(
        &ironic,
        "ipa-cafile=/opt/ca/private.pem",
        &[("/opt/ca/private.pem", &p.ca_pem)],
    );
    assert!(ok, "{}", agent_log(t.path()));
    assert!(agent_log(t.path()).contains("/opt/ca/private.pem"));
}

#[test]
fn cafile_in_ipa_config_dir_as_ironic_vmedia_writes_it() {
    let (p, ironic) = pki_and_ironic(false);
    let conf = (
        "/etc/ironic-python-agent.d/ironic-tls.conf",
        "[DEFAULT]\ncafile = /etc/pki/ironic-ca.pem\n",
    );
    let (ok, t) = try_lookup(
        &ironic,
        "quiet",
        &[conf, ("/etc/pki/ironic-ca.pem", &p.ca_pem)],
    );
    assert!(ok, "{}", agent_log(t.path()));
}

#[test]
fn ironic_crt_alone_and_system_bundle_alone() {
    for path in [
        "/etc/ironic-python-agent/ironic.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    ] {
        let (p, ironic) = pki_and_ironic(false);
        let (ok, t) = try_lookup(&ironic, "quiet", &[(path, &p.ca_pem)]);
        assert!(ok, "{path}: {}", agent_log(t.path()));
    }
}

#[test]
fn client_certificate_when_ironic_demands_one() {
    let (p, ironic) = pki_and_ironic(true);
    // Without a client certificate the handshake fails.
    let (ok, _t) = try_lookup(&ironic, "ipa-cafile=/ca.pem", &[("/ca.pem", &p.ca_pem)]);
    assert!(!ok);
    // With certfile/keyfile from IPA's config file it succeeds.
    let conf = (
        "/etc/ironic-python-agent/ironic-python-agent.conf",
        "[DEFAULT]\ncafile=/ca.pem\ncertfile=/c.pem\nkeyfile=/k.pem\n",
    );
    let files: [(&str, &str); 4] = [
        conf,
        ("/ca.pem", &p.ca_pem),
        ("/c.pem", &p.client_cert_pem),
        ("/k.pem", &p.client_key_pem),
    ];
    let (ok, t) = try_lookup(&ironic, "quiet", &files);
    assert!(ok, "{}", agent_log(t.path()));
    assert!(!agent_log(t.path()).contains("PRIVATE KEY"));
}

#[test]
fn insecure_still_works_and_warns_at_every_lookup() {
    let (_p, ironic) = pki_and_ironic(false);
    let (ok, t) = try_lookup(&ironic, "ipa-insecure=1", &[]);
    assert!(ok, "{}", agent_log(t.path()));
    let l = agent_log(t.path());
    let lookups = paths(&ironic)
        .iter()
        .filter(|p| p.starts_with("/v1/lookup"))
        .count();
    let warnings = l.lines().filter(|x| x.contains("NOT verified")).count();
    assert!(lookups >= 1 && warnings >= lookups, "{l}");
}
