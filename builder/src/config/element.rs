//! Elements: `elements/NAME/element.yaml` plus `files/` and `hooks/`, and
//! resolving a profile's element list into a build order.
//!
//! An element is a unit of image content a user can copy and edit without
//! touching Rust. Its YAML is checked here once (modes, paths, the `files/`
//! tree, hook permissions) so that later stages can trust it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::config::diag::{
    ConfigError, ErrorKind, Scalar, Snippet, Source, check_image_path, did_you_mean,
};
use crate::config::profile::{InitStyle, Profile};
use crate::config::validate;

/// A file permission mode, written in YAML as a quoted octal string (`"0755"`).
///
/// Quoting is required because YAML 1.1 reads `0755` as octal 493 and YAML 1.2
/// as decimal 755: an unquoted mode means different things to different tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mode(pub u32);

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// The permissions and numeric owner and group of something an element
/// puts into the image: one type for directories, device nodes and shipped
/// files, checked in one place when the element loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Attrs {
    /// Permissions; the default depends on the kind of entry.
    pub mode: Mode,
    /// Numeric owner id; default 0.
    pub owner: u32,
    /// Numeric group id; default 0.
    pub group: u32,
}

/// A validated element, ready for the pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Element {
    /// The element's name: its directory name.
    pub name: String,
    /// One line saying what it adds.
    pub description: String,
    /// Elements it needs; [`resolve`] puts them earlier in the order.
    pub depends: Vec<String>,
    /// The only init style this element works with, if it cares.
    pub init: Option<InitStyle>,
    /// Debian packages it needs.
    pub packages: Vec<String>,
    /// Kernel modules it needs: names, and kernel-tree path patterns
    /// (`kernel/drivers/scsi/megaraid/**`, told apart by their `/`).
    pub modules: Vec<String>,
    /// Appended to the kernel command line; empty if none.
    pub cmdline: String,
    /// Install the agent binary at this image path.
    pub agent: Option<PathBuf>,
    /// Directories to create.
    pub directories: Vec<Directory>,
    /// Symbolic links to create.
    pub symlinks: Vec<Symlink>,
    /// Device nodes to create (recorded in the metadata map, never on the host).
    pub devices: Vec<Device>,
    /// Ownership and mode for files shipped in `files/`.
    pub files: Vec<FileMeta>,
    /// Path globs deleted before packing.
    pub scrub: Vec<String>,
    /// The element's directory (holding `element.yaml`).
    pub dir: PathBuf,
    /// The `files/` tree, copied into the image root as is, if the element has one.
    pub files_dir: Option<PathBuf>,
    /// Executable scripts in `hooks/`, in name order; run on the host with `$TARGET` set.
    pub hooks: Vec<PathBuf>,
}

/// A directory to create in the image; default mode `0755`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directory {
    /// Absolute image path.
    pub path: PathBuf,
    #[serde(flatten)]
    pub attrs: Attrs,
}

/// A symbolic link to create in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Symlink {
    /// Absolute image path of the link.
    pub path: PathBuf,
    /// What it points to, stored verbatim (may be relative).
    pub target: PathBuf,
}

/// The kind of device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe (has no major/minor).
    Fifo,
}

/// A device node to record in the image; default mode `0600`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Absolute image path.
    pub path: PathBuf,
    /// Character, block or fifo.
    pub kind: DeviceKind,
    /// Major number (0 for a fifo).
    pub major: u32,
    /// Minor number (0 for a fifo).
    pub minor: u32,
    #[serde(flatten)]
    pub attrs: Attrs,
}

/// Ownership and mode for one file shipped in the element's `files/` tree;
/// the default mode is [`shipped_mode`] of the file in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMeta {
    /// Absolute image path; the file is `files/<path>` in the element.
    pub path: PathBuf,
    /// The file on the host (`<element dir>/files/<path>`).
    pub source: PathBuf,
    #[serde(flatten)]
    pub attrs: Attrs,
}

/// The mode a file from an element's `files/` tree gets when `element.yaml`
/// names none: `0755` if the repository has it executable, else `0644`. A
/// checkout's umask and group bits never reach the image.
pub fn shipped_mode(repo_mode: u32) -> Mode {
    if repo_mode & 0o111 != 0 {
        Mode(0o755)
    } else {
        Mode(0o644)
    }
}

// ---------------------------------------------------------------------------
// Raw element documents, as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawElement {
    description: Spanned<String>,
    #[serde(default)]
    depends: Vec<Spanned<String>>,
    init: Option<Spanned<InitStyle>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
    #[serde(default)]
    modules: Vec<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    agent: Option<Spanned<String>>,
    #[serde(default)]
    directories: Vec<RawDirectory>,
    #[serde(default)]
    symlinks: Vec<RawSymlink>,
    #[serde(default)]
    devices: Vec<RawDevice>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    scrub: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    path: Spanned<String>,
    mode: Option<Spanned<Scalar>>,
    owner: Option<Spanned<Scalar>>,
    group: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSymlink {
    path: Spanned<String>,
    target: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    path: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<DeviceKind>,
    major: Option<Spanned<u32>>,
    minor: Option<Spanned<u32>>,
    mode: Option<Spanned<Scalar>>,
    owner: Option<Spanned<Scalar>>,
    group: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Spanned<String>,
    mode: Option<Spanned<Scalar>>,
    owner: Option<Spanned<Scalar>>,
    group: Option<Spanned<Scalar>>,
}

/// Parses a mode: a quoted octal string of 3 or 4 digits (`"0755"`, `"755"`).
///
/// An unquoted number is refused with advice, because YAML 1.1 and 1.2 read
/// `0755` differently and a silently wrong mode is a security bug. `raw` is
/// the value as written, for the message.
pub fn parse_mode(v: &Scalar, raw: &str) -> Result<Mode, String> {
    let s = match v {
        Scalar::Str(s) => s,
        Scalar::Int(_) | Scalar::Other(_) => {
            let raw = raw.trim();
            let digits = raw
                .strip_prefix("0o")
                .unwrap_or(raw)
                .trim_start_matches('0');
            return Err(format!(
                "mode {raw} is an unquoted number; write it as a quoted octal string: \"0{digits:0>3}\""
            ));
        }
    };
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if (3..=5).contains(&digits.len())
        && digits.chars().all(|c| ('0'..='7').contains(&c))
        && let Some(m) = u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
    {
        return Ok(Mode(m));
    }
    Err(format!(
        "`{s}` is not an octal mode such as \"0644\" or \"4755\""
    ))
}

/// Reads and checks one element from `dir` (which holds `element.yaml`).
pub fn load(name: &str, dir: &Path) -> Result<Element, ConfigError> {
    load_with_sites(name, dir).map(|(e, _)| e)
}

/// Where an element wrote the values that [`resolve`] may need to point at later.
#[derive(Debug, Default)]
struct Sites {
    /// Each `depends` entry and where it is written.
    depends: Vec<(String, Snippet)>,
    /// The `init` value.
    init: Option<Snippet>,
}

/// [`load`], also returning the positions of `depends` entries and `init`.
fn load_with_sites(name: &str, dir: &Path) -> Result<(Element, Sites), ConfigError> {
    let src = Source::read(&dir.join("element.yaml"), "element")?;
    let raw: RawElement = src.parse()?;
    let sites = Sites {
        depends: raw
            .depends
            .iter()
            .map(|d| (d.value.clone(), src.at(d)))
            .collect(),
        init: raw.init.as_ref().map(|i| src.at(i)),
    };
    let doc = Doc { src: &src };
    let element = Element {
        name: name.to_string(),
        description: doc.description(&raw.description)?,
        depends: doc.depends(name, &raw.depends)?,
        init: raw.init.as_ref().map(|i| i.value),
        agent: raw
            .agent
            .as_ref()
            .map(|a| doc.path("agent", a))
            .transpose()?,
        directories: doc.directories(&raw.directories)?,
        symlinks: doc.symlinks(&raw.symlinks)?,
        devices: doc.devices(&raw.devices)?,
        files: doc.files(name, dir, &raw.files)?,
        scrub: doc.scrub(&raw.scrub)?,
        packages: doc.words(&raw.packages, "packages", |v| {
            validate::check_word(v, "package name")
        })?,
        modules: doc.words(&raw.modules, "modules", |v| {
            if v.contains('/') {
                return validate::check_module_pattern(v);
            }
            // An element's message has no `.ko` advice, unlike a profile's.
            validate::check_module(v).map_err(|_| format!("`{v}` is not a kernel module name"))
        })?,
        cmdline: raw
            .cmdline
            .map(|c| c.value.trim().to_string())
            .unwrap_or_default(),
        dir: dir.to_path_buf(),
        files_dir: Some(dir.join("files")).filter(|d| d.is_dir()),
        hooks: list_hooks(dir)?,
    };
    Ok((element, sites))
}

/// One `element.yaml` being checked: each method checks one kind of value
/// or one section and points at the file position of what it refuses.
struct Doc<'a> {
    src: &'a Source,
}

impl Doc<'_> {
    /// "`field`: msg" at `v`'s position.
    fn bad<T>(&self, field: &str, msg: String, v: &Spanned<T>) -> ConfigError {
        ConfigError::new(ErrorKind::InvalidValue, format!("`{field}`: {msg}"))
            .field(field)
            .at(self.src.at(v))
    }

    /// A single absolute image path (no glob), normalised.
    fn path(&self, field: &str, v: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        check_image_path(&v.value).map_err(|m| self.bad(field, m, v))?;
        if v.value.contains(['*', '?', '[']) {
            let msg = format!("`{}` is a glob; a single path is needed here", v.value);
            return Err(self.bad(field, msg, v));
        }
        Ok(PathBuf::from(normalize(&v.value)))
    }

    /// An optional mode: a quoted octal string ([`parse_mode`]).
    fn mode(&self, field: &str, v: Option<&Spanned<Scalar>>) -> Result<Option<Mode>, ConfigError> {
        let Some(m) = v else { return Ok(None) };
        let raw = self.src.raw(&m.referenced).unwrap_or("?");
        parse_mode(&m.value, raw).map(Some).map_err(|msg| {
            let e = self.bad(field, msg, m);
            if matches!(m.value, Scalar::Str(_)) {
                e
            } else {
                e.help("YAML 1.1 reads 0755 as octal and YAML 1.2 as decimal; quotes make it unambiguous")
            }
        })
    }

    /// An optional numeric owner or group id; default 0 (root).
    fn id(&self, field: &str, v: Option<&Spanned<Scalar>>) -> Result<u32, ConfigError> {
        let Some(id) = v else { return Ok(0) };
        match &id.value {
            Scalar::Int(n) => {
                u32::try_from(*n).map_err(|_| self.bad(field, format!("{n} is not a valid id"), id))
            }
            Scalar::Str(t) | Scalar::Other(t) => Err(self
                .bad(field, format!("`{t}` is not a numeric id"), id)
                .help("owners and groups are numeric ids (`0` for root), because the image has its own /etc/passwd")),
        }
    }

    /// The mode, owner and group of entry `f`, with `default` for the mode.
    fn attrs(
        &self,
        f: &str,
        [mode, owner, group]: [Option<&Spanned<Scalar>>; 3],
        default: Mode,
    ) -> Result<Attrs, ConfigError> {
        Ok(Attrs {
            mode: self.mode(&format!("{f}.mode"), mode)?.unwrap_or(default),
            owner: self.id(&format!("{f}.owner"), owner)?,
            group: self.id(&format!("{f}.group"), group)?,
        })
    }

    /// Each item of `list` checked with `check`, naming `field[i]`.
    fn words(
        &self,
        list: &[Spanned<String>],
        field: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for (i, v) in list.iter().enumerate() {
            check(&v.value).map_err(|m| self.bad(&format!("{field}[{i}]"), m, v))?;
            out.push(v.value.clone());
        }
        Ok(out)
    }

    /// `description`: one non-empty line.
    fn description(&self, d: &Spanned<String>) -> Result<String, ConfigError> {
        let desc = d.value.trim().to_string();
        if desc.is_empty() || desc.contains('\n') {
            let msg = "must be one non-empty line".to_string();
            return Err(self.bad("description", msg, d));
        }
        Ok(desc)
    }

    /// `depends`: valid element names, not itself, duplicates dropped.
    fn depends(&self, name: &str, list: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
        let mut depends = Vec::new();
        for (i, d) in list.iter().enumerate() {
            validate::check_name(&d.value, "element")
                .map_err(|m| self.bad(&format!("depends[{i}]"), m, d))?;
            if d.value == name {
                return Err(ConfigError::new(
                    ErrorKind::Cycle,
                    format!("element `{name}` depends on itself"),
                )
                .field("depends")
                .at(self.src.at(d)));
            }
            if !depends.contains(&d.value) {
                depends.push(d.value.clone());
            }
        }
        Ok(depends)
    }

    /// `directories`: default mode 0755.
    fn directories(&self, list: &[RawDirectory]) -> Result<Vec<Directory>, ConfigError> {
        let mut out = Vec::new();
        for (i, d) in list.iter().enumerate() {
            let f = format!("directories[{i}]");
            let path = self.path(&format!("{f}.path"), &d.path)?;
            let given = [d.mode.as_ref(), d.owner.as_ref(), d.group.as_ref()];
            out.push(Directory {
                path,
                attrs: self.attrs(&f, given, Mode(0o755))?,
            });
        }
        Ok(out)
    }

    /// `symlinks`: an absolute link path and a non-empty target, kept verbatim.
    fn symlinks(&self, list: &[RawSymlink]) -> Result<Vec<Symlink>, ConfigError> {
        let mut out = Vec::new();
        for (i, l) in list.iter().enumerate() {
            let f = format!("symlinks[{i}]");
            if l.target.value.is_empty() {
                return Err(self.bad(&format!("{f}.target"), "is empty".to_string(), &l.target));
            }
            out.push(Symlink {
                path: self.path(&format!("{f}.path"), &l.path)?,
                target: PathBuf::from(&l.target.value),
            });
        }
        Ok(out)
    }

    /// `devices`: char and block devices need major and minor, a fifo has
    /// neither; default mode 0600.
    fn devices(&self, list: &[RawDevice]) -> Result<Vec<Device>, ConfigError> {
        let mut out = Vec::new();
        for (i, d) in list.iter().enumerate() {
            let f = format!("devices[{i}]");
            let (major, minor) = match (d.kind.value, &d.major, &d.minor) {
                (DeviceKind::Fifo, None, None) => (0, 0),
                (DeviceKind::Fifo, Some(n), _) | (DeviceKind::Fifo, None, Some(n)) => {
                    let msg = "a fifo has no major/minor numbers".to_string();
                    return Err(self
                        .bad(&f, msg, n)
                        .help("remove `major` and `minor`, or use `type: char` / `type: block`"));
                }
                (_, Some(a), Some(b)) => (a.value, b.value),
                (_, _, _) => {
                    let msg = "a char or block device needs both `major` and `minor`";
                    return Err(self.bad(&f, msg.to_string(), &d.kind));
                }
            };
            let path = self.path(&format!("{f}.path"), &d.path)?;
            let given = [d.mode.as_ref(), d.owner.as_ref(), d.group.as_ref()];
            out.push(Device {
                path,
                kind: d.kind.value,
                major,
                minor,
                attrs: self.attrs(&f, given, Mode(0o600))?,
            });
        }
        Ok(out)
    }

    /// `files`: metadata for files the element ships in `files/`, each of
    /// which must exist.
    fn files(
        &self,
        name: &str,
        dir: &Path,
        list: &[RawFile],
    ) -> Result<Vec<FileMeta>, ConfigError> {
        let mut out = Vec::new();
        for (i, fm) in list.iter().enumerate() {
            let f = format!("files[{i}]");
            let path = self.path(&format!("{f}.path"), &fm.path)?;
            let rel = path.strip_prefix("/").unwrap_or(&path);
            let source = dir.join("files").join(rel);
            if !source.is_file() {
                return Err(ConfigError::new(
                    ErrorKind::NotFound,
                    format!(
                        "`{f}.path`: element `{name}` ships no file {}",
                        source.display()
                    ),
                )
                .field(format!("{f}.path"))
                .at(self.src.at(&fm.path))
                .help(format!(
                    "put the file at {} or remove this entry",
                    source.display()
                )));
            }
            let repo_mode = std::fs::metadata(&source)
                .map_err(|e| ConfigError::io(&source, "shipped file", e))?
                .permissions()
                .mode();
            let given = [fm.mode.as_ref(), fm.owner.as_ref(), fm.group.as_ref()];
            out.push(FileMeta {
                attrs: self.attrs(&f, given, shipped_mode(repo_mode))?,
                path,
                source,
            });
        }
        Ok(out)
    }

    /// `scrub`: absolute image path globs.
    fn scrub(&self, list: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
        self.words(list, "scrub", validate::check_glob)
    }
}

/// Removes `.` components and doubled or trailing slashes: `/a//b/./c/` is `/a/b/c`.
fn normalize(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The executable scripts in `dir/hooks`, in name order.
///
/// Dotfiles (editor leftovers) are ignored; anything else that is not an
/// executable regular file is an error, because a hook that silently does not
/// run is worse than a build that stops.
fn list_hooks(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let hooks_dir = dir.join("hooks");
    if !hooks_dir.is_dir() {
        return Ok(Vec::new());
    }
    let rd = std::fs::read_dir(&hooks_dir)
        .map_err(|e| ConfigError::io(&hooks_dir, "hooks directory", e))?;
    let mut hooks = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| ConfigError::io(&hooks_dir, "hooks directory", e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| ConfigError::io(&path, "hook", e))?;
        if !meta.is_file() {
            return Err(ConfigError::new(
                ErrorKind::InvalidValue,
                format!("hook {} is not a regular file", path.display()),
            )
            .help("the hooks/ directory holds only executable scripts"));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(ConfigError::new(
                ErrorKind::InvalidValue,
                format!("hook {} is not executable", path.display()),
            )
            .help(format!("run `chmod +x {}`", path.display())));
        }
        hooks.push(path);
    }
    hooks.sort();
    Ok(hooks)
}

/// Finds `name` in `element_dirs`: the first directory holding `name/element.yaml`.
fn find(name: &str, element_dirs: &[PathBuf]) -> Option<PathBuf> {
    element_dirs
        .iter()
        .map(|d| d.join(name))
        .find(|d| d.join("element.yaml").is_file())
}

/// Element names in `element_dirs`, first directory winning, sorted.
fn element_names(element_dirs: &[PathBuf]) -> BTreeMap<String, PathBuf> {
    let mut names = BTreeMap::new();
    for d in element_dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.join("element.yaml").is_file()
                && let Some(n) = p.file_name().and_then(|s| s.to_str())
            {
                names.entry(n.to_string()).or_insert(p);
            }
        }
    }
    names
}

/// Every element in `element_dirs` as `(name, description)`, sorted by name;
/// a name in an earlier directory hides the same name in later ones.
pub fn list(element_dirs: &[PathBuf]) -> Result<Vec<(String, String)>, ConfigError> {
    element_names(element_dirs)
        .into_iter()
        .map(|(n, dir)| load(&n, &dir).map(|e| (n, e.description)))
        .collect()
}

/// Where each loaded element wrote its `depends` and `init`, by element name.
type DependSites = BTreeMap<String, Sites>;

/// Loads the elements `profile` names and everything they depend on, in build order.
///
/// The first directory of `element_dirs` that holds `NAME/element.yaml` wins
/// (the user's `--elements-path` comes first). The order is deterministic:
/// dependencies before dependents; ties broken by the order the profile lists
/// elements, then by name. A missing element or a dependency cycle is an
/// error naming the chain from the profile (`agent -> rescue -> agent`) and
/// pointing at the profile line that lists the chain's first element. An
/// element whose `init` differs from the profile's is an error naming both.
pub fn resolve(profile: &Profile, element_dirs: &[PathBuf]) -> Result<Vec<Element>, ConfigError> {
    let mut loaded: BTreeMap<String, Element> = BTreeMap::new();
    let mut sites: DependSites = BTreeMap::new();
    // Depth-first from each listed element, so the chain to any problem is known.
    for (i, name) in profile.elements.iter().enumerate() {
        let site = profile.element_sites.get(i).cloned().flatten();
        let mut chain = vec![name.clone()];
        visit(
            name,
            &mut chain,
            &site,
            element_dirs,
            &mut loaded,
            &mut sites,
            &mut BTreeSet::new(),
        )?;
    }
    for e in loaded.values() {
        check_init(profile, e, &sites)?;
    }
    build_order(profile, loaded)
}

/// An element whose `init` differs from the profile's is an error naming
/// both, pointing at the element's `init` and noting where it was listed.
fn check_init(profile: &Profile, e: &Element, sites: &DependSites) -> Result<(), ConfigError> {
    let Some(want) = e.init.filter(|w| *w != profile.init) else {
        return Ok(());
    };
    let word = |s: InitStyle| match s {
        InitStyle::Busybox => "busybox",
        InitStyle::Systemd => "systemd",
    };
    let at = sites.get(&e.name).and_then(|s| s.init.clone());
    let listed = profile
        .elements
        .iter()
        .position(|n| *n == e.name)
        .and_then(|i| profile.element_sites.get(i).cloned().flatten());
    Err(ConfigError::new(
        ErrorKind::Conflict,
        format!(
            "element `{}` works only with `init: {}`, but profile `{}` uses `init: {}`",
            e.name,
            word(want),
            profile.name,
            word(profile.init)
        ),
    )
    .field("init")
    .at_opt(at)
    .note(match listed {
        Some(l) => format!(
            "`{}` is listed at {}:{}:{}",
            e.name,
            l.path.display(),
            l.line,
            l.column
        ),
        None => format!("`{}` is pulled in by another element's `depends`", e.name),
    })
    .help(format!(
        "drop `{}` from the profile or switch the profile to `init: {}`",
        e.name,
        word(want)
    )))
}

/// Kahn's algorithm, always taking the ready element that ranks first:
/// listed elements by list position, then everything else by name.
/// [`visit`] has rejected cycles, so something is always ready; the error
/// is a guard, not a path a profile can reach.
fn build_order(
    profile: &Profile,
    mut loaded: BTreeMap<String, Element>,
) -> Result<Vec<Element>, ConfigError> {
    let rank = |n: &str| {
        let pos = profile
            .elements
            .iter()
            .position(|e| e == n)
            .unwrap_or(usize::MAX);
        (pos, n.to_string())
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < loaded.len() {
        let next = loaded
            .values()
            .filter(|e| !done.contains(&e.name) && e.depends.iter().all(|d| done.contains(d)))
            .map(|e| rank(&e.name))
            .min();
        let Some((_, name)) = next else {
            return Err(ConfigError::new(
                ErrorKind::Cycle,
                "element dependencies form a cycle",
            ));
        };
        done.insert(name.clone());
        order.push(name);
    }
    Ok(order
        .into_iter()
        .filter_map(|n| loaded.remove(&n))
        .collect())
}

/// Loads `name` and, depth first, everything it depends on, failing with the chain on a
/// missing element or a cycle. `chain` ends with `name`; `site` is where the chain's
/// first element is listed in the profile.
fn visit(
    name: &str,
    chain: &mut Vec<String>,
    site: &Option<Snippet>,
    element_dirs: &[PathBuf],
    loaded: &mut BTreeMap<String, Element>,
    sites: &mut DependSites,
    finished: &mut BTreeSet<String>,
) -> Result<(), ConfigError> {
    if finished.contains(name) {
        return Ok(());
    }
    if !loaded.contains_key(name) {
        let Some(dir) = find(name, element_dirs) else {
            return Err(missing(name, chain, site, element_dirs, sites));
        };
        let (e, s) = load_with_sites(name, &dir)?;
        sites.insert(name.to_string(), s);
        loaded.insert(name.to_string(), e);
    }
    let depends = loaded
        .get(name)
        .map(|e| e.depends.clone())
        .unwrap_or_default();
    for dep in depends {
        if let Some(pos) = chain.iter().position(|c| *c == dep) {
            let mut cyc: Vec<String> = chain[pos..].to_vec();
            cyc.push(dep.clone());
            let mut e = ConfigError::new(
                ErrorKind::Cycle,
                format!("element dependency cycle: {}", cyc.join(" -> ")),
            )
            .field("elements")
            .at_opt(site.clone());
            if pos > 0 {
                let mut full = chain.clone();
                full.push(dep.clone());
                e = e.note(format!("reached through: {}", full.join(" -> ")));
            }
            if let Some(s) = depend_site(sites, name, &dep) {
                e = e.note(format!(
                    "`{name}` depends on `{dep}` at {}:{}:{}",
                    s.path.display(),
                    s.line,
                    s.column
                ));
            }
            return Err(e.help("remove one of the `depends` entries in the loop"));
        }
        chain.push(dep.clone());
        visit(&dep, chain, site, element_dirs, loaded, sites, finished)?;
        chain.pop();
    }
    finished.insert(name.to_string());
    Ok(())
}

/// "unknown element X", pointing at the profile (or the `depends` that names it).
fn missing(
    name: &str,
    chain: &[String],
    site: &Option<Snippet>,
    element_dirs: &[PathBuf],
    sites: &DependSites,
) -> ConfigError {
    let names = element_names(element_dirs);
    let mut e = ConfigError::new(ErrorKind::NotFound, format!("unknown element `{name}`"));
    if chain.len() > 1 {
        e = e
            .field("depends")
            .note(format!("required through: {}", chain.join(" -> ")));
        let parent = &chain[chain.len() - 2];
        match depend_site(sites, parent, name) {
            Some(s) => {
                e = e.at(s.clone());
                if let Some(p) = site {
                    e = e.note(format!(
                        "`{}` is listed at {}:{}:{}",
                        chain[0],
                        p.path.display(),
                        p.line,
                        p.column
                    ));
                }
            }
            None => e = e.at_opt(site.clone()),
        }
    } else {
        e = e.field("elements").at_opt(site.clone());
    }
    let dirs: Vec<String> = element_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    e = e.note(format!(
        "looked for `{name}/element.yaml` in: {}",
        if dirs.is_empty() {
            "(no element directories)".to_string()
        } else {
            dirs.join(", ")
        }
    ));
    match did_you_mean(name, names.keys().map(String::as_str)) {
        Some(best) => e.help(format!("did you mean `{best}`?")),
        None => e,
    }
}

/// Where element `from` wrote `depends: [.., to, ..]`.
fn depend_site<'a>(sites: &'a DependSites, from: &str, to: &str) -> Option<&'a Snippet> {
    sites
        .get(from)?
        .depends
        .iter()
        .find(|(d, _)| d == to)
        .map(|(_, s)| s)
}
