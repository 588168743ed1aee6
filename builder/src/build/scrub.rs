//! Stage 7, first half: deleting what must never ship.
//!
//! A rescue ramdisk is handed to the tenant, and deploy ramdisks are often
//! served over plain HTTP, so anything a package or hook leaves behind that
//! identifies a machine or grants access must go: host keys (generated at
//! first boot instead), machine ids, random seeds, caches, logs, histories.
//! The default list below is extended by elements' and the profile's
//! `scrub:` globs. Every removal is returned so the manifest can list it.
//!
//! The second half of stage 7, the secret audit that refuses to emit an image
//! with a finding, has its own module (issue 6); this module only deletes.

use std::path::{Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

use crate::report::Reporter;
use crate::stage::Tree;

/// Paths deleted from every image, as globs over absolute image paths.
pub const DEFAULT_SCRUB: &[&str] = &[
    // SSH host keys: generated at first boot, never shipped.
    "/etc/ssh/ssh_host_*",
    "/etc/dropbear/dropbear_*_host_key",
    "/etc/dropbear/*_host_key",
    // Machine identity and entropy.
    "/var/lib/dbus/machine-id",
    "/var/lib/systemd/random-seed",
    "/var/lib/systemd/credential.secret",
    "/var/lib/urandom/random-seed",
    // Package manager state and caches.
    "/var/cache/apt/**",
    "/var/cache/debconf/*-old",
    "/var/lib/apt/lists/**",
    "/var/lib/dpkg/*-old",
    "/var/log/**",
    "/var/tmp/**",
    "/tmp/**",
    // Histories and editors' leftovers.
    "**/.bash_history",
    "**/.ash_history",
    "**/.python_history",
    "**/.lesshst",
    "**/.viminfo",
    "**/__pycache__",
    "**/*.pyc",
];

#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    #[error("invalid scrub pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        source: globset::Error,
    },
    #[error("scrubbing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Compiles the scrub globs. A pattern matches an image path such as
/// `/etc/ssh/ssh_host_rsa_key`; `*` does not cross `/`, `**` does.
pub fn compile(patterns: &[String]) -> Result<GlobSet, ScrubError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|source| ScrubError::Pattern {
                pattern: p.clone(),
                source,
            })?;
        b.add(g);
    }
    b.build().map_err(|source| ScrubError::Pattern {
        pattern: patterns.join(", "),
        source,
    })
}

/// Stage 7 (scrub): [`scrub`] with the plan's globs, reported.
pub fn run(
    tree: &mut Tree,
    extra: &[String],
    reporter: &Reporter,
) -> Result<Vec<String>, ScrubError> {
    let st = reporter.stage("scrub", "host keys, machine ids, caches, logs");
    let scrubbed = scrub(tree, extra)?;
    st.done(format!("{} paths removed", scrubbed.len()));
    Ok(scrubbed)
}

/// Deletes every path in the tree matched by the default list plus `extra`.
/// `/etc/machine-id` is special: systemd wants it present and empty (meaning
/// "generate one at boot"), so it is emptied rather than removed.
/// Returns the image paths removed (or emptied), sorted.
pub fn scrub(tree: &mut Tree, extra: &[String]) -> Result<Vec<String>, ScrubError> {
    let mut patterns: Vec<String> = DEFAULT_SCRUB.iter().map(|s| s.to_string()).collect();
    patterns.extend(extra.iter().cloned());
    let set = compile(&patterns)?;

    let root = tree.root().to_path_buf();
    let mut doomed = Vec::new();
    let mut walk = WalkDir::new(&root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|e| ScrubError::Io {
            path: e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| root.clone()),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(&root).unwrap_or(entry.path());
        let image = Path::new("/").join(rel);
        if set.is_match(&image) {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            doomed.push((
                entry.path().to_path_buf(),
                image,
                entry.file_type().is_dir(),
            ));
        }
    }
    // Specials (device nodes) live only in the metadata map.
    let special_hits: Vec<PathBuf> = tree
        .specials()
        .keys()
        .map(|k| Path::new("/").join(k))
        .filter(|p| set.is_match(p))
        .collect();

    let mut removed = Vec::new();
    for (host, image, is_dir) in doomed {
        let res = if is_dir {
            std::fs::remove_dir_all(&host)
        } else {
            std::fs::remove_file(&host)
        };
        res.map_err(|source| ScrubError::Io {
            path: host.clone(),
            source,
        })?;
        tree.forget(&image).map_err(|source| ScrubError::Io {
            path: image.clone(),
            source,
        })?;
        removed.push(image.to_string_lossy().into_owned());
    }
    for image in special_hits {
        tree.forget(&image).map_err(|source| ScrubError::Io {
            path: image.clone(),
            source,
        })?;
        removed.push(image.to_string_lossy().into_owned());
    }

    let machine_id = root.join("etc/machine-id");
    if std::fs::metadata(&machine_id).is_ok_and(|m| m.is_file() && m.len() > 0) {
        std::fs::write(&machine_id, b"").map_err(|source| ScrubError::Io {
            path: machine_id,
            source,
        })?;
        removed.push("/etc/machine-id (emptied)".into());
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, p: &str, data: &[u8]) {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn removes_defaults_and_extras_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(r, "etc/ssh/ssh_host_ed25519_key", b"k");
        touch(r, "etc/ssh/sshd_config", b"c");
        touch(r, "etc/dropbear/dropbear_rsa_host_key", b"k");
        touch(r, "var/log/apt/history.log", b"l");
        touch(r, "root/.ash_history", b"h");
        touch(r, "usr/lib/python3/x/__pycache__/a.pyc", b"p");
        touch(r, "etc/machine-id", b"0123456789abcdef\n");
        touch(r, "opt/secret.txt", b"s");
        let mut tree = Tree::new(r);
        let removed = scrub(&mut tree, &["/opt/*.txt".to_string()]).unwrap();
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(r.join("etc/ssh/sshd_config").exists());
        assert!(!r.join("etc/dropbear/dropbear_rsa_host_key").exists());
        // `dir/**` empties a directory but keeps it: daemons expect /var/log.
        assert!(r.join("var/log").is_dir());
        assert!(!r.join("var/log/apt").exists());
        assert!(!r.join("root/.ash_history").exists());
        assert!(!r.join("usr/lib/python3/x/__pycache__").exists());
        assert!(!r.join("opt/secret.txt").exists());
        assert_eq!(std::fs::read(r.join("etc/machine-id")).unwrap(), b"");
        assert!(removed.contains(&"/var/log/apt".to_string()), "{removed:?}");
        assert!(removed.contains(&"/etc/machine-id (emptied)".to_string()));
    }

    #[test]
    fn single_star_does_not_cross_directories() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "opt/a/b.txt", b"x");
        let mut tree = Tree::new(dir.path());
        scrub(&mut tree, &["/opt/*.txt".to_string()]).unwrap();
        assert!(dir.path().join("opt/a/b.txt").exists());
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = compile(&["/etc/[".to_string()]).unwrap_err();
        assert!(err.to_string().contains("/etc/["), "{err}");
    }
}
