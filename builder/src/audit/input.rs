//! Reading what the audit scans when it is not a plain directory: compressed
//! files, initramfs archives as the kernel reads them, and ISO images.
//!
//! An initramfs is a sequence of *segments*: a plain newc cpio archive (up to
//! its `TRAILER!!!`), or a gzip/zstd/xz stream whose content is one or more
//! cpio archives, separated by NUL padding. That is how the kernel accepts an
//! uncompressed early-microcode archive followed by the compressed main one,
//! and this reader walks it the same way, without unpacking anything to disk.
//!
//! The ISO reader is deliberately small: ISO 9660 directory records plus the
//! Rock Ridge `NM` (long name) entry, which is all `xorriso -R` images need to
//! be walked. No external tool, no temporary copy.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;

/// Compression formats recognised by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Xz,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        }
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
                layer: kind.name(),
                source,
            })?;
            {
                let mut br = BufReader::with_capacity(256 * 1024, &mut dec);
                read_cpio(&mut br, false, f).map_err(|e| into_archive(e, offset, kind.name()))?;
                io::copy(&mut br, &mut io::sink()).map_err(|source| ArchiveError::Io {
                    offset,
                    layer: kind.name(),
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

// ---------------------------------------------------------------------------
// ISO 9660
// ---------------------------------------------------------------------------

const SECTOR: u64 = 2048;

/// A regular file in an ISO image.
#[derive(Debug, Clone)]
pub struct IsoFile {
    pub path: String,
    pub offset: u64,
    pub size: u64,
}

/// Whether `file` is an ISO 9660 image (`CD001` in the first volume descriptor).
pub fn is_iso(file: &File) -> bool {
    let mut id = [0u8; 5];
    file.read_exact_at(&mut id, 16 * SECTOR + 1).is_ok() && &id == b"CD001"
}

fn le32(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64
}

/// Lists every regular file of the primary volume, with Rock Ridge names
/// where present.
pub fn iso_files(file: &File) -> io::Result<Vec<IsoFile>> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a readable ISO 9660 image: {what}"),
        )
    };
    let mut pvd = vec![0u8; SECTOR as usize];
    file.read_exact_at(&mut pvd, 16 * SECTOR)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return Err(bad("no primary volume descriptor at sector 16"));
    }
    let root = &pvd[156..190];
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), le32(root, 2), le32(root, 10), 0u32)];
    let mut seen = std::collections::HashSet::new();
    while let Some((dir, lba, size, depth)) = stack.pop() {
        if depth > 64 || size > 64 << 20 || !seen.insert(lba) {
            continue;
        }
        let mut buf = vec![0u8; size as usize];
        file.read_exact_at(&mut buf, lba * SECTOR)?;
        let mut i = 0usize;
        while i < buf.len() {
            let len = buf[i] as usize;
            if len == 0 {
                i = (i / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            if len < 34 || i + len > buf.len() {
                return Err(bad("directory record out of bounds"));
            }
            let rec = &buf[i..i + len];
            i += len;
            let nl = rec[32] as usize;
            if 33 + nl > rec.len() {
                return Err(bad("directory record name out of bounds"));
            }
            let iso_name = &rec[33..33 + nl];
            if iso_name == [0] || iso_name == [1] {
                continue;
            }
            let su = &rec[(33 + nl + (1 - nl % 2)).min(rec.len())..];
            let name = rock_ridge_name(su).unwrap_or_else(|| {
                let n = String::from_utf8_lossy(iso_name);
                n.split(';')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('.')
                    .to_string()
            });
            let path = format!("{dir}/{name}");
            let (extent, dsize, flags) = (le32(rec, 2), le32(rec, 10), rec[25]);
            if flags & 2 != 0 {
                stack.push((path, extent, dsize, depth + 1));
            } else {
                out.push(IsoFile {
                    path,
                    offset: extent * SECTOR,
                    size: dsize,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The Rock Ridge alternate name (`NM` entries, possibly several) in a
/// directory record's system use area.
fn rock_ridge_name(su: &[u8]) -> Option<String> {
    let mut j = 0;
    let mut name = Vec::new();
    while j + 4 <= su.len() {
        let l = su[j + 2] as usize;
        if l < 4 || j + l > su.len() {
            break;
        }
        if &su[j..j + 2] == b"NM" && l > 5 {
            name.extend_from_slice(&su[j + 5..j + l]);
        }
        j += l;
    }
    (!name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned())
}

/// Reads one file of the ISO.
pub fn read_iso_file(file: &File, f: &IsoFile) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; f.size as usize];
    file.read_exact_at(&mut buf, f.offset)?;
    Ok(buf)
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
