//! `ipa-build inspect`: what is inside a build, an initramfs or an ISO.
//!
//! Operators ask "why is this image 18 MiB?" and "which kernel and modules
//! does it carry?" long after the build; this answers from the artifacts
//! alone, reusing the audit's readers ([`crate::initramfs::read`]) so every
//! compression and concatenated archives are read exactly as the kernel
//! would, without unpacking anything to disk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cmd::{Error, Outcome};
use crate::initramfs::iso;
use crate::initramfs::read::{self as input, ArchiveError};
use crate::manifest::{ArtifactKind, Manifest, ManifestError};

/// Arguments of `ipa-build inspect`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A build directory (with manifest.json), an initramfs (any compression,
    /// or several concatenated) or an ISO image.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Print every file with its size.
    #[arg(long)]
    pub tree: bool,
    /// How many of the largest files and directories to list.
    #[arg(long, default_value_t = 15, value_name = "N")]
    pub top: usize,
    /// Print the whole inspection as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Which devices the image's drivers match, per class (storage, USB,
    /// network, other), from its modules.alias: PCI IDs, PCI and USB class
    /// matches, and the number of distinct PCI IDs to compare builds by
    /// (with the full kernel's when its package is in the cache). PATH may
    /// also be a directory holding lib/modules/<version>/, such as an
    /// unpacked kernel package.
    #[arg(long)]
    pub hardware: bool,
    /// The download cache to find the full kernel in (for --hardware);
    /// default: the build's default cache (~/.cache/ipa-build).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// Why a path could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a readable initramfs: {source}", path.display())]
    Archive { path: PathBuf, source: ArchiveError },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(
        "{}: neither a build directory (manifest.json or *.initramfs), an initramfs nor an ISO image",
        path.display()
    )]
    Unknown { path: PathBuf },
    #[error(
        "{}: no kernel modules found (no lib/modules/<version>/ with modules.alias or modules)",
        path.display()
    )]
    NoModules { path: PathBuf },
    #[error("{}: reading the kernel modules: {why}", path.display())]
    Modules { path: PathBuf, why: String },
}

/// One regular file of an image.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    /// Absolute path inside the image (`/usr/bin/busybox`).
    pub path: String,
    pub size: u64,
    /// SHA-256 of the content; what `diff` compares.
    pub sha256: String,
}

/// The kernel an image carries modules for.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KernelInfo {
    /// The `uname -r` release, from `lib/modules/<release>/`.
    pub release: String,
    /// Module names (`virtio_net`), sorted.
    pub modules: Vec<String>,
}

/// A directory and the bytes of the files below it.
#[derive(Debug, Clone, Serialize)]
pub struct DirSize {
    pub path: String,
    pub size: u64,
    pub files: u64,
}

/// Everything `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// `build`, `initramfs` or `iso`.
    pub kind: &'static str,
    pub path: PathBuf,
    /// Size of the file itself (the initramfs or ISO; for a build, its initramfs).
    pub size: u64,
    /// Compression of the initramfs's first segment (`cpio` for a plain one);
    /// the reader walks all of them.
    pub segments: Vec<String>,
    /// Regular files, sorted by path.
    pub files: Vec<FileInfo>,
    pub total_bytes: u64,
    pub kernels: Vec<KernelInfo>,
    /// `manifest.json` of a build directory, read and checked by [`Manifest::read`].
    pub manifest: Option<Manifest>,
    /// The initramfs found inside an ISO.
    pub initramfs: Option<Box<Inspection>>,
}

impl Inspection {
    /// The largest files, biggest first.
    pub fn largest_files(&self, n: usize) -> Vec<&FileInfo> {
        let mut v: Vec<&FileInfo> = self.files.iter().collect();
        v.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
        v.truncate(n);
        v
    }

    /// Bytes per directory of depth `depth` (`/usr/lib` for 2), biggest first.
    pub fn largest_dirs(&self, depth: usize, n: usize) -> Vec<DirSize> {
        let mut dirs: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for f in &self.files {
            let parts: Vec<&str> = f.path.trim_start_matches('/').split('/').collect();
            let keep = depth.min(parts.len().saturating_sub(1)).max(1);
            let key = format!("/{}", parts[..keep.min(parts.len())].join("/"));
            let e = dirs.entry(key).or_default();
            e.0 += f.size;
            e.1 += 1;
        }
        let mut v: Vec<DirSize> = dirs
            .into_iter()
            .map(|(path, (size, files))| DirSize { path, size, files })
            .collect();
        v.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
        v.truncate(n);
        v
    }
}

/// Inspects `path`: a build directory, an initramfs or an ISO image.
pub fn inspect(path: &Path) -> Result<Inspection, InspectError> {
    let io = |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return inspect_build(path);
    }
    let file = File::open(path).map_err(io)?;
    if iso::is_iso(&file) {
        return inspect_iso(path, &file);
    }
    let data = fs::read(path).map_err(io)?;
    if input::is_initramfs(&data) {
        return inspect_initramfs(path, &data);
    }
    Err(InspectError::Unknown {
        path: path.to_path_buf(),
    })
}

/// Reads `manifest.json` of a build directory, if there is one (a directory
/// of initramfs files without one can still be inspected).
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, InspectError> {
    match Manifest::read(dir) {
        Ok(build) => Ok(Some(build.manifest)),
        Err(ManifestError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The initramfs of a build directory: the manifest's `initramfs` artifact,
/// else the only `*.initramfs` file.
pub fn build_initramfs(dir: &Path, manifest: Option<&Manifest>) -> Option<PathBuf> {
    let named = manifest
        .and_then(|m| m.artifact(ArtifactKind::Initramfs))
        .map(|a| dir.join(&a.file));
    if let Some(p) = named.filter(|p| p.is_file()) {
        return Some(p);
    }
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "initramfs"))
        .collect();
    found.sort();
    (found.len() == 1).then(|| found.remove(0))
}

fn inspect_build(dir: &Path) -> Result<Inspection, InspectError> {
    let manifest = read_manifest(dir)?;
    let Some(initramfs) = build_initramfs(dir, manifest.as_ref()) else {
        if manifest.is_none() {
            return Err(InspectError::Unknown {
                path: dir.to_path_buf(),
            });
        }
        // A build without an initramfs (ISO only): the manifest is all there is.
        return Ok(Inspection {
            kind: "build",
            path: dir.to_path_buf(),
            size: 0,
            segments: Vec::new(),
            files: Vec::new(),
            total_bytes: 0,
            kernels: Vec::new(),
            manifest,
            initramfs: None,
        });
    };
    let data = fs::read(&initramfs).map_err(|source| InspectError::Io {
        path: initramfs.clone(),
        source,
    })?;
    let mut inner = inspect_initramfs(&initramfs, &data)?;
    inner.kind = "build";
    inner.path = dir.to_path_buf();
    inner.manifest = manifest;
    Ok(inner)
}

fn inspect_initramfs(path: &Path, data: &[u8]) -> Result<Inspection, InspectError> {
    let mut files = Vec::new();
    input::for_each_entry(data, &mut |e| {
        files.push(FileInfo {
            size: e.data.len() as u64,
            sha256: hex::encode(Sha256::digest(&e.data)),
            path: e.path,
        });
        Ok(())
    })
    .map_err(|source| InspectError::Archive {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(finish(
        "initramfs",
        path,
        data.len() as u64,
        segments(data),
        files,
    ))
}

fn inspect_iso(path: &Path, file: &File) -> Result<Inspection, InspectError> {
    let io = |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = file.metadata().map_err(io)?.len();
    let mut files = Vec::new();
    let mut initramfs = None;
    for f in iso::iso_files(file).map_err(io)? {
        let data = iso::read_iso_file(file, &f).map_err(io)?;
        if initramfs.is_none() && input::is_initramfs(&data) {
            let inner_path = PathBuf::from(format!("{}:{}", path.display(), f.path));
            initramfs = Some(Box::new(inspect_initramfs(&inner_path, &data)?));
        }
        files.push(FileInfo {
            path: f.path,
            size: f.size,
            sha256: hex::encode(Sha256::digest(&data)),
        });
    }
    let mut out = finish("iso", path, size, Vec::new(), files);
    out.kernels = initramfs
        .as_ref()
        .map(|i| i.kernels.clone())
        .unwrap_or_default();
    out.initramfs = initramfs;
    Ok(out)
}

fn finish(
    kind: &'static str,
    path: &Path,
    size: u64,
    segments: Vec<String>,
    mut files: Vec<FileInfo>,
) -> Inspection {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    // A later segment overrides an earlier one, as when the kernel unpacks.
    files.dedup_by(|later, earlier| {
        if later.path == earlier.path {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });
    Inspection {
        kind,
        path: path.to_path_buf(),
        size,
        segments,
        total_bytes: files.iter().map(|f| f.size).sum(),
        kernels: kernels(&files),
        files,
        manifest: None,
        initramfs: None,
    }
}

/// The compression the initramfs starts with.
fn segments(data: &[u8]) -> Vec<String> {
    // Only the first segment's kind is cheap to know without decoding; the
    // reader already validated the whole file, so report what starts it.
    let first = data.iter().position(|&b| b != 0).map(|i| &data[i..]);
    match first {
        Some(d) => vec![match input::sniff(d) {
            Some(c) => input::layer_name(c).to_string(),
            None => "cpio".to_string(),
        }],
        None => Vec::new(),
    }
}

/// Kernels and their modules, from `lib/modules/<release>/**.ko[.xz|.zst|.gz]`.
pub fn kernels(files: &[FileInfo]) -> Vec<KernelInfo> {
    let mut by_release: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let rest = f
            .path
            .strip_prefix("/usr/lib/modules/")
            .or_else(|| f.path.strip_prefix("/lib/modules/"));
        let Some(rest) = rest else { continue };
        let Some((release, file)) = rest.split_once('/') else {
            continue;
        };
        let entry = by_release.entry(release.to_string()).or_default();
        if let Some(name) = module_name(file) {
            entry.push(name);
        }
    }
    by_release
        .into_iter()
        .map(|(release, mut modules)| {
            modules.sort();
            modules.dedup();
            KernelInfo { release, modules }
        })
        .collect()
}

/// `kernel/drivers/net/virtio_net.ko.xz` → `virtio_net`.
fn module_name(path: &str) -> Option<String> {
    let base = path.rsplit('/').next()?;
    let base = [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    base.strip_suffix(".ko").map(str::to_string)
}

/// Inspects `args.path`; the report (or `--json`) is the outcome.
pub fn run(args: &Args) -> Result<Outcome, Error> {
    if args.hardware {
        let cache = args
            .cache
            .clone()
            .unwrap_or_else(crate::cache::Cache::default_dir);
        let r = crate::cmd::hardware::report(&args.path, &cache)?;
        if args.json {
            return crate::cmd::json(&r).map(Outcome::success);
        }
        return Ok(Outcome::success(crate::cmd::hardware::render(&r)));
    }
    let ins = inspect(&args.path)?;
    if args.json {
        return crate::cmd::json(&ins).map(Outcome::success);
    }
    Ok(Outcome::success(render(&ins, args.tree, args.top)))
}

/// The manifest's part of the report: profile, tool, packages, artifacts.
fn render_manifest(s: &mut String, m: &Manifest) {
    use crate::report::human_bytes;
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "  profile {} · tool {} {} · SOURCE_DATE_EPOCH {}",
        m.profile.name, m.tool.name, m.tool.version, m.source_date_epoch
    );
    let _ = writeln!(s, "  {} packages:", m.packages.len());
    for p in &m.packages {
        let _ = writeln!(s, "    {} {} ({})", p.name, p.version, p.installed);
    }
    for a in &m.artifacts {
        let _ = writeln!(
            s,
            "  artifact {} {} ({})",
            a.kind,
            a.file,
            human_bytes(a.size)
        );
    }
    render_contents(s, m);
    crate::cmd::hardware::render_firmware(s, &m.firmware);
}

/// What each element adds (its own files and the packages it names), then
/// what no single element owns, all uncompressed.
fn render_contents(s: &mut String, m: &Manifest) {
    use crate::report::human_bytes;
    use std::collections::BTreeMap;
    use std::fmt::Write;
    if m.contents.is_empty() {
        return;
    }
    let mut by_element: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut shared = Vec::new();
    for c in &m.contents {
        match &c.element {
            Some(e) => {
                let slot = by_element.entry(e.as_str()).or_default();
                slot.0 += c.files;
                slot.1 += c.bytes;
            }
            None => shared.push(c),
        }
    }
    let mut ranked: Vec<_> = by_element.into_iter().collect();
    ranked.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(b.0)));
    let _ = writeln!(
        s,
        "  what each element adds (uncompressed, with the packages it names):"
    );
    for (element, (files, bytes)) in ranked {
        let _ = writeln!(
            s,
            "    {:>10}  {:>5} files  {element}",
            human_bytes(bytes),
            files
        );
    }
    let _ = writeln!(s, "  shared by the elements (uncompressed):");
    for c in shared {
        let _ = writeln!(
            s,
            "    {:>10}  {:>5} files  {}",
            human_bytes(c.bytes),
            c.files,
            c.owner
        );
    }
}

/// The human-readable report.
pub fn render(ins: &Inspection, tree: bool, top: usize) -> String {
    use crate::report::human_bytes;
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{} ({})", ins.path.display(), ins.kind);
    if let Some(m) = &ins.manifest {
        render_manifest(&mut s, m);
    }
    let body = ins.initramfs.as_deref().unwrap_or(ins);
    if ins.initramfs.is_some() {
        let _ = writeln!(s, "  {} files in the ISO:", ins.files.len());
        for f in &ins.files {
            let _ = writeln!(s, "    {:>10}  {}", human_bytes(f.size), f.path);
        }
    }
    let _ = writeln!(
        s,
        "  initramfs ({}) compressed {}, {} files, {} uncompressed",
        body.segments.join("+"),
        human_bytes(body.size),
        body.files.len(),
        human_bytes(body.total_bytes)
    );
    for k in &body.kernels {
        let _ = writeln!(
            s,
            "  kernel {}: {} modules: {}",
            k.release,
            k.modules.len(),
            k.modules.join(" ")
        );
    }
    let _ = writeln!(s, "  largest directories:");
    for d in body.largest_dirs(2, top) {
        let _ = writeln!(
            s,
            "    {:>10}  {:>5} files  {}",
            human_bytes(d.size),
            d.files,
            d.path
        );
    }
    let _ = writeln!(s, "  largest files:");
    for f in body.largest_files(top) {
        let _ = writeln!(s, "    {:>10}  {}", human_bytes(f.size), f.path);
    }
    if tree {
        let _ = writeln!(s, "  files:");
        for f in &body.files {
            let _ = writeln!(s, "    {:>10}  {}", f.size, f.path);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: u64) -> FileInfo {
        FileInfo {
            path: path.into(),
            size,
            sha256: String::new(),
        }
    }

    #[test]
    fn finds_kernel_release_and_modules_in_both_layouts() {
        let files = [
            f(
                "/lib/modules/6.1.0-56-amd64/kernel/drivers/net/virtio_net.ko.xz",
                9,
            ),
            f("/lib/modules/6.1.0-56-amd64/kernel/fs/ext4/ext4.ko", 9),
            f("/lib/modules/6.1.0-56-amd64/modules.dep", 9),
            f("/usr/lib/modules/6.12.0/kernel/a/e1000e.ko.zst", 9),
            f("/usr/bin/busybox", 9),
        ];
        let k = kernels(&files);
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].release, "6.1.0-56-amd64");
        assert_eq!(k[0].modules, ["ext4", "virtio_net"]);
        assert_eq!(k[1].modules, ["e1000e"]);
    }

    #[test]
    fn directories_aggregate_sizes() {
        let ins = finish(
            "initramfs",
            Path::new("x"),
            0,
            vec![],
            vec![
                f("/usr/lib/a", 5),
                f("/usr/lib/x/b", 7),
                f("/usr/bin/c", 3),
                f("/init", 1),
            ],
        );
        let d = ins.largest_dirs(2, 10);
        assert_eq!(d[0].path, "/usr/lib");
        assert_eq!(d[0].size, 12);
        assert_eq!(d[0].files, 2);
        assert_eq!(ins.total_bytes, 16);
        assert_eq!(ins.largest_files(1)[0].path, "/usr/lib/x/b");
    }
}
