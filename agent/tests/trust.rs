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
    let p = pki(false);
    let ironic = ironic(p.server.clone());
    let t = root("quiet");
    let mut a = spawn(t.path(), &ironic);
    assert!(!looked_up(&ironic, &mut a), "{}", agent_log(t.path()));
    assert!(ironic.requests().is_empty());
}

#[test]
fn ipa_cafile_on_the_command_line() {
    let p = pki(false);
    let ironic = ironic(p.server.clone());
    let t = root("ipa-cafile=/opt/ca/private.pem");
    put(t.path(), "/opt/ca/private.pem", &p.ca_pem);
    let mut a = spawn(t.path(), &ironic);
    assert!(looked_up(&ironic, &mut a), "{}", agent_log(t.path()));
    assert!(agent_log(t.path()).contains("/opt/ca/private.pem"));
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
    assert!(looked_up(&ironic, &mut a), "{}", agent_log(t.path()));
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
        assert!(
            looked_up(&ironic, &mut a),
            "{path}: {}",
            agent_log(t.path())
        );
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
    assert!(looked_up(&ironic, &mut a), "{}", agent_log(t.path()));
    assert!(!agent_log(t.path()).contains("PRIVATE KEY"));
}

#[test]
fn insecure_still_works_and_warns_at_every_lookup() {
    let p = pki(false);
    let ironic = ironic(p.server.clone());
    let t = root("ipa-insecure=1");
    let mut a = spawn(t.path(), &ironic);
    assert!(looked_up(&ironic, &mut a), "{}", agent_log(t.path()));
    let l = agent_log(t.path());
    let lookups = paths(&ironic)
        .iter()
        .filter(|p| p.starts_with("/v1/lookup"))
        .count();
    let warnings = l.lines().filter(|x| x.contains("NOT verified")).count();
    assert!(lookups >= 1 && warnings >= lookups, "{l}");
}
