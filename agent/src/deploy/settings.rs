//! How images are fetched: IPA's download retry parameters and the TLS
//! trust the agent uses for Ironic (`ipa-cafile`, IPA's config files,
//! vmedia's `ironic.crt`, the system bundle; `ipa-insecure`).
//!
//! Made once at start-up from the agent's parsed configuration.

use crate::config::Config;
use crate::trust::Trust;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Ironic's `[agent]allow_md5_checksum`, from the lookup reply's
/// `config.agent_md5_checksum_enable`; off until a lookup says otherwise.
static MD5_ALLOWED: AtomicBool = AtomicBool::new(false);

/// Records whether Ironic permits md5 image checksums (called after lookup).
pub fn set_md5_allowed(lookup_config: &serde_json::Value) {
    let allowed = lookup_config["agent_md5_checksum_enable"].as_bool() == Some(true);
    MD5_ALLOWED.store(allowed, Ordering::Relaxed);
}

/// IPA's image download parameters (`ipa-image-download-*`), parsed with
/// the rest of the kernel command line ([`crate::config::Config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Further attempts after a failed one
    /// (`ipa-image-download-connection-retries`, 9).
    pub retries: u32,
    /// Pause between attempts (`…-connection-retry-interval`, 10 s).
    pub retry_interval: Duration,
    /// Connecting and waiting for each chunk (`…-connection-timeout`, 60 s).
    pub connect_timeout: Duration,
    /// Whole download (`ipa-image-download-max-duration`, 0 = none).
    pub max_duration: Option<Duration>,
}

impl Default for Download {
    fn default() -> Self {
        Download {
            retries: 9,
            retry_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(60),
            max_duration: None,
        }
    }
}

/// Download policy and trust: made once when the agent starts, from its
/// configuration and the trust it loaded for Ironic.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// CAs and client certificate (the same as for Ironic).
    pub trust: Trust,
    /// Skip certificate verification (`ipa-insecure`).
    pub insecure: bool,
    /// md5 checksums are accepted (Ironic said so at lookup; see
    /// [`Settings::now`]).
    pub md5_allowed: bool,
    pub download: Download,
}

impl Settings {
    /// The settings of an agent configured as `cfg`, trusting `trust`.
    pub fn new(cfg: &Config, trust: Trust) -> Settings {
        Settings {
            trust,
            insecure: cfg.insecure,
            md5_allowed: false,
            download: cfg.image_download.clone(),
        }
    }

    /// These settings with what lookup has said since: whether md5 is allowed.
    pub fn now(&self) -> Settings {
        Settings {
            md5_allowed: MD5_ALLOWED.load(Ordering::Relaxed),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn from_cmdline(cmdline: &str) -> Settings {
        let params: BTreeMap<String, String> = cmdline
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (cfg, _) = crate::config::from_params("/".into(), &params);
        Settings::new(&cfg, Trust::default())
    }

    #[test]
    fn kernel_parameters_set_the_policy_and_bad_values_fall_back() {
        let s = from_cmdline(
            "ipa-image-download-connection-retries=2 ipa-image-download-connection-retry-interval=0.5 ipa-image-download-connection-timeout=nan ipa-insecure=1",
        );
        assert_eq!(s.download.retries, 2);
        assert_eq!(s.download.retry_interval, Duration::from_millis(500));
        assert_eq!(s.download.connect_timeout, Duration::from_secs(60));
        assert!(s.insecure);
        assert!(s.download.max_duration.is_none());
    }

    #[test]
    fn md5_follows_the_lookup_config() {
        let s = from_cmdline("");
        set_md5_allowed(&serde_json::json!({"agent_md5_checksum_enable": true}));
        assert!(s.now().md5_allowed);
        set_md5_allowed(&serde_json::json!({"heartbeat_timeout": 300}));
        assert!(!s.now().md5_allowed);
    }
}
