//! Debian fetch, end to end: the host's real archive (signed indices,
//! resolution, downloads, unpack), golden error messages against local
//! `file://` mirrors signed with a throwaway key, version order against the
//! real `dpkg`, and hostile `.deb`s that must not write outside the tree.
//!
//! Tests that need the network use the host's APT sources; their cache lives
//! in `CARGO_TARGET_TMPDIR` so a second run is warm.

#[path = "common/run.rs"]
mod common_run;
use common_run::checked;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipa_build::cache::Cache;
use ipa_build::debian::{
    Archive, ArchiveConfig, DebianError, Package, Source, deb, host_sources, version,
};
use ipa_build::report::Reporter;
use ipa_build::stage::tree::{Special, Tree};

fn run(cmd: &mut Command) {
    checked(cmd);
}

fn sha256(bytes: &[u8]) -> String {
    ipa_build::cache::hash_reader(bytes).unwrap()
}

// ---------------------------------------------------------------------------
// The real archive
// ---------------------------------------------------------------------------

fn real_config() -> ArchiveConfig {
    ArchiveConfig {
        sources: host_sources(Path::new("/etc/apt")).unwrap(),
        arch: "amd64".into(),
    }
}

fn real_cache() -> Cache {
    Cache::open(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-cache")).unwrap()
}

/// A tree laid out like a merged-/usr Debian root.
fn merged_usr_tree(dir: &Path) -> Tree {
    for d in ["usr/bin", "usr/sbin", "usr/lib"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    for (l, t) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")] {
        std::os::unix::fs::symlink(t, dir.join(l)).unwrap();
    }
    Tree::new(dir)
}

fn no_docs(p: &Path) -> bool {
    !p.starts_with("/usr/share/doc") && !p.starts_with("/usr/share/man")
}

#[test]
fn real_archive_resolve_fetch_unpack() {
    let cache = real_cache();
    let reporter = Reporter::quiet();
    let t = std::time::Instant::now();
    let archive = Archive::open(&real_config(), &cache, false, &reporter).unwrap();
    eprintln!(
        "opened {} packages in {:.2}s",
        archive.len(),
        t.elapsed().as_secs_f64()
    );
    assert!(archive.len() > 50_000);

    let closure = archive
        .resolve(&["busybox-static".into(), "dropbear-bin".into()])
        .unwrap();
    let names: Vec<&str> = closure.iter().map(|p| p.name.as_str()).collect();
    for want in [
        "busybox-static",
        "dropbear-bin",
        "libc6",
        "zlib1g",
        "libtomcrypt1",
        "libtommath1",
        "libgcc-s1",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        !names.contains(&"dropbear"),
        "Recommends/metapackage pulled in: {names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "closure must be sorted by name");
    // Highest version across bookworm, -updates and -security.
    for p in &closure {
        for other in archive.versions(&p.name) {
            assert!(
                version::compare(&p.version, &other.version).is_ge(),
                "{} {} chosen over {} from {}",
                p.name,
                p.version,
                other.version,
                other.suite
            );
        }
    }
    // The same closure as apt computes from the same sources (apt-cache is
    // the oracle; these two packages have no alternatives to choose between).
    let apt = Command::new("apt-cache")
        .args([
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
        ])
        .args([
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            "busybox-static",
            "dropbear-bin",
        ])
        .output()
        .unwrap();
    let mut apt_names: Vec<String> = String::from_utf8_lossy(&apt.stdout)
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .map(str::to_string)
        .collect();
    apt_names.sort();
    apt_names.dedup();
    assert_eq!(
        names, apt_names,
        "apt-cache disagrees (run apt-get update if its lists are missing)"
    );

    let kernel = archive.resolve_kernel("linux-image-amd64").unwrap();
    let abi = kernel
        .name
        .strip_prefix("linux-image-")
        .unwrap()
        .strip_suffix("-amd64")
        .unwrap();
    assert!(
        abi.split(['.', '-']).all(|p| p.parse::<u32>().is_ok()),
        "not a concrete kernel: {}",
        kernel.name
    );
    assert!(kernel.size > 30_000_000, "{kernel:?}");

    // `mount` ships /bin/mount setuid root: merged-/usr redirection plus metadata.
    let mount = archive
        .resolve(&["mount".into()])
        .unwrap()
        .into_iter()
        .find(|p| p.name == "mount")
        .unwrap();
    let wanted: Vec<Package> = closure
        .iter()
        .filter(|p| p.name == "busybox-static" || p.name == "dropbear-bin")
        .cloned()
        .chain([mount])
        .collect();
    let paths = archive.fetch(&wanted, &cache, &reporter).unwrap();
    assert_eq!(paths.len(), 3);
    for (p, pkg) in paths.iter().zip(&wanted) {
        assert_eq!(sha256(&fs::read(p).unwrap()), pkg.sha256);
    }

    let dir = tempfile::tempdir().unwrap();
    let mut tree = merged_usr_tree(dir.path());
    let mut written = Vec::new();
    for p in &paths {
        written.extend(deb::unpack(p, &mut tree, &no_docs).unwrap());
    }
    let root = dir.path();
    assert!(
        fs::symlink_metadata(root.join("bin"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "bin symlink replaced"
    );
    assert!(root.join("usr/bin/busybox").is_file());
    assert!(root.join("usr/sbin/dropbear").is_file());
    assert!(
        root.join("usr/bin/mount").is_file(),
        "./bin/mount not redirected to usr/bin"
    );
    assert!(written.contains(&PathBuf::from("/usr/bin/mount")));
    assert!(!root.join("usr/share/doc").exists(), "filter ignored");
    let meta = tree
        .meta(Path::new("/usr/bin/mount"))
        .expect("setuid mount recorded");
    assert_eq!((meta.uid, meta.gid, meta.mode), (0, 0, Some(0o4755)));
    assert!(
        tree.meta(Path::new("/usr/bin/busybox")).is_none(),
        "plain 0755 root file needs no record"
    );
    // Compare with dpkg-deb's own listing: every kept regular file is there with its size.
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&paths[0])
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let busybox_line = listing
        .lines()
        .find(|l| l.ends_with("./bin/busybox"))
        .unwrap();
    let size: u64 = busybox_line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        fs::metadata(root.join("usr/bin/busybox")).unwrap().len(),
        size
    );
}

#[test]
fn unknown_package_suggests_nearest_name() {
    let archive = Archive::open(&real_config(), &real_cache(), false, &Reporter::quiet()).unwrap();
    let e = archive
        .resolve(&["busybox-statc".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("unknown package `busybox-statc`; did you mean busybox-static"),
        "{e}"
    );
}

#[test]
fn bad_signature_on_a_real_inrelease() {
    let src = &real_config().sources[0];
    let suite = &src.suites[0];
    let url = format!("{}/dists/{suite}/InRelease", src.uri);
    let transport = ipa_build::debian::fetch::Transport::new();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut transport.open(&url).unwrap(), &mut text).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dists = dir.path().join("mirror/dists").join(suite);
    fs::create_dir_all(&dists).unwrap();
    // Flip one byte inside the signed text.
    let at = text.windows(7).position(|w| w == b"Origin:").unwrap() + 8;
    text[at] ^= 0x01;
    fs::write(dists.join("InRelease"), &text).unwrap();
    let uri = format!("file://{}", dir.path().join("mirror").display());
    let cfg = ArchiveConfig {
        sources: vec![Source {
            uri: uri.clone(),
            suites: vec![suite.clone()],
            components: vec!["main".into()],
            keyring: src.keyring.clone(),
        }],
        arch: "amd64".into(),
    };
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let e = Archive::open(&cfg, &cache, false, &Reporter::quiet()).unwrap_err();
    assert!(matches!(e, DebianError::BadSignature { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "the signature of {uri}/dists/{suite}/InRelease does not verify with keyring {}:\n",
            src.keyring.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("gpgv: BAD signature from"),
        "gpgv's message missing: {msg}"
    );
    // Nothing may be remembered as "last verified" for offline use.
    let e = Archive::open(&cfg, &cache, true, &Reporter::quiet()).unwrap_err();
    assert!(matches!(e, DebianError::OfflineMissing { .. }), "{e}");
}

// ---------------------------------------------------------------------------
// A local mirror signed with a throwaway key
// ---------------------------------------------------------------------------

struct Mirror {
    dir: tempfile::TempDir,
    keyring: PathBuf,
    gnupg: PathBuf,
}

impl Mirror {
    fn root(&self) -> PathBuf {
        self.dir.path().join("mirror")
    }

    /// A `.deb` named `name` holding `files`, built beside the mirror.
    fn deb(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        build_deb(self.dir.path(), name, files)
    }

    /// Where [`Mirror::cache`] keeps its files.
    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Opens this mirror's archive quietly, through `cache`.
    fn open(&self, cache: &Cache, offline: bool) -> Result<Archive, DebianError> {
        Archive::open(&self.config(), cache, offline, &Reporter::quiet())
    }

    /// A cache of this mirror's own, empty at first.
    fn cache(&self) -> Cache {
        Cache::open(&self.cache_dir()).unwrap()
    }

    fn uri(&self) -> String {
        format!("file://{}", self.root().display())
    }

    fn config(&self) -> ArchiveConfig {
        ArchiveConfig {
            sources: vec![Source {
                uri: self.uri(),
                suites: vec!["test".into()],
                components: vec!["main".into()],
                keyring: self.keyring.clone(),
            }],
            arch: "amd64".into(),
        }
    }

    /// [`Mirror::publish`] with no `Valid-Until` and nothing tampered with.
    fn publish_signed(&self, debs: &[(&str, &str, &str, PathBuf)]) {
        self.publish(debs, None, false)
    }

    /// Writes `Packages.gz` for `debs` (name, version, depends, file) and a
    /// clearsigned `InRelease`; `tamper` edits `Packages.gz` after signing.
    fn publish(
        &self,
        debs: &[(&str, &str, &str, PathBuf)],
        valid_until: Option<&str>,
        tamper: bool,
    ) {
        let mut packages = String::new();
        let pool = self.root().join("pool");
        fs::create_dir_all(&pool).unwrap();
        for (name, ver, deps, file) in debs {
            let bytes = fs::read(file).unwrap();
            let fname = format!("pool/{name}_{ver}_amd64.deb");
            fs::write(self.root().join(&fname), &bytes).unwrap();
            packages.push_str(&format!(
                "Package: {name}\nVersion: {ver}\nArchitecture: amd64\nDepends: {deps}\nFilename: {fname}\n\
                 Size: {}\nSHA256: {}\nDescription: test\n\n",
                bytes.len(),
                sha256(&bytes)
            ));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(packages.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let dists = self.root().join("dists/test");
        fs::create_dir_all(dists.join("main/binary-amd64")).unwrap();
        let mut release = String::from(
            "Origin: test\nSuite: test\nCodename: test\nDate: Sat, 21 Nov 2026 00:00:00 UTC\n",
        );
        if let Some(v) = valid_until {
            release.push_str(&format!("Valid-Until: {v}\n"));
        }
        release.push_str(&format!(
            "SHA256:\n {} {} main/binary-amd64/Packages.gz\n",
            sha256(&gz),
            gz.len()
        ));
        let mut served = gz.clone();
        if tamper {
            let n = served.len();
            served[n - 9] ^= 0xff; // inside the gzip CRC trailer: still "a file", wrong bytes
        }
        fs::write(dists.join("main/binary-amd64/Packages.gz"), &served).unwrap();
        fs::write(dists.join("Release"), &release).unwrap();
        let _ = fs::remove_file(dists.join("InRelease"));
        run(Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--batch", "--yes", "--clearsign", "-o"])
            .arg(dists.join("InRelease"))
            .arg(dists.join("Release")));
    }
}

fn mirror() -> Mirror {
    let dir = tempfile::tempdir().unwrap();
    let gnupg = dir.path().join("gnupg");
    fs::create_dir(&gnupg).unwrap();
    fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    run(Command::new("gpg").env("GNUPGHOME", &gnupg).args([
        "--batch",
        "--passphrase",
        "",
        "--quick-gen-key",
        "ipa-build test <test@invalid>",
        "ed25519",
        "sign",
        "never",
    ]));
    let keyring = dir.path().join("test-keyring.gpg");
    let out = Command::new("gpg")
        .env("GNUPGHOME", &gnupg)
        .args(["--export"])
        .output()
        .unwrap();
    assert!(!out.stdout.is_empty());
    fs::write(&keyring, out.stdout).unwrap();
    Mirror {
        dir,
        keyring,
        gnupg,
    }
}

/// Builds a real `.deb` with `dpkg-deb -b` holding `files` (path, contents).
fn build_deb(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(format!("build-{name}"));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: t <t@invalid>\nDescription: t\n"),
    )
    .unwrap();
    for (p, c) in files {
        let f = root.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, c).unwrap();
    }
    let out = dir.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "-b"])
        .arg(&root)
        .arg(&out));
    out
}

/// A mirror of two packages of one file each, `alpha` and `beta`, version
/// 1.0, with these `Depends:`.
fn alpha_and_beta(alpha_depends: &str, beta_depends: &str) -> Mirror {
    let m = mirror();
    let a = m.deb("alpha", &[("usr/bin/alpha", "alpha\n")]);
    let b = m.deb("beta", &[("usr/lib/beta", "beta\n")]);
    m.publish_signed(&[
        ("alpha", "1.0", alpha_depends, a),
        ("beta", "1.0", beta_depends, b),
    ]);
    m
}

#[test]
fn local_mirror_online_then_offline() {
    let m = alpha_and_beta("beta (>= 1.0)", "");
    let cache_dir = m.cache_dir();
    let cache = m.cache();
    let q = Reporter::quiet();

    // Offline with an empty cache names exactly what is missing.
    let e = m.open(&cache, true).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "--offline, but the cache at {} lacks:\n  signed index {}/dists/test/InRelease\n  \
             run the same build once without --offline to fill it",
            cache_dir.display(),
            m.uri()
        )
    );

    // Online fills the cache...
    let online = m.open(&cache, false).unwrap();
    let pkgs = online.resolve(&["alpha".into()]).unwrap();
    assert_eq!(
        pkgs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "beta"]
    );

    // ...offline: indices are there (signature re-checked) but the .debs are not.
    let offline = m.open(&cache, true).unwrap();
    let e = offline.fetch(&pkgs, &cache, &q).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "--offline, but the cache at {} lacks:\n  alpha 1.0 ({u}/pool/alpha_1.0_amd64.deb)\n  beta 1.0 \
             ({u}/pool/beta_1.0_amd64.deb)\n  run the same build once without --offline to fill it",
            cache_dir.display(),
            u = m.uri()
        )
    );
    let paths = online.fetch(&pkgs, &cache, &q).unwrap();
    let again = offline.fetch(&pkgs, &cache, &q).unwrap();
    assert_eq!(paths, again);

    // A corrupted cached .deb: offline is an error naming package and path.
    fs::write(&paths[1], b"garbage").unwrap();
    let e = offline.fetch(&pkgs, &cache, &q).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "the cached .deb of beta 1.0 is corrupted ({}: sha256 {}, expected {}) and --offline forbids \
             downloading it again\n  delete that file and run once without --offline",
            paths[1].display(),
            sha256(b"garbage"),
            pkgs[1].sha256
        )
    );
    // Online, it is dropped and downloaded again.
    let fixed = online.fetch(&pkgs, &cache, &q).unwrap();
    assert_eq!(sha256(&fs::read(&fixed[1]).unwrap()), pkgs[1].sha256);

    // The offline InRelease is verified again: a tampered cached copy fails.
    let sha = cache_blob_of_inrelease(&cache_dir);
    let mut bytes = fs::read(&sha).unwrap();
    let at = bytes.windows(7).position(|w| w == b"Origin:").unwrap() + 8;
    bytes[at] ^= 1;
    fs::write(&sha, &bytes).unwrap();
    assert!(m.open(&cache, true).is_err());
}

/// The one cached blob that is a clearsigned file.
fn cache_blob_of_inrelease(cache: &Path) -> PathBuf {
    fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            fs::read(p)
                .unwrap()
                .starts_with(b"-----BEGIN PGP SIGNED MESSAGE")
        })
        .unwrap()
}

#[test]
fn packages_index_not_matching_inrelease() {
    let m = mirror();
    let a = m.deb("alpha", &[("usr/bin/alpha", "a\n")]);
    m.publish(&[("alpha", "1.0", "", a)], None, true);
    let cache = m.cache();
    let e = m.open(&cache, false).unwrap_err();
    assert!(matches!(e, DebianError::HashMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}/dists/test/main/binary-amd64/Packages.gz does not match the hash in its signed index: expected sha256 ",
            m.uri()
        )),
        "{msg}"
    );
    assert!(msg.contains("--mirror URL"), "{msg}");
}

#[test]
fn expired_valid_until_is_refused_online() {
    let m = mirror();
    let a = m.deb("alpha", &[("usr/bin/alpha", "a\n")]);
    m.publish(
        &[("alpha", "1.0", "", a.clone())],
        Some("Mon, 01 Jan 2024 00:00:00 UTC"),
        false,
    );
    let cache = m.cache();
    let e = m.open(&cache, false).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}/dists/test/InRelease expired: Valid-Until is Mon, 01 Jan 2024 00:00:00 UTC but the clock says ",
            m.uri()
        )),
        "{e}"
    );

    // Valid for two more seconds: fetched online, then it expires. Online
    // refuses it; offline still builds from what was verified in time.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let out = Command::new("date")
        .args(["-u", "-R", "-d", &format!("@{soon}")])
        .output()
        .unwrap();
    let soon = String::from_utf8(out.stdout).unwrap();
    m.publish(&[("alpha", "1.0", "", a)], Some(soon.trim()), false);
    m.open(&cache, false).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let e = m.open(&cache, false).unwrap_err();
    assert!(matches!(e, DebianError::Expired { .. }), "{e}");
    let offline = m.open(&cache, true).unwrap();
    assert_eq!(offline.versions("alpha").len(), 1);
}

#[test]
fn unknown_dependency_names_the_chain() {
    let m = alpha_and_beta("beta", "libgamma1");
    let cache = m.cache();
    let archive = m.open(&cache, false).unwrap();
    let e = archive.resolve(&["alpha".into()]).unwrap_err().to_string();
    assert_eq!(e, "unknown package `libgamma1` (needed by alpha -> beta)");
}

// ---------------------------------------------------------------------------
// Versions against dpkg
// ---------------------------------------------------------------------------

#[test]
fn version_order_matches_dpkg() {
    let mut versions: Vec<String> = [
        "0",
        "1",
        "1.0",
        "1.0-1",
        "1.0-0",
        "1.0~rc1",
        "1.0~rc1-1",
        "1.0~~",
        "1.0~",
        "1.0+b1",
        "1.0a",
        "1.0.1",
        "1:0.9",
        "2:0",
        "1.10",
        "1.9",
        "1.01",
        "1.001",
        "2.36-9+deb12u4",
        "2.36-9+deb12u10",
        "2.36-9",
        "2.36",
        "6.1.0-28",
        "6.1.119-1",
        "6.1.0-9",
        "1.2.3-1ubuntu1",
        "1.2.3-1",
        "1.2.3-1.1",
        "1.2.3-1+b2",
        "a",
        "A",
        "1.0+dfsg",
        "1.0-dfsg",
        "9.20230810-1",
        "2022.11.3",
        "1.35.0-4+b3",
        "2019.78-2",
        "0.0+git20230101",
        "1~a",
        "1~b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Plus pseudo-random versions built from the characters that matter.
    let alphabet: Vec<char> = "0129.~+-:ab".chars().collect();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..60 {
        let mut v = String::from("1");
        for _ in 0..(seed % 7) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let c = alphabet[(seed >> 33) as usize % alphabet.len()];
            if c == ':' && v.contains(':') {
                continue;
            }
            v.push(c);
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        // dpkg rejects an epoch that is not a number and a trailing `-`.
        let valid = Command::new("dpkg")
            .args(["--validate-version", &v])
            .status()
            .unwrap()
            .success();
        if valid && !v.ends_with('-') && !v.ends_with(':') {
            versions.push(v);
        }
    }
    let mut checked = 0;
    for (i, a) in versions.iter().enumerate() {
        for b in versions.iter().skip(i + 1).step_by(3) {
            let ours = version::compare(a, b);
            let dpkg = |op: &str| {
                Command::new("dpkg")
                    .args(["--compare-versions", a, op, b])
                    .status()
                    .unwrap()
                    .success()
            };
            let theirs = if dpkg("lt") {
                std::cmp::Ordering::Less
            } else if dpkg("eq") {
                std::cmp::Ordering::Equal
            } else {
                std::cmp::Ordering::Greater
            };
            assert_eq!(ours, theirs, "{a} vs {b}");
            checked += 1;
        }
    }
    assert!(checked > 500, "only {checked} pairs");
}

// ---------------------------------------------------------------------------
// Hand-made .debs: metadata and hostile entries
// ---------------------------------------------------------------------------

enum E<'a> {
    File(&'a str, &'a [u8], u32, u64, u64),
    Dir(&'a str, u32),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
}

/// Writes a data.tar.gz with raw names (the tar crate's safe setters refuse
/// `..`, which is exactly what we need to produce) and wraps it with `ar`.
fn hand_deb(dir: &Path, name: &str, entries: &[E<'_>]) -> PathBuf {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let set_name = |h: &mut tar::Header, n: &str| {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..n.len()].copy_from_slice(n.as_bytes());
        };
        let set_link = |h: &mut tar::Header, n: &str| {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.linkname = [0; 100];
            gnu.linkname[..n.len()].copy_from_slice(n.as_bytes());
        };
        let data: &[u8] = match e {
            E::File(n, data, mode, uid, gid) => {
                set_name(&mut h, n);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(data.len() as u64);
                data
            }
            E::Dir(n, mode) => {
                set_name(&mut h, n);
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                &[]
            }
            E::Link(n, t) | E::Hard(n, t) => {
                set_name(&mut h, n);
                set_link(&mut h, t);
                h.set_entry_type(if matches!(e, E::Link(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_size(0);
                &[]
            }
            E::Char(n, maj, min) => {
                set_name(&mut h, n);
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o620);
                h.set_gid(5);
                h.set_device_major(*maj).unwrap();
                h.set_device_minor(*min).unwrap();
                h.set_size(0);
                &[]
            }
        };
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }
    let data = tar.into_inner().unwrap().finish().unwrap();
    let work = dir.join(format!("ar-{name}"));
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("debian-binary"), "2.0\n").unwrap();
    let mut control = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let ctl = format!(
        "Package: {name}\nVersion: 1\nArchitecture: amd64\nMaintainer: t\nDescription: t\n"
    );
    let mut h = tar::Header::new_gnu();
    h.set_size(ctl.len() as u64);
    h.set_mode(0o644);
    control
        .append_data(&mut h, "./control", ctl.as_bytes())
        .unwrap();
    fs::write(
        work.join("control.tar.gz"),
        control.into_inner().unwrap().finish().unwrap(),
    )
    .unwrap();
    fs::write(work.join("data.tar.gz"), data).unwrap();
    let out = dir.join(format!("{name}.deb"));
    run(Command::new("ar")
        .current_dir(&work)
        .arg("rc")
        .arg(&out)
        .args(["debian-binary", "control.tar.gz", "data.tar.gz"]));
    out
}

#[test]
fn unpack_metadata_links_devices_and_merged_usr() {
    let dir = tempfile::tempdir().unwrap();
    let deb_path = hand_deb(
        dir.path(),
        "meta",
        &[
            E::Dir("./", 0o755),
            E::Dir("./bin/", 0o755),
            E::File("./bin/su", b"su", 0o4755, 0, 0),
            E::Dir("./var/mail/", 0o2775),
            E::File("./etc/shadowish", b"x", 0o640, 0, 42),
            E::File("./usr/lib/data", b"data", 0o644, 0, 0),
            E::Hard("./usr/lib/data2", "./usr/lib/data"),
            E::Link("./usr/lib/abs", "/etc/shadowish"),
            E::Char("./dev/console", 5, 1),
            E::Dir("./tmp/", 0o1777),
            E::File("./usr/share/doc/meta/README", b"doc", 0o644, 0, 0),
            // Over an existing directory a symlink entry is skipped, as dpkg does.
            E::Link("./usr/lib", "/nowhere"),
        ],
    );
    // dpkg-deb agrees the archive is a valid .deb.
    run(Command::new("dpkg-deb").arg("-c").arg(&deb_path));

    let root = dir.path().join("root");
    let mut tree = merged_usr_tree(&root);
    let written = deb::unpack(&deb_path, &mut tree, &no_docs).unwrap();
    assert!(
        written.contains(&PathBuf::from("/usr/bin/su")),
        "{written:?}"
    );
    assert!(!written.iter().any(|p| p.starts_with("/usr/share/doc")));
    assert!(
        fs::symlink_metadata(root.join("bin"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(root.join("usr/bin/su")).unwrap(), b"su");
    let m = |p: &str| tree.meta(Path::new(p)).copied();
    assert_eq!(m("usr/bin/su").unwrap().mode, Some(0o4755));
    assert_eq!(m("var/mail").unwrap().mode, Some(0o2775));
    assert_eq!(m("tmp").unwrap().mode, Some(0o1777));
    let shadow = m("etc/shadowish").unwrap();
    assert_eq!((shadow.uid, shadow.gid, shadow.mode), (0, 42, Some(0o640)));
    assert!(m("usr/lib/data").is_none());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(root.join("usr/lib/data")).unwrap().ino(),
        fs::metadata(root.join("usr/lib/data2")).unwrap().ino(),
        "hardlink must be a real hardlink"
    );
    assert_eq!(
        fs::read_link(root.join("usr/lib/abs")).unwrap(),
        PathBuf::from("/etc/shadowish")
    );
    let (special, meta) = tree.specials().get(Path::new("dev/console")).unwrap();
    assert_eq!(*special, Special::CharDevice { major: 5, minor: 1 });
    assert_eq!((meta.gid, meta.mode), (5, Some(0o620)));
    assert!(!root.join("dev/console").exists());
    assert!(root.join("usr/lib").is_dir() && !written.contains(&PathBuf::from("/usr/lib")));
}

#[test]
fn hostile_entries_never_leave_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(&root).unwrap();

    // 1. A `..` entry name is refused, and nothing lands outside.
    let dotdot = hand_deb(
        dir.path(),
        "dotdot",
        &[E::File("./../outside/x", b"pwned", 0o644, 0, 0)],
    );
    let mut tree = Tree::new(&root);
    let e = deb::unpack(&dotdot, &mut tree, &|_| true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("./../outside/x: entry name contains `..`"),
        "{e}"
    );
    assert!(!outside.join("x").exists());

    // 2. Symlinks that point out of the tree (absolute, or relative with many
    //    `..`) are followed *inside* the tree when later entries go through them.
    let abs_target = outside.to_str().unwrap().to_string();
    let links = hand_deb(
        dir.path(),
        "links",
        &[
            E::Link("./abs", &abs_target),
            E::File("./abs/y", b"pwned", 0o644, 0, 0),
            E::Link("./rel", "../../../../../../.."),
            E::Dir("./rel/z/", 0o755),
            E::File("./rel/z/w", b"pwned", 0o644, 0, 0),
            E::Hard("./hl", "./rel/z/w"),
        ],
    );
    let written = deb::unpack(&links, &mut tree, &|_| true).unwrap();
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "wrote outside the tree"
    );
    let inside_abs = root.join(abs_target.trim_start_matches('/')).join("y");
    assert_eq!(fs::read(&inside_abs).unwrap(), b"pwned");
    assert_eq!(fs::read(root.join("z/w")).unwrap(), b"pwned");
    assert!(written.contains(&PathBuf::from("/z/w")), "{written:?}");
    assert_eq!(fs::read(root.join("hl")).unwrap(), b"pwned");
}

/// The biggest package a build unpacks (~70 MB compressed, ~400 MB of
/// modules): `cargo test --test debian -- --ignored --nocapture kernel`.
#[test]
#[ignore = "downloads ~70 MB; a timing check, run by hand"]
fn kernel_fetch_and_unpack_timing() {
    let cache = real_cache();
    let q = Reporter::quiet();
    let archive = Archive::open(&real_config(), &cache, false, &q).unwrap();
    let kernel = archive.resolve_kernel("linux-image-amd64").unwrap();
    let t = std::time::Instant::now();
    let paths = archive
        .fetch(std::slice::from_ref(&kernel), &cache, &q)
        .unwrap();
    eprintln!(
        "fetched {} ({} bytes) in {:.2}s",
        kernel.name,
        kernel.size,
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut tree = merged_usr_tree(dir.path());
    let t = std::time::Instant::now();
    let written = deb::unpack(&paths[0], &mut tree, &|_| true).unwrap();
    eprintln!(
        "unpacked {} entries in {:.2}s",
        written.len(),
        t.elapsed().as_secs_f64()
    );
    let abi = kernel.name.strip_prefix("linux-image-").unwrap();
    assert!(dir.path().join(format!("boot/vmlinuz-{abi}")).is_file());
    assert!(written.len() > 3000);
}
