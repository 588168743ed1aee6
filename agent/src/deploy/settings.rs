//! How images are fetched: IPA's download retry parameters and the TLS
//! trust the agent uses for Ironic (`ipa-cafile`, IPA's config files,
//! vmedia's `ironic.crt`, the system bundle; `ipa-insecure`).
//!
//! Read from `--root` (kernel command line and config files) when a deploy
//! starts, so a test's fake root gives a test's settings.

use crate::config;
use crate::trust::{self, Trust};
use std::path::Path;
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

/// Download policy and trust.
#[derive(Debug, Clone)]
pub struct Settings {
    /// CAs and client certificate (the same as for Ironic).
    pub trust: Trust,
    /// Skip certificate verification (`ipa-insecure`).
    pub insecure: bool,
    /// md5 checksums are accepted (Ironic said so at lookup).
    pub md5_allowed: bool,
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

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trust: Trust::default(),
            insecure: false,
            md5_allowed: false,
            retries: 9,
            retry_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(60),
            max_duration: None,
        }
    }
}

impl Settings {
    /// The settings under `root`: the agent's own parsing of the kernel
    /// command line and IPA's config files, plus the download parameters.
    pub fn from_root(root: &Path) -> Settings {
        let params = config::read_kernel_params(root);
        let (mut cfg, _) = config::from_params(root.to_path_buf(), &params);
        let mut warnings = Vec::new();
        cfg.apply_agent_conf(&trust::read_agent_conf(root), &mut warnings);
        let num = |k: &str, default: f64, max: f64| -> f64 {
            params
                .get(k)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .map(|v| v.clamp(0.0, max))
                .unwrap_or(default)
        };
        let max = num("ipa-image-download-max-duration", 0.0, 604_800.0);
        Settings {
            trust: trust::load(root, &cfg.trust),
            insecure: cfg.insecure,
            md5_allowed: MD5_ALLOWED.load(Ordering::Relaxed),
            retries: num("ipa-image-download-connection-retries", 9.0, 1000.0) as u32,
            retry_interval: Duration::from_secs_f64(num(
                "ipa-image-download-connection-retry-interval",
                10.0,
                3600.0,
            )),
            connect_timeout: Duration::from_secs_f64(
                num("ipa-image-download-connection-timeout", 60.0, 3600.0).max(1.0),
            ),
            max_duration: (max > 0.0).then(|| Duration::from_secs_f64(max)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_parameters_set_the_policy_and_bad_values_fall_back() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(
            t.path().join("proc/cmdline"),
            "ipa-image-download-connection-retries=2 ipa-image-download-connection-retry-interval=0.5 ipa-image-download-connection-timeout=nan ipa-insecure=1\n",
        )
        .unwrap();
        let s = Settings::from_root(t.path());
        assert_eq!(s.retries, 2);
        assert_eq!(s.retry_interval, Duration::from_millis(500));
        assert_eq!(s.connect_timeout, Duration::from_secs(60));
        assert!(s.insecure);
        assert!(s.max_duration.is_none());
    }

    #[test]
    fn md5_follows_the_lookup_config() {
        let t = tempfile::tempdir().unwrap();
        set_md5_allowed(&serde_json::json!({"agent_md5_checksum_enable": true}));
        assert!(Settings::from_root(t.path()).md5_allowed);
        set_md5_allowed(&serde_json::json!({"heartbeat_timeout": 300}));
        assert!(!Settings::from_root(t.path()).md5_allowed);
    }
}
