//! Issue 13, "the node's clock breaks TLS": with `ipa-ntp-server`, the
//! auto-TLS certificate is dated by the NTP server's time, not the node's;
//! without it, its validity starts a week back and lasts ten years, so a
//! clock hours or days off still gives a certificate valid "now".

mod common;
use common::{
    Killed, agent_command, agent_log, fake_ironic, fake_root, first_heartbeat, free_port,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use std::net::UdpSocket;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The certificate the agent sends to Ironic, started with `cmdline`.
fn agent_certificate(cmdline: &str) -> (Vec<u8>, String) {
    let t = fake_root(cmdline);
    let ironic = fake_ironic(
        0,
        json!({"heartbeat_timeout": 60, "agent_token": "IronicIssuedToken_abcdefghijklmnopqrstuvwxyz12"}),
    );
    let mut agent = Killed(
        agent_command(
            t.path(),
            free_port(),
            &["--advertise-host", "127.0.0.1", "--api-url", &ironic.url],
        )
        .spawn()
        .unwrap(),
    );
    let v = first_heartbeat(&ironic, &mut agent.0, t.path());
    let pem = v["agent_verify_ca"].as_str().unwrap().to_string();
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    (der.to_vec(), agent_log(t.path()))
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
