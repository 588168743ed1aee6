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

/// Which package, element or part of the build put each file in the tree,
/// so an over-budget build can name its largest contributors.
#[derive(Default)]
pub struct Owners {
    exact: BTreeMap<PathBuf, String>,
    prefixes: Vec<(PathBuf, String)>,
}

impl Owners {
    /// `owner` wrote these image paths (absolute or relative to `/`).
    pub fn add(&mut self, owner: &str, paths: Vec<PathBuf>) {
        for p in paths {
            self.exact.insert(
                Path::new("/").join(p.strip_prefix("/").unwrap_or(&p)),
                owner.to_string(),
            );
        }
    }

    /// `owner` wrote everything under `prefix` that nobody else claimed.
    pub fn add_prefix(&mut self, owner: &str, prefix: String) {
        self.prefixes
            .push((PathBuf::from(prefix), owner.to_string()));
    }

    fn owner(&self, image: &Path) -> String {
        if let Some(o) = self.exact.get(image) {
            return o.clone();
        }
        self.prefixes
            .iter()
            .find(|(p, _)| image.starts_with(p))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| "other files".into())
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
    pub owner: String,
    pub files: u64,
    pub bytes: u64,
}

/// Uncompressed bytes and files in the tree per owner, largest first (ties
/// by name, so the order is reproducible).
pub fn contributors(tree: &Tree, owners: &Owners) -> Vec<Contribution> {
    let mut sizes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
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
    ranked.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.owner.cmp(&b.owner)));
    ranked
}
