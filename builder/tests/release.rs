//! The Debian release belongs to the profile: tinyipa (which names trixie)
//! built from bookworm and from trixie on the same host (whatever its own apt suites are), each
//! through the library with a profile file that extends tinyipa and names
//! its `debian.release`. The trixie image must carry 6.12's `.ko.xz` modules
//! with a `modules.dep` (and libkmod indexes) that resolve them.
//!
//! No boot here: QEMU tests belong to the boot suite.

#[path = "common/run.rs"]
mod run;

use std::path::{Path, PathBuf};
use std::process::Command;

use ipa_build::build::build;
use ipa_build::config::options::BuildOptions;
use ipa_build::report::Reporter;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Built {
    _dir: tempfile::TempDir,
    initramfs: PathBuf,
    /// `lib/modules/<version>` in the kept staging tree.
    modules: PathBuf,
    tree: PathBuf,
    kernel_version: String,
}

/// Builds `tinyipa` with `debian.release: <release>`, keeping the tree.
fn build_release(release: &str) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join(format!("tinyipa-{release}.yaml"));
    std::fs::write(
        &profile,
        // The shipped budget is sized for the shipped release (trixie,
        // 28 MiB with drivers and firmware); this test is about the
        // release, so it lifts the budget for either.
        format!(
            "extends: tinyipa\ndebian:\n  release: {release}\nsize_budget:\n  initramfs: 32MiB\n"
        ),
    )
    .unwrap();
    let ws = workspace();
    let mut opts = BuildOptions::new(profile.to_string_lossy());
    opts.profile_dirs = vec![ws.join("profiles")];
    opts.element_dirs = vec![ws.join("elements")];
    opts.output = Some(dir.path().join("out"));
    opts.keep_tree = Some(dir.path().join("tree"));
    opts.cache_dir = ws.join("target/test-cache");
    opts.source_date_epoch = Some(1_700_000_000);
    opts.install_host_packages = false;
    let summary = build(&opts, &Reporter::quiet())
        .unwrap_or_else(|e| panic!("tinyipa from {release} failed: {e}"));
    let initramfs = summary
        .artifacts
        .iter()
        .map(|a| summary.output.join(&a.file))
        .find(|p| p.to_string_lossy().ends_with(".initramfs"))
        .expect("an initramfs artifact");
    let tree = dir.path().join("tree");
    let modules = tree.join("usr/lib/modules").join(&summary.kernel_version);
    assert!(modules.is_dir(), "{} missing", modules.display());
    Built {
        kernel_version: summary.kernel_version,
        _dir: dir,
        initramfs,
        modules,
        tree,
    }
}

/// Every `modules.dep` line names installed files with `ext`, and the host's
/// `modprobe` (libkmod, reading the `.bin` indexes) resolves a NIC driver by
/// name and by its PCI alias in the staged tree.
fn assert_modules_resolve(b: &Built, ext: &str) {
    let dep = std::fs::read_to_string(b.modules.join("modules.dep")).unwrap();
    assert!(dep.lines().count() > 5, "{dep}");
    for line in dep.lines() {
        let (path, deps) = line.split_once(':').unwrap();
        for p in std::iter::once(path).chain(deps.split_whitespace()) {
            assert!(p.ends_with(ext), "{line}");
            assert!(b.modules.join(p).is_file(), "{p} listed, not installed");
        }
    }
    let show = run::stdout(Command::new("modprobe").arg("-d").arg(&b.tree).args([
        "-S",
        &b.kernel_version,
        "--show-depends",
        "e1000",
    ]));
    assert!(show.contains(&format!("e1000{ext}")), "{show}");
}

/// Builds tinyipa from `release` and checks its kernel is the release's
/// (`kernel_prefix`) and its modules (compressed as `ext`) resolve.
fn build_and_check(release: &str, kernel_prefix: &str, ext: &str) -> Built {
    let b = build_release(release);
    assert!(
        b.kernel_version.starts_with(kernel_prefix),
        "{}",
        b.kernel_version
    );
    assert_modules_resolve(&b, ext);
    b
}

#[test]
fn tinyipa_builds_from_bookworm_and_from_trixie() {
    let bookworm = build_and_check("bookworm", "6.1.", ".ko");
    let trixie = build_and_check("trixie", "6.12.", ".ko.xz");

    let size = |b: &Built| std::fs::metadata(&b.initramfs).unwrap().len();
    eprintln!(
        "tinyipa initramfs: bookworm ({}) {} bytes, trixie ({}) {} bytes",
        bookworm.kernel_version,
        size(&bookworm),
        trixie.kernel_version,
        size(&trixie)
    );
}
