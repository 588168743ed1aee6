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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use ipa_build::qemu::{Controller, Disk, OVMF_CODE, OVMF_VARS, PACKAGES};

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
    #[error("{marker:?} not seen on the serial console: {why}\n{diagnostics}")]
    NotSeen {
        marker: String,
        why: String,
        diagnostics: String,
    },
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
        let serial = dir.join("serial.log");
        fs::write(&serial, b"").map_err(io(&serial))?;
        if self.firmware == Firmware::Uefi {
            fs::copy(OVMF_VARS, dir.join("vars.fd")).map_err(io(Path::new(OVMF_VARS)))?;
        }
        let qemu_log = dir.join("qemu.log");
        let log = fs::File::create(&qemu_log).map_err(io(&qemu_log))?;
        let log_err = log.try_clone().map_err(io(&qemu_log))?;
        let child = Command::new("qemu-system-x86_64")
            .args(self.args(dir))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io(Path::new("qemu-system-x86_64")))?;
        Ok(Vm {
            child,
            serial,
            qemu_log,
            started: Instant::now(),
        })
    }
}

/// A running VM; killed on drop.
pub struct Vm {
    child: Child,
    serial: PathBuf,
    qemu_log: PathBuf,
    started: Instant,
}

impl Vm {
    /// Everything the guest wrote to its serial console so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    pub fn serial_path(&self) -> &Path {
        &self.serial
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// True while QEMU runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `marker` appears on the serial console; returns the time
    /// from QEMU's start. On timeout or an early QEMU exit the error holds
    /// the end of the console and QEMU's own messages.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<Duration, QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.serial().contains(marker) {
                return Ok(self.started.elapsed());
            }
            let why = match self.child.try_wait() {
                Ok(Some(status)) => format!("QEMU exited ({status})"),
                Err(e) => format!("QEMU could not be waited for: {e}"),
                Ok(None) if Instant::now() >= deadline => format!("timed out after {timeout:?}"),
                Ok(None) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            return Err(QemuError::NotSeen {
                marker: marker.into(),
                why,
                diagnostics: self.diagnostics(),
            });
        }
    }

    /// The last 40 lines of the console and QEMU's own output, for failures.
    pub fn diagnostics(&self) -> String {
        let serial = self.serial();
        let lines: Vec<&str> = serial.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        let qemu = fs::read_to_string(&self.qemu_log).unwrap_or_default();
        format!(
            "--- serial ({}), last lines\n{tail}\n--- qemu\n{qemu}",
            self.serial.display()
        )
    }

    /// Waits up to `timeout` for QEMU to exit by itself (the guest powered
    /// off; `-no-reboot` turns a reboot into an exit too). True when it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Kills QEMU now (dropping does the same).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}
