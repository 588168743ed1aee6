//! The content-addressed download cache.
//!
//! Every input is stored once, under the SHA-256 of its bytes:
//! `DIR/blobs/sha256/<hex>`. A blob is written to a temporary file in the same
//! directory and renamed into place only after its hash matched, so a crash
//! or a bad download never leaves a wrong file under a good name. Blobs are
//! re-hashed every time they are used: disks and people corrupt files, and a
//! cache that is trusted blindly turns one bad sector into a bad image.
//!
//! Some inputs (signed `InRelease` files) have no hash known in advance; a
//! small ref file `DIR/refs/<sha256 of the URL>` remembers which blob a URL
//! last gave, which is what lets `--offline` start from the last indices
//! that were fetched (their signatures are checked again when used).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// An opened cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// What the cache holds for a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blob {
    /// Present and re-hashed just now: the bytes match.
    Valid(PathBuf),
    /// Present but its bytes hash to something else.
    Corrupt {
        path: PathBuf,
        actual: String,
    },
    Missing,
}

/// Why storing a blob failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// Reading the source (usually the network) failed.
    #[error("{0}")]
    Read(io::Error),
    /// Writing into the cache failed.
    #[error("cannot write into the cache at {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// The bytes did not hash to what was expected; nothing was stored.
    #[error("sha256 mismatch: expected {expected}, got {actual}")]
    Mismatch { expected: String, actual: String },
}

impl Cache {
    /// Opens (creating if needed) a cache rooted at `dir`.
    pub fn open(dir: &Path) -> io::Result<Cache> {
        fs::create_dir_all(dir.join("blobs/sha256"))?;
        fs::create_dir_all(dir.join("refs"))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    /// `$XDG_CACHE_HOME/ipa-build`, else `~/.cache/ipa-build`.
    pub fn default_dir() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from)
            && x.is_absolute()
        {
            return x.join("ipa-build");
        }
        match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h).join(".cache/ipa-build"),
            _ => std::env::temp_dir().join("ipa-build-cache"),
        }
    }

    /// The cache's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with this hash lives (whether or not it exists).
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(sha256)
    }

    /// Looks a blob up and re-hashes it.
    pub fn check(&self, sha256: &str) -> io::Result<Blob> {
        let path = self.blob_path(sha256);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Blob::Missing),
            Err(e) => return Err(e),
        };
        let actual = hash_reader(file)?;
        if actual == sha256 {
            Ok(Blob::Valid(path))
        } else {
            Ok(Blob::Corrupt { path, actual })
        }
    }

    /// Deletes a blob (a corrupted one, before downloading it again).
    pub fn remove(&self, sha256: &str) -> io::Result<()> {
        match fs::remove_file(self.blob_path(sha256)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Streams `src` into the cache. With `expected`, the blob is kept only if
    /// it hashes to that value. Returns the hash and the blob's path.
    pub fn insert(
        &self,
        src: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<(String, PathBuf), InsertError> {
        let dir = self.dir.join("blobs/sha256");
        let werr = |source| InsertError::Write {
            path: dir.clone(),
            source,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(werr)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(InsertError::Read(e)),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(werr)?;
        }
        let actual = hex::encode(hasher.finalize());
        if let Some(exp) = expected
            && exp != actual
        {
            return Err(InsertError::Mismatch {
                expected: exp.to_string(),
                actual,
            });
        }
        let path = dir.join(&actual);
        tmp.as_file().sync_all().map_err(werr)?;
        tmp.persist(&path).map_err(|e| werr(e.error))?;
        Ok((actual, path))
    }

    fn ref_path(&self, key: &str) -> PathBuf {
        self.dir
            .join("refs")
            .join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// Remembers that `key` (a URL) last resolved to blob `sha256`.
    pub fn set_ref(&self, key: &str, sha256: &str) -> io::Result<()> {
        let path = self.ref_path(key);
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.join("refs"))?;
        writeln!(tmp, "{sha256} {key}")?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The blob hash `key` last resolved to, if any.
    pub fn get_ref(&self, key: &str) -> io::Result<Option<String>> {
        match fs::read_to_string(self.ref_path(key)) {
            Ok(s) => Ok(s.split_whitespace().next().map(str::to_string)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// SHA-256 of everything `r` yields, as lowercase hex.
pub fn hash_reader(mut r: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn insert_check_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        assert_eq!(c.check(ABC).unwrap(), Blob::Missing);
        let (h, p) = c.insert(&mut &b"abc"[..], Some(ABC)).unwrap();
        assert_eq!(h, ABC);
        assert_eq!(c.check(ABC).unwrap(), Blob::Valid(p.clone()));
        fs::write(&p, b"abd").unwrap();
        assert!(matches!(c.check(ABC).unwrap(), Blob::Corrupt { .. }));
        c.remove(ABC).unwrap();
        assert_eq!(c.check(ABC).unwrap(), Blob::Missing);
    }

    #[test]
    fn mismatch_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let e = c.insert(&mut &b"abd"[..], Some(ABC)).unwrap_err();
        assert!(matches!(e, InsertError::Mismatch { .. }), "{e}");
        let left: Vec<_> = fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "temporary file left behind: {left:?}");
    }

    #[test]
    fn refs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        assert_eq!(c.get_ref("http://x/InRelease").unwrap(), None);
        c.set_ref("http://x/InRelease", ABC).unwrap();
        assert_eq!(
            c.get_ref("http://x/InRelease").unwrap().as_deref(),
            Some(ABC)
        );
    }
}
