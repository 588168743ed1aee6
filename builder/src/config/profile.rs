//! Profiles: `profiles/NAME.yaml`, what to build, validated once into typed structs.
//!
//! A profile is read as a raw, all-optional document (so that `extends` can
//! tell "not set" from "set to the default"), merged along its `extends` chain
//! base first, then validated and given its defaults exactly once. Everything
//! downstream sees only [`Profile`]: plain values, no `Option` where a default
//! exists, every name and path already checked.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::config::diag::{ConfigError, ErrorKind, Scalar, Snippet, Source, did_you_mean};
use crate::config::options::Overrides;
use crate::config::validate;

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

/// Which firmware files the image carries for its modules (`kernel.firmware`).
///
/// Only the files the image's modules name (`modinfo` `firmware=`) are
/// copied, never a whole firmware package. Files from Debian's
/// `non-free-firmware` component are redistributable but not free software,
/// and Ironic's rescue documentation warns about proprietary blobs, so
/// taking them is a choice the profile writes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// From `main` (firmware-linux-free and the other free firmware packages)
    /// and `non-free-firmware`: what most NICs and HBAs need to run.
    Redistributable,
    /// From `main` only.
    Free,
    /// None; the default.
    None,
}

impl Firmware {
    /// The archive components whose packages may supply firmware files.
    pub fn components(self) -> &'static [&'static str] {
        match self {
            Firmware::Redistributable => &["main", "non-free-firmware"],
            Firmware::Free => &["main"],
            Firmware::None => &[],
        }
    }
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
    /// The Debian release (`trixie`) the image is built from, whatever the
    /// build host runs; its codename replaces that of every Debian suite of
    /// the sources. `None` keeps the sources' own suites.
    pub release: Option<String>,
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
    /// Modules to include (plus their dependency closure), parents' first:
    /// names as modinfo prints them (`-` and `_` are equivalent), or
    /// kernel-tree path patterns (`kernel/drivers/net/ethernet/intel/**`).
    pub modules: Vec<String>,
    /// Kernel command line; a child's replaces its parent's. Empty by default.
    pub cmdline: String,
    /// Firmware for the modules; default [`Firmware::None`].
    pub firmware: Firmware,
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
    release: Option<Spanned<String>>,
    arch: Option<Spanned<String>>,
    dependencies: Option<Spanned<Dependencies>>,
}

#[derive(Debug, Clone, Deserialize)]
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
    firmware: Option<Spanned<Firmware>>,
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
// Merging: the chain's files are read as they are; a value is looked up by its
// field name when it is checked (see `Ctx::scalar` and `Ctx::items`), so no
// merged copy of the document exists and each field is named once.

/// A value from file number `file` of the chain, at `loc`.
#[derive(Debug)]
struct At<T> {
    value: T,
    loc: serde_saphyr::Location,
    file: usize,
}

impl<T: Clone> At<T> {
    fn of(s: &Spanned<T>, file: usize) -> At<T> {
        At {
            value: s.value.clone(),
            loc: s.referenced,
            file,
        }
    }
}

/// The "file number" of a value from the command line: there is no such
/// file in the chain, so a message about it has no snippet to quote.
const CLI: usize = usize::MAX;

impl<T> At<T> {
    /// A value given on the command line.
    fn cli(value: T) -> At<T> {
        At {
            value,
            loc: serde_saphyr::Location::UNKNOWN,
            file: CLI,
        }
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
    load_with(name_or_path, profile_dirs, &Overrides::default())
}

/// [`load`] with the command line's overrides (`--compression`, `--level`,
/// `--format`) laid over the merged chain *before* validation, so that a
/// value from the command line is held to the same checks, and refused
/// with the same message, as the same value written in the profile.
pub fn load_with(
    name_or_path: &str,
    profile_dirs: &[PathBuf],
    overrides: &Overrides,
) -> Result<Profile, ConfigError> {
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
    validate(&raws, &files, overrides)
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
// One function per section of the profile; `validate` reads like the file.

/// The chain being checked: its documents, base first (file `f` of the
/// chain is `raws[f]` and `files[f]`), and where each value that was looked
/// up came from, for [`Profile::sites`].
struct Ctx<'a> {
    raws: &'a [RawProfile],
    files: &'a [Source],
    /// The profile that was asked for (the end of the chain).
    leaf: PathBuf,
    sites: RefCell<BTreeMap<String, Snippet>>,
}

impl Ctx<'_> {
    /// Scalar `field`: the value of the last file of the chain that sets it
    /// (a child overrides its parent), `None` if none does.
    fn scalar<T: Clone>(
        &self,
        field: &str,
        pick: impl Fn(&RawProfile) -> Option<&Spanned<T>>,
    ) -> Option<At<T>> {
        let (file, v) = self
            .raws
            .iter()
            .enumerate()
            .rev()
            .find_map(|(f, raw)| pick(raw).map(|v| (f, v)))?;
        let at = At::of(v, file);
        self.record(field.to_string(), &at);
        Some(at)
    }

    /// List `field`: the items of every file of the chain, parents' first.
    fn items(
        &self,
        field: &str,
        pick: impl Fn(&RawProfile) -> &[Spanned<String>],
    ) -> Vec<At<String>> {
        let mut out = Vec::new();
        for (f, raw) in self.raws.iter().enumerate() {
            for v in pick(raw) {
                let at = At::of(v, f);
                self.record(format!("{field}={}", at.value), &at);
                out.push(at);
            }
        }
        out
    }

    /// Remembers where `key` was first written (nothing for the command line).
    fn record<T>(&self, key: String, at: &At<T>) {
        if let Some(src) = self.files.get(at.file) {
            self.sites
                .borrow_mut()
                .entry(key)
                .or_insert_with(|| src.snippet(&at.loc));
        }
    }

    /// The snippet of file `file` at `loc`; `None` for a value from the
    /// command line ([`CLI`]), which has no file.
    fn snip(&self, file: usize, loc: &serde_saphyr::Location) -> Option<Snippet> {
        self.files.get(file).map(|s| s.snippet(loc))
    }

    /// "`field`: msg" pointing at where `file` wrote the value.
    fn bad(
        &self,
        field: &str,
        msg: String,
        file: usize,
        loc: &serde_saphyr::Location,
    ) -> ConfigError {
        ConfigError::new(ErrorKind::InvalidValue, format!("`{field}`: {msg}"))
            .field(field)
            .at_opt(self.snip(file, loc))
    }

    /// [`Ctx::bad`] for a merged value.
    fn bad_at<T>(&self, field: &str, msg: String, at: &At<T>) -> ConfigError {
        self.bad(field, msg, at.file, &at.loc)
    }

    /// Runs a shared validator on a merged string, naming `field` on failure.
    fn check(
        &self,
        field: &str,
        at: &At<String>,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<(), ConfigError> {
        check(&at.value).map_err(|msg| self.bad_at(field, msg, at))
    }

    /// A key no file of the chain sets, though it has no default.
    fn missing(&self, field: &str, help: &str) -> ConfigError {
        ConfigError::new(
            ErrorKind::MissingField,
            format!(
                "profile {} has no `{field}` (neither it nor any profile it extends sets one)",
                self.leaf.display()
            ),
        )
        .field(field)
        .help(help.to_string())
    }

    /// Checks every item of list `field` (see [`Ctx::items`]) with `check`,
    /// naming `field[i]` on failure; duplicates are dropped, keeping the first.
    fn list_of(
        &self,
        field: &str,
        pick: impl Fn(&RawProfile) -> &[Spanned<String>],
        check: fn(&str) -> Result<(), String>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut out: Vec<String> = Vec::new();
        for (i, it) in self.items(field, pick).iter().enumerate() {
            self.check(&format!("{field}[{i}]"), it, check)?;
            if !out.contains(&it.value) {
                out.push(it.value.clone());
            }
        }
        Ok(out)
    }
}

/// Checks every value of the chain and applies defaults.
fn validate(
    raws: &[RawProfile],
    files: &[Source],
    overrides: &Overrides,
) -> Result<Profile, ConfigError> {
    let leaf = files.last().map(|s| s.path.clone()).unwrap_or_default();
    let cx = Ctx {
        raws,
        files,
        leaf: leaf.clone(),
        sites: RefCell::default(),
    };
    let name = leaf
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("profile")
        .to_string();
    let description = description(&cx)?;
    let init = cx
        .scalar("init", |r| r.init.as_ref())
        .ok_or_else(|| cx.missing("init", "add `init: busybox` or `init: systemd`"))?
        .value;
    let (elements, element_sites) = elements(&cx)?;
    let packages = cx.list_of("packages", |r| &r.packages, validate::check_package)?;
    let exclude = cx.list_of("exclude", |r| &r.exclude, validate::check_glob)?;
    let scrub = cx.list_of("scrub", |r| &r.scrub, validate::check_glob)?;
    let debian = debian(&cx)?;
    let kernel = kernel(&cx)?;
    let output = output(&cx, overrides, &name)?;
    let size_budget = size_budget(&cx)?;
    let audit = audit(&cx)?;
    Ok(Profile {
        name,
        description,
        init,
        elements,
        packages,
        exclude,
        scrub,
        debian,
        kernel,
        output,
        size_budget,
        audit,
        source: leaf,
        chain: files.iter().map(|s| s.path.clone()).collect(),
        element_sites,
        sites: cx.sites.into_inner(),
    })
}

/// `description`: required, one line.
fn description(cx: &Ctx<'_>) -> Result<String, ConfigError> {
    let d = cx.scalar("description", |r| r.description.as_ref());
    let d = d.ok_or_else(|| {
        cx.missing(
            "description",
            "add `description: <one line saying what the image is for>`",
        )
    })?;
    cx.check("description", &d, |v| {
        validate::check_one_line("description", v)
    })?;
    Ok(d.value.trim().to_string())
}

/// `elements`: valid names, duplicates dropped keeping the first (the
/// parent's position), each with where it was written.
fn elements(cx: &Ctx<'_>) -> Result<(Vec<String>, Vec<Option<Snippet>>), ConfigError> {
    let mut elements = Vec::new();
    let mut element_sites = Vec::new();
    for (i, e) in cx.items("elements", |r| &r.elements).iter().enumerate() {
        cx.check(&format!("elements[{i}]"), e, |v| {
            validate::check_name(v, "element")
        })?;
        if !elements.contains(&e.value) {
            elements.push(e.value.clone());
            element_sites.push(cx.snip(e.file, &e.loc));
        }
    }
    Ok((elements, element_sites))
}

/// `debian:` sources, architecture and how dependencies are installed.
fn debian(cx: &Ctx<'_>) -> Result<Debian, ConfigError> {
    let mut sources = Vec::new();
    if let Some(s) = cx.scalar("debian.sources", |r| r.debian.sources.as_ref()) {
        if s.value.is_empty() {
            return Err(cx.bad_at(
                "debian.sources",
                "the list is empty; remove the key to use the host's apt sources".to_string(),
                &s,
            ));
        }
        for (i, src) in s.value.iter().enumerate() {
            sources.push(check_source(cx, src, i, s.file)?);
        }
    }
    let arch = match cx.scalar("debian.arch", |r| r.debian.arch.as_ref()) {
        Some(a) => {
            cx.check("debian.arch", &a, |v| {
                validate::check_name(v, "architecture")
            })?;
            a.value
        }
        None => "amd64".to_string(),
    };
    let release = match cx.scalar("debian.release", |r| r.debian.release.as_ref()) {
        Some(r) => {
            validate::check_known(&r.value, "Debian release", crate::debian::suites::RELEASES)
                .map_err(|(msg, help)| cx.bad_at("debian.release", msg, &r).help(help))?;
            Some(r.value)
        }
        None => None,
    };
    Ok(Debian {
        sources,
        release,
        arch,
        dependencies: cx
            .scalar("debian.dependencies", |r| r.debian.dependencies.as_ref())
            .map_or(Dependencies::Full, |d| d.value),
    })
}

/// `kernel:` package, modules and command line.
fn kernel(cx: &Ctx<'_>) -> Result<Kernel, ConfigError> {
    let package = match cx.scalar("kernel.package", |r| r.kernel.package.as_ref()) {
        Some(p) => {
            cx.check("kernel.package", &p, validate::check_package)?;
            p.value
        }
        None => "linux-image-amd64".to_string(),
    };
    let cmdline = match cx.scalar("kernel.cmdline", |r| r.kernel.cmdline.as_ref()) {
        Some(c) => {
            cx.check("kernel.cmdline", &c, |v| {
                validate::check_one_line("kernel.cmdline", v)
            })?;
            c.value.trim().to_string()
        }
        None => String::new(),
    };
    Ok(Kernel {
        package,
        modules: cx.list_of(
            "kernel.modules",
            |r| &r.kernel.modules,
            validate::check_module_entry,
        )?,
        cmdline,
        firmware: cx
            .scalar("kernel.firmware", |r| r.kernel.firmware.as_ref())
            .map_or(Firmware::None, |f| f.value),
    })
}

/// `output:` name, formats, compression and level, ISO label.
fn output(cx: &Ctx<'_>, o: &Overrides, profile_name: &str) -> Result<Output, ConfigError> {
    let name = match cx.scalar("output.name", |r| r.output.name.as_ref()) {
        Some(n) => {
            validate::check_file_name(&n.value).map_err(|msg| {
                cx.bad_at("output.name", msg, &n)
                    .help("use letters, digits, `-`, `_` and `.`, not starting with `.`")
            })?;
            n.value
        }
        None => profile_name.to_string(),
    };
    let (compression_at, level_at) = compression_and_level(cx, o);
    let formats_at = match o.formats.as_slice() {
        [] => cx.scalar("output.formats", |r| r.output.formats.as_ref()),
        given => Some(At::cli(given.to_vec())),
    };
    let compression = compression_at
        .as_ref()
        .map_or(Compression::Zstd, |c| c.value);
    let iso_label = match cx.scalar("output.iso_label", |r| r.output.iso_label.as_ref()) {
        Some(l) => {
            validate::check_iso_label(&l.value).map_err(|msg| {
                cx.bad_at("output.iso_label", msg, &l).help(format!(
                    "use 1 to 32 characters of A-Z, 0-9 and _, e.g. `{}`",
                    validate::suggest_label(&l.value)
                ))
            })?;
            Some(l.value)
        }
        None => None,
    };
    Ok(Output {
        name,
        formats: formats(cx, formats_at)?,
        compression,
        level: level(cx, level_at, compression_at.as_ref())?,
        iso_label,
    })
}

/// `output.compression` and `output.level` with the command line's
/// overrides laid over the chain. A different compression drops the chain's
/// level, which was chosen for the other compressor; `--level` then sets its own.
fn compression_and_level(
    cx: &Ctx<'_>,
    o: &Overrides,
) -> (Option<At<Compression>>, Option<At<Scalar>>) {
    let mut compression = cx.scalar("output.compression", |r| r.output.compression.as_ref());
    let mut level = cx.scalar("output.level", |r| r.output.level.as_ref());
    if let Some(c) = o.compression {
        if compression.as_ref().map_or(Compression::Zstd, |x| x.value) != c {
            level = None;
            cx.sites.borrow_mut().remove("output.level");
        }
        compression = Some(At::cli(c));
    }
    if let Some(l) = o.level {
        level = Some(At::cli(Scalar::Int(i128::from(l))));
    }
    (compression, level)
}

/// `output.formats`: not empty, duplicates dropped.
fn formats(cx: &Ctx<'_>, f: Option<At<Vec<Format>>>) -> Result<Vec<Format>, ConfigError> {
    let Some(f) = f else {
        return Ok(vec![Format::Kernel, Format::Initramfs]);
    };
    if f.value.is_empty() {
        return Err(cx
            .bad_at(
                "output.formats",
                "the list is empty: the build would write nothing".to_string(),
                &f,
            )
            .help("expected one or more of kernel, initramfs, iso"));
    }
    let mut v = Vec::new();
    for x in f.value {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    Ok(v)
}

/// `output.level`: a number in the compressor's range ([`Compression::levels`]).
/// The same check whether the level comes from a profile or from `--level`.
fn level(
    cx: &Ctx<'_>,
    l: Option<At<Scalar>>,
    compression: Option<&At<Compression>>,
) -> Result<Option<u32>, ConfigError> {
    let Some(l) = l else {
        return Ok(None);
    };
    let kind = compression.map_or(Compression::Zstd, |c| c.value);
    let range = kind.levels();
    let accepts = format!(
        "{} accepts {}..={}",
        kind.name(),
        range.start(),
        range.end()
    );
    let shown = validate::scalar_text(&l.value);
    let Some(n) = validate::scalar_number(&l.value) else {
        return Err(cx
            .bad_at("output.level", format!("`{shown}` is not a number"), &l)
            .help(accepts));
    };
    if let Some(n) = u32::try_from(n).ok().filter(|n| range.contains(n)) {
        return Ok(Some(n));
    }
    let whence = match compression {
        Some(c) if c.file == l.file => String::new(),
        Some(c) => match cx.snip(c.file, &c.loc) {
            Some(s) => format!(
                " (`output.compression: {}` is set at {}:{}:{})",
                kind.name(),
                s.path.display(),
                s.line,
                s.column
            ),
            None => format!(" (`--compression {}`)", kind.name()),
        },
        None => " (the default compression)".to_string(),
    };
    let msg = format!("level {shown} is out of range for {}{whence}", kind.name());
    Err(cx.bad_at("output.level", msg, &l).help(accepts))
}

/// `size_budget:` sizes in bytes or with a unit.
fn size_budget(cx: &Ctx<'_>) -> Result<SizeBudget, ConfigError> {
    let size = |field: &str,
                pick: fn(&RawSizeBudget) -> Option<&Spanned<Scalar>>|
     -> Result<Option<u64>, ConfigError> {
        let Some(s) = cx.scalar(field, |r| pick(&r.size_budget)) else {
            return Ok(None);
        };
        validate::parse_size(&s.value).map(Some).map_err(|msg| {
            cx.bad_at(field, msg, &s).help(
                "write a byte count or a number with a unit: `20MiB`, `512 KiB`, `1.5GiB`, `20MB`",
            )
        })
    };
    Ok(SizeBudget {
        kernel: size("size_budget.kernel", |b| b.kernel.as_ref())?,
        initramfs: size("size_budget.initramfs", |b| b.initramfs.as_ref())?,
        iso: size("size_budget.iso", |b| b.iso.as_ref())?,
    })
}

/// `audit.allow`: each entry a valid image glob, a rule the audit knows
/// (checked here, so a typo fails in a second rather than after every
/// download), and a reason.
fn audit(cx: &Ctx<'_>) -> Result<Audit, ConfigError> {
    let rules: Vec<&str> = crate::audit::rules::RULES.iter().map(|(r, _)| *r).collect();
    let allow = cx
        .raws
        .iter()
        .enumerate()
        .flat_map(|(f, raw)| raw.audit.allow.iter().map(move |a| (f, a)));
    let mut out = Vec::new();
    for (i, (f, a)) in allow.enumerate() {
        cx.record(format!("audit.allow={}", a.path.value), &At::of(&a.path, f));
        let field = format!("audit.allow[{i}]");
        let bad = |part: &str, msg: String, v: &Spanned<String>| {
            cx.bad(&format!("{field}.{part}"), msg, f, &v.referenced)
        };
        validate::check_glob(&a.path.value).map_err(|msg| bad("path", msg, &a.path))?;
        if a.rule.value.trim().is_empty() {
            return Err(bad("rule", "the rule name is empty".to_string(), &a.rule));
        }
        validate::check_known(&a.rule.value, "audit rule", &rules)
            .map_err(|(msg, help)| bad("rule", msg, &a.rule).help(help))?;
        if a.reason.value.trim().is_empty() {
            return Err(bad("reason", "the reason is empty".to_string(), &a.reason)
                .help("say why this finding is not a secret; reviewers read it"));
        }
        out.push(AuditAllow {
            path: a.path.value.clone(),
            rule: a.rule.value.clone(),
            reason: a.reason.value.clone(),
        });
    }
    Ok(Audit { allow: out })
}

/// One `debian.sources` entry: an http(s) or file URI, suites, components,
/// an absolute keyring path.
fn check_source(
    cx: &Ctx<'_>,
    s: &RawSource,
    i: usize,
    file: usize,
) -> Result<AptSource, ConfigError> {
    let field = format!("debian.sources[{i}]");
    let bad = |part: &str, msg: String, loc: &serde_saphyr::Location| {
        cx.bad(&format!("{field}.{part}"), msg, file, loc)
    };
    let uri = s.uri.value.trim_end_matches('/').to_string();
    let scheme_ok = ["http://", "https://", "file://"]
        .iter()
        .any(|p| uri.starts_with(p) && uri.len() > p.len());
    if !scheme_ok {
        let msg = format!(
            "`{}` is not an http://, https:// or file:// URI",
            s.uri.value
        );
        return Err(bad("uri", msg, &s.uri.referenced)
            .help("e.g. `http://mirror.example.org/debian` or `file:///srv/mirror/debian`"));
    }
    for (what, list) in [("suites", &s.suites), ("components", &s.components)] {
        if list.is_empty() {
            return Err(bad(what, format!("no {what} given"), &s.uri.referenced));
        }
        for (j, v) in list.iter().enumerate() {
            if v.value.is_empty() || v.value.contains(['/', ' ']) && what == "components" {
                let msg = format!("`{}` is not a valid name", v.value);
                return Err(bad(&format!("{what}[{j}]"), msg, &v.referenced));
            }
        }
    }
    let keyring = match &s.keyring {
        Some(k) if !k.value.starts_with('/') => {
            let msg = format!("`{}` is not an absolute path", k.value);
            return Err(bad("keyring", msg, &k.referenced));
        }
        Some(k) => PathBuf::from(&k.value),
        None => PathBuf::from(DEFAULT_KEYRING),
    };
    Ok(AptSource {
        uri,
        suites: s.suites.iter().map(|v| v.value.clone()).collect(),
        components: s.components.iter().map(|v| v.value.clone()).collect(),
        keyring,
    })
}

/// Parses a size (`20MiB`, `1.5GiB`, a byte count); see [`validate::parse_size`].
pub use validate::parse_size;
