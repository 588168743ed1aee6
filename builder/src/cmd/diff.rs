//! `ipa-build diff`: what changed between two builds or two initramfs files.
//!
//! Before replacing a rescue image in production an operator wants to know
//! exactly what moved: packages and versions (from the manifests), files and
//! their sizes (from the initramfs contents, compared by SHA-256), and the
//! kernel and its modules. Both sides are read with [`crate::cmd::inspect`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cmd::inspect::{self, FileInfo, InspectError, Inspection, KernelInfo};
use crate::cmd::{Error, Outcome};
use crate::manifest::{FirmwareRecord, PackageRecord};

/// Arguments of `ipa-build diff`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The old side: a build directory or an initramfs.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The new side: a build directory or an initramfs.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Print the differences as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A number on both sides and how much it grew (negative: it shrank).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Delta {
    pub old: u64,
    pub new: u64,
    pub delta: i64,
}

impl Delta {
    fn new(old: u64, new: u64) -> Delta {
        Delta {
            old,
            new,
            delta: new as i64 - old as i64,
        }
    }
}

/// One kind of entry compared by key: what only B has, what only A has, and
/// what both have but differs, each list in key order. Packages and files
/// are compared the same way, so they are reported the same way too.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Changes<O, C> {
    pub added: Vec<O>,
    pub removed: Vec<O>,
    pub changed: Vec<C>,
}

impl<O, C> Changes<O, C> {
    fn none() -> Changes<O, C> {
        Changes {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The report's lines: `+ ` for what B adds, `- ` for what it lacks,
    /// `~ ` for what changed, each described by `only` or `change`.
    fn render(&self, s: &mut String, only: impl Fn(&O) -> String, change: impl Fn(&C) -> String) {
        let added = self.added.iter().map(|o| ('+', only(o)));
        let removed = self.removed.iter().map(|o| ('-', only(o)));
        let changed = self.changed.iter().map(|c| ('~', change(c)));
        for (mark, line) in added.chain(removed).chain(changed) {
            s.push_str(&format!("{mark} {line}\n"));
        }
    }
}

/// A package on one side only, from the manifest; `size` is that of the `.deb`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PackageOnly {
    pub name: String,
    pub version: String,
    pub size: u64,
}

/// A package on both sides with a different version or `.deb` size.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PackageChange {
    pub name: String,
    pub old_version: String,
    pub new_version: String,
    pub size: Delta,
}

/// A file on one side only.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileOnly {
    pub path: String,
    pub size: u64,
}

/// A file whose content differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub size: Delta,
}

/// A firmware file the modules name, on one side only, with where it came
/// from: `firmware-bnx2x 20240909-2 [non-free-firmware]`, or `missing`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FirmwareOnly {
    pub file: String,
    pub source: String,
}

/// A firmware file on both sides that now comes from elsewhere (another
/// package version, or it went missing or was found).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FirmwareChange {
    pub file: String,
    pub old_source: String,
    pub new_source: String,
}

/// Kernel release and module changes.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct KernelChange {
    pub old_release: Option<String>,
    pub new_release: Option<String>,
    pub modules_added: Vec<String>,
    pub modules_removed: Vec<String>,
}

/// The initramfs as a whole on both sides.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Size of the initramfs file.
    pub size: Delta,
    /// Sum of the file sizes inside.
    pub uncompressed: Delta,
    /// Number of files inside.
    pub files: Delta,
}

/// Everything that differs between A and B.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub a: PathBuf,
    pub b: PathBuf,
    /// False when a side has no manifest: `packages` is then empty.
    pub have_manifests: bool,
    pub packages: Changes<PackageOnly, PackageChange>,
    pub files: Changes<FileOnly, FileChange>,
    /// From the manifests, like `packages`: the firmware the modules name.
    pub firmware: Changes<FirmwareOnly, FirmwareChange>,
    pub kernel: KernelChange,
    pub totals: Totals,
}

impl Diff {
    /// Whether A and B are the same in every respect compared.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
            && self.files.is_empty()
            && self.firmware.is_empty()
            && self.kernel.modules_added.is_empty()
            && self.kernel.modules_removed.is_empty()
            && self.kernel.old_release == self.kernel.new_release
    }
}

/// The packages of a build, by name, from its manifest (`None` without one).
fn packages(ins: &Inspection) -> Option<BTreeMap<String, &PackageRecord>> {
    let m = ins.manifest.as_ref()?;
    Some(m.packages.iter().map(|p| (p.name.clone(), p)).collect())
}

/// The firmware a build's modules name, by file, with where each came from
/// (`None` without a manifest).
fn firmware(ins: &Inspection) -> Option<BTreeMap<&str, String>> {
    let m = ins.manifest.as_ref()?;
    let source = |r: &FirmwareRecord| match r.installed() {
        Some(i) => format!("{} {} [{}]", i.package, i.version, i.component),
        None => "missing".to_string(),
    };
    Some(
        m.firmware
            .iter()
            .map(|r| (r.file.as_str(), source(r)))
            .collect(),
    )
}

/// What is only in the old map, only in the new one, and in both but changed.
struct Sides<'a, K, V> {
    removed: Vec<(&'a K, &'a V)>,
    changed: Vec<(&'a K, &'a V, &'a V)>,
    added: Vec<(&'a K, &'a V)>,
}

impl<K, V> Sides<'_, K, V> {
    /// The report's lists, each entry made by `only` or `change`, in key order.
    fn report<O, C>(
        &self,
        only: impl Fn(&K, &V) -> O,
        change: impl Fn(&K, &V, &V) -> C,
    ) -> Changes<O, C> {
        Changes {
            added: self.added.iter().map(|(k, n)| only(k, n)).collect(),
            removed: self.removed.iter().map(|(k, o)| only(k, o)).collect(),
            changed: self
                .changed
                .iter()
                .map(|(k, o, n)| change(k, o, n))
                .collect(),
        }
    }
}

/// Compares two sorted maps key by key; `changed` says whether two values
/// under the same key differ. Each list comes out in key order.
fn compare<'a, K: Ord, V>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
    changed: impl Fn(&V, &V) -> bool,
) -> Sides<'a, K, V> {
    let mut s = Sides {
        removed: Vec::new(),
        changed: Vec::new(),
        added: Vec::new(),
    };
    for (k, o) in old {
        match new.get(k) {
            None => s.removed.push((k, o)),
            Some(n) if changed(o, n) => s.changed.push((k, o, n)),
            Some(_) => {}
        }
    }
    s.added = new.iter().filter(|(k, _)| !old.contains_key(k)).collect();
    s
}

/// Inspects both paths and compares them.
pub fn diff_paths(a: &Path, b: &Path) -> Result<Diff, InspectError> {
    let old = inspect::inspect(a)?;
    let new = inspect::inspect(b)?;
    Ok(diff(&old, &new))
}

/// Compares two inspections (for an ISO, its initramfs is compared).
pub fn diff(old: &Inspection, new: &Inspection) -> Diff {
    let (oi, ni) = (
        old.initramfs.as_deref().unwrap_or(old),
        new.initramfs.as_deref().unwrap_or(new),
    );
    let mut d = Diff {
        a: old.path.clone(),
        b: new.path.clone(),
        have_manifests: false,
        packages: Changes::none(),
        files: Changes::none(),
        firmware: Changes::none(),
        kernel: KernelChange::default(),
        totals: Totals {
            size: Delta::new(oi.size, ni.size),
            uncompressed: Delta::new(oi.total_bytes, ni.total_bytes),
            files: Delta::new(oi.files.len() as u64, ni.files.len() as u64),
        },
    };
    if let (Some(op), Some(np)) = (packages(old), packages(new)) {
        d.have_manifests = true;
        let only = |name: &String, p: &&PackageRecord| PackageOnly {
            name: name.clone(),
            version: p.version.clone(),
            size: p.size,
        };
        let change = |name: &String, o: &&PackageRecord, n: &&PackageRecord| PackageChange {
            name: name.clone(),
            old_version: o.version.clone(),
            new_version: n.version.clone(),
            size: Delta::new(o.size, n.size),
        };
        let differs =
            |o: &&PackageRecord, n: &&PackageRecord| (&o.version, o.size) != (&n.version, n.size);
        d.packages = compare(&op, &np, differs).report(only, change);
    }
    if let (Some(of), Some(nf)) = (firmware(old), firmware(new)) {
        let only = |file: &&str, source: &String| FirmwareOnly {
            file: file.to_string(),
            source: source.clone(),
        };
        let change = |file: &&str, o: &String, n: &String| FirmwareChange {
            file: file.to_string(),
            old_source: o.clone(),
            new_source: n.clone(),
        };
        d.firmware = compare(&of, &nf, |o, n| o != n).report(only, change);
    }
    let of: BTreeMap<&str, _> = oi.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let nf: BTreeMap<&str, _> = ni.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let only = |path: &&str, f: &&FileInfo| FileOnly {
        path: path.to_string(),
        size: f.size,
    };
    let change = |path: &&str, o: &&FileInfo, n: &&FileInfo| FileChange {
        path: path.to_string(),
        size: Delta::new(o.size, n.size),
    };
    d.files = compare(&of, &nf, |o, n| o.sha256 != n.sha256).report(only, change);
    let ok = oi.kernels.first();
    let nk = ni.kernels.first();
    let modules = |k: Option<&KernelInfo>| -> BTreeSet<String> {
        k.map(|k| k.modules.iter().cloned().collect())
            .unwrap_or_default()
    };
    let (om, nm) = (modules(ok), modules(nk));
    d.kernel = KernelChange {
        old_release: ok.map(|k| k.release.clone()),
        new_release: nk.map(|k| k.release.clone()),
        modules_added: nm.difference(&om).cloned().collect(),
        modules_removed: om.difference(&nm).cloned().collect(),
    };
    d
}

/// The human-readable report.
pub fn render(d: &Diff) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "--- {}\n+++ {}", d.a.display(), d.b.display());
    if !d.have_manifests {
        let _ = writeln!(s, "(no manifest on one side: packages not compared)");
    }
    d.packages.render(
        &mut s,
        |p| format!("package {} {} ({} bytes)", p.name, p.version, p.size),
        |p| {
            let (name, size) = (&p.name, p.size.delta);
            format!(
                "package {name} {} -> {} ({size:+} bytes)",
                p.old_version, p.new_version
            )
        },
    );
    d.firmware.render(
        &mut s,
        |f| format!("firmware {} ({})", f.file, f.source),
        |f| format!("firmware {} {} -> {}", f.file, f.old_source, f.new_source),
    );
    if d.kernel.old_release != d.kernel.new_release {
        let _ = writeln!(
            s,
            "~ kernel {} -> {}",
            d.kernel.old_release.as_deref().unwrap_or("(none)"),
            d.kernel.new_release.as_deref().unwrap_or("(none)")
        );
    }
    for m in &d.kernel.modules_added {
        let _ = writeln!(s, "+ module {m}");
    }
    for m in &d.kernel.modules_removed {
        let _ = writeln!(s, "- module {m}");
    }
    d.files.render(
        &mut s,
        |f| format!("{} ({} bytes)", f.path, f.size),
        |f| {
            let Delta { old, new, delta } = f.size;
            format!("{} {old} -> {new} ({delta:+} bytes)", f.path)
        },
    );
    let t = &d.totals;
    let _ = writeln!(
        s,
        "initramfs {} -> {} bytes ({:+}); contents {} -> {} bytes ({:+}); files {} -> {}",
        t.size.old,
        t.size.new,
        t.size.delta,
        t.uncompressed.old,
        t.uncompressed.new,
        t.uncompressed.delta,
        t.files.old,
        t.files.new
    );
    s
}

/// Compares A and B; the differences (or `--json`) are the outcome, `Found`
/// when there are any (exit 1, like diff(1)).
pub fn run(args: &Args) -> Result<Outcome, Error> {
    let d = diff_paths(&args.a, &args.b)?;
    let text = if args.json {
        crate::cmd::json(&d)?
    } else {
        render(&d)
    };
    Ok(Outcome::found_if(!d.is_empty(), text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::inspect::{FileInfo, KernelInfo};
    use serde_json::json;

    /// A manifest listing `pkgs` (name, version, size; the rest filled in)
    /// and the firmware records `fw`, as the manifest writes them.
    fn manifest(pkgs: serde_json::Value, fw: serde_json::Value) -> crate::manifest::Manifest {
        let mut m = crate::cmd::test_manifest();
        m["firmware"] = fw;
        m["packages"] = pkgs
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let mut full = json!({"architecture": "amd64", "sha256": "00", "suite": "s", "installed": "whole"});
                for k in ["name", "version", "size"] {
                    full[k] = p[k].clone();
                }
                full
            })
            .collect();
        serde_json::from_value(m).unwrap()
    }

    /// A build holding `pkgs` (as for [`manifest`]), `files` (`path:size:sha256`
    /// words) and kernel modules `mods`.
    fn ins(
        pkgs: serde_json::Value,
        fw: serde_json::Value,
        files: &str,
        mods: &[&str],
    ) -> Inspection {
        let files: Vec<FileInfo> = files
            .split_whitespace()
            .map(|f| {
                let [path, size, sha256] = f.split(':').collect::<Vec<_>>()[..] else {
                    panic!("{f}: not path:size:sha256");
                };
                FileInfo {
                    path: path.to_string(),
                    size: size.parse().unwrap(),
                    sha256: sha256.to_string(),
                }
            })
            .collect();
        Inspection {
            kind: "build",
            path: "x".into(),
            size: 100,
            segments: vec![],
            total_bytes: files.iter().map(|f| f.size).sum(),
            files,
            kernels: vec![KernelInfo {
                release: "6.1".into(),
                modules: mods.iter().map(|m| m.to_string()).collect(),
            }],
            manifest: Some(manifest(pkgs, fw)),
            initramfs: None,
        }
    }

    #[test]
    fn reports_packages_files_and_modules() {
        let installed = |file: &str, version: &str| {
            json!({"file": file, "modules": ["bnx2x"], "status": "installed",
                   "path": format!("/usr/lib/firmware/{file}"), "package": "firmware-bnx2x",
                   "version": version, "component": "non-free-firmware", "size": 1})
        };
        let missing = |file: &str| json!({"file": file, "modules": ["bnx2x"], "status": "missing"});
        let a = ins(
            json!([{"name":"busybox","version":"1","size":10},{"name":"old","version":"1","size":5}]),
            json!([
                installed("a.fw", "1"),
                missing("m.fw"),
                installed("gone.fw", "1")
            ]),
            "/bin/busybox:10:aa /gone:3:bb /same:1:cc",
            &["e1000", "virtio_net"],
        );
        let b = ins(
            json!([{"name":"busybox","version":"2","size":12},{"name":"pciutils","version":"3","size":7}]),
            json!([
                installed("a.fw", "2"),
                installed("m.fw", "2"),
                missing("new.fw")
            ]),
            "/bin/busybox:12:ab /new:4:dd /same:1:cc",
            &["virtio_net", "ext4"],
        );
        let d = diff(&a, &b);
        assert!(d.have_manifests);
        assert_eq!(d.packages.added[0].name, "pciutils");
        assert_eq!(d.packages.removed[0].name, "old");
        assert_eq!(d.packages.changed[0].size.delta, 2);
        assert_eq!(d.files.added[0].path, "/new");
        assert_eq!(d.files.removed[0].path, "/gone");
        assert_eq!(d.files.changed.len(), 1);
        let fw = |f: &FirmwareChange| format!("{}: {} -> {}", f.file, f.old_source, f.new_source);
        assert_eq!(
            d.firmware.changed.iter().map(fw).collect::<Vec<_>>(),
            [
                "a.fw: firmware-bnx2x 1 [non-free-firmware] -> firmware-bnx2x 2 [non-free-firmware]",
                "m.fw: missing -> firmware-bnx2x 2 [non-free-firmware]",
            ]
        );
        assert_eq!(d.firmware.added[0].source, "missing");
        assert_eq!(d.firmware.removed[0].file, "gone.fw");
        let text = render(&d);
        for line in [
            "+ package pciutils 3 (7 bytes)",
            "~ package busybox 1 -> 2 (+2 bytes)",
            "+ firmware new.fw (missing)",
            "- firmware gone.fw (firmware-bnx2x 1 [non-free-firmware])",
            "- /gone (3 bytes)",
            "~ /bin/busybox 10 -> 12 (+2 bytes)",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        assert_eq!(d.kernel.modules_added, ["ext4"]);
        assert_eq!(d.kernel.modules_removed, ["e1000"]);
        assert_eq!(d.totals.uncompressed.delta, 3);
        assert!(!d.is_empty());
        assert!(diff(&a, &a).is_empty());
    }
}
