//! Kernel module installation against a real Debian kernel package, checked
//! against `depmod` (kmod) on the same module set; and the ELF library
//! closure on real host binaries.
//!
//! The kernel package is the one `linux-image-amd64` depends on today
//! (resolved with `apt-cache depends`, never hard-coded), downloaded with
//! `apt-get download` into `<workspace>/target/test-data/` and unpacked there
//! once; later runs reuse it.

#[path = "common/run.rs"]
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ipa_build::cache::Cache;
use ipa_build::debian::{Archive, ArchiveConfig, Source, host_sources};
use ipa_build::report::Reporter;
use ipa_build::stage::Tree;
use ipa_build::stage::elf::{ElfError, library_closure};
use ipa_build::stage::modules::{Kernel, ModulesError, find_kernel, install_modules};

fn test_data() -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = ws.join("target/test-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The unpacked kernel package, fetched on first use.
fn kernel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("apt-cache")
            .args(["depends", "linux-image-amd64"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let pkg = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
            .unwrap_or_else(|| {
                panic!("apt-cache depends linux-image-amd64 named no kernel:\n{text}")
            })
            .to_string();
        let data = test_data();
        let unpacked = data.join(&pkg);
        if unpacked.join("boot").is_dir() {
            return unpacked;
        }
        let find_deb = || {
            std::fs::read_dir(&data)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&format!("{pkg}_"))
                })
        };
        if find_deb().is_none() {
            let st = Command::new("apt-get")
                .args(["download", &pkg])
                .current_dir(&data)
                .status()
                .unwrap();
            assert!(st.success(), "apt-get download {pkg} failed");
        }
        unpack_once(&find_deb().unwrap(), unpacked)
    })
}

/// Unpacks a kernel `.deb` with `dpkg-deb -x` into a temporary directory
/// beside `dest`, then renames it into place, so an interrupted unpack never
/// looks like a finished one.
fn unpack_once(deb: &Path, dest: PathBuf) -> PathBuf {
    let tmp = tempfile::tempdir_in(test_data()).unwrap();
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success(), "dpkg-deb -x {} failed", deb.display());
    std::fs::rename(tmp.keep(), &dest).unwrap();
    dest
}

/// Debian 13 "trixie"'s kernel (6.12, modules shipped as `.ko.xz`), resolved
/// through our own archive code from the host's first Debian mirror with the
/// suite replaced, fetched into the shared test cache and unpacked once under
/// `target/test-data/`.
fn trixie_kernel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let host = host_sources(Path::new("/etc/apt")).unwrap();
        let debian = host
            .iter()
            .find(|s| s.suites.iter().any(|x| x == "bookworm" || x == "trixie"))
            .expect("a Debian source in the host's apt sources");
        let cfg = ArchiveConfig {
            sources: vec![Source {
                uri: debian.uri.clone(),
                suites: vec!["trixie".into()],
                components: vec!["main".into()],
                keyring: debian.keyring.clone(),
            }],
            arch: "amd64".into(),
        };
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let cache = Cache::open(&ws.join("target/test-cache")).unwrap();
        let reporter = Reporter::quiet();
        let archive = Archive::open(&cfg, &cache, false, &reporter).unwrap();
        let pkg = archive.resolve_kernel("linux-image-amd64").unwrap();
        let unpacked = test_data().join(format!("trixie-{}-{}", pkg.name, pkg.version));
        if unpacked.join("boot").is_dir() {
            return unpacked;
        }
        let deb = archive
            .fetch(std::slice::from_ref(&pkg), &cache, &reporter)
            .unwrap()
            .remove(0);
        unpack_once(&deb, unpacked)
    })
}

fn kernel() -> Kernel {
    find_kernel(kernel_dir(), "vmlinuz").unwrap()
}

const SET: &[&str] = &[
    "virtio_net",
    "virtio_pci",
    "virtio-pci-modern-dev",
    "virtio_pci_legacy_dev",
    "e1000e",
    "nvme",
    "ahci",
    "mlx5_core",
    "isofs",
    "vfat",
    "ext4",
    // devname: aliases, for modules.devname.
    "loop",
    "tun",
];

fn parse_dep(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (m, deps) = l.split_once(':').unwrap();
            (
                m.to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// Every module in a dependency list must come before the modules it needs
/// (modprobe loads the list from the end).
fn assert_load_order(file: &str, deps: &[(String, Vec<String>)]) {
    let direct: BTreeMap<&str, &Vec<String>> = deps.iter().map(|(m, d)| (m.as_str(), d)).collect();
    for (m, list) in deps {
        for (i, earlier) in list.iter().enumerate() {
            for later in &list[i + 1..] {
                assert!(
                    !direct[later.as_str()].contains(earlier),
                    "{file}: in the line for {m}, {earlier} is listed before {later}, which needs it"
                );
            }
        }
    }
}

#[test]
fn modules_match_depmod() {
    let k = kernel();
    let staging = tempfile::tempdir().unwrap();
    let mut tree = Tree::new(staging.path());
    let wanted: Vec<String> = SET.iter().map(|s| s.to_string()).collect();
    let report = install_modules(&k, &wanted, &mut tree).unwrap();
    for m in [
        "virtio_net",
        "virtio",
        "virtio_ring",
        "net_failover",
        "failover",
        "virtio_pci_modern_dev",
        "jbd2",
        "mbcache",
    ] {
        assert!(
            report.installed.contains(&m.to_string()),
            "{m} missing from {:?}",
            report.installed
        );
    }
    // ext4's softdep `pre: crc32c` names an alias: its providers come along.
    assert!(
        report.installed.iter().any(|m| m.starts_with("crc32c")),
        "{:?}",
        report.installed
    );

    check_against_depmod(&k, &wanted, staging.path());
}

/// Trixie ships its modules xz-compressed: the closure reads `.modinfo`
/// through the decompressor, the files keep their `.ko.xz` names (as depmod
/// writes them into the indexes), and every index still matches depmod's.
#[test]
fn trixie_xz_modules_match_depmod() {
    let k = find_kernel(trixie_kernel_dir(), "vmlinuz").unwrap();
    assert!(k.version.starts_with("6.12"), "{}", k.version);
    let staging = tempfile::tempdir().unwrap();
    let mut tree = Tree::new(staging.path());
    let wanted: Vec<String> = SET.iter().map(|s| s.to_string()).collect();
    let report = install_modules(&k, &wanted, &mut tree).unwrap();
    // (virtio, virtio_ring and virtio_pci are built into 6.12.)
    for m in ["virtio_net", "failover", "jbd2", "nvme_core"] {
        assert!(
            report.installed.contains(&m.to_string()),
            "{m}: {:?}",
            report.installed
        );
    }
    let ours = staging.path().join("lib/modules").join(&k.version);
    let dep = std::fs::read_to_string(ours.join("modules.dep")).unwrap();
    let lines: Vec<&str> = dep.lines().collect();
    assert_eq!(lines.len(), report.installed.len(), "{dep}");
    for l in &lines {
        let (path, deps) = l.split_once(':').unwrap();
        assert!(path.ends_with(".ko.xz"), "{l}");
        assert!(ours.join(path).is_file(), "{path} listed but not installed");
        assert!(
            deps.split_whitespace().all(|d| d.ends_with(".ko.xz")),
            "{l}"
        );
    }
    // The size reported is what the image carries: the compressed files.
    let on_disk: u64 = walkdir::WalkDir::new(&ours)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ko.xz"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(report.bytes, on_disk);
    // modules.order names modules `.ko`; our lines still follow it.
    let order = std::fs::read_to_string(ours.join("modules.order")).unwrap();
    assert!(
        order.lines().all(|l| !l.ends_with(".xz")),
        "modules.order lists compressed names?"
    );
    check_against_depmod(&k, &wanted, staging.path());
}

/// A kernel-tree path pattern installs every module under it with their
/// dependencies, on the `.ko` (bookworm) and `.ko.xz` (trixie) kernels
/// alike; one that matches nothing is an error naming it.
#[test]
fn path_patterns_install_a_driver_family() {
    for k in [
        kernel(),
        find_kernel(trixie_kernel_dir(), "vmlinuz").unwrap(),
    ] {
        let staging = tempfile::tempdir().unwrap();
        let mut tree = Tree::new(staging.path());
        let wanted = ["kernel/drivers/scsi/megaraid/**".to_string()];
        let report = install_modules(&k, &wanted, &mut tree).unwrap();
        // Every module of the directory, and what they need from elsewhere.
        for m in ["megaraid_sas", "megaraid_mbox", "megaraid_mm", "scsi_mod"] {
            let m = m.to_string();
            assert!(
                report.installed.contains(&m),
                "{}: {m} missing from {:?}",
                k.version,
                report.installed
            );
        }
        let dep = std::fs::read_to_string(
            staging
                .path()
                .join("lib/modules")
                .join(&k.version)
                .join("modules.dep"),
        )
        .unwrap();
        assert!(
            dep.contains("kernel/drivers/scsi/megaraid/megaraid_sas.ko"),
            "{dep}"
        );
        // `**/NAME.ko` names one module whatever its compression.
        let one = ["kernel/drivers/net/**/e1000e.ko".to_string()];
        let report = install_modules(&k, &one, &mut Tree::new(staging.path())).unwrap();
        assert!(report.installed.contains(&"e1000e".to_string()));

        let none = ["kernel/drivers/no-such-dir/**".to_string()];
        let err = install_modules(&k, &none, &mut tree).unwrap_err();
        assert!(matches!(err, ModulesError::NoMatch { .. }), "{err}");
        assert!(
            err.to_string().contains("kernel/drivers/no-such-dir/**"),
            "{err}"
        );
    }
}

/// Our index files for the set installed under `staging` against `depmod -b`
/// on a copy of the same modules: text and `.bin` files byte for byte, every
/// lookup through `modprobe`, and a second install giving the same bytes.
fn check_against_depmod(k: &Kernel, wanted: &[String], staging: &Path) {
    let ours = staging.join("lib/modules").join(&k.version);
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ]
    .iter()
    .chain(DEP_INDEXES)
    .chain(BIN_INDEXES)
    {
        assert!(ours.join(f).is_file(), "{f} not written");
    }

    // depmod on a copy of the same module set.
    let base = tempfile::tempdir().unwrap();
    let theirs = base.path().join("lib/modules").join(&k.version);
    for item in walkdir::WalkDir::new(&ours) {
        let item = item.unwrap();
        let rel = item.path().strip_prefix(&ours).unwrap();
        let name = rel.to_string_lossy();
        if item.file_type().is_dir() {
            std::fs::create_dir_all(theirs.join(rel)).unwrap();
        } else if !DEP_INDEXES.contains(&name.as_ref()) && !BIN_INDEXES.contains(&name.as_ref()) {
            std::fs::copy(item.path(), theirs.join(rel)).unwrap();
        }
    }
    let st = Command::new("depmod")
        .arg("-b")
        .arg(base.path())
        .arg(&k.version)
        .status()
        .unwrap();
    assert!(st.success());

    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    let our_dep = parse_dep(&read(&ours, "modules.dep"));
    let their_dep = parse_dep(&read(&theirs, "modules.dep"));
    // Same lines in the same order (depmod follows modules.order, as we do)...
    let our_lines: Vec<&String> = our_dep.iter().map(|(m, _)| m).collect();
    let their_lines: Vec<&String> = their_dep.iter().map(|(m, _)| m).collect();
    assert_eq!(our_lines, their_lines);
    // ...with the same dependency sets; the order within a line is a
    // topological order, where depmod breaks ties by symbol-table order.
    for ((m, ours_list), (_, theirs_list)) in our_dep.iter().zip(&their_dep) {
        let a: BTreeSet<&String> = ours_list.iter().collect();
        let b: BTreeSet<&String> = theirs_list.iter().collect();
        assert_eq!(a, b, "dependencies of {m}");
    }
    let same_order = our_dep
        .iter()
        .zip(&their_dep)
        .filter(|(a, b)| a.1 == b.1)
        .count();
    eprintln!(
        "modules.dep: {same_order} of {} lines list their dependencies in depmod's exact order",
        our_dep.len()
    );
    assert_load_order("ours", &our_dep);
    assert_load_order("depmod's", &their_dep);

    // modules.dep: identical bytes, our symbol-order tie-breaks being depmod's.
    assert_eq!(read(&ours, "modules.dep"), read(&theirs, "modules.dep"));
    assert_same_bin_indexes(&ours, &theirs);

    // Aliases and softdeps: identical text.
    assert_eq!(read(&ours, "modules.alias"), read(&theirs, "modules.alias"));
    assert_eq!(
        read(&ours, "modules.softdep"),
        read(&theirs, "modules.softdep")
    );
    let devname = read(&ours, "modules.devname");
    assert!(
        devname.contains("\nloop loop-control c10:237\n"),
        "{devname}"
    );
    assert_eq!(devname, read(&theirs, "modules.devname"));

    // Deterministic: a second install gives the same bytes.
    let again = tempfile::tempdir().unwrap();
    let mut tree2 = Tree::new(again.path());
    install_modules(k, wanted, &mut tree2).unwrap();
    let again = again.path().join("lib/modules").join(&k.version);
    for f in DEP_INDEXES.iter().chain(BIN_INDEXES) {
        assert_eq!(
            std::fs::read(ours.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
}

/// The text indexes depmod generates from the modules themselves (the
/// `modules.builtin*` and `modules.order` files come with the kernel package).
const DEP_INDEXES: &[&str] = &[
    "modules.dep",
    "modules.alias",
    "modules.softdep",
    "modules.devname",
];

/// The binary indexes kmod's `modprobe` and udev (libkmod) read.
const BIN_INDEXES: &[&str] = &[
    "modules.dep.bin",
    "modules.alias.bin",
    "modules.symbols.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
];

/// Our `modules.*.bin` must be byte-identical to the host depmod's when it
/// is kmod 33 or older (it lays nodes out children first, as we do); kmod 34
/// writes parents first, so with it the bytes differ and only the lookups
/// are compared. The lookups are compared in every case, through the host's
/// `modprobe` (libkmod) reading each tree.
fn assert_same_bin_indexes(ours: &Path, theirs: &Path) {
    let out = Command::new("depmod").arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected depmod --version: {version}"));
    for f in BIN_INDEXES {
        let same = std::fs::read(ours.join(f)).unwrap() == std::fs::read(theirs.join(f)).unwrap();
        if major <= 33 {
            assert!(same, "{f} differs from depmod's ({})", version.trim());
        } else if !same {
            eprintln!("{f}: depmod {major} lays nodes out differently; comparing lookups");
        }
    }
    assert_same_lookups(ours, theirs);
}

/// Every module name, alias, exported symbol and a sample of built-in names
/// and aliases, resolved by the host's `modprobe --show-depends` in both
/// trees: the same answers, and all of them found.
fn assert_same_lookups(ours: &Path, theirs: &Path) {
    let read = |f: &str| std::fs::read_to_string(ours.join(f)).unwrap();
    let mut names: Vec<String> = Vec::new();
    for line in read("modules.dep").lines() {
        let path = line.split(':').next().unwrap();
        let base = path.rsplit('/').next().unwrap();
        names.push(base.split('.').next().unwrap().replace('-', "_"));
    }
    for line in read("modules.alias").lines().skip(1) {
        names.push(line.split_whitespace().nth(1).unwrap().to_string());
    }
    for line in read("modules.builtin").lines().take(20) {
        let base = line.rsplit('/').next().unwrap();
        names.push(base.split('.').next().unwrap().to_string());
    }
    let modinfo = std::fs::read(ours.join("modules.builtin.modinfo")).unwrap();
    let builtin_aliases = modinfo
        .split(|&b| b == 0)
        .filter_map(|r| {
            let r = String::from_utf8_lossy(r);
            r.split_once(".alias=").map(|(_, a)| a.to_string())
        })
        .take(20);
    names.extend(builtin_aliases);
    // depmod's text modules.symbols names every exported symbol (we write
    // only the binary index, which is what libkmod reads).
    let symbols = std::fs::read_to_string(theirs.join("modules.symbols")).unwrap();
    names.extend(
        symbols
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(str::to_string),
    );
    let version = ours.file_name().unwrap().to_string_lossy().into_owned();
    let resolve = |dir: &Path| {
        let root = dir.parent().unwrap().parent().unwrap().parent().unwrap();
        let out = Command::new("modprobe")
            .arg("-d")
            .arg(root)
            .args(["-S", &version, "--show-depends", "-a"])
            .args(&names)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "modprobe in {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).replace(&*root.to_string_lossy(), "ROOT")
    };
    let (a, b) = (resolve(ours), resolve(theirs));
    assert!(a.lines().count() >= names.len() / 2, "{a}");
    assert_eq!(a, b, "modprobe --show-depends answers differ");
}

#[test]
fn builtin_names_are_skipped_and_unknown_names_get_suggestions() {
    let k = kernel();
    let builtin_line = std::fs::read_to_string(k.modules_dir.join("modules.builtin")).unwrap();
    let builtin = builtin_line
        .lines()
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".ko")
        .to_string();
    let staging = tempfile::tempdir().unwrap();
    let mut tree = Tree::new(staging.path());
    let report = install_modules(&k, std::slice::from_ref(&builtin), &mut tree).unwrap();
    assert_eq!(report.builtin, [builtin.replace('-', "_")]);
    assert!(report.installed.is_empty());

    let err = install_modules(&k, &["virtio_nett".to_string()], &mut tree).unwrap_err();
    assert!(matches!(err, ModulesError::Unknown { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("virtio_nett") && msg.contains("virtio_net"),
        "{msg}"
    );
}

#[test]
fn the_kernel_is_found() {
    let k = kernel();
    assert!(k.vmlinuz.is_file());
    assert!(k.modules_dir.join("kernel").is_dir());
    assert!(
        k.vmlinuz
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(&k.version)
    );
}

// ---------------------------------------------------------------------------
// ELF closure.

/// Copies a host file to the same path under `root`, keeping the symlink
/// chain of its last component.
fn copy_host_chain(root: &Path, path: &Path) {
    let mut p = path.to_path_buf();
    for _ in 0..10 {
        let dest = root.join(p.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            if std::fs::symlink_metadata(&dest).is_err() {
                std::os::unix::fs::symlink(&t, &dest).unwrap();
            }
            p = if t.is_absolute() {
                t
            } else {
                p.parent().unwrap().join(t)
            };
        } else {
            std::fs::copy(&p, &dest).unwrap();
            return;
        }
    }
}

/// The host's `ldd` view of a binary: resolved library paths.
fn ldd(bin: &Path) -> Vec<String> {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("=> ").map(|(name, _)| name.trim().to_string()))
        .collect()
}

#[test]
fn closure_copies_libraries_and_interpreter_from_the_pool() {
    let bin = Path::new("/usr/bin/xz"); // liblzma + libc: a real two-level chain
    let staging = tempfile::tempdir().unwrap();
    let root = staging.path().join("root");
    // A merged-/usr tree, as the stager builds it.
    std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib64")).unwrap();
    std::fs::copy(bin, root.join("usr/bin/xz")).unwrap();

    // The pool: the host's libraries, unmerged layout (as .deb data is).
    let pool = staging.path().join("pool");
    let mut wanted = ldd(bin);
    assert!(
        wanted.iter().any(|l| l.starts_with("liblzma")),
        "{wanted:?}"
    );
    for lib in &wanted {
        let host = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]
            .iter()
            .map(|d| Path::new(d).join(lib))
            .find(|p| p.exists())
            .unwrap();
        copy_host_chain(&pool, &host);
    }
    copy_host_chain(&pool, Path::new("/lib64/ld-linux-x86-64.so.2"));
    // libc also sits in the pool under a second name: only the needed one comes.
    let mut tree = Tree::new(&root);
    let added = library_closure(&mut tree, Some(&pool)).unwrap();
    wanted.push("ld-linux-x86-64.so.2".into());
    for lib in &wanted {
        let resolved =
            ipa_build::stage::elf::resolve(&root, &Path::new("/lib/x86_64-linux-gnu").join(lib))
                .unwrap();
        assert!(resolved.is_some(), "{lib} not in the tree; added {added:?}");
    }
    assert!(
        ipa_build::stage::elf::resolve(&root, Path::new("/lib64/ld-linux-x86-64.so.2"))
            .unwrap()
            .is_some()
    );
    // Copies went through the merged-/usr links.
    assert!(added.iter().all(|p| p.starts_with("/usr/")), "{added:?}");
    // The file copied is byte-identical to the host's.
    let libc_real =
        ipa_build::stage::elf::resolve(&root, Path::new("/lib/x86_64-linux-gnu/libc.so.6"))
            .unwrap()
            .unwrap();
    assert_eq!(
        std::fs::read(root.join(libc_real.strip_prefix("/").unwrap())).unwrap(),
        std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap()
    );

    // Running it again adds nothing.
    assert!(library_closure(&mut tree, Some(&pool)).unwrap().is_empty());

    // The copied tree runs: chroot into it (we are root here).
    // xz must run in the closed tree.
    run::checked(
        Command::new("chroot")
            .arg(&root)
            .args(["/usr/bin/xz", "--version"]),
    );
}

#[test]
fn a_missing_library_names_binary_and_library() {
    let staging = tempfile::tempdir().unwrap();
    let root = staging.path().join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/xz", root.join("usr/bin/xz")).unwrap();
    let pool = staging.path().join("pool");
    // Only libc and the loader in the pool: liblzma is missing.
    copy_host_chain(&pool, Path::new("/lib/x86_64-linux-gnu/libc.so.6"));
    copy_host_chain(&pool, Path::new("/lib64/ld-linux-x86-64.so.2"));
    let mut tree = Tree::new(&root);
    let err = library_closure(&mut tree, Some(&pool)).unwrap_err();
    assert!(matches!(err, ElfError::Missing { .. }), "{err}");
    // The message says who needs what, then what to do about it.
    let msg = err.to_string();
    assert!(msg.starts_with("/usr/bin/xz needs liblzma.so.5, "), "{msg}");
    assert!(
        msg.ends_with("add the Debian package that ships it to the profile's packages"),
        "{msg}"
    );
}

#[test]
fn static_binaries_need_nothing() {
    let staging = tempfile::tempdir().unwrap();
    let root = staging.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    // A static binary built right here: cargo's own test harness is not
    // static, so use a tiny musl-free one from the C compiler.
    let src = root.join("s.c");
    std::fs::write(&src, "int main(void){return 0;}\n").unwrap();
    let st = Command::new("cc")
        .args(["-static", "-o"])
        .arg(root.join("bin/s"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(&src).unwrap();
    let mut tree = Tree::new(root);
    assert!(library_closure(&mut tree, None).unwrap().is_empty());
}
