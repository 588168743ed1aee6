//! The shipped tinyipa profile, built for real (Debian 13 trixie, its
//! drivers and `kernel.firmware: redistributable`), checked from the
//! outside:
//!
//! - every firmware file any module of the image names (read with the
//!   host's `modinfo`, not our reader) is in the manifest with that module,
//!   and every installed one is in the initramfs at its path, byte count
//!   equal, with the package and component the manifest says;
//! - `ipa-build inspect --hardware --json` on the build counts the same
//!   distinct PCI IDs as a plain reading of the image's `modules.alias`
//!   (and the built-in drivers' aliases), and finds the drivers the issue
//!   lists in the right class, and the full kernel from the cache.

#[path = "common/library_build.rs"]
mod library_build;
#[path = "common/run.rs"]
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;

use library_build::{Built, build_in, workspace};

/// The shipped tinyipa, built once, with its staging tree kept.
fn tinyipa() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| build_in(tempfile::tempdir().unwrap(), "tinyipa"))
}

fn manifest(b: &Built) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(b.out.join("manifest.json")).unwrap()).unwrap()
}

/// Image path → size, for every regular file of the build's initramfs,
/// listed by `cpio` from the host (decompressed by `zstd`).
fn initramfs_files(b: &Built) -> BTreeMap<String, u64> {
    let initramfs = &b.initramfs;
    let listing = run::stdout(Command::new("sh").arg("-c").arg(format!(
        "zstd -dc '{}' | cpio -itv --quiet",
        initramfs.display()
    )));
    listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let size = f.get(4)?.parse().ok()?;
            Some((format!("/{}", f.last()?.trim_start_matches("./")), size))
        })
        .collect()
}

#[test]
fn firmware_in_the_manifest_is_what_the_modules_name() {
    let b = tinyipa();
    let m = manifest(b);
    assert!(
        b.kernel_version.starts_with("6.12."),
        "{}",
        b.kernel_version
    );
    let records = m["firmware"].as_array().expect("a firmware list");

    // What the host's modinfo says each module of the image names.
    let modules_dir = b.tree.join("usr/lib/modules").join(&b.kernel_version);
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in walkdir::WalkDir::new(&modules_dir) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.contains(".ko") {
            continue;
        }
        let module = name.split(".ko").next().unwrap().replace('-', "_");
        let out = run::stdout(
            Command::new("modinfo")
                .args(["-F", "firmware"])
                .arg(e.path()),
        );
        for f in out.lines().filter(|l| !l.is_empty()) {
            named
                .entry(f.to_string())
                .or_default()
                .insert(module.clone());
        }
    }
    assert!(named.len() > 20, "the drivers name firmware: {named:?}");
    for must in ["bnx2x", "qed", "ice", "cxgb4", "r8169"] {
        assert!(
            named.values().any(|m| m.contains(must)),
            "{must} names no firmware?"
        );
    }

    let in_manifest: BTreeMap<String, &serde_json::Value> = records
        .iter()
        .map(|r| (r["file"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(
        in_manifest.keys().collect::<BTreeSet<_>>(),
        named.keys().collect::<BTreeSet<_>>(),
        "the manifest lists exactly the files the modules name"
    );
    let files = initramfs_files(b);
    let mut nonfree = 0;
    for (file, modules) in &named {
        let r = in_manifest[file];
        let listed: BTreeSet<String> = r["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(&listed, modules, "{file}");
        match r["status"].as_str().unwrap() {
            "installed" => {
                let path = r["path"].as_str().unwrap();
                assert!(path.starts_with("/usr/lib/firmware/"), "{path}");
                assert_eq!(
                    files.get(path),
                    Some(&r["size"].as_u64().unwrap()),
                    "{path}"
                );
                let component = r["component"].as_str().unwrap();
                assert!(
                    ["main", "non-free-firmware"].contains(&component),
                    "{file}: {component}"
                );
                assert!(r["package"].as_str().unwrap().starts_with("firmware-"));
                nonfree += usize::from(component == "non-free-firmware");
            }
            "missing" => assert!(r.get("package").is_none(), "{r}"),
            other => panic!("{file}: status {other}"),
        }
    }
    // The drivers the issue names run with their firmware.
    for f in [
        "bnx2x/bnx2x-e2-7.13.21.0.fw",
        "intel/ice/ddp/ice.pkg",
        "qed/qed_init_values_zipped-8.59.1.0.bin",
    ] {
        assert_eq!(in_manifest[f]["status"], "installed", "{f}");
        assert_eq!(in_manifest[f]["component"], "non-free-firmware", "{f}");
    }
    assert!(nonfree > 0);
    // Only those files: nothing else under /lib/firmware.
    let under: Vec<&String> = files
        .keys()
        .filter(|p| p.starts_with("/usr/lib/firmware/"))
        .collect();
    let installed = records
        .iter()
        .filter(|r| r["status"] == "installed")
        .count();
    assert_eq!(under.len(), installed, "{under:?}");

    // `inspect` says it plainly.
    let text = run::stdout(
        Command::new(env!("CARGO_BIN_EXE_ipa-build"))
            .arg("inspect")
            .arg(&b.out),
    );
    assert!(text.contains("from non-free-firmware"), "{text}");
    assert!(
        text.contains("firmware-bnx2x [non-free-firmware]"),
        "{text}"
    );
}

/// Distinct `vendor:device` pairs of the PCI aliases in `text` lines
/// (`alias pci:v...` or `mod.alias=pci:v...`) with both IDs given.
fn pci_ids(lines: impl Iterator<Item = String>) -> BTreeSet<String> {
    lines
        .filter_map(|l| {
            let a = l.split("pci:v").nth(1)?;
            let (v, rest) = a.split_at(8.min(a.len()));
            let d = rest.strip_prefix('d')?.get(..8)?;
            let hex = |s: &str| s.len() == 8 && s.chars().all(|c| c.is_ascii_hexdigit());
            (hex(v) && hex(d)).then(|| format!("{}:{}", &v[4..], &d[4..]).to_lowercase())
        })
        .collect()
}

#[test]
fn inspect_hardware_counts_the_images_pci_ids() {
    let b = tinyipa();
    let out = Command::new(env!("CARGO_BIN_EXE_ipa-build"))
        .args(["inspect", "--hardware", "--json", "--cache"])
        .arg(workspace().join("target/test-cache"))
        .arg(&b.out)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let modules_dir = b.tree.join("usr/lib/modules").join(&b.kernel_version);
    let alias = std::fs::read_to_string(modules_dir.join("modules.alias")).unwrap();
    let builtin = std::fs::read(modules_dir.join("modules.builtin.modinfo")).unwrap();
    let expected = pci_ids(
        alias.lines().map(str::to_string).chain(
            builtin
                .split(|&c| c == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned()),
        ),
    );
    assert_eq!(
        r["coverage"]["pci_ids"].as_u64().unwrap() as usize,
        expected.len()
    );

    let class = |c: &str| &r["coverage"]["classes"][c];
    let has = |c: &str, key: &str, v: &str| {
        class(c)[key]
            .as_array()
            .unwrap_or_else(|| panic!("{c}.{key}: {r}"))
            .iter()
            .any(|x| x == v)
    };
    for m in [
        "megaraid_sas",
        "mpt3sas",
        "hpsa",
        "smartpqi",
        "nvme",
        "ahci",
        "usb_storage",
    ] {
        assert!(has("storage", "modules", m), "storage lacks {m}");
    }
    for m in [
        "e1000e",
        "ice",
        "bnx2x",
        "mlx5_core",
        "qede",
        "r8169",
        "ena",
        "vmxnet3",
    ] {
        assert!(has("network", "modules", m), "network lacks {m}");
    }
    // A Dell PERC H730 (MegaRAID SAS-3 3108), an Intel 82574L, every xHCI
    // controller by class, USB sticks by interface class.
    assert!(has("storage", "pci_ids", "1000:005d"));
    assert!(has("network", "pci_ids", "8086:10d3"));
    assert!(has("usb", "pci_classes", "0c:03:30"));
    assert!(has("storage", "usb_interfaces", "08/06/50"));

    let full = &r["full_kernel"];
    assert!(
        full.is_object(),
        "the kernel package is in the test cache: {r}"
    );
    let (image, all) = (
        r["coverage"]["pci_ids"].as_u64().unwrap(),
        full["pci_ids"].as_u64().unwrap(),
    );
    assert!(image > 1000 && all > image, "{image} of {all}");
    eprintln!(
        "tinyipa covers {image} PCI IDs, {}% of the full kernel's {all}",
        full["percent"]
    );
}
