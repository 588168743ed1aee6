//! Block devices from `ROOT/sys/block`, described with the field names of
//! IPA's inventory (`BlockDevice` in ironic-python-agent's `hardware.py`).
//!
//! IPA asks `lsblk` and udev; a small ramdisk may have neither, so this reads
//! sysfs directly and uses udev's database (`/run/udev/data/bMAJ:MIN`) only
//! to fill what sysfs lacks (the WWN extensions, a serial). The same
//! devices are skipped as IPA skips them: RAM and zRAM disks, floppies,
//! CD/DVD drives, empty devices, plus loop, device-mapper, md and nbd
//! devices that are not disks of their own.
//!
//! Besides IPA's fields each device says whether it is read-only, removable
//! and the medium the ramdisk came from; these are not serialized (the
//! inventory keeps IPA's shape) but deploy and cleaning must never write to
//! such a device.

use crate::fsutil::{read_trimmed, under};
use serde::Serialize;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One whole-disk block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// `/dev/<kernel name>`, e.g. `/dev/vda`.
    pub name: String,
    /// The model string, trimmed; `None` when the kernel has none (virtio).
    pub model: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// `true` for spinning disks (`queue/rotational`).
    pub rotational: bool,
    /// World wide name (`0x…` for NAA, as lsblk and udev print it).
    pub wwn: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// The vendor string, trimmed (`device/vendor`).
    pub vendor: Option<String>,
    /// udev's `ID_WWN_WITH_EXTENSION`.
    pub wwn_with_extension: Option<String>,
    /// udev's `ID_WWN_VENDOR_EXTENSION`.
    pub wwn_vendor_extension: Option<String>,
    /// SCSI address `host:channel:target:lun`, for SCSI disks only.
    pub hctl: Option<String>,
    /// The `/dev/disk/by-path/…` link that points to this device.
    pub by_path: Option<String>,
    /// Logical sector size in bytes.
    pub logical_sectors: Option<u64>,
    /// Physical sector size in bytes.
    pub physical_sectors: Option<u64>,
    /// Transport (`sata`, `sas`, `nvme`, `virtio`, `usb`, `fc`, `iscsi`, `mmc`…).
    pub tran: Option<String>,
    /// The kernel refuses writes (`/sys/block/X/ro`).
    #[serde(skip)]
    pub read_only: bool,
    /// Removable media (`/sys/block/X/removable`); USB sticks often say so.
    #[serde(skip)]
    pub removable: bool,
    /// The device (or one of its partitions) is mounted or used for swap, or
    /// it holds an ISO 9660 file system from its first sector: the medium the
    /// ramdisk was booted from. Never a target.
    #[serde(skip)]
    pub boot_medium: bool,
}

impl BlockDevice {
    /// The kernel name (`vda` for `/dev/vda`).
    pub fn kname(&self) -> &str {
        self.name.trim_start_matches("/dev/")
    }
    /// Deploy and cleaning may write to this device.
    pub fn writable(&self) -> bool {
        !self.read_only && !self.boot_medium
    }
}

/// Why the device list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// `ROOT/sys/block` is missing or unreadable.
    #[error("cannot list block devices in {path}: {source}")]
    SysBlock {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Kernel-name prefixes that are never disks of their own (IPA skips RAM,
/// zRAM and floppies; loop, dm, md and nbd devices are layered on other
/// devices or on files; `sr` is a CD/DVD drive, lsblk type `rom`).
const SKIPPED_PREFIXES: &[&str] = &["ram", "zram", "fd", "loop", "dm-", "md", "nbd", "sr"];

/// Every whole-disk block device under `root`, sorted by name.
pub fn list(root: &Path) -> Result<Vec<BlockDevice>, DiskError> {
    let sys_block = under(root, "/sys/block");
    let entries = fs::read_dir(&sys_block).map_err(|source| DiskError::SysBlock {
        path: sys_block.clone(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !SKIPPED_PREFIXES.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    let by_path = by_path_links(root);
    let in_use = in_use_devices(root);
    let devices = names
        .iter()
        .filter_map(|n| describe(root, n, &by_path, &in_use))
        .collect();
    Ok(devices)
}

/// One device, or `None` when it is empty (virtual floppies report size 0).
fn describe(
    root: &Path,
    kname: &str,
    by_path: &HashMap<String, String>,
    in_use: &[String],
) -> Option<BlockDevice> {
    let dir = under(root, "/sys/block").join(kname);
    let sectors: u64 = read_trimmed(&dir.join("size"))?.parse().ok()?;
    if sectors == 0 {
        log::debug!("skipping {kname}: size 0");
        return None;
    }
    let udev = udev_properties(root, &dir);
    let prop = |k: &str| udev.get(k).cloned().filter(|v| !v.is_empty());
    let name = format!("/dev/{kname}");
    let partitions = partition_names(&dir, kname);
    let mounted = in_use.iter().any(|d| d == kname || partitions.contains(d));
    Some(BlockDevice {
        model: read_trimmed(&dir.join("device/model")).or_else(|| prop("ID_MODEL")),
        size: sectors.saturating_mul(512),
        rotational: read_flag(&dir.join("queue/rotational")),
        wwn: prop("ID_WWN").or_else(|| sysfs_wwn(&dir)),
        serial: sysfs_serial(&dir)
            .or_else(|| prop("ID_SERIAL_SHORT"))
            .or_else(|| prop("ID_SERIAL")),
        vendor: read_trimmed(&dir.join("device/vendor")),
        wwn_with_extension: prop("ID_WWN_WITH_EXTENSION"),
        wwn_vendor_extension: prop("ID_WWN_VENDOR_EXTENSION"),
        hctl: first_entry(&dir.join("device/scsi_device")),
        by_path: by_path.get(&name).cloned(),
        logical_sectors: read_number(&dir.join("queue/logical_block_size")),
        physical_sectors: read_number(&dir.join("queue/physical_block_size")),
        tran: transport(&dir, kname),
        read_only: read_flag(&dir.join("ro")),
        removable: read_flag(&dir.join("removable")),
        boot_medium: mounted || holds_iso9660(&under(root, &name)),
        name,
    })
}

fn read_number(path: &Path) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

fn read_flag(path: &Path) -> bool {
    read_number(path).is_some_and(|n| n != 0)
}

/// The first name in a directory (IPA takes `scsi_device`'s only entry).
fn first_entry(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Serial from sysfs: virtio has `serial`, NVMe `device/serial`.
fn sysfs_serial(dir: &Path) -> Option<String> {
    read_trimmed(&dir.join("serial")).or_else(|| read_trimmed(&dir.join("device/serial")))
}

/// WWN from sysfs `wwid` (SCSI VPD page 0x83, NVMe): an NAA name becomes
/// `0x…` as lsblk prints it; other designators (`eui.`, `t10.`) stay as
/// they are.
fn sysfs_wwn(dir: &Path) -> Option<String> {
    let wwid =
        read_trimmed(&dir.join("wwid")).or_else(|| read_trimmed(&dir.join("device/wwid")))?;
    Some(match wwid.strip_prefix("naa.") {
        Some(hex) => format!("0x{}", hex.to_ascii_lowercase()),
        None => wwid,
    })
}

/// `KEY=value` pairs of udev's database entry for this device (lines `E:…`).
fn udev_properties(root: &Path, dir: &Path) -> HashMap<String, String> {
    let Some(devno) = read_trimmed(&dir.join("dev")) else {
        return HashMap::new();
    };
    let db = under(root, "/run/udev/data").join(format!("b{devno}"));
    let Ok(text) = fs::read_to_string(db) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Partition names of a disk: the sub-directories of `/sys/block/X` whose
/// name starts with the disk's (`vda1`, `nvme0n1p2`).
fn partition_names(dir: &Path, kname: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(kname) && n != kname)
        .collect()
}

/// The transport, from the kind of device and where it hangs in sysfs
/// (the `/sys/block/X` link points into `/sys/devices/…`).
fn transport(dir: &Path, kname: &str) -> Option<String> {
    let named = [("nvme", "nvme"), ("vd", "virtio"), ("mmcblk", "mmc")];
    if let Some((_, t)) = named.iter().find(|(p, _)| kname.starts_with(p)) {
        return Some((*t).to_string());
    }
    let real = fs::canonicalize(dir).ok()?;
    let path = real.to_string_lossy();
    let by_path = [
        ("/usb", "usb"),
        ("/rport-", "fc"),
        ("/session", "iscsi"),
        ("/end_device-", "sas"),
        ("/ata", "sata"),
    ];
    by_path
        .iter()
        .find(|(marker, _)| path.contains(marker))
        .map(|(_, t)| (*t).to_string())
}

/// `/dev/X` → `/dev/disk/by-path/…` (links are usually `../../X`).
fn by_path_links(root: &Path) -> HashMap<String, String> {
    let dir = under(root, "/dev/disk/by-path");
    let Ok(entries) = fs::read_dir(&dir) else {
        return HashMap::new();
    };
    let mut map = HashMap::new();
    for e in entries.filter_map(|e| e.ok()) {
        let Ok(target) = fs::read_link(e.path()) else {
            continue;
        };
        let Some(dev) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let link = format!("/dev/disk/by-path/{}", e.file_name().to_string_lossy());
        // Several links may point to one device; keep the first by name so
        // the choice does not depend on directory order.
        let slot = map.entry(format!("/dev/{dev}")).or_insert(link.clone());
        if link < *slot {
            *slot = link;
        }
    }
    map
}

/// Kernel names of devices that are mounted or used for swap: the running
/// system lives there, so they are off limits.
fn in_use_devices(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for table in ["/proc/mounts", "/proc/swaps"] {
        let Ok(text) = fs::read_to_string(under(root, table)) else {
            continue;
        };
        for source in text.lines().filter_map(|l| l.split_whitespace().next()) {
            if let Some(dev) = source.strip_prefix("/dev/") {
                names.push(dev.to_string());
            }
        }
    }
    names
}

/// Whether the device starts with an ISO 9660 volume descriptor
/// (`CD001` at byte 32769): a hybrid ISO written to a USB stick, i.e. the
/// ramdisk's own boot medium. An unreadable device is not one.
fn holds_iso9660(dev: &Path) -> bool {
    let Ok(mut f) = fs::File::open(dev) else {
        return false;
    };
    let mut magic = [0u8; 5];
    f.seek(SeekFrom::Start(32769)).is_ok() && f.read_exact(&mut magic).is_ok() && &magic == b"CD001"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Writes `data` to `path`, creating the directories above it.
    fn put(path: &Path, data: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    /// Links `/sys/block/NAME` to the device directory `dir`.
    fn link_block(root: &Path, name: &str, dir: &Path) {
        fs::create_dir_all(root.join("sys/block")).unwrap();
        symlink(dir, root.join("sys/block").join(name)).unwrap();
    }

    /// A fake `/sys/block/NAME` with the given attribute files.
    fn disk(root: &Path, name: &str, attrs: &[(&str, &str)]) -> PathBuf {
        let dir = root.join("sys/devices/virtual/block").join(name);
        for (file, value) in attrs {
            put(&dir.join(file), format!("{value}\n"));
        }
        link_block(root, name, &dir);
        dir
    }

    #[test]
    fn reads_the_fields_ipa_reports() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let dir = disk(
            r,
            "sda",
            &[
                ("size", "41943040"),
                ("dev", "8:0"),
                ("ro", "0"),
                ("removable", "0"),
                ("queue/rotational", "1"),
                ("queue/logical_block_size", "512"),
                ("queue/physical_block_size", "4096"),
                ("device/model", "QEMU HARDDISK   "),
                ("device/vendor", "ATA     "),
                ("device/wwid", "naa.5000C500A1B2C3D4"),
            ],
        );
        fs::create_dir_all(dir.join("device/scsi_device/0:0:1:0")).unwrap();
        put(
            &r.join("run/udev/data/b8:0"),
            "S:disk/by-id/x\nE:ID_SERIAL_SHORT=QM00001\nE:ID_WWN_WITH_EXTENSION=0x5000c500a1b2c3d4ff\nE:ID_WWN_VENDOR_EXTENSION=0xff\n",
        );
        fs::create_dir_all(r.join("dev/disk/by-path")).unwrap();
        symlink(
            "../../sda",
            r.join("dev/disk/by-path/pci-0000:00:1f.2-ata-1"),
        )
        .unwrap();
        symlink(
            "../../sda",
            r.join("dev/disk/by-path/pci-0000:00:1f.2-ata-1.0"),
        )
        .unwrap();

        let d = &list(r).unwrap()[0];
        assert_eq!(d.name, "/dev/sda");
        assert_eq!(d.kname(), "sda");
        assert_eq!(d.model.as_deref(), Some("QEMU HARDDISK"));
        assert_eq!(d.vendor.as_deref(), Some("ATA"));
        assert_eq!(d.size, 41943040 * 512);
        assert!(d.rotational);
        assert_eq!(d.wwn.as_deref(), Some("0x5000c500a1b2c3d4"));
        assert_eq!(d.serial.as_deref(), Some("QM00001"));
        assert_eq!(
            d.wwn_with_extension.as_deref(),
            Some("0x5000c500a1b2c3d4ff")
        );
        assert_eq!(d.wwn_vendor_extension.as_deref(), Some("0xff"));
        assert_eq!(d.hctl.as_deref(), Some("0:0:1:0"));
        assert_eq!(
            d.by_path.as_deref(),
            Some("/dev/disk/by-path/pci-0000:00:1f.2-ata-1")
        );
        assert_eq!(
            (d.logical_sectors, d.physical_sectors),
            (Some(512), Some(4096))
        );
        assert!(d.writable());
    }

    #[test]
    fn serializes_with_ipa_field_names_only() {
        let t = tempfile::tempdir().unwrap();
        disk(t.path(), "vda", &[("size", "2048"), ("serial", "abc")]);
        let v = serde_json::to_value(list(t.path()).unwrap()).unwrap();
        let keys: Vec<&str> = v[0]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "model",
                "size",
                "rotational",
                "wwn",
                "serial",
                "vendor",
                "wwn_with_extension",
                "wwn_vendor_extension",
                "hctl",
                "by_path",
                "logical_sectors",
                "physical_sectors",
                "tran"
            ]
        );
        assert_eq!(v[0]["serial"], "abc");
        assert_eq!(v[0]["tran"], "virtio");
        assert_eq!(v[0]["size"], 2048 * 512);
    }

    #[test]
    fn skips_what_ipa_skips() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for n in [
            "ram0", "zram0", "loop0", "dm-0", "md127", "sr0", "fd0", "nbd0",
        ] {
            disk(r, n, &[("size", "2048")]);
        }
        disk(r, "sdb", &[("size", "0")]);
        disk(r, "vdb", &[("size", "4096")]);
        disk(r, "nvme0n1", &[("size", "4096"), ("device/serial", "S1 ")]);
        let found = list(r).unwrap();
        let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["/dev/nvme0n1", "/dev/vdb"]);
        assert_eq!(found[0].serial.as_deref(), Some("S1"));
        assert_eq!(found[0].tran.as_deref(), Some("nvme"));
    }

    #[test]
    fn read_only_mounted_and_iso_devices_are_not_writable() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        disk(r, "vda", &[("size", "4096"), ("ro", "1")]);
        let vdb = disk(r, "vdb", &[("size", "4096")]);
        fs::create_dir_all(vdb.join("vdb2")).unwrap();
        disk(r, "vdc", &[("size", "4096")]);
        disk(r, "vdd", &[("size", "4096"), ("removable", "1")]);
        put(
            &r.join("proc/mounts"),
            "/dev/vdb2 / ext4 rw 0 0\nproc /proc proc rw 0 0\n",
        );
        let mut iso = vec![0u8; 40000];
        iso[32769..32774].copy_from_slice(b"CD001");
        put(&r.join("dev/vdc"), iso);
        put(&r.join("dev/vdd"), vec![0u8; 40000]);

        let d = list(r).unwrap();
        assert!(d[0].read_only && !d[0].writable());
        assert!(d[1].boot_medium && !d[1].writable());
        assert!(d[2].boot_medium && !d[2].writable());
        assert!(d[3].removable && !d[3].boot_medium && d[3].writable());
    }

    #[test]
    fn transport_follows_the_sysfs_path() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let real = r.join(
            "sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/host6/target6:0:0/6:0:0:0/block/sdc",
        );
        put(&real.join("size"), "4096");
        link_block(r, "sdc", &real);
        assert_eq!(list(r).unwrap()[0].tran.as_deref(), Some("usb"));
    }

    #[test]
    fn missing_sys_block_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let e = list(t.path()).unwrap_err();
        assert!(e.to_string().contains("sys/block"), "{e}");
    }
}
