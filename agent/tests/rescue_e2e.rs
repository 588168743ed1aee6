//! Cases 20–25 of spec §8 end to end against the spawned `ipa-agent` binary
//! with `--root` in a temporary directory, a full rescue flow through a fake
//! Ironic over auto-TLS (verified by Python's OpenSSL, as the conductor
//! does), the no-secrets-in-logs check, and the `rescue-user` subcommand.

mod common;
use common::{FakeServer, agent_base_command, free_port, get, post, wait_listening};
use serde_json::{Value, json};
use sha_crypt::{PasswordHash, PasswordVerifier, ShaCrypt};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOK: &str = "e2e-token-0123456789abcdef0123456789abcdef";

struct Agent {
    child: Child,
    port: u16,
}

impl Agent {
    fn spawn(root: &Path, extra: &[&str]) -> Agent {
        let port = free_port();
        let p = port.to_string();
        let mut args = vec!["--advertise-port", &p, "--debug"];
        args.extend_from_slice(extra);
        let child = agent_base_command(root, port, &args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Agent { child, port }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn wait_ready(&self) {
        wait_listening(self.port, Duration::from_secs(10));
    }
    /// Waits for exit; returns the exit code and stderr.
    fn wait_exit(mut self, secs: u64) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.stderr());
            }
            if Instant::now() > deadline {
                let err = self.kill();
                panic!("agent did not exit in {secs} s; stderr:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr()
    }
    /// All the (exited) agent wrote to stderr.
    fn stderr(&mut self) -> String {
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        err
    }
}

fn finalize(a: &Agent, params: Value) -> (u16, Value) {
    post(
        &a.url(&format!("/v1/commands/?agent_token={TOK}")),
        &json!({"name": "rescue.finalize_rescue", "params": params}).to_string(),
    )
}

fn pw_file(root: &Path) -> std::path::PathBuf {
    root.join("etc/ipa-rescue-config/ipa-rescue-password")
}

#[test]
fn case_20_finalize_rescue_hashed_then_exit_0() {
    let t = tempfile::tempdir().unwrap();
    let a = Agent::spawn(t.path(), &["--agent-token", TOK]);
    a.wait_ready();
    let (s, v) = finalize(&a, json!({"rescue_password": "$6$abc", "hashed": true}));
    assert_eq!(s, 200);
    assert_eq!(v["command_name"], "finalize_rescue");
    assert_eq!(v["command_status"], "SUCCEEDED");
    assert_eq!(v["command_error"], Value::Null);
    assert_eq!(v["command_result"], Value::Null);
    let (code, _) = a.wait_exit(10);
    assert_eq!(code, Some(0));
    assert_eq!(
        std::fs::read_to_string(pw_file(t.path())).unwrap(),
        "$6$abc"
    );
    let mode = std::fs::metadata(pw_file(t.path()))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(t.path().join("etc/ipa-rescue-config"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700);
    assert!(t.path().join("etc/.rescued").exists());
}

#[test]
fn case_21_plain_password_is_sha256_crypt() {
    let t = tempfile::tempdir().unwrap();
    let a = Agent::spawn(t.path(), &["--agent-token", TOK]);
    a.wait_ready();
    let (s, v) = finalize(&a, json!({"rescue_password": "password"}));
    assert_eq!((s, v["command_status"].as_str()), (200, Some("SUCCEEDED")));
    assert_eq!(a.wait_exit(10).0, Some(0));
    let h = std::fs::read_to_string(pw_file(t.path())).unwrap();
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '/')
    };
    let parts: Vec<&str> = h.split('$').collect();
    assert_eq!(parts.len(), 4, "{h}");
    assert!(
        parts[0].is_empty() && parts[1] == "5" && ok(parts[2], 16) && ok(parts[3], 43),
        "{h}"
    );
    let parsed = PasswordHash::new(&h).unwrap();
    ShaCrypt::default()
        .verify_password(b"password", &parsed)
        .unwrap();
}

#[test]
fn case_22_hashed_samples_verbatim() {
    for sample in [
        "$1$salt$hash",
        "$2a$10$abcdefghijklmnopqrstuv",
        "$5$rounds=5000$salt$x",
        "$6$abc$def",
    ] {
        let t = tempfile::tempdir().unwrap();
        let a = Agent::spawn(t.path(), &["--agent-token", TOK]);
        a.wait_ready();
        let (s, _) = finalize(&a, json!({"rescue_password": sample, "hashed": true}));
        assert_eq!(s, 200);
        assert_eq!(a.wait_exit(10).0, Some(0));
        assert_eq!(std::fs::read_to_string(pw_file(t.path())).unwrap(), sample);
    }
    // §9: empty passwords and non-crypt "hashes" are refused, nothing written.
    let t = tempfile::tempdir().unwrap();
    let a = Agent::spawn(t.path(), &["--agent-token", TOK]);
    a.wait_ready();
    for params in [
        json!({"rescue_password": ""}),
        json!({}),
        json!({"rescue_password": "plain", "hashed": true}),
    ] {
        let (s, v) = finalize(&a, params);
        assert_eq!(s, 400);
        assert!(
            v["faultstring"]
                .as_str()
                .unwrap()
                .starts_with("Invalid command parameters: ")
        );
    }
    assert!(!pw_file(t.path()).exists());
    a.kill();
}

#[test]
fn case_23_unwritable_password_file_fails_and_keeps_serving() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("etc")).unwrap();
    // A file where the directory should be: the write cannot succeed.
    std::fs::write(t.path().join("etc/ipa-rescue-config"), "").unwrap();
    let a = Agent::spawn(t.path(), &["--agent-token", TOK]);
    a.wait_ready();
    let (s, v) = finalize(&a, json!({"rescue_password": "password"}));
    assert_eq!(s, 200);
    assert_eq!(v["command_status"], "FAILED");
    assert_eq!(v["command_error"]["code"], 500);
    assert!(!t.path().join("etc/.rescued").exists());
    assert_eq!(get(&a.url("/v1/status")).0, 200);
    assert_eq!(
        get(&a.url(&format!("/v1/commands/?agent_token={TOK}"))).0,
        200
    );
    a.kill();
}

#[test]
fn case_24_marker_failure_still_succeeds_and_stops() {
    let t = tempfile::tempdir().unwrap();
    let a = Agent::spawn(t.path(), &["--agent-token", TOK]);
    a.wait_ready();
    // Once the agent serves, put a directory where the marker file should
    // go: creating the marker fails.
    std::fs::create_dir_all(t.path().join("etc/.rescued/x")).unwrap();
    let (s, v) = finalize(&a, json!({"rescue_password": "$6$abc", "hashed": true}));
    assert_eq!((s, v["command_status"].as_str()), (200, Some("SUCCEEDED")));
    let (code, err) = a.wait_exit(10);
    assert_eq!(code, Some(0));
    assert!(err.contains("cannot create rescue marker"), "{err}");
}

fn fake_ironic(token: &'static str, hb_timeout: u32) -> FakeServer {
    common::fake_ironic(
        0,
        json!({"heartbeat_timeout": hb_timeout, "agent_token": token, "agent_token_required": true}),
    )
}

fn fake_sysfs(root: &Path) {
    let eth0 = root.join("sys/class/net/eth0");
    std::fs::create_dir_all(eth0.join("device")).unwrap();
    std::fs::write(eth0.join("address"), "52:54:00:12:34:56\n").unwrap();
}

#[test]
fn case_25_marker_present_no_listener_no_heartbeat() {
    let t = tempfile::tempdir().unwrap();
    fake_sysfs(t.path());
    std::fs::create_dir_all(t.path().join("etc")).unwrap();
    std::fs::write(t.path().join("etc/.rescued"), "").unwrap();
    let ironic = fake_ironic("ironic-token-0123456789abcdef0123456789ab", 1);
    let a = Agent::spawn(
        t.path(),
        &["--api-url", &ironic.url, "--advertise-host", "127.0.0.1"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ironic
        .requests()
        .iter()
        .any(|r| r.path.starts_with("/v1/lookup"))
    {
        assert!(Instant::now() < deadline, "no lookup");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", a.port)).is_err(),
        "must not listen"
    );
    assert!(
        !ironic
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/v1/heartbeat"))
    );
    let err = a.kill();
    assert!(err.contains("not serving"), "{err}");
}

/// The whole rescue as Ironic drives it: lookup hands out the token,
/// heartbeats carry an https callback and the PEM, the conductor calls
/// finalize_rescue over HTTPS verifying with that PEM (Python + OpenSSL),
/// the agent exits 0, and no secret ever reaches the log.
#[test]
fn full_rescue_over_auto_tls_and_no_secrets_in_logs() {
    if Command::new("python3").arg("-V").output().is_err() {
        panic!("python3 is needed to verify the certificate with OpenSSL");
    }
    let token: &'static str = "IronicIssuedToken_abcdefghijklmnopqrstuvwxyz12";
    let t = tempfile::tempdir().unwrap();
    fake_sysfs(t.path());
    let ironic = fake_ironic(token, 1);
    let a = Agent::spawn(
        t.path(),
        &["--api-url", &ironic.url, "--advertise-host", "127.0.0.1"],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let beats = loop {
        let b: Vec<Value> = ironic
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/v1/heartbeat/"))
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect();
        if b.len() >= 2 {
            break b;
        }
        assert!(Instant::now() < deadline, "fewer than 2 heartbeats");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        beats[0], beats[1],
        "same callback and PEM on every heartbeat"
    );
    assert_eq!(
        beats[0]["callback_url"],
        format!("https://127.0.0.1:{}", a.port)
    );
    assert_eq!(beats[0]["agent_token"], token);
    let pem = beats[0]["agent_verify_ca"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let crt = t.path().join("run/ironic-python-agent/agent.crt");
    assert_eq!(std::fs::read_to_string(&crt).unwrap(), pem);
    let key_mode = std::fs::metadata(t.path().join("run/ironic-python-agent/agent.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let password = "S3cret-Rescue-Pa55";
    let script = r#"
import json, ssl, sys, urllib.request
url, cafile, token, pw = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
body = json.dumps({"name": "rescue.finalize_rescue", "params": {"rescue_password": pw}}).encode()
req = urllib.request.Request(url + "/v1/commands/?wait=false&agent_token=" + token, data=body,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, context=ctx).read().decode())
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &format!("https://127.0.0.1:{}", a.port),
            crt.to_str().unwrap(),
            token,
            password,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python/OpenSSL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["command_status"], "SUCCEEDED");
    let (code, log) = a.wait_exit(15);
    assert_eq!(code, Some(0), "{log}");
    let hash = std::fs::read_to_string(pw_file(t.path())).unwrap();
    assert!(hash.starts_with("$5$"));
    assert!(
        log.contains("lookup succeeded") && log.contains("heartbeat accepted"),
        "{log}"
    );
    for secret in [password, hash.as_str(), token] {
        assert!(!log.contains(secret), "secret leaked into the log:\n{log}");
    }
    // Salt alone must not leak either.
    assert!(!log.contains(&hash[3..19]));
}

fn rescue_user(root: &Path) -> std::process::Output {
    Command::new(common::BIN)
        .args(["rescue-user", "--root", root.to_str().unwrap()])
        .output()
        .unwrap()
}

fn snapshot(root: &Path) -> Vec<(String, String, u32)> {
    [
        "etc/passwd",
        "etc/shadow",
        "etc/group",
        "etc/sudoers.d/rescue",
    ]
    .iter()
    .map(|f| {
        let p = root.join(f);
        (
            f.to_string(),
            std::fs::read_to_string(&p).unwrap(),
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        )
    })
    .collect()
}

#[test]
fn rescue_user_creates_user_idempotently() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::create_dir_all(root.join("etc/ipa-rescue-config")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nsudo:x:27:alice\n").unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/bash"), "").unwrap();
    let hash = ipa_agent::extensions::rescue::hash_password("hunter22").unwrap();
    std::fs::write(pw_file(root), &hash).unwrap();

    let out = rescue_user(root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&hash));
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    let line = shadow.lines().find(|l| l.starts_with("rescue:")).unwrap();
    let f: Vec<&str> = line.split(':').collect();
    assert_eq!(f.len(), 9, "{line}");
    assert_eq!(
        (f[3], f[4], f[5], f[6], f[7], f[8]),
        ("0", "99999", "7", "", "", "")
    );
    assert!(f[2].parse::<u64>().unwrap() > 19000);
    ShaCrypt::default()
        .verify_password(b"hunter22", &PasswordHash::new(f[1]).unwrap())
        .unwrap();
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("rescue:x:1000:1000:") && l.ends_with(":/home/rescue:/bin/bash")), "{passwd}");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group.lines().any(|l| l == "sudo:x:27:alice,rescue"),
        "{group}"
    );
    assert!(group.lines().any(|l| l == "rescue:x:1000:"), "{group}");
    let snap = snapshot(root);
    assert_eq!(snap[3].1, "rescue ALL=(ALL) NOPASSWD: ALL\n");
    assert_eq!(snap[3].2, 0o440);
    let home = std::fs::metadata(root.join("home/rescue")).unwrap();
    assert_eq!(home.permissions().mode() & 0o777, 0o700);

    // Twice: nothing changes.
    assert!(rescue_user(root).status.success());
    assert_eq!(snapshot(root), snap);

    // A new hash replaces the old one.
    std::fs::write(pw_file(root), "$6$newsalt$abcdef").unwrap();
    assert!(rescue_user(root).status.success());
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert_eq!(
        shadow.lines().filter(|l| l.starts_with("rescue:")).count(),
        1
    );
    assert!(shadow.contains("rescue:$6$newsalt$abcdef:"));
}

#[test]
fn rescue_user_on_an_empty_root_creates_wheel_and_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::create_dir_all(root.join("etc/ipa-rescue-config")).unwrap();
    std::fs::write(pw_file(root), "$5$abcdefghijklmnop$x").unwrap();
    assert!(rescue_user(root).status.success());
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("wheel:x:") && l.ends_with(":rescue")),
        "{group}"
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains(":/home/rescue:/bin/sh"));
    // No password file: a clear error naming it.
    std::fs::remove_file(pw_file(root)).unwrap();
    let out = rescue_user(root);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ipa-rescue-password"));
}
