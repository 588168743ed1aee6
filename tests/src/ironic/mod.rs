//! Real OpenStack Ironic, all in one process, on loopback.
//!
//! [`Ironic::start`] installs `ironic==39.0.0` into a venv (once, see
//! [`crate::venv`]), writes a configuration for a throwaway state directory,
//! creates the sqlite schema with `ironic-dbsync` and starts the all-in-one
//! `ironic` service (API and conductor in one process group, no message bus,
//! no Keystone, no Glance, no Swift, no mDNS) on a free port of 127.0.0.1.
//! Dropping the handle kills the process group. When the drop happens during
//! a panic (a failing test) the state directory is kept and the tail of
//! Ironic's log is printed, so the failure can be read without rerunning.
//!
//! The node helpers ([`Ironic::enroll_fake_node`], [`Ironic::bring_to_active`],
//! [`Ironic::rescue`], ...) talk to the REST API directly with `ureq`, which
//! is much faster than python-ironicclient and reports exactly what the API
//! answered.

mod client;
mod config;
mod node;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub use client::IronicClient;
pub use config::IronicConfig;
pub use node::{FAILURE_STATES, Node};

use crate::process::GroupChild;
use crate::venv::{self, Venv, VenvError};
use crate::{net, paths};

/// The Ironic release every test runs against.
pub const IRONIC_REQUIREMENT: &str = "ironic==39.0.0";

/// Name of the venv directory under [`paths::e2e_dir`].
pub const IRONIC_VENV: &str = "venv-ironic";

/// How long the API may take to answer after the process started. It takes
/// about 7 s on a loaded 2-core machine; the margin covers parallel tests.
const API_START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why Ironic could not be started or did not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum IronicError {
    #[error(transparent)]
    Venv(#[from] VenvError),
    #[error("cannot create or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); log {log}:\n{tail}")]
    Setup {
        command: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("ironic exited before its API answered ({status}); log {log}:\n{tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("ironic's API at {url} did not answer within {waited:?}; log {log}:\n{tail}")]
    NotReady {
        url: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("{method} {url}: {source}")]
    Http {
        method: &'static str,
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Api {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} returned invalid JSON ({source}): {body}")]
    Json {
        url: String,
        body: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "node {} did not reach {} within {:?}: provision_state {:?}, target {:?}, last_error {:?}",
        .0.node, .0.wanted, .0.waited, .0.state, .0.target, .0.last_error
    )]
    Timeout(Box<NodeWait>),
    #[error(
        "node {} went to {:?} while waiting for {}: last_error {:?}",
        .0.node, .0.state, .0.wanted, .0.last_error
    )]
    Failed(Box<NodeWait>),
}

/// Where a node stood when a wait for a state ended without it.
#[derive(Debug, Clone)]
pub struct NodeWait {
    pub node: String,
    pub wanted: String,
    pub waited: Duration,
    pub state: String,
    pub target: Option<String>,
    pub last_error: Option<String>,
}

/// A running all-in-one Ironic. Killed (whole process group) on drop.
pub struct Ironic {
    client: IronicClient,
    port: u16,
    log: PathBuf,
    console_log: PathBuf,
    venv: Venv,
    // Order matters: the process must die before its state directory goes.
    process: GroupChild,
    state: Option<tempfile::TempDir>,
}

impl Ironic {
    /// Starts Ironic with the default test configuration ([`IronicConfig::default`]).
    pub fn start() -> Result<Self, IronicError> {
        Self::start_with(IronicConfig::default())
    }

    /// Starts Ironic with `config`, creating the venv first if needed.
    pub fn start_with(config: IronicConfig) -> Result<Self, IronicError> {
        let venv = venv::ensure(IRONIC_VENV, &[IRONIC_REQUIREMENT])?;
        let runs = paths::e2e_dir().join("runs");
        fs::create_dir_all(&runs).map_err(|source| io_err(&runs, source))?;
        let state = tempfile::Builder::new()
            .prefix("ironic-")
            .tempdir_in(&runs)
            .map_err(|source| io_err(&runs, source))?;
        let dir = state.path().to_path_buf();
        let port = net::free_port().map_err(|source| io_err(Path::new("127.0.0.1:0"), source))?;

        let conf = dir.join("ironic.conf");
        fs::write(&conf, config.render(&dir, port)).map_err(|source| io_err(&conf, source))?;
        if config.reveals_secrets() {
            let policy = dir.join("policy.yaml");
            fs::write(&policy, config::REVEAL_SECRETS_POLICY)
                .map_err(|source| io_err(&policy, source))?;
        }

        let log = dir.join("ironic.log");
        let console_log = dir.join("ironic.console.log");
        create_schema(&venv, &conf, &dir.join("dbsync.log"))?;

        let console = File::create(&console_log).map_err(|source| io_err(&console_log, source))?;
        let console_err = console
            .try_clone()
            .map_err(|source| io_err(&console_log, source))?;
        let mut cmd = venv.script_command("ironic");
        cmd.arg("--config-file")
            .arg(&conf)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err);
        let process =
            GroupChild::spawn(&mut cmd).map_err(|source| io_err(&venv.script("ironic"), source))?;

        let base = format!("http://127.0.0.1:{port}");
        let mut ironic = Self {
            client: IronicClient::new(&base),
            port,
            log,
            console_log,
            venv,
            process,
            state: Some(state),
        };
        ironic.wait_for_api()?;
        Ok(ironic)
    }

    /// The API's base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> &str {
        self.client.base()
    }

    /// The API's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The REST client, for calls the helpers below do not cover.
    pub fn client(&self) -> &IronicClient {
        &self.client
    }

    /// The venv Ironic runs from.
    pub fn venv(&self) -> &Venv {
        &self.venv
    }

    /// Ironic's own log file (`[DEFAULT]log_file`, debug level).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of Ironic's log, plus its stdout/stderr if the
    /// log is empty (a crash before logging was set up).
    pub fn log_tail(&self, lines: usize) -> String {
        let tail = venv::file_tail(&self.log, lines);
        if tail.is_empty() {
            venv::file_tail(&self.console_log, lines)
        } else {
            tail
        }
    }

    /// Polls `GET /` until it answers 200, the process dies, or time runs out.
    fn wait_for_api(&mut self) -> Result<(), IronicError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.process.try_status() {
                return Err(IronicError::Exited {
                    status: status.to_string(),
                    log: self.console_log.clone(),
                    tail: self.startup_tail(),
                });
            }
            if self.client.is_up() {
                return Ok(());
            }
            if started.elapsed() > API_START_TIMEOUT {
                return Err(IronicError::NotReady {
                    url: self.url().to_string(),
                    waited: started.elapsed(),
                    log: self.log.clone(),
                    tail: self.startup_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn startup_tail(&self) -> String {
        format!(
            "{}\n--- stdout/stderr ---\n{}",
            venv::file_tail(&self.log, 30),
            venv::file_tail(&self.console_log, 30)
        )
    }

    /// Keeps the state directory (config, sqlite, logs) after drop and
    /// returns its path.
    pub fn keep_state(&mut self) -> Option<PathBuf> {
        self.state.take().map(|dir| dir.keep())
    }
}

impl std::ops::Deref for Ironic {
    type Target = IronicClient;

    /// The node helpers live on [`IronicClient`]; `ironic.rescue(..)` reads
    /// better than `ironic.client().rescue(..)`.
    fn deref(&self) -> &IronicClient {
        &self.client
    }
}

impl Drop for Ironic {
    fn drop(&mut self) {
        // Read the tail before the kill: shutdown noise would bury the error.
        let tail = std::thread::panicking().then(|| self.log_tail(60));
        let _ = self.process.kill_group();
        if let Some(tail) = tail {
            let kept = self.keep_state();
            eprintln!(
                "--- ironic log tail ({}) ---\n{}\n--- state kept in {} ---",
                self.log.display(),
                tail,
                kept.as_deref().unwrap_or(Path::new("?")).display()
            );
        }
    }
}

/// Creates the sqlite schema. `create_schema` stamps the newest revision
/// directly (about 4 s) instead of replaying every migration (`upgrade`).
fn create_schema(venv: &Venv, conf: &Path, log_path: &Path) -> Result<(), IronicError> {
    let log = File::create(log_path).map_err(|source| io_err(log_path, source))?;
    let log_err = log.try_clone().map_err(|source| io_err(log_path, source))?;
    let mut cmd = venv.script_command("ironic-dbsync");
    cmd.arg("--config-file")
        .arg(conf)
        .arg("create_schema")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|source| io_err(&venv.script("ironic-dbsync"), source))?;
    if status.success() {
        return Ok(());
    }
    Err(IronicError::Setup {
        command: shown,
        status: status.to_string(),
        log: log_path.to_path_buf(),
        tail: venv::file_tail(log_path, 30),
    })
}

fn io_err(path: &Path, source: std::io::Error) -> IronicError {
    IronicError::Io {
        path: path.to_path_buf(),
        source,
    }
}
