//! Compressors for the initramfs, each configured so that the kernel can
//! unpack the result and so that the bytes do not depend on the machine.
//!
//! - **zstd** (default): multithreaded through libzstd's own workers. With at
//!   least one worker, libzstd cuts the input into jobs whose size depends only
//!   on the compression parameters, never on the worker count, so 1, 2 or 64
//!   workers give identical output (tested). Single-threaded mode (0 workers)
//!   uses a different code path and different bytes, so we never use it: even
//!   `threads = 1` means one worker. The frame carries a content checksum,
//!   which the kernel's zstd decoder verifies.
//! - **gzip**: one deflate stream through flate2's zlib-rs backend,
//!   single-threaded. Parallel gzip writers (pigz-style independent blocks)
//!   were tried and rejected: the `gzp` crate gave different bytes on every
//!   run with 2 threads, and a pigz-compatible writer of our own would be a
//!   page of subtle code for a format we only offer for old boot loaders. The
//!   header has mtime 0 and no file name, so it is reproducible.
//! - **xz**: liblzma's multithreaded encoder with a **fixed block size** (the
//!   blocks are compressed independently, so the output does not depend on the
//!   thread count) and **`Check::Crc32`**: the kernel's XZ decoder rejects the
//!   default CRC64 check and the boot panics. The filter is plain LZMA2 (no
//!   BCJ), which every kernel XZ decoder supports.
//!
//! Default levels were chosen from measurements with `benches/pack.sh` on a
//! 59 MiB tree of programs and libraries (2 cores, busy machine; `gzip -9`
//! pipeline: 20.8 MiB, 10.3 s CPU):
//!
//! | zstd level | size MiB | CPU s |
//! |---:|---:|---:|
//! | 3 | 19.3 | 0.7 |
//! | 6 | 18.3 | 1.2 |
//! | **9** | 17.6 | 1.9 |
//! | 12 | 17.5 | 4.0 |
//! | 15 | 17.4 | 12.8 |
//!
//! Level 9 is the knee: about 5x faster than `gzip -9` and 15% smaller;
//! above it each step costs twice the time for well under 1%. gzip keeps 9
//! (it is only for old boot loaders, where size matters most), xz keeps
//! liblzma's default 6.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use flate2::write::GzEncoder;
use liblzma::stream::{Check, MtStreamBuilder};
use liblzma::write::XzEncoder;

/// The compression of the initramfs: the one type for profiles
/// (`output.compression`, through serde), the command line (`--compression`,
/// through clap) and the compressors below, so a name means the same
/// everywhere and the level ranges live in one table
/// ([`Compression::level_range`]).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Fast to decompress; the default.
    #[default]
    Zstd,
    /// Understood by every kernel and boot loader.
    Gzip,
    /// Usually the smallest; written with a CRC32 check, the only one the kernel accepts.
    Xz,
    /// No compression: a bare cpio archive (for inspection and tests). Not
    /// offered to profiles or the command line: a ramdisk is always compressed.
    #[serde(skip_deserializing)]
    #[value(skip)]
    None,
}

impl Compression {
    /// The level used when the profile or command line gives none.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Zstd => 9,
            Compression::Gzip => 9,
            Compression::Xz => 6,
            Compression::None => 0,
        }
    }

    /// The accepted level range, for error messages and validation; profiles
    /// and `--level` are checked against the same table
    /// ([`Compression::levels`]).
    pub fn level_range(self) -> (i32, i32) {
        match self {
            // Above 19 libzstd switches to windows the kernel's decoder may
            // refuse to allocate ("ultra" levels); stay at or below 19.
            Compression::Zstd => (1, 19),
            Compression::Gzip => (1, 9),
            Compression::Xz => (0, 9),
            Compression::None => (0, 0),
        }
    }

    /// The usual file name suffix (`.zst`, `.gz`, `.xz`, empty).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => ".zst",
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::None => "",
        }
    }

    /// [`Compression::level_range`] as the unsigned range a profile's
    /// `output.level` and `--level` are checked against.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        let (min, max) = self.level_range();
        let u = |n: i32| u32::try_from(n).unwrap_or(0);
        u(min)..=u(max)
    }

    /// The name as written in a profile and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::None => "none",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = CompressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "zstd" | "zst" => Ok(Compression::Zstd),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "xz" => Ok(Compression::Xz),
            "none" | "cpio" => Ok(Compression::None),
            _ => Err(CompressError::Unknown(s.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("unknown compression {0:?}; use zstd (default), gzip, xz or none")]
    Unknown(String),
    #[error("{kind} level {level} is out of range; use {min}..={max}")]
    Level {
        kind: Compression,
        level: i32,
        min: i32,
        max: i32,
    },
    #[error("starting the {kind} compressor: {source}")]
    Init {
        kind: Compression,
        source: io::Error,
    },
}

/// xz block size: fixed so that the output is independent of the thread
/// count. 3 × the dictionary of preset 6 (8 MiB), liblzma's own default for
/// that preset, keeps the ratio close to single-threaded xz.
const XZ_BLOCK_SIZE: u64 = 24 << 20;

/// A compressing writer; call [`Encoder::finish`] to end the stream.
pub enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(GzEncoder<W>),
    Xz(XzEncoder<W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Starts a compressor writing into `out`. `threads` is the number of
    /// worker threads (0 is treated as 1); the output does not depend on it.
    pub fn new(
        kind: Compression,
        level: Option<i32>,
        threads: usize,
        out: W,
    ) -> Result<Self, CompressError> {
        let level = level.unwrap_or(kind.default_level());
        let (min, max) = kind.level_range();
        if !(min..=max).contains(&level) {
            return Err(CompressError::Level {
                kind,
                level,
                min,
                max,
            });
        }
        let threads = u32::try_from(threads.max(1)).unwrap_or(u32::MAX);
        let init = |source| CompressError::Init { kind, source };
        Ok(match kind {
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, level).map_err(init)?;
                e.include_checksum(true).map_err(init)?;
                e.multithread(threads).map_err(init)?;
                Encoder::Zstd(e)
            }
            Compression::Gzip => {
                // `GzBuilder` writes mtime 0, no name, OS byte "unknown".
                let gz =
                    flate2::GzBuilder::new().write(out, flate2::Compression::new(level as u32));
                Encoder::Gzip(gz)
            }
            Compression::Xz => {
                let stream = MtStreamBuilder::new()
                    .preset(level as u32)
                    .check(Check::Crc32)
                    .threads(threads)
                    .block_size(XZ_BLOCK_SIZE)
                    .timeout_ms(0)
                    .encoder()
                    .map_err(|e| init(io::Error::other(e)))?;
                Encoder::Xz(XzEncoder::new_stream(out, stream))
            }
            Compression::None => Encoder::None(out),
        })
    }

    /// Ends the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.write_all(buf),
            Encoder::Gzip(e) => e.write_all(buf),
            Encoder::Xz(e) => e.write_all(buf),
            Encoder::None(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// Compresses a whole buffer (tests and small artifacts).
pub fn compress_bytes(
    kind: Compression,
    level: Option<i32>,
    threads: usize,
    data: &[u8],
) -> io::Result<Vec<u8>> {
    let mut e = Encoder::new(kind, level, threads, Vec::new()).map_err(io::Error::other)?;
    e.write_all(data)?;
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Compressible but not trivial input, several xz blocks and zstd jobs long.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x & 0xff) as u8
                } else {
                    b"initramfs"[i % 9]
                }
            })
            .collect()
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        // Two xz blocks (24 MiB each) and several zstd jobs.
        let data = sample(28 << 20);
        for kind in [Compression::Zstd, Compression::Xz] {
            let level = if kind == Compression::Xz {
                Some(0)
            } else {
                Some(3)
            };
            let one = compress_bytes(kind, level, 1, &data).unwrap();
            for t in [2, 4] {
                let other = compress_bytes(kind, level, t, &data).unwrap();
                assert!(
                    one == other,
                    "{kind}: {t} threads gave different bytes than 1"
                );
            }
        }
    }

    #[test]
    fn round_trips_in_process() {
        let data = sample(3 << 20);
        let z = compress_bytes(Compression::Zstd, None, 2, &data).unwrap();
        assert_eq!(zstd::decode_all(&z[..]).unwrap(), data);
        let g = compress_bytes(Compression::Gzip, None, 2, &data).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&g[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let x = compress_bytes(Compression::Xz, Some(1), 2, &data).unwrap();
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new(&x[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        // Stream flags in the xz header: byte 7 is the check id, 0x01 = CRC32.
        assert_eq!(x[7], 0x01, "xz must use the CRC32 check");
    }

    #[test]
    fn bad_levels_and_names_are_explained() {
        let err = Encoder::new(Compression::Zstd, Some(22), 1, Vec::new())
            .err()
            .unwrap();
        assert!(err.to_string().contains("1..=19"), "{err}");
        let err = "lz4".parse::<Compression>().unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
    }
}
