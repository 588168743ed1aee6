//! In-band inspection, as ironic-python-agent does it: when
//! `ipa-inspection-callback-url` is set, wait for DHCP, collect the
//! [`crate::hardware::inventory`], post it to that URL (Ironic's
//! `/v1/continue_inspection`), then go on to lookup with the node UUID the
//! answer names.
//!
//! Inspection never stops the agent: IPA exits (and is restarted) when the
//! post fails for good; this agent logs why and looks the node up anyway,
//! so Ironic still reaches it for the next job.

use crate::config::Config;
use crate::timing::Timing;
use crate::trust::Trust;
use serde_json::{Value, json};

/// `ipa-inspection-*` parameters.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Where to post the inventory; `None` = no inspection.
    pub callback_url: Option<String>,
    /// `ipa-inspection-collectors`: `default` (the inventory) and `logs` are
    /// honoured; other names are reported in `configuration` and skipped.
    pub collectors: Vec<String>,
    /// Seconds to wait for an IPv4 address before collecting.
    pub dhcp_wait_timeout: f64,
    /// Wait for every NIC, not only the PXE one.
    pub dhcp_all_interfaces: bool,
}

/// Collectors this agent implements.
pub const KNOWN_COLLECTORS: &[&str] = &["default", "logs"];

/// Attempts at posting, as IPA's `call_inspector`.
pub const POST_ATTEMPTS: u32 = 5;

/// Seconds to wait after failed attempt `n` (1-based): IPA's tenacity
/// schedule, `1.5 * 2^(n-1)` clamped to 5..30 s.
pub fn retry_wait(attempt: u32) -> f64 {
    (1.5 * 2f64.powi(attempt.saturating_sub(1).min(16) as i32)).clamp(5.0, 30.0)
}

/// Why a post did not get a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Transport error or a 5xx after every attempt.
    #[error("posting the inventory to {url} failed {attempts} times; last: {last}")]
    GaveUp {
        /// The callback URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Ironic refused the data (4xx): retrying cannot help.
    #[error("{url} refused the inventory with {status}: {body}")]
    Refused {
        /// The callback URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Ironic's message.
        body: String,
    },
}

/// Runs inspection when configured; returns the node UUID Ironic answered
/// with, for lookup. Failures are logged, never fatal.
pub fn run(cfg: &Config, trust: &Trust, timing: &dyn Timing) -> Option<String> {
    let url = cfg.inspection.callback_url.as_deref()?;
    log::info!(
        "inspection is enabled (collectors {}): posting to {url}",
        cfg.inspection.collectors.join(",")
    );
    wait_for_dhcp(cfg, timing);
    wait_for_disks(cfg, timing);
    let body = payload(cfg);
    let timeout = crate::timing::duration(cfg.http_request_timeout.max(1.0));
    let agent = trust.ironic_agent(cfg.insecure, timeout);
    match post(&agent, url, &body.to_string(), timing) {
        Ok(answer) => {
            let uuid = answer["uuid"].as_str().map(str::to_string);
            log::info!(
                "inspection data accepted (node {})",
                uuid.as_deref().unwrap_or("not named")
            );
            uuid
        }
        Err(e) => {
            log::error!("{e}; proceeding with lookup");
            None
        }
    }
}

/// Waits up to `ipa-inspection-dhcp-wait-timeout` until the PXE NIC (or,
/// with `ipa-inspection-dhcp-all-interfaces`, every NIC) exists and has an
/// IPv4 address, so the inventory reports it. The agent may start before
/// udev has even registered the NICs (the systemd image does not order it
/// after the network): an empty NIC list is waited for, never taken as
/// "nothing missing", or Ironic gets an inventory without interfaces and
/// refuses it.
fn wait_for_dhcp(cfg: &Config, timing: &dyn Timing) {
    let s = &cfg.inspection;
    if s.dhcp_wait_timeout <= 0.0 {
        return;
    }
    if cfg.bootif.is_none() && !s.dhcp_all_interfaces {
        log::info!("no PXE interface known (BOOTIF): not waiting for DHCP");
        return;
    }
    let start = timing.now();
    loop {
        let missing = without_address(cfg);
        if missing.is_empty() {
            return;
        }
        if timing.now() - start >= s.dhcp_wait_timeout {
            log::warn!(
                "no IPv4 address on {} after {} s; inspecting anyway",
                missing.join(","),
                s.dhcp_wait_timeout
            );
            return;
        }
        timing.sleep(1.0);
    }
}

/// The NICs inspection waits for that have no IPv4 address yet; the PXE
/// NIC's MAC stands in for it until it exists, and "no NIC at all" is a
/// NIC missing.
fn without_address(cfg: &Config) -> Vec<String> {
    let addrs = crate::hardware::interfaces::system_addresses();
    let nics = crate::hardware::interfaces::list(&cfg.root, &addrs);
    let all = cfg.inspection.dhcp_all_interfaces;
    let mut missing: Vec<String> = (nics.iter())
        .filter(|i| all || cfg.bootif.as_deref() == Some(&i.mac_address))
        .filter(|i| i.ipv4_address.is_none())
        .map(|i| i.name.clone())
        .collect();
    match cfg.bootif.as_deref() {
        Some(mac) if !nics.iter().any(|i| i.mac_address == mac) => missing.push(mac.to_string()),
        None if nics.is_empty() => missing.push("any interface".to_string()),
        _ => {}
    }
    if all {
        missing.extend(unregistered_nics(&cfg.root));
    }
    missing
}

/// PCI network controllers (class 0x02) that have no network interface
/// yet: their driver is still loading or probing (udev and mdev load them
/// in the background), so "every NIC" is not known until they register.
fn unregistered_nics(root: &std::path::Path) -> Vec<String> {
    let pci = root.join("sys/bus/pci/devices");
    let Ok(devices) = std::fs::read_dir(&pci) else {
        return Vec::new();
    };
    let has_net = |dev: &std::path::Path| {
        dev.join("net").is_dir()
            || std::fs::read_dir(dev).is_ok_and(|entries| {
                entries.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with("virtio")
                        && e.path().join("net").is_dir()
                })
            })
    };
    devices
        .flatten()
        .map(|d| d.path())
        .filter(|dev| {
            std::fs::read_to_string(dev.join("class")).is_ok_and(|c| c.trim().starts_with("0x02"))
        })
        .filter(|dev| !has_net(dev))
        .map(|dev| {
            format!(
                "PCI {}",
                dev.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect()
}

/// Waits, as IPA's `ipa-disk-wait-attempts` does (10 tries, 3 s apart),
/// until at least one disk is listed: storage drivers may still be probing
/// when the agent starts, and an inventory without disks names no root disk.
fn wait_for_disks(cfg: &Config, timing: &dyn Timing) {
    for attempt in 1..=DISK_WAIT_ATTEMPTS {
        if crate::hardware::disks::list(&cfg.root).is_ok_and(|d| !d.is_empty()) {
            return;
        }
        if attempt < DISK_WAIT_ATTEMPTS {
            timing.sleep(DISK_WAIT_DELAY);
        }
    }
    log::warn!("no disk found after {DISK_WAIT_ATTEMPTS} tries; inspecting anyway");
}

/// IPA's defaults for `ipa-disk-wait-attempts` and `ipa-disk-wait-delay`.
const DISK_WAIT_ATTEMPTS: u32 = 10;
const DISK_WAIT_DELAY: f64 = 3.0;

/// The document IPA posts: `inventory`, `root_disk`, `boot_interface`,
/// `configuration`, `error` and, with the `logs` collector, `logs`.
pub fn payload(cfg: &Config) -> Value {
    let s = &cfg.inspection;
    let unknown: Vec<&str> = s
        .collectors
        .iter()
        .map(String::as_str)
        .filter(|c| !KNOWN_COLLECTORS.contains(c))
        .collect();
    if !unknown.is_empty() {
        log::warn!(
            "inspection collectors {} are not supported by this agent; skipped",
            unknown.join(",")
        );
    }
    // IPA reports a collector's failure in `error` and still posts.
    let (disks, error) = match crate::hardware::disks::list(&cfg.root) {
        Ok(d) => (d, Value::Null),
        Err(e) => {
            log::warn!("inspection: {e}");
            (Vec::new(), json!(e.to_string()))
        }
    };
    let inventory = crate::hardware::inventory::collect(&cfg.root, cfg.bootif.as_deref(), disks);
    // The disk a deploy without root device hints would pick.
    let no_hints = crate::deploy::hints::Hints::default();
    let root_disk = crate::deploy::root_device::choose(&inventory.disks, &no_hints).ok();
    // `hardware_manager_version`, as IPA's `get_version()` list.
    let managers: Vec<Value> = crate::deploy::steps::versions()
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, version)| json!({"name": name, "version": version}))
                .collect()
        })
        .unwrap_or_default();
    log::info!(
        "inventory: {} interfaces, {} disks, {} CPUs ({}), {} bytes of RAM",
        inventory.interfaces.len(),
        inventory.disks.len(),
        inventory.cpu.count,
        inventory.cpu.architecture,
        inventory.memory.total
    );
    let mut body = json!({
        "inventory": inventory,
        "root_disk": root_disk,
        "boot_interface": cfg.bootif,
        "configuration": {
            "collectors": s.collectors,
            "managers": managers,
        },
        "error": error,
    });
    if s.collectors.iter().any(|c| c == "logs") {
        match crate::extensions::logs::collect(&cfg.root) {
            Ok(tgz) => {
                use base64::Engine;
                body["logs"] = json!(base64::engine::general_purpose::STANDARD.encode(tgz));
            }
            Err(e) => log::warn!("cannot collect logs for inspection: {e}"),
        }
    }
    body
}

/// Posts `body` to `url`: up to [`POST_ATTEMPTS`] attempts while the
/// connection fails or Ironic answers 5xx, waiting [`retry_wait`] between
/// them. Returns the answer's JSON (`null` when it has none).
pub fn post(
    agent: &ureq::Agent,
    url: &str,
    body: &str,
    timing: &dyn Timing,
) -> Result<Value, InspectError> {
    let mut last = String::new();
    for attempt in 1..=POST_ATTEMPTS {
        let result = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(body);
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.into_body().read_to_string().unwrap_or_default();
                if status < 400 {
                    return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                if status < 500 {
                    return Err(InspectError::Refused {
                        url: url.to_string(),
                        status,
                        body: crate::ironic::error_text(&text),
                    });
                }
                last = format!("{status}: {}", crate::ironic::error_text(&text));
            }
            Err(e) => last = e.to_string(),
        }
        if attempt < POST_ATTEMPTS {
            let wait = retry_wait(attempt);
            log::warn!(
                "posting the inventory failed (attempt {attempt}: {last}); retrying in {wait} s"
            );
            timing.sleep(wait);
        }
    }
    Err(InspectError::GaveUp {
        url: url.to_string(),
        attempts: POST_ATTEMPTS,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pci_nic_without_its_interface_is_still_missing() {
        let t = tempfile::tempdir().unwrap();
        let dev = |name: &str, class: &str| {
            let d = t.path().join("sys/bus/pci/devices").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
            d
        };
        std::fs::create_dir_all(dev("0000:00:03.0", "0x020000").join("virtio0/net/ens3")).unwrap();
        std::fs::create_dir_all(dev("0000:00:04.0", "0x020000").join("net/ens4")).unwrap();
        dev("0000:00:05.0", "0x020000");
        dev("0000:00:06.0", "0x010601");
        assert_eq!(unregistered_nics(t.path()), ["PCI 0000:00:05.0"]);
    }

    #[test]
    fn retry_schedule_is_ipas() {
        let waits: Vec<f64> = (1..POST_ATTEMPTS).map(retry_wait).collect();
        assert_eq!(waits, vec![5.0, 5.0, 6.0, 12.0]);
        assert_eq!(retry_wait(10), 30.0);
    }

    /// A one-thread HTTP server on loopback answering each connection with
    /// the next of `answers` (status, body); returns its URL and the bodies
    /// it received.
    fn server(answers: Vec<(u16, &'static str)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/continue_inspection", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for (status, answer) in answers {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                bodies.push(String::from_utf8(body).unwrap());
                let mut s = r.into_inner();
                write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .unwrap();
            }
            bodies
        });
        (url, h)
    }

    fn agent() -> ureq::Agent {
        Trust::default().ironic_agent(false, std::time::Duration::from_secs(30))
    }

    #[test]
    fn retries_5xx_then_returns_the_answer() {
        let (url, h) = server(vec![
            (503, r#"{"error_message": "{\"faultstring\": \"busy\"}"}"#),
            (202, r#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"}"#),
        ]);
        let t = crate::timing::ManualClock::default();
        let answer = post(&agent(), &url, r#"{"inventory": {}}"#, &t).unwrap();
        assert_eq!(answer["uuid"], "1be26c0b-03f2-4d2e-ae87-c02d7f33c123");
        assert_eq!(t.slept(), vec![5.0]);
        assert_eq!(h.join().unwrap(), vec![r#"{"inventory": {}}"#; 2]);
    }

    #[test]
    fn a_4xx_is_not_retried_and_gives_up_after_five_5xx() {
        let (url, h) = server(vec![(
            404,
            r#"{"error_message": "{\"faultstring\": \"Not Found\"}"}"#,
        )]);
        let t = crate::timing::ManualClock::default();
        let e = post(&agent(), &url, "{}", &t).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{url} refused the inventory with 404: Not Found")
        );
        assert!(t.slept().is_empty());
        h.join().unwrap();

        let (url, h) = server(vec![(500, "{}"); 5]);
        let e = post(&agent(), &url, "{}", &t).unwrap_err();
        assert!(matches!(e, InspectError::GaveUp { attempts: 5, .. }), "{e}");
        assert_eq!(t.slept(), vec![5.0, 5.0, 6.0, 12.0]);
        h.join().unwrap();
    }
}
