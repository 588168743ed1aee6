//! Stage 9: one hybrid ISO that boots BIOS and UEFI, from CD and from USB.
//!
//! The image is laid out so that every firmware path finds a boot loader:
//!
//! ```text
//! isolinux/isolinux.bin   El Torito entry 1 (BIOS, no emulation), patched boot-info table
//! isolinux/ldlinux.c32    isolinux's second stage
//! isolinux/isolinux.cfg   one entry, short timeout, serial + VGA
//! isolinux/boot.cat       El Torito catalog
//! boot/vmlinuz            the kernel
//! boot/initrd.img         the initramfs, as built
//! boot/grub/grub.cfg      GRUB's menu: one entry, short timeout, serial + VGA
//! boot/grub/efiboot.img   El Torito entry 2 (UEFI): a FAT ESP holding EFI/BOOT/BOOTX64.EFI
//! boot/grub/ipa-<id>.tag  an empty file GRUB searches for to find this medium
//! ```
//!
//! `xorriso -as mkisofs` writes the ISO 9660 tree, the El Torito catalog, an
//! isohybrid MBR (isolinux's `isohdpfx.bin`, so SeaBIOS and real BIOSes boot
//! it as a disk) and a GPT whose EFI partition points at `efiboot.img` (so
//! UEFI firmware boots it as a disk).
//!
//! # Why these tools, and how the bytes stay the same
//!
//! - The GRUB EFI binary comes from `grub-mkimage` with the modules built in
//!   and a small embedded configuration. `grub-mkstandalone` would be simpler
//!   but packs a memdisk tar with the current mtimes, so two builds differ.
//! - The ESP is made with `mkfs.fat --invariant -i <id from SOURCE_DATE_EPOCH>`
//!   (no label: a label is a directory entry with the current time) and filled
//!   with `mcopy -m` from files whose mtimes were clamped first.
//! - xorriso applies `SOURCE_DATE_EPOCH` to the volume dates and GPT/MBR ids,
//!   and sets every file's atime and ctime to its mtime; we clamp the mtimes of
//!   the staged tree ourselves. `-r` (not `-R`) writes uid/gid 0 and normalised
//!   modes, so a rootless build gives the same bytes as a root one.
//!
//! # Why GRUB searches for a tag file
//!
//! UEFI GRUB does not know which device it came from in a way that works for
//! both El Torito and GPT boots, so it searches. On a real server the disks
//! often hold another `/boot/grub/grub.cfg` or `/boot/vmlinuz`; searching for a
//! file whose name is derived from this ISO's kernel, initramfs and command
//! line finds this medium and nothing else, and stays reproducible.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::BuildError;
use super::emit::Emitter;
use super::fetch::Inputs;
use super::pack::artifact_file;
use super::plan::Plan;
use super::stage::new_tree;
use crate::debian::deb;
use crate::host::{self, HostError, Need};
use crate::manifest::ArtifactKind;
use crate::report::{Reporter, human_bytes};

/// Debian packages that carry the boot loaders; the pipeline fetches and
/// unpacks them like any other input and passes the directory as
/// [`IsoInputs::bootloaders`].
pub const ISO_PACKAGES: &[&str] = &["isolinux", "syslinux-common", "grub-efi-amd64-bin"];

pub const XORRISO: Need = Need::new("xorriso", "xorriso");
/// Absolute: `/sbin` is not in an ordinary user's `PATH` on Debian.
pub const MKFS_FAT: Need = Need::new("/sbin/mkfs.fat", "dosfstools");
pub const MCOPY: Need = Need::new("mcopy", "mtools");
pub const GRUB_MKIMAGE: Need = Need::new("grub-mkimage", "grub-common");

const NEEDS: &[Need] = &[XORRISO, MKFS_FAT, MCOPY, GRUB_MKIMAGE];

/// Host tools [`build_iso`] runs; check them with [`host::ensure`] before the
/// build starts so a missing tool is reported before any download.
pub fn host_needs() -> &'static [Need] {
    NEEDS
}

/// GRUB modules built into `BOOTX64.EFI`. Everything the embedded and the
/// on-disc configuration use must be here: the image cannot load modules
/// from the ISO (`-p /boot/grub` is only a fallback prefix).
const GRUB_MODULES: &[&str] = &[
    // finding this medium, as CD (El Torito) or as disk (MBR/GPT)
    "part_gpt",
    "part_msdos",
    "iso9660",
    "fat",
    "search",
    "search_fs_file",
    // the menu
    "normal",
    "configfile",
    "echo",
    "test",
    "sleep",
    // consoles: serial and the firmware's screen (GOP gives the kernel a framebuffer)
    "serial",
    "terminal",
    "efi_gop",
    "efi_uga",
    // booting Linux
    "linux",
    // a way out from the GRUB prompt
    "reboot",
    "halt",
    "ls",
    "cat",
];

/// Longest ISO 9660 volume identifier.
pub const MAX_LABEL_LEN: usize = 32;

/// Stage 9: when the plan asks for an ISO, unpacks the boot loader packages
/// and builds the ISO from the kernel and initramfs already in the emitter.
pub fn iso(
    plan: &Plan,
    inputs: &Inputs,
    work: &Path,
    emitter: &mut Emitter,
    reporter: &Reporter,
) -> Result<(), BuildError> {
    let Some(label) = &plan.iso_label else {
        return Ok(());
    };
    let name = plan.name();
    let st = reporter.stage("iso", format!("{name}.iso, label {label}"));
    let mut boot_tree = new_tree(work, "bootloaders")?;
    for (_, deb_file) in &inputs.bootloaders {
        deb::unpack(deb_file, &mut boot_tree, &|_| true)?;
    }
    let iso_file = artifact_file(name, ArtifactKind::Iso);
    let iso_work = work.join("iso");
    fs::create_dir(&iso_work).map_err(super::io_err("creating", &iso_work))?;
    build_iso(
        &IsoInputs {
            kernel: &emitter.path(&artifact_file(name, ArtifactKind::Kernel)),
            initramfs: &emitter.path(&artifact_file(name, ArtifactKind::Initramfs)),
            cmdline: &plan.cmdline,
            label,
            source_date_epoch: inputs.source_date_epoch,
            bootloaders: boot_tree.root(),
            work_dir: &iso_work,
        },
        &emitter.path(&iso_file),
        reporter,
    )?;
    let size = emitter.add(ArtifactKind::Iso, &iso_file)?.size;
    st.done(human_bytes(size));
    Ok(())
}

/// Everything one ISO is made from.
#[derive(Debug, Clone, Copy)]
pub struct IsoInputs<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    /// The kernel command line, passed unchanged to both boot loaders.
    pub cmdline: &'a str,
    /// Volume label: 1 to 32 of `A-Z 0-9 _` (see [`default_label`]).
    pub label: &'a str,
    /// Every date in the image (files, volume, ESP) is this time.
    pub source_date_epoch: u64,
    /// Root of the unpacked [`ISO_PACKAGES`]; both `usr/lib/...` and `lib/...`
    /// layouts are accepted.
    pub bootloaders: &'a Path,
    /// Scratch space; the staged tree and the ESP are made under it.
    pub work_dir: &'a Path,
}

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{0}")]
    Host(#[from] HostError),
    #[error(
        "boot loader file {file} not found under {root} (looked at {looked}); \
         the ISO needs the Debian packages {packages} unpacked there",
        looked = .looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        packages = ISO_PACKAGES.join(", ")
    )]
    MissingBootloader {
        file: &'static str,
        root: PathBuf,
        looked: Vec<PathBuf>,
    },
    #[error(
        "ISO volume label {label:?} {reason}; set output.iso_label in the profile to 1-32 of A-Z, 0-9 and _"
    )]
    Label { label: String, reason: &'static str },
    #[error(
        "kernel command line {cmdline:?} {reason}; change kernel.cmdline in the profile or --append"
    )]
    Cmdline {
        cmdline: String,
        reason: &'static str,
    },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("running {command} failed: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}):\n{output}")]
    Tool {
        command: String,
        status: String,
        output: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> IsoError + 'a {
    move |source| IsoError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `IPA_` plus the output name, upper-cased, with every other character
/// turned into `_`, cut to [`MAX_LABEL_LEN`].
pub fn default_label(name: &str) -> String {
    let mut label: String = format!("IPA_{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    label.truncate(MAX_LABEL_LEN);
    label
}

/// Checks a volume label: ISO 9660 d-characters only, at most 32.
pub fn check_label(label: &str) -> Result<(), IsoError> {
    let reason = if label.is_empty() {
        Some("is empty")
    } else if label.len() > MAX_LABEL_LEN {
        Some("is longer than 32 characters")
    } else if !label
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        Some("has characters other than A-Z, 0-9 and _")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(IsoError::Label {
            label: label.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Splits the command line into words both boot loaders pass through
/// unchanged. isolinux copies its `APPEND` line verbatim, GRUB re-joins
/// its arguments and quotes those with spaces; a double quote or a line
/// break would come out differently (or end the line), so those are refused.
fn cmdline_words(cmdline: &str) -> Result<Vec<&str>, IsoError> {
    let bad = |reason| {
        Err(IsoError::Cmdline {
            cmdline: cmdline.to_string(),
            reason,
        })
    };
    if cmdline.contains('"') {
        return bad(
            "contains a double quote, which the ISO's boot loaders cannot pass on unchanged",
        );
    }
    if cmdline
        .chars()
        .any(|c| c.is_control() && c != ' ' && c != '\t')
    {
        return bad("contains a line break or another control character");
    }
    // The x86 kernel keeps 2048 bytes of command line, including the NUL.
    if cmdline.len() > 2047 {
        return bad("is longer than the 2047 bytes the kernel keeps");
    }
    Ok(cmdline.split_whitespace().collect())
}

/// A GRUB script word: single quotes keep `$`, `;`, `#` and friends literal.
fn grub_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn isolinux_cfg(cmdline: &[&str]) -> String {
    // SERIAL sends isolinux's prompt to COM1 as well as the screen; PROMPT 1
    // with TIMEOUT 10 (tenths of a second) gives one second to type
    // `ipa extra=args` at the `boot:` prompt, then boots the only entry.
    format!(
        "SERIAL 0 115200\n\
         DEFAULT ipa\n\
         PROMPT 1\n\
         TIMEOUT 10\n\
         LABEL ipa\n  \
           KERNEL /boot/vmlinuz\n  \
           INITRD /boot/initrd.img\n  \
           APPEND {}\n",
        cmdline.join(" ")
    )
}

/// Built into `BOOTX64.EFI`: find this medium by its tag file, then read the
/// menu from it (in normal mode, so the timeout and the menu work).
fn grub_embedded_cfg(tag: &str) -> String {
    format!(
        "search --no-floppy --set=root --file {tag}\n\
         set prefix=($root)/boot/grub\n\
         configfile $prefix/grub.cfg\n"
    )
}

fn grub_cfg(label: &str, cmdline: &[&str]) -> String {
    let args: Vec<String> = cmdline.iter().map(|w| grub_quote(w)).collect();
    let mut linux = String::from("    linux /boot/vmlinuz");
    for a in &args {
        linux.push(' ');
        linux.push_str(a);
    }
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set default=0\n\
         set timeout=1\n\
         menuentry {title} {{\n\
         {linux}\n    \
             initrd /boot/initrd.img\n\
         }}\n",
        title = grub_quote(&format!("ipa-build {label}")),
    )
}

/// Where a boot loader file may be in the unpacked packages: merged-`/usr`
/// unpacking puts `./lib/...` under `usr/lib/...`, an ordinary one keeps it.
fn find_bootloader(root: &Path, file: &'static str) -> Result<PathBuf, IsoError> {
    let looked: Vec<PathBuf> = [format!("usr/{file}"), file.to_string()]
        .iter()
        .map(|p| root.join(p))
        .collect();
    looked
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| IsoError::MissingBootloader {
            file,
            root: root.to_path_buf(),
            looked,
        })
}

/// One run of an external tool. Every run gets `LC_ALL=C` and the epoch in
/// `SOURCE_DATE_EPOCH` (xorriso and mtools read it); a failure shows the full
/// command and its output.
struct Tool {
    program: String,
    args: Vec<OsString>,
}

impl Tool {
    fn new(program: &str) -> Self {
        Tool {
            program: program.to_string(),
            args: Vec::new(),
        }
    }

    fn args<I: IntoIterator<Item = A>, A: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    fn run(self, epoch: u64) -> Result<(), IsoError> {
        let mut command = self.program.clone();
        for a in &self.args {
            command.push(' ');
            command.push_str(&a.to_string_lossy());
        }
        let out = duct::cmd(&self.program, &self.args)
            .env("LC_ALL", "C")
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .env("MTOOLS_SKIP_CHECK", "1")
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .map_err(|source| IsoError::Spawn {
                command: command.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let status = out
            .status
            .code()
            .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
        let output = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        Err(IsoError::Tool {
            command,
            status,
            output,
        })
    }
}

/// Sets mtime and atime of `path` and everything under it to the epoch, and
/// modes to 0644/0755 so the image does not depend on the builder's umask.
fn clamp_tree(path: &Path, epoch: u64) -> Result<(), IsoError> {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let times = fs::FileTimes::new().set_accessed(time).set_modified(time);
    for entry in walkdir::WalkDir::new(path).contents_first(true) {
        let entry = entry.map_err(|e| IsoError::Io {
            action: "walking",
            path: e.path().unwrap_or(path).to_path_buf(),
            source: e.into(),
        })?;
        let p = entry.path();
        let mode = if entry.file_type().is_dir() {
            0o755
        } else {
            0o644
        };
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .map_err(io_err("setting the mode of", p))?;
        let f = fs::File::open(p).map_err(io_err("opening", p))?;
        f.set_times(times)
            .map_err(io_err("setting the times of", p))?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<u64, IsoError> {
    fs::copy(from, to).map_err(|source| IsoError::Io {
        action: "copying to",
        path: to.to_path_buf(),
        source: std::io::Error::new(source.kind(), format!("from {}: {source}", from.display())),
    })
}

fn write(path: &Path, text: &str) -> Result<(), IsoError> {
    fs::write(path, text).map_err(io_err("writing", path))
}

/// A short id for this medium: a hash of what it boots, so it is the same
/// for the same inputs and differs from any other ISO or installed system.
fn medium_id(inputs: &IsoInputs) -> Result<String, IsoError> {
    let mut h = Sha256::new();
    for p in [inputs.kernel, inputs.initramfs] {
        let mut f = fs::File::open(p).map_err(io_err("reading", p))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).map_err(io_err("reading", p))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    h.update(inputs.cmdline.as_bytes());
    h.update(inputs.label.as_bytes());
    let digest = h.finalize();
    Ok(digest[..8].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Makes the UEFI boot loader and the FAT image that holds it.
fn make_esp(inputs: &IsoInputs, scratch: &Path, tag: &str, esp: &Path) -> Result<u64, IsoError> {
    let grub_dir = find_bootloader(inputs.bootloaders, "lib/grub/x86_64-efi/kernel.img")?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let embedded = scratch.join("grub-embedded.cfg");
    write(&embedded, &grub_embedded_cfg(tag))?;
    let efi_root = scratch.join("esp");
    let boot_dir = efi_root.join("EFI/BOOT");
    fs::create_dir_all(&boot_dir).map_err(io_err("creating", &boot_dir))?;
    let bootx64 = boot_dir.join("BOOTX64.EFI");
    let epoch = inputs.source_date_epoch;
    Tool::new(GRUB_MKIMAGE.what)
        .args(["-O", "x86_64-efi", "-d"])
        .args([&grub_dir])
        .args(["-p", "/boot/grub", "-c"])
        .args([&embedded])
        .args(["-o"])
        .args([&bootx64])
        .args(GRUB_MODULES)
        .run(epoch)?;
    let efi_size = fs::metadata(&bootx64)
        .map_err(io_err("reading", &bootx64))?
        .len();
    clamp_tree(&efi_root, inputs.source_date_epoch)?;

    // FAT12/16 overhead is small; 256 KiB of slack, rounded up to whole MiB
    // so the size only changes when GRUB grows noticeably.
    let kib = (efi_size / 1024 + 256).div_ceil(1024) * 1024;
    let volume_id = format!("{:08X}", epoch as u32);
    let _ = fs::remove_file(esp);
    Tool::new(MKFS_FAT.what)
        .args(["--invariant", "-i", &volume_id, "-C"])
        .args([esp])
        .args([kib.to_string()])
        .run(epoch)?;
    Tool::new(MCOPY.what)
        .args(["-s", "-m", "-Q", "-i"])
        .args([esp, &efi_root.join("EFI"), Path::new("::/")])
        .run(epoch)?;
    Ok(efi_size)
}

/// Builds the hybrid ISO at `out` (replacing it) from the kernel and initramfs.
pub fn build_iso(inputs: &IsoInputs, out: &Path, reporter: &Reporter) -> Result<(), IsoError> {
    host::ensure(NEEDS, false, &|m| reporter.info(m))?;
    check_label(inputs.label)?;
    let words = cmdline_words(inputs.cmdline)?;
    let isolinux_bin = find_bootloader(inputs.bootloaders, "lib/ISOLINUX/isolinux.bin")?;
    let isohdpfx = find_bootloader(inputs.bootloaders, "lib/ISOLINUX/isohdpfx.bin")?;
    let ldlinux = find_bootloader(inputs.bootloaders, "lib/syslinux/modules/bios/ldlinux.c32")?;

    let scratch = tempfile::Builder::new()
        .prefix("iso-")
        .tempdir_in(inputs.work_dir)
        .map_err(io_err("creating a directory in", inputs.work_dir))?;
    let tree = scratch.path().join("tree");
    let (isolinux_dir, grub_dir) = (tree.join("isolinux"), tree.join("boot/grub"));
    for d in [&isolinux_dir, &grub_dir] {
        fs::create_dir_all(d).map_err(io_err("creating", d))?;
    }

    copy(&isolinux_bin, &isolinux_dir.join("isolinux.bin"))?;
    copy(&ldlinux, &isolinux_dir.join("ldlinux.c32"))?;
    write(&isolinux_dir.join("isolinux.cfg"), &isolinux_cfg(&words))?;
    copy(inputs.kernel, &tree.join("boot/vmlinuz"))?;
    copy(inputs.initramfs, &tree.join("boot/initrd.img"))?;

    let tag = format!("/boot/grub/ipa-{}.tag", medium_id(inputs)?);
    write(&tree.join(tag.trim_start_matches('/')), "")?;
    write(&grub_dir.join("grub.cfg"), &grub_cfg(inputs.label, &words))?;
    let efi_size = make_esp(inputs, scratch.path(), &tag, &grub_dir.join("efiboot.img"))?;
    clamp_tree(&tree, inputs.source_date_epoch)?;

    if out.exists() {
        fs::remove_file(out).map_err(io_err("removing the old", out))?;
    }
    Tool::new(XORRISO.what)
        .args(["-as", "mkisofs", "-quiet", "-o"])
        .args([out])
        .args([
            "-V",
            inputs.label,
            "-J",
            "-joliet-long",
            "-r",
            "-iso-level",
            "3",
        ])
        // BIOS: El Torito entry for CDs, isohybrid MBR for disks.
        .args(["-isohybrid-mbr"])
        .args([&isohdpfx])
        .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        // UEFI: second El Torito entry, and the ESP as a partition for disks.
        .args([
            "-eltorito-alt-boot",
            "-e",
            "boot/grub/efiboot.img",
            "-no-emul-boot",
        ])
        .args(["-isohybrid-gpt-basdat"])
        .args([&tree])
        .run(inputs.source_date_epoch)
        // Never leave half an image where the caller expects a whole one.
        .inspect_err(|_| {
            let _ = fs::remove_file(out);
        })?;
    let size = fs::metadata(out).map_err(io_err("reading", out))?.len();
    reporter.info(format!(
        "ISO {} ({}), label {}, GRUB EFI image {}",
        out.display(),
        human_bytes(size),
        inputs.label,
        human_bytes(efi_size)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_labels_are_valid_iso_labels() {
        assert_eq!(default_label("tinyipa"), "IPA_TINYIPA");
        assert_eq!(default_label("my-rescue.v2"), "IPA_MY_RESCUE_V2");
        let long = default_label(&"x".repeat(100));
        assert_eq!(long.len(), 32);
        for l in ["tinyipa", "é-ü", &"x".repeat(100)] {
            check_label(&default_label(l)).unwrap();
        }
    }

    #[test]
    fn bad_labels_say_what_to_change() {
        for (l, why) in [
            ("", "empty"),
            ("lower", "A-Z"),
            (&"A".repeat(33) as &str, "32"),
        ] {
            let msg = check_label(l).unwrap_err().to_string();
            assert!(
                msg.contains(why) && msg.contains("output.iso_label"),
                "{msg}"
            );
        }
    }

    #[test]
    fn cmdline_passes_through_both_loaders() {
        let words = cmdline_words(
            "console=tty0  console=ttyS0,115200n8 ipa-api-url=http://10.0.2.2:6385 x=$y",
        )
        .unwrap();
        let iso = isolinux_cfg(&words);
        assert!(iso.contains("  APPEND console=tty0 console=ttyS0,115200n8 ipa-api-url=http://10.0.2.2:6385 x=$y\n"), "{iso}");
        let grub = grub_cfg("IPA_X", &words);
        assert!(
            grub.contains("linux /boot/vmlinuz 'console=tty0' 'console=ttyS0,115200n8' 'ipa-api-url=http://10.0.2.2:6385' 'x=$y'\n"),
            "{grub}"
        );
        assert!(grub.contains("set timeout=1\n") && iso.contains("TIMEOUT 10\n"));
        assert_eq!(grub_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn cmdline_that_would_change_on_the_way_is_refused() {
        for bad in ["a=\"b c\"", "a\nb", &"x".repeat(3000) as &str] {
            let msg = cmdline_words(bad).unwrap_err().to_string();
            assert!(msg.contains("kernel.cmdline"), "{msg}");
        }
    }

    #[test]
    fn bootloaders_are_found_in_both_layouts() {
        let d = tempfile::tempdir().unwrap();
        let touch = |rel: &str| {
            let p = d.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"x").unwrap();
            p
        };
        // Merged /usr (usr/lib/...) and the plain lib/... layout.
        for (placed, asked) in [
            ("usr/lib/ISOLINUX/isolinux.bin", "lib/ISOLINUX/isolinux.bin"),
            (
                "lib/syslinux/modules/bios/ldlinux.c32",
                "lib/syslinux/modules/bios/ldlinux.c32",
            ),
        ] {
            let path = touch(placed);
            assert_eq!(find_bootloader(d.path(), asked).unwrap(), path);
        }
        // A missing file names both places it was looked for, so the
        // layout expected is plain. (That the error names the packages is
        // checked through `build_iso` in `tests/iso.rs`.)
        let msg = find_bootloader(d.path(), "lib/ISOLINUX/isohdpfx.bin")
            .unwrap_err()
            .to_string();
        let looked = format!(
            "(looked at {}, {})",
            d.path().join("usr/lib/ISOLINUX/isohdpfx.bin").display(),
            d.path().join("lib/ISOLINUX/isohdpfx.bin").display()
        );
        assert!(msg.contains(&looked), "{msg}");
    }
}
