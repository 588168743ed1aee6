//! Issue 13, "the node's clock breaks TLS": with `ipa-ntp-server`, the
//! auto-TLS certificate is dated by the NTP server's time, not the node's;
//! without it, its validity starts a week back and lasts ten years, so a
//! clock hours or days off still gives a certificate valid "now".

mod common;
use common::FakeServer;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_ipa-agent");
const DAY: f64 = 86400.0;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// An SNTP server on 127.0.0.1 whose clock runs `skew` seconds ahead.
fn sntp(skew: f64) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 48 {
                continue;
            }
            let t = now() + skew + 2_208_988_800.0;
            let mut ts = [0u8; 8];
            ts[..4].copy_from_slice(&((t.floor() as u64 & 0xffff_ffff) as u32).to_be_bytes());
            ts[4..].copy_from_slice(&(((t - t.floor()) * 4294967296.0) as u32).to_be_bytes());
            let mut r = [0u8; 48];
            r[0] = 0x24;
            r[1] = 1;
            r[24..32].copy_from_slice(&buf[40..48]);
            r[32..40].copy_from_slice(&ts);
            r[40..48].copy_from_slice(&ts);
            let _ = sock.send_to(&r, peer);
        }
    });
    port
}

/// notBefore and notAfter (Unix seconds) of a DER certificate: the first
/// two UTCTime values (`YYMMDDHHMMSSZ`), which are its validity.
fn validity(der: &[u8]) -> (f64, f64) {
    let mut times = Vec::new();
    let mut i = 0;
    while i + 15 <= der.len() && times.len() < 2 {
        if der[i] == 0x17 && der[i + 1] == 13 {
            let s = std::str::from_utf8(&der[i + 2..i + 15]).unwrap();
            let n = |a: usize| s[a..a + 2].parse::<i64>().unwrap();
            let (y, mo, d) = (2000 + n(0), n(2), n(4));
            // Days from civil (H. Hinnant).
            let (y2, m2) = if mo <= 2 {
                (y - 1, mo + 9)
            } else {
                (y, mo - 3)
            };
            let era = y2.div_euclid(400);
            let yoe = y2 - era * 400;
            let doy = (153 * m2 + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146097 + doe - 719468;
            times.push((days * 86400 + n(6) * 3600 + n(8) * 60 + n(10)) as f64);
            i += 15;
        } else {
            i += 1;
        }
    }
    (times[0], times[1])
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The certificate the agent sends to Ironic, started with `cmdline`.
fn agent_certificate(cmdline: &str) -> (Vec<u8>, String) {
    let t = tempfile::tempdir().unwrap();
    let eth0 = t.path().join("sys/class/net/eth0");
    std::fs::create_dir_all(eth0.join("device")).unwrap();
    std::fs::write(eth0.join("address"), "52:54:00:12:34:56\n").unwrap();
    std::fs::create_dir_all(t.path().join("proc")).unwrap();
    std::fs::write(t.path().join("proc/cmdline"), cmdline).unwrap();
    let ironic = FakeServer::start(|r| {
        if r.path == "/" {
            (
                200,
                json!({"default_version": {"version": "1.99"}}).to_string(),
            )
        } else if r.path.starts_with("/v1/lookup") {
            (
                200,
                json!({"node": {"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"},
                       "config": {"heartbeat_timeout": 60, "agent_token": "IronicIssuedToken_abcdefghijklmnopqrstuvwxyz12"}})
                .to_string(),
            )
        } else {
            (202, String::new())
        }
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let log_path = t.path().join("agent.log");
    let _agent = Killed(
        Command::new(BIN)
            .args([
                "--root",
                t.path().to_str().unwrap(),
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                &port,
                "--advertise-host",
                "127.0.0.1",
                "--api-url",
                &ironic.url,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = ironic
            .requests()
            .into_iter()
            .find(|r| r.path.starts_with("/v1/heartbeat/"))
        {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            let pem = v["agent_verify_ca"].as_str().unwrap().to_string();
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            return (der.to_vec(), std::fs::read_to_string(&log_path).unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn ntp_time_dates_the_certificate() {
    // The "real" time is 400 days ahead of this machine's clock.
    let skew = 400.0 * DAY;
    let port = sntp(skew);
    let (der, log) = agent_certificate(&format!("ipa-ntp-server=127.0.0.1:{port}"));
    let (nb, na) = validity(&der);
    let real = now() + skew;
    assert!(
        (nb - (real - 7.0 * DAY)).abs() < 120.0,
        "notBefore {nb} vs {real}\n{log}"
    );
    assert!(na > real + 3000.0 * DAY, "notAfter {na}");
    let logged: f64 = log
        .split("clock is off by ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset logged:\n{log}"));
    assert!((logged - skew).abs() < 1.0, "offset {logged}\n{log}");
}

#[test]
fn without_ntp_the_validity_tolerates_a_skewed_clock() {
    let (der, _) = agent_certificate("quiet");
    let (nb, na) = validity(&der);
    let t = now();
    // A conductor whose clock is 3 days behind or 5 years ahead of the
    // node's still sees the certificate as valid.
    assert!(nb < t - 3.0 * DAY && nb > t - 8.0 * DAY, "{nb} {t}");
    assert!(na > t + 5.0 * 365.0 * DAY, "{na} {t}");
}

#[test]
fn an_ntp_server_that_never_answers_is_not_fatal() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (_, log) = agent_certificate(&format!("ipa-ntp-server=127.0.0.1:{port}"));
    assert!(log.contains("no NTP server answered"), "{log}");
    drop(silent);
}
