//! What the agent trusts when it calls Ironic over HTTPS, and the client
//! certificate it presents.
//!
//! Until now only the webpki roots compiled into the binary were trusted,
//! so an Ironic behind a private CA could only be reached with
//! `ipa-insecure` (issue 13). The sources, all trusted together:
//!
//! 1. `ipa-cafile=PATH` (kernel parameter, `--cafile`);
//! 2. `cafile` in the `[DEFAULT]` section of the files IPA reads:
//!    `/etc/ironic-python-agent.d/*.conf` (its unit's `--config-dir`, where
//!    Ironic's virtual media puts `ironic-tls.conf`), then
//!    `/etc/ironic-python-agent/ironic-python-agent.conf`,
//!    `/etc/ironic_python_agent/ironic_python_agent.conf` and
//!    `/etc/ironic-python-agent.conf`;
//! 3. `/etc/ironic-python-agent/ironic.crt`, the CA Ironic injects into
//!    virtual media (`[agent]api_ca_file`), even without a config file;
//! 4. the system CA bundle, when the image has one.
//!
//! When none of them yields a certificate, the compiled-in webpki roots are
//! used, as before. Every path is taken under `--root`. A file that cannot
//! be read is logged and skipped: other sources may still be enough, and the
//! lookup's own error names the TLS failure if not.

use crate::fsutil::under;
use std::collections::BTreeMap;
use std::path::Path;

/// The CA Ironic puts on virtual media.
pub const IRONIC_CRT: &str = "/etc/ironic-python-agent/ironic.crt";
/// IPA's config directory (its systemd unit's `--config-dir`).
pub const CONF_DIR: &str = "/etc/ironic-python-agent.d";
/// Config files read before the directory (oslo.config's defaults).
pub const CONF_FILES: &[&str] = &[
    "/etc/ironic-python-agent/ironic-python-agent.conf",
    "/etc/ironic_python_agent/ironic_python_agent.conf",
    "/etc/ironic-python-agent.conf",
];
/// System CA bundles (Debian/Alpine, Fedora/RHEL, SUSE, others).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Minimal INI reading: the `[DEFAULT]` keys of one file (`key = value`,
/// `#`/`;` comments). Later files override earlier ones.
pub fn parse_default_section(text: &str, into: &mut BTreeMap<String, String>) {
    let mut in_default = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_default = section.trim() == "DEFAULT";
            continue;
        }
        if in_default && let Some((k, v)) = line.split_once('=') {
            into.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
}

/// The `[DEFAULT]` settings of every IPA config file present under `root`,
/// in oslo.config's order (files, then the directory sorted by name).
pub fn read_agent_conf(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut paths: Vec<std::path::PathBuf> = CONF_FILES.iter().map(|f| under(root, f)).collect();
    if let Ok(rd) = std::fs::read_dir(under(root, CONF_DIR)) {
        let mut confs: Vec<_> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        confs.sort();
        paths.extend(confs);
    }
    for p in paths {
        if let Ok(text) = std::fs::read_to_string(&p) {
            parse_default_section(&text, &mut out);
        }
    }
    out
}

/// Trust anchors and the optional client certificate, as DER/PEM bytes.
#[derive(Clone, Default)]
pub struct Trust {
    /// DER certificates to trust; empty = the compiled-in webpki roots.
    pub roots: Vec<Vec<u8>>,
    /// Where the roots came from, for the log.
    pub sources: Vec<String>,
    /// Client certificate chain (DER) and the key's PEM text.
    pub client: Option<(Vec<Vec<u8>>, Vec<u8>)>,
}

impl std::fmt::Debug for Trust {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("roots", &self.roots.len())
            .field("sources", &self.sources)
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

/// The certificates in a PEM file (DER each).
fn pem_certs(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs: Vec<Vec<u8>> = ureq::tls::parse_pem(&data)
        .filter_map(Result::ok)
        .filter_map(|item| match item {
            ureq::tls::PemItem::Certificate(c) => Some(c.der().to_vec()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// Where to look, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    /// `ipa-cafile` and the config files' `cafile`.
    pub cafiles: Vec<String>,
    /// Client certificate (`certfile`).
    pub certfile: Option<String>,
    /// Client key (`keyfile`).
    pub keyfile: Option<String>,
}

/// Collects the trust anchors and client certificate under `root`.
pub fn load(root: &Path, cfg: &TrustConfig) -> Trust {
    let mut t = Trust::default();
    let mut add = |label: String, path: &Path, required: bool| match pem_certs(path) {
        Ok(c) => {
            if !t.sources.contains(&label) {
                t.roots.extend(c);
                t.sources.push(label);
            }
        }
        Err(e) if required => log::error!("cannot use CA file {label}: {e}"),
        Err(_) => {}
    };
    for f in &cfg.cafiles {
        add(f.clone(), &under(root, f), true);
    }
    add(IRONIC_CRT.to_string(), &under(root, IRONIC_CRT), false);
    if let Some(b) = SYSTEM_BUNDLES.iter().find(|b| under(root, b).is_file()) {
        add((*b).to_string(), &under(root, b), false);
    }
    match (&cfg.certfile, &cfg.keyfile) {
        (Some(c), Some(k)) => {
            let chain = pem_certs(&under(root, c));
            let key = std::fs::read(under(root, k));
            match (chain, key) {
                (Ok(chain), Ok(key)) if ureq::tls::PrivateKey::from_pem(&key).is_ok() => {
                    log::info!("presenting client certificate {c} to Ironic");
                    t.client = Some((chain, key));
                }
                (Err(e), _) => log::error!("cannot use client certificate {c}: {e}"),
                _ => log::error!("cannot use client key {k}: not a readable PEM private key"),
            }
        }
        (None, None) => {}
        _ => log::warn!("certfile and keyfile must be given together; no client certificate"),
    }
    if t.sources.is_empty() {
        log::info!("no CA file or system bundle found: trusting the compiled-in webpki roots");
    } else {
        log::info!("trusting for Ironic: {}", t.sources.join(", "));
    }
    t
}

impl Trust {
    /// The HTTP client for calls to Ironic (lookup, heartbeats, inspection):
    /// this trust, never a proxy (Ironic is reached directly, as IPA does),
    /// error statuses returned as responses, one overall `timeout`.
    pub fn ironic_agent(&self, insecure: bool, timeout: std::time::Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .proxy(None)
            .tls_config(self.tls_config(insecure))
            .build()
            .into()
    }

    /// The ureq TLS settings for this trust; `insecure` skips verification.
    pub fn tls_config(&self, insecure: bool) -> ureq::tls::TlsConfig {
        let mut b = ureq::tls::TlsConfig::builder().disable_verification(insecure);
        if !self.roots.is_empty() {
            let certs: Vec<ureq::tls::Certificate<'static>> = self
                .roots
                .iter()
                .map(|d| ureq::tls::Certificate::from_der(d).to_owned())
                .collect();
            b = b.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        if let Some((chain, key)) = &self.client
            && let Ok(key) = ureq::tls::PrivateKey::from_pem(key)
        {
            let chain: Vec<ureq::tls::Certificate<'static>> = chain
                .iter()
                .map(|d| ureq::tls::Certificate::from_der(d).to_owned())
                .collect();
            b = b.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_section_only_later_wins() {
        let mut m = BTreeMap::new();
        parse_default_section(
            "# c\n[DEFAULT]\ncafile = /a.crt\n insecure=false\n[other]\ncafile=/x\n",
            &mut m,
        );
        parse_default_section("[DEFAULT]\ninsecure = true\n", &mut m);
        assert_eq!(m["cafile"], "/a.crt");
        assert_eq!(m["insecure"], "true");
        assert_eq!(m.len(), 2);
    }
}
