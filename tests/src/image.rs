//! Ramdisks built for a test: a profile from this workspace, built through
//! the library with the shared download cache (`target/test-cache`), as the
//! CLI would build it.

use std::path::{Path, PathBuf};

use ipa_build::build::{BuildOptions, BuildSummary, build};
use ipa_build::report::Reporter;

use crate::paths::workspace_root;

/// Builds `profile` (from `profiles/`, with `elements/`) into `out`.
pub fn build_profile(
    profile: &str,
    out: &Path,
) -> Result<BuildSummary, ipa_build::build::BuildError> {
    let root = workspace_root();
    let mut opts = BuildOptions::new(profile);
    opts.profile_dirs = vec![root.join("profiles")];
    opts.element_dirs = vec![root.join("elements")];
    opts.output = Some(out.to_path_buf());
    opts.cache_dir = root.join("target/test-cache");
    build(&opts, &Reporter::quiet())
}

/// The path of the build's artifact of `kind` (`kernel`, `initramfs`,
/// `iso`), if it made one.
pub fn artifact(summary: &BuildSummary, kind: &str) -> Option<PathBuf> {
    summary
        .artifacts
        .iter()
        .find(|a| a.kind.name() == kind)
        .map(|a| summary.output.join(&a.file))
}
