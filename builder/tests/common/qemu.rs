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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian packages that provide QEMU and UEFI firmware. `qemu-utils` is
/// listed because installing `qemu-system-x86` alone removes a newer one.
pub const PACKAGES: &[&str] = &["qemu-system-x86", "qemu-utils", "ovmf"];

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

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

#[derive(Debug, Clone)]
pub enum Boot {
    /// Direct kernel boot (`-kernel`/`-initrd`/`-append`).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// An ISO as a CD-ROM.
    Cdrom(PathBuf),
    /// An image as a hard disk (a hybrid ISO on a USB stick, say), written
    /// to a throwaway overlay so the file is never changed.
    Disk(PathBuf),
}

/// How to start one VM.
#[derive(Debug, Clone)]
pub struct Qemu {
    boot: Boot,
    firmware: Firmware,
    memory_mib: u32,
    nic: String,
    hostfwd: Vec<(u16, u16)>,
    extra: Vec<String>,
}

impl Qemu {
    pub fn new(boot: Boot) -> Self {
        Qemu {
            boot,
            firmware: Firmware::Bios,
            memory_mib: 1024,
            nic: "virtio-net-pci".into(),
            hostfwd: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = firmware;
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
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
        self.extra.push(a.into());
        self
    }

    /// The full QEMU argument list; `dir` holds the serial log and the
    /// UEFI variable store.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let mut a: Vec<String> = [
            "-accel",
            "tcg",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ]
        .map(String::from)
        .to_vec();
        a.extend(["-m".into(), self.memory_mib.to_string()]);
        a.extend([
            "-serial".into(),
            format!("file:{}", dir.join("serial.log").display()),
        ]);
        match self.firmware {
            Firmware::Bios => a.extend(["-machine".into(), "pc".into()]),
            Firmware::Uefi => {
                a.extend(["-machine".into(), "q35".into()]);
                a.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
                ]);
                a.extend([
                    "-drive".into(),
                    format!(
                        "if=pflash,format=raw,file={}",
                        dir.join("vars.fd").display()
                    ),
                ]);
            }
        }
        match &self.boot {
            Boot::Kernel {
                kernel,
                initrd,
                append,
            } => a.extend([
                "-kernel".into(),
                kernel.display().to_string(),
                "-initrd".into(),
                initrd.display().to_string(),
                "-append".into(),
                append.clone(),
            ]),
            Boot::Cdrom(iso) => a.extend([
                "-drive".into(),
                format!("file={},media=cdrom,readonly=on", iso.display()),
            ]),
            Boot::Disk(img) => a.extend([
                "-drive".into(),
                format!("file={},format=raw,snapshot=on", img.display()),
            ]),
        }
        let mut netdev = "user,id=n0".to_string();
        for (h, g) in &self.hostfwd {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
        }
        // `romfile=`: no iPXE option ROM, which only slows the boot down.
        a.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            format!("{},netdev=n0,romfile=", self.nic),
        ]);
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts QEMU; `dir` (created if needed) receives `serial.log`,
    /// `qemu.log` (QEMU's own output) and, for UEFI, `vars.fd`.
    pub fn spawn(&self, dir: &Path) -> io::Result<Vm> {
        fs::create_dir_all(dir)?;
        let serial = dir.join("serial.log");
        fs::write(&serial, b"")?;
        if self.firmware == Firmware::Uefi {
            fs::copy(OVMF_VARS, dir.join("vars.fd"))?;
        }
        let qemu_log = dir.join("qemu.log");
        let log = fs::File::create(&qemu_log)?;
        let child = Command::new("qemu-system-x86_64")
            .args(self.args(dir))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
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

    /// Waits until `marker` appears on the serial console; returns the time
    /// from QEMU's start. On timeout or an early QEMU exit the error holds
    /// the end of the console and QEMU's own messages.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<Duration, String> {
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
            return Err(format!(
                "{marker:?} not seen on the serial console: {why}\n{}",
                self.diagnostics()
            ));
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

/// A free TCP port on 127.0.0.1 (for `hostfwd` or a listener the guest calls).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}
