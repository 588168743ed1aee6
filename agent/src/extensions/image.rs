//! `image.install_bootloader` (async, Ironic waits for it). This agent
//! deploys whole-disk images only, which carry their own boot loader, so
//! the command succeeds without touching the disk, as IPA does for them.

use super::Ctx;
use crate::commands::{Command, Mode, Registry};

/// The keyword arguments Ironic and IPA use.
const ARGS: &[&str] = &[
    "root_uuid",
    "efi_system_part_uuid",
    "prep_boot_part_uuid",
    "target_boot_mode",
    "software_raid",
    "ignore_bootloader_failure",
];

/// Registers `image.install_bootloader`.
pub fn register(r: &mut Registry, _ctx: &Ctx) {
    r.register(
        "image",
        "install_bootloader",
        Command::new(Mode::Async, ARGS, |p| {
            log::info!(
                "install_bootloader (root_uuid {}, boot mode {}): a whole-disk image brings its own boot loader; the disk is left as written",
                p.get("root_uuid").unwrap_or(&serde_json::Value::Null),
                p.get("target_boot_mode").unwrap_or(&serde_json::Value::Null)
            );
            Ok(None)
        }),
    );
}
