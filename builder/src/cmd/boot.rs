//! `ipa-build boot DIR`: boot a build directory in QEMU, the way `mkosi vm`
//! or `linuxkit run` do, to try an image before uploading it to Glance.
//!
//! The serial console is the terminal (`-nographic`; Ctrl-A X quits). Each
//! NIC gets its own user-mode network on its own subnet (10.0.2.0/24 for the
//! first, 10.0.3.0/24 for the second, ...): with one subnet on two NICs the
//! guest would answer a forwarded connection through whichever NIC its
//! routing table picks, and the other NIC's slirp drops the reply. Port
//! forwards go to the first NIC, which is where the host (`10.0.2.2`) is.
//!
//! KVM is used only when it really works: on some machines `/dev/kvm` opens
//! but QEMU aborts when it sets up the vCPU, so we start a paused QEMU once to
//! find out and fall back to TCG.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use crate::cmd::{Error, Outcome, Status};
use crate::host::{self, HostError};
use crate::manifest::{ArtifactKind, Manifest, ManifestError};
use crate::qemu::{self, Console, Firmware, Qemu};

/// QEMU's own first MAC address, which most examples and tests assume.
pub const DEFAULT_MAC: &str = "52:54:00:12:34:56";

// QEMU's location, firmware and accelerator live with the one QEMU command
// builder, shared with the test harnesses.
pub use crate::qemu::{Accel, OVMF, OVMF_CODE, OVMF_VARS, QEMU, kvm_works};

/// NIC models, in the order NICs are given them: a paravirtual one and an
/// emulated one, so both kinds of driver are exercised.
const NIC_MODELS: [&str; 2] = ["virtio-net-pci", "e1000"];

/// Boot a build directory's kernel and initramfs (or its ISO) in QEMU.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Build output directory (holds manifest.json, NAME.kernel, NAME.initramfs, NAME.iso).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Boot the ISO instead of the kernel and initramfs.
    #[arg(long)]
    pub iso: bool,
    /// UEFI firmware (OVMF on q35) instead of BIOS (SeaBIOS on pc).
    #[arg(long)]
    pub uefi: bool,
    /// Extra kernel argument after the manifest's command line (repeatable).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub append: Vec<String>,
    /// Number of NICs: virtio-net, then e1000, alternating.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub nics: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512, value_name = "MiB")]
    pub memory: u32,
    /// Forward host 127.0.0.1:HOST to guest port GUEST over TCP, e.g. 2222:22 (repeatable).
    #[arg(long = "forward", value_name = "HOST:GUEST")]
    pub forwards: Vec<Forward>,
    /// MAC address of the first NIC (the one Ironic's port should name).
    #[arg(long, default_value = DEFAULT_MAC, value_name = "MAC")]
    pub mac: String,
    /// Never use KVM, even when it works.
    #[arg(long)]
    pub no_kvm: bool,
    /// Print the QEMU command line instead of running it.
    #[arg(long)]
    pub print: bool,
    /// Never install missing host packages, even as root; just say what is missing.
    #[arg(long)]
    pub no_install: bool,
}

/// A TCP port forward from host 127.0.0.1 to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub host: u16,
    pub guest: u16,
}

impl FromStr for Forward {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not HOST:GUEST with two port numbers, e.g. 2222:22");
        let (h, g) = s.split_once(':').ok_or_else(bad)?;
        let host = h.trim().parse().map_err(|_| bad())?;
        let guest = g.trim().parse().map_err(|_| bad())?;
        Ok(Forward { host, guest })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(
        "{dir} has no {kind} artifact (manifest.json lists {listed}). Rebuild with `--format {kind}`"
    )]
    NoArtifact {
        dir: PathBuf,
        kind: &'static str,
        listed: String,
    },
    #[error("{path}: listed in manifest.json but missing: {source}")]
    Missing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--append does not reach an ISO boot: its boot menu holds the kernel arguments. Boot the kernel and initramfs instead (drop --iso), or rebuild with `ipa-build --append ARG`"
    )]
    AppendWithIso,
    #[error("--mac {0:?}: expected six hex bytes separated by colons, e.g. {DEFAULT_MAC}")]
    BadMac(String),
    #[error("--nics {0}: use between 1 and 8 NICs")]
    BadNics(u8),
    #[error("--memory {0}: QEMU needs at least 64 MiB")]
    BadMemory(u32),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("preparing the UEFI variable store {path}: {source}")]
    Vars {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting qemu-system-x86_64: {0}")]
    Spawn(#[source] std::io::Error),
}

/// What a build directory offers to boot, from its `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDir {
    pub kernel: Option<PathBuf>,
    pub initramfs: Option<PathBuf>,
    pub iso: Option<PathBuf>,
    /// The kernel command line the build was made with.
    pub cmdline: String,
}

impl BuildDir {
    /// Reads `DIR/manifest.json` through [`Manifest::read`], which checks
    /// that every artifact is a plain file name inside `DIR`.
    pub fn read(dir: &Path) -> Result<Self, BootError> {
        let build = Manifest::read(dir)?;
        Ok(BuildDir {
            kernel: build.path_of(ArtifactKind::Kernel),
            initramfs: build.path_of(ArtifactKind::Initramfs),
            iso: build.path_of(ArtifactKind::Iso),
            cmdline: build.manifest.cmdline,
        })
    }

    fn listed(&self) -> String {
        let kinds: Vec<&str> = [
            ("kernel", &self.kernel),
            ("initramfs", &self.initramfs),
            ("iso", &self.iso),
        ]
        .iter()
        .filter(|(_, p)| p.is_some())
        .map(|(k, _)| *k)
        .collect();
        if kinds.is_empty() {
            "nothing bootable".into()
        } else {
            kinds.join(", ")
        }
    }
}

/// The MAC of NIC `index`: the given one for the first, then
/// `52:54:00:12:35:NN` (away from QEMU's own automatic addresses).
fn nic_mac(first: &str, index: u8) -> String {
    if index == 0 {
        first.to_ascii_lowercase()
    } else {
        format!("52:54:00:12:35:{index:02x}")
    }
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The full QEMU argument list for `args` on `build`. `vars` is the writable
/// copy of the UEFI variable store (used only with `--uefi`).
pub fn qemu_args(
    args: &Args,
    build: &BuildDir,
    dir: &Path,
    accel: Accel,
    vars: &Path,
) -> Result<Vec<String>, BootError> {
    if !valid_mac(&args.mac) {
        return Err(BootError::BadMac(args.mac.clone()));
    }
    if args.nics == 0 || args.nics > 8 {
        return Err(BootError::BadNics(args.nics));
    }
    if args.memory < 64 {
        return Err(BootError::BadMemory(args.memory));
    }
    let firmware = if args.uefi {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let need = |slot: &Option<PathBuf>, kind: &'static str| {
        slot.clone().ok_or_else(|| BootError::NoArtifact {
            dir: dir.to_path_buf(),
            kind,
            listed: build.listed(),
        })
    };
    let boot = if args.iso {
        if !args.append.is_empty() {
            return Err(BootError::AppendWithIso);
        }
        qemu::Boot::Cdrom(need(&build.iso, "iso")?)
    } else {
        let mut cmdline = build.cmdline.trim().to_string();
        for extra in &args.append {
            cmdline.push(' ');
            cmdline.push_str(extra.trim());
        }
        qemu::Boot::Kernel {
            kernel: need(&build.kernel, "kernel")?,
            initrd: need(&build.initramfs, "initramfs")?,
            append: cmdline,
        }
    };
    let mut vm = Qemu::new(boot)
        .accel(accel)
        .firmware(firmware)
        .uefi_vars(vars)
        .memory_mib(args.memory)
        .console(Console::Terminal);
    for i in 0..args.nics {
        let model = NIC_MODELS[usize::from(i) % NIC_MODELS.len()];
        vm = vm.nic(model, &nic_mac(&args.mac, i));
    }
    for f in &args.forwards {
        vm = vm.hostfwd(f.host, f.guest);
    }
    Ok(vm.args())
}

/// Boots the build in QEMU on this terminal; QEMU's own exit status is the
/// outcome (with `--print`, the command line is printed instead).
pub fn run(args: &Args) -> Result<Outcome, Error> {
    let code = boot(args)?;
    Ok(match code {
        Boot::Printed(line) => Outcome::success(line),
        Boot::Exited(c) => Outcome {
            stdout: String::new(),
            status: Status::Child(c),
        },
    })
}

/// How a boot ended.
enum Boot {
    /// `--print`: the QEMU command line, for stdout.
    Printed(String),
    /// QEMU ran and exited with this status.
    Exited(u8),
}

fn boot(args: &Args) -> Result<Boot, BootError> {
    let build = BuildDir::read(&args.dir)?;
    for path in [&build.kernel, &build.initramfs, &build.iso]
        .into_iter()
        .flatten()
    {
        std::fs::metadata(path).map_err(|source| BootError::Missing {
            path: path.clone(),
            source,
        })?;
    }
    let mut needs = vec![QEMU];
    if args.uefi {
        needs.push(OVMF);
    }
    if !args.print {
        host::ensure(&needs, !args.no_install, &|m| eprintln!("{m}"))?;
    }
    let accel = if !args.no_kvm && kvm_works() {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    // The variable store is written by the firmware: use a throwaway copy.
    let scratch = tempfile::tempdir().map_err(|source| BootError::Vars {
        path: std::env::temp_dir(),
        source,
    })?;
    let vars = scratch.path().join("OVMF_VARS.fd");
    let argv = qemu_args(args, &build, &args.dir, accel, &vars)?;
    if args.print {
        let quoted: Vec<String> = argv.iter().map(|s| shell_quote(s)).collect();
        return Ok(Boot::Printed(format!(
            "{} {}\n",
            QEMU.what,
            quoted.join(" ")
        )));
    }
    if args.uefi {
        std::fs::copy(OVMF_VARS, &vars).map_err(|source| BootError::Vars {
            path: vars.clone(),
            source,
        })?;
    }
    eprintln!(
        "booting {} with {} ({} MiB, {} NIC(s)); Ctrl-A X quits",
        args.dir.display(),
        match accel {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG (no working KVM)",
        },
        args.memory,
        args.nics
    );
    let status = Command::new(QEMU.what)
        .args(&argv)
        .status()
        .map_err(BootError::Spawn)?;
    Ok(Boot::Exited(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,.:/@+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `ipa-build boot` arguments written as one whitespace-separated line.
    fn args(line: &str) -> Args {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            boot: Args,
        }
        let mut argv = vec!["boot"];
        argv.extend(line.split_whitespace());
        Cli::try_parse_from(argv).unwrap().boot
    }

    /// Writes a manifest listing `artifacts` (kind, file) and reads it back.
    fn build_dir(dir: &Path, artifacts: &[(&str, &str)]) -> BuildDir {
        write_manifest(dir, artifacts);
        BuildDir::read(dir).unwrap()
    }

    fn write_manifest(dir: &Path, artifacts: &[(&str, &str)]) {
        let list: Vec<serde_json::Value> = artifacts
            .iter()
            .map(|(k, f)| {
                serde_json::json!({"kind": k, "file": f, "size": 1, "sha256": "00", "sha512": "00"})
            })
            .collect();
        let mut manifest = crate::cmd::test_manifest();
        manifest["cmdline"] = "console=ttyS0,115200n8".into();
        manifest["artifacts"] = list.into();
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    }

    #[test]
    fn kernel_boot_appends_arguments_and_gives_each_nic_its_subnet() {
        let dir = tempfile::tempdir().unwrap();
        let build = build_dir(
            dir.path(),
            &[("kernel", "t.kernel"), ("initramfs", "t.initramfs")],
        );
        let a = args("out/t --append ipa-debug=1 --forward 2222:22 --forward 9999:9999");
        let argv = qemu_args(&a, &build, dir.path(), Accel::Tcg, Path::new("v")).unwrap();
        let joined = argv.join(" ");
        assert!(joined.contains("-accel tcg"), "{joined}");
        assert!(joined.contains("-m 512"), "{joined}");
        let append = argv.iter().position(|s| s == "-append").unwrap();
        assert_eq!(argv[append + 1], "console=ttyS0,115200n8 ipa-debug=1");
        assert!(joined.contains(
            "user,id=n0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:9999-:9999 "
        ));
        assert!(joined.contains("virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile="));
        assert!(joined.contains("user,id=n1,net=10.0.3.0/24 "), "{joined}");
        assert!(joined.contains("e1000,netdev=n1,mac=52:54:00:12:35:01,romfile="));
        assert!(!joined.contains("pflash"));
    }

    #[test]
    fn uefi_iso_boot_uses_ovmf_and_refuses_append() {
        let dir = tempfile::tempdir().unwrap();
        let build = build_dir(dir.path(), &[("iso", "t.iso")]);
        let a = args("d --iso --uefi --nics 1 --mac 52:54:00:AA:BB:CC");
        let argv = qemu_args(&a, &build, dir.path(), Accel::Kvm, Path::new("/x/vars")).unwrap();
        let joined = argv.join(" ");
        assert!(joined.contains("-accel kvm -cpu host"));
        assert!(joined.contains("-machine q35"));
        assert!(joined.contains("if=pflash,format=raw,file=/x/vars"));
        assert!(joined.contains("media=cdrom"));
        assert!(joined.contains("mac=52:54:00:aa:bb:cc"));
        assert!(!joined.contains("n1"));

        let a = args("d --iso --append x=1");
        let err = qemu_args(&a, &build, dir.path(), Accel::Tcg, Path::new("v")).unwrap_err();
        assert!(matches!(err, BootError::AppendWithIso));
    }

    #[test]
    fn missing_artifacts_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let build = build_dir(dir.path(), &[("iso", "t.iso")]);
        let err = qemu_args(&args("d"), &build, dir.path(), Accel::Tcg, Path::new("v"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no kernel artifact") && err.contains("lists iso"),
            "{err}"
        );
        let err = qemu_args(
            &args("d --iso --mac nope"),
            &build,
            dir.path(),
            Accel::Tcg,
            Path::new("v"),
        )
        .unwrap_err();
        assert!(matches!(err, BootError::BadMac(_)));
        assert!("2222".parse::<Forward>().is_err());
        assert!("a:22".parse::<Forward>().is_err());
        assert_eq!(
            "2222:22".parse::<Forward>().unwrap(),
            Forward {
                host: 2222,
                guest: 22
            }
        );
    }

    #[test]
    fn a_directory_without_manifest_says_how_to_build_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = BuildDir::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.json") && err.contains("ipa-build --profile"),
            "{err}"
        );
        write_manifest(dir.path(), &[("kernel", "../x")]);
        let err = BuildDir::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a plain name"), "{err}");
    }
}
