//! One QEMU command line for every caller: `ipa-build boot` and the test
//! harnesses (`builder/tests/common/qemu.rs`, `tests/src/qemu.rs`) describe
//! a VM with [`Qemu`] and take its [`Qemu::args`], so a lesson learned about
//! QEMU (an explicit NIC model, no option ROM, one subnet per NIC, how a USB
//! stick is attached) is written down once.
//!
//! What the builder knows, and why:
//! - **Accelerator**: KVM only when it really works ([`kvm_works`]): on some
//!   machines `/dev/kvm` opens but QEMU aborts setting up the vCPU (`failed
//!   to set MSR 0x10a`), so a paused QEMU is started once to find out.
//! - **Firmware**: SeaBIOS on `pc`, or OVMF on `q35` with a private, writable
//!   copy of the variable store (the firmware writes to it): [`Qemu::spawn_in`]
//!   makes that copy, so no caller repeats it.
//! - **NICs**: always an explicit model (`pc` and `q35` default to different
//!   ones) and no iPXE option ROM (`romfile=`, it only slows a direct boot).
//!   Each NIC has its own user-mode network on its own subnet (10.0.2.0/24,
//!   10.0.3.0/24, ...): with one subnet on two NICs the guest may answer a
//!   forwarded connection through the wrong NIC, whose slirp drops the
//!   reply. Port forwards go to the first NIC, where the host is `10.0.2.2`.
//! - **Disks**: each on the controller asked for ([`Controller`]); one
//!   controller of each kind is created on first use and shared. Writes go
//!   to the file unless the disk is a snapshot (a throwaway overlay).
//! - **Console**: the serial port on the terminal (`-nographic`, Ctrl-A X
//!   quits) or in a file (`-display none`).
//! - **Monitor**: an optional QMP socket ([`qmp`]) through which a test
//!   plugs devices into a running guest (`device_add`/`device_del`);
//!   [`Qemu::spawn_in`] always opens one.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::host::{HostError, Need};

pub mod qmp;

/// The QEMU system emulator we run.
pub const QEMU: Need = Need {
    what: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// UEFI firmware (OVMF), only needed for UEFI boots.
pub const OVMF: Need = Need {
    what: OVMF_CODE,
    package: "ovmf",
};
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Debian packages that provide QEMU and UEFI firmware. `qemu-utils` is
/// listed because installing `qemu-system-x86` alone removes a newer one.
pub const PACKAGES: &[&str] = &["qemu-system-x86", "qemu-utils", "ovmf"];

/// Makes sure QEMU and OVMF are installed: installs them with apt-get when
/// they are missing and we are root, otherwise says what to install.
pub fn ensure_installed(log: &dyn Fn(&str)) -> Result<(), HostError> {
    crate::host::ensure(&[QEMU, OVMF], true, log)
}

/// Accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when `allow_kvm` and it really works here, TCG otherwise.
    pub fn pick(allow_kvm: bool) -> Accel {
        if allow_kvm && kvm_works() {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }
}

/// True when KVM can really run a vCPU here: a paused QEMU with the host CPU
/// model is started and asked to quit. Where `/dev/kvm` exists but cannot set
/// the host's MSRs, QEMU aborts instead of quitting.
pub fn kvm_works() -> bool {
    let openable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !openable {
        return false;
    }
    let child = Command::new(QEMU.what)
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-machine",
            "pc",
            "-nodefaults",
            "-display",
            "none",
            "-S",
            "-m",
            "16",
            "-serial",
            "none",
            "-monitor",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"quit\n");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Machine type and firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS on the `pc` machine.
    Bios,
    /// OVMF on `q35`, with a writable copy of the variable store: the one
    /// [`Qemu::spawn_in`] makes, or [`Qemu::uefi_vars`].
    Uefi,
}

/// What the VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Direct kernel boot (`-kernel`/`-initrd`/`-append`).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// An ISO as a CD-ROM.
    Cdrom(PathBuf),
    /// An image as the boot hard disk (a hybrid ISO on a USB stick, say),
    /// written to a throwaway overlay so the file is never changed.
    Disk(PathBuf),
}

/// One NIC: its QEMU device model (`virtio-net-pci`, `e1000`, ...) and MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub model: String,
    pub mac: String,
}

/// The controller a data disk hangs off, i.e. the driver the guest needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// `virtio-blk-pci`: `/dev/vdX` (virtio_blk).
    VirtioBlk,
    /// A `virtio-scsi-pci` HBA with `scsi-hd` disks: `/dev/sdX` (virtio_scsi, sd_mod).
    VirtioScsi,
    /// An LSI MegaRAID SAS 2108 (`megasas-gen2`), as on many servers (megaraid_sas).
    Megasas,
    /// An `ich9-ahci` SATA controller, one disk per port, six ports (ahci).
    Ahci,
    /// One `nvme` controller per disk (nvme).
    Nvme,
    /// USB mass storage behind a `qemu-xhci` controller: a USB stick
    /// (xhci_pci, usb_storage, sd_mod).
    Usb,
}

impl Controller {
    /// The controller device created once for all disks of this kind, as
    /// (QEMU device, id); `None` when each disk is its own device.
    pub fn bus(self) -> Option<(&'static str, &'static str)> {
        match self {
            Controller::VirtioScsi => Some(("virtio-scsi-pci", "scsi0")),
            Controller::Megasas => Some(("megasas-gen2", "mega0")),
            Controller::Ahci => Some(("ich9-ahci", "ahci0")),
            Controller::Usb => Some(("qemu-xhci", "xhci0")),
            Controller::VirtioBlk | Controller::Nvme => None,
        }
    }
}

/// A data disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub controller: Controller,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Writes go to a throwaway overlay, never to `path`.
    pub snapshot: bool,
    /// The serial number the guest sees (required by NVMe; one is made up
    /// when missing).
    pub serial: Option<String>,
}

impl Disk {
    /// A raw image on `controller`, written in place.
    pub fn raw(path: impl Into<PathBuf>, controller: Controller) -> Disk {
        Disk {
            path: path.into(),
            controller,
            format: "raw".into(),
            snapshot: false,
            serial: None,
        }
    }
}

/// Where the serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// The terminal QEMU runs in (`-nographic`: serial and monitor on
    /// stdio, Ctrl-A X quits).
    Terminal,
    /// A file that receives everything the guest writes to ttyS0.
    File(PathBuf),
}

/// How to start one VM; [`Qemu::args`] gives the argument list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qemu {
    boot: Boot,
    firmware: Firmware,
    uefi_vars: Option<PathBuf>,
    accel: Accel,
    memory_mib: u32,
    nics: Vec<Nic>,
    hostfwd: Vec<(u16, u16)>,
    disks: Vec<Disk>,
    console: Console,
    qmp: Option<PathBuf>,
    /// Controllers created even when no disk is on them yet (for hotplug).
    controllers: Vec<Controller>,
    extra: Vec<String>,
}

impl Qemu {
    /// A BIOS VM under TCG with 1 GiB, no NIC, no disk, the console on the
    /// terminal.
    pub fn new(boot: Boot) -> Self {
        Qemu {
            boot,
            firmware: Firmware::Bios,
            uefi_vars: None,
            accel: Accel::Tcg,
            memory_mib: 1024,
            nics: Vec::new(),
            hostfwd: Vec::new(),
            disks: Vec::new(),
            console: Console::Terminal,
            qmp: None,
            controllers: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = firmware;
        self
    }

    /// The writable copy of the UEFI variable store (copy [`OVMF_VARS`]
    /// there before starting). Without one, [`Qemu::args`] gives the
    /// firmware the read-only original, whose variables it cannot keep;
    /// [`Qemu::spawn_in`] makes a copy itself.
    pub fn uefi_vars(mut self, path: impl Into<PathBuf>) -> Self {
        self.uefi_vars = Some(path.into());
        self
    }

    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = accel;
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Adds a NIC of QEMU device `model` with `mac`, on its own subnet.
    pub fn nic(mut self, model: &str, mac: &str) -> Self {
        self.nics.push(Nic {
            model: model.into(),
            mac: mac.into(),
        });
        self
    }

    /// Forwards host `127.0.0.1:host` to guest port `guest` (TCP, first NIC).
    pub fn hostfwd(mut self, host: u16, guest: u16) -> Self {
        self.hostfwd.push((host, guest));
        self
    }

    /// Adds a raw data disk on `controller`, written in place.
    pub fn disk(self, path: impl Into<PathBuf>, controller: Controller) -> Self {
        self.disk_with(Disk::raw(path, controller))
    }

    /// Creates the shared controller of this kind (its id is the second
    /// half of [`Controller::bus`]) even with no disk on it, so that a disk can be
    /// plugged in later: a USB stick into `xhci0`, say.
    pub fn controller(mut self, controller: Controller) -> Self {
        self.controllers.push(controller);
        self
    }

    /// Adds a data disk described in full.
    pub fn disk_with(mut self, disk: Disk) -> Self {
        self.disks.push(disk);
        self
    }

    pub fn console(mut self, console: Console) -> Self {
        self.console = console;
        self
    }

    /// A QMP monitor on the Unix socket `path` (for `device_add`,
    /// `device_del`...; see [`qmp::Qmp`]).
    pub fn qmp_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.qmp = Some(path.into());
        self
    }

    /// Extra QEMU arguments, appended last.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra.push(a.into());
        self
    }

    /// The full argument list (without the program name, [`QEMU`]`.what`).
    pub fn args(&self) -> Vec<String> {
        let mut a = Args::default();
        self.machine_args(&mut a);
        self.boot_args(&mut a);
        self.nic_args(&mut a);
        self.disk_args(&mut a);
        a.0.extend(self.extra.iter().cloned());
        a.0
    }

    /// Accelerator, console, monitor, memory and firmware.
    fn machine_args(&self, a: &mut Args) {
        match self.accel {
            Accel::Kvm => a.push(&["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => a.push(&["-accel", "tcg"]),
        }
        match &self.console {
            Console::Terminal => a.push(&["-nographic"]),
            Console::File(path) => a.push(&[
                "-display",
                "none",
                "-serial",
                &format!("file:{}", path.display()),
            ]),
        }
        // With -nographic the human monitor is multiplexed on the terminal.
        if self.console != Console::Terminal {
            a.push(&["-monitor", "none"]);
        }
        if let Some(sock) = &self.qmp {
            a.push(&[
                "-qmp",
                &format!("unix:{},server=on,wait=off", sock.display()),
            ]);
        }
        a.push(&["-no-reboot", "-m", &self.memory_mib.to_string()]);
        match &self.firmware {
            Firmware::Bios => a.push(&["-machine", "pc"]),
            Firmware::Uefi => {
                a.push(&["-machine", "q35"]);
                let vars = match &self.uefi_vars {
                    Some(vars) => format!("if=pflash,format=raw,file={}", vars.display()),
                    None => format!("if=pflash,format=raw,readonly=on,file={OVMF_VARS}"),
                };
                a.push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
                    "-drive",
                    &vars,
                ]);
            }
        }
    }

    /// What the VM boots: a kernel, a CD or a disk image.
    fn boot_args(&self, a: &mut Args) {
        match &self.boot {
            Boot::Kernel {
                kernel,
                initrd,
                append,
            } => a.push(&[
                "-kernel",
                &kernel.display().to_string(),
                "-initrd",
                &initrd.display().to_string(),
                "-append",
                append.trim(),
            ]),
            Boot::Cdrom(iso) => a.push(&[
                "-drive",
                &format!("file={},media=cdrom,readonly=on", iso.display()),
            ]),
            Boot::Disk(img) => a.push(&[
                "-drive",
                &format!("file={},format=raw,snapshot=on", img.display()),
            ]),
        }
    }

    /// One user-mode network per NIC (the first carries the forwards).
    fn nic_args(&self, a: &mut Args) {
        for (i, nic) in self.nics.iter().enumerate() {
            let mut netdev = format!("user,id=n{i},net=10.0.{}.0/24", 2 + i);
            if i == 0 {
                for (h, g) in &self.hostfwd {
                    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
                }
            }
            // `romfile=`: no iPXE option ROM, which only slows the boot down.
            a.push(&[
                "-netdev",
                &netdev,
                "-device",
                &format!("{},netdev=n{i},mac={},romfile=", nic.model, nic.mac),
            ]);
        }
        if self.nics.is_empty() {
            a.push(&["-nic", "none"]);
        }
    }

    /// Controllers (each bus once) and the disks on them.
    fn disk_args(&self, a: &mut Args) {
        let mut buses: Vec<&str> = Vec::new();
        let mut add_bus = |a: &mut Args, c: &Controller| {
            if let Some((device, id)) = c.bus()
                && !buses.contains(&id)
            {
                buses.push(id);
                a.push(&["-device", &format!("{device},id={id}")]);
            }
        };
        for c in &self.controllers {
            add_bus(a, c);
        }
        let mut ahci_port = 0;
        for (i, disk) in self.disks.iter().enumerate() {
            add_bus(a, &disk.controller);
            let mut drive = format!(
                "file={},format={},if=none,id=d{i}",
                disk.path.display(),
                disk.format
            );
            if disk.snapshot {
                drive.push_str(",snapshot=on");
            }
            let serial = disk.serial.clone().unwrap_or_else(|| format!("ipa{i:04}"));
            let device = match disk.controller {
                Controller::VirtioBlk => format!("virtio-blk-pci,drive=d{i},serial={serial}"),
                Controller::VirtioScsi => format!("scsi-hd,bus=scsi0.0,drive=d{i},serial={serial}"),
                Controller::Megasas => format!("scsi-hd,bus=mega0.0,drive=d{i},serial={serial}"),
                Controller::Ahci => {
                    let port = ahci_port;
                    ahci_port += 1;
                    format!("ide-hd,bus=ahci0.{port},drive=d{i},serial={serial}")
                }
                Controller::Nvme => format!("nvme,drive=d{i},serial={serial}"),
                Controller::Usb => {
                    format!("usb-storage,bus=xhci0.0,drive=d{i},removable=on,serial={serial}")
                }
            };
            a.push(&["-drive", &drive, "-device", &device]);
        }
    }

    /// A [`Command`] for QEMU with these arguments (stdio untouched).
    pub fn command(&self) -> Command {
        let mut c = Command::new(QEMU.what);
        c.args(self.args());
        c
    }

    /// Starts this VM headless with everything in `dir` (created if
    /// needed): the serial console in `serial.log`, QEMU's own output in
    /// `qemu.log`, a QMP socket `qmp.sock` ([`Vm::qmp`]) and, for UEFI, the
    /// private copy `vars.fd` of the variable store. What the test
    /// harnesses and scripts use.
    pub fn spawn_in(&self, dir: &Path) -> Result<Vm, SpawnError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpawnError { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut vm = self
            .clone()
            .console(Console::File(dir.join("serial.log")))
            .qmp_socket(dir.join("qmp.sock"));
        if vm.firmware == Firmware::Uefi {
            let vars = dir.join("vars.fd");
            std::fs::copy(OVMF_VARS, &vars).map_err(io(Path::new(OVMF_VARS)))?;
            vm = vm.uefi_vars(vars);
        }
        let mut started = Vm::spawn(&vm.args(), dir).map_err(io(Path::new(QEMU.what)))?;
        started.qmp = vm.qmp;
        Ok(started)
    }
}

/// A VM could not be started: the file or program it names.
#[derive(Debug, thiserror::Error)]
#[error("starting QEMU: {path}: {source}")]
pub struct SpawnError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// A QEMU running headless with its serial console in a file: what the test
/// harnesses (and scripts) use to wait for a guest to say something. Killed
/// on drop, so a failing assertion never leaves QEMU running.
pub struct Vm {
    child: Child,
    serial: PathBuf,
    qemu_log: PathBuf,
    qmp: Option<PathBuf>,
    started: Instant,
}

/// A marker being watched for on a VM's console ([`Vm::watch`]).
pub struct Watch {
    seen: Arc<Mutex<Option<Duration>>>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    /// When the marker first appeared, as time from QEMU's start: the
    /// start of the read that found it, so at most one 20 ms poll after
    /// the guest wrote it.
    pub fn seen(&self) -> Option<Duration> {
        self.seen.lock().ok().and_then(|s| *s)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The guest never printed what was waited for.
#[derive(Debug, thiserror::Error)]
#[error("{marker:?} not seen on the serial console: {why}\n{diagnostics}")]
pub struct NotSeen {
    pub marker: String,
    pub why: String,
    /// The end of the console and QEMU's own messages.
    pub diagnostics: String,
}

impl Vm {
    /// Starts `qemu-system-x86_64` with `args`, whose serial console must go
    /// to `dir/serial.log` ([`Console::File`]); that file is created empty
    /// first, and QEMU's own output goes to `dir/qemu.log`.
    pub fn spawn(args: &[String], dir: &Path) -> io::Result<Vm> {
        std::fs::create_dir_all(dir)?;
        let serial = dir.join("serial.log");
        std::fs::write(&serial, b"")?;
        let qemu_log = dir.join("qemu.log");
        let log = std::fs::File::create(&qemu_log)?;
        let child = Command::new(QEMU.what)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Vm {
            child,
            serial,
            qemu_log,
            qmp: None,
            started: Instant::now(),
        })
    }

    /// Everything the guest wrote to its serial console so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    pub fn serial_path(&self) -> &Path {
        &self.serial
    }

    /// A client on this VM's QMP socket (started by [`Qemu::spawn_in`]), to
    /// plug devices in and out while the guest runs.
    pub fn qmp(&self) -> Result<qmp::Qmp, qmp::QmpError> {
        let path = self.qmp.as_deref().ok_or(qmp::QmpError::NoSocket)?;
        qmp::Qmp::connect(path, Duration::from_secs(10))
    }

    /// Watches the serial console for `marker` in a thread of its own
    /// (every 20 ms), noting when it first appears: exact boot figures for
    /// a test that is busy elsewhere (polling Ironic, say) meanwhile.
    pub fn watch(&self, marker: &str) -> Watch {
        let seen = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (path, started, needle) = (self.serial.clone(), self.started, marker.to_string());
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf: Vec<u8> = Vec::new();
            let mut offset = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let now = started.elapsed();
                if let Ok(mut f) = std::fs::File::open(&path)
                    && f.seek(SeekFrom::Start(offset)).is_ok()
                {
                    let mut more = Vec::new();
                    if let Ok(n) = f.read_to_end(&mut more) {
                        offset += n as u64;
                        // Keep one marker's length of the old text, for a
                        // marker split across two reads.
                        let keep = buf.len().saturating_sub(needle.len());
                        buf.drain(..keep);
                        buf.extend_from_slice(&more);
                        if memchr::memmem::find(&buf, needle.as_bytes()).is_some() {
                            if let Ok(mut s) = seen2.lock() {
                                *s = Some(now);
                            }
                            return;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watch { seen, stop }
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
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<Duration, NotSeen> {
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
            return Err(NotSeen {
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
        let qemu = std::fs::read_to_string(&self.qemu_log).unwrap_or_default();
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

/// QEMU's argument list under construction.
#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn push(&mut self, items: &[&str]) {
        self.0.extend(items.iter().map(|s| s.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> Boot {
        Boot::Kernel {
            kernel: "k".into(),
            initrd: "i".into(),
            append: " console=ttyS0 ".into(),
        }
    }

    /// The values following each occurrence of `flag`.
    fn values<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn defaults_are_tcg_bios_terminal_and_no_nic() {
        let argv = Qemu::new(kernel()).args();
        assert_eq!(
            argv[..6],
            ["-accel", "tcg", "-nographic", "-no-reboot", "-m", "1024"]
        );
        assert_eq!(values(&argv, "-machine"), ["pc"]);
        assert_eq!(values(&argv, "-append"), ["console=ttyS0"]);
        assert_eq!(values(&argv, "-nic"), ["none"]);
        // The monitor is on the terminal with -nographic: not switched off.
        assert!(values(&argv, "-monitor").is_empty());
    }

    #[test]
    fn each_nic_has_its_subnet_and_forwards_go_to_the_first() {
        let argv = Qemu::new(kernel())
            .nic("virtio-net-pci", "52:54:00:12:34:56")
            .nic("e1000", "52:54:00:12:35:01")
            .hostfwd(2222, 22)
            .hostfwd(9999, 9999)
            .args();
        assert_eq!(
            values(&argv, "-netdev"),
            [
                "user,id=n0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:9999-:9999",
                "user,id=n1,net=10.0.3.0/24"
            ]
        );
        assert_eq!(
            values(&argv, "-device"),
            [
                "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=",
                "e1000,netdev=n1,mac=52:54:00:12:35:01,romfile="
            ]
        );
        assert!(values(&argv, "-nic").is_empty());
    }

    #[test]
    fn uefi_kvm_file_console_and_monitor() {
        let argv = Qemu::new(Boot::Cdrom("x.iso".into()))
            .firmware(Firmware::Uefi)
            .uefi_vars("/t/vars.fd")
            .accel(Accel::Kvm)
            .memory_mib(512)
            .console(Console::File("/t/serial.log".into()))
            .qmp_socket("/t/qmp.sock")
            .arg("-smp")
            .arg("2")
            .args();
        let joined = argv.join(" ");
        assert!(joined.starts_with("-accel kvm -cpu host -display none -serial file:/t/serial.log -monitor none -qmp unix:/t/qmp.sock,server=on,wait=off -no-reboot -m 512"), "{joined}");
        assert_eq!(values(&argv, "-machine"), ["q35"]);
        assert_eq!(
            values(&argv, "-drive"),
            [
                &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}")[..],
                "if=pflash,format=raw,file=/t/vars.fd",
                "file=x.iso,media=cdrom,readonly=on"
            ]
        );
        assert!(joined.ends_with("-smp 2"), "{joined}");
        let argv = Qemu::new(Boot::Disk("s.iso".into()))
            .console(Console::File("s".into()))
            .args();
        assert_eq!(values(&argv, "-monitor"), ["none"]);
        assert_eq!(
            values(&argv, "-drive"),
            ["file=s.iso,format=raw,snapshot=on"]
        );
    }

    #[test]
    fn disks_share_one_controller_per_kind() {
        let mut nvme = Disk::raw("n.img", Controller::Nvme);
        nvme.serial = Some("NV1".into());
        nvme.snapshot = true;
        let argv = Qemu::new(kernel())
            .disk("a.img", Controller::VirtioBlk)
            .disk("b.img", Controller::Ahci)
            .disk("c.img", Controller::Ahci)
            .disk("d.img", Controller::VirtioScsi)
            .disk("e.img", Controller::Megasas)
            .disk("f.img", Controller::Usb)
            .disk("g.img", Controller::VirtioScsi)
            .disk_with(nvme)
            .args();
        assert_eq!(
            values(&argv, "-device"),
            [
                "virtio-blk-pci,drive=d0,serial=ipa0000",
                "ich9-ahci,id=ahci0",
                "ide-hd,bus=ahci0.0,drive=d1,serial=ipa0001",
                "ide-hd,bus=ahci0.1,drive=d2,serial=ipa0002",
                "virtio-scsi-pci,id=scsi0",
                "scsi-hd,bus=scsi0.0,drive=d3,serial=ipa0003",
                "megasas-gen2,id=mega0",
                "scsi-hd,bus=mega0.0,drive=d4,serial=ipa0004",
                "qemu-xhci,id=xhci0",
                "usb-storage,bus=xhci0.0,drive=d5,removable=on,serial=ipa0005",
                "scsi-hd,bus=scsi0.0,drive=d6,serial=ipa0006",
                "nvme,drive=d7,serial=NV1",
            ]
        );
        let drives = values(&argv, "-drive");
        assert_eq!(drives[0], "file=a.img,format=raw,if=none,id=d0");
        assert_eq!(drives[7], "file=n.img,format=raw,if=none,id=d7,snapshot=on");
    }

    #[test]
    fn an_empty_controller_waits_for_hotplug_and_is_not_repeated() {
        let argv = Qemu::new(kernel())
            .controller(Controller::Usb)
            .disk("f.img", Controller::Usb)
            .args();
        assert_eq!(
            values(&argv, "-device"),
            [
                "qemu-xhci,id=xhci0",
                "usb-storage,bus=xhci0.0,drive=d0,removable=on,serial=ipa0000",
            ]
        );
    }
}
