//! Kernel modules: the ones a profile names, their dependency closure, and the
//! index files `modprobe` reads.
//!
//! Debian's kernel builds nearly every driver as a module (e1000, virtio_net
//! and iso9660 included), so a ramdisk that boots anywhere carries a chosen
//! few hundred kilobytes of them. We copy the named modules plus everything
//! they depend on, then write `modules.dep`, `modules.alias`,
//! `modules.softdep` and the binary indexes ourselves rather than running
//! `depmod`: it keeps the build free of host tools that must match the
//! kernel, and the output is a pure function of the module set. The tests
//! compare it with `depmod -b`.
//!
//! Which modules to copy comes from each module's `.modinfo` section:
//! `depends=` (the symbol dependencies modpost computed, the same set
//! `depmod` derives from symbol tables) and `softdep=` `pre:`/`post:` names,
//! which we install too because the module does not work without them,
//! though `modules.dep` lists only the hard ones, as `depmod` does.
//!
//! File formats, as `depmod` (kmod 30) writes them:
//! - `modules.dep`: one line per module, `path: dep dep ...`, paths relative
//!   to `/lib/modules/<ver>/` (compressed modules keep their `.ko.xz` or
//!   `.ko.zst` names), lines in `modules.order` order (modules not in it
//!   last, by path). The dependency list is the whole transitive closure,
//!   ordered so that a module comes before the modules it needs; `modprobe`
//!   (kmod and busybox alike) loads it from the end. The order is depmod's
//!   exactly: dependencies come from symbols, as depmod finds them.
//! - `modules.alias`: a comment line, then `alias <pattern> <name>` for every
//!   `alias=` of every module, in module order then `.modinfo` order.
//! - `modules.softdep`: a comment line, then `softdep <name> <value>`.
//! - `modules.devname`: `<name> <node> c<major>:<minor>` for modules that
//!   serve a device node (`loop` → `loop-control`), after a comment line;
//!   empty when none does.
//! - `modules.{dep,alias,symbols,builtin,builtin.alias}.bin`: libkmod's
//!   tries, written by [`kmod_index`](crate::stage::kmod_index).
//!
//! Busybox `modprobe` (the full one, as in Debian's busybox-static) reads
//! `modules.dep` and, for names it cannot find there (such as a modalias from
//! `/sys`), `modules.alias`; kmod's `modprobe` and udev read only the `.bin`
//! indexes. The tests compare all of them byte for byte with `depmod -b`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol, SymbolSection};

use crate::hardware::ModuleTable;
use crate::stage::Tree;
use crate::stage::kmod_index::{self, IndexError, IndexedModule};

/// The kernel found in an unpacked `linux-image-*` package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `6.1.0-26-amd64`: the directory name under `/lib/modules`.
    pub version: String,
    /// The kernel image, `boot/vmlinuz-<version>`.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<version>` in the unpacked package.
    pub modules_dir: PathBuf,
}

/// What [`install_modules`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModulesReport {
    pub version: String,
    /// Names of the modules copied (requested ones and their dependencies), sorted.
    pub installed: Vec<String>,
    /// Requested names that are built into the kernel (nothing to copy).
    pub builtin: Vec<String>,
    /// `softdep` names that are neither modules nor built in (ignored, as
    /// `modprobe` ignores them).
    pub missing_softdeps: Vec<String>,
    /// Bytes of module files copied.
    pub bytes: u64,
    /// Firmware files (paths under `/lib/firmware`) each installed module
    /// names in its `.modinfo` (`firmware=`), for modules that name any.
    pub firmware: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error(
        "no kernel in {dir}: expected boot/vmlinuz-<version> and lib/modules/<version>/ \
         (is this the unpacked linux-image-<version> package, not the linux-image-amd64 meta-package?)"
    )]
    NoKernel { dir: PathBuf },
    #[error("{dir} holds several kernels ({versions}); unpack only one linux-image package there")]
    SeveralKernels { dir: PathBuf, versions: String },
    #[error(
        "kernel module {name:?} does not exist in kernel {version}{suggestions}; check the profile's modules list"
    )]
    Unknown {
        name: String,
        version: String,
        suggestions: String,
    },
    #[error(
        "module path pattern {pattern:?} matches no module of kernel {version}; \
         patterns are relative to /lib/modules/<version>/ (`kernel/drivers/...`)"
    )]
    NoMatch { pattern: String, version: String },
    #[error("module path pattern {pattern:?}: {why}")]
    BadPattern { pattern: String, why: String },
    #[error(
        "module {module} depends on {dep}, which kernel {version} does not have; the kernel package is incomplete"
    )]
    BrokenDep {
        module: String,
        dep: String,
        version: String,
    },
    #[error("{path}: {why}")]
    BadModule { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("writing the binary module indexes: {0}")]
    Index(#[from] IndexError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ModulesError + '_ {
    move |source| ModulesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Finds `boot/vmlinuz-<ver>` and `lib/modules/<ver>/` (or `usr/lib/modules`)
/// in a directory where a kernel package was unpacked.
pub fn find_kernel(unpacked_kernel_pkg: &Path, image: &str) -> Result<Kernel, ModulesError> {
    let dir = unpacked_kernel_pkg;
    let boot = dir.join("boot");
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(&boot) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ModulesError::NoKernel {
                dir: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err(&boot)(e)),
    };
    for e in entries {
        let e = e.map_err(io_err(&boot))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(version) = name
            .strip_prefix(image)
            .and_then(|rest| rest.strip_prefix('-'))
        else {
            continue;
        };
        for base in ["lib/modules", "usr/lib/modules"] {
            let modules_dir = dir.join(base).join(version);
            if modules_dir.is_dir() {
                found.push(Kernel {
                    version: version.to_string(),
                    vmlinuz: e.path(),
                    modules_dir,
                });
                break;
            }
        }
    }
    found.sort_by(|a, b| a.version.cmp(&b.version));
    match found.len() {
        0 => Err(ModulesError::NoKernel {
            dir: dir.to_path_buf(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(ModulesError::SeveralKernels {
            dir: dir.to_path_buf(),
            versions: found
                .iter()
                .map(|k| k.version.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `virtio-net` → `virtio_net`: module names treat dash and underscore alike.
pub fn canonical(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// The module name of a file (`kernel/drivers/net/virtio_net.ko.xz` → `virtio_net`).
pub fn module_name(file: &str) -> Option<String> {
    let base = file.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|s| base.strip_suffix(s))?;
    Some(canonical(stem))
}

/// What we read from one module file: its `.modinfo` `key=value` pairs in
/// file order, and the symbols it exports and needs (for `modules.dep`'s
/// order and `modules.symbols.bin`, the way depmod reads them).
#[derive(Debug, Clone, Default)]
struct ModInfo {
    pairs: Vec<(String, String)>,
    /// Exported symbols: the `__crc_<sym>` symbols of a modversions kernel,
    /// else the `__ksymtab_strings` section (kmod's order of preference).
    exports: Vec<String>,
    /// Undefined symbols in symbol-table order, then `__versions` entries no
    /// undefined symbol named: the order in which depmod meets the modules
    /// this one depends on, which decides its tie-breaks.
    needs: Vec<String>,
}

impl ModInfo {
    fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn depends(&self) -> Vec<String> {
        self.values("depends")
            .flat_map(|v| v.split(','))
            .filter(|s| !s.is_empty())
            .map(canonical)
            .collect()
    }

    /// Names from `softdep=pre: a b post: c`.
    fn softdeps(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.values("softdep") {
            for word in v.split_whitespace() {
                if !word.ends_with(':') {
                    out.push(canonical(word));
                }
            }
        }
        out
    }
}

/// Reads a module file, decompressing `.ko.xz`/`.ko.zst`/`.ko.gz`.
fn read_module(path: &Path) -> Result<Vec<u8>, ModulesError> {
    let raw = std::fs::read(path).map_err(io_err(path))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    let bad = |e: io::Error| ModulesError::BadModule {
        path: path.to_path_buf(),
        why: format!("decompressing: {e}"),
    };
    if name.ends_with(".xz") {
        liblzma::read::XzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(bad)?;
    } else if name.ends_with(".zst") {
        out = zstd::decode_all(&raw[..]).map_err(bad)?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(bad)?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// Reads a module's `.modinfo` and symbol lists (decompressing it first).
fn parse_modinfo(path: &Path) -> Result<ModInfo, ModulesError> {
    let data = read_module(path)?;
    let bad = |why: String| ModulesError::BadModule {
        path: path.to_path_buf(),
        why,
    };
    let file = object::File::parse(&*data).map_err(|e| bad(format!("not an ELF module: {e}")))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or_else(|| bad("no .modinfo section".into()))?;
    let bytes = section.data().map_err(|e| bad(format!(".modinfo: {e}")))?;
    let pairs = bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let (exports, needs) = module_symbols(&file);
    Ok(ModInfo {
        pairs,
        exports,
        needs,
    })
}

/// `(exports, needs)` of a module, as kmod's ELF reader finds them.
fn module_symbols(file: &object::File<'_>) -> (Vec<String>, Vec<String>) {
    let mut exports = Vec::new();
    let mut needs = Vec::new();
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        if name.is_empty() {
            continue;
        }
        if let Some(exported) = name.strip_prefix("__crc_") {
            exports.push(exported.to_string());
        }
        if sym.section() == SymbolSection::Undefined {
            needs.push(name.to_string());
        }
    }
    let section_data = |name: &str| {
        file.section_by_name(name)
            .and_then(|s| s.data().ok())
            .unwrap_or_default()
    };
    // `__versions`: 64-byte records, an 8-byte CRC then a NUL-padded name.
    let named: HashSet<String> = needs.iter().cloned().collect();
    for record in section_data("__versions").chunks_exact(64) {
        let name = &record[8..];
        let name =
            String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap_or(56)]);
        if !name.is_empty() && !named.contains(name.as_ref()) {
            needs.push(name.into_owned());
        }
    }
    if exports.is_empty() {
        exports = section_data("__ksymtab_strings")
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
    }
    (exports, needs)
}

/// The module files of a kernel, by name.
struct Index {
    /// name → path relative to the modules dir (`kernel/fs/isofs/isofs.ko`).
    modules: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
    /// relative path → position in `modules.order`.
    order: HashMap<String, usize>,
}

impl Index {
    fn load(kernel: &Kernel) -> Result<Index, ModulesError> {
        let dir = &kernel.modules_dir;
        let mut modules = BTreeMap::new();
        let mut files: Vec<String> = Vec::new();
        for item in walkdir::WalkDir::new(dir).follow_links(false) {
            let item = item.map_err(|e| ModulesError::Io {
                path: dir.clone(),
                source: e.into(),
            })?;
            if !item.file_type().is_file() {
                continue;
            }
            if let Ok(rel) = item.path().strip_prefix(dir) {
                let rel = rel.to_string_lossy().into_owned();
                if module_name(&rel).is_some() {
                    files.push(rel);
                }
            }
        }
        // `updates/` overrides the stock module of the same name, as in depmod.
        files.sort_by_key(|f| (!f.starts_with("updates/"), f.clone()));
        for f in files {
            if let Some(name) = module_name(&f) {
                modules.entry(name).or_insert(f);
            }
        }
        let read_lines = |name: &str| -> Result<Vec<String>, ModulesError> {
            let p = dir.join(name);
            match std::fs::read_to_string(&p) {
                Ok(t) => Ok(t
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(io_err(&p)(e)),
            }
        };
        let builtin = read_lines("modules.builtin")?
            .iter()
            .filter_map(|l| module_name(l))
            .collect();
        let order = read_lines("modules.order")?
            .into_iter()
            .enumerate()
            .map(|(i, l)| (l, i))
            .collect();
        Ok(Index {
            modules,
            builtin,
            order,
        })
    }

    /// The modules whose path matches a kernel-tree pattern such as
    /// `kernel/drivers/scsi/megaraid/**`. A compressed module matches by its
    /// real name and by its `.ko` one, so `**/e1000e.ko` means the same
    /// module on every kernel.
    fn matching(&self, pattern: &str) -> Result<Vec<String>, ModulesError> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| ModulesError::BadPattern {
                pattern: pattern.to_string(),
                why: e.kind().to_string(),
            })?
            .compile_matcher();
        Ok(self
            .modules
            .iter()
            .filter(|(_, rel)| glob.is_match(rel.as_str()) || glob.is_match(uncompressed(rel)))
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn suggestions(&self, wanted: &str) -> String {
        let mut scored: Vec<(usize, &String)> = self
            .modules
            .keys()
            .chain(self.builtin.iter())
            .filter_map(|n| {
                let d = levenshtein(wanted, n);
                (d <= 2 || (wanted.len() >= 3 && n.contains(wanted))).then_some((d, n))
            })
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        let names: Vec<&str> = scored.iter().take(6).map(|(_, n)| n.as_str()).collect();
        if names.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", names.join(", "))
        }
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Copies the modules named in `wanted` and their dependency closure into
/// `<tree>/lib/modules/<version>/`, with the index files `modprobe` needs.
pub fn install_modules(
    kernel: &Kernel,
    wanted: &[String],
    tree: &mut Tree,
) -> Result<ModulesReport, ModulesError> {
    let index = Index::load(kernel)?;
    let mut report = ModulesReport {
        version: kernel.version.clone(),
        ..Default::default()
    };

    // Closure over depends= and softdep=.
    let mut infos: BTreeMap<String, ModInfo> = BTreeMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    for w in wanted {
        if w.contains('/') {
            let matched = index.matching(w)?;
            if matched.is_empty() {
                return Err(ModulesError::NoMatch {
                    pattern: w.clone(),
                    version: kernel.version.clone(),
                });
            }
            queue.extend(matched);
            continue;
        }
        let name = canonical(w);
        if index.modules.contains_key(&name) {
            queue.push_back(name);
        } else if index.builtin.contains(&name) {
            report.builtin.push(name);
        } else {
            return Err(ModulesError::Unknown {
                suggestions: index.suggestions(&name),
                name: w.clone(),
                version: kernel.version.clone(),
            });
        }
    }
    let mut aliases: Option<BTreeMap<String, Vec<String>>> = None;
    while let Some(name) = queue.pop_front() {
        if infos.contains_key(&name) {
            continue;
        }
        let rel = &index.modules[&name];
        let info = parse_modinfo(&kernel.modules_dir.join(rel))?;
        for dep in info.depends() {
            if index.modules.contains_key(&dep) {
                queue.push_back(dep);
            } else if !index.builtin.contains(&dep) {
                return Err(ModulesError::BrokenDep {
                    module: name.clone(),
                    dep,
                    version: kernel.version.clone(),
                });
            }
        }
        for dep in info.softdeps() {
            if index.modules.contains_key(&dep) {
                queue.push_back(dep);
            } else if index.builtin.contains(&dep) {
                continue;
            } else {
                // A softdep may name an alias (ext4's `pre: crc32c` is the
                // `crc32c` alias of crc32c_generic and crc32c_intel);
                // modprobe loads every module that provides it.
                if aliases.is_none() {
                    aliases = Some(alias_index(kernel, &index)?);
                }
                match aliases.as_ref().and_then(|a| a.get(&dep)) {
                    Some(mods) => queue.extend(mods.iter().cloned()),
                    None if !report.missing_softdeps.contains(&dep) => {
                        report.missing_softdeps.push(dep)
                    }
                    None => {}
                }
            }
        }
        infos.insert(name, info);
    }

    // Copy the files.
    let dest = tree
        .host_path(&Path::new("/lib/modules").join(&kernel.version))
        .map_err(io_err(Path::new("/lib/modules")))?;
    for name in infos.keys() {
        let rel = &index.modules[name];
        let from = kernel.modules_dir.join(rel);
        let to = dest.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        report.bytes += std::fs::copy(&from, &to).map_err(io_err(&to))?;
    }
    std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        let from = kernel.modules_dir.join(f);
        if from.is_file() {
            std::fs::copy(&from, dest.join(f)).map_err(io_err(&from))?;
        }
    }

    write_index_files(kernel, &index, &infos, &dest)?;
    report.installed = infos.keys().cloned().collect();
    for (name, info) in &infos {
        let files: Vec<String> = info.values("firmware").map(str::to_string).collect();
        if !files.is_empty() {
            report.firmware.insert(name.clone(), files);
        }
    }
    report.builtin.sort();
    report.builtin.dedup();
    report.missing_softdeps.sort();
    Ok(report)
}

/// Every module of a kernel with its path and device aliases, and the
/// built-in drivers' aliases: what the full kernel can drive, to compare an
/// image with (`ipa-build inspect --hardware`). Debian's kernel package has
/// no `modules.alias` (depmod writes it on install), so each module's
/// `.modinfo` is read, on every core.
pub fn module_table(kernel: &Kernel) -> Result<ModuleTable, ModulesError> {
    let index = Index::load(kernel)?;
    let entries: Vec<(&String, &String)> = index.modules.iter().collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = entries.len().div_ceil(workers).max(1);
    let results: Vec<Result<Vec<(String, String)>, ModulesError>> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (name, rel) in part {
                        let data = read_module(&kernel.modules_dir.join(rel))?;
                        for (k, v) in modinfo_pairs(&data) {
                            if k == "alias" {
                                out.push((v, (*name).clone()));
                            }
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut table = ModuleTable {
        paths: index.modules.clone(),
        aliases: Vec::new(),
    };
    for r in results {
        table.aliases.extend(r?);
    }
    let read = |f: &str| std::fs::read(kernel.modules_dir.join(f)).unwrap_or_default();
    for line in String::from_utf8_lossy(&read("modules.builtin")).lines() {
        if let Some(name) = module_name(line.trim()) {
            table
                .paths
                .entry(name)
                .or_insert_with(|| line.trim().to_string());
        }
    }
    table.aliases.extend(crate::hardware::builtin_aliases(&read(
        "modules.builtin.modinfo",
    )));
    Ok(table)
}

/// The `key=value` pairs of a module's `.modinfo` section (empty when the
/// file is no ELF module: it then drives nothing).
fn modinfo_pairs(data: &[u8]) -> Vec<(String, String)> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    let Some(bytes) = file.section_by_name(".modinfo").and_then(|s| s.data().ok()) else {
        return Vec::new();
    };
    bytes
        .split(|&b| b == 0)
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Writes the text and binary module indexes of the installed set into `dest`.
fn write_index_files(
    kernel: &Kernel,
    index: &Index,
    infos: &BTreeMap<String, ModInfo>,
    dest: &Path,
) -> Result<(), ModulesError> {
    let read_or_empty = |f: &str| -> Result<Vec<u8>, ModulesError> {
        let p = kernel.modules_dir.join(f);
        match std::fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(&p)(e)),
        }
    };
    let builtin = String::from_utf8_lossy(&read_or_empty("modules.builtin")?).into_owned();
    let builtin_modinfo = read_or_empty("modules.builtin.modinfo")?;
    let files = index_files(index, infos, &builtin, &builtin_modinfo)?;
    let text = [
        ("modules.dep", files.dep.as_bytes()),
        ("modules.alias", files.alias.as_bytes()),
        ("modules.softdep", files.softdep.as_bytes()),
        ("modules.devname", files.devname.as_bytes()),
    ];
    let binary = files.binary.iter().map(|(n, b)| (*n, b.as_slice()));
    for (name, bytes) in text.into_iter().chain(binary) {
        let p = dest.join(name);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    Ok(())
}

/// Plain (wildcard-free) aliases of every module of the kernel → the modules
/// providing them. Reads all modules, so it is built only when a softdep needs it.
fn alias_index(
    kernel: &Kernel,
    index: &Index,
) -> Result<BTreeMap<String, Vec<String>>, ModulesError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, rel) in &index.modules {
        let info = parse_modinfo(&kernel.modules_dir.join(rel))?;
        for a in info.values("alias") {
            if !a.contains(['*', '?', '[', ':']) {
                out.entry(canonical(a)).or_default().push(name.clone());
            }
        }
    }
    Ok(out)
}

struct IndexFiles {
    dep: String,
    alias: String,
    softdep: String,
    devname: String,
    /// `modules.*.bin`, by file name.
    binary: Vec<(&'static str, Vec<u8>)>,
}

/// `kernel/x/e1000e.ko.xz` → `kernel/x/e1000e.ko`: `modules.order` names
/// modules uncompressed, whatever the files are called.
fn uncompressed(rel: &str) -> &str {
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|s| rel.strip_suffix(s))
        .unwrap_or(rel)
}

/// Generates the text and binary indexes for the installed set, as `depmod`
/// run on that set would.
///
/// A module's direct dependencies are the installed modules exporting the
/// symbols it needs, met in its symbol-table order (depmod's way, rather
/// than `.modinfo`'s `depends=`, because that order breaks the ties of the
/// topological sort and so decides each line's byte order).
fn index_files(
    index: &Index,
    infos: &BTreeMap<String, ModInfo>,
    builtin: &str,
    builtin_modinfo: &[u8],
) -> Result<IndexFiles, ModulesError> {
    // Module order: modules.order first, the rest by path.
    let mut names: Vec<&String> = infos.keys().collect();
    names.sort_by_key(|n| {
        let rel = &index.modules[*n];
        (
            index
                .order
                .get(uncompressed(rel))
                .copied()
                .unwrap_or(usize::MAX),
            rel.clone(),
        )
    });
    // A symbol exported twice belongs to the later module, as in depmod.
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        for s in &infos[*n].exports {
            owners.insert(s.as_str(), i);
        }
    }
    let deps: Vec<Vec<usize>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut direct: Vec<usize> = Vec::new();
            for sym in &infos[*n].needs {
                let sym = sym.strip_prefix('.').unwrap_or(sym);
                if let Some(&o) = owners.get(sym)
                    && o != i
                    && !direct.contains(&o)
                {
                    direct.push(o);
                }
            }
            direct
        })
        .collect();
    let sort_idx = topological_order(&deps);

    let mut dep = String::new();
    let mut alias = String::from("# Aliases extracted from modules themselves.\n");
    let mut softdep = String::from("# Soft dependencies extracted from modules themselves.\n");
    let mut devname = String::new();
    let mut indexed = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        // Transitive closure of the hard dependencies.
        let mut all = BTreeSet::new();
        let mut stack: Vec<usize> = deps[i].clone();
        while let Some(d) = stack.pop() {
            if d != i && all.insert(d) {
                stack.extend(deps[d].iter().copied());
            }
        }
        let mut all: Vec<usize> = all.into_iter().collect();
        all.sort_by_key(|&d| sort_idx[d]);
        let mut line = format!("{}:", index.modules[*name]);
        for d in all {
            let _ = write!(line, " {}", index.modules[names[d]]);
        }
        let _ = writeln!(dep, "{line}");
        let info = &infos[*name];
        for a in info.values("alias") {
            let _ = writeln!(alias, "alias {a} {name}");
        }
        for s in info.values("softdep") {
            let _ = writeln!(softdep, "softdep {name} {s}");
        }
        if let Some((node, kind, major, minor)) = device_node(info) {
            if devname.is_empty() {
                devname.push_str("# Device nodes to trigger on-demand module loading.\n");
            }
            let _ = writeln!(devname, "{name} {node} {kind}{major}:{minor}");
        }
        indexed.push(IndexedModule {
            name: name.as_str(),
            dep_line: line,
            aliases: info.values("alias").collect(),
            exports: info.exports.iter().map(String::as_str).collect(),
        });
    }
    let binary = kmod_index::write_indexes(&indexed, builtin, builtin_modinfo)?;
    Ok(IndexFiles {
        dep,
        alias,
        softdep,
        devname,
        binary,
    })
}

/// The device node a module serves, for `modules.devname`: a `devname:`
/// alias plus a `char-major-M-m` or `block-major-M-m` one (depmod's rule: the
/// aliases are read in order until both are seen). systemd's
/// `kmod-static-nodes` creates these nodes at boot, so opening `/dev/fuse` or
/// `/dev/loop-control` loads the module.
fn device_node(info: &ModInfo) -> Option<(&str, char, u32, u32)> {
    let mut node = None;
    let mut number = None;
    for a in info.values("alias") {
        if let Some(n) = a.strip_prefix("devname:") {
            node = Some(n);
        } else if let Some(rest) = a.strip_prefix("char-major-") {
            number = major_minor(rest).map(|(ma, mi)| ('c', ma, mi)).or(number);
        } else if let Some(rest) = a.strip_prefix("block-major-") {
            number = major_minor(rest).map(|(ma, mi)| ('b', ma, mi)).or(number);
        }
        if node.is_some() && number.is_some() {
            break;
        }
    }
    let (kind, major, minor) = number?;
    Some((node?, kind, major, minor))
}

/// `10-229` (or `10-229-anything`) → `(10, 229)`, as `sscanf("%u-%u")` reads it.
fn major_minor(s: &str) -> Option<(u32, u32)> {
    let (major, rest) = s.split_once('-')?;
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    Some((major.parse().ok()?, rest[..digits].parse().ok()?))
}

/// Each module's place in a topological order with users before what they
/// use: depmod's algorithm (Kahn's, with a LIFO of modules nothing left
/// uses, seeded in module order, dependencies released in the order the
/// module met them), so that the order matches depmod's exactly.
fn topological_order(deps: &[Vec<usize>]) -> Vec<usize> {
    let mut users = vec![0usize; deps.len()];
    for ds in deps {
        for &d in ds {
            users[d] += 1;
        }
    }
    let mut roots: Vec<usize> = (0..deps.len()).filter(|&i| users[i] == 0).collect();
    let mut sort_idx = vec![usize::MAX; deps.len()];
    let mut n_sorted = 0;
    while let Some(src) = roots.pop() {
        sort_idx[src] = n_sorted;
        n_sorted += 1;
        for &d in &deps[src] {
            users[d] -= 1;
            if users[d] == 0 {
                roots.push(d);
            }
        }
    }
    // A cycle (which modpost forbids) leaves modules unsorted; give them the
    // highest indexes in module order so the output stays deterministic.
    for idx in sort_idx.iter_mut().filter(|i| **i == usize::MAX) {
        *idx = n_sorted;
        n_sorted += 1;
    }
    sort_idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        assert_eq!(
            module_name("kernel/drivers/net/virtio_net.ko").as_deref(),
            Some("virtio_net")
        );
        assert_eq!(
            module_name("kernel/x/snd-hda-intel.ko.xz").as_deref(),
            Some("snd_hda_intel")
        );
        assert_eq!(module_name("modules.order"), None);
    }

    fn index_of(paths: &[&str]) -> Index {
        Index {
            modules: paths
                .iter()
                .map(|p| (module_name(p).unwrap(), p.to_string()))
                .collect(),
            builtin: BTreeSet::new(),
            order: HashMap::new(),
        }
    }

    #[test]
    fn path_patterns_match_modules_by_tree_path() {
        let index = index_of(&[
            "kernel/drivers/scsi/megaraid/megaraid_sas.ko.xz",
            "kernel/drivers/scsi/megaraid/megaraid_mbox.ko.xz",
            "kernel/drivers/scsi/hpsa.ko.xz",
            "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.zst",
            "kernel/drivers/net/ethernet/intel/igb/igb.ko",
        ]);
        let m = |p: &str| index.matching(p).unwrap();
        assert_eq!(
            m("kernel/drivers/scsi/megaraid/**"),
            ["megaraid_mbox", "megaraid_sas"]
        );
        // `*` stays in one directory: hpsa only, not megaraid's.
        assert_eq!(m("kernel/drivers/scsi/*"), ["hpsa"]);
        // A `.ko` pattern matches compressed files too.
        assert_eq!(m("kernel/drivers/net/**/e1000e.ko"), ["e1000e"]);
        assert_eq!(m("kernel/drivers/net/ethernet/intel/**"), ["e1000e", "igb"]);
        assert!(m("kernel/drivers/gpu/**").is_empty());
    }

    #[test]
    fn softdep_names_skip_the_markers() {
        let info = ModInfo {
            pairs: vec![("softdep".into(), "pre: crc32c-intel post: foo".into())],
            ..ModInfo::default()
        };
        assert_eq!(info.softdeps(), ["crc32c_intel", "foo"]);
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("virtio_nt", "virtio_net"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
    }

    #[test]
    fn missing_kernel_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_kernel(dir.path(), "vmlinuz").unwrap_err();
        assert!(err.to_string().contains("boot/vmlinuz-<version>"), "{err}");
    }
}
