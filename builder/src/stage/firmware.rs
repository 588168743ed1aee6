//! The firmware closure: the files the image's modules name, and only
//! those, taken from Debian's firmware packages.
//!
//! A driver such as bnx2x or qede does not run without its firmware, and
//! ice runs degraded; but all of linux-firmware is hundreds of MiB. Each
//! module names the files it may request (`modinfo` `firmware=`), so the
//! image gets exactly those: looked up in the [`FirmwareIndex`] of the
//! components the profile allows, their packages fetched (verified like
//! every package) and unpacked aside, and the named files copied in at the
//! path the package ships, compressed or not (the kernel's loader tries
//! `.zst` and `.xz` itself). A file no allowed package has is recorded as
//! missing: drivers name firmware for every chip generation and version,
//! and a build must not fail because one is not shipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::debian::Package;
use crate::debian::contents::FirmwareIndex;
use crate::manifest::{FirmwareRecord, FirmwareStatus, InstalledFirmware};
use crate::stage::Tree;
use crate::stage::files;
use crate::stage::tree::Last;

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error(
        "firmware {file} ({package}): the package does not ship {shipped} although its Contents index says so"
    )]
    NotInPackage {
        file: String,
        package: String,
        shipped: String,
    },
    #[error("firmware {file}: {path}: {source}")]
    Io {
        file: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The firmware files to install and the packages they come from.
#[derive(Debug, Clone, Default)]
pub struct FirmwarePlan {
    /// One record per file any module names, by file; `installed` ones still
    /// to be copied.
    pub records: Vec<FirmwareRecord>,
    /// Shipped path under `lib/firmware/` of each record that has a package.
    shipped: BTreeMap<String, String>,
    /// The packages to fetch, by name.
    pub packages: BTreeMap<String, Package>,
}

impl FirmwarePlan {
    /// Looks up every file `modules` (module → files) names.
    pub fn new(modules: &BTreeMap<String, Vec<String>>, index: &FirmwareIndex) -> FirmwarePlan {
        let mut by_file: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (module, files) in modules {
            for f in files {
                by_file
                    .entry(f.as_str())
                    .or_default()
                    .insert(module.as_str());
            }
        }
        let mut plan = FirmwarePlan::default();
        for (file, mods) in by_file {
            let modules: Vec<String> = mods.into_iter().map(str::to_string).collect();
            let record = match index.find(file) {
                Some(src) => {
                    plan.shipped.insert(file.to_string(), src.shipped.clone());
                    let r = FirmwareRecord {
                        file: file.to_string(),
                        modules,
                        status: FirmwareStatus::Installed(InstalledFirmware {
                            path: format!("/usr/lib/firmware/{}", src.shipped),
                            package: src.package.name.clone(),
                            version: src.package.version.clone(),
                            component: src.package.component.clone(),
                            size: 0,
                        }),
                    };
                    plan.packages.insert(src.package.name.clone(), src.package);
                    r
                }
                None => FirmwareRecord {
                    file: file.to_string(),
                    modules,
                    status: FirmwareStatus::Missing,
                },
            };
            plan.records.push(record);
        }
        plan
    }

    /// The records with no package.
    pub fn missing(&self) -> impl Iterator<Item = &FirmwareRecord> {
        self.records
            .iter()
            .filter(|r| r.status == FirmwareStatus::Missing)
    }

    /// Copies every file with a package from `unpacked` (package name → a
    /// tree where that package was unpacked) into `tree`, filling in sizes.
    /// Returns the image paths written.
    pub fn install(
        &mut self,
        unpacked: &BTreeMap<String, Tree>,
        tree: &mut Tree,
    ) -> Result<Vec<PathBuf>, FirmwareError> {
        let mut written = Vec::new();
        for r in &mut self.records {
            let (FirmwareStatus::Installed(got), Some(shipped)) =
                (&mut r.status, self.shipped.get(&r.file))
            else {
                continue;
            };
            let not_there = || FirmwareError::NotInPackage {
                file: r.file.clone(),
                package: got.package.clone(),
                shipped: shipped.clone(),
            };
            let pool = unpacked.get(&got.package).ok_or_else(not_there)?;
            let image = PathBuf::from("/usr/lib/firmware").join(shipped);
            // Firmware packages link one name to another (WHENCE `Link:`);
            // the image gets the content at the name the module asks for.
            let io = |path: &Path| {
                let file = r.file.clone();
                let path = path.to_path_buf();
                move |source| FirmwareError::Io { file, path, source }
            };
            let rel = pool
                .resolve(&image, Last::Follow)
                .map_err(|e| io(&image)(e.into()))?;
            let source = pool.root().join(rel);
            if !source.is_file() {
                return Err(not_there());
            }
            files::install_file(tree, &source, &image, 0o644, 0, 0).map_err(io(&image))?;
            got.size = std::fs::metadata(&source).map_err(io(&source))?.len();
            written.push(image);
        }
        Ok(written)
    }

    /// Bytes of installed firmware.
    pub fn bytes(&self) -> u64 {
        self.records
            .iter()
            .filter_map(FirmwareRecord::installed)
            .map(|i| i.size)
            .sum()
    }
}

/// `x.fw` for a firmware path filter when unpacking a firmware package:
/// only the files the plan takes from it, and the links among them.
pub fn wanted_in_package(plan: &FirmwarePlan, package: &str) -> BTreeSet<String> {
    plan.records
        .iter()
        .filter(|r| r.installed().is_some_and(|i| i.package == package))
        .filter_map(|r| plan.shipped.get(&r.file).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_named_by_several_modules_are_one_record() {
        let mut modules = BTreeMap::new();
        modules.insert(
            "bnx2x".to_string(),
            vec!["bnx2x/a.fw".to_string(), "gone.fw".to_string()],
        );
        modules.insert("cnic".to_string(), vec!["bnx2x/a.fw".to_string()]);
        let plan = FirmwarePlan::new(&modules, &FirmwareIndex::default());
        assert_eq!(plan.records.len(), 2);
        assert_eq!(plan.records[0].file, "bnx2x/a.fw");
        assert_eq!(plan.records[0].modules, ["bnx2x", "cnic"]);
        assert_eq!(plan.missing().count(), 2);
        assert!(plan.packages.is_empty());
    }
}
