//! The newc ("new ASCII", magic `070701`) cpio writer.
//!
//! newc is the only archive format the Linux kernel unpacks into its initial
//! rootfs, and it is small enough to write by hand: a 110-byte header of the
//! magic plus 13 eight-digit hexadecimal fields, the NUL-terminated name
//! padded to a multiple of 4, the data padded to a multiple of 4, and a final
//! entry named `TRAILER!!!`. Writing it ourselves lets us control every byte
//! that goes into the image, which reproducibility needs.
//!
//! Invariants the caller keeps: entries arrive sorted (parents before their
//! contents, which the kernel needs because it never creates missing parent
//! directories) and carry their final ownership, mode and mtime. The writer
//! keeps the rest:
//!
//! - **Inodes are renumbered** from 1 in archive order, so the host's inode
//!   numbers (which differ on every checkout) never reach the image. `devmajor`
//!   and `devminor` are always 0.
//! - **Hardlinks** share one inode number and carry their data exactly once,
//!   on the *first* entry of the group; later names have size 0. Both
//!   unpackers that matter accept this:
//!   - the kernel (`init/initramfs.c`): for a regular file with `nlink >= 2`,
//!     `maybe_link()` looks the (major, minor, ino, type) up in a table of
//!     names seen so far; the first name is created normally (and truncated)
//!     and receives the data; a later name is `link()`ed to the first and then
//!     opened *without* `O_TRUNC` and written with its (empty) body, so the
//!     data of the first survives;
//!   - GNU `cpio -i`: a newc entry with `nlink > 1` and size 0 is deferred;
//!     when the archive ends, each deferred name is linked to the already
//!     extracted name with the same (major, minor, ino).
//!
//!   GNU `cpio -o` itself puts the data on the *last* name instead; the kernel
//!   would accept that too, but "first" lets us stream each file the moment
//!   we meet it. The round-trip tests extract with `cpio -idm` and check
//!   hardlink identity; the boot test covers the kernel side.
//! - Only regular files are hardlinked: the kernel's link table is consulted
//!   for `S_ISREG` only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// File type bits as they appear in the cpio `mode` field (same as `st_mode`).
pub const S_IFMT: u32 = 0o170000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFIFO: u32 = 0o010000;

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &[u8] = b"TRAILER!!!";
/// Every newc numeric field is 8 hex digits.
const FIELD_MAX: u64 = u32::MAX as u64;

/// Where an entry's body comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Directories, device nodes, FIFOs.
    None,
    /// A regular file streamed from disk; `size` is the length recorded when
    /// the tree was walked, and the file must still have exactly that length.
    File { path: PathBuf, size: u64 },
    /// Bytes held in memory: a symlink's target, or small generated files.
    Bytes(Vec<u8>),
}

/// One archive member, with its final (image) metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the image, relative, without a leading `/` (`usr/bin/sh`).
    pub name: Vec<u8>,
    /// Type and permission bits (`S_IFREG | 0o755`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Number of names for this inode *inside the archive*.
    pub nlink: u32,
    pub mtime: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// Entries with the same `Some(key)` are hardlinks of one regular file.
    /// The key only has to be unique within one archive (the host's
    /// `(dev, ino)` pair is the natural choice).
    pub link_key: Option<(u64, u64)>,
    pub data: Data,
}

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("reading {path} for the archive: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{path} changed while the archive was written (expected {expected} bytes, found {found}); \
         something is still writing to the staging tree"
    )]
    Changed {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{name}: {field} {value} does not fit the 8-hex-digit newc field (max 4 GiB - 1)")]
    TooLarge {
        name: String,
        field: &'static str,
        value: u64,
    },
    #[error("{0}: an archive name must be relative, non-empty and free of NUL bytes")]
    BadName(String),
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
}

/// Streams newc entries into `out`. Call [`Writer::finish`] to write the
/// trailer; dropping the writer without it leaves a truncated archive.
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
    links: HashMap<(u64, u64), u32>,
    written: u64,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            next_ino: 1,
            links: HashMap::new(),
            written: 0,
            buf: vec![0; 256 * 1024],
        }
    }

    /// Bytes of archive written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends one entry.
    pub fn append(&mut self, entry: &Entry) -> Result<(), CpioError> {
        let shown = || String::from_utf8_lossy(&entry.name).into_owned();
        if entry.name.is_empty() || entry.name[0] == b'/' || entry.name.contains(&0) {
            return Err(CpioError::BadName(shown()));
        }
        let is_reg = entry.mode & S_IFMT == S_IFREG;
        // Hardlinks: the first name of a group gets a fresh inode and the data;
        // the others reuse the inode and carry no data (see the module docs).
        let (ino, carries_data) = match entry.link_key {
            Some(key) if is_reg && entry.nlink > 1 => match self.links.get(&key) {
                Some(&ino) => (ino, false),
                None => {
                    let ino = self.fresh_ino();
                    self.links.insert(key, ino);
                    (ino, true)
                }
            },
            _ => (self.fresh_ino(), true),
        };
        let size = match (&entry.data, carries_data) {
            (_, false) | (Data::None, _) => 0,
            (Data::File { size, .. }, true) => *size,
            (Data::Bytes(b), true) => b.len() as u64,
        };
        if size > FIELD_MAX {
            return Err(CpioError::TooLarge {
                name: shown(),
                field: "file size",
                value: size,
            });
        }
        self.header(&entry.name, ino, entry, size as u32)?;
        if carries_data {
            match &entry.data {
                Data::None => {}
                Data::Bytes(b) => self.put(b)?,
                Data::File { path, size } => self.stream(path, *size)?,
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// Writes the trailer; returns the inner writer and the archive's total size.
    pub fn finish(mut self) -> Result<(W, u64), CpioError> {
        let trailer = Entry {
            name: TRAILER.to_vec(),
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            rdev_major: 0,
            rdev_minor: 0,
            link_key: None,
            data: Data::None,
        };
        self.header(TRAILER, 0, &trailer, 0)?;
        self.out.flush().map_err(CpioError::Write)?;
        Ok((self.out, self.written))
    }

    fn fresh_ino(&mut self) -> u32 {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        ino
    }

    fn header(&mut self, name: &[u8], ino: u32, e: &Entry, size: u32) -> Result<(), CpioError> {
        let namesize = name.len() as u64 + 1;
        if namesize > FIELD_MAX {
            return Err(CpioError::TooLarge {
                name: String::from_utf8_lossy(name).into_owned(),
                field: "name length",
                value: namesize,
            });
        }
        let fields: [u32; 13] = [
            ino,
            e.mode,
            e.uid,
            e.gid,
            e.nlink,
            e.mtime,
            size,
            0, // devmajor: constant, so inode numbers alone identify hardlinks
            0, // devminor
            e.rdev_major,
            e.rdev_minor,
            namesize as u32,
            0, // check: only used by the 070702 "crc" variant
        ];
        let mut h = Vec::with_capacity(110 + name.len() + 4);
        h.extend_from_slice(MAGIC);
        for f in fields {
            h.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        h.extend_from_slice(name);
        h.push(0);
        // The header (110 bytes) plus the name is padded to a multiple of 4.
        while h.len() % 4 != 0 {
            h.push(0);
        }
        self.put(&h)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes).map_err(CpioError::Write)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, size: u64) -> Result<(), CpioError> {
        let n = ((4 - size % 4) % 4) as usize;
        self.put(&[0u8; 3][..n])
    }

    fn stream(&mut self, path: &Path, size: u64) -> Result<(), CpioError> {
        let read_err = |source| CpioError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut f = File::open(path).map_err(read_err)?;
        let mut left = size;
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match f.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(CpioError::Changed {
                            path: path.to_path_buf(),
                            expected: size,
                            found: size - left,
                        });
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(e)),
                };
                self.put(&buf[..n])?;
                left -= n as u64;
            }
            // A file that grew would silently lose its tail: refuse it too.
            let mut probe = [0u8; 1];
            match f.read(&mut probe) {
                Ok(0) => Ok(()),
                Ok(_) => Err(CpioError::Changed {
                    path: path.to_path_buf(),
                    expected: size,
                    found: size + 1,
                }),
                Err(e) => Err(read_err(e)),
            }
        })();
        self.buf = buf;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, mode: u32, data: Data) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 1_700_000_000,
            rdev_major: 0,
            rdev_minor: 0,
            link_key: None,
            data,
        }
    }

    #[test]
    fn header_layout_and_padding() {
        let mut w = Writer::new(Vec::new());
        w.append(&entry("a", S_IFREG | 0o644, Data::Bytes(b"hello".to_vec())))
            .unwrap();
        let (out, total) = w.finish().unwrap();
        assert_eq!(total, out.len() as u64);
        // magic + 13 fields
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001"); // ino
        assert_eq!(&out[14..22], b"000081A4"); // mode
        assert_eq!(&out[54..62], b"00000005"); // filesize
        assert_eq!(&out[94..102], b"00000002"); // namesize "a\0"
        // 110 + 2 = 112, already aligned; data 5 bytes padded to 8
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..117], b"hello");
        assert_eq!(&out[117..120], &[0, 0, 0]);
        assert_eq!(&out[120..126], b"070701");
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == TRAILER));
    }

    #[test]
    fn hardlinks_share_inode_and_carry_data_once() {
        let mut w = Writer::new(Vec::new());
        let mut a = entry("a", S_IFREG | 0o644, Data::Bytes(b"xyz".to_vec()));
        a.nlink = 2;
        a.link_key = Some((1, 99));
        let mut b = a.clone();
        b.name = b"b".to_vec();
        w.append(&a).unwrap();
        let first_len = w.written();
        w.append(&b).unwrap();
        let (out, total) = w.finish().unwrap();
        assert_eq!(total, out.len() as u64);
        let second = &out[first_len as usize..];
        assert_eq!(&second[6..14], b"00000001", "same inode");
        assert_eq!(&second[54..62], b"00000000", "no data on the second name");
    }

    #[test]
    fn absolute_or_empty_names_are_refused() {
        let mut w = Writer::new(Vec::new());
        assert!(matches!(
            w.append(&entry("/etc", S_IFDIR | 0o755, Data::None)),
            Err(CpioError::BadName(_))
        ));
        assert!(matches!(
            w.append(&entry("", S_IFDIR | 0o755, Data::None)),
            Err(CpioError::BadName(_))
        ));
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12").unwrap();
        let mut w = Writer::new(Vec::new());
        let err = w
            .append(&entry(
                "f",
                S_IFREG | 0o644,
                Data::File {
                    path: p.clone(),
                    size: 3,
                },
            ))
            .unwrap_err();
        assert!(matches!(err, CpioError::Changed { .. }), "{err}");
        let err = w
            .append(&entry(
                "f",
                S_IFREG | 0o644,
                Data::File { path: p, size: 1 },
            ))
            .unwrap_err();
        assert!(matches!(err, CpioError::Changed { .. }), "{err}");
    }
}
