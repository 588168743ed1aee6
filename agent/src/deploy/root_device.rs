//! Which disk an image goes to: the first writable disk matching the hints
//! (in name order, as IPA lists them), or without hints the smallest
//! writable disk of at least 4 GiB. Never the boot medium, never a
//! read-only disk.

use super::DeployError;
use super::hints::Hints;
use crate::hardware::disks::BlockDevice;

/// Disks smaller than this are not picked without hints (IPA's minimum).
pub const MIN_SIZE: u64 = 4 << 30;

/// Chooses the install disk among `disks`.
pub fn choose(disks: &[BlockDevice], hints: &Hints) -> Result<BlockDevice, DeployError> {
    let usable: Vec<&BlockDevice> = disks.iter().filter(|d| d.writable()).collect();
    let found = if hints.is_empty() {
        usable
            .iter()
            .filter(|d| d.size >= MIN_SIZE)
            .min_by_key(|d| (d.size, d.name.clone()))
            .copied()
    } else {
        usable.iter().find(|d| hints.matches(d)).copied()
    };
    found.cloned().ok_or_else(|| {
        let listed: Vec<String> = disks
            .iter()
            .map(|d| {
                let why = if d.read_only {
                    ", read-only"
                } else if d.boot_medium {
                    ", boot medium"
                } else {
                    ""
                };
                format!("{} ({} bytes{why})", d.name, d.size)
            })
            .collect();
        let want = if hints.is_empty() {
            "no writable disk of at least 4 GiB".to_string()
        } else {
            format!("no writable disk matches the root device hints {hints:?}")
        };
        DeployError::NoDevice(format!("{want}; disks: [{}]", listed.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disk(name: &str, gib: u64) -> BlockDevice {
        BlockDevice {
            name: format!("/dev/{name}"),
            model: None,
            size: gib << 30,
            rotational: false,
            wwn: None,
            serial: Some(format!("S-{name}")),
            vendor: None,
            wwn_with_extension: None,
            wwn_vendor_extension: None,
            hctl: None,
            by_path: None,
            logical_sectors: None,
            physical_sectors: None,
            tran: None,
            read_only: false,
            removable: false,
            boot_medium: false,
        }
    }

    #[test]
    fn smallest_of_at_least_4_gib_without_hints() {
        let disks = [
            disk("sda", 100),
            disk("sdb", 2),
            disk("sdc", 8),
            disk("sdd", 4),
        ];
        assert_eq!(choose(&disks, &Hints::default()).unwrap().name, "/dev/sdd");
    }

    #[test]
    fn never_the_boot_medium_or_a_read_only_disk() {
        let mut a = disk("sda", 8);
        a.boot_medium = true;
        let mut b = disk("sdb", 8);
        b.read_only = true;
        let c = disk("sdc", 16);
        let disks = [a, b, c];
        assert_eq!(choose(&disks, &Hints::default()).unwrap().name, "/dev/sdc");
        let h = Hints::parse(json!({"size": 8}).as_object().unwrap()).unwrap();
        let e = choose(&disks, &h).unwrap_err();
        assert!(e.to_string().contains("boot medium"), "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
    }

    #[test]
    fn hints_pick_and_a_miss_names_the_disks() {
        let disks = [disk("sda", 8), disk("sdb", 8)];
        let h = Hints::parse(json!({"serial": "s-sdb"}).as_object().unwrap()).unwrap();
        assert_eq!(choose(&disks, &h).unwrap().name, "/dev/sdb");
        let h = Hints::parse(json!({"serial": "nope"}).as_object().unwrap()).unwrap();
        let e = choose(&disks, &h).unwrap_err().to_string();
        assert!(
            e.contains("root device hints") && e.contains("/dev/sda"),
            "{e}"
        );
        let e = choose(&[disk("sda", 2)], &Hints::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 4 GiB"), "{e}");
    }
}
