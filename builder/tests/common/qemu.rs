//! Boots a kernel + initramfs or an ISO in QEMU for tests, and watches the
//! serial console.
//!
//! Always TCG (`/dev/kvm` exists on the CI machines but does not work), always
//! an explicit NIC (`pc` and `q35` default to different ones), user networking
//! so the guest reaches the host's 127.0.0.1 as 10.0.2.2, the serial console
//! captured to a file. The VM is killed when the [`Vm`] is dropped, so a
//! failing assertion never leaves QEMU running.
//!
//! ```no_run
//! let vm = Qemu::new(Boot::Cdrom("x.iso".into())).firmware(Firmware::Uefi).spawn(&dir)?;
//! let took = vm.wait_for("ipa-build:", Duration::from_secs(300))?;
//! ```
#![allow(dead_code)] // each test binary uses its own part of this library

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::Path;

pub use ipa_build::qemu::{OVMF_CODE, OVMF_VARS, PACKAGES, Vm};

/// Installs QEMU and OVMF with apt-get when they are missing and we are root;
/// otherwise panics with the command to run.
pub fn ensure_installed() {
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
    if let Err(e) = ipa_build::host::ensure(&needs, true, &|m| eprintln!("{m}")) {
        panic!("QEMU tests need {}: {e}", PACKAGES.join(" "));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS on the `pc` machine.
    Bios,
    /// OVMF on `q35`, with a private copy of the variable store.
    Uefi,
}

pub use ipa_build::qemu::Boot;

/// How to start one VM: the library's [`ipa_build::qemu::Qemu`] with one NIC
/// (the one place QEMU command lines are made), plus where this harness
/// keeps the serial log and the UEFI variable store.
#[derive(Debug, Clone)]
pub struct Qemu {
    vm: ipa_build::qemu::Qemu,
    firmware: Firmware,
    nic: String,
    hostfwd: Vec<(u16, u16)>,
}

impl Qemu {
    pub fn new(boot: Boot) -> Self {
        Qemu {
            vm: ipa_build::qemu::Qemu::new(boot),
            firmware: Firmware::Bios,
            nic: "virtio-net-pci".into(),
            hostfwd: Vec::new(),
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

    /// QEMU device model of the one NIC (default `virtio-net-pci`).
    pub fn nic(mut self, model: &str) -> Self {
        self.nic = model.into();
        self
    }

    /// Forwards host `127.0.0.1:host` to guest port `guest` (TCP).
    pub fn hostfwd(mut self, host: u16, guest: u16) -> Self {
        self.hostfwd.push((host, guest));
        self
    }

    /// Extra QEMU arguments, appended last.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.vm = self.vm.arg(a);
        self
    }

    /// The full QEMU argument list; `dir` holds the serial log and the
    /// UEFI variable store. Always TCG: see the module's documentation.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let firmware = match self.firmware {
            Firmware::Bios => ipa_build::qemu::Firmware::Bios,
            Firmware::Uefi => ipa_build::qemu::Firmware::Uefi {
                vars: dir.join("vars.fd"),
            },
        };
        let mut vm = self
            .vm
            .clone()
            .accel(ipa_build::qemu::Accel::Tcg)
            .firmware(firmware)
            .console(ipa_build::qemu::Console::File(dir.join("serial.log")))
            .nic(&self.nic, "52:54:00:12:34:56");
        for (h, g) in &self.hostfwd {
            vm = vm.hostfwd(*h, *g);
        }
        vm.args()
    }

    /// Starts QEMU; `dir` (created if needed) receives `serial.log`,
    /// `qemu.log` (QEMU's own output) and, for UEFI, `vars.fd`.
    pub fn spawn(&self, dir: &Path) -> io::Result<Vm> {
        fs::create_dir_all(dir)?;
        if self.firmware == Firmware::Uefi {
            fs::copy(OVMF_VARS, dir.join("vars.fd"))?;
        }
        Vm::spawn(&self.args(dir), dir)
    }
}

/// A free TCP port on 127.0.0.1 (for `hostfwd` or a listener the guest calls).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}
