//! End-to-end builds through the `ipa-build` binary, against the real Debian
//! archive configured on this machine.
//!
//! - tinyipa builds, its outputs verify and contain what a rescue needs;
//! - two builds with different caches and output dirs are byte-identical;
//! - a build as an unprivileged user gives the same bytes;
//! - bad input fails with a message naming the place, and leaves no file in
//!   the output directory.

#[path = "common/elements.rs"]
mod elements;
#[path = "common/run.rs"]
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const EPOCH: &str = "1700000000";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ipa-build")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A cache shared by the tests that only need indices (kept under target/ so
/// reruns are fast; content-addressed, so sharing is safe).
fn shared_cache() -> PathBuf {
    workspace().join("target/test-cache")
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("CI", "1")
        .current_dir(workspace())
        .output()
        .unwrap();
    eprintln!(
        "$ ipa-build {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sh(cmd: &str) -> String {
    run::stdout(Command::new("sh").arg("-c").arg(cmd))
}

struct Built {
    _dir: tempfile::TempDir,
    out: PathBuf,
    cache: PathBuf,
}

/// `ipa-build --profile PROFILE --output OUT --cache CACHE EXTRA...`: the
/// arguments every build here gives, then its own.
fn run_build(profile: &str, out: &Path, cache: &Path, extra: &[&str]) -> Output {
    let (out, cache) = (out.to_str().unwrap(), cache.to_str().unwrap());
    let args = ["--profile", profile, "--output", out, "--cache", cache];
    run(&[&args[..], extra].concat())
}

/// `ipa-build --profile tinyipa` into `out`, with its own cache.
fn build_tinyipa(out: &Path, cache: &Path) -> Output {
    run_build("tinyipa", out, cache, &[])
}

/// The first tinyipa build, shared by the tests that inspect it.
fn tinyipa() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cache = dir.path().join("cache");
        let o = build_tinyipa(&out, &cache);
        assert!(o.status.success(), "tinyipa build failed");
        Built {
            _dir: dir,
            out,
            cache,
        }
    })
}

#[test]
fn tinyipa_outputs_verify_and_hold_a_rescue_system() {
    let b = tinyipa();
    for f in [
        "tinyipa.kernel",
        "tinyipa.initramfs",
        "SHA256SUMS",
        "manifest.json",
        "tinyipa.kernel.sha512",
    ] {
        assert!(b.out.join(f).is_file(), "{f} missing");
    }
    sh(&format!(
        "cd {} && sha256sum -c --quiet SHA256SUMS && sha512sum -c --quiet tinyipa.initramfs.sha512",
        b.out.display()
    ));
    // The kernel is a bzImage.
    let kernel = std::fs::read(b.out.join("tinyipa.kernel")).unwrap();
    assert_eq!(&kernel[0x202..0x206], b"HdrS", "not a Linux boot image");

    // The initramfs is zstd + newc and lists cleanly with GNU cpio.
    let list = sh(&format!(
        "zstd -dc {} | cpio -t --quiet",
        b.out.join("tinyipa.initramfs").display()
    ));
    let has = |p: &str| list.lines().any(|l| l == p);
    for p in [
        "init",
        "bin",
        "usr/bin/busybox",
        "usr/bin/ipa-agent",
        "usr/sbin/dropbear",
        "etc/rc.d/S20-dhcp-all-interfaces",
        "etc/ipa-rescue-config",
        "dev/console",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib64/ld-linux-x86-64.so.2",
        "etc/ipa-build-release",
    ] {
        assert!(has(p), "{p} missing from the initramfs");
    }
    // (trixie's modules are `.ko.xz`.)
    for name in ["modules.dep", "virtio_net.ko"] {
        let under_modules = |l: &str| {
            ["", ".xz", ".zst"]
                .iter()
                .any(|ext| l.ends_with(&format!("/{name}{ext}")))
        };
        assert!(list.lines().any(under_modules), "{name} missing");
    }
    assert!(
        !list
            .lines()
            .any(|l| l.contains("ssh_host_") || l.contains("_host_key")),
        "a host key shipped"
    );
    assert!(
        !list.lines().any(|l| l.starts_with("usr/share/doc/")),
        "docs shipped"
    );

    // Ownership and modes come from the metadata map, not the build host.
    let long = sh(&format!(
        "zstd -dc {} | cpio -tv --quiet",
        b.out.join("tinyipa.initramfs").display()
    ));
    let line = |p: &str| {
        long.lines()
            .find(|l| l.ends_with(&format!(" {p}")))
            .unwrap_or_else(|| panic!("{p}"))
            .to_string()
    };
    assert!(
        line("dev/console").starts_with("crw-------"),
        "{}",
        line("dev/console")
    );
    assert!(line("tmp").starts_with("drwxrwxrwt"), "{}", line("tmp"));
    assert!(
        line("etc/shadow").starts_with("-rw-------"),
        "{}",
        line("etc/shadow")
    );
    assert!(line("init").contains(" root     root "), "{}", line("init"));

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["source_date_epoch"], 1700000000);
    assert_eq!(manifest["profile"]["name"], "tinyipa");
    let pkgs = manifest["packages"].as_array().unwrap();
    assert!(
        pkgs.iter()
            .any(|p| p["name"] == "busybox-static" && p["installed"] == "whole")
    );
    assert!(
        pkgs.iter()
            .any(|p| p["name"] == "libc6" && p["installed"] == "libraries")
    );
    assert!(
        manifest["kernel"]["modules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "virtio_net")
    );
    assert_eq!(manifest["agent"]["source"], "workspace");
    let elements: Vec<&str> = manifest["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        elements.iter().position(|e| *e == "kernel")
            < elements.iter().position(|e| *e == "busybox-init"),
        "busybox-init depends on kernel: {elements:?}"
    );
    // Budget from the profile holds.
    let initramfs = std::fs::metadata(b.out.join("tinyipa.initramfs"))
        .unwrap()
        .len();
    assert!(
        initramfs < 30 * 1024 * 1024,
        "initramfs is {initramfs} bytes"
    );
    check_contents(&manifest, &b.out);
}

/// The manifest says what each part put in the image, attributed to the
/// element that brought it in, and `ipa-build inspect` shows it per element.
fn check_contents(manifest: &serde_json::Value, out: &Path) {
    let contents = manifest["contents"]
        .as_array()
        .expect("contents in the manifest");
    let bytes = |c: &serde_json::Value| c["bytes"].as_u64().unwrap();
    let of = |owner: &str| contents.iter().find(|c| c["owner"] == owner);
    // e2fsprogs is named by rescue-tools, busybox by busybox-init.
    let e2fs = of("package e2fsprogs").expect("e2fsprogs listed");
    assert_eq!(e2fs["element"], "rescue-tools", "{e2fs}");
    assert!(bytes(e2fs) > 100_000, "{e2fs}");
    assert_eq!(
        of("package busybox-static").unwrap()["element"],
        "busybox-init"
    );
    assert_eq!(of("agent").unwrap()["element"], "agent");
    let libs = of("shared libraries").expect("shared libraries listed");
    assert!(libs.get("element").is_none(), "{libs}");
    // Largest first, and no more bytes than the image holds.
    assert!(contents.windows(2).all(|w| bytes(&w[0]) >= bytes(&w[1])));
    let total: u64 = contents.iter().map(bytes).sum();
    assert!(total <= manifest["uncompressed_bytes"].as_u64().unwrap());

    let o = run(&["inspect", out.to_str().unwrap()]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let section = text
        .split("what each element adds")
        .nth(1)
        .expect("inspect shows what each element adds");
    assert!(section.contains("rescue-tools"), "{text}");
    assert!(section.contains("shared libraries"), "{text}");
}

#[test]
fn two_builds_are_byte_identical() {
    let a = tinyipa();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("elsewhere/out");
    let cache = dir.path().join("other-cache");
    let o = build_tinyipa(&out, &cache);
    assert!(o.status.success());
    for f in [
        "tinyipa.kernel",
        "tinyipa.initramfs",
        "manifest.json",
        "SHA256SUMS",
    ] {
        let (x, y) = (
            std::fs::read(a.out.join(f)).unwrap(),
            std::fs::read(out.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between two builds");
    }
}

#[test]
fn an_unprivileged_user_builds_the_same_bytes() {
    let a = tinyipa();
    // SAFETY: geteuid has no preconditions.
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    let root = unsafe { geteuid() } == 0;
    let dir = tempfile::Builder::new()
        .prefix("ipa-rootless-")
        .tempdir_in("/tmp")
        .unwrap();
    let work = dir.path();
    // The user gets its own copy of the cache (offline build: no network
    // needed, and the same inputs) and the agent the first build made.
    sh(&format!(
        "cp -a {} {}/cache",
        a.cache.display(),
        work.display()
    ));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.out.join("manifest.json")).unwrap()).unwrap();
    let agent = workspace().join("target/agent/x86_64-unknown-linux-musl/agent/ipa-agent");
    let agent = if agent.is_file() {
        agent
    } else {
        workspace().join("target/agent/x86_64-unknown-linux-gnu/agent/ipa-agent")
    };
    sh(&format!(
        "cp {} {}/ipa-agent",
        agent.display(),
        work.display()
    ));
    sh(&format!("cp {} {}/ipa-build", bin(), work.display()));
    sh(&format!(
        "cp -r {}/profiles {}/elements {}/",
        workspace().display(),
        workspace().display(),
        work.display()
    ));
    let cmd = format!(
        "cd {w} && SOURCE_DATE_EPOCH={EPOCH} CI=1 ./ipa-build --profile tinyipa --offline --cache {w}/cache \
         --agent {w}/ipa-agent --output {w}/out --no-install",
        w = work.display()
    );
    let out = if root {
        let user = "ipa-build-test";
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", user])
            .output();
        sh(&format!("chown -R {user} {}", work.display()));
        Command::new("runuser")
            .args(["-u", user, "--", "sh", "-c", &cmd])
            .output()
            .unwrap()
    } else {
        Command::new("sh").arg("-c").arg(&cmd).output().unwrap()
    };
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rootless build failed");
    let ours = std::fs::read(work.join("out/tinyipa.initramfs")).unwrap();
    let theirs = std::fs::read(a.out.join("tinyipa.initramfs")).unwrap();
    // The agent is the same binary in both, so the whole image must match.
    assert_eq!(
        manifest["agent"]["sha256"],
        serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(work.join("out/manifest.json")).unwrap()
        )
        .unwrap()["agent"]["sha256"]
    );
    assert!(
        ours == theirs,
        "the rootless build differs from the root build"
    );
}

/// Writes `profile` as `<dir>/profiles/p.yaml` (extending the built-in
/// profiles) and runs a build of it; returns the output and the output dir.
fn build_fixture(profile: &str, extra: &[&str]) -> (Output, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    std::fs::write(dir.path().join("profiles/p.yaml"), profile).unwrap();
    let out = dir.path().join("out");
    let pp = dir.path().join("profiles");
    let mut args = vec!["--profiles-path", pp.to_str().unwrap()];
    let extra: Vec<String> = extra
        .iter()
        .map(|s| s.replace("{dir}", dir.path().to_str().unwrap()))
        .collect();
    args.extend(extra.iter().map(String::as_str));
    let o = run_build("p", &out, &shared_cache(), &args);
    (o, out, dir)
}

fn assert_failed_cleanly(o: &Output, out: &Path, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    assert!(!out.exists(), "a failed build created {}", out.display());
    let parent = out.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("ipa-build"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn typo_in_a_profile_key_names_file_line_and_suggestion() {
    let (o, out, _d) = build_fixture("extends: tinyipa\noutput:\n  compresion: zstd\n", &[]);
    assert_failed_cleanly(&o, &out, 3, &["p.yaml:3", "compresion", "compression"]);
}

#[test]
fn unknown_element_is_named_with_a_suggestion() {
    let (o, out, _d) = build_fixture("extends: tinyipa\nelements: [agnet]\n", &[]);
    assert_failed_cleanly(&o, &out, 3, &["p.yaml:2", "agnet", "agent"]);
}

#[test]
fn element_cycle_names_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    for (n, d) in [("ca", "cb"), ("cb", "ca")] {
        elements::write_element(dir.path(), n, &format!("description: x\ndepends: [{d}]\n"));
    }
    let ep = dir.path().to_str().unwrap().to_string();
    let (o, out, _d) = build_fixture(
        "extends: tinyipa\nelements: [ca]\n",
        &["--elements-path", &ep],
    );
    assert_failed_cleanly(&o, &out, 3, &["ca -> cb -> ca"]);
}

#[test]
fn element_file_entry_without_a_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let broken = elements::write_element(
        dir.path(),
        "broken",
        "description: x\nfiles:\n  - {path: /etc/missing.conf, mode: \"0600\"}\n",
    );
    std::fs::create_dir(broken.join("files")).unwrap();
    let ep = dir.path().to_str().unwrap().to_string();
    let (o, out, _d) = build_fixture(
        "extends: tinyipa\nelements: [broken]\n",
        &["--elements-path", &ep],
    );
    assert_failed_cleanly(&o, &out, 3, &["element.yaml:3", "/etc/missing.conf"]);
}

#[test]
fn unsupported_arch_is_refused_before_any_download() {
    let (o, out, _d) = build_fixture("extends: tinyipa\ndebian:\n  arch: s390x\n", &["--offline"]);
    assert_failed_cleanly(&o, &out, 3, &["debian.arch `s390x`", "amd64, arm64"]);
}

#[test]
fn unknown_package_is_named() {
    let (o, out, _d) = build_fixture("extends: tinyipa\npackages: [busybox-statik]\n", &[]);
    assert_failed_cleanly(&o, &out, 4, &["busybox-statik", "busybox-static"]);
}

#[test]
fn corrupted_cached_deb_fails_offline() {
    // Build once online into a private cache, then corrupt the busybox blob.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let b = tinyipa();
    sh(&format!("cp -a {} {}", b.cache.display(), cache.display()));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.out.join("manifest.json")).unwrap()).unwrap();
    let sha = manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "busybox-static")
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = walkdir::WalkDir::new(&cache)
        .into_iter()
        .flatten()
        .find(|e| e.file_name().to_string_lossy() == sha)
        .expect("busybox blob in the cache")
        .into_path();
    let mut data = std::fs::read(&blob).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&blob, data).unwrap();
    let out = dir.path().join("out");
    let o = run_build("tinyipa", &out, &cache, &["--offline"]);
    assert_failed_cleanly(&o, &out, 4, &["busybox-static", &sha[..12]]);
}

#[test]
fn bad_signature_is_refused() {
    // A file:// mirror whose InRelease is a real one with one byte changed.
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");
    // tinyipa names trixie, so that is the suite it asks the mirror for.
    std::fs::create_dir_all(mirror.join("dists/trixie")).unwrap();
    let inrelease = std::fs::read_to_string(real_inrelease()).unwrap();
    let tampered = inrelease.replacen("Suite:", "Suite: ", 1);
    assert_ne!(tampered, inrelease);
    std::fs::write(mirror.join("dists/trixie/InRelease"), tampered).unwrap();
    let profile = format!(
        "extends: tinyipa\ndebian:\n  sources:\n    - uri: file://{}\n      suites: [trixie]\n      components: [main]\n",
        mirror.display()
    );
    let (o, out, _d) = build_fixture(&profile, &[]);
    assert_failed_cleanly(&o, &out, 4, &["InRelease", "signature"]);
}

/// A genuine signed InRelease from the shared cache (fetching indices once if needed).
fn real_inrelease() -> PathBuf {
    let find = || {
        walkdir::WalkDir::new(shared_cache())
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .find(|e| {
                std::fs::read(e.path())
                    .is_ok_and(|d| d.starts_with(b"-----BEGIN PGP SIGNED MESSAGE"))
            })
            .map(|e| e.into_path())
    };
    if let Some(p) = find() {
        return p;
    }
    let (o, _, _d) = build_fixture("extends: tinyipa\npackages: [busybox-statik]\n", &[]);
    assert_eq!(o.status.code(), Some(4));
    find().expect("an InRelease in the cache after opening the archive")
}

#[test]
fn a_dynamic_agent_is_refused() {
    let (o, out, _d) = build_fixture(
        "description: no init\ninit: busybox\nelements: [kernel, agent]\noutput:\n  name: noinit\n",
        &["--agent", "/bin/true"],
    );
    // /bin/true is dynamic: refused before anything else is built.
    assert_failed_cleanly(&o, &out, 1, &["/bin/true", "static"]);
}

#[test]
fn list_completions_and_man_page_come_from_the_cli_definitions() {
    let text = |args: &[&str]| run::stdout(Command::new(bin()).args(args).current_dir(workspace()));
    let list = text(&["list"]);
    for name in [
        "tinyipa",
        "coreos",
        "busybox-init",
        "systemd-init",
        "ssh-dropbear",
        "ssh-openssh",
    ] {
        assert!(
            list.contains(&format!("  {name} ")),
            "{name} missing from `list`:\n{list}"
        );
    }
    let bash = text(&["completions", "bash"]);
    for word in ["publish", "inspect", "audit", "--profile", "--offline"] {
        assert!(
            bash.contains(word),
            "{word} missing from the bash completions"
        );
    }
    let man = text(&["man"]);
    assert!(
        man.contains(".TH ipa-build 1") && man.contains("\\-\\-profile"),
        "{}",
        &man[..200.min(man.len())]
    );
}

#[test]
fn keep_tree_refuses_a_non_empty_directory_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("keep");
    std::fs::create_dir(&keep).unwrap();
    std::fs::write(keep.join("precious"), b"mine").unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("empty-cache");
    let args = ["--offline", "--keep-tree", keep.to_str().unwrap()];
    let o = run_build("tinyipa", &out, &cache, &args);
    assert_failed_cleanly(&o, &out, 2, &["--keep-tree", "not empty"]);
    assert_eq!(std::fs::read(keep.join("precious")).unwrap(), b"mine");
    // Refused before any stage ran: not even the profile was reported.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("profile"), "{err}");
}
