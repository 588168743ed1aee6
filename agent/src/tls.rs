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
    let alg = if curve == "p256" {
        &rcgen::PKCS_ECDSA_P256_SHA256
    } else {
        &rcgen::PKCS_ECDSA_P384_SHA384
    };
    let key = KeyPair::generate_for(alg)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname(root));
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::IpAddress(ip)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::seconds(3600);
    params.not_after = now + time::Duration::days(30);
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
        "generated a self-signed TLS certificate for {ip} ({}), valid 30 days: {}",
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

/// The rustls server configuration for the certificate.
pub fn server_config(
    cert: &AutoCert,
    min_version: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_der.clone().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone().into()], key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
