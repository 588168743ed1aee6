//! What the image must hash to, and the hasher that checks it while the
//! bytes stream past. As IPA: `os_hash_algo`/`os_hash_value` first, else
//! `checksum` (the algorithm from its length); either may be a URL of a
//! checksums file (`sha256sum` or BSD style). sha256 and sha512; md5 only
//! when Ironic's lookup said `agent_md5_checksum_enable`, and a clear
//! refusal otherwise.

use super::DeployError;
use serde_json::{Map, Value};
use sha2::Digest;

/// The supported algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
    /// MD5, only where Ironic allows it.
    Md5,
}

impl Algo {
    fn from_name(name: &str) -> Result<Algo, DeployError> {
        match name.trim().to_lowercase().as_str() {
            "sha256" => Ok(Algo::Sha256),
            "sha512" => Ok(Algo::Sha512),
            "md5" => Ok(Algo::Md5),
            other => Err(DeployError::InvalidParams(format!(
                "image hash algorithm {other:?} is not supported; use sha256 or sha512"
            ))),
        }
    }

    /// From the length of a hex digest.
    fn from_len(hex: &str) -> Result<Algo, DeployError> {
        match hex.len() {
            64 => Ok(Algo::Sha256),
            128 => Ok(Algo::Sha512),
            32 => Ok(Algo::Md5),
            n => Err(DeployError::InvalidParams(format!(
                "cannot tell the checksum algorithm from a {n}-character value; set os_hash_algo"
            ))),
        }
    }
}

fn md5_refused() -> DeployError {
    DeployError::InvalidParams(
        "md5 image checksums are disabled by Ironic ([agent]allow_md5_checksum); give it a \
         sha256 or sha512 (image_os_hash_algo/image_os_hash_value, or a 64/128-character \
         image_checksum)"
            .into(),
    )
}

/// The expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Algorithm.
    pub algo: Algo,
    /// Lowercase hex digest.
    pub hex: String,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The expected digest of the image described by `info`; `fetch` downloads
/// a checksums file when a value is a URL; md5 only with `md5_allowed`.
pub fn expected(
    info: &Map<String, Value>,
    md5_allowed: bool,
    fetch: impl Fn(&str) -> Result<String, DeployError>,
) -> Result<Expected, DeployError> {
    let s = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    let image_url = info["urls"][0].as_str().unwrap_or_default();
    let resolve = |v: &str| -> Result<String, DeployError> {
        if is_url(v) {
            parse_checksum_file(&fetch(v)?, image_url)
        } else {
            Ok(v.trim().to_lowercase())
        }
    };
    let (algo, hex) = match (s("os_hash_algo"), s("os_hash_value"), s("checksum")) {
        (Some(algo), Some(value), _) => (Some(Algo::from_name(algo)?), resolve(value)?),
        (_, _, Some(checksum)) => (None, resolve(checksum)?),
        _ => {
            return Err(DeployError::InvalidParams(
                "Image checksum is not available, either the 'checksum' field or the \
                 'os_hash_algo' and 'os_hash_value' fields pair must be set for image verification."
                    .into(),
            ));
        }
    };
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DeployError::InvalidParams(format!(
            "image checksum {hex:?} is not hexadecimal"
        )));
    }
    let by_len = Algo::from_len(&hex)?;
    let algo = algo.unwrap_or(by_len);
    if algo != by_len {
        return Err(DeployError::InvalidParams(format!(
            "os_hash_algo is {algo:?} but the value has {} characters",
            hex.len()
        )));
    }
    if algo == Algo::Md5 && !md5_allowed {
        return Err(md5_refused());
    }
    Ok(Expected { algo, hex })
}

/// The digest for the image's file name in a checksums file (a file with
/// only a digest is that digest).
pub fn parse_checksum_file(text: &str, image_url: &str) -> Result<String, DeployError> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let is_digest =
        |t: &str| matches!(t.len(), 32 | 64 | 128) && t.bytes().all(|b| b.is_ascii_hexdigit());
    if let [only] = lines.as_slice()
        && is_digest(only)
    {
        return Ok(only.to_lowercase());
    }
    let path = image_url.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    for line in lines.iter().filter(|l| !l.starts_with('#')) {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let names_it = tokens
            .iter()
            .any(|t| *t == name || t.strip_prefix('*') == Some(name) || *t == format!("({name})"));
        if names_it && let Some(d) = tokens.iter().find(|t| is_digest(t)) {
            return Ok(d.to_lowercase());
        }
    }
    Err(DeployError::Download(format!(
        "the checksums file has no digest for {name:?}"
    )))
}

/// A running digest.
pub enum Hasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
    /// MD5 state.
    Md5(md5::Md5),
}

impl Hasher {
    /// A fresh hasher for `algo`.
    pub fn new(algo: Algo) -> Hasher {
        match algo {
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algo::Md5 => Hasher::Md5(md5::Md5::new()),
        }
    }
    /// Adds bytes.
    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
            Hasher::Md5(h) => h.update(b),
        }
    }
    /// The lowercase hex digest.
    pub fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn info(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn no_fetch(_: &str) -> Result<String, DeployError> {
        panic!("no fetch expected")
    }

    #[test]
    fn os_hash_first_then_checksum_by_length() {
        let e = expected(&info(json!({"urls": ["http://x/i.img"], "os_hash_algo": "sha256", "os_hash_value": SHA256_ABC.to_uppercase(), "checksum": "x"})),
            false,
            no_fetch,
        )
        .unwrap();
        assert_eq!(
            e,
            Expected {
                algo: Algo::Sha256,
                hex: SHA256_ABC.into()
            }
        );
        let e = expected(
            &info(json!({"urls": ["u"], "checksum": "a".repeat(128)})),
            false,
            no_fetch,
        )
        .unwrap();
        assert_eq!(e.algo, Algo::Sha512);
        let mut h = Hasher::new(Algo::Sha256);
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.hex(), SHA256_ABC);
    }

    #[test]
    fn md5_only_where_allowed_and_missing_checksums_are_refused_clearly() {
        let md5 = info(json!({"urls": ["u"], "checksum": "900150983CD24FB0D6963F7D28E17F72"}));
        let e = expected(&md5, true, no_fetch).unwrap();
        assert_eq!(e.algo, Algo::Md5);
        let mut h = Hasher::new(Algo::Md5);
        h.update(b"abc");
        assert_eq!(h.hex(), e.hex);
        let e = expected(
            &info(json!({"urls": ["u"], "checksum": "a".repeat(32)})),
            false,
            no_fetch,
        )
        .unwrap_err();
        assert!(e.to_string().contains("md5"), "{e}");
        let e = expected(
            &info(json!({"urls": ["u"], "os_hash_algo": "md5", "os_hash_value": "b".repeat(32)})),
            false,
            no_fetch,
        )
        .unwrap_err();
        assert!(e.to_string().contains("md5"), "{e}");
        let e = expected(&info(json!({"urls": ["u"]})), false, no_fetch).unwrap_err();
        assert!(e.to_string().contains("checksum is not available"), "{e}");
        let e = expected(
            &info(json!({"urls": ["u"], "os_hash_algo": "sha512", "os_hash_value": SHA256_ABC})),
            false,
            no_fetch,
        )
        .unwrap_err();
        assert!(e.to_string().contains("characters"), "{e}");
    }

    #[test]
    fn checksum_urls_and_file_styles() {
        let file = format!(
            "# c\n{} other.img\n{SHA256_ABC} *disk.qcow2\n",
            "b".repeat(64)
        );
        let e = expected(
            &info(
                json!({"urls": ["http://h/p/disk.qcow2?x=1"], "checksum": "http://h/SHA256SUMS"}),
            ),
            false,
            |u| {
                assert_eq!(u, "http://h/SHA256SUMS");
                Ok(file.clone())
            },
        )
        .unwrap();
        assert_eq!(e.hex, SHA256_ABC);
        let bsd = format!("SHA256 (disk.raw) = {SHA256_ABC}\n");
        assert_eq!(
            parse_checksum_file(&bsd, "http://h/disk.raw").unwrap(),
            SHA256_ABC
        );
        assert_eq!(
            parse_checksum_file(&format!("{SHA256_ABC}\n"), "http://h/x").unwrap(),
            SHA256_ABC
        );
        assert!(parse_checksum_file(&bsd, "http://h/other.raw").is_err());
    }
}
