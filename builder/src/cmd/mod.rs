//! One module per subcommand: its clap `Args` and `run(&Args) -> Result<Outcome, Error>`.
//!
//! Every command has the same shape so that `main.rs` can be the only place
//! that writes results, prints errors and picks exit codes: a command returns
//! what to print on stdout and how the run ended ([`Outcome`]), or why it
//! failed ([`Error`]). Commands never print a result or an error themselves;
//! progress and notes still go to stderr as they happen (a QEMU boot or a
//! build takes minutes, and the user wants to see it move).
//!
//! Exit codes (the README's "Exit codes" table): 0 success; 1 the command
//! worked and found something (`audit` findings, `diff` differences) or a
//! build failed; 2 a bad command line, or the error of any command other
//! than a build (so `audit` and `diff` keep 1 for "found"); 3 a profile or
//! element that does not load (`build`, `list`); 4 to 6 the build's own
//! classes (see [`Error::exit_code`]).

use std::path::{Path, PathBuf};

use crate::audit::AuditError;
use crate::build::BuildError;
use crate::config::diag::ConfigError;
use crate::config::options::SearchPaths;
use crate::manifest::ManifestError;
use crate::publish::PublishError;

pub mod audit;
pub mod boot;
pub mod build;
pub mod completions;
pub mod diff;
pub mod hardware;
pub mod inspect;
pub mod list;
pub mod man;
pub mod publish;

/// How a command that did its job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Success,
    /// Exit 1: the command worked and found something the caller asked about
    /// (audit findings, differences between two builds).
    Found,
    /// A child's own exit status, passed through (QEMU for `boot`).
    Child(u8),
}

/// What a command produced: the text for stdout and how the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Printed on stdout as is (it carries its own trailing newline).
    pub stdout: String,
    pub status: Status,
}

impl Outcome {
    /// A successful run that prints `stdout`.
    pub fn success(stdout: impl Into<String>) -> Outcome {
        Outcome {
            stdout: stdout.into(),
            status: Status::Success,
        }
    }

    /// `Found` when `found`, else `Success`.
    pub fn found_if(found: bool, stdout: impl Into<String>) -> Outcome {
        Outcome {
            stdout: stdout.into(),
            status: if found {
                Status::Found
            } else {
                Status::Success
            },
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Success => 0,
            Status::Found => 1,
            Status::Child(c) => c,
        }
    }
}

/// Why a command failed. Each variant keeps its library error whole; the
/// message is the library's, `main` adds the one `error: ` prefix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad command line that clap cannot catch (a missing `--profile`).
    #[error("{0}")]
    Usage(String),
    /// A build failed. `json`: `--json` was given, so a JSON error object
    /// goes to stdout as well (scripts read stdout only).
    #[error("{source}")]
    Build { source: BuildError, json: bool },
    /// A profile or element did not load (`list`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Inspect(#[from] inspect::InspectError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The result could not be encoded or rendered (JSON, the man page).
    #[error("{what}: {message}")]
    Output { what: &'static str, message: String },
}

impl Error {
    /// The process exit code; the README's "Exit codes" table. A build's
    /// failure keeps its class (1, 3 to 6); every other command's error is 2,
    /// because `audit` and `diff` use 1 for "found something" and a script
    /// must be able to tell the two apart.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Build { source, .. } => u8::try_from(source.exit_code()).unwrap_or(1),
            Error::Config(_) => 3,
            Error::Usage(_)
            | Error::Audit(_)
            | Error::Boot(_)
            | Error::Inspect(_)
            | Error::Publish(_)
            | Error::Manifest(_)
            | Error::Output { .. } => 2,
        }
    }

    /// What goes to stdout besides the message on stderr: the JSON error
    /// object of `ipa-build --json` when a build fails.
    pub fn stdout(&self) -> Option<String> {
        match self {
            Error::Build { source, json: true } => Some(format!(
                "{}\n",
                serde_json::json!({"error": source.to_string(), "exit_code": source.exit_code()})
            )),
            _ => None,
        }
    }
}

/// The exit code of a command's result: [`Outcome::exit_code`] or [`Error::exit_code`].
pub fn exit_code(result: &Result<Outcome, Error>) -> u8 {
    match result {
        Ok(o) => o.exit_code(),
        Err(e) => e.exit_code(),
    }
}

/// `value` as pretty JSON with a trailing newline, for `--json`.
pub fn json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Error::Output {
            what: "encoding the result as JSON",
            message: e.to_string(),
        })
}

/// Where profiles and elements are looked for; shared by `build` and `list`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PathArgs {
    /// Extra directory of profiles, searched before the built-in ones (repeatable).
    #[arg(long = "profiles-path", value_name = "DIR")]
    pub profiles_path: Vec<PathBuf>,
    /// Extra directory of elements, searched before the built-in ones (repeatable).
    #[arg(long = "elements-path", value_name = "DIR")]
    pub elements_path: Vec<PathBuf>,
}

impl PathArgs {
    /// The profile and element directories: the user's first (the first
    /// directory that has a name wins), then the built-in ones.
    pub fn search_paths(&self) -> SearchPaths {
        let mut profiles = self.profiles_path.clone();
        profiles.extend(builtin("profiles"));
        let mut elements = self.elements_path.clone();
        elements.extend(builtin("elements"));
        SearchPaths { profiles, elements }
    }
}

/// Built-in profile and element directories: the current directory's (when
/// run from a checkout) and the checkout this binary was built from, so
/// `cargo run` works from anywhere in it.
fn builtin(dir: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir()
        && cwd.join(dir).is_dir()
    {
        dirs.push(cwd.join(dir));
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    if repo.is_dir() && !dirs.iter().any(|d| same(d, &repo)) {
        dirs.push(repo);
    }
    dirs
}

fn same(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// A complete `manifest.json` of an empty build, for tests to fill in the
/// parts they are about (a typed reader refuses a partial one).
#[cfg(test)]
pub(crate) fn test_manifest() -> serde_json::Value {
    use crate::manifest::{
        AuditRecord, CompressionRecord, KernelRecord, Manifest, ProfileRecord, Tool,
    };
    let text = |s: &str| s.to_string();
    let manifest = Manifest {
        format: crate::manifest::FORMAT,
        tool: Tool {
            name: text("ipa-build"),
            version: text("0.0.0"),
        },
        profile: ProfileRecord {
            name: text("t"),
            description: text("test"),
            chain: vec![text("t.yaml")],
            init: text("busybox"),
        },
        source_date_epoch: 0,
        elements: Vec::new(),
        packages: Vec::new(),
        kernel: KernelRecord {
            package: text("linux-image-amd64"),
            version: text("1"),
            sha256: text("00"),
            release: text("6.1"),
            modules: Vec::new(),
        },
        agent: None,
        bootloaders: Vec::new(),
        cmdline: String::new(),
        compression: CompressionRecord {
            kind: text("zstd"),
            level: None,
        },
        files: 0,
        uncompressed_bytes: 0,
        scrubbed: Vec::new(),
        audit: AuditRecord {
            allowed: Vec::new(),
            warnings: Vec::new(),
        },
        artifacts: Vec::new(),
        contents: Vec::new(),
        firmware: Vec::new(),
    };
    serde_json::to_value(manifest).expect("a manifest is plain data")
}
