//! Getting bytes: `http(s)://` through `ureq`, `file://` from disk (local
//! mirrors, tests), and the parallel, verified download of `.deb`s into the
//! cache.
//!
//! A download streams straight into the cache, hashing on the way; the blob
//! appears under its name only once the SHA-256 from the signed index
//! matched. Four worker threads are plenty: mirrors throttle per connection
//! far less than per host, and the machine has few cores to hash with.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::{Archive, DebianError, Package};
use crate::cache::{Blob, Cache, InsertError};
use crate::report::{Bar, Reporter};

/// How many downloads run at once.
const WORKERS: usize = 4;

/// Opens URLs of the schemes an APT source may use.
#[derive(Clone)]
pub struct Transport {
    agent: ureq::Agent,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Default for Transport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport {
    pub fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(900)))
            .user_agent(concat!("ipa-build/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Transport { agent }
    }

    /// Opens `url` for reading.
    pub fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DebianError> {
        let net = |msg: String| DebianError::Network {
            url: url.to_string(),
            msg,
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(net(
                    "file:// URLs need an absolute path (file:///srv/mirror)".into(),
                ));
            }
            let f = std::fs::File::open(path).map_err(|e| net(e.to_string()))?;
            return Ok(Box::new(io::BufReader::new(f)));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(net(
                "only http://, https:// and file:// sources are supported".into(),
            ));
        }
        let resp = self.agent.get(url).call().map_err(|e| match e {
            ureq::Error::StatusCode(code) => net(format!("the server answered HTTP {code}")),
            other => net(other.to_string()),
        })?;
        Ok(Box::new(resp.into_body().into_reader()))
    }

    /// Streams `url` into the cache, verifying `sha256`/`size` when given.
    pub fn to_cache(
        &self,
        url: &str,
        cache: &Cache,
        sha256: Option<&str>,
        size: Option<u64>,
        bar: Option<&Bar>,
    ) -> Result<PathBuf, DebianError> {
        let inner = self.open(url)?;
        let mut counting = Counting { inner, n: 0, bar };
        match cache.insert(&mut counting, sha256) {
            Ok((_, path)) => {
                if let Some(expected) = size
                    && expected != counting.n
                {
                    return Err(DebianError::SizeMismatch {
                        url: url.into(),
                        expected,
                        actual: counting.n,
                    });
                }
                Ok(path)
            }
            Err(InsertError::Read(e)) => Err(DebianError::Network {
                url: url.into(),
                msg: e.to_string(),
            }),
            Err(InsertError::Write { path, source }) => Err(DebianError::Cache {
                cache: path,
                source,
            }),
            Err(InsertError::Mismatch { expected, actual }) => match size {
                Some(s) if s != counting.n => Err(DebianError::SizeMismatch {
                    url: url.into(),
                    expected: s,
                    actual: counting.n,
                }),
                _ => Err(DebianError::HashMismatch {
                    url: url.into(),
                    expected,
                    actual,
                }),
            },
        }
    }
}

struct Counting<'a, R> {
    inner: R,
    n: u64,
    bar: Option<&'a Bar>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        if let Some(b) = self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
}

impl Archive {
    /// Brings every package's `.deb` into the cache and returns the verified
    /// blob paths in the same order. Cached blobs are re-hashed; a corrupted
    /// one is downloaded again online and is an error offline.
    pub fn fetch(
        &self,
        pkgs: &[Package],
        cache: &Cache,
        reporter: &Reporter,
    ) -> Result<Vec<PathBuf>, DebianError> {
        let cache_err = |source| DebianError::Cache {
            cache: cache.dir().to_path_buf(),
            source,
        };
        let mut paths: Vec<Option<PathBuf>> = vec![None; pkgs.len()];
        let mut todo = Vec::new();
        let mut missing = Vec::new();
        for (i, p) in pkgs.iter().enumerate() {
            match cache.check(&p.sha256).map_err(cache_err)? {
                Blob::Valid(path) => paths[i] = Some(path),
                Blob::Corrupt { path, actual } => {
                    if self.offline {
                        return Err(DebianError::CorruptOffline {
                            package: format!("{} {}", p.name, p.version),
                            path,
                            expected: p.sha256.clone(),
                            actual,
                        });
                    }
                    reporter.warn(format!(
                        "cached {} {} at {} is corrupted (sha256 {actual}); downloading it again",
                        p.name,
                        p.version,
                        path.display()
                    ));
                    cache.remove(&p.sha256).map_err(cache_err)?;
                    todo.push(i);
                }
                Blob::Missing if self.offline => {
                    missing.push(format!("{} {} ({})", p.name, p.version, p.url()))
                }
                Blob::Missing => todo.push(i),
            }
        }
        if !missing.is_empty() {
            return Err(DebianError::OfflineMissing {
                cache: cache.dir().to_path_buf(),
                missing,
            });
        }
        if !todo.is_empty() {
            let total: u64 = todo.iter().map(|&i| pkgs[i].size).sum();
            let bar = reporter.bytes(total, format!("{} packages", todo.len()));
            let next = AtomicUsize::new(0);
            let failed = AtomicBool::new(false);
            let results = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for _ in 0..WORKERS.min(todo.len()) {
                    s.spawn(|| {
                        while !failed.load(Ordering::Relaxed) {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&i) = todo.get(k) else { break };
                            let p = &pkgs[i];
                            let r = self.transport.to_cache(
                                &p.url(),
                                cache,
                                Some(&p.sha256),
                                Some(p.size),
                                Some(&bar),
                            );
                            if r.is_err() {
                                failed.store(true, Ordering::Relaxed);
                            }
                            if let Ok(mut v) = results.lock() {
                                v.push((i, r));
                            }
                        }
                    });
                }
            });
            bar.finish();
            let mut results = results.into_inner().unwrap_or_default();
            results.sort_by_key(|(i, _)| *i);
            for (i, r) in results {
                paths[i] = Some(r?);
            }
        }
        paths
            .into_iter()
            .zip(pkgs)
            .map(|(p, pkg)| {
                p.ok_or_else(|| DebianError::Network {
                    url: pkg.url(),
                    msg: "download did not complete".into(),
                })
            })
            .collect()
    }
}
