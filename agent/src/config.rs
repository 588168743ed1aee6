//! One typed configuration built from the kernel command line
//! (`<root>/proc/cmdline`, `ipa-*` parameters) and command-line flags, which
//! win. Both sources feed the same key/value map first, so a flag and a
//! kernel parameter are validated by the same code and a bad value is
//! reported once, at startup, before the default is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything the daemon needs to know, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Prefix for every file the agent reads or writes (`/` in a ramdisk).
    pub root: PathBuf,
    /// Ironic API URLs, tried in order (`ipa-api-url`, comma-separated).
    pub api_urls: Vec<String>,
    /// Skip TLS verification of Ironic (`ipa-insecure`).
    pub insecure: bool,
    /// CA files and client certificate for calls to Ironic (`ipa-cafile`,
    /// `ipa-certfile`, `ipa-keyfile`, and IPA's config files).
    pub trust: crate::trust::TrustConfig,
    /// Sent as `X-OpenStack-Request-ID` (`ipa-global-request-id`).
    pub global_request_id: Option<String>,
    /// Pre-generated token (`ipa-agent-token`, virtual-media boots).
    pub agent_token: Option<String>,
    /// Forces the Ironic API version instead of discovering it.
    pub ironic_api_version: Option<(u32, u32)>,
    /// Timeout of one HTTP request to Ironic, seconds.
    pub http_request_timeout: f64,
    /// Give up looking the node up after this many seconds.
    pub lookup_timeout: f64,
    /// Starting interval of the lookup back-off, seconds.
    pub lookup_interval: f64,
    /// Log detail.
    pub debug: bool,
    /// Address the API listens on (`::` falls back to `0.0.0.0`).
    pub listen_host: String,
    /// Port the API listens on.
    pub listen_port: u16,
    /// Address put in the callback URL; discovered when absent.
    pub advertise_host: Option<String>,
    /// Port put in the callback URL.
    pub advertise_port: u16,
    /// Interface whose address to advertise, if the operator pins one.
    pub network_interface: Option<String>,
    /// Attempts to find the address to advertise.
    pub ip_lookup_attempts: u32,
    /// Seconds between those attempts.
    pub ip_lookup_timeout: f64,
    /// Serve HTTPS with a self-signed certificate when Ironic supports it.
    pub auto_tls: bool,
    /// Curve for the auto-TLS key (`p256` or `p384`).
    pub tls_certificate_curve: String,
    /// Minimum TLS version served (`1.2` or `1.3`).
    pub tls_min_version: String,
    /// Cipher suites served (`ipa-tls-cipher-suites`), `None` = defaults.
    pub tls_cipher_suites: Option<Vec<String>>,
    /// Seconds to wait after the network comes up, before lookup.
    pub hardware_initialization_delay: f64,
    /// The PXE MAC, normalized to `aa:bb:cc:dd:ee:ff`.
    pub bootif: Option<String>,
    /// NTP servers to sync from before the certificate is made
    /// (`ipa-ntp-server`, comma-separated, `host[:port]`).
    pub ntp_server: Option<String>,
    /// In-band inspection before lookup (`ipa-inspection-*`).
    pub inspection: crate::inspect::Settings,
    /// How deploy images are downloaded (`ipa-image-download-*`).
    pub image_download: crate::deploy::settings::Download,
}

/// Reads `<root>/proc/cmdline` (missing file = empty command line) and
/// returns its `k=v` tokens; the last duplicate wins.
pub fn read_kernel_params(root: &Path) -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(crate::fsutil::under(root, "/proc/cmdline")).unwrap_or_default();
    parse_kernel_params(&text)
}

/// Splits a kernel command line on whitespace and keeps `k=v` tokens, split at
/// the first `=`.
pub fn parse_kernel_params(text: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// `ipa-http-request-timeout`, seconds: at least 1 s, at most an hour.
pub const HTTP_TIMEOUT_RANGE: (f64, f64) = (1.0, 3600.0);
/// `ipa-lookup-timeout`, seconds: up to a week.
pub const LOOKUP_TIMEOUT_RANGE: (f64, f64) = (0.0, 7.0 * 86400.0);
/// `ipa-lookup-interval`, seconds (the back-off's floor).
pub const LOOKUP_INTERVAL_RANGE: (f64, f64) = (0.1, 600.0);
/// `ipa-ip-lookup-timeout`, seconds between address discoveries.
pub const IP_LOOKUP_TIMEOUT_RANGE: (f64, f64) = (0.0, 600.0);
/// `ipa-ip-lookup-attempts`.
pub const IP_LOOKUP_ATTEMPTS_RANGE: (u32, u32) = (1, 1000);
/// `ipa-inspection-dhcp-wait-timeout`, seconds.
pub const DHCP_WAIT_RANGE: (f64, f64) = (0.0, 3600.0);
/// `ipa-hardware-initialization-delay`, seconds.
pub const HARDWARE_DELAY_RANGE: (f64, f64) = (0.0, 3600.0);
/// Ironic's `heartbeat_timeout` from lookup, seconds.
pub const HEARTBEAT_TIMEOUT_RANGE: (f64, f64) = (1.0, 86400.0);

/// Reads typed values out of the merged parameters, collecting one warning
/// per bad value (the default is used instead).
struct Reader<'a> {
    p: &'a BTreeMap<String, String>,
    warn: Vec<String>,
}

impl Reader<'_> {
    fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.p.get(key) {
            None => default,
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                self.warn.push(format!(
                    "{key}={v:?} is not a boolean (1/true/yes/on or 0/false/no/off); using {default}"
                ));
                default
            }),
        }
    }

    /// A number of seconds within `lo..=hi`. Not a number: the default.
    /// Out of range (`1e20`, `inf`, negative): clamped, so an absurd value
    /// can never overflow a `Duration` and panic later.
    fn f64(&mut self, key: &str, default: f64, (lo, hi): (f64, f64)) -> f64 {
        let Some(v) = self.p.get(key) else {
            return default;
        };
        match v.trim().parse::<f64>() {
            Ok(x) if x.is_nan() => {
                self.warn
                    .push(format!("{key}={v:?} is not a number; using {default}"));
                default
            }
            Ok(x) if x < lo || x > hi => {
                let c = x.clamp(lo, hi);
                self.warn
                    .push(format!("{key}={v:?} is outside {lo}..{hi}; using {c}"));
                c
            }
            Ok(x) => x,
            Err(_) => {
                self.warn
                    .push(format!("{key}={v:?} is not a number; using {default}"));
                default
            }
        }
    }

    fn port(&mut self, key: &str) -> u16 {
        match self.p.get(key) {
            None => 9999,
            Some(v) => v.parse::<u16>().unwrap_or_else(|_| {
                self.warn.push(format!(
                    "{key}={v:?} is not a port number (0-65535); using 9999"
                ));
                9999
            }),
        }
    }

    /// A whole number within `lo..=hi`, clamped like [`Reader::f64`].
    fn u32(&mut self, key: &str, default: u32, (lo, hi): (u32, u32)) -> u32 {
        let Some(v) = self.p.get(key) else {
            return default;
        };
        match v.trim().parse::<u64>() {
            Ok(x) if x < u64::from(lo) || x > u64::from(hi) => {
                let c = x.clamp(u64::from(lo), u64::from(hi)) as u32;
                self.warn
                    .push(format!("{key}={v:?} is outside {lo}..{hi}; using {c}"));
                c
            }
            Ok(x) => x as u32,
            Err(_) => {
                self.warn.push(format!(
                    "{key}={v:?} is not a whole number; using {default}"
                ));
                default
            }
        }
    }

    fn non_empty(&self, key: &str) -> Option<String> {
        self.p.get(key).filter(|v| !v.is_empty()).cloned()
    }

    /// `ipa-api-url` (comma-separated, http(s) only) and `ipa-use-mdns`.
    fn api_urls(&mut self) -> Vec<String> {
        let mut api_urls = Vec::new();
        if let Some(v) = self.p.get("ipa-api-url") {
            for url in v.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                if url == "mdns" {
                    self.warn.push("ipa-api-url=mdns: mDNS discovery is not supported by this agent; give Ironic's URL".into());
                } else if (url.starts_with("http://") && url.len() > 7)
                    || (url.starts_with("https://") && url.len() > 8)
                {
                    api_urls.push(url.trim_end_matches('/').to_string());
                } else {
                    self.warn.push(format!(
                        "ipa-api-url entry {url:?} does not start with http:// or https://; ignored"
                    ));
                }
            }
        }
        if self.bool("ipa-use-mdns", false) && api_urls.is_empty() {
            self.warn.push(
                "ipa-use-mdns=1: mDNS discovery is not supported by this agent; give ipa-api-url"
                    .into(),
            );
        }
        api_urls
    }

    fn ironic_api_version(&mut self) -> Option<(u32, u32)> {
        let v = self.p.get("ipa-ironic-api-version")?;
        let parsed = v
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
        if parsed.is_none() {
            self.warn.push(format!(
                "ipa-ironic-api-version={v:?} is not MAJOR.MINOR; discovering the version instead"
            ));
        }
        parsed
    }

    fn tls_certificate_curve(&mut self) -> String {
        match self
            .p
            .get("ipa-tls-certificate-curve")
            .map(|s| s.to_ascii_lowercase())
        {
            None => "p384".to_string(),
            Some(c) if c == "p256" || c == "p384" => c,
            Some(c) => {
                self.warn.push(format!(
                    "ipa-tls-certificate-curve={c:?} is not supported (p256, p384); using p384"
                ));
                "p384".to_string()
            }
        }
    }

    fn tls_min_version(&mut self) -> String {
        match self.p.get("ipa-tls-min-version").map(String::as_str) {
            None => "1.2".to_string(),
            Some(v @ ("1.2" | "1.3")) => v.to_string(),
            Some(v) => {
                self.warn.push(format!(
                    "ipa-tls-min-version={v:?} is not supported (1.2, 1.3); using 1.2"
                ));
                "1.2".to_string()
            }
        }
    }

    /// `ipa-inspection-callback-url` (http(s) only; IPA's `mdns` is not
    /// supported), `ipa-inspection-collectors` and the DHCP wait.
    fn inspection(&mut self) -> crate::inspect::Settings {
        let callback_url = match self.non_empty("ipa-inspection-callback-url") {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u),
            Some(u) => {
                self.warn.push(format!(
                    "ipa-inspection-callback-url={u:?} is not an http(s) URL (mDNS is not supported); inspection is off"
                ));
                None
            }
            None => None,
        };
        let collectors = self
            .non_empty("ipa-inspection-collectors")
            .unwrap_or_else(|| "default".into());
        crate::inspect::Settings {
            callback_url,
            collectors: collectors
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            dhcp_wait_timeout: self.f64("ipa-inspection-dhcp-wait-timeout", 60.0, DHCP_WAIT_RANGE),
            dhcp_all_interfaces: self.bool("ipa-inspection-dhcp-all-interfaces", false),
        }
    }

    /// `ipa-image-download-*`: retries, the pause between them, the
    /// connect/read timeout (at least 1 s) and the whole download's limit
    /// (0, the default, is none).
    fn image_download(&mut self) -> crate::deploy::settings::Download {
        let secs = std::time::Duration::from_secs_f64;
        let max = self.f64("ipa-image-download-max-duration", 0.0, (0.0, 604_800.0));
        crate::deploy::settings::Download {
            retries: self.u32("ipa-image-download-connection-retries", 9, (0, 1000)),
            retry_interval: secs(self.f64(
                "ipa-image-download-connection-retry-interval",
                10.0,
                (0.0, 3600.0),
            )),
            connect_timeout: secs(
                self.f64("ipa-image-download-connection-timeout", 60.0, (0.0, 3600.0))
                    .max(1.0),
            ),
            max_duration: (max > 0.0).then(|| secs(max)),
        }
    }

    fn bootif(&mut self) -> Option<String> {
        let v = self.p.get("BOOTIF")?;
        let mac = normalize_bootif(v);
        if mac.is_none() {
            self.warn
                .push(format!("BOOTIF={v:?} is not a MAC address; ignored"));
        }
        mac
    }
}

/// Builds the configuration from merged parameters. Returns the config and
/// the warnings to log once the logger is up (bad values fall back to the
/// default).
pub fn from_params(root: PathBuf, p: &BTreeMap<String, String>) -> (Config, Vec<String>) {
    let mut r = Reader {
        p,
        warn: Vec::new(),
    };
    let config = Config {
        root,
        api_urls: r.api_urls(),
        insecure: r.bool("ipa-insecure", false),
        trust: crate::trust::TrustConfig {
            cafiles: r.non_empty("ipa-cafile").into_iter().collect(),
            certfile: r.non_empty("ipa-certfile"),
            keyfile: r.non_empty("ipa-keyfile"),
        },
        global_request_id: r.non_empty("ipa-global-request-id"),
        agent_token: r.non_empty("ipa-agent-token"),
        ironic_api_version: r.ironic_api_version(),
        http_request_timeout: r.f64("ipa-http-request-timeout", 30.0, HTTP_TIMEOUT_RANGE),
        lookup_timeout: r.f64("ipa-lookup-timeout", 600.0, LOOKUP_TIMEOUT_RANGE),
        lookup_interval: r.f64("ipa-lookup-interval", 1.0, LOOKUP_INTERVAL_RANGE),
        debug: r.bool("ipa-debug", false),
        listen_host: r
            .non_empty("ipa-listen-host")
            .unwrap_or_else(|| "::".into()),
        listen_port: r.port("ipa-listen-port"),
        advertise_host: r.non_empty("ipa-advertise-host"),
        advertise_port: r.port("ipa-advertise-port"),
        network_interface: r.non_empty("ipa-network-interface"),
        ip_lookup_attempts: r.u32("ipa-ip-lookup-attempts", 6, IP_LOOKUP_ATTEMPTS_RANGE),
        ip_lookup_timeout: r.f64("ipa-ip-lookup-timeout", 10.0, IP_LOOKUP_TIMEOUT_RANGE),
        auto_tls: r.bool("ipa-enable-auto-tls", true),
        tls_certificate_curve: r.tls_certificate_curve(),
        tls_min_version: r.tls_min_version(),
        tls_cipher_suites: r
            .non_empty("ipa-tls-cipher-suites")
            .map(|s| crate::tls::split_suites(&s))
            .filter(|s| !s.is_empty()),
        hardware_initialization_delay: r.f64(
            "ipa-hardware-initialization-delay",
            0.0,
            HARDWARE_DELAY_RANGE,
        ),
        bootif: r.bootif(),
        ntp_server: r.non_empty("ipa-ntp-server"),
        inspection: r.inspection(),
        image_download: r.image_download(),
    };
    (config, r.warn)
}

impl Config {
    /// Merges the `[DEFAULT]` settings of IPA's config files
    /// ([`crate::trust::read_agent_conf`]): `cafile` is trusted in addition
    /// to `ipa-cafile`; `certfile`/`keyfile` apply when no parameter gave
    /// them; `insecure = true` there is as good as `ipa-insecure=1`.
    pub fn apply_agent_conf(&mut self, conf: &BTreeMap<String, String>, warn: &mut Vec<String>) {
        if let Some(f) = conf.get("cafile").filter(|f| !f.is_empty())
            && !self.trust.cafiles.contains(f)
        {
            self.trust.cafiles.push(f.clone());
        }
        if self.trust.certfile.is_none() && self.trust.keyfile.is_none() {
            self.trust.certfile = conf.get("certfile").filter(|f| !f.is_empty()).cloned();
            self.trust.keyfile = conf.get("keyfile").filter(|f| !f.is_empty()).cloned();
        }
        if let Some(v) = conf.get("insecure") {
            match parse_bool(v) {
                Some(b) => self.insecure |= b,
                None => warn.push(format!(
                    "insecure={v:?} in the agent's config file is not a boolean; ignored"
                )),
            }
        }
    }
}

/// `01-aa-bb-cc-dd-ee-ff` (PXELINUX) or `aa:bb:cc:dd:ee:ff` (iPXE) to the
/// colon form.
pub fn normalize_bootif(v: &str) -> Option<String> {
    let v = v.to_ascii_lowercase().replace('-', ":");
    let v = match v.strip_prefix("01:") {
        Some(rest) if rest.len() == 17 => rest.to_string(),
        _ => v,
    };
    let parts: Vec<&str> = v.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    ok.then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_last_duplicate_wins_and_flags_are_ignored() {
        let p = parse_kernel_params("quiet ipa-api-url=http://a ro ipa-api-url=http://b/ x=1=2");
        assert_eq!(p["ipa-api-url"], "http://b/");
        assert_eq!(p["x"], "1=2");
        assert!(!p.contains_key("quiet"));
    }

    #[test]
    fn bad_values_warn_and_use_defaults() {
        let p = parse_kernel_params(
            "ipa-api-url=http://a/,ftp://x,https://b ipa-lookup-timeout=soon ipa-insecure=yes ipa-listen-port=99999 BOOTIF=01-AA-bb-cc-dd-ee-ff",
        );
        let (c, warn) = from_params(PathBuf::from("/"), &p);
        assert_eq!(c.api_urls, vec!["http://a", "https://b"]);
        assert_eq!(c.lookup_timeout, 600.0);
        assert!(c.insecure);
        assert_eq!(c.listen_port, 9999);
        assert_eq!(c.bootif.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(warn.len(), 3, "{warn:?}");
    }

    #[test]
    fn inspection_parameters() {
        let p = parse_kernel_params(
            "ipa-inspection-callback-url=http://10.0.2.2:6385/v1/continue_inspection \
             ipa-inspection-collectors=default,,logs,extra-hardware ipa-inspection-dhcp-wait-timeout=5",
        );
        let (c, warn) = from_params(PathBuf::from("/"), &p);
        let i = &c.inspection;
        assert_eq!(
            i.callback_url.as_deref(),
            Some("http://10.0.2.2:6385/v1/continue_inspection")
        );
        assert_eq!(i.collectors, vec!["default", "logs", "extra-hardware"]);
        assert_eq!((i.dhcp_wait_timeout, i.dhcp_all_interfaces), (5.0, false));
        assert!(warn.is_empty(), "{warn:?}");

        let p = parse_kernel_params("ipa-inspection-callback-url=mdns");
        let (c, warn) = from_params(PathBuf::from("/"), &p);
        assert_eq!(c.inspection.callback_url, None);
        assert_eq!(c.inspection.collectors, vec!["default"]);
        assert!(warn[0].contains("mDNS is not supported"), "{warn:?}");
    }

    #[test]
    fn absurd_numbers_are_clamped_once_never_panic() {
        let p = parse_kernel_params(
            "ipa-http-request-timeout=1e20 ipa-lookup-interval=-3 ipa-lookup-timeout=inf \
             ipa-ip-lookup-attempts=99999999999 ipa-ip-lookup-timeout=NaN ipa-hardware-initialization-delay=5",
        );
        let (c, warn) = from_params(PathBuf::from("/"), &p);
        assert_eq!(c.http_request_timeout, 3600.0);
        assert_eq!(c.lookup_interval, 0.1);
        assert_eq!(c.lookup_timeout, 7.0 * 86400.0);
        assert_eq!(c.ip_lookup_attempts, 1000);
        assert_eq!(c.ip_lookup_timeout, 10.0);
        assert_eq!(c.hardware_initialization_delay, 5.0);
        assert_eq!(warn.len(), 5, "{warn:?}");
        // Every value that ends up in a Duration is representable.
        for s in [c.http_request_timeout, c.lookup_interval, c.lookup_timeout] {
            assert!(std::time::Duration::try_from_secs_f64(s).is_ok());
        }
    }
}
