//! The hardware inventory, in the shape ironic-python-agent's
//! `list_hardware_info` gives it: what `ipa-inspection-callback-url`
//! receives and what Ironic's inspection hooks read (`interfaces`, `cpu`,
//! `memory`, `disks`, `system_vendor`, `boot`, `bmc_address`).
//!
//! Every fact comes from files under `--root` (`/sys`, `/proc`), except the
//! interfaces' IP addresses, which the kernel only gives through
//! `getifaddrs` ([`interfaces::system_addresses`]); so the whole inventory
//! can be built from a fake tree in tests.

use super::disks::BlockDevice;
use super::{cpu, interfaces, memory, system};
use serde::Serialize;
use std::path::Path;

/// IPA's inventory. Fields IPA fills from tools this ramdisk does not have
/// (`ipmitool` for the BMC) are `null`, as IPA sends them when the tool
/// finds nothing.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// Physical NICs.
    pub interfaces: Vec<interfaces::Interface>,
    /// The processors, summed up.
    pub cpu: cpu::Cpu,
    /// Block devices, as IPA's `BlockDevice`s.
    pub disks: Vec<BlockDevice>,
    /// RAM as the kernel sees it and as installed.
    pub memory: memory::Memory,
    /// The BMC's IPv4 address; IPA asks `ipmitool`, which this image lacks.
    pub bmc_address: Option<String>,
    /// The BMC's IPv6 address (see `bmc_address`).
    pub bmc_v6address: Option<String>,
    /// The BMC's MAC (see `bmc_address`).
    pub bmc_mac: Option<String>,
    /// DMI: vendor, product, serial and firmware.
    pub system_vendor: system::SystemVendor,
    /// Boot mode and the PXE interface.
    pub boot: system::Boot,
    /// The kernel's host name.
    pub hostname: String,
}

/// Collects the inventory under `root`. `bootif` is the PXE MAC from the
/// kernel command line; `disks` the block devices ([`super::disks::list`]).
pub fn collect(root: &Path, bootif: Option<&str>, disks: Vec<BlockDevice>) -> Inventory {
    collect_with(root, bootif, disks, &interfaces::system_addresses())
}

/// [`collect`] with the interfaces' addresses given (tests use a fake tree,
/// where the host's `getifaddrs` means nothing).
pub fn collect_with(
    root: &Path,
    bootif: Option<&str>,
    disks: Vec<BlockDevice>,
    addrs: &interfaces::Addresses,
) -> Inventory {
    Inventory {
        interfaces: interfaces::list(root, addrs),
        cpu: cpu::read(root),
        disks,
        memory: memory::read(root),
        bmc_address: None,
        bmc_v6address: None,
        bmc_mac: None,
        system_vendor: system::vendor(root),
        boot: system::boot(root, bootif),
        hostname: system::hostname(root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;

    fn put(root: &Path, path: &str, data: &[u8]) {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    /// A SMBIOS type 17 record whose Size word is `size` (and Extended Size
    /// `ext`).
    fn dimm(size: u16, ext: u32) -> Vec<u8> {
        let mut r = vec![0u8; 0x28];
        r[0] = 17;
        r[1] = 0x28;
        r[0x0C..0x0E].copy_from_slice(&size.to_le_bytes());
        r[0x1C..0x20].copy_from_slice(&ext.to_le_bytes());
        r
    }

    /// A machine as its sysfs and procfs show it: two CPUs, two PCI NICs
    /// (one without link), a loopback and a bridge, three DIMM slots (one
    /// empty, one over 32 GiB), DMI identity, UEFI, a 5 GiB virtio disk.
    fn fake_machine(root: &Path) {
        put(
            root,
            "proc/cpuinfo",
            b"processor\t: 0\nmodel name\t: QEMU Virtual CPU version 2.5+\ncpu MHz\t\t: 2399.998\n\
              physical id\t: 0\nflags\t\t: fpu de pse sse2 lm\n\n\
              processor\t: 1\nmodel name\t: QEMU Virtual CPU version 2.5+\ncpu MHz\t\t: 2399.998\n\
              physical id\t: 0\nflags\t\t: fpu de pse sse2 lm\n\n",
        );
        put(
            root,
            "proc/meminfo",
            b"MemTotal:         737420 kB\nMemFree: 1 kB\n",
        );
        put(root, "proc/sys/kernel/hostname", b"ramdisk\n");
        put(root, "sys/firmware/dmi/entries/17-0/raw", &dimm(512, 0));
        put(root, "sys/firmware/dmi/entries/17-1/raw", &dimm(0, 0));
        put(
            root,
            "sys/firmware/dmi/entries/17-2/raw",
            &dimm(0x7FFF, 40960),
        );
        put(root, "sys/firmware/dmi/entries/16-0/raw", &[16u8; 0x17]);
        put(
            root,
            "sys/devices/system/memory/block_size_bytes",
            b"8000000\n",
        );
        for (k, v) in [
            ("sys_vendor", "QEMU"),
            ("product_name", "Standard PC (i440FX + PIIX, 1996)"),
            ("product_serial", "SN-4711"),
            ("bios_vendor", "SeaBIOS"),
            ("bios_version", "1.16.2-debian-1.16.2-1"),
            ("bios_date", "04/01/2014"),
        ] {
            put(
                root,
                &format!("sys/class/dmi/id/{k}"),
                format!("{v}\n").as_bytes(),
            );
        }
        fs::create_dir_all(root.join("sys/firmware/efi/efivars")).unwrap();
        for (name, pci, mac, driver, ids, carrier, speed) in [
            (
                "eth0",
                "0000:00:03.0",
                "52:54:00:12:34:56",
                "virtio_net",
                ("0x1af4", "0x1000"),
                "1",
                "-1",
            ),
            (
                "eth1",
                "0000:00:04.0",
                "52:54:00:AB:CD:EF",
                "e1000",
                ("0x8086", "0x100e"),
                "0",
                "1000",
            ),
        ] {
            // virtio NICs sit on the virtio bus below their PCI function.
            let dev = match driver {
                "virtio_net" => root
                    .join("sys/devices/pci0000:00")
                    .join(pci)
                    .join("virtio0"),
                _ => root.join("sys/devices/pci0000:00").join(pci),
            };
            fs::create_dir_all(&dev).unwrap();
            put(&dev, "vendor", format!("{}\n", ids.0).as_bytes());
            put(&dev, "device", format!("{}\n", ids.1).as_bytes());
            let drv = root.join("sys/bus/pci/drivers").join(driver);
            fs::create_dir_all(&drv).unwrap();
            std::os::unix::fs::symlink(&drv, dev.join("driver")).unwrap();
            let net = root.join("sys/class/net").join(name);
            put(&net, "address", format!("{mac}\n").as_bytes());
            put(&net, "carrier", format!("{carrier}\n").as_bytes());
            put(&net, "speed", format!("{speed}\n").as_bytes());
            std::os::unix::fs::symlink(&dev, net.join("device")).unwrap();
        }
        put(root, "sys/class/net/lo/address", b"00:00:00:00:00:00\n");
        put(root, "sys/block/vda/size", b"10485760\n");
        put(root, "sys/block/vda/serial", b"ipa0000\n");
        put(root, "sys/class/net/virbr0/address", b"52:54:00:00:00:01\n");
    }

    #[test]
    fn inventory_of_a_fake_machine_has_ipas_shape() {
        let t = tempfile::tempdir().unwrap();
        fake_machine(t.path());
        let mut addrs = interfaces::Addresses::new();
        addrs.insert(
            "eth0".into(),
            (
                Some("10.0.2.15".parse().unwrap()),
                Some("fec0::5054:ff:fe12:3456".parse().unwrap()),
            ),
        );
        let disks = crate::hardware::disks::list(t.path()).unwrap();
        let inv = collect_with(t.path(), Some("52:54:00:12:34:56"), disks, &addrs);
        let v = serde_json::to_value(&inv).unwrap();
        assert_eq!(
            v["interfaces"],
            json!([
                {"name": "eth0", "mac_address": "52:54:00:12:34:56",
                 "ipv4_address": "10.0.2.15", "ipv6_address": "fec0::5054:ff:fe12:3456",
                 "has_carrier": true, "lldp": null, "vendor": "0x1af4", "product": "0x1000",
                 "client_id": null, "biosdevname": null, "speed_mbps": null,
                 "pci_address": "0000:00:03.0", "driver": "virtio_net"},
                {"name": "eth1", "mac_address": "52:54:00:ab:cd:ef",
                 "ipv4_address": null, "ipv6_address": null,
                 "has_carrier": false, "lldp": null, "vendor": "0x8086", "product": "0x100e",
                 "client_id": null, "biosdevname": null, "speed_mbps": 1000,
                 "pci_address": "0000:00:04.0", "driver": "e1000"},
            ])
        );
        assert_eq!(
            v["cpu"],
            json!({"model_name": "QEMU Virtual CPU version 2.5+", "frequency": "2399.998",
                   "count": 2, "architecture": std::env::consts::ARCH,
                   "flags": ["fpu", "de", "pse", "sse2", "lm"], "socket_count": 1})
        );
        assert_eq!(
            v["memory"],
            json!({"total": 737420u64 * 1024, "physical_mb": 512 + 40960})
        );
        assert_eq!(
            v["system_vendor"],
            json!({"product_name": "Standard PC (i440FX + PIIX, 1996)", "serial_number": "SN-4711",
                   "manufacturer": "QEMU",
                   "firmware": {"vendor": "SeaBIOS", "version": "1.16.2-debian-1.16.2-1",
                                "build_date": "04/01/2014"}})
        );
        assert_eq!(
            v["boot"],
            json!({"current_boot_mode": "uefi", "pxe_interface": "52:54:00:12:34:56"})
        );
        assert_eq!(v["bmc_address"], json!(null));
        assert_eq!(v["hostname"], "ramdisk");
        assert_eq!(v["disks"][0]["name"], "/dev/vda");
        assert_eq!(v["disks"][0]["size"], 5u64 << 30);
        assert_eq!(v["disks"][0]["serial"], "ipa0000");
    }

    #[test]
    fn memory_falls_back_to_blocks_and_cpus_to_online() {
        let t = tempfile::tempdir().unwrap();
        let mem = t.path().join("sys/devices/system/memory");
        put(&mem, "block_size_bytes", b"8000000\n");
        for (i, online) in ["1", "1", "0"].iter().enumerate() {
            put(&mem, &format!("memory{i}/online"), online.as_bytes());
        }
        put(t.path(), "sys/devices/system/cpu/online", b"0-3,6\n");
        put(
            t.path(),
            "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
            b"3500000\n",
        );
        let m = memory::read(t.path());
        assert_eq!(
            m,
            memory::Memory {
                total: 0,
                physical_mb: Some(256)
            }
        );
        let c = cpu::read(t.path());
        assert_eq!((c.count, c.frequency.as_deref()), (5, Some("3500")));
        assert_eq!(system::boot(t.path(), None).current_boot_mode, "bios");
    }

    #[test]
    fn memory_device_sizes() {
        assert_eq!(memory::memory_device_mib(&dimm(0x8000 | 2048, 0)), Some(2));
        assert_eq!(memory::memory_device_mib(&dimm(0xFFFF, 0)), None);
        assert_eq!(memory::memory_device_mib(&dimm(1024, 0)[..0x0D]), None);
        assert_eq!(memory::memory_device_mib(&[16, 0, 0]), None);
    }
}
