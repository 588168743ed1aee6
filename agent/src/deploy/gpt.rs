//! The GUID partition table, as much as deploying needs: find it, move the
//! backup copy to the end of a disk bigger than the image (what `sgdisk -e`
//! does for IPA), add a partition at the end (`sgdisk -n 0:-64MB:0`).
//!
//! Written by hand (about 200 lines) rather than with the `gpt` crate: we
//! only edit an existing table in place, and the crate wants to own the
//! whole device and rewrite it, including the protective MBR of hybrid
//! images we must keep.

use super::DeployError;
use super::target::Target;

const SIGNATURE: &[u8; 8] = b"EFI PART";
/// The Linux filesystem data type, sgdisk's default (`8300`), mixed-endian.
pub const LINUX_FS_TYPE: [u8; 16] = guid_bytes(0x0FC63DAF, 0x8483, 0x4772, 0x8E79_3D69_D847_7DE4);

/// A GUID in its on-disk (mixed-endian) layout.
const fn guid_bytes(a: u32, b: u16, c: u16, d: u64) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    let d = d.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// A primary GPT header and its partition entries.
#[derive(Debug, Clone)]
pub struct Gpt {
    /// Logical sector size the table was found with (512 or 4096).
    pub sector: u64,
    /// The 92-byte header (plus padding up to its declared size).
    header: Vec<u8>,
    /// All partition entries, as on disk.
    entries: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

impl Gpt {
    /// Reads the primary GPT at LBA 1 (trying 512- then 4096-byte sectors).
    /// `Ok(None)` when there is none or its header checksum is wrong.
    pub fn read(t: &Target) -> Result<Option<Gpt>, DeployError> {
        for sector in [512u64, 4096] {
            if t.size() < sector * 3 {
                continue;
            }
            let mut header = vec![0u8; sector as usize];
            t.read_at(sector, &mut header)?;
            if &header[..8] != SIGNATURE {
                continue;
            }
            let hsize = u32_at(&header, 12) as usize;
            if !(92..=sector as usize).contains(&hsize) {
                continue;
            }
            header.truncate(hsize);
            if crc_of_header(&header) != u32_at(&header, 16) {
                log::warn!("GPT header at LBA 1 has a bad checksum; ignoring it");
                continue;
            }
            let gpt = Gpt::with_entries(t, sector, header)?;
            return Ok(Some(gpt));
        }
        Ok(None)
    }

    fn with_entries(t: &Target, sector: u64, header: Vec<u8>) -> Result<Gpt, DeployError> {
        let count = u32_at(&header, 80) as u64;
        let esize = u32_at(&header, 84) as u64;
        let len = count.saturating_mul(esize);
        if !(128..=1024).contains(&esize) || len > 1 << 20 {
            return Err(DeployError::InvalidImage(format!(
                "GPT declares {count} entries of {esize} bytes; refusing it"
            )));
        }
        let mut entries = vec![0u8; len as usize];
        t.read_at(u64_at(&header, 72).saturating_mul(sector), &mut entries)?;
        if crc32fast::hash(&entries) != u32_at(&header, 88) {
            return Err(DeployError::InvalidImage(
                "GPT partition entries have a bad checksum".into(),
            ));
        }
        Ok(Gpt {
            sector,
            header,
            entries,
        })
    }

    /// LBA of the backup header.
    pub fn backup_lba(&self) -> u64 {
        u64_at(&self.header, 32)
    }

    /// Last LBA partitions may use.
    pub fn last_usable(&self) -> u64 {
        u64_at(&self.header, 48)
    }

    fn entry_size(&self) -> usize {
        u32_at(&self.header, 84) as usize
    }

    /// Sectors the entry array takes.
    fn entry_sectors(&self) -> u64 {
        (self.entries.len() as u64).div_ceil(self.sector)
    }

    /// `(first, last)` LBA of every used entry.
    pub fn partitions(&self) -> Vec<(u64, u64)> {
        self.entries
            .chunks(self.entry_size())
            .filter(|e| e[..16].iter().any(|b| *b != 0))
            .map(|e| (u64_at(e, 32), u64_at(e, 40)))
            .collect()
    }

    /// Puts the backup header and entries at the very end of the disk and
    /// lets partitions use the space up to them; clears the old backup
    /// header so nothing finds a stale copy.
    pub fn move_backup_to_end(&mut self, t: &Target) -> Result<(), DeployError> {
        let last = t.size() / self.sector - 1;
        let old = self.backup_lba();
        if old == last {
            return Ok(());
        }
        if old < last && old > 1 {
            t.write_at(old * self.sector, &vec![0u8; self.sector as usize])?;
        }
        put_u64(&mut self.header, 32, last);
        let last_usable = last - self.entry_sectors() - 1;
        put_u64(&mut self.header, 48, last_usable);
        log::info!("moving the GPT backup header from LBA {old} to LBA {last}");
        self.write_both(t)
    }

    /// Adds a partition `first..=last` of type `type_guid` with a random
    /// unique GUID in the first free entry; returns its 1-based number.
    pub fn add_partition(
        &mut self,
        t: &Target,
        first: u64,
        last: u64,
        type_guid: [u8; 16],
    ) -> Result<usize, DeployError> {
        let esize = self.entry_size();
        let mut esize_chunks = self.entries.chunks(esize);
        let Some(index) = esize_chunks.position(|e| e[..16].iter().all(|b| *b == 0)) else {
            return Err(DeployError::Configdrive(
                "the GPT has no free partition entry".into(),
            ));
        };
        let mut unique = [0u8; 16];
        getrandom::fill(&mut unique)
            .map_err(|e| DeployError::Configdrive(format!("no randomness for a GUID: {e}")))?;
        unique[7] = (unique[7] & 0x0f) | 0x40; // version 4 (mixed-endian field c)
        unique[8] = (unique[8] & 0x3f) | 0x80;
        let e = &mut self.entries[index * esize..(index + 1) * esize];
        e.fill(0);
        e[..16].copy_from_slice(&type_guid);
        e[16..32].copy_from_slice(&unique);
        put_u64(e, 32, first);
        put_u64(e, 40, last);
        self.write_both(t)?;
        Ok(index + 1)
    }

    /// Writes entries and header, primary then backup, with fresh CRCs.
    fn write_both(&mut self, t: &Target) -> Result<(), DeployError> {
        let backup = self.backup_lba();
        let backup_entries = backup - self.entry_sectors();
        put_u32(&mut self.header, 88, crc32fast::hash(&self.entries));
        let primary = self.sealed(1, backup, u64_at(&self.header, 72));
        let secondary = self.sealed(backup, 1, backup_entries);
        t.write_at(u64_at(&primary, 72) * self.sector, &self.entries)?;
        t.write_at(self.sector, &primary)?;
        t.write_at(backup_entries * self.sector, &self.entries)?;
        t.write_at(backup * self.sector, &secondary)?;
        self.header = primary;
        Ok(())
    }

    /// A header copy at `my_lba`, pointing to `alternate` and entries at
    /// `entries_lba`, with its CRC.
    fn sealed(&self, my_lba: u64, alternate: u64, entries_lba: u64) -> Vec<u8> {
        let mut h = self.header.clone();
        put_u64(&mut h, 24, my_lba);
        put_u64(&mut h, 32, alternate);
        put_u64(&mut h, 72, entries_lba);
        let crc = crc_of_header(&h);
        put_u32(&mut h, 16, crc);
        h
    }
}

/// The header's CRC32, computed with its own CRC field zeroed.
fn crc_of_header(h: &[u8]) -> u32 {
    let mut copy = h.to_vec();
    put_u32(&mut copy, 16, 0);
    crc32fast::hash(&copy)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deploy::target::test_target;

    /// A GPT disk image of `sectors` 512-byte sectors whose backup sits at
    /// `backup_lba` (as if the image had been that small), with one
    /// partition 2048..=4095.
    pub(crate) fn gpt_image(sectors: u64, backup_lba: u64) -> Vec<u8> {
        let mut img = vec![0u8; (sectors * 512) as usize];
        img[510] = 0x55;
        img[511] = 0xAA;
        img[446 + 4] = 0xEE;
        let mut entries = vec![0u8; 128 * 128];
        entries[..16].copy_from_slice(&LINUX_FS_TYPE);
        entries[16] = 1;
        put_u64(&mut entries, 32, 2048);
        put_u64(&mut entries, 40, 4095);
        let mut h = vec![0u8; 92];
        h[..8].copy_from_slice(SIGNATURE);
        put_u32(&mut h, 8, 0x0001_0000);
        put_u32(&mut h, 12, 92);
        put_u64(&mut h, 40, 34);
        put_u64(&mut h, 48, backup_lba - 33);
        put_u32(&mut h, 80, 128);
        put_u32(&mut h, 84, 128);
        put_u32(&mut h, 88, crc32fast::hash(&entries));
        let g = Gpt {
            sector: 512,
            header: h,
            entries: entries.clone(),
        };
        let p = g.sealed(1, backup_lba, 2);
        let b = g.sealed(backup_lba, 1, backup_lba - 32);
        img[512..604].copy_from_slice(&p);
        img[1024..1024 + entries.len()].copy_from_slice(&entries);
        let be = ((backup_lba - 32) * 512) as usize;
        img[be..be + entries.len()].copy_from_slice(&entries);
        img[(backup_lba * 512) as usize..(backup_lba * 512) as usize + 92].copy_from_slice(&b);
        img
    }

    #[test]
    fn moves_the_backup_to_the_end_and_both_copies_verify() {
        let mut img = gpt_image(8192, 6000);
        img.resize(16384 * 512, 0);
        let (_d, t) = test_target(&img);
        let mut g = Gpt::read(&t).unwrap().unwrap();
        assert_eq!(g.backup_lba(), 6000);
        g.move_backup_to_end(&t).unwrap();
        let g = Gpt::read(&t).unwrap().unwrap();
        assert_eq!(g.backup_lba(), 16383);
        assert_eq!(g.last_usable(), 16383 - 33);
        assert_eq!(g.partitions(), [(2048, 4095)]);
        let mut backup = vec![0u8; 92];
        t.read_at(16383 * 512, &mut backup).unwrap();
        assert_eq!(&backup[..8], SIGNATURE);
        assert_eq!(crc_of_header(&backup), u32_at(&backup, 16));
        assert_eq!(u64_at(&backup, 24), 16383);
        assert_eq!(u64_at(&backup, 72), 16383 - 32);
        let mut old = vec![0u8; 8];
        t.read_at(6000 * 512, &mut old).unwrap();
        assert_eq!(old, [0u8; 8], "the stale backup header is cleared");
    }

    #[test]
    fn adds_a_partition_in_the_first_free_entry() {
        let (_d, t) = test_target(gpt_image(8192, 8191));
        let mut g = Gpt::read(&t).unwrap().unwrap();
        assert_eq!(g.add_partition(&t, 6144, 8158, LINUX_FS_TYPE).unwrap(), 2);
        let g = Gpt::read(&t).unwrap().unwrap();
        assert_eq!(g.partitions(), [(2048, 4095), (6144, 8158)]);
    }

    #[test]
    fn a_corrupt_header_is_no_gpt() {
        let mut img = gpt_image(8192, 8191);
        img[512 + 40] ^= 1;
        let (_d, t) = test_target(&img);
        assert!(Gpt::read(&t).unwrap().is_none());
    }
}
