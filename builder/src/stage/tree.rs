//! The staged root filesystem.
//!
//! A build runs as an ordinary user, so the host filesystem cannot hold what
//! the image needs: files owned by other users, setuid bits we may not be
//! allowed to set, device nodes we cannot create. The tree therefore keeps
//! two things side by side:
//!
//! - real files, directories, symlinks and hardlinks on disk under [`Tree::root`],
//!   which element hooks see as `$TARGET`;
//! - a metadata map, keyed by the path inside the image, holding ownership and
//!   the exact mode for anything that differs from "root:root, mode as on
//!   disk", and the special files (device nodes, FIFOs) that exist only here.
//!
//! The packer merges the two. Nothing else applies ownership to the host.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Ownership and permission bits recorded for one path inside the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask). `None`
    /// means "take them from the file on disk".
    pub mode: Option<u32>,
}

/// A file that cannot exist on disk for an unprivileged builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

/// The staged tree: a directory on disk plus the metadata map.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    meta: BTreeMap<PathBuf, Meta>,
    specials: BTreeMap<PathBuf, (Special, Meta)>,
}

impl Tree {
    /// Wraps an existing (usually empty, temporary) directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Tree {
            root: root.into(),
            meta: BTreeMap::new(),
            specials: BTreeMap::new(),
        }
    }

    /// The directory on disk; element hooks receive it as `$TARGET`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path for an image path such as `/etc/passwd` or `etc/passwd`.
    ///
    /// Fails for paths that would leave the tree (`..`), so a hostile `.deb` or
    /// element cannot write outside the staging directory.
    pub fn host_path(&self, image_path: &Path) -> io::Result<PathBuf> {
        Ok(self.root.join(normalize(image_path)?))
    }

    /// Records ownership and mode for a path (overriding earlier records).
    pub fn set_meta(&mut self, image_path: &Path, meta: Meta) -> io::Result<()> {
        let key = normalize(image_path)?;
        self.meta.insert(key, meta);
        Ok(())
    }

    /// The recorded metadata for a path, if any.
    pub fn meta(&self, image_path: &Path) -> Option<&Meta> {
        normalize(image_path).ok().and_then(|k| self.meta.get(&k))
    }

    /// All metadata records, keyed by relative image path (`etc/shadow`).
    pub fn meta_map(&self) -> &BTreeMap<PathBuf, Meta> {
        &self.meta
    }

    /// Adds a device node or FIFO. Its parent directory is created on disk so
    /// the tree stays consistent for hooks that list directories.
    pub fn add_special(
        &mut self,
        image_path: &Path,
        special: Special,
        meta: Meta,
    ) -> io::Result<()> {
        let key = normalize(image_path)?;
        if let Some(parent) = self.root.join(&key).parent() {
            std::fs::create_dir_all(parent)?;
        }
        self.specials.insert(key, (special, meta));
        Ok(())
    }

    /// Special files, keyed by relative image path.
    pub fn specials(&self) -> &BTreeMap<PathBuf, (Special, Meta)> {
        &self.specials
    }

    /// Forgets metadata and specials for a path and everything below it;
    /// used when a scrub or hook deletes files.
    pub fn forget(&mut self, image_path: &Path) -> io::Result<()> {
        let key = normalize(image_path)?;
        self.meta.retain(|k, _| !k.starts_with(&key));
        self.specials.retain(|k, _| !k.starts_with(&key));
        Ok(())
    }
}

/// Turns `/a/./b` or `a/b/` into the relative key `a/b`; rejects `..` and an
/// empty result.
pub fn normalize(image_path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in image_path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path {} leaves the image root", image_path.display()),
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty image path",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_root_and_dots() {
        assert_eq!(
            normalize(Path::new("/etc/./shadow")).unwrap(),
            PathBuf::from("etc/shadow")
        );
        assert_eq!(
            normalize(Path::new("usr/bin/")).unwrap(),
            PathBuf::from("usr/bin")
        );
    }

    #[test]
    fn normalize_rejects_escape_and_empty() {
        assert!(normalize(Path::new("/etc/../../x")).is_err());
        assert!(normalize(Path::new("/")).is_err());
    }

    #[test]
    fn forget_removes_subtree() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tree::new(dir.path());
        t.set_meta(
            Path::new("/etc/ssh/key"),
            Meta {
                uid: 0,
                gid: 0,
                mode: Some(0o600),
            },
        )
        .unwrap();
        t.set_meta(Path::new("/etc/sshd"), Meta::default()).unwrap();
        t.add_special(Path::new("/etc/ssh/fifo"), Special::Fifo, Meta::default())
            .unwrap();
        t.forget(Path::new("/etc/ssh")).unwrap();
        assert!(t.meta(Path::new("etc/ssh/key")).is_none());
        assert!(t.meta(Path::new("etc/sshd")).is_some());
        assert!(t.specials().is_empty());
    }
}
