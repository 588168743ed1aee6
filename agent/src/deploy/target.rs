//! The thing an image is written to: a block device in the ramdisk, a
//! regular file in tests and benchmarks. Everything that touches a disk's
//! bytes goes through [`Target`], so the same code runs on both.

use super::{DeployError, io_msg};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

/// `BLKRRPART`: ask the kernel to re-read the partition table.
const BLKRRPART: libc::c_ulong = 0x125f;
/// `BLKZEROOUT`: zero a byte range (the device may do it without data).
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// Size of the zero buffer used when the device cannot zero by itself.
const ZERO_CHUNK: usize = 1 << 20;

/// An open disk (or file standing in for one).
#[derive(Debug)]
pub struct Target {
    file: File,
    path: PathBuf,
    size: u64,
    block: bool,
    dirty: std::sync::atomic::AtomicBool,
}

impl Target {
    /// Opens an existing device or file for reading and writing; never
    /// creates one (a typo must not become a file in `/dev`).
    pub fn open(path: &Path) -> Result<Self, DeployError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                DeployError::Write(io_msg(format!("cannot open {}", path.display()), &e))
            })?;
        let meta = file
            .metadata()
            .map_err(|e| DeployError::Write(io_msg(path.display(), &e)))?;
        let block = meta.file_type().is_block_device();
        let size = if block {
            device_size(&file).map_err(|e| DeployError::Write(io_msg(path.display(), &e)))?
        } else {
            meta.len()
        };
        Ok(Target {
            file,
            path: path.to_path_buf(),
            size,
            block,
            dirty: Default::default(),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether anything was written or zeroed through this handle.
    pub fn dirty(&self) -> bool {
        self.dirty.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `buf` at `offset`; refuses to write past the end, so an image
    /// can never grow a file standing in for a disk.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeployError> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(DeployError::Write(format!(
                "write of {} bytes at {offset} goes past the end of {} ({} bytes)",
                buf.len(),
                self.path.display(),
                self.size
            )));
        }
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| DeployError::Write(io_msg(format!("writing {}", self.path.display()), &e)))
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeployError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| DeployError::Write(io_msg(format!("reading {}", self.path.display()), &e)))
    }

    /// Zeroes `len` bytes at `offset` (clipped to the end): the device's own
    /// zeroing when it has one, else streamed zeros.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), DeployError> {
        let len = len.min(self.size.saturating_sub(offset));
        if len == 0 {
            return Ok(());
        }
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        if (self.block && self.zero_out(offset, len)) || (!self.block && self.punch(offset, len)) {
            return Ok(());
        }
        let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write_at(offset + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// `BLKZEROOUT`; `false` when the kernel refuses (then we write zeros).
    fn zero_out(&self, offset: u64, len: u64) -> bool {
        use std::os::fd::AsRawFd;
        let range: [u64; 2] = [offset, len];
        // SAFETY: BLKZEROOUT reads a [u64; 2] from the pointer, which lives
        // for the call; the fd is open.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKZEROOUT as _, range.as_ptr()) };
        rc == 0
    }

    /// A regular file (tests, benchmarks) gets a hole instead of written
    /// zeros; `false` when the file system cannot punch one.
    fn punch(&self, offset: u64, len: u64) -> bool {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return false;
        };
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: plain syscall on an open fd with integer arguments.
        unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, n) == 0 }
    }

    /// Flushes everything written to stable storage.
    pub fn sync(&self) -> Result<(), DeployError> {
        self.file
            .sync_all()
            .map_err(|e| DeployError::Write(io_msg(format!("syncing {}", self.path.display()), &e)))
    }

    /// Makes the kernel re-read the partition table (block devices only; a
    /// busy device is logged, not an error: the next boot reads it anyway).
    pub fn reread_partitions(&self) {
        if !self.block {
            return;
        }
        use std::os::fd::AsRawFd;
        // SAFETY: BLKRRPART takes no argument; the fd is open.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKRRPART as _, 0) };
        if rc != 0 {
            log::warn!(
                "re-reading the partition table of {} failed: {}",
                self.path.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// A block device's size (seeking to its end works without an ioctl).
fn device_size(file: &File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    let size = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(size)
}

/// A regular file holding `bytes`, standing in for a disk in unit tests;
/// the directory goes when the returned guard drops.
#[cfg(test)]
pub(crate) fn test_file(bytes: impl AsRef<[u8]>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// [`test_file`], opened as a [`Target`].
#[cfg(test)]
pub(crate) fn test_target(bytes: impl AsRef<[u8]>) -> (tempfile::TempDir, Target) {
    let (dir, path) = test_file(bytes);
    (dir, Target::open(&path).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_inside_the_file_only() {
        let (_t, p) = test_file(vec![7u8; 4096]);
        let d = Target::open(&p).unwrap();
        assert_eq!(d.size(), 4096);
        d.write_at(4000, &[1u8; 96]).unwrap();
        let e = d.write_at(4000, &[1u8; 97]).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
        d.zero(10, 100).unwrap();
        d.zero(4090, 1000).unwrap();
        let data = std::fs::read(&p).unwrap();
        assert_eq!(data.len(), 4096);
        assert!(data[10..110].iter().all(|b| *b == 0));
        assert_eq!(data[9], 7);
        assert_eq!(data[110], 7);
        assert!(data[4090..].iter().all(|b| *b == 0));
        assert_eq!(data[4089], 1);
    }

    #[test]
    fn never_creates_a_missing_device() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sdz");
        assert!(Target::open(&p).is_err());
        assert!(!p.exists());
    }
}
