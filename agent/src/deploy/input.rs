//! The downloaded bytes as one forward-only stream that hashes everything
//! passing through it (skipped bytes included), counts it, and keeps only
//! the last fetched extent so a qcow2 compressed cluster that shares a
//! sector with the one before can still be read. Memory stays at one
//! extent, whatever the image size.

use super::DeployError;
use super::checksum::Hasher;
use std::io::Read;

/// Size of the scratch buffer for skipped bytes.
const SKIP_CHUNK: usize = 1 << 16;

/// A hashing, counting, forward-only reader.
pub struct Input<R> {
    inner: R,
    hasher: Hasher,
    pos: u64,
    look: Vec<u8>,
    look_start: u64,
}

fn read_err(e: std::io::Error) -> DeployError {
    DeployError::Download(format!("reading the image failed: {e}"))
}

impl<R: Read> Input<R> {
    /// Wraps `inner`; every byte read goes into `hasher`.
    pub fn new(inner: R, hasher: Hasher) -> Self {
        Input {
            inner,
            hasher,
            pos: 0,
            look: Vec::new(),
            look_start: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads until `buf` is full or the stream ends; returns the count.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize, DeployError> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads and discards up to offset `off` (an early end is an error).
    pub fn skip_to(&mut self, off: u64) -> Result<(), DeployError> {
        let mut scratch = vec![0u8; SKIP_CHUNK];
        while self.pos < off {
            let want = (off - self.pos).min(SKIP_CHUNK as u64) as usize;
            if self.fill(&mut scratch[..want])? == 0 {
                return Err(DeployError::InvalidImage(format!(
                    "the image ends at byte {} but data is expected at {off}",
                    self.pos
                )));
            }
        }
        Ok(())
    }

    /// The bytes `off..off+len`. `off` may lie inside the previous extent
    /// but not before it; with `short_ok` the stream may end early.
    pub fn fetch(&mut self, off: u64, len: usize, short_ok: bool) -> Result<Vec<u8>, DeployError> {
        if off < self.look_start
            || (off < self.pos && off >= self.look_start + self.look.len() as u64)
        {
            return Err(DeployError::InvalidImage(format!(
                "qcow2 layout cannot be streamed: data at byte {off} is needed after byte {} was read; \
                 convert the image with `qemu-img convert -O qcow2` first",
                self.pos
            )));
        }
        let mut combined = if off < self.pos {
            self.look[(off - self.look_start) as usize..].to_vec()
        } else {
            self.skip_to(off)?;
            Vec::new()
        };
        if combined.len() < len {
            let have = combined.len();
            combined.resize(len, 0);
            let got = self.fill(&mut combined[have..])?;
            combined.truncate(have + got);
            if combined.len() < len && !short_ok {
                return Err(DeployError::InvalidImage(format!(
                    "the image ends at byte {} inside data expected up to {}",
                    self.pos,
                    off + len as u64
                )));
            }
        }
        let out = combined[..len.min(combined.len())].to_vec();
        self.look = combined;
        self.look_start = off;
        Ok(out)
    }

    /// Reads to the end (so the digest covers the whole file); returns the
    /// total length.
    pub fn drain(&mut self) -> Result<u64, DeployError> {
        let mut scratch = vec![0u8; SKIP_CHUNK];
        while self.fill(&mut scratch)? > 0 {}
        Ok(self.pos)
    }

    /// The hex digest of everything read.
    pub fn digest(self) -> String {
        self.hasher.hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::checksum::Algo;

    #[test]
    fn fetch_overlaps_the_previous_extent_but_never_goes_back_further() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut i = Input::new(&data[..], Hasher::new(Algo::Sha256));
        assert_eq!(i.fetch(100, 50, false).unwrap(), &data[100..150]);
        assert_eq!(i.fetch(140, 20, false).unwrap(), &data[140..160], "overlap");
        assert_eq!(i.fetch(145, 5, false).unwrap(), &data[145..150], "inside");
        assert_eq!(i.fetch(150, 10, false).unwrap(), &data[150..160]);
        assert!(
            i.fetch(10, 5, false)
                .unwrap_err()
                .to_string()
                .contains("cannot be streamed")
        );
        assert_eq!(i.fetch(9990, 100, true).unwrap(), &data[9990..]);
        assert!(i.fetch(9995, 100, false).is_err());
        assert_eq!(i.drain().unwrap(), 10_000);
        let mut h = Hasher::new(Algo::Sha256);
        h.update(&data);
        assert_eq!(i.digest(), h.hex());
    }
}
