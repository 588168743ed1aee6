//! DMI's system identity (`/sys/class/dmi/id`), the boot mode, the PXE
//! interface and the host name.

use crate::fsutil::read_trimmed;
use crate::fsutil::under;
use serde::Serialize;
use std::path::Path;

/// IPA's `SystemVendorInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemVendor {
    /// `product_name`.
    pub product_name: Option<String>,
    /// `product_serial` (readable by root only).
    pub serial_number: Option<String>,
    /// `sys_vendor`.
    pub manufacturer: Option<String>,
    /// The BIOS/UEFI firmware.
    pub firmware: Firmware,
}

/// IPA's `SystemFirmware`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Firmware {
    /// `bios_vendor`.
    pub vendor: Option<String>,
    /// `bios_version`.
    pub version: Option<String>,
    /// `bios_date`.
    pub build_date: Option<String>,
}

/// IPA's `BootInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Boot {
    /// `uefi` when the kernel was started by UEFI firmware, else `bios`.
    pub current_boot_mode: String,
    /// The MAC from `BOOTIF`, when the boot loader passed one.
    pub pxe_interface: Option<String>,
}

/// Reads `/sys/class/dmi/id`.
pub fn vendor(root: &Path) -> SystemVendor {
    let dmi = under(root, "/sys/class/dmi/id");
    let field = |name: &str| read_trimmed(&dmi.join(name));
    SystemVendor {
        product_name: field("product_name"),
        serial_number: field("product_serial"),
        manufacturer: field("sys_vendor"),
        firmware: Firmware {
            vendor: field("bios_vendor"),
            version: field("bios_version"),
            build_date: field("bios_date"),
        },
    }
}

/// The boot mode (`/sys/firmware/efi` exists only under UEFI) and the PXE
/// MAC.
pub fn boot(root: &Path, bootif: Option<&str>) -> Boot {
    let uefi = under(root, "/sys/firmware/efi").is_dir();
    Boot {
        current_boot_mode: if uefi { "uefi" } else { "bios" }.to_string(),
        pxe_interface: bootif.map(str::to_string),
    }
}

/// `/proc/sys/kernel/hostname`, empty when unreadable.
pub fn hostname(root: &Path) -> String {
    read_trimmed(&under(root, "/proc/sys/kernel/hostname")).unwrap_or_default()
}
