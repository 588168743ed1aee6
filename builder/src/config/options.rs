//! [`BuildOptions`]: everything the command line (or a test) can say about
//! one build, with one constructor holding the defaults, so that a new option
//! is added in one place and every caller gets its default.

use std::path::{Path, PathBuf};

use crate::config::profile::{Compression, Format};

/// Everything the command line can say about one build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Profile name (looked up in `search.profiles`) or path to a YAML file.
    pub profile: String,
    pub search: SearchPaths,
    pub fetch: FetchOptions,
    /// Output directory; `None` means `out/<output name>`.
    pub output: Option<PathBuf>,
    /// A prebuilt static agent instead of building the workspace's.
    pub agent: Option<PathBuf>,
    /// `None`: taken from the newest signed index (`InRelease` `Date:`), so the
    /// same archive state gives the same bytes without the user choosing.
    pub source_date_epoch: Option<u64>,
    /// `--compression`, `--level` and `--format`: applied to the profile's
    /// `output:` before it is validated.
    pub overrides: Overrides,
    /// Extra kernel arguments after the profile's and the elements' (used by
    /// the ISO's boot menu and recorded in the manifest).
    pub append: Vec<String>,
    /// Where the temporary staging tree goes (default: the system's temp dir).
    pub work_dir: Option<PathBuf>,
    /// Keep the staged tree here after the build, for inspection.
    pub keep_tree: Option<PathBuf>,
}

impl BuildOptions {
    /// The options of `ipa-build --profile PROFILE` with no other flag:
    /// built-in directories are the caller's business (none here),
    /// [`FetchOptions::default`], the date of the newest signed index, the
    /// profile's own compression and formats. Callers change the fields
    /// they care about.
    pub fn new(profile: impl Into<String>) -> BuildOptions {
        BuildOptions {
            profile: profile.into(),
            search: SearchPaths::default(),
            fetch: FetchOptions::default(),
            output: None,
            agent: None,
            source_date_epoch: None,
            overrides: Overrides::default(),
            append: Vec::new(),
            work_dir: None,
            keep_tree: None,
        }
    }
}

/// Where profiles and elements are looked up; in each list the first
/// directory that has a name wins, so the user's come first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPaths {
    pub profiles: Vec<PathBuf>,
    pub elements: Vec<PathBuf>,
}

impl SearchPaths {
    /// The `profiles/` and `elements/` directories of a checkout at `root`.
    pub fn checkout(root: &Path) -> SearchPaths {
        SearchPaths {
            profiles: vec![root.join("profiles")],
            elements: vec![root.join("elements")],
        }
    }
}

/// How the fetch stage gets what a build needs: Debian packages through the
/// cache, and the host tools it runs. Nothing else in the build reads these.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The download cache.
    pub cache_dir: PathBuf,
    /// Use only what is in the cache; fail, naming what is missing, otherwise.
    pub offline: bool,
    /// Replaces the URI of the first apt source.
    pub mirror: Option<String>,
    /// `/etc/apt` of the host, where default sources come from.
    pub etc_apt: PathBuf,
    /// Allow installing missing host packages with apt-get when root.
    pub install_host_packages: bool,
}

impl Default for FetchOptions {
    /// The default cache, online, the host's own `/etc/apt` and mirror, host
    /// packages installed when root.
    fn default() -> FetchOptions {
        FetchOptions {
            cache_dir: crate::cache::Cache::default_dir(),
            offline: false,
            mirror: None,
            etc_apt: PathBuf::from("/etc/apt"),
            install_host_packages: true,
        }
    }
}

/// What the command line overrides in a profile's `output:` section. Applied
/// to the merged profile before validation ([`crate::config::profile::load_with`]),
/// so `--level 30` is refused exactly like `level: 30`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--compression`.
    pub compression: Option<Compression>,
    /// `--level`.
    pub level: Option<u32>,
    /// `--format` (repeatable); empty keeps the profile's.
    pub formats: Vec<Format>,
}
