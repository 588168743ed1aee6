//! Placing element content into the staged tree: the `files/` tree,
//! directories, symlinks, device nodes, and single files such as the agent.
//!
//! Modes of files taken from a git checkout depend on the checkout's umask
//! (git records only "executable or not"), so they are normalised to `0755`
//! or `0644` unless the element's `files:` list says otherwise: the same
//! element gives the same image on every machine.
//!
//! Every write goes through [`host_path_in`], which resolves symlinks inside
//! the tree only, so a package's absolute symlink (`/etc/x -> /etc/passwd`)
//! can never make us write to the build host.

use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::config::element::{Attrs, DeviceKind, Element, shipped_mode};
use crate::stage::tree::{Last, Meta, Special, Tree, normalize};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("element {element}: {action} {path}: {source}")]
    Io {
        element: String,
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The merged-/usr layout Debian 12 installs by default; packages that ship
/// `./bin/x` land in `/usr/bin/x`, as dpkg does on such a system.
pub const MERGED_USR: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

/// Creates the top-level layout every image starts from.
pub fn skeleton(tree: &Tree) -> io::Result<()> {
    for (link, target) in MERGED_USR {
        std::fs::create_dir_all(tree.root().join(target))?;
        symlink(target, tree.root().join(link))?;
    }
    for dir in ["etc", "var", "usr/share"] {
        std::fs::create_dir_all(tree.root().join(dir))?;
    }
    Ok(())
}

/// The host path for `image_path`, with every symlink along the way resolved
/// inside `root` (absolute targets are taken relative to `root`). The last
/// component is not followed, so the caller can replace a symlink itself.
pub fn host_path_in(root: &Path, image_path: &Path) -> io::Result<PathBuf> {
    let rel = normalize(image_path)?;
    Ok(root.join(Tree::resolve_in(root, &rel, Last::NoFollow)?))
}

/// The image path a host path inside the tree stands for (`/usr/bin/sh` for
/// `<root>/usr/bin/sh`): metadata is keyed by where a file really is, since
/// the packer walks the disk.
fn resolved_image_path(tree: &Tree, host: &Path) -> PathBuf {
    Path::new("/").join(host.strip_prefix(tree.root()).unwrap_or(host))
}

/// Creates the directories above `host` (resolving in-tree symlinks) and
/// returns the path to write to.
fn prepare(tree: &Tree, image_path: &Path) -> io::Result<PathBuf> {
    let host = host_path_in(tree.root(), image_path)?;
    if let Some(parent) = image_path.parent().filter(|p| normalize(p).is_ok()) {
        let parent_host = host_path_in(tree.root(), parent)?;
        if !parent_host.is_dir() {
            std::fs::create_dir_all(&parent_host)?;
        }
    }
    // Replace whatever is there (a package's file, a dangling link).
    if let Ok(m) = std::fs::symlink_metadata(&host)
        && !m.is_dir()
    {
        std::fs::remove_file(&host)?;
    }
    Ok(host)
}

/// Copies `source` into the tree at `image_path` with `mode`, owned by uid/gid.
pub fn install_file(
    tree: &mut Tree,
    source: &Path,
    image_path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
) -> io::Result<()> {
    let host = prepare(tree, image_path)?;
    std::fs::copy(source, &host)?;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode & 0o777))?;
    let key = resolved_image_path(tree, &host);
    tree.set_meta(&key, Meta::exact(uid, gid, mode & 0o7777))
}

/// The tree's record of what an element says an entry's mode and owner are.
fn meta(a: Attrs) -> Meta {
    Meta::exact(a.owner, a.group, a.mode.0)
}

/// Puts one element's content into the tree; returns the image paths written.
pub fn place_element(tree: &mut Tree, el: &Element) -> Result<Vec<PathBuf>, FilesError> {
    let err = |action: &'static str, path: &Path| {
        let element = el.name.clone();
        let path = path.to_path_buf();
        move |source| FilesError::Io {
            element,
            action,
            path,
            source,
        }
    };
    let mut written = Vec::new();

    for d in &el.directories {
        let host = host_path_in(tree.root(), &d.path).map_err(err("resolving", &d.path))?;
        std::fs::create_dir_all(&host).map_err(err("creating directory", &d.path))?;
        std::fs::set_permissions(
            &host,
            std::fs::Permissions::from_mode(d.attrs.mode.0 & 0o777 | 0o700),
        )
        .map_err(err("setting mode of", &d.path))?;
        let key = resolved_image_path(tree, &host);
        tree.set_meta(&key, meta(d.attrs))
            .map_err(err("recording", &d.path))?;
        written.push(d.path.clone());
    }

    if let Some(files_dir) = &el.files_dir {
        for entry in WalkDir::new(files_dir).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| FilesError::Io {
                element: el.name.clone(),
                action: "reading",
                path: files_dir.clone(),
                source: e.into(),
            })?;
            let rel = entry.path().strip_prefix(files_dir).unwrap_or(entry.path());
            let image = Path::new("/").join(rel);
            let ft = entry.file_type();
            if ft.is_dir() {
                let host = host_path_in(tree.root(), &image).map_err(err("resolving", &image))?;
                std::fs::create_dir_all(&host).map_err(err("creating directory", &image))?;
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(entry.path()).map_err(err("reading link", entry.path()))?;
                let host = prepare(tree, &image).map_err(err("preparing", &image))?;
                symlink(&target, &host).map_err(err("creating link", &image))?;
                written.push(image);
            } else {
                let a = match el.files.iter().find(|f| f.path == image) {
                    Some(listed) => listed.attrs,
                    None => Attrs {
                        mode: shipped_mode(
                            entry
                                .metadata()
                                .map(|m| m.permissions().mode())
                                .unwrap_or(0o644),
                        ),
                        owner: 0,
                        group: 0,
                    },
                };
                install_file(tree, entry.path(), &image, a.mode.0, a.owner, a.group)
                    .map_err(err("installing", &image))?;
                written.push(image);
            }
        }
    }

    for l in &el.symlinks {
        let host = prepare(tree, &l.path).map_err(err("preparing", &l.path))?;
        symlink(&l.target, &host).map_err(err("creating link", &l.path))?;
        written.push(l.path.clone());
    }

    for d in &el.devices {
        let special = match d.kind {
            DeviceKind::Char => Special::CharDevice {
                major: d.major,
                minor: d.minor,
            },
            DeviceKind::Block => Special::BlockDevice {
                major: d.major,
                minor: d.minor,
            },
            DeviceKind::Fifo => Special::Fifo,
        };
        let host = host_path_in(tree.root(), &d.path).map_err(err("resolving", &d.path))?;
        let key = resolved_image_path(tree, &host);
        tree.add_special(&key, special, meta(d.attrs))
            .map_err(err("recording device", &d.path))?;
        written.push(d.path.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_redirects_and_absolute_links_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        skeleton(&tree).unwrap();
        assert_eq!(
            host_path_in(dir.path(), Path::new("/bin/sh")).unwrap(),
            dir.path().join("usr/bin/sh")
        );
        // A hostile absolute link must resolve inside the tree.
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        symlink("/etc", dir.path().join("etc/evil")).unwrap();
        assert_eq!(
            host_path_in(dir.path(), Path::new("/etc/evil/passwd")).unwrap(),
            dir.path().join("etc/passwd")
        );
        symlink("../../../../..", dir.path().join("etc/up")).unwrap();
        assert_eq!(
            host_path_in(dir.path(), Path::new("/etc/up/x")).unwrap(),
            dir.path().join("x")
        );
    }

    #[test]
    fn install_file_records_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"x").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut tree = Tree::new(&root);
        skeleton(&tree).unwrap();
        install_file(&mut tree, &src, Path::new("/bin/tool"), 0o4755, 0, 0).unwrap();
        assert!(root.join("usr/bin/tool").is_file());
        assert_eq!(
            tree.meta(Path::new("usr/bin/tool")).unwrap().mode,
            Some(0o4755)
        );
    }
}
