//! The build, top to bottom. Each numbered stage is one call into the file
//! that owns it; [`build`] only sequences them and carries results from one
//! to the next. `ARCHITECTURE.md` has the same list with each stage's
//! invariants.

pub mod audit;
pub mod budget;
pub mod emit;
pub mod fetch;
pub mod firmware;
pub mod hooks;
pub mod iso;
pub mod pack;
pub mod plan;
pub mod scrub;
pub mod stage;
pub mod wire;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agent::AgentError;
use crate::audit::AuditError;
use crate::config::diag::ConfigError;
use crate::debian::DebianError;
use crate::host::HostError;
use crate::initramfs::PackError;
use crate::manifest::{Artifact, Manifest};
use crate::report::{Reporter, StageTiming};
use crate::stage::elf::ElfError;
use crate::stage::files::FilesError;
use crate::stage::modules::ModulesError;
use emit::EmitError;
use hooks::HookError;
use iso::IsoError;
use scrub::ScrubError;

pub use plan::DEFAULT_EXCLUDE;

/// Builds one profile. Nothing is written to the output directory unless
/// every stage succeeds.
pub fn build(opts: &BuildOptions, reporter: &Reporter) -> Result<BuildSummary, BuildError> {
    emit::check_keep_tree(opts.keep_tree.as_deref())?;
    let plan = plan::plan(opts, reporter)?; // 1, 2
    let inputs = fetch::fetch(opts, &plan, reporter)?; // 3
    let mut staged = stage::stage(opts, &plan, &inputs, reporter)?; // 4
    let (kver, epoch) = (staged.kernel.version.clone(), inputs.source_date_epoch);
    wire::wire(&staged.tree, &plan, &kver, epoch, reporter)?; // 5
    hooks::hooks(&plan, staged.tree.root(), &kver, epoch, reporter)?; // 6
    let scrubbed = scrub::run(&mut staged.tree, &plan.scrub, reporter)?; // 7
    let audited = audit::audit(&staged.tree, &plan.profile, reporter)?;
    let mut out = emit::Emitter::new(&plan.output)?;
    let packed = pack::pack(&plan, &staged, epoch, &mut out, reporter)?; // 8
    iso::iso(&plan, &inputs, staged.work.path(), &mut out, reporter)?; // 9
    budget::check(&plan.profile, &staged, out.artifacts(), &packed)?;
    let record = emit::Record {
        plan: &plan,
        inputs: &inputs,
        staged: &staged,
        packed: &packed,
        scrubbed: &scrubbed,
        audit: &audited,
    };
    let manifest = emit::emit(out, &record, reporter)?; // 10
    emit::keep_tree(staged, opts.keep_tree.as_deref())?;
    Ok(BuildSummary::new(
        &plan,
        &manifest,
        inputs.packages.len(),
        reporter,
    ))
}

pub use crate::config::options::{BuildOptions, FetchOptions, SearchPaths};

/// What a successful build reports (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    pub profile: String,
    pub output: PathBuf,
    pub artifacts: Vec<Artifact>,
    pub packages: usize,
    pub files: u64,
    pub uncompressed_bytes: u64,
    pub kernel_version: String,
    pub cmdline: String,
    pub source_date_epoch: u64,
    pub timings: Vec<StageTiming>,
    /// Shell lines that upload the artifacts and point a node at them.
    pub upload_commands: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("{0}")]
    Debian(#[from] DebianError),
    #[error("{0}")]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Files(#[from] FilesError),
    #[error("{0}")]
    Elf(#[from] ElfError),
    #[error("{0}")]
    Modules(#[from] ModulesError),
    #[error("{0}")]
    Firmware(#[from] crate::stage::firmware::FirmwareError),
    #[error("{0}")]
    Hook(#[from] HookError),
    #[error("{0}")]
    Scrub(#[from] ScrubError),
    #[error("{0}")]
    Pack(#[from] PackError),
    #[error("{0}")]
    Emit(#[from] EmitError),
    #[error("{0}")]
    Iso(#[from] IsoError),
    #[error("{0}")]
    AuditFailed(#[from] AuditError),
    /// The rendered findings (redacted: a secret never reaches a message).
    #[error("the image contains secrets, so it was not written:\n{0}")]
    Secrets(String),
    #[error("{0}")]
    Budget(String),
    #[error("{0}")]
    Wire(String),
    #[error("{0}")]
    Arch(#[from] crate::debian::ArchError),
    /// `--keep-tree DIR` names something that is not a new or empty directory.
    #[error("{0}")]
    KeepTree(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BuildError {
    /// The process exit code for this failure; documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Config(_) | BuildError::Arch(_) => 3,
            BuildError::Debian(_) | BuildError::Host(_) => 4,
            BuildError::Budget(_) => 5,
            BuildError::Secrets(_) => 6,
            BuildError::KeepTree(_) => 2,
            _ => 1,
        }
    }
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Workers for the audit and the compressor; neither's output depends on it.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl BuildSummary {
    fn new(plan: &plan::Plan, manifest: &Manifest, packages: usize, reporter: &Reporter) -> Self {
        BuildSummary {
            profile: plan.profile.name.clone(),
            output: plan.output.clone(),
            upload_commands: emit::upload_commands(&plan.output, plan.name(), &manifest.artifacts),
            artifacts: manifest.artifacts.clone(),
            packages,
            files: manifest.files,
            uncompressed_bytes: manifest.uncompressed_bytes,
            kernel_version: manifest.kernel.release.clone(),
            cmdline: manifest.cmdline.clone(),
            source_date_epoch: manifest.source_date_epoch,
            timings: reporter.timings(),
        }
    }
}
