//! Whole-disk images made without root, and what a test reads back from a
//! disk file once a VM has written it.
//!
//! An image is a GPT (written by `sfdisk` into a plain file) with one Linux
//! partition holding an ext4 made by `mkfs.ext4 -d` from a directory, copied
//! in at 1 MiB: no loop device, no mount. `qemu-img convert` makes the qcow2
//! variant. The checks read partitions with `sfdisk --json`, filesystem
//! signatures with `wipefs`/`blkid -p`, and ISO files with `xorriso`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use ipa_build::host::Need;

/// The host tools this module runs, with their Debian packages.
pub const TOOLS: &[Need] = &[
    Need::new("mkfs.ext4", "e2fsprogs"),
    Need::new("sfdisk", "fdisk"),
    Need::new("wipefs", "util-linux"),
    Need::new("blkid", "util-linux"),
    Need::new("qemu-img", "qemu-utils"),
    Need::new("xorriso", "xorriso"),
    Need::new("sha256sum", "coreutils"),
];

/// Sector size of every image and disk here.
pub const SECTOR: u64 = 512;
/// Where the image's partition starts (sectors): 1 MiB, as partitioners do.
const FIRST_LBA: u64 = 2048;

/// A host tool failed, or a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DiskImageError {
    #[error("{program} {args:?}: {detail}")]
    Tool {
        program: String,
        args: Vec<String>,
        detail: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unexpected(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskImageError + '_ {
    move |source| DiskImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Installs the [`TOOLS`] that are missing (as root), or says which.
pub fn ensure_tools() -> Result<(), DiskImageError> {
    ipa_build::host::ensure(TOOLS, true, &|m| eprintln!("{m}"))
        .map_err(|e| DiskImageError::Unexpected(e.to_string()))
}

/// Runs `program args` and returns its stdout; a non-zero exit is an error
/// quoting stderr. `ok_codes` lists other exit codes that are not errors.
pub fn run(program: &str, args: &[&str], ok_codes: &[i32]) -> Result<String, DiskImageError> {
    let err = |detail: String| DiskImageError::Tool {
        program: program.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        detail,
    };
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| err(e.to_string()))?;
    let code = out.status.code().unwrap_or(-1);
    if !out.status.success() && !ok_codes.contains(&code) {
        return Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes `out`: a GPT disk image with one partition (label `root`) holding
/// an ext4 of `fs_mib` MiB labelled `fs_label`, populated with `files`
/// (path inside the filesystem, content). The GPT's disk and partition
/// GUIDs are fixed, so the bytes depend only on the arguments (and
/// mke2fs's own UUID and timestamps, pinned through `E2FSPROGS_FAKE_TIME`
/// and `-U`).
pub fn whole_disk_image(
    out: &Path,
    fs_label: &str,
    fs_mib: u64,
    files: &[(&str, &str)],
) -> Result<(), DiskImageError> {
    let work = out.with_extension("tree");
    let _ = std::fs::remove_dir_all(&work);
    for (path, content) in files {
        let p = work.join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&p, content).map_err(io(&p))?;
    }
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let fs = out.with_extension("ext4");
    let _ = std::fs::remove_file(&fs);
    let (fs_s, work_s, size) = (
        fs.to_string_lossy().into_owned(),
        work.to_string_lossy().into_owned(),
        format!("{fs_mib}M"),
    );
    let status = Command::new("mkfs.ext4")
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .args(["-q", "-F", "-L", fs_label, "-U", "clear", "-E"])
        .arg("hash_seed=6f0e0f4e-7b5a-4c7e-9a59-2f6a1d4c3b2a")
        .args(["-d", &work_s, &fs_s, &size])
        .output()
        .map_err(io(Path::new("mkfs.ext4")))?;
    if !status.status.success() {
        return Err(DiskImageError::Tool {
            program: "mkfs.ext4".into(),
            args: vec![fs_s, size],
            detail: String::from_utf8_lossy(&status.stderr).into_owned(),
        });
    }
    let fs_sectors = fs_mib * 1024 * 1024 / SECTOR;
    // 1 MiB before the partition, 1 MiB after it for the backup GPT.
    let total = (FIRST_LBA + fs_sectors + FIRST_LBA) * SECTOR;
    let disk = File::create(out).map_err(io(out))?;
    disk.set_len(total).map_err(io(out))?;
    drop(disk);
    let script = format!(
        "label: gpt\nlabel-id: 3E0C1A52-9B8E-4F7A-8C1D-5A2B6C7D8E9F\nfirst-lba: {FIRST_LBA}\n\
         start={FIRST_LBA}, size={fs_sectors}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, \
         uuid=7D4A1B2C-3E5F-4A6B-9C8D-0E1F2A3B4C5D, name=root\n"
    );
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(io(Path::new("sfdisk")))?;
    if let Some(mut stdin) = sfdisk.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(io(out))?;
    }
    let done = sfdisk.wait_with_output().map_err(io(out))?;
    if !done.status.success() {
        return Err(DiskImageError::Tool {
            program: "sfdisk".into(),
            args: vec![out.to_string_lossy().into_owned()],
            detail: String::from_utf8_lossy(&done.stderr).into_owned(),
        });
    }
    copy_into(&fs, out, FIRST_LBA * SECTOR)?;
    let _ = std::fs::remove_file(&fs);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Writes all of `src` into `dst` at byte `offset`, in place.
pub fn copy_into(src: &Path, dst: &Path, offset: u64) -> Result<(), DiskImageError> {
    let mut from = File::open(src).map_err(io(src))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .open(dst)
        .map_err(io(dst))?;
    to.seek(SeekFrom::Start(offset)).map_err(io(dst))?;
    std::io::copy(&mut from, &mut to).map_err(io(dst))?;
    Ok(())
}

/// `qemu-img convert -O qcow2 raw out`.
pub fn qcow2(raw: &Path, out: &Path) -> Result<(), DiskImageError> {
    let (r, o) = (raw.to_string_lossy(), out.to_string_lossy());
    run(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "qcow2", &r, &o],
        &[],
    )
    .map(drop)
}

/// The SHA-256 of a file, lower-case hex.
pub fn sha256(path: &Path) -> Result<String, DiskImageError> {
    let out = run("sha256sum", &[&path.to_string_lossy()], &[])?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| DiskImageError::Unexpected(format!("sha256sum printed {out:?}")))
}

/// A sparse, blank disk file of `bytes`.
pub fn blank_disk(path: &Path, bytes: u64) -> Result<(), DiskImageError> {
    let f = File::create(path).map_err(io(path))?;
    f.set_len(bytes).map_err(io(path))
}

/// One partition of a disk's table, in sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub start: u64,
    pub size: u64,
    pub name: Option<String>,
}

/// The partitions `sfdisk --json` finds on `disk` (an error when it finds
/// no table).
pub fn partitions(disk: &Path) -> Result<Vec<Partition>, DiskImageError> {
    let out = run("sfdisk", &["--json", &disk.to_string_lossy()], &[])?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| DiskImageError::Unexpected(format!("sfdisk --json: {e}: {out}")))?;
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(parts
        .iter()
        .map(|p| Partition {
            start: p["start"].as_u64().unwrap_or(0),
            size: p["size"].as_u64().unwrap_or(0),
            name: p["name"].as_str().map(str::to_string),
        })
        .collect())
}

/// `len` bytes of `path` from byte `offset`.
pub fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, DiskImageError> {
    let mut f = File::open(path).map_err(io(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).map_err(io(path))?;
    Ok(buf)
}

/// Every signature `wipefs` finds on the whole device (partition tables,
/// filesystems, RAID), one `offset type` line each.
pub fn signatures(disk: &Path) -> Result<Vec<String>, DiskImageError> {
    let out = run(
        "wipefs",
        &[
            "--no-act",
            "--noheadings",
            "--output",
            "OFFSET,TYPE",
            &disk.to_string_lossy(),
        ],
        &[],
    )?;
    Ok(out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// The filesystem type `blkid -p` finds at byte `offset` of `path`, if any.
pub fn filesystem_at(path: &Path, offset: u64) -> Result<Option<String>, DiskImageError> {
    let out = run(
        "blkid",
        &[
            "-p",
            "-O",
            &offset.to_string(),
            "-s",
            "TYPE",
            "-o",
            "value",
            &path.to_string_lossy(),
        ],
        &[2],
    )?;
    let t = out.trim();
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// The volume label `blkid -p` reads from the filesystem (e.g. an ISO) in
/// `path`.
pub fn label(path: &Path) -> Result<Option<String>, DiskImageError> {
    let out = run(
        "blkid",
        &["-p", "-s", "LABEL", "-o", "value", &path.to_string_lossy()],
        &[2],
    )?;
    let t = out.trim();
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// The content of `file` inside the ISO image `iso`, extracted with
/// xorriso (Rock Ridge names).
pub fn iso_file(iso: &Path, file: &str) -> Result<String, DiskImageError> {
    let out = iso.with_extension("extracted");
    let _ = std::fs::remove_file(&out);
    run(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            &iso.to_string_lossy(),
            "-extract",
            file,
            &out.to_string_lossy(),
        ],
        &[],
    )?;
    let text = std::fs::read_to_string(&out).map_err(io(&out))?;
    let _ = std::fs::remove_file(&out);
    Ok(text)
}
