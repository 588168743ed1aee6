//! qcow2 images: the header checks IPA's format inspector makes (no backing
//! file, no external data file, no encryption, nothing unknown), and
//! [`stream::convert`], which writes an image to a disk while it downloads.
//!
//! A small reader of our own, not a crate or qemu-img: the image arrives as
//! a one-way stream (no seeking back, no copy in RAM or tmpfs), which
//! neither the qcow2 crates (they want `Seek`) nor `qemu-img convert` (it
//! wants a file) can read.

pub mod stream;

use super::DeployError;

/// Incompatible feature bits we understand: dirty (0). Every other bit is
/// refused: corrupt (1), external data file (2), compression type (3, only
/// when it is not deflate), extended L2 entries (4), and unknown ones.
const DIRTY: u64 = 1;
const CORRUPT: u64 = 1 << 1;
const EXTERNAL_DATA: u64 = 1 << 2;
const COMPRESSION_TYPE: u64 = 1 << 3;
const EXTENDED_L2: u64 = 1 << 4;
/// Header extension naming an external data file.
const EXT_DATA_FILE: u32 = 0x4441_5441;
/// Header extension of a LUKS-encrypted image.
const EXT_CRYPTO: u32 = 0x0537_be77;

/// The parts of a qcow2 header the converter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Number of L1 entries.
    pub l1_size: u64,
    /// Where the L1 table is.
    pub l1_offset: u64,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn be64(b: &[u8], off: usize) -> u64 {
    (be32(b, off) as u64) << 32 | be32(b, off + 4) as u64
}

fn refuse(why: impl std::fmt::Display) -> DeployError {
    DeployError::InvalidImage(format!("qcow2 image refused: {why}"))
}

impl Header {
    /// Parses and vets the header in `b` (the image's first bytes, at least
    /// 512 and ideally the first cluster so header extensions are seen).
    pub fn parse(b: &[u8]) -> Result<Header, DeployError> {
        if b.len() < 104 || &b[..4] != b"QFI\xfb" {
            return Err(refuse("truncated or missing header"));
        }
        let version = be32(b, 4);
        if version != 2 && version != 3 {
            return Err(refuse(format!("version {version}")));
        }
        if be64(b, 8) != 0 {
            return Err(refuse("it has a backing file"));
        }
        if be32(b, 32) != 0 {
            return Err(refuse("it is encrypted"));
        }
        let cluster_bits = be32(b, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(refuse(format!("cluster_bits {cluster_bits}")));
        }
        let header_len = if version == 3 { check_v3(b)? } else { 72 };
        check_extensions(b, header_len, 1usize << cluster_bits)?;
        let h = Header {
            cluster_bits,
            size: be64(b, 24),
            l1_size: be32(b, 36) as u64,
            l1_offset: be64(b, 40),
        };
        h.check_geometry()?;
        Ok(h)
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Entries per L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    fn check_geometry(&self) -> Result<(), DeployError> {
        let per_l1 = self.cluster_size() * self.l2_entries();
        let needed = self.size.div_ceil(per_l1);
        if self.size == 0 {
            return Err(refuse("virtual size 0"));
        }
        if self.l1_size < needed || self.l1_size > 1 << 25 {
            return Err(refuse(format!(
                "L1 table of {} entries for a {}-byte disk",
                self.l1_size, self.size
            )));
        }
        if self.l1_offset == 0 || !self.l1_offset.is_multiple_of(self.cluster_size()) {
            return Err(refuse(format!("L1 table offset {}", self.l1_offset)));
        }
        Ok(())
    }
}

/// v3 feature bits; returns the header length.
fn check_v3(b: &[u8]) -> Result<usize, DeployError> {
    let incompatible = be64(b, 72);
    if incompatible & EXTERNAL_DATA != 0 {
        return Err(refuse("it uses an external data file"));
    }
    if incompatible & CORRUPT != 0 {
        return Err(refuse("it is marked corrupt"));
    }
    if incompatible & EXTENDED_L2 != 0 {
        return Err(refuse(
            "extended L2 entries (subclusters) are not supported",
        ));
    }
    let header_len = be32(b, 100) as usize;
    if header_len < 104 || header_len > b.len() {
        return Err(refuse(format!("header length {header_len}")));
    }
    if incompatible & COMPRESSION_TYPE != 0 && header_len > 104 && b[104] != 0 {
        return Err(refuse(
            "compression type is not deflate (zstd is not supported)",
        ));
    }
    let unknown = incompatible & !(DIRTY | COMPRESSION_TYPE);
    if unknown != 0 {
        return Err(refuse(format!(
            "unknown incompatible features {unknown:#x}"
        )));
    }
    Ok(header_len)
}

/// Walks the header extensions; an external data file or an encryption
/// header is refused.
fn check_extensions(b: &[u8], mut off: usize, cluster: usize) -> Result<(), DeployError> {
    let end = b.len().min(cluster);
    while off + 8 <= end {
        let (kind, len) = (be32(b, off), be32(b, off + 4) as usize);
        match kind {
            0 => return Ok(()),
            EXT_DATA_FILE => return Err(refuse("it names an external data file")),
            EXT_CRYPTO => return Err(refuse("it is encrypted")),
            _ => {}
        }
        off += 8 + len.div_ceil(8) * 8;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A v3 header for a `size`-byte disk with 64 KiB clusters, L1 at
    /// cluster 3.
    pub(crate) fn header(size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&size.to_be_bytes());
        let l1 = size.div_ceil(65536 * 8192).max(1) as u32;
        h[36..40].copy_from_slice(&l1.to_be_bytes());
        h[40..48].copy_from_slice(&(3u64 * 65536).to_be_bytes());
        h[96..100].copy_from_slice(&4u32.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        h
    }

    #[test]
    fn a_plain_header_parses() {
        let h = Header::parse(&header(1 << 30)).unwrap();
        assert_eq!(
            (h.cluster_size(), h.size, h.l1_size, h.l1_offset),
            (65536, 1 << 30, 2, 196608)
        );
    }

    #[test]
    fn refuses_what_ipa_refuses() {
        type Edit = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|h| h[15] = 200), "backing file"),
            (Box::new(|h| h[35] = 1), "encrypted"),
            (Box::new(|h| h[79] = 4), "external data file"),
            (Box::new(|h| h[79] = 2), "corrupt"),
            (Box::new(|h| h[79] = 16), "subclusters"),
            (Box::new(|h| h[79] = 0x40), "unknown incompatible"),
            (
                Box::new(|h| {
                    h[79] = 8;
                    h[104] = 1
                }),
                "zstd",
            ),
            (
                Box::new(|h| h[112..120].copy_from_slice(&[0x44, 0x41, 0x54, 0x41, 0, 0, 0, 4])),
                "external data file",
            ),
            (
                Box::new(|h| h[112..120].copy_from_slice(&[0x05, 0x37, 0xbe, 0x77, 0, 0, 0, 16])),
                "encrypted",
            ),
            (
                Box::new(|h| h[36..40].copy_from_slice(&0u32.to_be_bytes())),
                "L1 table",
            ),
            (Box::new(|h| h[23] = 30), "cluster_bits"),
        ];
        for (edit, why) in cases {
            let mut h = header(1 << 30);
            edit(&mut h);
            let e = Header::parse(&h).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
