//! The hybrid ISO, proved on real firmware: the tinyipa kernel and ramdisk,
//! real Debian boot loader packages, real xorriso, QEMU with SeaBIOS and
//! OVMF. The same file boots four ways (BIOS CD, BIOS disk, UEFI CD, UEFI
//! disk) to the ramdisk's userspace and the agent's first call to a listener
//! on the host; two builds in different directories give the same bytes; the
//! El Torito catalog has a BIOS and a UEFI entry.
//!
//! `cargo test -p ipa-build --test iso -- --nocapture` shows the boot times.
//! The tests install qemu-system-x86, ovmf, xorriso, mtools, dosfstools and
//! grub-common when run as root, and otherwise say what to install.

#[path = "common/qemu.rs"]
mod qemu;
#[path = "common/run.rs"]
mod run;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use qemu::{Boot, Firmware, Qemu};
use sha2::{Digest, Sha256};

const EPOCH: &str = "1700000000";
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// How the ISO under test is made. `Binary` is the real thing: `ipa-build
/// --format iso`. `Library` builds the kernel and initramfs with the binary
/// and the ISO with `ipa_build::build::iso::build_iso`, for as long as the pipeline
/// does not write ISOs itself.
const SOURCE: Source = Source::Binary;

#[allow(dead_code)]
enum Source {
    Binary,
    Library,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Runs `ipa-build` with `args` and returns its `--json` summary.
fn ipa_build(args: &[&str]) -> serde_json::Value {
    let cache = workspace().join("target/test-cache");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipa-build"));
    cmd.args(args).arg("--json").arg("--cache").arg(&cache);
    cmd.env("SOURCE_DATE_EPOCH", EPOCH)
        .env("CI", "1")
        .current_dir(workspace());
    let out = cmd.output().unwrap();
    eprintln!(
        "$ ipa-build {} --json\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "ipa-build failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The boot loader packages, unpacked the way the pipeline does it (for the
/// `Library` source only; the binary fetches its own).
fn bootloaders() -> PathBuf {
    let base = workspace().join("target/test-data/iso");
    let root = base.join("bootloaders");
    if root.join(".done").exists() {
        return root;
    }
    let debs = base.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let st = Command::new("apt-get")
        .arg("download")
        .args(ipa_build::build::iso::ISO_PACKAGES)
        .current_dir(&debs)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "apt-get download {:?} failed",
        ipa_build::build::iso::ISO_PACKAGES
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    for deb in std::fs::read_dir(&debs).unwrap() {
        let deb = deb.unwrap().path();
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success(), "dpkg-deb -x {} failed", deb.display());
    }
    std::fs::write(root.join(".done"), b"").unwrap();
    root
}

/// The arguments that build tinyipa's kernel and initramfs.
const KERNEL_AND_INITRAMFS: &[&str] = &[
    "--profile",
    "tinyipa",
    "--format",
    "kernel",
    "--format",
    "initramfs",
];

/// Builds `tinyipa.iso` into `dir` with the agent pointed at `api_url`.
fn build(dir: &Path, api_url: &str) -> PathBuf {
    let append = format!("ipa-api-url={api_url}");
    let out = dir.to_str().unwrap();
    match SOURCE {
        Source::Binary => {
            ipa_build(
                &[
                    KERNEL_AND_INITRAMFS,
                    &["--format", "iso", "--append", &append, "--output", out],
                ]
                .concat(),
            );
        }
        Source::Library => {
            let summary = ipa_build(&[KERNEL_AND_INITRAMFS, &["--output", out]].concat());
            let cmdline = format!("{} {append}", summary["cmdline"].as_str().unwrap());
            let work = tempfile::tempdir().unwrap();
            let inputs = ipa_build::build::iso::IsoInputs {
                kernel: &dir.join("tinyipa.kernel"),
                initramfs: &dir.join("tinyipa.initramfs"),
                cmdline: &cmdline,
                label: &ipa_build::build::iso::default_label("tinyipa"),
                source_date_epoch: EPOCH.parse().unwrap(),
                bootloaders: &bootloaders(),
                work_dir: work.path(),
            };
            let reporter = ipa_build::report::Reporter::plain();
            ipa_build::host::ensure(ipa_build::build::iso::host_needs(), true, &|m| {
                reporter.info(m)
            })
            .unwrap();
            ipa_build::build::iso::build_iso(&inputs, &dir.join("tinyipa.iso"), &reporter).unwrap();
        }
    }
    dir.join("tinyipa.iso")
}

/// What the guest's agent sent to the host: the first line of each request.
struct Api {
    port: u16,
    requests: Mutex<Vec<String>>,
}

impl Api {
    /// A fake Ironic that records request lines and answers 503, so the agent
    /// keeps retrying and nothing depends on the reply.
    fn start() -> &'static Api {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let api: &'static Api = Box::leak(Box::new(Api {
            port: listener.local_addr().unwrap().port(),
            requests: Mutex::default(),
        }));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut line = String::new();
                let _ = BufReader::new(&conn).read_line(&mut line);
                api.requests
                    .lock()
                    .unwrap()
                    .push(line.trim_end().to_string());
                let _ = conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        api
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

struct Built {
    _dirs: [tempfile::TempDir; 2],
    iso: PathBuf,
    hashes: [String; 2],
    api: &'static Api,
}

/// One ISO, built twice in different directories (the second build is only
/// hashed). Built once per test process.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        qemu::ensure_installed();
        let api = Api::start();
        let url = format!("http://10.0.2.2:{}", api.port);
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let a = build(dirs[0].path(), &url);
        // Cross a FAT (2 s) and an ISO (1 s) timestamp tick between the two.
        std::thread::sleep(Duration::from_secs(3));
        let b = build(dirs[1].path(), &url);
        let hashes = [sha256(&a), sha256(&b)];
        let size = std::fs::metadata(&a).unwrap().len();
        eprintln!(
            "ISO {} bytes ({:.1} MiB), sha256 {}",
            size,
            size as f64 / 1048576.0,
            hashes[0]
        );
        Built {
            _dirs: dirs,
            iso: a,
            hashes,
            api,
        }
    })
}

#[test]
fn two_builds_give_the_same_iso() {
    let b = built();
    assert_eq!(
        b.hashes[0],
        b.hashes[1],
        "two builds of {} differ",
        b.iso.display()
    );
}

#[test]
fn el_torito_catalog_has_bios_and_uefi_entries() {
    let b = built();
    let report = run::stdout(Command::new("xorriso").args(["-indev"]).arg(&b.iso).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]));
    println!("{report}");
    let entries: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .collect();
    assert_eq!(entries.len(), 2, "two boot images expected:\n{report}");
    assert!(
        entries[0].contains(" BIOS ") && entries[0].contains(" y "),
        "first entry not BIOS, bootable:\n{report}"
    );
    assert!(
        entries[1].contains(" UEFI ") && entries[1].contains(" y "),
        "second entry not UEFI, bootable:\n{report}"
    );
    let paths: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito img path :"))
        .collect();
    assert!(
        paths.iter().any(|l| l.ends_with("/isolinux/isolinux.bin")),
        "{report}"
    );
    assert!(
        paths.iter().any(|l| l.ends_with("/boot/grub/efiboot.img")),
        "{report}"
    );
    // The hybrid parts: an MBR for BIOS disks, a GPT with an EFI partition.
    assert!(
        report.contains("MBR") && report.contains("GPT"),
        "no hybrid MBR/GPT:\n{report}"
    );
}

#[test]
fn missing_bootloaders_are_named_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let (kernel, initramfs) = (d.path().join("k"), d.path().join("i"));
    std::fs::write(&kernel, b"kernel").unwrap();
    std::fs::write(&initramfs, b"initramfs").unwrap();
    let empty = d.path().join("bootloaders");
    std::fs::create_dir(&empty).unwrap();
    let inputs = ipa_build::build::iso::IsoInputs {
        kernel: &kernel,
        initramfs: &initramfs,
        cmdline: "console=ttyS0",
        label: "IPA_TEST",
        source_date_epoch: EPOCH.parse().unwrap(),
        bootloaders: &empty,
        work_dir: d.path(),
    };
    let reporter = ipa_build::report::Reporter::quiet();
    ipa_build::host::ensure(ipa_build::build::iso::host_needs(), true, &|m| {
        eprintln!("{m}")
    })
    .unwrap();
    let out = d.path().join("x.iso");
    let msg = ipa_build::build::iso::build_iso(&inputs, &out, &reporter)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("isolinux.bin")
            && msg.contains("isolinux, syslinux-common, grub-efi-amd64-bin"),
        "{msg}"
    );
    assert!(!out.exists());
}

/// One VM at a time: the timings mean something, and the agent's calls to
/// the shared listener come from the VM under test.
static BOOT_LOCK: Mutex<()> = Mutex::new(());

fn boot(name: &str, firmware: Firmware, medium: fn(PathBuf) -> Boot) {
    let b = built();
    let _one = BOOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    b.api.take();
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Qemu::new(medium(b.iso.clone()))
        .firmware(firmware)
        .nic("virtio-net-pci", "52:54:00:12:34:56")
        .spawn_in(dir.path())
        .unwrap();
    let userspace = vm
        .wait_for("ipa-build:", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // The boot went through the loader meant for this firmware.
    let loader = match firmware {
        Firmware::Bios => "ISOLINUX 6",
        Firmware::Uefi => "GNU GRUB",
    };
    assert!(
        vm.serial().contains(loader),
        "{name}: no {loader:?} banner on the console\n{}",
        vm.diagnostics()
    );
    let agent = loop {
        if let Some(first) = b.api.take().into_iter().next() {
            break (vm.elapsed(), first);
        }
        assert!(
            vm.elapsed() < BOOT_TIMEOUT,
            "{name}: the agent never called the host\n{}",
            vm.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "{name}: userspace after {:.1}s, agent's first request ({}) after {:.1}s",
        userspace.as_secs_f64(),
        agent.1,
        agent.0.as_secs_f64()
    );
    // Kept for whoever reads a CI failure next to this one.
    let logs = workspace().join("target/test-data/iso/boot-logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::copy(
        vm.serial_path(),
        logs.join(format!("{}.log", name.replace(' ', "-"))),
    )
    .unwrap();
}

/// One test per firmware and medium, so each boot runs (and fails) on its own.
macro_rules! boots {
    ($($name:ident: $what:literal, $firmware:ident, $medium:ident;)*) => {$(
        #[test]
        fn $name() {
            boot($what, Firmware::$firmware, Boot::$medium);
        }
    )*};
}

boots! {
    boots_with_bios_from_cd: "BIOS CD", Bios, Cdrom;
    boots_with_bios_from_disk: "BIOS disk", Bios, Disk;
    boots_with_uefi_from_cd: "UEFI CD", Uefi, Cdrom;
    boots_with_uefi_from_disk: "UEFI disk", Uefi, Disk;
}
