//! RAM: what the kernel manages (`MemTotal`) and what is installed
//! (`physical_mb`). IPA takes the installed size from the firmware's
//! memory-device table and, without one, from the memory blocks the kernel
//! lists; so do we, reading SMBIOS type 17 records from
//! `/sys/firmware/dmi/entries` instead of running `dmidecode`/`lshw`.

use crate::fsutil::read_trimmed;
use crate::fsutil::under;
use serde::Serialize;
use std::path::Path;

/// IPA's `Memory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Bytes the kernel manages (`MemTotal`).
    pub total: u64,
    /// MiB installed: the sum of the DMI memory devices, else the online
    /// memory blocks.
    pub physical_mb: Option<u64>,
}

/// Reads the memory facts under `root`.
pub fn read(root: &Path) -> Memory {
    Memory {
        total: mem_total(root).unwrap_or(0),
        physical_mb: dmi_physical_mb(root).or_else(|| block_physical_mb(root)),
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(under(root, "/proc/meminfo")).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The size in MiB of one SMBIOS type 17 (Memory Device) record, `None`
/// for an empty slot or an unknown size.
pub fn memory_device_mib(raw: &[u8]) -> Option<u64> {
    if raw.first() != Some(&17) {
        return None;
    }
    let word = u16::from_le_bytes([*raw.get(0x0C)?, *raw.get(0x0D)?]);
    match word {
        0 | 0xFFFF => None,
        // The size does not fit: the Extended Size (MiB) holds it.
        0x7FFF => {
            let b = raw.get(0x1C..0x20)?;
            let ext = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7FFF_FFFF;
            (ext > 0).then_some(u64::from(ext))
        }
        // Bit 15 set: the unit is KiB.
        w if w & 0x8000 != 0 => Some(u64::from(w & 0x7FFF) / 1024),
        w => Some(u64::from(w)),
    }
}

/// The sum of the DMI memory devices (`/sys/firmware/dmi/entries/17-*/raw`).
fn dmi_physical_mb(root: &Path) -> Option<u64> {
    let dir = under(root, "/sys/firmware/dmi/entries");
    let total: u64 = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("17-"))
        .filter_map(|e| std::fs::read(e.path().join("raw")).ok())
        .filter_map(|raw| memory_device_mib(&raw))
        .sum();
    (total > 0).then_some(total)
}

/// Online memory blocks times the block size
/// (`/sys/devices/system/memory`).
fn block_physical_mb(root: &Path) -> Option<u64> {
    let dir = under(root, "/sys/devices/system/memory");
    let size = read_trimmed(&dir.join("block_size_bytes"))?;
    let size = u64::from_str_radix(size.trim_start_matches("0x"), 16).ok()?;
    let online = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("memory"))
        .filter(|e| read_trimmed(&e.path().join("online")).as_deref() == Some("1"))
        .count() as u64;
    (online > 0).then_some(online * size / (1024 * 1024))
}
