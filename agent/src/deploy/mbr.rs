//! The DOS partition table (MBR), for images without a GPT: list the
//! primary partitions and add one (what IPA does with `parted mkpart
//! primary fat32`). Logical partitions are left alone, as IPA does.

use super::DeployError;
use super::target::Target;

/// Partition type IPA's `parted … fat32` gives the configdrive (W95 FAT32 LBA).
pub const FAT32_LBA: u8 = 0x0c;
const TABLE: u64 = 446;

/// One primary entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Partition type byte (0 = unused).
    pub kind: u8,
    /// First sector (LBA, 512 bytes).
    pub start: u64,
    /// Number of sectors.
    pub sectors: u64,
}

/// The four primary entries, or `None` without a valid MBR, or when the
/// MBR only protects a GPT (type `0xEE`).
pub fn read(t: &Target) -> Result<Option<[Entry; 4]>, DeployError> {
    if t.size() < 512 {
        return Ok(None);
    }
    let mut mbr = [0u8; 512];
    t.read_at(0, &mut mbr)?;
    if mbr[510..] != [0x55, 0xAA] {
        return Ok(None);
    }
    let entries: [Entry; 4] = std::array::from_fn(|i| {
        let e = &mbr[TABLE as usize + i * 16..TABLE as usize + (i + 1) * 16];
        Entry {
            kind: e[4],
            start: u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as u64,
            sectors: u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as u64,
        }
    });
    if entries.iter().any(|e| e.kind == 0xEE) {
        return Ok(None);
    }
    Ok(Some(entries))
}

/// Writes a primary entry for `start..start+sectors` into the first free
/// slot; returns the partition number (1..=4).
pub fn add_partition(t: &Target, start: u64, sectors: u64, kind: u8) -> Result<usize, DeployError> {
    let entries = read(t)?
        .ok_or_else(|| DeployError::Configdrive("the disk has no DOS partition table".into()))?;
    let Some(slot) = entries.iter().position(|e| e.kind == 0) else {
        return Err(DeployError::Configdrive(
            "the DOS partition table already has 4 primary partitions; no room for the configdrive"
                .into(),
        ));
    };
    let (Ok(s), Ok(n)) = (u32::try_from(start), u32::try_from(sectors)) else {
        return Err(DeployError::Configdrive(
            "the configdrive partition would lie beyond the 2 TiB a DOS partition table can address".into(),
        ));
    };
    let mut e = [0u8; 16];
    // CHS fields: the "use LBA" marker (1023/254/63) every modern tool writes.
    e[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    e[4] = kind;
    e[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&s.to_le_bytes());
    e[12..16].copy_from_slice(&n.to_le_bytes());
    t.write_at(TABLE + slot as u64 * 16, &e)?;
    Ok(slot + 1)
}

/// A 1 MiB disk image with a DOS table whose first entry has `kind`,
/// `start` and `sectors`.
#[cfg(test)]
pub(crate) fn test_dos_image(kind: u8, start: u32, sectors: u32) -> Vec<u8> {
    let mut img = vec![0u8; 1 << 20];
    img[510] = 0x55;
    img[511] = 0xAA;
    img[446 + 4] = kind;
    img[446 + 8..446 + 12].copy_from_slice(&start.to_le_bytes());
    img[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::target::test_target;

    #[test]
    fn adds_into_the_first_free_slot_and_refuses_a_fifth() {
        let (_d, t) = test_target(test_dos_image(0x83, 2048, 16));
        assert_eq!(add_partition(&t, 4096, 100, FAT32_LBA).unwrap(), 2);
        let e = read(&t).unwrap().unwrap();
        assert_eq!(
            e[1],
            Entry {
                kind: FAT32_LBA,
                start: 4096,
                sectors: 100
            }
        );
        add_partition(&t, 5000, 1, 0x83).unwrap();
        add_partition(&t, 6000, 1, 0x83).unwrap();
        let err = add_partition(&t, 7000, 1, 0x83).unwrap_err();
        assert!(err.to_string().contains("4 primary"), "{err}");
    }

    #[test]
    fn a_protective_mbr_is_not_a_dos_table() {
        let (_d, t) = test_target(test_dos_image(0xEE, 1, 2047));
        assert!(read(&t).unwrap().is_none());
    }
}
