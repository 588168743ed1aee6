//! A VM for end-to-end tests: a kernel + initramfs (or ISO) in QEMU, any
//! number of NICs on user-mode networking, the serial console in a file.
//!
//! Always TCG (`/dev/kvm` exists on the CI machines but QEMU aborts setting
//! up a vCPU with it), always explicit NIC models (`pc` and `q35` default to
//! different ones). Each NIC has its own slirp network on its own subnet
//! (10.0.2.0/24, 10.0.3.0/24, ...): with one subnet on two NICs the guest may
//! answer a forwarded connection through the wrong NIC, whose slirp drops it.
//! Port forwards go to the first NIC, where the host is `10.0.2.2`. The VM is
//! killed when the [`Vm`] is dropped, so a failing assertion never leaves
//! QEMU running.

use std::fs;
use std::path::{Path, PathBuf};

pub use ipa_build::qemu::{Controller, Disk, OVMF_CODE, OVMF_VARS, PACKAGES, Vm};

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("QEMU tests need {packages}: {source}", packages = PACKAGES.join(" "))]
    Host {
        #[source]
        source: ipa_build::host::HostError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    NotSeen(#[from] ipa_build::qemu::NotSeen),
}

/// Installs QEMU and OVMF with apt-get when they are missing and we are root.
pub fn ensure_installed() -> Result<(), QemuError> {
    let needs = [
        ipa_build::host::Need {
            what: "qemu-system-x86_64",
            package: "qemu-system-x86",
        },
        ipa_build::host::Need {
            what: OVMF_CODE,
            package: "ovmf",
        },
    ];
    ipa_build::host::ensure(&needs, true, &|m| eprintln!("{m}"))
        .map_err(|source| QemuError::Host { source })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS on the `pc` machine.
    Bios,
    /// OVMF on `q35`, with a private copy of the variable store.
    Uefi,
}

pub use ipa_build::qemu::Boot;

/// How to start one VM: the library's [`ipa_build::qemu::Qemu`] (the one
/// place QEMU command lines are made), plus where this harness keeps the
/// serial log and the UEFI variable store.
#[derive(Debug, Clone)]
pub struct Qemu {
    vm: ipa_build::qemu::Qemu,
    firmware: Firmware,
}

impl Qemu {
    /// A BIOS VM with 1 GiB and no NIC yet.
    pub fn new(boot: Boot) -> Self {
        Qemu {
            vm: ipa_build::qemu::Qemu::new(boot),
            firmware: Firmware::Bios,
        }
    }

    pub fn firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = firmware;
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.vm = self.vm.memory_mib(mib);
        self
    }

    /// Adds a NIC of QEMU device `model` (e.g. `virtio-net-pci`, `e1000`).
    pub fn nic(mut self, model: &str, mac: &str) -> Self {
        self.vm = self.vm.nic(model, mac);
        self
    }

    /// Forwards host `127.0.0.1:host` to guest port `guest` (TCP, first NIC).
    pub fn hostfwd(mut self, host: u16, guest: u16) -> Self {
        self.vm = self.vm.hostfwd(host, guest);
        self
    }

    /// Adds a raw data disk on `controller` (virtio-blk, SCSI, AHCI, NVMe,
    /// USB mass storage), written in place.
    pub fn disk(mut self, path: impl Into<PathBuf>, controller: Controller) -> Self {
        self.vm = self.vm.disk(path, controller);
        self
    }

    /// Extra QEMU arguments, appended last.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.vm = self.vm.arg(a);
        self
    }

    /// The full QEMU argument list; `dir` holds the serial log and the UEFI
    /// variable store. Always TCG: see the module's documentation.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let firmware = match self.firmware {
            Firmware::Bios => ipa_build::qemu::Firmware::Bios,
            Firmware::Uefi => ipa_build::qemu::Firmware::Uefi {
                vars: dir.join("vars.fd"),
            },
        };
        self.vm
            .clone()
            .accel(ipa_build::qemu::Accel::Tcg)
            .firmware(firmware)
            .console(ipa_build::qemu::Console::File(dir.join("serial.log")))
            .args()
    }

    /// Starts QEMU; `dir` (created if needed) receives `serial.log`,
    /// `qemu.log` (QEMU's own output) and, for UEFI, `vars.fd`.
    pub fn spawn(&self, dir: &Path) -> Result<Vm, QemuError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| QemuError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        if self.firmware == Firmware::Uefi {
            fs::copy(OVMF_VARS, dir.join("vars.fd")).map_err(io(Path::new(OVMF_VARS)))?;
        }
        Vm::spawn(&self.args(dir), dir).map_err(io(Path::new("qemu-system-x86_64")))
    }
}
