//! One build through the library (not the binary), with the staging tree
//! kept: what the tests that look inside a real image share.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ipa_build::build::build;
use ipa_build::config::options::{BuildOptions, SearchPaths};
use ipa_build::report::Reporter;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A finished build; `dir` (removed on drop) holds the output and the tree.
pub struct Built {
    pub dir: tempfile::TempDir,
    /// The output directory (artifacts and manifest.json).
    pub out: PathBuf,
    pub initramfs: PathBuf,
    /// The kept staging tree.
    pub tree: PathBuf,
    pub kernel_version: String,
}

/// Builds `profile` (a shipped profile's name, or a file in `dir`) from the
/// repository's profiles and elements with the shared test cache and a
/// fixed `SOURCE_DATE_EPOCH`, keeping the tree under `dir`.
pub fn build_in(dir: tempfile::TempDir, profile: &str) -> Built {
    let ws = workspace();
    let mut opts = BuildOptions::new(profile);
    opts.search = SearchPaths::checkout(&ws);
    opts.output = Some(dir.path().join("out"));
    opts.keep_tree = Some(dir.path().join("tree"));
    opts.fetch.cache_dir = ws.join("target/test-cache");
    opts.source_date_epoch = Some(1_700_000_000);
    opts.fetch.install_host_packages = false;
    let summary =
        build(&opts, &Reporter::quiet()).unwrap_or_else(|e| panic!("building {profile}: {e}"));
    let initramfs = summary
        .artifacts
        .iter()
        .map(|a| summary.output.join(&a.file))
        .find(|p| p.to_string_lossy().ends_with(".initramfs"))
        .expect("an initramfs artifact");
    Built {
        out: summary.output.clone(),
        initramfs,
        tree: dir.path().join("tree"),
        kernel_version: summary.kernel_version,
        dir,
    }
}
