//! Stage 8: the initramfs, written by us as newc cpio and compressed.
//!
//! [`pack`] turns a staged [`Tree`] into one compressed archive:
//!
//! 1. walk `tree.root()` without following symlinks and merge in the metadata
//!    map (uid/gid/mode overrides) and the special files (device nodes, FIFOs)
//!    that exist only in the map;
//! 2. sort by the path's bytes. A parent is a strict prefix of its children,
//!    so it always sorts before them (`a` < `a-b` < `a.b` < `a/b`), which is
//!    what the kernel needs: it never creates missing parent directories;
//! 3. write newc entries ([`cpio`]) into the compressor ([`compress`]).
//!
//! Reproducibility: inode numbers are renumbered, uid/gid default to 0:0,
//! and every mtime is **clamped** to `SOURCE_DATE_EPOCH` (`min(mtime,
//! epoch)`). Clamping rather than overwriting keeps the dates a `.deb` ships
//! (already reproducible, and useful when debugging a ramdisk) while anything
//! created during the build, which is newer than the epoch, gets the epoch.
//!
//! The walk and the file reads run on one thread, the compressor on the
//! caller's thread (plus its own workers for zstd and xz), joined by a bounded
//! channel of 1 MiB chunks, so reading and compressing overlap.

pub mod compress;
pub mod cpio;
pub mod iso;
pub mod read;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

pub use compress::{Compression, Encoder};

use crate::stage::{Meta, Special, Tree};
use cpio::{Data, Entry};

/// How to pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    pub compression: Compression,
    /// `None`: the format's default ([`Compression::default_level`]).
    pub level: Option<i32>,
    /// Upper bound for every mtime in the archive.
    pub source_date_epoch: u64,
    /// Compression workers; the output does not depend on it.
    pub threads: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            compression: Compression::Zstd,
            level: None,
            source_date_epoch: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What was packed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackReport {
    /// Archive members, not counting the trailer.
    pub entries: usize,
    /// Size of the cpio archive before compression.
    pub uncompressed_bytes: u64,
    /// Size of what was written to `out`.
    pub compressed_bytes: u64,
    /// SHA-256 of what was written to `out`, lowercase hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("reading the staging tree at {path}: {source}")]
    Walk { path: PathBuf, source: io::Error },
    #[error(
        "{path} is a socket; sockets cannot be packed into an initramfs. Remove it in a hook \
         (it is usually left behind by a daemon that ran during the build)"
    )]
    Socket { path: PathBuf },
    #[error("{path}: the path inside the image is not valid ({why})")]
    BadPath { path: PathBuf, why: String },
    #[error(transparent)]
    Cpio(#[from] cpio::CpioError),
    #[error(transparent)]
    Compress(#[from] compress::CompressError),
    #[error("writing the compressed initramfs: {0}")]
    Output(#[source] io::Error),
}

/// Packs `tree` into `out` as compressed newc cpio.
pub fn pack(tree: &Tree, opts: &PackOptions, out: &mut dyn Write) -> Result<PackReport, PackError> {
    let entries = collect(tree, opts.source_date_epoch)?;
    let count = entries.len();

    let mut hashed = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut encoder = Encoder::new(opts.compression, opts.level, opts.threads, &mut hashed)?;

    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(8);
    let uncompressed = std::thread::scope(|s| -> Result<u64, PackError> {
        let producer = s.spawn(move || -> Result<u64, cpio::CpioError> {
            let mut w = cpio::Writer::new(ChunkSender {
                tx,
                buf: Vec::with_capacity(CHUNK),
            });
            for e in &entries {
                w.append(e)?;
            }
            let (mut sender, total) = w.finish()?;
            sender.send_rest().map_err(cpio::CpioError::Write)?;
            Ok(total)
        });
        let mut write_result = Ok(());
        for chunk in rx.iter() {
            if let Err(e) = encoder.write_all(&chunk) {
                write_result = Err(e);
                break; // dropping `rx` makes the producer stop with an error
            }
        }
        drop(rx);
        let produced = match producer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // An output error is the real cause when both sides failed.
        write_result.map_err(PackError::Output)?;
        Ok(produced?)
    })?;
    encoder.finish().map_err(PackError::Output)?;
    hashed.inner.flush().map_err(PackError::Output)?;

    Ok(PackReport {
        entries: count,
        uncompressed_bytes: uncompressed,
        compressed_bytes: hashed.count,
        sha256: hex::encode(hashed.hasher.finalize()),
    })
}

/// Builds the sorted entry list for `tree`: what is on disk, then the
/// special files of the metadata map (which replace any placeholder).
pub fn collect(tree: &Tree, source_date_epoch: u64) -> Result<Vec<Entry>, PackError> {
    let root = tree.root();
    let clamp = |mtime: i64| -> u32 {
        let m = u64::try_from(mtime).unwrap_or(0).min(source_date_epoch);
        u32::try_from(m).unwrap_or(u32::MAX)
    };
    let mut by_path: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            PackError::Walk {
                path,
                source: e.into(),
            }
        })?;
        let entry = disk_entry(tree, &item, &clamp)?;
        by_path.insert(entry.name.clone(), entry);
    }
    let epoch = clamp(i64::try_from(source_date_epoch).unwrap_or(i64::MAX));
    for (rel, (special, meta)) in tree.specials() {
        let entry = special_entry(rel, *special, *meta, epoch);
        by_path.insert(entry.name.clone(), entry);
    }
    let mut entries: Vec<Entry> = by_path.into_values().collect();
    fix_link_counts(&mut entries);
    Ok(entries)
}

/// The entry for one file on disk, with ownership and mode from the
/// metadata map where it has a record.
fn disk_entry(
    tree: &Tree,
    item: &walkdir::DirEntry,
    clamp: &dyn Fn(i64) -> u32,
) -> Result<Entry, PackError> {
    let path = item.path();
    let rel = path
        .strip_prefix(tree.root())
        .map_err(|e| PackError::BadPath {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    let walk_err = |source| PackError::Walk {
        path: path.to_path_buf(),
        source,
    };
    let md = item.metadata().map_err(|e| walk_err(e.into()))?;
    let ft = md.file_type();
    let (kind, data, link_key) = if ft.is_dir() {
        (cpio::S_IFDIR, Data::None, None)
    } else if ft.is_file() {
        let key = (md.nlink() > 1).then(|| (md.dev(), md.ino()));
        let data = Data::File {
            path: path.to_path_buf(),
            size: md.len(),
        };
        (cpio::S_IFREG, data, key)
    } else if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(walk_err)?;
        let data = Data::Bytes(target.as_os_str().as_bytes().to_vec());
        (cpio::S_IFLNK, data, None)
    } else if ft.is_char_device() {
        (cpio::S_IFCHR, Data::None, None)
    } else if ft.is_block_device() {
        (cpio::S_IFBLK, Data::None, None)
    } else if ft.is_fifo() {
        (cpio::S_IFIFO, Data::None, None)
    } else {
        return Err(PackError::Socket {
            path: path.to_path_buf(),
        });
    };
    let (rdev_major, rdev_minor) = if ft.is_char_device() || ft.is_block_device() {
        split_dev(md.rdev())
    } else {
        (0, 0)
    };
    let meta = tree.meta(rel).copied().unwrap_or_default();
    let perms = if kind == cpio::S_IFLNK {
        0o777
    } else {
        meta.mode.unwrap_or(md.mode()) & 0o7777
    };
    Ok(Entry {
        name: rel.as_os_str().as_bytes().to_vec(),
        mode: kind | perms,
        uid: meta.uid,
        gid: meta.gid,
        nlink: 1,
        mtime: clamp(md.mtime()),
        rdev_major,
        rdev_minor,
        link_key,
        data,
    })
}

/// The entry for a device node or FIFO that exists only in the metadata map.
fn special_entry(rel: &Path, special: Special, meta: Meta, mtime: u32) -> Entry {
    let (kind, (rdev_major, rdev_minor)) = match special {
        Special::CharDevice { major, minor } => (cpio::S_IFCHR, (major, minor)),
        Special::BlockDevice { major, minor } => (cpio::S_IFBLK, (major, minor)),
        Special::Fifo => (cpio::S_IFIFO, (0, 0)),
    };
    let default_perms = if kind == cpio::S_IFIFO { 0o644 } else { 0o600 };
    Entry {
        name: rel.as_os_str().as_bytes().to_vec(),
        mode: kind | (meta.mode.unwrap_or(default_perms) & 0o7777),
        uid: meta.uid,
        gid: meta.gid,
        nlink: 1,
        mtime,
        rdev_major,
        rdev_minor,
        link_key: None,
        data: Data::None,
    }
}

/// Sets `nlink` to what the archive itself contains: the number of names of
/// a hardlinked file inside the tree (the host count may include names
/// outside it), and 2 + subdirectories for a directory, as a filesystem would.
fn fix_link_counts(entries: &mut [Entry]) {
    let mut links: HashMap<(u64, u64), u32> = HashMap::new();
    let mut subdirs: HashMap<Vec<u8>, u32> = HashMap::new();
    for e in entries.iter() {
        if let Some(k) = e.link_key {
            *links.entry(k).or_default() += 1;
        }
        if e.mode & cpio::S_IFMT == cpio::S_IFDIR
            && let Some(slash) = e.name.iter().rposition(|&b| b == b'/')
        {
            *subdirs.entry(e.name[..slash].to_vec()).or_default() += 1;
        }
    }
    for e in entries.iter_mut() {
        if let Some(k) = e.link_key {
            e.nlink = links.get(&k).copied().unwrap_or(1);
            if e.nlink == 1 {
                e.link_key = None;
            }
        } else if e.mode & cpio::S_IFMT == cpio::S_IFDIR {
            e.nlink = 2 + subdirs.get(&e.name).copied().unwrap_or(0);
        }
    }
}

/// Linux `dev_t` → (major, minor), as glibc's `gnu_dev_major`/`minor`.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

const CHUNK: usize = 1 << 20;

/// The producer side of the pipeline: batches writes into 1 MiB chunks.
struct ChunkSender {
    tx: mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send_rest(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx
                .send(chunk)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the compressor stopped"))?;
        }
        Ok(())
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_rest()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts and hashes what goes to the output.
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    count: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packs into a file at `path` (written under a temporary name beside it and
/// renamed into place, so a failed build never leaves a truncated ramdisk).
pub fn pack_to_file(tree: &Tree, opts: &PackOptions, path: &Path) -> Result<PackReport, PackError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out_err = |e: io::Error| {
        PackError::Output(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(out_err)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, tmp);
    let report = pack(tree, opts, &mut w)?;
    let tmp = w.into_inner().map_err(|e| out_err(e.into_error()))?;
    tmp.as_file().sync_all().map_err(out_err)?;
    tmp.persist(path).map_err(|e| out_err(e.error))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_sort_before_children() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a", "a/b", "a-b", "a.b"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        let tree = Tree::new(dir.path());
        let names: Vec<String> = collect(&tree, 0)
            .unwrap()
            .iter()
            .map(|e| String::from_utf8(e.name.clone()).unwrap())
            .collect();
        assert_eq!(names, ["a", "a-b", "a.b", "a/b", "a/b/f"]);
    }

    #[test]
    fn dev_numbers_split_like_glibc() {
        // makedev(8, 1) and makedev(259, 65536)
        assert_eq!(split_dev(0x801), (8, 1));
        let (major, minor) = (259u64, 65537u64);
        let dev = ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(split_dev(dev), (259, 65537));
    }

    #[test]
    fn mtimes_are_clamped_and_metadata_merged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/shadow"), b"root:*:1::::::\n").unwrap();
        let mut tree = Tree::new(dir.path());
        tree.set_meta(Path::new("/etc/shadow"), Meta::exact(0, 42, 0o640))
            .unwrap();
        tree.add_special(
            Path::new("/dev/console"),
            Special::CharDevice { major: 5, minor: 1 },
            Meta::default(),
        )
        .unwrap();
        let entries = collect(&tree, 1_000).unwrap();
        let shadow = entries.iter().find(|e| e.name == b"etc/shadow").unwrap();
        assert_eq!(shadow.mode, cpio::S_IFREG | 0o640);
        assert_eq!(shadow.gid, 42);
        assert_eq!(shadow.mtime, 1_000);
        let console = entries.iter().find(|e| e.name == b"dev/console").unwrap();
        assert_eq!(console.mode, cpio::S_IFCHR | 0o600);
        assert_eq!((console.rdev_major, console.rdev_minor), (5, 1));
        let dev = entries.iter().find(|e| e.name == b"dev").unwrap();
        assert_eq!(dev.mode & cpio::S_IFMT, cpio::S_IFDIR);
    }
}
