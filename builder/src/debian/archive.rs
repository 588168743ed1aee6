//! The opened archive: every package of every source × suite × component,
//! loaded from indices whose signatures and hashes were checked.
//!
//! Indices go through the cache like everything else. Online, `InRelease`
//! is always downloaded again (it is small and tells us whether anything
//! changed); a `Packages` file whose signed hash is already in the cache is
//! not downloaded at all. Offline, the last verified `InRelease` of each
//! suite is found through its URL ref and its signature is checked again.

use std::collections::HashMap;
use std::path::PathBuf;

use super::DebianError;
use super::fetch::Transport;
use super::index::{self, Origin, Package};
use super::release::{self, Release};
use super::sources::Source;
use crate::cache::{Blob, Cache, InsertError};
use crate::report::Reporter;

/// What to open: the sources (usually [`super::host_sources`]) and the
/// Debian architecture (`amd64`).
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub sources: Vec<Source>,
    pub arch: String,
}

/// Index suffixes in order of preference (smallest download first).
const SUFFIXES: [&str; 3] = [".xz", ".gz", ""];

/// All packages available for one architecture.
#[derive(Debug)]
pub struct Archive {
    pub(super) arch: String,
    pub(super) offline: bool,
    pub(super) transport: Transport,
    pub(super) packages: Vec<Package>,
    /// Package name → indices into `packages`.
    pub(super) by_name: HashMap<String, Vec<usize>>,
    /// Virtual name → (providing package index, provided version if any).
    pub(super) providers: HashMap<String, Vec<(usize, Option<String>)>>,
    /// `Date:` of each verified `InRelease`, seconds since the epoch.
    pub(super) dates: Vec<i64>,
    /// Each verified `InRelease` with the source URI and suite it came from:
    /// the signed hashes of the other indices (`Contents-all`) read later.
    pub(super) releases: Vec<SignedRelease>,
}

/// One verified `InRelease` and where it came from.
#[derive(Debug, Clone)]
pub struct SignedRelease {
    pub uri: String,
    pub suite: String,
    pub release: Release,
}

impl Archive {
    /// Loads and verifies every index. Offline, only the cache is used.
    pub fn open(
        cfg: &ArchiveConfig,
        cache: &Cache,
        offline: bool,
        reporter: &Reporter,
    ) -> Result<Archive, DebianError> {
        let mut o = Opener {
            cfg,
            cache,
            offline,
            reporter,
            transport: Transport::new(),
            missing: Vec::new(),
        };
        let mut packages = Vec::new();
        let mut dates = Vec::new();
        let mut releases = Vec::new();
        for source in &cfg.sources {
            for suite in &source.suites {
                let Some(rel) = o.signed_release(source, suite)? else {
                    continue;
                };
                dates.extend(rel.date.as_deref().and_then(release::parse_date));
                for comp in &source.components {
                    packages.extend(o.component(source, suite, &rel, comp)?);
                }
                releases.push(SignedRelease {
                    uri: source.uri.clone(),
                    suite: suite.clone(),
                    release: rel,
                });
            }
        }
        if !o.missing.is_empty() {
            return Err(DebianError::OfflineMissing {
                cache: cache.dir().to_path_buf(),
                missing: o.missing,
            });
        }
        let mut archive = Archive::from_packages(packages, &cfg.arch, offline, o.transport);
        archive.dates = dates;
        archive.releases = releases;
        Ok(archive)
    }

    /// Builds the lookup tables (also used by tests with synthetic indices).
    pub fn from_packages(
        packages: Vec<Package>,
        arch: &str,
        offline: bool,
        transport: Transport,
    ) -> Archive {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<(usize, Option<String>)>> = HashMap::new();
        for (i, p) in packages.iter().enumerate() {
            by_name.entry(p.name.clone()).or_default().push(i);
            for prov in p
                .provides
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let (name, ver) = match prov.split_once('(') {
                    Some((n, v)) => {
                        let v = v.trim_end_matches(')').trim();
                        let v = v.strip_prefix('=').map(str::trim).unwrap_or(v);
                        (n.trim(), Some(v.to_string()))
                    }
                    None => (prov, None),
                };
                let name = name.split(':').next().unwrap_or(name);
                providers
                    .entry(name.to_string())
                    .or_default()
                    .push((i, ver));
            }
        }
        Archive {
            arch: arch.to_string(),
            offline,
            transport,
            packages,
            by_name,
            providers,
            dates: Vec::new(),
            releases: Vec::new(),
        }
    }

    /// Every stanza named `name`, across sources and suites, in index order.
    pub fn versions(&self, name: &str) -> Vec<&Package> {
        self.by_name
            .get(name)
            .map(|v| v.iter().map(|&i| &self.packages[i]).collect())
            .unwrap_or_default()
    }

    /// How many package stanzas were loaded.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// Whether no package was loaded.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// The newest `Date:` of the signed indices, in seconds since the epoch
    /// (0 if none had one). The same indices give the same value, which makes
    /// it a reproducible default for `SOURCE_DATE_EPOCH`.
    pub fn newest_date(&self) -> u64 {
        self.dates
            .iter()
            .copied()
            .max()
            .map_or(0, |d| u64::try_from(d).unwrap_or(0))
    }

    /// The architecture the archive was opened for.
    pub fn arch(&self) -> &str {
        &self.arch
    }
}

/// The state of one [`Archive::open`]: what it reads from and, offline,
/// what the cache turned out to lack (reported all at once at the end).
struct Opener<'a> {
    cfg: &'a ArchiveConfig,
    cache: &'a Cache,
    offline: bool,
    reporter: &'a Reporter,
    transport: Transport,
    missing: Vec<String>,
}

impl Opener<'_> {
    fn cache_err(&self, source: std::io::Error) -> DebianError {
        DebianError::Cache {
            cache: self.cache.dir().to_path_buf(),
            source,
        }
    }

    /// A suite's `InRelease`, signature checked and parsed; `None` when
    /// offline and not in the cache.
    fn signed_release(
        &mut self,
        source: &Source,
        suite: &str,
    ) -> Result<Option<Release>, DebianError> {
        let url = format!("{}/dists/{suite}/InRelease", source.uri);
        let path = if self.offline {
            match self.cached_release(&url)? {
                Some(p) => p,
                None => {
                    self.missing.push(format!("signed index {url}"));
                    return Ok(None);
                }
            }
        } else {
            self.transport
                .to_cache(&url, self.cache, None, None, None)?
        };
        let text = match release::verify(&path, &source.keyring, &url) {
            Ok(t) => t,
            Err(e) => {
                if !self.offline {
                    // Keep no unverified bytes around (best effort).
                    let _ = std::fs::remove_file(&path);
                }
                return Err(e);
            }
        };
        let rel = release::parse(&url, &text)?;
        if let Err(e) = rel.check_valid_until(release::now()) {
            if !self.offline {
                return Err(e);
            }
            // It was valid when fetched; offline builds rebuild from what was verified then.
            self.reporter.warn(format!(
                "{e}\n  (continuing: --offline uses the indices as last verified)"
            ));
        }
        if !self.offline
            && let Some(sha) = path.file_name().and_then(|n| n.to_str())
        {
            self.cache
                .set_ref(&url, sha)
                .map_err(|e| self.cache_err(e))?;
        }
        Ok(Some(rel))
    }

    /// The last verified `InRelease` of `url` in the cache.
    fn cached_release(&self, url: &str) -> Result<Option<PathBuf>, DebianError> {
        let blob = match self.cache.get_ref(url).map_err(|e| self.cache_err(e))? {
            Some(sha) => self.cache.check(&sha).map_err(|e| self.cache_err(e))?,
            None => Blob::Missing,
        };
        match blob {
            Blob::Valid(p) => Ok(Some(p)),
            Blob::Missing => Ok(None),
            Blob::Corrupt { path, .. } => Err(DebianError::Index {
                url: url.to_string(),
                msg: format!(
                    "the cached copy {} is corrupted; delete it and run once without --offline",
                    path.display()
                ),
            }),
        }
    }

    /// The packages of one component's `Packages` index (empty when offline
    /// and not cached).
    fn component(
        &mut self,
        source: &Source,
        suite: &str,
        rel: &Release,
        comp: &str,
    ) -> Result<Vec<Package>, DebianError> {
        let arch = &self.cfg.arch;
        let base = format!("{comp}/binary-{arch}/Packages");
        let Some((name, sha, size)) = SUFFIXES.iter().find_map(|s| {
            let name = format!("{base}{s}");
            rel.sha256.get(&name).map(|(h, n)| (name, h.clone(), *n))
        }) else {
            return Err(DebianError::Index {
                url: format!("{}/dists/{suite}/InRelease", source.uri),
                msg: format!(
                    "lists no {base}{{.xz,.gz,}}: component `{comp}` or architecture `{arch}` is not in suite `{suite}`"
                ),
            });
        };
        let idx_url = format!("{}/dists/{suite}/{name}", source.uri);
        let plain_url = format!("{}/dists/{suite}/{base}", source.uri);
        let Some(text) = self.index_text(rel, &base, &idx_url, &plain_url, &sha, size)? else {
            self.missing.push(format!("index {idx_url}"));
            return Ok(Vec::new());
        };
        let origin = Origin {
            url: &idx_url,
            source_uri: &source.uri,
            suite,
            component: comp,
        };
        let found = index::parse(&text, &origin, arch)?;
        self.reporter
            .info(format!("{idx_url}: {} packages", found.len()));
        Ok(found)
    }

    /// The decompressed text of an index. The decompressed index is cached
    /// too, under the hash `InRelease` gives for it: a warm open then skips
    /// xz (the slowest step).
    fn index_text(
        &self,
        rel: &Release,
        base: &str,
        idx_url: &str,
        plain_url: &str,
        sha: &str,
        size: u64,
    ) -> Result<Option<String>, DebianError> {
        let plain = rel.sha256.get(base).cloned();
        let plain_blob = match &plain {
            Some((psha, _)) => self.cache.check(psha).map_err(|e| self.cache_err(e))?,
            None => Blob::Missing,
        };
        if let Blob::Valid(p) = plain_blob {
            return index::decompress(&p, base).map(Some);
        }
        let Some(blob_path) = compressed_blob(
            self.cache,
            &self.transport,
            self.reporter,
            self.offline,
            idx_url,
            sha,
            size,
        )?
        else {
            return Ok(None);
        };
        let text = index::decompress(&blob_path, idx_url)?;
        if let Some((psha, _)) = &plain
            && *psha != sha
        {
            match self.cache.insert(&mut text.as_bytes(), Some(psha)) {
                Ok(_) => {}
                Err(InsertError::Mismatch { expected, actual }) => {
                    return Err(DebianError::HashMismatch {
                        url: plain_url.to_string(),
                        expected,
                        actual,
                    });
                }
                Err(InsertError::Write { path, source }) => {
                    return Err(DebianError::Cache {
                        cache: path,
                        source,
                    });
                }
                Err(InsertError::Read(e)) => return Err(self.cache_err(e)),
            }
        }
        Ok(Some(text))
    }
}

/// The compressed index blob with hash `sha`: from the cache (re-hashed),
/// else downloaded. `None` offline when it is not cached.
pub(super) fn compressed_blob(
    cache: &Cache,
    transport: &Transport,
    reporter: &Reporter,
    offline: bool,
    url: &str,
    sha: &str,
    size: u64,
) -> Result<Option<std::path::PathBuf>, DebianError> {
    let cache_err = |source| DebianError::Cache {
        cache: cache.dir().to_path_buf(),
        source,
    };
    Ok(Some(match cache.check(sha).map_err(cache_err)? {
        Blob::Valid(p) => p,
        Blob::Missing if offline => return Ok(None),
        Blob::Corrupt { path, .. } if offline => {
            return Err(DebianError::Index {
                url: url.to_string(),
                msg: format!(
                    "the cached copy {} is corrupted; delete it and run once without --offline",
                    path.display()
                ),
            });
        }
        Blob::Corrupt { path, .. } => {
            reporter.warn(format!(
                "cached {} is corrupted; downloading it again",
                path.display()
            ));
            cache.remove(sha).map_err(cache_err)?;
            transport.to_cache(url, cache, Some(sha), Some(size), None)?
        }
        Blob::Missing => transport.to_cache(url, cache, Some(sha), Some(size), None)?,
    }))
}
