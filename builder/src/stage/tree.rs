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

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs;
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

impl Meta {
    /// Owned by `uid`:`gid` with exactly the permission bits `mode`.
    pub fn exact(uid: u32, gid: u32, mode: u32) -> Meta {
        Meta {
            uid,
            gid,
            mode: Some(mode),
        }
    }
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

/// Symlinks followed while resolving one path before we call it a loop
/// (Linux's own limit).
pub const MAX_LINKS: usize = 40;

/// Whether [`Tree::resolve`] follows a symlink in the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last {
    /// Resolve to what the link points at (reading a file, finding a library).
    Follow,
    /// Stop at the link itself (replacing or recording the link).
    NoFollow,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{}: too many levels of symbolic links inside the image (a loop?)", path.display())]
    Loop { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl From<ResolveError> for io::Error {
    fn from(e: ResolveError) -> io::Error {
        let kind = match &e {
            ResolveError::Loop { .. } => io::ErrorKind::InvalidInput,
            ResolveError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

impl Tree {
    /// Resolves `image_path` inside the tree as the kernel would if the tree
    /// were `/`, without ever leaving it; see [`Tree::resolve_in`].
    pub fn resolve(&self, image_path: &Path, last: Last) -> Result<PathBuf, ResolveError> {
        Tree::resolve_in(&self.root, image_path, last)
    }

    /// The one place a path inside a staging tree is resolved; every writer
    /// and reader of the tree goes through it, because a hostile `.deb` or
    /// element can plant symlinks that point anywhere.
    ///
    /// Follows symlinks found under `root` component by component: an
    /// absolute target restarts at `root`, a relative one continues from the
    /// link's directory, and `..` steps up but never above `root` (as `..`
    /// at `/` stays at `/`). Components that do not exist are taken as they
    /// are, so the result can name a path about to be created. Returns the
    /// resolved path relative to `root` (empty for the root itself); join it
    /// to `root` for the host path.
    pub fn resolve_in(root: &Path, image_path: &Path, last: Last) -> Result<PathBuf, ResolveError> {
        let mut todo: VecDeque<OsString> = components(image_path);
        let mut done = PathBuf::new();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(&c);
            if todo.is_empty() && last == Last::NoFollow {
                break;
            }
            let host = root.join(&done);
            let is_link = fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_symlink());
            if !is_link {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(ResolveError::Loop {
                    path: image_path.to_path_buf(),
                });
            }
            let target = fs::read_link(&host).map_err(|source| ResolveError::Io {
                path: host.clone(),
                source,
            })?;
            done.pop();
            if target.has_root() {
                done = PathBuf::new();
            }
            let mut rest = components(&target);
            rest.extend(todo);
            todo = rest;
        }
        Ok(done)
    }
}

/// The `Normal` and `..` components of a path (`/` and `.` say nothing here).
fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
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

    /// A tree with `usr/bin`, `bin -> usr/bin`, and the links given.
    fn linked(links: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        fs::write(dir.path().join("usr/bin/sh"), b"").unwrap();
        std::os::unix::fs::symlink("usr/bin", dir.path().join("bin")).unwrap();
        for (link, target) in links {
            std::os::unix::fs::symlink(target, dir.path().join(link)).unwrap();
        }
        dir
    }

    fn res(dir: &tempfile::TempDir, p: &str, last: Last) -> Result<PathBuf, ResolveError> {
        Tree::resolve_in(dir.path(), Path::new(p), last)
    }

    /// Each image path, followed, resolves to the expected tree-relative path.
    fn expect(dir: &tempfile::TempDir, cases: &[(&str, &str)]) {
        for (path, want) in cases {
            let got = res(dir, path, Last::Follow).unwrap();
            assert_eq!(got, Path::new(want), "{path}");
        }
    }

    #[test]
    fn resolve_follows_links_inside_the_tree() {
        let d = linked(&[("usr/bin/ash", "sh"), ("abs", "/usr/bin/sh")]);
        expect(
            &d,
            &[
                ("/bin/sh", "usr/bin/sh"),
                ("/bin/ash", "usr/bin/sh"),
                ("abs", "usr/bin/sh"),
                // Not there yet: taken as it is, below the resolved parent.
                ("/bin/new/x", "usr/bin/new/x"),
            ],
        );
        let last = res(&d, "/bin/ash", Last::NoFollow).unwrap();
        assert_eq!(last, Path::new("usr/bin/ash"));
    }

    #[test]
    fn resolve_never_leaves_the_tree() {
        let d = linked(&[
            ("cfg", "/etc"),
            ("up", "../../../../.."),
            ("host", "/../../etc/passwd"),
        ]);
        expect(
            &d,
            &[
                // An absolute link restarts at the tree's root, not the host's.
                ("/cfg/passwd", "etc/passwd"),
                // `..` stops at the root, through relative and absolute links alike.
                ("/up/etc/shadow", "etc/shadow"),
                ("/host", "etc/passwd"),
                ("/../../x", "x"),
                ("/usr/bin/../../..", ""),
            ],
        );
    }

    #[test]
    fn resolve_reports_symlink_loops() {
        let d = linked(&[("a", "b"), ("b", "/a"), ("self", "self")]);
        for p in ["/a", "/self/x", "/b/c"] {
            assert!(
                matches!(res(&d, p, Last::Follow), Err(ResolveError::Loop { .. })),
                "{p}"
            );
        }
        // The loop is in the last component, which is not followed.
        assert_eq!(res(&d, "/a", Last::NoFollow).unwrap(), Path::new("a"));
    }

    #[test]
    fn forget_removes_subtree() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tree::new(dir.path());
        t.set_meta(Path::new("/etc/ssh/key"), Meta::exact(0, 0, 0o600))
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
