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

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::IronicClient;
pub use config::IronicConfig;
pub use node::{FAILURE_STATES, Node};

use crate::peer::{self, Peer, PeerError, Running};
use crate::venv::{self, Venv};

/// The Ironic release every test runs against.
pub const IRONIC_REQUIREMENT: &str = "ironic==39.0.0";

/// Name of the venv directory under [`crate::paths::e2e_dir`].
pub const IRONIC_VENV: &str = "venv-ironic";

/// Ironic as a peer service: its venv and pinned release.
const IRONIC: Peer = Peer {
    service: "ironic",
    venv: IRONIC_VENV,
    requirements: &[IRONIC_REQUIREMENT],
};

/// Why Ironic could not be started or did not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum IronicError {
    #[error(transparent)]
    Peer(#[from] PeerError),
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
    #[error(
        "node {} stopped on its way to {}: {why}; it is {:?} (target {:?}), last_error {:?}",
        .wait.node, .wait.wanted, .wait.state, .wait.target, .wait.last_error
    )]
    Stopped { wait: Box<NodeWait>, why: String },
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
    server: Running,
    state: Option<tempfile::TempDir>,
}

impl Ironic {
    /// Starts Ironic with the default test configuration ([`IronicConfig::default`]).
    pub fn start() -> Result<Self, IronicError> {
        Self::start_with(IronicConfig::default())
    }

    /// Starts Ironic with `config`, creating the venv first if needed.
    pub fn start_with(config: IronicConfig) -> Result<Self, IronicError> {
        let peer = IRONIC.prepare()?;
        let (dir, port) = (peer.dir().to_path_buf(), peer.port);
        let conf = peer.write("ironic.conf", &config.render(&dir, port))?;
        if config.reveals_secrets() {
            peer.write("policy.yaml", config::REVEAL_SECRETS_POLICY)?;
        }
        // `create_schema` stamps the newest revision directly (about 4 s)
        // instead of replaying every migration (`upgrade`).
        let mut dbsync = peer.venv.script_command("ironic-dbsync");
        dbsync.arg("--config-file").arg(&conf).arg("create_schema");
        peer.setup(&mut dbsync, &dir.join("dbsync.log"))?;

        let log = dir.join("ironic.log");
        let console_log = dir.join("ironic.console.log");
        let mut cmd = peer.venv.script_command("ironic");
        cmd.arg("--config-file").arg(&conf);
        cmd.envs(config.envs().iter().map(|(k, v)| (k, v)));
        let mut server = peer.spawn(&mut cmd, &console_log)?;
        let client = IronicClient::new(&format!("http://127.0.0.1:{port}"));
        let tail = || {
            let both = format!(
                "{}\n--- stdout/stderr ---\n{}",
                venv::file_tail(&log, 30),
                venv::file_tail(&console_log, 30)
            );
            (log.clone(), both)
        };
        server.wait_ready(
            "ironic",
            client.base(),
            peer::START_TIMEOUT,
            || client.is_up(),
            tail,
        )?;
        Ok(Self {
            client,
            port,
            log,
            console_log,
            venv: peer.venv,
            server,
            state: Some(peer.state),
        })
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
        let _ = self.server.process.kill_group();
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
