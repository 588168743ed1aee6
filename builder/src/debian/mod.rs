//! Stage 3 for Debian packages: signed indices, dependency closure, verified
//! downloads, and unpacking `.deb` data archives into the staging tree.
//!
//! The flow, and the module that owns each step:
//!
//! 1. [`sources`]: where the archive is (the host's APT sources, never a
//!    hard-coded mirror);
//! 2. [`release`]: `InRelease` checked with `gpgv` against the source's
//!    keyring, its SHA-256 list and `Valid-Until`;
//! 3. [`index`]: `Packages` indices, verified against `InRelease`, parsed;
//! 4. [`archive`]: [`Archive::open`] ties 1-3 together through the cache,
//!    so `--offline` can start from the last verified indices;
//! 5. [`version`] and [`resolve`]: dpkg version order and the dependency
//!    closure of the packages a profile names;
//! 6. [`fetch`]: parallel downloads into the cache, each verified;
//! 7. [`deb`]: `.deb` data archives unpacked into a [`crate::stage::tree::Tree`].
//!
//! Trust flows in one direction: the keyring signs `InRelease`, `InRelease`
//! pins the hash of `Packages`, `Packages` pins the hash of every `.deb`.
//! Nothing is used before the link above it has been checked.

pub mod arch;
pub mod archive;
pub mod contents;
pub mod deb;
pub mod fetch;
pub mod index;
pub mod release;
pub mod resolve;
pub mod sources;
pub mod suites;
pub mod version;

use std::io;
use std::path::{Path, PathBuf};

pub use arch::{Arch, ArchError};
pub use archive::{Archive, ArchiveConfig};
pub use index::Package;
pub use sources::{Source, host_sources};

/// Everything that can go wrong while getting Debian packages. Each message
/// names the file, URL or package involved and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("{}:{line}: {msg}", path.display())]
    Sources {
        path: PathBuf,
        line: usize,
        msg: String,
    },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error(
        "the profile names Debian release {release}, but no apt source is a Debian archive \
         to take it from ({listed})\n  pass --mirror URL (e.g. http://deb.debian.org/debian), \
         or give the profile debian.sources"
    )]
    NoDebianSource { release: String, listed: String },

    #[error(
        "cannot download {url}: {msg}\n  check the network and the mirror (pass --mirror URL to use another one), \
         or build from the cache with --offline"
    )]
    Network { url: String, msg: String },

    #[error("cannot run gpgv to check {url}: {msg}\n  install it with `apt-get install gpgv`")]
    Gpgv { url: String, msg: String },

    #[error(
        "the signature of {url} does not verify with keyring {}:\n{gpgv}\n  the index was not used; \
         check the mirror, or the keyring named by Signed-By in the apt source",
        keyring.display()
    )]
    BadSignature {
        url: String,
        keyring: PathBuf,
        gpgv: String,
    },

    #[error(
        "{url} expired: Valid-Until is {valid_until} but the clock says {now}\n  the mirror serves stale \
         (possibly replayed) indices: use an up-to-date mirror (--mirror URL), or check the system clock"
    )]
    Expired {
        url: String,
        valid_until: String,
        now: String,
    },

    #[error("{url}: {msg}")]
    Index { url: String, msg: String },

    #[error(
        "{url} does not match the hash in its signed index: expected sha256 {expected}, got {actual}\n  the \
         mirror is inconsistent (mid-sync?) or tampered with; retry later or use another mirror (--mirror URL)"
    )]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },

    #[error(
        "{url}: the index says {expected} bytes, the download has {actual}\n  retry, or use another mirror (--mirror URL)"
    )]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },

    #[error(
        "unknown package `{name}`{}{}",
        chain_text(chain),
        suggest_text(suggestions)
    )]
    UnknownPackage {
        name: String,
        chain: Vec<String>,
        suggestions: Vec<String>,
    },

    #[error("cannot satisfy `{relation}`{}: {msg}", chain_text(chain))]
    Unsatisfiable {
        relation: String,
        chain: Vec<String>,
        msg: String,
    },

    #[error(
        "the cached .deb of {package} is corrupted ({}: sha256 {actual}, expected {expected}) and --offline \
         forbids downloading it again\n  delete that file and run once without --offline",
        path.display()
    )]
    CorruptOffline {
        package: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error(
        "--offline, but the cache at {} lacks:\n  {}\n  run the same build once without --offline to fill it",
        cache.display(),
        missing.join("\n  ")
    )]
    OfflineMissing {
        cache: PathBuf,
        missing: Vec<String>,
    },

    #[error("cache at {}: {source}", cache.display())]
    Cache { cache: PathBuf, source: io::Error },

    #[error("{}: {msg}", deb.display())]
    Deb { deb: PathBuf, msg: String },
}

impl DebianError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        DebianError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn chain_text(chain: &[String]) -> String {
    if chain.is_empty() {
        String::new()
    } else {
        format!(" (needed by {})", chain.join(" -> "))
    }
}

fn suggest_text(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", s.join(", "))
    }
}
