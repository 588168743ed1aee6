//! The `ipa-agent` binary as it ships, and a fake root to run it in.
//!
//! The binary is the static musl build with the `agent` profile, the exact
//! bytes a ramdisk carries, built by the builder's own
//! `ipa_build::agent::build_workspace_agent` so tests exercise what ships. It
//! lands in `<workspace>/target/agent`, a target directory of its own, so the
//! nested `cargo build` never waits on the lock of the `cargo test` that runs
//! us. `IPA_AGENT_BIN` points at a prebuilt binary instead.
//!
//! The agent takes a `--root` prefix for every host path it reads or writes
//! (`/sys/class/net`, `/etc/ipa-rescue-config`, ...); [`FakeRoot`] provides
//! one with a single NIC so lookup finds the node by its MAC.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::paths;
use crate::process::GroupChild;
use crate::venv::file_tail;

/// Environment variable naming a prebuilt `ipa-agent` to test instead.
pub const AGENT_BIN_ENV: &str = "IPA_AGENT_BIN";

/// Why the agent could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Build(#[from] ipa_build::agent::AgentError),
    #[error("{AGENT_BIN_ENV}={0} does not exist")]
    Missing(PathBuf),
}

/// The agent binary: `$IPA_AGENT_BIN`, or built from this workspace (once
/// per test process; later calls return the same path).
pub fn agent_binary() -> Result<PathBuf, AgentError> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    if let Some(path) = std::env::var_os(AGENT_BIN_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(AgentError::Missing(path))
        };
    }
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let path = build_workspace_agent(&paths::workspace_root())?;
    *built = Some(path.clone());
    Ok(path)
}

/// Builds `ipa-agent` the way the builder ships it (static musl, `agent`
/// profile, `<workspace>/target/agent`) and returns the binary's path.
pub fn build_workspace_agent(workspace: &Path) -> Result<PathBuf, AgentError> {
    let reporter = ipa_build::report::Reporter::plain();
    Ok(ipa_build::agent::build_workspace_agent(
        workspace, &reporter,
    )?)
}

/// A temporary root with one NIC (`eth0`), `/etc`, and nothing else.
pub struct FakeRoot {
    dir: tempfile::TempDir,
}

/// A new temporary directory named `prefix…`.
fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, AgentError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| AgentError::Io {
            path: std::env::temp_dir(),
            source,
        })
}

impl FakeRoot {
    /// Creates `<root>/sys/class/net/eth0/{address,device/}` holding `mac`,
    /// and an empty `<root>/etc/`. No `/etc/ipa-rescue-config`: the agent
    /// creates it.
    pub fn with_nic(mac: &str) -> Result<Self, AgentError> {
        let dir = temp_dir("ipa-agent-root-")?;
        let nic = dir.path().join("sys/class/net/eth0");
        for sub in [nic.join("device"), dir.path().join("etc")] {
            fs::create_dir_all(&sub).map_err(|source| AgentError::Io { path: sub, source })?;
        }
        let address = nic.join("address");
        fs::write(&address, format!("{mac}\n")).map_err(|source| AgentError::Io {
            path: address,
            source,
        })?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<root>/etc/ipa-rescue-config/ipa-rescue-password`.
    pub fn rescue_password_file(&self) -> PathBuf {
        self.path()
            .join("etc/ipa-rescue-config/ipa-rescue-password")
    }

    /// `<root>/etc/.rescued`, the marker that stops a restarted agent.
    pub fn rescued_marker(&self) -> PathBuf {
        self.path().join("etc/.rescued")
    }
}

/// A running agent; its process group is killed on drop, and its output
/// is printed when the drop happens during a failing test.
pub struct AgentProcess {
    child: GroupChild,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Starts `binary` with `args`, output going to a log file.
    pub fn spawn(binary: &Path, args: &[String]) -> Result<Self, AgentError> {
        let log_dir = temp_dir("ipa-agent-log-")?;
        let log = log_dir.path().join("agent.log");
        let out = File::create(&log).map_err(|source| AgentError::Io {
            path: log.clone(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| AgentError::Io {
            path: log.clone(),
            source,
        })?;
        let mut cmd = Command::new(binary);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = GroupChild::spawn(&mut cmd).map_err(|source| AgentError::Io {
            path: binary.to_path_buf(),
            source,
        })?;
        Ok(Self {
            child,
            log,
            _log_dir: log_dir,
        })
    }

    /// The exit status if the agent has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_status().ok().flatten()
    }

    /// Waits up to `timeout` for the agent to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_timeout(timeout).ok().flatten()
    }

    /// The last `lines` lines of the agent's output.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log, lines)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill_group();
        if std::thread::panicking() {
            eprintln!("--- ipa-agent output ---\n{}", self.log_tail(60));
        }
    }
}
