//! Unpacking a `.deb`'s data archive into the staging [`Tree`], the way
//! dpkg would on a merged-`/usr` system, but without root.
//!
//! A `.deb` is an `ar` archive (`debian-binary`, `control.tar.*`,
//! `data.tar.*`); the ar format is a 60-byte header per member, so it is
//! read here rather than through a crate. The data tar is decompressed as a
//! stream and each entry is placed in the tree:
//!
//! - every path component is resolved *inside* the tree root: a symlink
//!   already in the tree (`bin -> usr/bin`) is followed, so `./bin/sh` lands
//!   in `usr/bin/sh` as dpkg would place it; an absolute link target means
//!   the tree root, and `..` stops at the root, so nothing a package (or an
//!   earlier package) contains can make us write outside the tree;
//! - entry names with `..` are refused outright: no honest package has one;
//! - ownership, setuid/setgid/sticky bits and modes the builder cannot (or
//!   should not) apply on disk go into the tree's metadata map; device nodes
//!   and FIFOs become [`Tree::add_special`] records;
//! - hardlinks become real hardlinks, so the packer can keep them as one inode.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::DebianError;
use crate::stage::tree::{Last, Meta, Special, Tree};

/// Unpacks the data archive of `deb` into `tree`. `filter` receives each
/// entry's final image path (absolute, e.g. `/usr/share/doc/x/copyright`,
/// after merged-`/usr` redirection) and decides whether it is kept.
/// Returns the image paths written, in archive order.
pub fn unpack(
    deb: &Path,
    tree: &mut Tree,
    filter: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>, DebianError> {
    let bad = |msg: String| DebianError::Deb {
        deb: deb.to_path_buf(),
        msg,
    };
    let file = File::open(deb).map_err(|e| DebianError::io(deb, e))?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let (name, size) = find_data_member(&mut r).map_err(|e| bad(e.to_string()))?;
    let member = r.take(size);
    let decoded: Box<dyn Read> = match name.strip_prefix("data.tar") {
        Some(".xz") => Box::new(liblzma::read::XzDecoder::new_parallel(member)),
        Some(".zst") => {
            Box::new(zstd::stream::read::Decoder::new(member).map_err(|e| bad(e.to_string()))?)
        }
        Some(".gz") => Box::new(flate2::read::GzDecoder::new(member)),
        Some("") => Box::new(member),
        _ => return Err(bad(format!("unsupported data member {name:?}"))),
    };
    let mut archive = tar::Archive::new(decoded);
    let mut written = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let entries = archive.entries().map_err(|e| bad(format!("{name}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("{name}: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| bad(format!("{name}: {e}")))?
            .into_owned();
        if let Some(img) = place(&mut entry, &raw, tree, filter, &mut buf)
            .map_err(|e| bad(format!("{}: {e}", raw.display())))?
        {
            written.push(img);
        }
    }
    Ok(written)
}

/// Reads ar headers until the `data.tar*` member; returns its name and size,
/// with the reader positioned at its first byte.
fn find_data_member<R: Read + Seek>(r: &mut R) -> io::Result<(String, u64)> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != b"!<arch>\n" {
        return Err(io::Error::other("not a .deb (no ar archive header)"));
    }
    loop {
        let mut h = [0u8; 60];
        match r.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(io::Error::other("no data.tar member in the .deb"));
            }
            Err(e) => return Err(e),
        }
        if &h[58..60] != b"`\n" {
            return Err(io::Error::other("corrupt ar member header"));
        }
        let name = String::from_utf8_lossy(&h[0..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = String::from_utf8_lossy(&h[48..58])
            .trim()
            .parse()
            .map_err(|_| io::Error::other(format!("bad size in ar header of {name:?}")))?;
        if name.starts_with("data.tar") {
            return Ok((name, size));
        }
        // Members are padded to an even size.
        let skip = size + (size & 1);
        r.seek_relative(i64::try_from(skip).map_err(io::Error::other)?)?;
    }
}

/// The components of an entry name; `..` and non-UTF-8-safe oddities are refused.
fn entry_components(raw: &Path) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(s) => out.push(s.to_os_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::other(
                    "entry name contains `..`; refusing to unpack it",
                ));
            }
        }
    }
    Ok(out)
}

/// `comps` resolved inside `root` by [`Tree::resolve_in`] (the last
/// component followed only when `follow_last`), as components again.
fn resolve(root: &Path, comps: Vec<OsString>, follow_last: bool) -> io::Result<Vec<OsString>> {
    let last = if follow_last {
        Last::Follow
    } else {
        Last::NoFollow
    };
    let path: PathBuf = comps.iter().collect();
    let real = Tree::resolve_in(root, &path, last)?;
    Ok(real.iter().map(|c| c.to_os_string()).collect())
}

fn image_path(comps: &[OsString]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(comps);
    p
}

/// Removes whatever non-directory sits at `host` so an entry can take its place.
fn clear_for_file(host: &Path) -> io::Result<()> {
    match fs::symlink_metadata(host) {
        Ok(m) if m.is_dir() => Err(io::Error::other(
            "a directory already exists there; refusing to replace it",
        )),
        Ok(_) => fs::remove_file(host),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Records ownership/mode when they differ from root:root + on-disk mode,
/// or resets an earlier record left by a package this one overwrites.
fn record(
    tree: &mut Tree,
    img: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
    disk: Option<u32>,
) -> io::Result<()> {
    let perm = mode & 0o7777;
    let needs = uid != 0 || gid != 0 || perm & 0o7000 != 0 || disk.is_some_and(|d| d != perm);
    if needs {
        let mode = if disk.is_some() { Some(perm) } else { None };
        tree.set_meta(img, Meta { uid, gid, mode })
    } else if tree.meta(img).is_some() {
        tree.set_meta(img, Meta::default())
    } else {
        Ok(())
    }
}

/// Places one tar entry; returns its image path if something was written.
fn place<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw: &Path,
    tree: &mut Tree,
    filter: &dyn Fn(&Path) -> bool,
    buf: &mut [u8],
) -> io::Result<Option<PathBuf>> {
    let comps = entry_components(raw)?;
    let Some((last, parents)) = comps.split_last() else {
        return Ok(None);
    };
    let header = entry.header();
    let kind = header.entry_type();
    let at = Placement {
        uid: u32::try_from(header.uid()?).map_err(io::Error::other)?,
        gid: u32::try_from(header.gid()?).map_err(io::Error::other)?,
        mode: header.mode()?,
        ..Placement::default()
    };
    let root = tree.root().to_path_buf();

    let mut real = resolve(&root, parents.to_vec(), true)?;
    real.push(last.clone());
    if kind == EntryType::Directory {
        real = resolve(&root, real, true)?;
    }
    if real.is_empty() {
        return Ok(None);
    }
    let at = Placement {
        img: image_path(&real),
        host: root.join(real.iter().collect::<PathBuf>()),
        ..at
    };
    if !filter(&at.img) {
        return Ok(None);
    }
    if let Some(parent) = at.host.parent() {
        fs::create_dir_all(parent)?;
    }
    let placed = match kind {
        EntryType::Directory => place_dir(tree, &at)?,
        EntryType::Regular | EntryType::Continuous => place_file(tree, &at, entry, buf)?,
        EntryType::Symlink => place_symlink(tree, &at, entry)?,
        EntryType::Link => place_hardlink(tree, &at, entry, filter)?,
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let header = entry.header();
            let major = header.device_major()?.unwrap_or(0);
            let minor = header.device_minor()?.unwrap_or(0);
            let special = match kind {
                EntryType::Char => Special::CharDevice { major, minor },
                EntryType::Block => Special::BlockDevice { major, minor },
                _ => Special::Fifo,
            };
            let meta = Meta::exact(at.uid, at.gid, at.mode & 0o7777);
            tree.add_special(&at.img, special, meta)?;
            true
        }
        // PAX/GNU extension headers are consumed by the tar crate; anything else
        // (sockets, sparse oddities) has no place in an image.
        _ => false,
    };
    Ok(placed.then_some(at.img))
}

/// Where one entry goes and what its header says about it.
#[derive(Default)]
struct Placement {
    img: PathBuf,
    host: PathBuf,
    uid: u32,
    gid: u32,
    mode: u32,
}

impl Placement {
    fn record(&self, tree: &mut Tree, disk: Option<u32>) -> io::Result<()> {
        record(tree, &self.img, self.uid, self.gid, self.mode, disk)
    }
}

fn place_dir(tree: &mut Tree, at: &Placement) -> io::Result<bool> {
    let disk = at.mode & 0o777 | 0o700;
    match fs::symlink_metadata(&at.host) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            fs::remove_file(&at.host)?;
            fs::create_dir(&at.host)?;
        }
        Err(_) => fs::create_dir(&at.host)?,
    }
    fs::set_permissions(&at.host, fs::Permissions::from_mode(disk))?;
    at.record(tree, Some(disk))?;
    Ok(true)
}

fn place_file<R: Read>(
    tree: &mut Tree,
    at: &Placement,
    entry: &mut tar::Entry<'_, R>,
    buf: &mut [u8],
) -> io::Result<bool> {
    let disk = at.mode & 0o777 | 0o600;
    clear_for_file(&at.host)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(disk)
        .open(&at.host)?;
    loop {
        let n = entry.read(buf)?;
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n])?;
    }
    f.set_permissions(fs::Permissions::from_mode(disk))?;
    at.record(tree, Some(disk))?;
    Ok(true)
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, what: &str) -> io::Result<PathBuf> {
    let target = entry.link_name()?;
    target
        .map(|t| t.into_owned())
        .ok_or_else(|| io::Error::other(format!("{what} without a target")))
}

fn place_symlink<R: Read>(
    tree: &mut Tree,
    at: &Placement,
    entry: &mut tar::Entry<'_, R>,
) -> io::Result<bool> {
    let target = link_target(entry, "symlink")?;
    if fs::symlink_metadata(&at.host).is_ok_and(|m| m.is_dir()) {
        // dpkg keeps an existing directory rather than replacing it
        // with a symlink (e.g. a real /lib64 in the skeleton).
        return Ok(false);
    }
    clear_for_file(&at.host)?;
    std::os::unix::fs::symlink(&target, &at.host)?;
    at.record(tree, None)?;
    Ok(true)
}

fn place_hardlink<R: Read>(
    tree: &mut Tree,
    at: &Placement,
    entry: &mut tar::Entry<'_, R>,
    filter: &dyn Fn(&Path) -> bool,
) -> io::Result<bool> {
    let target = link_target(entry, "hardlink")?;
    let tcomps = entry_components(&target)?;
    let Some((tlast, tparents)) = tcomps.split_last() else {
        return Err(io::Error::other("hardlink to the root"));
    };
    let mut treal = resolve(tree.root(), tparents.to_vec(), true)?;
    treal.push(tlast.clone());
    let thost = tree.root().join(treal.iter().collect::<PathBuf>());
    if thost == at.host {
        return Ok(true);
    }
    if !filter(&image_path(&treal)) {
        // The target was excluded, so its other name goes too.
        return Ok(false);
    }
    if !fs::symlink_metadata(&thost).is_ok_and(|m| m.is_file()) {
        return Err(io::Error::other(format!(
            "hardlink target {} was not unpacked (excluded by a filter?)",
            target.display()
        )));
    }
    clear_for_file(&at.host)?;
    fs::hard_link(&thost, &at.host)?;
    let disk = fs::symlink_metadata(&at.host)?.permissions().mode() & 0o777;
    at.record(tree, Some(disk))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_with_dotdot_are_refused() {
        assert!(entry_components(Path::new("./usr/../../etc")).is_err());
        assert_eq!(entry_components(Path::new("./usr/bin")).unwrap().len(), 2);
        assert!(entry_components(Path::new("./")).unwrap().is_empty());
    }
}
