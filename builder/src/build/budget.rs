//! The size budget, checked after packing: a profile's `size_budget` fails
//! the build when an artifact grows past it, and names the largest
//! contributors (packages, kernel modules, elements, shared libraries) from
//! the ownership map the stage step built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::BuildError;
use super::stage::Staged;
use crate::config::profile::Profile;
use crate::initramfs::PackReport;
use crate::manifest::{Artifact, ArtifactKind};
use crate::report::human_bytes;
use crate::stage::Tree;

/// Who put a file in the tree. Typed, so that [`super::plan::Plan::element_of`]
/// matches on the variant instead of parsing the report's label back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// A Debian package unpacked whole into the image.
    Package(String),
    /// An element's own files, directories, links and devices.
    Element(String),
    /// The agent binary.
    Agent,
    /// The kernel's module tree.
    KernelModules,
    /// Firmware files the modules name.
    Firmware,
    /// Libraries copied from the dependency pool for the image's binaries.
    SharedLibraries,
    /// Anything no package, element or stage step claimed (what hooks write, for one).
    Other,
}

impl std::fmt::Display for Owner {
    /// The label the size report and the manifest's `contents` show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Package(name) => write!(f, "package {name}"),
            Owner::Element(name) => write!(f, "element {name}"),
            Owner::Agent => f.write_str("agent"),
            Owner::KernelModules => f.write_str("kernel modules"),
            Owner::Firmware => f.write_str("firmware"),
            Owner::SharedLibraries => f.write_str("shared libraries"),
            Owner::Other => f.write_str("other files"),
        }
    }
}

/// Which package, element or part of the build put each file in the tree,
/// so an over-budget build can name its largest contributors.
#[derive(Default)]
pub struct Owners {
    exact: BTreeMap<PathBuf, Owner>,
    prefixes: Vec<(PathBuf, Owner)>,
}

impl Owners {
    /// `owner` wrote these image paths (absolute or relative to `/`).
    pub fn add(&mut self, owner: Owner, paths: Vec<PathBuf>) {
        for p in paths {
            self.exact.insert(
                Path::new("/").join(p.strip_prefix("/").unwrap_or(&p)),
                owner.clone(),
            );
        }
    }

    /// `owner` wrote everything under `prefix` that nobody else claimed.
    pub fn add_prefix(&mut self, owner: Owner, prefix: String) {
        self.prefixes.push((PathBuf::from(prefix), owner));
    }

    fn owner(&self, image: &Path) -> Owner {
        if let Some(o) = self.exact.get(image) {
            return o.clone();
        }
        self.prefixes
            .iter()
            .find(|(p, _)| image.starts_with(p))
            .map(|(_, o)| o.clone())
            .unwrap_or(Owner::Other)
    }
}

/// Fails with the over-budget artifacts and the tree's largest contributors.
pub fn check(
    profile: &Profile,
    staged: &Staged,
    artifacts: &[Artifact],
    packed: &PackReport,
) -> Result<(), BuildError> {
    let budget = &profile.size_budget;
    let limit_for = |kind: ArtifactKind| match kind {
        ArtifactKind::Kernel => budget.kernel,
        ArtifactKind::Initramfs => budget.initramfs,
        ArtifactKind::Iso => budget.iso,
    };
    let mut msg = String::new();
    for a in artifacts {
        if let Some(limit) = limit_for(a.kind).filter(|l| a.size > *l) {
            msg.push_str(&format!(
                "{} is {} ({} bytes), over its size_budget of {} ({} bytes) in {}\n",
                a.file,
                human_bytes(a.size),
                a.size,
                human_bytes(limit),
                limit,
                profile.source.display()
            ));
        }
    }
    if msg.is_empty() {
        return Ok(());
    }
    let ratio = packed.compressed_bytes as f64 / packed.uncompressed_bytes.max(1) as f64;
    msg.push_str(&format!(
        "largest contributors to the initramfs (uncompressed; it compresses to {:.0}% overall):\n",
        ratio * 100.0
    ));
    for c in contributors(&staged.tree, &staged.owners).iter().take(10) {
        msg.push_str(&format!("  {:>10}  {}\n", human_bytes(c.bytes), c.owner));
    }
    msg.push_str("drop modules, packages or elements, or raise size_budget in the profile");
    Err(BuildError::Budget(msg))
}

/// What one owner put in the tree.
pub struct Contribution {
    pub owner: Owner,
    pub files: u64,
    pub bytes: u64,
}

/// Uncompressed bytes and files in the tree per owner, largest first (ties
/// by name, so the order is reproducible).
pub fn contributors(tree: &Tree, owners: &Owners) -> Vec<Contribution> {
    let mut sizes: BTreeMap<Owner, (u64, u64)> = BTreeMap::new();
    let walk = walkdir::WalkDir::new(tree.root()).min_depth(1);
    for entry in walk.into_iter().flatten() {
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(tree.root())
                .unwrap_or(entry.path());
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let slot = sizes
                .entry(owners.owner(&Path::new("/").join(rel)))
                .or_default();
            slot.0 += 1;
            slot.1 += len;
        }
    }
    let mut ranked: Vec<Contribution> = sizes
        .into_iter()
        .map(|(owner, (files, bytes))| Contribution {
            owner,
            files,
            bytes,
        })
        .collect();
    // Ties by the label, as shown.
    ranked.sort_by_cached_key(|c| (std::cmp::Reverse(c.bytes), c.owner.to_string()));
    ranked
}
