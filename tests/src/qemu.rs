//! QEMU for end-to-end tests: the library's [`Qemu`] command builder and
//! [`Vm`] runner (`ipa_build::qemu`, the one place QEMU command lines are
//! made), used directly. [`Qemu::spawn_in`] starts a VM headless with the
//! serial console, QEMU's output, a QMP socket and the UEFI variables in
//! one directory; the VM is killed when the [`Vm`] is dropped, so a failing
//! assertion never leaves QEMU running.
//!
//! Tests run under TCG, the library's default (`/dev/kvm` exists on the CI
//! machines but QEMU aborts setting up a vCPU with it).

pub use ipa_build::qemu::qmp::{Qmp, QmpError};
pub use ipa_build::qemu::{
    Boot, Controller, Disk, Firmware, NotSeen, OVMF_CODE, OVMF_VARS, PACKAGES, Qemu, SpawnError, Vm,
};

/// Why QEMU is not there to test with.
#[derive(Debug, thiserror::Error)]
#[error("QEMU tests need {packages}: {source}", packages = PACKAGES.join(" "))]
pub struct QemuMissing {
    #[source]
    source: ipa_build::host::HostError,
}

/// Installs QEMU and OVMF with apt-get when they are missing and we are root.
pub fn ensure_installed() -> Result<(), QemuMissing> {
    ipa_build::qemu::ensure_installed(&|m| eprintln!("{m}"))
        .map_err(|source| QemuMissing { source })
}
