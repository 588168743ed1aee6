//! Auto-TLS: a self-signed certificate for the advertised IP, served over
//! HTTPS and sent to Ironic as `agent_verify_ca`, so the conductor (Python
//! requests + OpenSSL) can verify the agent with the PEM as its CA bundle.
//!
//! The certificate is a leaf that is its own issuer: CN = hostname, SAN =
//! the IP only, `basicConstraints CA:FALSE` and `keyUsage digitalSignature`
//! (critical), `extendedKeyUsage serverAuth`. OpenSSL accepts a self-signed
//! leaf as its own trust anchor; a CA:TRUE certificate would be refused as
//! an end-entity by webpki-based clients.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How far in the past the certificate's validity starts. IPA uses one
/// hour; a node clock kept in local time (up to 14 h ahead) or a day or
/// two fast then gives a certificate the conductor sees as "not yet
/// valid". A week covers those without NTP.
pub const NOT_BEFORE_SLACK: time::Duration = time::Duration::days(7);
/// How long the certificate is valid. IPA uses 30 days; a node clock that
/// is behind, or a rescued ramdisk that runs for months, would see it
/// expire. The conductor pins this exact certificate (it is sent as
/// `agent_verify_ca`), so a long life gives nothing away.
pub const VALIDITY: time::Duration = time::Duration::days(3650);

/// Errors while creating or loading the certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the parameters or failed to sign.
    #[error("cannot generate the TLS certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing `agent.crt`/`agent.key` failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// rustls refused the key or certificate.
    #[error("cannot configure TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The generated certificate.
pub struct AutoCert {
    /// PEM text of the certificate (`agent_verify_ca`).
    pub pem: String,
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// PKCS#8 DER of the key.
    pub key_der: Vec<u8>,
    /// `<root>/run/ironic-python-agent/agent.crt`.
    pub cert_path: PathBuf,
}

fn hostname(root: &Path) -> String {
    for f in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(h) = std::fs::read_to_string(crate::fsutil::under(root, f)) {
            let h = h.trim();
            if !h.is_empty() {
                return h.to_string();
            }
        }
    }
    "ironic-python-agent".to_string()
}

/// Generates the key and certificate for `ip` and writes them (key 0600)
/// under `<root>/run/ironic-python-agent/`.
pub fn generate(root: &Path, ip: IpAddr, curve: &str) -> Result<AutoCert, TlsError> {
    certify(root, ip, curve, new_key(curve)?)
}

/// A fresh key pair on `curve` (`p256`, else P-384). Separate from
/// [`certify`] so the agent makes it while lookup still waits for the
/// network: the IP the certificate names is known only after that.
pub fn new_key(curve: &str) -> Result<KeyPair, TlsError> {
    let alg = if curve == "p256" {
        &rcgen::PKCS_ECDSA_P256_SHA256
    } else {
        &rcgen::PKCS_ECDSA_P384_SHA384
    };
    Ok(KeyPair::generate_for(alg)?)
}

/// Makes the certificate for `ip` with `key` (from [`new_key`] on the same
/// `curve`) and writes both (key 0600) under
/// `<root>/run/ironic-python-agent/`.
pub fn certify(root: &Path, ip: IpAddr, curve: &str, key: KeyPair) -> Result<AutoCert, TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname(root));
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::IpAddress(ip)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::from_unix_timestamp(crate::timing::epoch_now() as i64)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    params.not_before = now - NOT_BEFORE_SLACK;
    params.not_after = now + VALIDITY;
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();

    let dir = crate::fsutil::under(root, "/run/ironic-python-agent");
    let wr = |path: PathBuf, data: &[u8], mode: u32| -> Result<PathBuf, TlsError> {
        crate::fsutil::write_atomic(&path, data, mode).map_err(|source| TlsError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|source| TlsError::Write {
            path: dir.clone(),
            source,
        })?;
    let cert_path = wr(dir.join("agent.crt"), pem.as_bytes(), 0o644)?;
    wr(dir.join("agent.key"), key.serialize_pem().as_bytes(), 0o600)?;
    log::info!(
        "generated a self-signed TLS certificate for {ip} ({}), valid from 7 days ago for 10 years: {}",
        curve.to_uppercase(),
        cert_path.display()
    );
    Ok(AutoCert {
        pem,
        der: cert.der().to_vec(),
        key_der: key.serialize_der(),
        cert_path,
    })
}

/// What Ironic and the operator allow on the agent's HTTPS: the minimum
/// TLS version and the cipher suites (`ipa-tls-min-version`,
/// `ipa-tls-cipher-suites`, then the lookup reply's `config.tls_min_version`
/// and `config.tls_cipher_suites`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicy {
    /// `1.2` or `1.3`.
    pub min_version: String,
    /// Suite names, IANA (`TLS_AES_256_GCM_SHA384`) or OpenSSL
    /// (`ECDHE-ECDSA-AES256-GCM-SHA384`); `None` = the provider's defaults.
    pub cipher_suites: Option<Vec<String>>,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        TlsPolicy {
            min_version: "1.2".into(),
            cipher_suites: None,
        }
    }
}

/// Splits a cipher list on `:`, `,` or whitespace (OpenSSL and IPA forms).
pub fn split_suites(s: &str) -> Vec<String> {
    s.split([':', ',', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl TlsPolicy {
    /// Applies the lookup reply's TLS settings. Ironic's minimum version
    /// wins only when it is stricter (a lookup can never downgrade what the
    /// operator asked for); its cipher list replaces ours.
    pub fn apply_lookup(&mut self, config: &serde_json::Value) {
        match config.get("tls_min_version").and_then(|v| v.as_str()) {
            Some(v @ ("1.2" | "1.3")) if v > self.min_version.as_str() => {
                log::info!("Ironic asks for TLS {v} or newer");
                self.min_version = v.to_string();
            }
            Some("1.2" | "1.3") => {}
            Some(v) => {
                log::warn!("lookup tls_min_version {v:?} is not supported (1.2, 1.3); ignored")
            }
            None => {}
        }
        let suites = match config.get("tls_cipher_suites") {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(split_suites(s)),
            Some(serde_json::Value::Array(a)) => Some(
                a.iter()
                    .filter_map(|x| x.as_str())
                    .flat_map(split_suites)
                    .collect(),
            ),
            _ => None,
        };
        if let Some(s) = suites.filter(|s| !s.is_empty()) {
            log::info!("Ironic restricts the TLS cipher suites to {}", s.join(":"));
            self.cipher_suites = Some(s);
        }
    }
}

/// OpenSSL's names for the suites rustls offers, mapped to IANA's.
const OPENSSL_NAMES: &[(&str, &str)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// The IANA name without its `TLS_`/`TLS13_` prefix, upper case.
fn suite_key(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    let iana = OPENSSL_NAMES
        .iter()
        .find(|(o, _)| *o == upper)
        .map(|(_, i)| i.to_string())
        .unwrap_or_else(|| upper.replace('-', "_"));
    iana.trim_start_matches("TLS13_")
        .trim_start_matches("TLS_")
        .to_string()
}

/// The provider's suites named in `names`, in the provider's order, and
/// the names that matched nothing.
pub fn select_suites(
    available: &[rustls::SupportedCipherSuite],
    names: &[String],
) -> (Vec<rustls::SupportedCipherSuite>, Vec<String>) {
    let wanted: Vec<String> = names.iter().map(|n| suite_key(n)).collect();
    let chosen = available
        .iter()
        .filter(|s| {
            let key = suite_key(s.suite().as_str().unwrap_or_default());
            wanted.contains(&key)
        })
        .copied()
        .collect();
    let unknown = names
        .iter()
        .filter(|n| {
            let key = suite_key(n);
            !available
                .iter()
                .any(|s| suite_key(s.suite().as_str().unwrap_or_default()) == key)
        })
        .cloned()
        .collect();
    (chosen, unknown)
}

/// The rustls server configuration for the certificate under `policy`. A
/// cipher list that leaves nothing usable is logged and the defaults kept:
/// an agent that cannot be reached would only fail the rescue later.
pub fn server_config(
    cert: &AutoCert,
    policy: &TlsPolicy,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &policy.cipher_suites {
        let (chosen, unknown) = select_suites(&provider.cipher_suites, names);
        if !unknown.is_empty() {
            log::warn!(
                "unknown or unsupported TLS cipher suites ignored: {}",
                unknown.join(":")
            );
        }
        if chosen.is_empty() {
            log::warn!(
                "no supported TLS cipher suite in {:?}; using the defaults",
                names.join(":")
            );
        } else {
            provider.cipher_suites = chosen;
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if policy.min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_der.clone().into());
    let build = |provider: rustls::crypto::CryptoProvider| {
        rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der.clone().into()], key.clone_key())
    };
    let mut cfg = match build(provider) {
        Ok(c) => c,
        Err(e) => {
            log::warn!(
                "the TLS cipher suites do not fit TLS {}+ ({e}); using the defaults",
                policy.min_version
            );
            build(rustls::crypto::ring::default_provider())?
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names_in_both_spellings() {
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        let names = split_suites("TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES256-GCM-SHA384,bogus");
        let (chosen, unknown) = select_suites(&all, &names);
        let got: Vec<&str> = chosen
            .iter()
            .map(|s| s.suite().as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            got,
            vec![
                "TLS13_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
            ]
        );
        assert_eq!(unknown, vec!["bogus"]);
    }

    #[test]
    fn lookup_can_tighten_but_not_loosen() {
        let mut p = TlsPolicy::default();
        p.apply_lookup(&serde_json::json!({"tls_min_version": "1.3", "tls_cipher_suites": ["TLS_AES_256_GCM_SHA384"]}));
        assert_eq!(p.min_version, "1.3");
        assert_eq!(
            p.cipher_suites,
            Some(vec!["TLS_AES_256_GCM_SHA384".to_string()])
        );
        p.apply_lookup(&serde_json::json!({"tls_min_version": "1.2"}));
        assert_eq!(p.min_version, "1.3");
    }

    #[test]
    fn a_key_made_early_is_the_one_certified_and_written() {
        let root = tempfile::tempdir().unwrap();
        let key = new_key("p256").unwrap();
        let public = key.public_key_raw().to_vec();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let cert = certify(root.path(), ip, "p256", key).unwrap();
        // The certificate carries the early key's public half...
        assert!(
            cert.der
                .windows(public.len())
                .any(|w| w == public.as_slice()),
            "public key not in the certificate"
        );
        // ...and the key file is that key.
        let written =
            std::fs::read_to_string(root.path().join("run/ironic-python-agent/agent.key")).unwrap();
        let reread = KeyPair::from_pem(&written).unwrap();
        assert_eq!(reread.public_key_raw(), public.as_slice());
        assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
