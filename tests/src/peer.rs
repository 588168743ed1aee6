//! A Python peer service (Ironic, Glance) on loopback: one way to start them.
//!
//! Every peer goes through the same steps, and each step used to be written
//! once per service: a venv with pinned requirements ([`crate::venv`]), a
//! throwaway state directory under `target/e2e/runs`, a free port on
//! 127.0.0.1, setup commands whose output goes to a log that is quoted when
//! they fail (`ironic-dbsync`, `glance-manage db_sync`), and the server in its
//! own process group, polled until it answers or dies. [`Peer::prepare`] and
//! the methods of [`Prepared`] are those steps; the service modules only say
//! what is specific to them (configuration, commands, readiness probe).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{GroupChild, LoggedFailure, run_logged};
use crate::venv::{self, Venv, VenvError};
use crate::{net, paths};

/// Why a peer service could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Venv(#[from] VenvError),
    #[error("cannot create or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Setup(#[from] LoggedFailure),
    #[error("{service} exited before it answered ({status}); log {log}:\n{tail}")]
    Exited {
        service: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{service} at {url} did not answer within {waited:?}; log {log}:\n{tail}")]
    NotReady {
        service: &'static str,
        url: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
}

/// `map_err` helper: an I/O failure on `path`.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PeerError + '_ {
    move |source| PeerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How long a service may take to answer after its process started: Ironic
/// takes about 7 s and Glance 4-5 s on a loaded 2-core machine; the margin
/// covers tests running in parallel.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// What a peer is: its name in messages and state directories, and its venv.
pub struct Peer {
    pub service: &'static str,
    pub venv: &'static str,
    pub requirements: &'static [&'static str],
}

/// A venv, a state directory and a port, before the server runs.
pub struct Prepared {
    pub service: &'static str,
    pub venv: Venv,
    pub state: tempfile::TempDir,
    pub port: u16,
}

/// The running server: its process group dies with this value.
pub struct Running {
    pub process: GroupChild,
    /// Where its stdout and stderr go.
    pub console_log: PathBuf,
}

impl Peer {
    /// Installs the venv (once), makes a fresh state directory and picks a port.
    pub fn prepare(&self) -> Result<Prepared, PeerError> {
        let venv = venv::ensure(self.venv, self.requirements)?;
        let runs = paths::e2e_dir().join("runs");
        fs::create_dir_all(&runs).map_err(io_err(&runs))?;
        let state = tempfile::Builder::new()
            .prefix(&format!("{}-", self.service))
            .tempdir_in(&runs)
            .map_err(io_err(&runs))?;
        let port = net::free_port().map_err(io_err(Path::new("127.0.0.1:0")))?;
        Ok(Prepared {
            service: self.service,
            venv,
            state,
            port,
        })
    }
}

impl Prepared {
    /// The state directory (configuration, sqlite, logs).
    pub fn dir(&self) -> &Path {
        self.state.path()
    }

    /// Writes a file into the state directory and returns its path.
    pub fn write(&self, name: &str, content: &str) -> Result<PathBuf, PeerError> {
        let path = self.dir().join(name);
        fs::write(&path, content).map_err(io_err(&path))?;
        Ok(path)
    }

    /// Runs a setup command to completion with its output in `log`; a
    /// failure quotes the log's tail.
    pub fn setup(&self, cmd: &mut Command, log: &Path) -> Result<(), PeerError> {
        let file = File::create(log).map_err(io_err(log))?;
        Ok(run_logged(cmd, &file, log)?)
    }

    /// Starts the server in its own process group, output in `console_log`.
    pub fn spawn(&self, cmd: &mut Command, console_log: &Path) -> Result<Running, PeerError> {
        let cmd = with_log(cmd, console_log)?.current_dir(self.dir());
        let process = GroupChild::spawn(cmd).map_err(io_err(console_log))?;
        Ok(Running {
            process,
            console_log: console_log.to_path_buf(),
        })
    }
}

impl Running {
    /// Polls `ready` every 250 ms until it says yes, the process exits, or
    /// `timeout` passes; failures quote `tail()` (the service's own log).
    pub fn wait_ready(
        &mut self,
        service: &'static str,
        url: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
        tail: impl Fn() -> (PathBuf, String),
    ) -> Result<(), PeerError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.process.try_status() {
                let (log, tail) = tail();
                return Err(PeerError::Exited {
                    service,
                    status: status.to_string(),
                    log,
                    tail,
                });
            }
            if ready() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                let (log, tail) = tail();
                return Err(PeerError::NotReady {
                    service,
                    url: url.to_string(),
                    waited: started.elapsed(),
                    log,
                    tail,
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// `cmd` with no stdin and stdout + stderr appended to a new file at `log`.
fn with_log<'a>(cmd: &'a mut Command, log: &Path) -> Result<&'a mut Command, PeerError> {
    let out = File::create(log).map_err(io_err(log))?;
    let err = out.try_clone().map_err(io_err(log))?;
    Ok(cmd.stdin(Stdio::null()).stdout(out).stderr(err))
}
