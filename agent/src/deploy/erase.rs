//! Cleaning's disk wipes. `erase_devices_metadata` removes what makes a disk
//! look used (partition tables, file-system, LVM and RAID signatures) in
//! seconds; `erase_devices` zeroes every byte. Read-only disks and the boot
//! medium are never touched.

use super::DeployError;
use super::gpt::Gpt;
use super::target::Target;
use crate::fsutil::under;
use crate::hardware::disks::{self, BlockDevice};
use std::path::Path;

/// What is wiped at each end of a disk and of each partition: 1 MiB covers
/// the MBR, the primary GPT (34 × 512 B or 6 × 4 KiB), and the superblocks
/// of ext4, XFS, btrfs (64 KiB), LVM and md 1.1/1.2; the last MiB covers
/// the backup GPT and md 0.9/1.0 superblocks.
const MIB: u64 = 1 << 20;

/// The disks cleaning may write to, with the ones skipped logged.
pub fn erasable(root: &Path) -> Result<Vec<BlockDevice>, DeployError> {
    let all = disks::list(root).map_err(|e| DeployError::Erase(e.to_string()))?;
    Ok(all
        .into_iter()
        .filter(|d| {
            if !d.writable() {
                log::info!(
                    "not erasing {}: {}",
                    d.name,
                    if d.read_only {
                        "read-only"
                    } else {
                        "the boot medium"
                    }
                );
            }
            d.writable()
        })
        .collect())
}

/// Wipes the metadata of every erasable disk; returns the names wiped.
pub fn erase_devices_metadata(root: &Path) -> Result<Vec<String>, DeployError> {
    let mut done = Vec::new();
    for d in erasable(root)? {
        log::info!("erasing metadata of {}", d.name);
        let t = open(root, &d)?;
        wipe_metadata(&t, &partition_ranges(root, &d))?;
        t.sync()?;
        t.reread_partitions();
        done.push(d.name);
    }
    Ok(done)
}

/// Zeroes every erasable disk completely; returns the names erased.
pub fn erase_devices(root: &Path) -> Result<Vec<String>, DeployError> {
    let mut done = Vec::new();
    for d in erasable(root)? {
        log::info!("zeroing all {} bytes of {}", d.size, d.name);
        let t = open(root, &d)?;
        t.zero(0, t.size())?;
        t.sync()?;
        t.reread_partitions();
        done.push(d.name);
    }
    Ok(done)
}

fn open(root: &Path, d: &BlockDevice) -> Result<Target, DeployError> {
    Target::open(&under(root, &d.name)).map_err(|e| DeployError::Erase(e.to_string()))
}

/// Zeroes the first and last MiB of the disk, the backup GPT wherever the
/// primary header says it is (an image smaller than the disk leaves it in
/// the middle), and the first and last MiB of each partition in `parts`
/// (byte ranges).
pub fn wipe_metadata(t: &Target, parts: &[(u64, u64)]) -> Result<(), DeployError> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    if let Ok(Some(g)) = Gpt::read(t) {
        let backup = g.backup_lba() * g.sector;
        ranges.push((backup.saturating_sub(MIB - g.sector), MIB));
    }
    for &(start, len) in parts.iter().chain(std::iter::once(&(0, t.size()))) {
        ranges.push((start, MIB.min(len)));
        ranges.push((start + len.saturating_sub(MIB), MIB.min(len)));
    }
    for (off, len) in ranges {
        t.zero(off, len)
            .map_err(|e| DeployError::Erase(e.to_string()))?;
    }
    Ok(())
}

/// Byte ranges of the partitions the kernel knows on `d`
/// (`/sys/block/X/XN/{start,size}`, in 512-byte units).
fn partition_ranges(root: &Path, d: &BlockDevice) -> Vec<(u64, u64)> {
    let dir = under(root, "/sys/block").join(d.kname());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let num = |p: &Path| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(d.kname()))
        .filter_map(|e| {
            Some((
                num(&e.path().join("start"))? * 512,
                num(&e.path().join("size"))? * 512,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A root with one fake disk `name` of `bytes` bytes filled with 0xAB.
    fn fake_disk(root: &Path, name: &str, bytes: usize, attrs: &[(&str, &str)]) {
        let dir = root.join("sys/block").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("size"), format!("{}\n", bytes / 512)).unwrap();
        for (f, v) in attrs {
            let p = dir.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, v).unwrap();
        }
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::write(root.join("dev").join(name), vec![0xABu8; bytes]).unwrap();
    }

    #[test]
    fn metadata_wipe_clears_ends_partitions_and_a_misplaced_backup_gpt() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fake_disk(
            r,
            "vda",
            16 << 20,
            &[("vda1/start", "8192"), ("vda1/size", "8192")],
        );
        let mut img = super::super::gpt::tests::gpt_image(8192, 8191);
        img.resize(16 << 20, 0xAB);
        fs::write(r.join("dev/vda"), &img).unwrap();
        fake_disk(r, "vdb", 4 << 20, &[("ro", "1")]);

        assert_eq!(erase_devices_metadata(r).unwrap(), ["/dev/vda"]);
        let a = fs::read(r.join("dev/vda")).unwrap();
        let zero = |from: usize, to: usize| a[from..to].iter().all(|b| *b == 0);
        assert!(zero(0, 1 << 20), "first MiB");
        assert!(zero((16 << 20) - (1 << 20), 16 << 20), "last MiB");
        assert!(
            zero(8191 * 512 + 512 - (1 << 20), 8192 * 512),
            "old backup GPT"
        );
        assert!(zero(8192 * 512, 8192 * 512 + (1 << 20)), "partition start");
        assert!(
            a[(6 << 20) + 10..(7 << 20)].iter().all(|b| *b == 0xAB),
            "data stays"
        );
        let b = fs::read(r.join("dev/vdb")).unwrap();
        assert!(b.iter().all(|x| *x == 0xAB), "read-only disk untouched");
    }

    #[test]
    fn full_erase_zeroes_everything_but_skips_the_boot_medium() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fake_disk(r, "vda", 3 << 20, &[]);
        fake_disk(r, "vdb", 2 << 20, &[]);
        fs::create_dir_all(r.join("proc")).unwrap();
        fs::write(r.join("proc/mounts"), "/dev/vdb / ext4 rw 0 0\n").unwrap();
        assert_eq!(erase_devices(r).unwrap(), ["/dev/vda"]);
        assert!(fs::read(r.join("dev/vda")).unwrap().iter().all(|b| *b == 0));
        assert!(
            fs::read(r.join("dev/vdb"))
                .unwrap()
                .iter()
                .all(|b| *b == 0xAB)
        );
    }
}
