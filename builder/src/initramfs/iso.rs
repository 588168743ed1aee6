//! Reading ISO 9660 images, so the audit, `inspect` and `diff` can look at
//! the initramfs and kernel inside a built ISO (which [`crate::build::iso`]
//! writes with xorriso).
//!
//! The reader is deliberately small: ISO 9660 directory records plus the
//! Rock Ridge `NM` (long name) entry, which is all `xorriso -R` images need to
//! be walked. No external tool, no temporary copy.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

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
