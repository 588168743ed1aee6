//! The firmware closure inside the pipeline: the index of the allowed
//! components is read in the fetch stage (with the other signed indices),
//! the files are chosen and copied in the stage stage, once the module set
//! is known ([`crate::stage::firmware`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::BuildError;
use crate::cache::Cache;
use crate::config::profile::Firmware;
use crate::debian::contents::FirmwareIndex;
use crate::debian::{Archive, deb};
use crate::manifest::FirmwareRecord;
use crate::report::Reporter;
use crate::stage::Tree;
use crate::stage::firmware::{FirmwareError, FirmwarePlan, wanted_in_package};
use crate::stage::modules::ModulesReport;
use crate::stage::tree::Last;

/// What the stage stage needs to take firmware from the archive.
pub struct FirmwareSupply {
    pub setting: Firmware,
    pub index: FirmwareIndex,
    pub archive: Archive,
    pub cache: Cache,
}

/// The firmware index for the profile's setting; `None` for `none`.
pub fn supply(
    setting: Firmware,
    archive: Archive,
    cache: &Cache,
    reporter: &Reporter,
) -> Result<Option<FirmwareSupply>, BuildError> {
    if setting == Firmware::None {
        return Ok(None);
    }
    let index = archive.firmware_index(setting.components(), cache, reporter)?;
    Ok(Some(FirmwareSupply {
        setting,
        index,
        archive,
        cache: cache.clone(),
    }))
}

/// Installs the firmware the installed modules name; returns the records
/// for the manifest and the image paths written.
pub fn install(
    supply: &FirmwareSupply,
    modules: &ModulesReport,
    tree: &mut Tree,
    work: &Path,
    reporter: &Reporter,
) -> Result<(Vec<FirmwareRecord>, Vec<PathBuf>), BuildError> {
    let mut plan = FirmwarePlan::new(&modules.firmware, &supply.index);
    let packages: Vec<_> = plan.packages.values().cloned().collect();
    let debs = supply.archive.fetch(&packages, &supply.cache, reporter)?;
    let mut unpacked = BTreeMap::new();
    for (pkg, deb_path) in packages.iter().zip(&debs) {
        let mut pool = super::stage::new_tree(work, &format!("firmware-{}", pkg.name))?;
        unpack_wanted(deb_path, &mut pool, wanted_in_package(&plan, &pkg.name))?;
        unpacked.insert(pkg.name.clone(), pool);
    }
    let written = plan.install(&unpacked, tree)?;
    let missing: Vec<String> = plan
        .missing()
        .map(|r| format!("{} ({})", r.file, r.modules.join(", ")))
        .collect();
    if !missing.is_empty() {
        reporter.warn(format!(
            "{} firmware files named by the image's modules are in no package of {} (listed as missing in the manifest): {}",
            missing.len(),
            supply.setting.components().join(", "),
            missing.join(", ")
        ));
    }
    Ok((plan.records, written))
}

/// Unpacks only `wanted` (paths under `usr/lib/firmware/`) from a firmware
/// package, then the targets of any of them that are symlinks, until none
/// dangles: a firmware package can be hundreds of MiB unpacked, and links
/// point at most a step or two further.
fn unpack_wanted(
    deb_path: &Path,
    pool: &mut Tree,
    wanted: BTreeSet<String>,
) -> Result<(), BuildError> {
    let mut want: BTreeSet<PathBuf> = wanted
        .iter()
        .map(|w| PathBuf::from("/usr/lib/firmware").join(w))
        .collect();
    for _ in 0..8 {
        let filter = |p: &Path| want.contains(p);
        deb::unpack(deb_path, pool, &filter)?;
        let mut more = BTreeSet::new();
        for w in &want {
            let rel = pool
                .resolve(w, Last::Follow)
                .map_err(|e| FirmwareError::Io {
                    file: w.display().to_string(),
                    path: pool.root().to_path_buf(),
                    source: e.into(),
                })?;
            if !pool.root().join(&rel).exists() {
                more.insert(Path::new("/").join(rel));
            }
        }
        if more.iter().all(|m| want.contains(m)) {
            break;
        }
        want.extend(more);
    }
    Ok(())
}
