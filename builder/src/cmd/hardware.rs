//! `ipa-build inspect --hardware`: which devices an image's drivers match,
//! per class, and the figure to compare builds by ([`crate::hardware`]).
//!
//! The image's own index files are read (from the initramfs of a build
//! directory, an initramfs or ISO, or a directory holding
//! `lib/modules/<version>/`); a directory of modules without
//! `modules.alias`, such as an unpacked kernel package, is read module by
//! module. When the build's manifest names a kernel package that is in the
//! download cache, the full kernel is read too and the image's figure is
//! given as a share of it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cache::{Blob, Cache};
use crate::cmd::inspect::{InspectError, build_initramfs, read_manifest};
use crate::debian::deb;
use crate::hardware::{self, Class, ClassCoverage, Coverage, ModuleTable};
use crate::initramfs::iso;
use crate::initramfs::read as input;
use crate::manifest::{FirmwareRecord, Manifest};
use crate::stage::Tree;
use crate::stage::modules::{self, Kernel};

/// What `inspect --hardware` found.
#[derive(Debug, Clone, Serialize)]
pub struct HardwareReport {
    pub path: PathBuf,
    /// The kernel release the modules are for.
    pub release: String,
    pub coverage: Coverage,
    /// The full kernel the image was built from, when its package is cached.
    pub full_kernel: Option<FullKernel>,
    /// Firmware files the image carries, from the manifest.
    pub firmware: Vec<crate::manifest::FirmwareRecord>,
}

/// The full kernel's figures, and the image's share of them.
#[derive(Debug, Clone, Serialize)]
pub struct FullKernel {
    pub package: String,
    pub version: String,
    pub pci_ids: usize,
    /// Distinct PCI IDs per class.
    pub class_pci_ids: Vec<(Class, usize)>,
    /// The image's distinct PCI IDs as a percentage of the full kernel's.
    pub percent: Option<f64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InspectError + '_ {
    move |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the coverage of `path`, comparing with the full kernel from `cache`.
pub fn report(path: &Path, cache: &Path) -> Result<HardwareReport, InspectError> {
    let manifest = if path.is_dir() {
        read_manifest(path)?
    } else {
        None
    };
    let (release, table) = table_of(path, manifest.as_ref())?;
    let coverage = hardware::coverage(&table);
    let full_kernel = match &manifest {
        Some(m) => full_kernel(m, cache, coverage.pci_ids)?,
        None => None,
    };
    Ok(HardwareReport {
        path: path.to_path_buf(),
        release,
        coverage,
        full_kernel,
        firmware: manifest.map(|m| m.firmware).unwrap_or_default(),
    })
}

/// The module table of whatever `path` is.
fn table_of(
    path: &Path,
    manifest: Option<&Manifest>,
) -> Result<(String, ModuleTable), InspectError> {
    let no_modules = || InspectError::NoModules {
        path: path.to_path_buf(),
    };
    if path.is_dir() {
        if let Some(initramfs) = build_initramfs(path, manifest) {
            let data = fs::read(&initramfs).map_err(io(&initramfs))?;
            return from_initramfs(&initramfs, &data)?.ok_or_else(no_modules);
        }
        let kernel = modules_dir(path).ok_or_else(no_modules)?;
        return from_dir(&kernel);
    }
    let file = fs::File::open(path).map_err(io(path))?;
    if iso::is_iso(&file) {
        for f in iso::iso_files(&file).map_err(io(path))? {
            let data = iso::read_iso_file(&file, &f).map_err(io(path))?;
            if input::is_initramfs(&data)
                && let Some(t) = from_initramfs(path, &data)?
            {
                return Ok(t);
            }
        }
        return Err(no_modules());
    }
    let data = fs::read(path).map_err(io(path))?;
    if !input::is_initramfs(&data) {
        return Err(InspectError::Unknown {
            path: path.to_path_buf(),
        });
    }
    from_initramfs(path, &data)?.ok_or_else(no_modules)
}

/// `lib/modules/<version>` or `usr/lib/modules/<version>` under `root`.
fn modules_dir(root: &Path) -> Option<Kernel> {
    for base in ["lib/modules", "usr/lib/modules"] {
        let Ok(rd) = fs::read_dir(root.join(base)) else {
            continue;
        };
        let mut versions: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        versions.sort();
        if let Some(dir) = versions.pop() {
            return Some(Kernel {
                version: dir.file_name()?.to_string_lossy().into_owned(),
                vmlinuz: PathBuf::new(),
                modules_dir: dir,
            });
        }
    }
    None
}

/// The index files of a modules directory, or every module's `.modinfo`
/// when it has no `modules.alias` (an unpacked kernel package).
fn from_dir(kernel: &Kernel) -> Result<(String, ModuleTable), InspectError> {
    let dir = &kernel.modules_dir;
    let read = |f: &str| fs::read(dir.join(f)).unwrap_or_default();
    let table = if dir.join("modules.alias").is_file() {
        ModuleTable::from_index_files(
            &String::from_utf8_lossy(&read("modules.alias")),
            &String::from_utf8_lossy(&read("modules.dep")),
            &String::from_utf8_lossy(&read("modules.builtin")),
            &read("modules.builtin.modinfo"),
        )
    } else {
        modules::module_table(kernel).map_err(|e| InspectError::Modules {
            path: dir.clone(),
            why: e.to_string(),
        })?
    };
    Ok((kernel.version.clone(), table))
}

/// The module index files inside an initramfs, if it has modules.
fn from_initramfs(path: &Path, data: &[u8]) -> Result<Option<(String, ModuleTable)>, InspectError> {
    const WANTED: [&str; 4] = [
        "modules.alias",
        "modules.dep",
        "modules.builtin",
        "modules.builtin.modinfo",
    ];
    let mut release = None;
    let mut files: [Vec<u8>; 4] = Default::default();
    input::for_each_entry(data, &mut |e| {
        let rest = e
            .path
            .strip_prefix("/usr/lib/modules/")
            .or_else(|| e.path.strip_prefix("/lib/modules/"));
        if let Some((ver, name)) = rest.and_then(|r| r.split_once('/'))
            && let Some(i) = WANTED.iter().position(|w| *w == name)
        {
            release = Some(ver.to_string());
            files[i] = e.data;
        }
        Ok(())
    })
    .map_err(|source| InspectError::Archive {
        path: path.to_path_buf(),
        source,
    })?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(release.map(|r| {
        (
            r,
            ModuleTable::from_index_files(
                &text(&files[0]),
                &text(&files[1]),
                &text(&files[2]),
                &files[3],
            ),
        )
    }))
}

/// The full kernel's coverage, from the kernel package in the cache (its
/// hash checked, as the fetch stage does); `None` when it is not there.
fn full_kernel(
    m: &Manifest,
    cache_dir: &Path,
    image_ids: usize,
) -> Result<Option<FullKernel>, InspectError> {
    if !cache_dir.join("blobs/sha256").is_dir() {
        return Ok(None);
    }
    let cache = Cache::open(cache_dir).map_err(io(cache_dir))?;
    let deb_path = match cache.check(&m.kernel.sha256).map_err(io(cache_dir))? {
        Blob::Valid(p) => p,
        Blob::Missing | Blob::Corrupt { .. } => return Ok(None),
    };
    let work = tempfile::tempdir().map_err(io(cache_dir))?;
    let mut tree = Tree::new(work.path());
    let keep = |p: &Path| p.to_string_lossy().contains("/lib/modules/");
    deb::unpack(&deb_path, &mut tree, &keep).map_err(|e| InspectError::Modules {
        path: deb_path.clone(),
        why: e.to_string(),
    })?;
    let Some(kernel) = modules_dir(work.path()) else {
        return Ok(None);
    };
    let (_, table) = from_dir(&kernel)?;
    let full = hardware::coverage(&table);
    Ok(Some(FullKernel {
        package: m.kernel.package.clone(),
        version: m.kernel.version.clone(),
        pci_ids: full.pci_ids,
        class_pci_ids: Class::ALL
            .iter()
            .map(|c| (*c, full.classes.get(c).map_or(0, |x| x.pci_ids.len())))
            .collect(),
        percent: hardware::percent(image_ids, full.pci_ids),
    }))
}

/// The human-readable report.
pub fn render(r: &HardwareReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{} (kernel {})", r.path.display(), r.release);
    let share = r
        .full_kernel
        .as_ref()
        .and_then(|f| f.percent.map(|p| (f, p)));
    match share {
        Some((f, p)) => {
            let _ = writeln!(
                s,
                "  coverage: {} distinct PCI vendor:device IDs, {p}% of the {} full kernel {} ({})",
                r.coverage.pci_ids, f.package, f.version, f.pci_ids
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  coverage: {} distinct PCI vendor:device IDs (the full kernel's package is not in the cache)",
                r.coverage.pci_ids
            );
        }
    }
    let empty = ClassCoverage::default();
    for class in Class::ALL {
        let c = r.coverage.classes.get(&class).unwrap_or(&empty);
        let of_full = r
            .full_kernel
            .as_ref()
            .and_then(|f| f.class_pci_ids.iter().find(|(k, _)| *k == class))
            .map(|(_, n)| match hardware::percent(c.pci_ids.len(), *n) {
                Some(p) => format!(" of {n} ({p}%)"),
                None => String::new(),
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {}: {} PCI IDs{of_full}, {} modules",
            class.name(),
            c.pci_ids.len(),
            c.modules.len()
        );
        let mut line = |what: &str, v: &BTreeSet<String>| {
            if !v.is_empty() {
                let all: Vec<&str> = v.iter().map(String::as_str).collect();
                let _ = writeln!(s, "    {what} ({}): {}", v.len(), all.join(" "));
            }
        };
        line("modules", &c.modules);
        line("PCI classes (class:subclass:progif)", &c.pci_classes);
        line("PCI vendor-wide matches (vendor:*[/class])", &c.pci_vendors);
        line(
            "USB interface classes (class/subclass/protocol)",
            &c.usb_interfaces,
        );
        line("USB devices", &c.usb_ids);
        line("PCI IDs", &c.pci_ids);
    }
    render_firmware(&mut s, &r.firmware);
    s
}

/// The firmware lines of a report: every file with its package and
/// component, non-free ones marked, and the missing ones; said plainly
/// because Ironic's rescue documentation warns about proprietary blobs.
pub fn render_firmware(s: &mut String, firmware: &[FirmwareRecord]) {
    use crate::report::human_bytes;
    use std::fmt::Write;
    if firmware.is_empty() {
        return;
    }
    let installed: Vec<_> = firmware
        .iter()
        .filter_map(FirmwareRecord::installed)
        .collect();
    let nonfree = installed.iter().filter(|i| i.component != "main").count();
    let _ = writeln!(
        s,
        "  firmware: {} files, {} ({} from non-free-firmware), {} named but missing",
        installed.len(),
        human_bytes(installed.iter().map(|r| r.size).sum()),
        nonfree,
        firmware.len() - installed.len()
    );
    for r in firmware {
        let (size, path, from) = match r.installed() {
            Some(i) => (
                human_bytes(i.size),
                i.path.as_str(),
                format!("{} [{}]", i.package, i.component),
            ),
            None => (
                "-".to_string(),
                r.file.as_str(),
                "MISSING: no package has it".to_string(),
            ),
        };
        let _ = writeln!(
            s,
            "    {size:>10}  {path}  {from}  for {}",
            r.modules.join(", ")
        );
    }
}
