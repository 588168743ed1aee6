//! Profiles: `profiles/NAME.yaml`, what to build, validated once into typed structs.
//!
//! A profile is read as a raw, all-optional document (so that `extends` can
//! tell "not set" from "set to the default"), merged along its `extends` chain
//! base first, then validated and given its defaults exactly once. Everything
//! downstream sees only [`Profile`]: plain values, no `Option` where a default
//! exists, every name and path already checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::config::diag::{
    ConfigError, ErrorKind, Scalar, Snippet, Source, check_image_path, did_you_mean,
};

/// The init system the image boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitStyle {
    /// Busybox `init` with an `/init` script and rc files: smallest, starts fastest.
    Busybox,
    /// systemd with units, networkd and a `.path` unit for the rescue user.
    Systemd,
}

/// How much of each dependency package goes into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dependencies {
    /// Install dependency packages whole, like apt would.
    Full,
    /// Dependency packages contribute only the shared libraries the ELF closure needs.
    Libraries,
}

/// An artifact the build writes: `output.formats` in a profile, `--format`
/// on the command line (one type for both, so the names cannot drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The kernel image (`NAME.kernel`).
    Kernel,
    /// The compressed newc initramfs (`NAME.initramfs`).
    Initramfs,
    /// A hybrid BIOS/UEFI ISO that boots from CD or USB.
    Iso,
}

/// Compression of the initramfs: the pack stage's own type, so that there is
/// one list of names and one table of level ranges.
pub use crate::initramfs::compress::Compression;

/// A profile after `extends` merging, validation and defaults: what the pipeline builds.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The profile's name: its file stem (`tinyipa` for `profiles/tinyipa.yaml`).
    pub name: String,
    /// One line saying what the image is for.
    pub description: String,
    /// The init system the image boots with.
    pub init: InitStyle,
    /// Elements to include, parents' first, duplicates dropped keeping the first.
    /// Their `depends` are resolved by [`crate::config::element::resolve`].
    pub elements: Vec<String>,
    /// Extra Debian packages to install, parents' first.
    pub packages: Vec<String>,
    /// Path globs never installed from packages, added to the pipeline's defaults.
    pub exclude: Vec<String>,
    /// Extra path globs deleted before packing, added to the pipeline's defaults.
    pub scrub: Vec<String>,
    /// Where packages come from and how they are chosen.
    pub debian: Debian,
    /// The kernel package, modules and command line.
    pub kernel: Kernel,
    /// What to write and how to compress it.
    pub output: Output,
    /// Size limits; an artifact over its limit fails the build.
    pub size_budget: SizeBudget,
    /// Reviewed exceptions to the secret audit.
    pub audit: Audit,
    /// The profile file this was loaded from.
    pub source: PathBuf,
    /// Every file of the `extends` chain, base first, ending with `source`.
    pub chain: Vec<PathBuf>,
    /// Where each entry of `elements` was written, same order, for diagnostics
    /// about elements (unknown, cyclic, wrong init). Empty for profiles built in code.
    #[serde(skip)]
    pub element_sites: Vec<Option<Snippet>>,
    /// Where each setting was written, so that a later stage can point at the
    /// profile line behind its error (an artifact over `size_budget.initramfs`,
    /// a package the archive lacks). Keys are field paths (`output.level`) for
    /// scalars and `field=value` (`packages=pciutils`, `kernel.modules=e1000e`,
    /// `audit.allow=/etc/x`) for list items; read it with [`Profile::site`].
    #[serde(skip)]
    pub sites: BTreeMap<String, Snippet>,
}

impl Profile {
    /// Where `field` was set, or with `item`, where that list item was written
    /// (the first time, if the chain lists it twice). `None` for defaults and
    /// for profiles built in code.
    ///
    /// ```no_run
    /// # fn f(p: &ipa_build::config::profile::Profile) {
    /// let at = p.site("size_budget.initramfs", None);
    /// let pkg = p.site("packages", Some("pciutils"));
    /// # }
    /// ```
    pub fn site(&self, field: &str, item: Option<&str>) -> Option<&Snippet> {
        match item {
            Some(v) => self.sites.get(&format!("{field}={v}")),
            None => self.sites.get(field),
        }
    }
}

/// The `debian:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Debian {
    /// apt sources. Empty means "the host's apt sources": the pipeline fills it in.
    /// A profile that sets it replaces its parent's list entirely.
    pub sources: Vec<AptSource>,
    /// Debian architecture; default `amd64`.
    pub arch: String,
    /// How dependency packages are installed; default `full`.
    pub dependencies: Dependencies,
}

/// One apt source (like one `deb` line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AptSource {
    /// Archive root, `http://`, `https://` or `file://`.
    pub uri: String,
    /// Suites, e.g. `bookworm`, `bookworm-updates`.
    pub suites: Vec<String>,
    /// Components, e.g. `main`.
    pub components: Vec<String>,
    /// Keyring that signs the archive's `InRelease`;
    /// default [`DEFAULT_KEYRING`].
    pub keyring: PathBuf,
}

/// The keyring used when an apt source names none.
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The `kernel:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// The Debian package (or metapackage) that provides the kernel; default `linux-image-amd64`.
    pub package: String,
    /// Modules to include (plus their dependency closure), parents' first,
    /// names as modinfo prints them (`-` and `_` are equivalent).
    pub modules: Vec<String>,
    /// Kernel command line; a child's replaces its parent's. Empty by default.
    pub cmdline: String,
}

/// The `output:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Output {
    /// Base name of the artifacts; default the profile's name.
    pub name: String,
    /// Artifacts to write; default `[kernel, initramfs]`.
    pub formats: Vec<Format>,
    /// Initramfs compression; default `zstd`.
    pub compression: Compression,
    /// Compression level, already checked against [`Compression::level_range`];
    /// `None` means the pack stage's default for the compressor.
    pub level: Option<u32>,
    /// ISO volume label (at most 32 of `A-Z0-9_`); `None` lets the ISO stage choose.
    pub iso_label: Option<String>,
}

/// The `size_budget:` section, in bytes; `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SizeBudget {
    /// Largest allowed kernel image.
    pub kernel: Option<u64>,
    /// Largest allowed compressed initramfs.
    pub initramfs: Option<u64>,
    /// Largest allowed ISO.
    pub iso: Option<u64>,
}

/// The `audit:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// Reviewed exceptions, parents' first.
    pub allow: Vec<AuditAllow>,
}

/// One reviewed exception to the secret audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditAllow {
    /// Image path the exception covers.
    pub path: String,
    /// Audit rule name that is allowed to match there (`private-key`, ...).
    pub rule: String,
    /// Why this is not a secret; required so that reviews leave a trace.
    pub reason: String,
}

// ---------------------------------------------------------------------------
// Raw documents: exactly what one file says, every field optional, every
// value with its position so that checks after merging can point at it.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    description: Option<Spanned<String>>,
    extends: Option<Spanned<String>>,
    init: Option<Spanned<InitStyle>>,
    #[serde(default)]
    elements: Vec<Spanned<String>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    scrub: Vec<Spanned<String>>,
    #[serde(default)]
    debian: RawDebian,
    #[serde(default)]
    kernel: RawKernel,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    size_budget: RawSizeBudget,
    #[serde(default)]
    audit: RawAudit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDebian {
    sources: Option<Spanned<Vec<RawSource>>>,
    arch: Option<Spanned<String>>,
    dependencies: Option<Spanned<Dependencies>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    uri: Spanned<String>,
    suites: Vec<Spanned<String>>,
    components: Vec<Spanned<String>>,
    keyring: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    package: Option<Spanned<String>>,
    #[serde(default)]
    modules: Vec<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: Option<Spanned<String>>,
    formats: Option<Spanned<Vec<Format>>>,
    compression: Option<Spanned<Compression>>,
    level: Option<Spanned<Scalar>>,
    iso_label: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSizeBudget {
    kernel: Option<Spanned<Scalar>>,
    initramfs: Option<Spanned<Scalar>>,
    iso: Option<Spanned<Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    allow: Vec<RawAllow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    path: Spanned<String>,
    rule: Spanned<String>,
    reason: Spanned<String>,
}

// ---------------------------------------------------------------------------
// Merging: each value remembers which file of the chain it came from.

/// A value from file number `file` of the chain, at `loc`.
#[derive(Debug)]
struct At<T> {
    value: T,
    loc: serde_saphyr::Location,
    file: usize,
}

impl<T> At<T> {
    fn new(s: Spanned<T>, file: usize) -> At<T> {
        At {
            value: s.value,
            loc: s.referenced,
            file,
        }
    }
}

/// The chain merged field by field: scalars of the child win, lists append, sources replace.
#[derive(Debug, Default)]
struct Merged {
    description: Option<At<String>>,
    init: Option<At<InitStyle>>,
    elements: Vec<At<String>>,
    packages: Vec<At<String>>,
    exclude: Vec<At<String>>,
    scrub: Vec<At<String>>,
    sources: Option<At<Vec<RawSource>>>,
    arch: Option<At<String>>,
    dependencies: Option<At<Dependencies>>,
    kernel_package: Option<At<String>>,
    modules: Vec<At<String>>,
    cmdline: Option<At<String>>,
    name: Option<At<String>>,
    formats: Option<At<Vec<Format>>>,
    compression: Option<At<Compression>>,
    level: Option<At<Scalar>>,
    iso_label: Option<At<String>>,
    budget_kernel: Option<At<Scalar>>,
    budget_initramfs: Option<At<Scalar>>,
    budget_iso: Option<At<Scalar>>,
    allow: Vec<(usize, RawAllow)>,
}

impl Merged {
    /// Lays `raw` (file number `f` of the chain) over what is merged so far.
    fn apply(&mut self, raw: RawProfile, f: usize) {
        fn set<T>(slot: &mut Option<At<T>>, v: Option<Spanned<T>>, f: usize) {
            if let Some(v) = v {
                *slot = Some(At::new(v, f));
            }
        }
        fn push<T>(list: &mut Vec<At<T>>, v: Vec<Spanned<T>>, f: usize) {
            list.extend(v.into_iter().map(|v| At::new(v, f)));
        }
        set(&mut self.description, raw.description, f);
        set(&mut self.init, raw.init, f);
        push(&mut self.elements, raw.elements, f);
        push(&mut self.packages, raw.packages, f);
        push(&mut self.exclude, raw.exclude, f);
        push(&mut self.scrub, raw.scrub, f);
        set(&mut self.sources, raw.debian.sources, f);
        set(&mut self.arch, raw.debian.arch, f);
        set(&mut self.dependencies, raw.debian.dependencies, f);
        set(&mut self.kernel_package, raw.kernel.package, f);
        push(&mut self.modules, raw.kernel.modules, f);
        set(&mut self.cmdline, raw.kernel.cmdline, f);
        set(&mut self.name, raw.output.name, f);
        set(&mut self.formats, raw.output.formats, f);
        set(&mut self.compression, raw.output.compression, f);
        set(&mut self.level, raw.output.level, f);
        set(&mut self.iso_label, raw.output.iso_label, f);
        set(&mut self.budget_kernel, raw.size_budget.kernel, f);
        set(&mut self.budget_initramfs, raw.size_budget.initramfs, f);
        set(&mut self.budget_iso, raw.size_budget.iso, f);
        self.allow
            .extend(raw.audit.allow.into_iter().map(|a| (f, a)));
    }
}

// ---------------------------------------------------------------------------
// Loading.

/// Loads profile `name_or_path`, follows its `extends` chain, validates and applies defaults.
///
/// A bare name (`tinyipa`) is looked up as `DIR/tinyipa.yaml` in `profile_dirs`,
/// first directory first; anything containing `/` or ending in `.yaml`/`.yml`
/// is a path. `extends` inside a file works the same way, except that a path
/// is relative to the file that says it.
pub fn load(name_or_path: &str, profile_dirs: &[PathBuf]) -> Result<Profile, ConfigError> {
    let top = find(name_or_path, profile_dirs, None)
        .ok_or_else(|| not_found(name_or_path, profile_dirs))?;
    // Read the chain child-first, then merge it base-first.
    let mut files: Vec<Source> = Vec::new();
    let mut raws: Vec<RawProfile> = Vec::new();
    let mut next = Some(top);
    while let Some(path) = next.take() {
        let src = Source::read(&path, "profile")?;
        let raw: RawProfile = src.parse()?;
        if let Some(ext) = &raw.extends {
            let base = path.parent().map(Path::to_path_buf);
            let target = find(&ext.value, profile_dirs, base.as_deref()).ok_or_else(|| {
                not_found(&ext.value, profile_dirs)
                    .field("extends")
                    .at(src.at(ext))
            })?;
            let same = |p: &Path| same_file(p, &target);
            if same(&path) || files.iter().any(|s| same(&s.path)) {
                let mut names: Vec<String> = files.iter().map(|s| short_name(&s.path)).collect();
                names.push(short_name(&path));
                names.push(short_name(&target));
                return Err(ConfigError::new(
                    ErrorKind::Cycle,
                    format!("`extends` loops back on itself: {}", names.join(" -> ")),
                )
                .field("extends")
                .at(src.at(ext))
                .help("remove the `extends` that closes the loop"));
            }
            next = Some(target);
        }
        files.push(src);
        raws.push(raw);
    }
    files.reverse();
    raws.reverse();
    let mut merged = Merged::default();
    for (f, raw) in raws.into_iter().enumerate() {
        merged.apply(raw, f);
    }
    validate(merged, &files)
}

/// Finds a profile by name (in `dirs`) or by path (relative to `base`, else as given).
fn find(name_or_path: &str, dirs: &[PathBuf], base: Option<&Path>) -> Option<PathBuf> {
    let is_path = name_or_path.contains('/')
        || name_or_path.ends_with(".yaml")
        || name_or_path.ends_with(".yml");
    if is_path {
        let p = Path::new(name_or_path);
        let p = match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.to_path_buf(),
        };
        return p.is_file().then_some(p);
    }
    dirs.iter()
        .map(|d| d.join(format!("{name_or_path}.yaml")))
        .find(|p| p.is_file())
}

/// A profile's name for a chain message: its file stem, which is what `extends` usually says.
fn short_name(p: &Path) -> String {
    p.file_stem().map_or_else(
        || p.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// "no profile named X", with the nearest existing name and where we looked.
fn not_found(name: &str, dirs: &[PathBuf]) -> ConfigError {
    let names = profile_names(dirs);
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let e = ConfigError::new(ErrorKind::NotFound, format!("no profile `{name}`"));
    if name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml") {
        return e.help(
            "check the path; a relative `extends` path is relative to the file that says it",
        );
    }
    let e = e.note(format!(
        "looked for `{name}.yaml` in: {}",
        if searched.is_empty() {
            "(no profile directories)".to_string()
        } else {
            searched.join(", ")
        }
    ));
    match did_you_mean(name, names.iter().map(String::as_str)) {
        Some(best) => e.help(format!("did you mean `{best}`?")),
        None if names.is_empty() => e,
        None => e.help(format!("available profiles: {}", names.join(", "))),
    }
}

/// Profile names in `dirs`, first directory winning, sorted.
fn profile_names(dirs: &[PathBuf]) -> Vec<String> {
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "yaml")
                && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
            {
                names.entry(stem.to_string()).or_insert(p);
            }
        }
    }
    names.into_keys().collect()
}

/// Every profile in `profile_dirs` as `(name, description)`, sorted by name;
/// a name in an earlier directory hides the same name in later ones.
/// A profile that does not load is an error: `list` is also a quick check.
pub fn list(profile_dirs: &[PathBuf]) -> Result<Vec<(String, String)>, ConfigError> {
    profile_names(profile_dirs)
        .into_iter()
        .map(|n| load(&n, profile_dirs).map(|p| (n, p.description)))
        .collect()
}

// ---------------------------------------------------------------------------
// Validation: turn the merged document into a Profile, or say what is wrong.

/// Checks every merged value and applies defaults.
fn validate(m: Merged, files: &[Source]) -> Result<Profile, ConfigError> {
    let leaf = files.last().map(|s| s.path.clone()).unwrap_or_default();
    let snip = |file: usize, loc: &serde_saphyr::Location| files.get(file).map(|s| s.snippet(loc));
    let bad = |field: &str, msg: String, file: usize, loc: &serde_saphyr::Location| {
        ConfigError::new(ErrorKind::InvalidValue, format!("`{field}`: {msg}"))
            .field(field)
            .at_opt(snip(file, loc))
    };
    let missing = |field: &str, help: &str| {
        ConfigError::new(
            ErrorKind::MissingField,
            format!(
                "profile {} has no `{field}` (neither it nor any profile it extends sets one)",
                leaf.display()
            ),
        )
        .field(field)
        .help(help.to_string())
    };

    let sites = record_sites(&m, files);
    let name = leaf
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("profile")
        .to_string();

    let description = m.description.ok_or_else(|| {
        missing(
            "description",
            "add `description: <one line saying what the image is for>`",
        )
    })?;
    check_one_line("description", &description.value)
        .map_err(|msg| bad("description", msg, description.file, &description.loc))?;
    let init = m
        .init
        .ok_or_else(|| missing("init", "add `init: busybox` or `init: systemd`"))?
        .value;

    // Elements: duplicates dropped, keeping the first (the parent's position).
    let mut elements = Vec::new();
    let mut element_sites = Vec::new();
    for (i, e) in m.elements.iter().enumerate() {
        let field = format!("elements[{i}]");
        check_name(&e.value, "element").map_err(|msg| bad(&field, msg, e.file, &e.loc))?;
        if !elements.contains(&e.value) {
            elements.push(e.value.clone());
            element_sites.push(snip(e.file, &e.loc));
        }
    }
    let packages = list_of(&m.packages, "packages", &bad, check_package)?;
    let exclude = list_of(&m.exclude, "exclude", &bad, check_glob)?;
    let scrub = list_of(&m.scrub, "scrub", &bad, check_glob)?;

    // debian
    let mut sources = Vec::new();
    if let Some(s) = m.sources {
        if s.value.is_empty() {
            return Err(bad(
                "debian.sources",
                "the list is empty; remove the key to use the host's apt sources".to_string(),
                s.file,
                &s.loc,
            ));
        }
        for (i, src) in s.value.into_iter().enumerate() {
            sources.push(check_source(src, i, s.file, &bad)?);
        }
    }
    let arch = match m.arch {
        Some(a) => {
            check_name(&a.value, "architecture")
                .map_err(|msg| bad("debian.arch", msg, a.file, &a.loc))?;
            a.value
        }
        None => "amd64".to_string(),
    };
    let dependencies = m.dependencies.map_or(Dependencies::Full, |d| d.value);

    // kernel
    let package = match m.kernel_package {
        Some(p) => {
            check_package(&p.value).map_err(|msg| bad("kernel.package", msg, p.file, &p.loc))?;
            p.value
        }
        None => "linux-image-amd64".to_string(),
    };
    let modules = list_of(&m.modules, "kernel.modules", &bad, check_module)?;
    let cmdline = match m.cmdline {
        Some(c) => {
            check_one_line("kernel.cmdline", &c.value)
                .map_err(|msg| bad("kernel.cmdline", msg, c.file, &c.loc))?;
            c.value.trim().to_string()
        }
        None => String::new(),
    };

    // output
    let out_name = match m.name {
        Some(n) => {
            if n.value.is_empty()
                || n.value.contains('/')
                || n.value.starts_with('.')
                || n.value.chars().any(char::is_whitespace)
            {
                return Err(bad(
                    "output.name",
                    format!("`{}` is not a usable file name", n.value),
                    n.file,
                    &n.loc,
                )
                .help("use letters, digits, `-`, `_` and `.`, not starting with `.`"));
            }
            n.value
        }
        None => name.clone(),
    };
    let formats = match m.formats {
        Some(f) => {
            if f.value.is_empty() {
                return Err(bad(
                    "output.formats",
                    "the list is empty: the build would write nothing".to_string(),
                    f.file,
                    &f.loc,
                )
                .help("expected one or more of kernel, initramfs, iso"));
            }
            let mut v = Vec::new();
            for x in f.value {
                if !v.contains(&x) {
                    v.push(x);
                }
            }
            v
        }
        None => vec![Format::Kernel, Format::Initramfs],
    };
    let compression = m
        .compression
        .as_ref()
        .map_or(Compression::Zstd, |c| c.value);
    let level = match m.level {
        Some(l) => {
            let range = compression.levels();
            let n = match &l.value {
                Scalar::Int(n) => Some(*n),
                Scalar::Str(s) => s.trim().parse::<i128>().ok(),
                Scalar::Other(_) => None,
            };
            let Some(n) = n else {
                return Err(bad(
                    "output.level",
                    format!("`{}` is not a number", m_text(&l.value)),
                    l.file,
                    &l.loc,
                )
                .help(format!(
                    "{} accepts {}..={}",
                    compression.name(),
                    range.start(),
                    range.end()
                )));
            };
            let ok = u32::try_from(n).ok().filter(|n| range.contains(n));
            match ok {
                Some(n) => Some(n),
                None => {
                    let shown = m_text(&l.value);
                    let whence = match &m.compression {
                        Some(c) if c.file == l.file => String::new(),
                        Some(c) => {
                            let at = snip(c.file, &c.loc)
                                .map(|s| format!("{}:{}:{}", s.path.display(), s.line, s.column))
                                .unwrap_or_default();
                            format!(" (`output.compression: {}` is set at {at})", c.value.name())
                        }
                        None => " (the default compression)".to_string(),
                    };
                    return Err(bad(
                        "output.level",
                        format!(
                            "level {shown} is out of range for {}{whence}",
                            compression.name()
                        ),
                        l.file,
                        &l.loc,
                    )
                    .help(format!(
                        "{} accepts {}..={}",
                        compression.name(),
                        range.start(),
                        range.end()
                    )));
                }
            }
        }
        None => None,
    };
    let iso_label = match m.iso_label {
        Some(l) => {
            let v = &l.value;
            if v.is_empty()
                || v.chars().count() > 32
                || !v
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(bad(
                    "output.iso_label",
                    format!("`{v}` is not a valid ISO volume label"),
                    l.file,
                    &l.loc,
                )
                .help(format!(
                    "use 1 to 32 characters of A-Z, 0-9 and _, e.g. `{}`",
                    suggest_label(v)
                )));
            }
            Some(l.value)
        }
        None => None,
    };

    // size_budget
    let size = |s: Option<At<Scalar>>, field: &str| -> Result<Option<u64>, ConfigError> {
        match s {
            None => Ok(None),
            Some(s) => parse_size(&s.value)
                .map(Some)
                .map_err(|msg| {
                    bad(field, msg, s.file, &s.loc)
                        .help("write a byte count or a number with a unit: `20MiB`, `512 KiB`, `1.5GiB`, `20MB`")
                }),
        }
    };
    let size_budget = SizeBudget {
        kernel: size(m.budget_kernel, "size_budget.kernel")?,
        initramfs: size(m.budget_initramfs, "size_budget.initramfs")?,
        iso: size(m.budget_iso, "size_budget.iso")?,
    };

    // audit
    let mut allow = Vec::new();
    for (i, (f, a)) in m.allow.into_iter().enumerate() {
        let field = format!("audit.allow[{i}]");
        check_image_path(&a.path.value)
            .map_err(|msg| bad(&format!("{field}.path"), msg, f, &a.path.referenced))?;
        check_glob(&a.path.value)
            .map_err(|msg| bad(&format!("{field}.path"), msg, f, &a.path.referenced))?;
        if a.rule.value.trim().is_empty() {
            return Err(bad(
                &format!("{field}.rule"),
                "the rule name is empty".to_string(),
                f,
                &a.rule.referenced,
            ));
        }
        if a.reason.value.trim().is_empty() {
            return Err(bad(
                &format!("{field}.reason"),
                "the reason is empty".to_string(),
                f,
                &a.reason.referenced,
            )
            .help("say why this finding is not a secret; reviewers read it"));
        }
        allow.push(AuditAllow {
            path: a.path.value,
            rule: a.rule.value,
            reason: a.reason.value,
        });
    }

    Ok(Profile {
        name,
        description: description.value.trim().to_string(),
        init,
        elements,
        packages,
        exclude,
        scrub,
        debian: Debian {
            sources,
            arch,
            dependencies,
        },
        kernel: Kernel {
            package,
            modules,
            cmdline,
        },
        output: Output {
            name: out_name,
            formats,
            compression,
            level,
            iso_label,
        },
        size_budget,
        audit: Audit { allow },
        source: leaf,
        chain: files.iter().map(|s| s.path.clone()).collect(),
        element_sites,
        sites,
    })
}

/// The position of every merged value, keyed as documented on [`Profile::sites`].
fn record_sites(m: &Merged, files: &[Source]) -> BTreeMap<String, Snippet> {
    let mut sites = BTreeMap::new();
    let mut put = |key: String, file: usize, loc: &serde_saphyr::Location| {
        if let Some(src) = files.get(file) {
            sites.entry(key).or_insert_with(|| src.snippet(loc));
        }
    };
    for (field, list) in [
        ("elements", &m.elements),
        ("packages", &m.packages),
        ("exclude", &m.exclude),
        ("scrub", &m.scrub),
        ("kernel.modules", &m.modules),
    ] {
        for it in list {
            put(format!("{field}={}", it.value), it.file, &it.loc);
        }
    }
    macro_rules! scalar {
        ($($field:literal => $slot:expr),* $(,)?) => {
            $(if let Some(v) = &$slot {
                put($field.to_string(), v.file, &v.loc);
            })*
        };
    }
    scalar! {
        "description" => m.description,
        "init" => m.init,
        "debian.sources" => m.sources,
        "debian.arch" => m.arch,
        "debian.dependencies" => m.dependencies,
        "kernel.package" => m.kernel_package,
        "kernel.cmdline" => m.cmdline,
        "output.name" => m.name,
        "output.formats" => m.formats,
        "output.compression" => m.compression,
        "output.level" => m.level,
        "output.iso_label" => m.iso_label,
        "size_budget.kernel" => m.budget_kernel,
        "size_budget.initramfs" => m.budget_initramfs,
        "size_budget.iso" => m.budget_iso,
    }
    for (file, a) in &m.allow {
        put(
            format!("audit.allow={}", a.path.value),
            *file,
            &a.path.referenced,
        );
    }
    sites
}

/// A scalar as the user wrote it, near enough for a message.
fn m_text(v: &Scalar) -> String {
    match v {
        Scalar::Int(n) => n.to_string(),
        Scalar::Str(s) | Scalar::Other(s) => s.clone(),
    }
}

type Bad<'a> = dyn Fn(&str, String, usize, &serde_saphyr::Location) -> ConfigError + 'a;

/// Checks every item of an appended list with `check`, naming `field[i]` on failure.
fn list_of(
    items: &[At<String>],
    field: &str,
    bad: &Bad<'_>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        check(&it.value).map_err(|msg| bad(&format!("{field}[{i}]"), msg, it.file, &it.loc))?;
        if !out.contains(&it.value) {
            out.push(it.value.clone());
        }
    }
    Ok(out)
}

fn check_source(
    s: RawSource,
    i: usize,
    file: usize,
    bad: &Bad<'_>,
) -> Result<AptSource, ConfigError> {
    let field = format!("debian.sources[{i}]");
    let uri = s.uri.value.trim_end_matches('/').to_string();
    let scheme_ok = ["http://", "https://", "file://"]
        .iter()
        .any(|p| uri.starts_with(p) && uri.len() > p.len());
    if !scheme_ok {
        return Err(bad(
            &format!("{field}.uri"),
            format!(
                "`{}` is not an http://, https:// or file:// URI",
                s.uri.value
            ),
            file,
            &s.uri.referenced,
        )
        .help("e.g. `http://mirror.example.org/debian` or `file:///srv/mirror/debian`"));
    }
    for (what, list) in [("suites", &s.suites), ("components", &s.components)] {
        if list.is_empty() {
            return Err(bad(
                &format!("{field}.{what}"),
                format!("no {what} given"),
                file,
                &s.uri.referenced,
            ));
        }
        for (j, v) in list.iter().enumerate() {
            if v.value.is_empty() || v.value.contains(['/', ' ']) && what == "components" {
                return Err(bad(
                    &format!("{field}.{what}[{j}]"),
                    format!("`{}` is not a valid name", v.value),
                    file,
                    &v.referenced,
                ));
            }
        }
    }
    let keyring = match s.keyring {
        Some(k) => {
            if !k.value.starts_with('/') {
                return Err(bad(
                    &format!("{field}.keyring"),
                    format!("`{}` is not an absolute path", k.value),
                    file,
                    &k.referenced,
                ));
            }
            PathBuf::from(k.value)
        }
        None => PathBuf::from(DEFAULT_KEYRING),
    };
    Ok(AptSource {
        uri,
        suites: s.suites.into_iter().map(|v| v.value).collect(),
        components: s.components.into_iter().map(|v| v.value).collect(),
        keyring,
    })
}

fn check_one_line(field: &str, v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("is empty".to_string());
    }
    if v.trim().contains('\n') {
        return Err(format!("`{field}` must be a single line"));
    }
    Ok(())
}

/// Element and architecture names: what may appear as a directory name and in messages.
pub(crate) fn check_name(v: &str, what: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !v.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a valid {what} name (letters, digits, `-`, `_`, `.`)"
        ))
    }
}

/// Debian package names (policy §5.6.7), optionally with `:arch`.
fn check_package(v: &str) -> Result<(), String> {
    let name = v.split_once(':').map_or(v, |(n, _)| n);
    let ok = name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`)"
        ))
    }
}

/// Kernel module names as modinfo prints them.
fn check_module(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else if v.ends_with(".ko") {
        Err(format!("`{v}`: write the module name without `.ko`"))
    } else {
        Err(format!("`{v}` is not a kernel module name"))
    }
}

/// Absolute image path globs that globset can compile.
fn check_glob(v: &str) -> Result<(), String> {
    check_image_path(v)?;
    globset::Glob::new(v)
        .map(|_| ())
        .map_err(|e| format!("`{v}` is not a valid glob: {}", e.kind()))
}

fn suggest_label(v: &str) -> String {
    let s: String = v
        .chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if s.is_empty() { "IPA".to_string() } else { s }
}

/// Parses a size: a byte count, or a number (fractions allowed) with a unit:
/// `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000), `KiB`/`MiB`/`GiB`/`TiB`
/// (powers of 1024); units are case-insensitive, a space before them optional.
/// Fractional bytes are rounded down.
pub fn parse_size(v: &Scalar) -> Result<u64, String> {
    let text = match v {
        Scalar::Int(n) => {
            return u64::try_from(*n).map_err(|_| format!("{n} is not a byte count"));
        }
        Scalar::Str(s) => s.trim(),
        Scalar::Other(s) => return Err(format!("`{s}` is not a size")),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let unit = unit.trim();
    let mult: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000u128.pow(2),
        "gb" | "g" => 1000u128.pow(3),
        "tb" | "t" => 1000u128.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            let units = ["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"];
            let hint = did_you_mean(unit, units)
                .map(|u| format!(" (did you mean `{u}`?)"))
                .unwrap_or_default();
            return Err(format!("`{text}` has an unknown unit `{unit}`{hint}"));
        }
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 9 {
        return Err(format!("`{text}` is not a size"));
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| format!("`{text}` is not a size"))?
    };
    let frac_val: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse()
            .map_err(|_| format!("`{text}` is not a size"))?
    };
    let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(0));
    let bytes = int
        .checked_mul(mult)
        .and_then(|b| b.checked_add(frac_val * mult / scale))
        .ok_or_else(|| format!("`{text}` is too large"))?;
    u64::try_from(bytes).map_err(|_| format!("`{text}` is too large"))
}
