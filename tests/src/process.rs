//! A child process that runs in its own process group and dies with its owner.
//!
//! Servers under test (Ironic, the agent, later QEMU) may fork helpers; killing
//! only the direct child would leave those behind holding ports and files. So
//! every child gets its own process group and the whole group is signalled:
//! SIGTERM first, SIGKILL after a grace period.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a group gets to exit after SIGTERM before it is SIGKILLed.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// A spawned child leading its own process group; the group is killed on drop.
#[derive(Debug)]
pub struct GroupChild {
    child: Child,
    status: Option<ExitStatus>,
}

impl GroupChild {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> io::Result<Self> {
        let child = cmd.process_group(0).spawn()?;
        Ok(Self {
            child,
            status: None,
        })
    }

    /// The child's process id (also its process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has exited, without blocking.
    pub fn try_status(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Terminates the whole process group (SIGTERM, then SIGKILL after a
    /// grace period) and reaps the child.
    pub fn kill_group(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            // The leader is gone, but helpers it forked may still be alive.
            signal_group(self.id(), libc::SIGKILL);
            return Ok(status);
        }
        signal_group(self.id(), libc::SIGTERM);
        if let Some(status) = self.wait_timeout(TERM_GRACE)? {
            signal_group(self.id(), libc::SIGKILL);
            return Ok(status);
        }
        signal_group(self.id(), libc::SIGKILL);
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        // Errors here mean the group is already gone; nothing left to do.
        let _ = self.kill_group();
    }
}

/// Sends `signal` to every process in group `pgid`. A group that no longer
/// exists (ESRCH) is not an error: that is the state we want.
fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid only sends a signal to a process
    // group; it touches no memory of ours.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Runs a short host command (a tool, `ipa-agent` once) to completion and
/// returns its output; fails the test, showing the command, its status and
/// what it printed, unless it succeeds.
pub fn checked(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (see .ci/test for the packages)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A setup command (venv creation, pip, a database schema) that did not
/// succeed; its output is in `log`, whose last lines are quoted.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed ({status}); log {log}:\n{tail}")]
pub struct LoggedFailure {
    pub command: String,
    pub status: String,
    pub log: PathBuf,
    pub tail: String,
}

/// Runs `cmd` to completion with stdin closed and stdout and stderr appended
/// to `log` (open at `log_path`), so a failure can be read after the fact.
pub fn run_logged(cmd: &mut Command, log: &File, log_path: &Path) -> Result<(), LoggedFailure> {
    let shown = format!("{cmd:?}");
    let failure = |status: String, tail: String| LoggedFailure {
        command: shown.clone(),
        status,
        log: log_path.to_path_buf(),
        tail,
    };
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => return Err(failure(e.to_string(), String::new())),
    };
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| failure(e.to_string(), String::new()))?;
    if status.success() {
        return Ok(());
    }
    Err(failure(
        status.to_string(),
        crate::venv::file_tail(log_path, 40),
    ))
}
