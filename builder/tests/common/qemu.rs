//! QEMU for the builder's tests: the library's [`Qemu`] and [`Vm`]
//! (`ipa_build::qemu`), used directly; [`Qemu::spawn_in`] starts a VM
//! headless (TCG, the serial console in a file) and the VM is killed when
//! dropped.
//!
//! ```no_run
//! let vm = Qemu::new(Boot::Cdrom("x.iso".into())).firmware(Firmware::Uefi).spawn_in(&dir)?;
//! let took = vm.wait_for("ipa-build:", Duration::from_secs(300))?;
//! ```
pub use ipa_build::qemu::{Boot, Firmware, Qemu};

/// Installs QEMU and OVMF with apt-get when they are missing and we are root;
/// otherwise panics with the command to run.
pub fn ensure_installed() {
    if let Err(e) = ipa_build::qemu::ensure_installed(&|m| eprintln!("{m}")) {
        panic!(
            "QEMU tests need {}: {e}",
            ipa_build::qemu::PACKAGES.join(" ")
        );
    }
}
