//! Which Debian package ships a firmware file.
//!
//! A module names its firmware by path under `/lib/firmware`
//! (`bnx2x/bnx2x-e2-7.13.21.0.fw`); the archive says which package holds
//! that path in two ways, and we use the cheaper one per component:
//!
//! - `non-free-firmware`: its signed `Contents-all` index (firmware
//!   packages are `Architecture: all`), 30 KiB compressed, listing every
//!   file with its package. Its hash comes from the `InRelease` already
//!   verified, like any `Packages` index.
//! - `main`: its `Contents-all` is 40 MiB, so instead the few free firmware
//!   packages (`firmware-*` in the component's `Packages`, whose hashes the
//!   signed index pins) are fetched and their file lists read.
//!
//! The result maps a firmware path, as a module names it, to the package
//! and component, and remembers whether the package ships it compressed
//! (`.xz`, `.zst`): the kernel's loader tries those suffixes itself.

use std::collections::BTreeMap;
use std::path::Path;

use super::archive::compressed_blob;
use super::{Archive, DebianError, Package, deb, index};
use crate::cache::Cache;
use crate::report::Reporter;
use crate::stage::Tree;

/// Where each firmware file can come from.
#[derive(Debug, Clone, Default)]
pub struct FirmwareIndex {
    /// Path under `lib/firmware/` as shipped (maybe `.xz`/`.zst`) → package name.
    files: BTreeMap<String, String>,
    /// Package name → the package stanza (its component and hash).
    packages: BTreeMap<String, Package>,
}

/// One firmware file found in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareSource {
    /// The path under `lib/firmware/` the package ships (`x.fw` or `x.fw.xz`).
    pub shipped: String,
    pub package: Package,
}

/// `usr/lib/firmware/a/b.fw` or `lib/firmware/a/b.fw` → `a/b.fw`.
pub fn firmware_path(path: &str) -> Option<&str> {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    p.strip_prefix("usr/lib/firmware/")
        .or_else(|| p.strip_prefix("lib/firmware/"))
}

impl FirmwareIndex {
    /// The package shipping `name` (as a module names it), plain or compressed.
    pub fn find(&self, name: &str) -> Option<FirmwareSource> {
        ["", ".zst", ".xz"].iter().find_map(|ext| {
            let shipped = format!("{name}{ext}");
            let pkg = self.files.get(&shipped)?;
            Some(FirmwareSource {
                shipped,
                package: self.packages.get(pkg)?.clone(),
            })
        })
    }

    /// How many firmware files the index knows.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the index knows no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Adds the lines of a `Contents` index: `path   section/pkg[,section/pkg]`.
    /// Only firmware paths are kept; a file several packages ship goes to
    /// the first, by name, so the choice does not depend on index order.
    fn add_contents(&mut self, text: &str, archive: &Archive) {
        for line in text.lines() {
            let Some((path, owners)) = line.rsplit_once(|c: char| c.is_whitespace()) else {
                continue;
            };
            let Some(fw) = firmware_path(path.trim()) else {
                continue;
            };
            let mut names: Vec<&str> = owners
                .split(',')
                .filter_map(|o| o.rsplit('/').next())
                .collect();
            names.sort();
            for name in names {
                if let Some(pkg) = newest(archive, name) {
                    self.packages.entry(name.to_string()).or_insert(pkg);
                    self.files
                        .entry(fw.to_string())
                        .or_insert_with(|| name.to_string());
                    break;
                }
            }
        }
    }
}

/// The newest stanza of `name` in the archive (`None` when it has none).
fn newest(archive: &Archive, name: &str) -> Option<Package> {
    let mut v = archive.versions(name);
    v.sort_by(|a, b| super::version::compare(&a.version, &b.version));
    v.pop().cloned()
}

impl Archive {
    /// The firmware files of `components` (`main`, `non-free-firmware`).
    pub fn firmware_index(
        &self,
        components: &[&str],
        cache: &Cache,
        reporter: &Reporter,
    ) -> Result<FirmwareIndex, DebianError> {
        let mut index = FirmwareIndex::default();
        for comp in components {
            if *comp == "main" {
                self.free_firmware(&mut index, cache, reporter)?;
            } else {
                self.contents(&mut index, comp, cache, reporter)?;
            }
        }
        Ok(index)
    }

    /// Reads `<comp>/Contents-all` of every suite that lists it.
    fn contents(
        &self,
        index: &mut FirmwareIndex,
        comp: &str,
        cache: &Cache,
        reporter: &Reporter,
    ) -> Result<(), DebianError> {
        let mut found = false;
        for r in &self.releases {
            let base = format!("{comp}/Contents-all");
            let Some((name, sha, size)) = [".gz", ".xz", ""].iter().find_map(|s| {
                let name = format!("{base}{s}");
                r.release
                    .sha256
                    .get(&name)
                    .map(|(h, n)| (name, h.clone(), *n))
            }) else {
                continue;
            };
            if size <= 20 {
                // An empty index (a suite with no firmware updates).
                found = true;
                continue;
            }
            let url = format!("{}/dists/{}/{name}", r.uri, r.suite);
            let Some(blob) = compressed_blob(
                cache,
                &self.transport,
                reporter,
                self.offline,
                &url,
                &sha,
                size,
            )?
            else {
                return Err(DebianError::OfflineMissing {
                    cache: cache.dir().to_path_buf(),
                    missing: vec![format!("index {url}")],
                });
            };
            let text = index::decompress(&blob, &url)?;
            index.add_contents(&text, self);
            reporter.info(format!("{url}: firmware file list"));
            found = true;
        }
        if !found {
            return Err(DebianError::Index {
                url: format!("{comp}/Contents-all"),
                msg: format!(
                    "no suite's InRelease lists {comp}/Contents-all; is the `{comp}` component in the sources?"
                ),
            });
        }
        Ok(())
    }

    /// Lists the files of `main`'s `firmware-*` packages (small, and the
    /// component's own Contents index is 40 MiB).
    fn free_firmware(
        &self,
        index: &mut FirmwareIndex,
        cache: &Cache,
        reporter: &Reporter,
    ) -> Result<(), DebianError> {
        let mut names: Vec<&str> = self
            .by_name
            .keys()
            .map(String::as_str)
            .filter(|n| n.starts_with("firmware-") && !n.ends_with("-doc"))
            .collect();
        names.sort();
        let pkgs: Vec<Package> = names
            .iter()
            .filter_map(|n| newest(self, n))
            .filter(|p| p.component == "main")
            .collect();
        let debs = self.fetch(&pkgs, cache, reporter)?;
        let work = tempfile::tempdir().map_err(|e| DebianError::io(Path::new("/tmp"), e))?;
        for (pkg, deb_path) in pkgs.iter().zip(&debs) {
            let dir = work.path().join(&pkg.name);
            std::fs::create_dir_all(&dir).map_err(|e| DebianError::io(&dir, e))?;
            let mut tree = Tree::new(&dir);
            let written = deb::unpack(deb_path, &mut tree, &|p| {
                firmware_path(&p.to_string_lossy()).is_some()
            })?;
            for p in written {
                if let Some(fw) = firmware_path(&p.to_string_lossy()) {
                    index
                        .packages
                        .entry(pkg.name.clone())
                        .or_insert(pkg.clone());
                    index
                        .files
                        .entry(fw.to_string())
                        .or_insert_with(|| pkg.name.clone());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::fetch::Transport;

    fn pkg(name: &str, version: &str, component: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            architecture: "all".into(),
            filename: format!("pool/{component}/{name}.deb"),
            sha256: "00".into(),
            size: 1,
            installed_size_kib: None,
            source_uri: "http://mirror.invalid/debian".into(),
            suite: "trixie".into(),
            component: component.into(),
            depends: String::new(),
            pre_depends: String::new(),
            provides: String::new(),
            essential: false,
            priority: String::new(),
        }
    }

    #[test]
    fn contents_lines_map_firmware_paths_to_packages() {
        let archive = Archive::from_packages(
            vec![
                pkg("firmware-bnx2x", "20250410-2", "non-free-firmware"),
                pkg("firmware-bnx2x", "20240610-1", "non-free-firmware"),
                pkg("firmware-misc-nonfree", "20250410-2", "non-free-firmware"),
            ],
            "amd64",
            true,
            Transport::new(),
        );
        let mut idx = FirmwareIndex::default();
        idx.add_contents(
            "usr/lib/firmware/bnx2x/bnx2x-e2-7.13.21.0.fw            non-free-firmware/kernel/firmware-bnx2x\n\
             usr/lib/firmware/cxgb4/t4fw-1.27.5.0.bin.zst   non-free-firmware/kernel/firmware-misc-nonfree,non-free-firmware/kernel/firmware-bnx2x\n\
             usr/share/doc/firmware-bnx2x/copyright   non-free-firmware/kernel/firmware-bnx2x\n\
             usr/lib/firmware/gone.bin   non-free-firmware/kernel/firmware-not-in-packages\n",
            &archive,
        );
        assert_eq!(idx.len(), 2);
        let b = idx.find("bnx2x/bnx2x-e2-7.13.21.0.fw").unwrap();
        assert_eq!(b.package.name, "firmware-bnx2x");
        assert_eq!(b.package.version, "20250410-2");
        assert_eq!(b.shipped, "bnx2x/bnx2x-e2-7.13.21.0.fw");
        // Compressed in the package: found under the module's name, and the
        // first owner by name wins.
        let c = idx.find("cxgb4/t4fw-1.27.5.0.bin").unwrap();
        assert_eq!(c.shipped, "cxgb4/t4fw-1.27.5.0.bin.zst");
        assert_eq!(c.package.name, "firmware-bnx2x");
        assert!(idx.find("gone.bin").is_none());
    }

    #[test]
    fn firmware_paths_in_both_layouts() {
        assert_eq!(firmware_path("usr/lib/firmware/a/b.fw"), Some("a/b.fw"));
        assert_eq!(firmware_path("/lib/firmware/a.bin"), Some("a.bin"));
        assert_eq!(firmware_path("./usr/lib/firmware/x"), Some("x"));
        assert_eq!(firmware_path("usr/share/doc/x"), None);
    }
}
