//! Reading an initramfs as the kernel reads it (the writer is
//! [`super::cpio`]); the audit, `inspect` and `diff` read through here.
//!
//! An initramfs is a sequence of *segments*: a plain newc cpio archive (up to
//! its `TRAILER!!!`), or a gzip/zstd/xz stream whose content is one or more
//! cpio archives, separated by NUL padding. That is how the kernel accepts an
//! uncompressed early-microcode archive followed by the compressed main one,
//! and this reader walks it the same way, without unpacking anything to disk.

use std::io::{self, BufRead, BufReader, Read};

pub use super::compress::Compression;

/// The name of a compression layer, as findings and errors record it.
pub fn layer_name(kind: Compression) -> &'static str {
    match kind {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::Xz => "xz",
        Compression::None => "cpio",
    }
}

/// The compression of `data`, from its first bytes.
pub fn sniff(data: &[u8]) -> Option<Compression> {
    if data.starts_with(b"\x1f\x8b") {
        Some(Compression::Gzip)
    } else if data.starts_with(b"\x28\xb5\x2f\xfd") {
        Some(Compression::Zstd)
    } else if data.starts_with(b"\xfd7zXZ\x00") {
        Some(Compression::Xz)
    } else {
        None
    }
}

/// Formats the kernel also accepts but this reader does not.
fn unsupported(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"BZh") {
        Some("bzip2")
    } else if data.starts_with(b"\x5d\x00\x00") {
        Some("lzma")
    } else if data.starts_with(b"\x89LZO") {
        Some("lzo")
    } else if data.starts_with(b"\x02\x21\x4c\x18") {
        Some("lz4")
    } else {
        None
    }
}

/// A decoder over one compressed stream, reading from a byte slice and
/// consuming exactly the bytes of that stream (so what follows can be read).
enum Decoder<'a> {
    Gzip(flate2::bufread::GzDecoder<&'a [u8]>),
    Zstd(zstd::stream::read::Decoder<'static, &'a [u8]>),
    Xz(liblzma::bufread::XzDecoder<&'a [u8]>),
}

impl<'a> Decoder<'a> {
    fn new(kind: Compression, data: &'a [u8]) -> io::Result<Self> {
        Ok(match kind {
            Compression::Gzip => Decoder::Gzip(flate2::bufread::GzDecoder::new(data)),
            Compression::Zstd => {
                Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(data)?.single_frame())
            }
            Compression::Xz => Decoder::Xz(liblzma::bufread::XzDecoder::new(data)),
            Compression::None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not compressed data",
                ));
            }
        })
    }

    /// The bytes after this stream. Only meaningful once it was read to the end.
    fn rest(self) -> &'a [u8] {
        match self {
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
            Decoder::Xz(d) => d.into_inner(),
        }
    }
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Xz(d) => d.read(buf),
        }
    }
}

/// Decompresses the first stream of `data`, keeping at most `cap` bytes.
pub fn decompress(kind: Compression, data: &[u8], cap: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Decoder::new(kind, data)?.take(cap).read_to_end(&mut out)?;
    Ok(out)
}

fn is_cpio_magic(data: &[u8]) -> bool {
    data.starts_with(b"070701") || data.starts_with(b"070702")
}

/// Whether `data` is an initramfs: a newc cpio, or a compressed stream whose
/// content starts like one.
pub fn is_initramfs(data: &[u8]) -> bool {
    if is_cpio_magic(data) {
        return true;
    }
    let Some(kind) = sniff(data) else {
        return false;
    };
    let mut head = [0u8; 6];
    Decoder::new(kind, data)
        .and_then(|mut d| d.read_exact(&mut head))
        .is_ok()
        && is_cpio_magic(&head)
}

/// Why an initramfs could not be read; `offset` is in the outer file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("at byte {offset}: {what}")]
    Format { offset: u64, what: String },
    #[error("at byte {offset}: {compression} data is not supported; decompress it first")]
    Unsupported {
        offset: u64,
        compression: &'static str,
    },
    #[error("at byte {offset} ({layer}): {source}")]
    Io {
        offset: u64,
        layer: &'static str,
        source: io::Error,
    },
}

/// One regular file of an archive.
pub struct Entry {
    /// Absolute image path (`/etc/shadow`).
    pub path: String,
    pub data: Vec<u8>,
}

/// Walks every segment of an initramfs and calls `f` for each regular file
/// with content. `f` may stop the walk by returning an error string.
pub fn for_each_entry(
    data: &[u8],
    f: &mut dyn FnMut(Entry) -> Result<(), String>,
) -> Result<(), ArchiveError> {
    let mut rest = data;
    loop {
        let zeros = rest.iter().take_while(|&&b| b == 0).count();
        rest = &rest[zeros..];
        if rest.is_empty() {
            return Ok(());
        }
        let offset = (data.len() - rest.len()) as u64;
        if is_cpio_magic(rest) {
            let mut r: &[u8] = rest;
            read_cpio(&mut r, true, f).map_err(|e| into_archive(e, offset, "cpio"))?;
            rest = r;
        } else if let Some(kind) = sniff(rest) {
            let mut dec = Decoder::new(kind, rest).map_err(|source| ArchiveError::Io {
                offset,
                layer: layer_name(kind),
                source,
            })?;
            {
                let mut br = BufReader::with_capacity(256 * 1024, &mut dec);
                read_cpio(&mut br, false, f)
                    .map_err(|e| into_archive(e, offset, layer_name(kind)))?;
                io::copy(&mut br, &mut io::sink()).map_err(|source| ArchiveError::Io {
                    offset,
                    layer: layer_name(kind),
                    source,
                })?;
            }
            rest = dec.rest();
        } else if let Some(compression) = unsupported(rest) {
            return Err(ArchiveError::Unsupported {
                offset,
                compression,
            });
        } else {
            return Err(ArchiveError::Format {
                offset,
                what: "neither a newc cpio archive nor gzip/zstd/xz data (the kernel would reject this too)".into(),
            });
        }
    }
}

enum CpioError {
    Io(io::Error),
    Format(String),
    Stopped(String),
}

fn into_archive(e: CpioError, offset: u64, layer: &'static str) -> ArchiveError {
    match e {
        CpioError::Io(source) => ArchiveError::Io {
            offset,
            layer,
            source,
        },
        CpioError::Format(what) => ArchiveError::Format {
            offset,
            what: format!("{layer}: {what}"),
        },
        CpioError::Stopped(what) => ArchiveError::Format { offset, what },
    }
}

impl From<io::Error> for CpioError {
    fn from(e: io::Error) -> Self {
        CpioError::Io(e)
    }
}

fn hex_field(h: &[u8], i: usize) -> Result<u64, CpioError> {
    let f = &h[6 + i * 8..6 + (i + 1) * 8];
    std::str::from_utf8(f)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| {
            CpioError::Format(format!(
                "bad newc header field {:?}",
                String::from_utf8_lossy(f)
            ))
        })
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "archive truncated",
        ));
    }
    Ok(())
}

/// Reads newc archives from `r`. With `one`, stops after the first
/// `TRAILER!!!` (a plain segment); otherwise reads archives and NUL padding
/// to the end of the stream (a compressed segment).
fn read_cpio<R: BufRead>(
    r: &mut R,
    one: bool,
    f: &mut dyn FnMut(Entry) -> Result<(), String>,
) -> Result<(), CpioError> {
    loop {
        // NUL padding between archives.
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            let z = buf.iter().take_while(|&&b| b == 0).count();
            let done = z < buf.len();
            r.consume(z);
            if done {
                break;
            }
        }
        let mut h = [0u8; 110];
        r.read_exact(&mut h)?;
        if !is_cpio_magic(&h) {
            return Err(CpioError::Format(
                "expected a newc cpio header (070701)".into(),
            ));
        }
        let mode = hex_field(&h, 1)?;
        let size = hex_field(&h, 6)?;
        let namesize = hex_field(&h, 11)?;
        if namesize == 0 || namesize > 64 * 1024 {
            return Err(CpioError::Format(format!(
                "implausible name size {namesize}"
            )));
        }
        let mut name = vec![0u8; namesize as usize];
        r.read_exact(&mut name)?;
        skip(r, (4 - (110 + namesize) % 4) % 4)?;
        let name = String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(&name)).into_owned();
        if name == "TRAILER!!!" {
            if one {
                return Ok(());
            }
            continue;
        }
        if mode & 0o170000 == 0o100000 && size > 0 {
            let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
            r.take(size).read_to_end(&mut data)?;
            if data.len() as u64 != size {
                return Err(CpioError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("archive truncated in {name}"),
                )));
            }
            let path = format!("/{}", name.trim_start_matches("./").trim_start_matches('/'));
            f(Entry { path, data }).map_err(CpioError::Stopped)?;
        } else {
            skip(r, size)?;
        }
        skip(r, (4 - size % 4) % 4)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newc(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |name: &str, mode: u32, data: &[u8]| {
            let h = format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                1,
                mode,
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                name.len() + 1,
                0
            );
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        for (n, d) in entries {
            push(n, 0o100644, d);
        }
        push("TRAILER!!!", 0, b"");
        out
    }

    fn collect(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
        let mut v = Vec::new();
        for_each_entry(data, &mut |e| {
            v.push((e.path, e.data));
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn plain_then_zstd_then_gzip_segments() {
        let mut img = newc(&[("kernel/x86/microcode/GenuineIntel.bin", b"ucode")]);
        img.extend_from_slice(&[0; 512]);
        img.extend(zstd::encode_all(&newc(&[("etc/a", b"A"), ("etc/b", b"BB")])[..], 3).unwrap());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &newc(&[("c", b"C")])).unwrap();
        img.extend(gz.finish().unwrap());
        let got = collect(&img).unwrap();
        let names: Vec<_> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "/kernel/x86/microcode/GenuineIntel.bin",
                "/etc/a",
                "/etc/b",
                "/c"
            ]
        );
        assert!(is_initramfs(&img));
    }

    #[test]
    fn xz_segment_and_truncation() {
        let cpio = newc(&[("etc/x", b"hello")]);
        let mut xz = Vec::new();
        liblzma::read::XzEncoder::new(&cpio[..], 6)
            .read_to_end(&mut xz)
            .unwrap();
        assert!(is_initramfs(&xz));
        assert_eq!(collect(&xz).unwrap()[0].1, b"hello");
        let err = collect(&cpio[..cpio.len() - 130]).unwrap_err();
        assert!(
            err.to_string().contains("truncated") || err.to_string().contains("eof"),
            "{err}"
        );
    }

    #[test]
    fn junk_is_an_error_naming_the_offset() {
        let mut img = newc(&[("a", b"1")]);
        let at = img.len();
        img.extend_from_slice(b"junk!");
        let err = collect(&img).unwrap_err().to_string();
        assert!(err.contains(&format!("byte {at}")), "{err}");
    }
}
