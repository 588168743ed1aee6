//! The Debian release belongs to the profile: tinyipa (which names trixie)
//! built from bookworm and from trixie on the same host (whatever its own apt suites are), each
//! through the library with a profile file that extends tinyipa and names
//! its `debian.release`. The trixie image must carry 6.12's `.ko.xz` modules
//! with a `modules.dep` (and libkmod indexes) that resolve them.
//!
//! No boot here: QEMU tests belong to the boot suite.

#[path = "common/library_build.rs"]
mod library_build;
#[path = "common/run.rs"]
mod run;

use std::path::PathBuf;
use std::process::Command;

use library_build::{Built, build_in};

/// `lib/modules/<version>` in the kept staging tree.
fn modules_dir(b: &Built) -> PathBuf {
    b.tree.join("usr/lib/modules").join(&b.kernel_version)
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
    let b = build_in(dir, &profile.to_string_lossy());
    assert!(
        modules_dir(&b).is_dir(),
        "{} missing",
        modules_dir(&b).display()
    );
    b
}

/// Every `modules.dep` line names installed files with `ext`, and the host's
/// `modprobe` (libkmod, reading the `.bin` indexes) resolves a NIC driver by
/// name and by its PCI alias in the staged tree.
fn assert_modules_resolve(b: &Built, ext: &str) {
    let dep = std::fs::read_to_string(modules_dir(b).join("modules.dep")).unwrap();
    assert!(dep.lines().count() > 5, "{dep}");
    for line in dep.lines() {
        let (path, deps) = line.split_once(':').unwrap();
        for p in std::iter::once(path).chain(deps.split_whitespace()) {
            assert!(p.ends_with(ext), "{line}");
            assert!(
                modules_dir(b).join(p).is_file(),
                "{p} listed, not installed"
            );
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
