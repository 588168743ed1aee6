//! A profile built into a kernel and initramfs, the way a user builds it,
//! with the shared download cache under `target/test-cache`.

use std::path::{Path, PathBuf};

use ipa_build::build::{BuildOptions, BuildSummary, SearchPaths, build};
use ipa_build::report::Reporter;

use crate::paths::workspace_root;

/// A built profile: its summary (kernel command line, artifacts) and the
/// two files a VM boots.
pub struct Ramdisk {
    pub summary: BuildSummary,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// Builds `profile` from the workspace's profiles and elements into `out`.
pub fn build_profile(profile: &str, out: &Path) -> Result<Ramdisk, String> {
    let root = workspace_root();
    let mut opts = BuildOptions::new(profile);
    opts.search = SearchPaths::checkout(&root);
    opts.output = Some(out.to_path_buf());
    opts.fetch.cache_dir = root.join("target/test-cache");
    let summary =
        build(&opts, &Reporter::quiet()).map_err(|e| format!("building {profile}: {e}"))?;
    let file = |kind: &str| {
        summary
            .artifacts
            .iter()
            .find(|a| a.kind.name() == kind)
            .map(|a| summary.output.join(&a.file))
            .ok_or_else(|| format!("{profile} built no {kind}"))
    };
    Ok(Ramdisk {
        kernel: file("kernel")?,
        initramfs: file("initramfs")?,
        summary,
    })
}
