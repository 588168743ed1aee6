//! Python virtualenvs created on demand, once, and never left half-built.
//!
//! Tests that need a Python service (Ironic, the reference agent, Glance) call
//! [`ensure`] with a name and the exact requirements. The first caller builds
//! the venv; everyone else, in this process or a parallel `cargo test`, waits
//! on a lock file and then reuses it.
//!
//! A venv is built in a temporary sibling directory and renamed into place
//! only after `pip install` succeeded and a marker file recording the
//! requirements was written. A killed or failed install therefore leaves only
//! a `*.tmp-*` directory, which the next caller deletes, never something that
//! looks valid. Changing the requirements rebuilds the venv.
//!
//! Console scripts in a renamed venv carry the temporary path in their
//! shebang, so always start them through [`Venv::script_command`], which runs
//! them with the venv's own interpreter.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::paths;
use crate::process::{LoggedFailure, run_logged};

/// The file inside a finished venv that records what was installed.
const MARKER: &str = "ipa-e2e-requirements.txt";

/// Why a virtualenv could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    #[error("cannot create or use {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}\n(is python3-venv installed and is PyPI reachable?)")]
    Install(#[from] LoggedFailure),
}

/// A finished virtualenv.
#[derive(Debug, Clone)]
pub struct Venv {
    root: PathBuf,
    /// Wall time spent installing it in this call; `None` when it already existed.
    pub install_time: Option<Duration>,
}

impl Venv {
    /// The venv's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The venv's Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.root.join("bin").join("python")
    }

    /// Path of a console script installed in the venv (e.g. `ironic-dbsync`).
    pub fn script(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    /// A command that runs console script `name` with the venv's interpreter.
    ///
    /// Going through the interpreter instead of executing the script makes
    /// the script's shebang (which names the temporary build path) irrelevant.
    pub fn script_command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.python());
        cmd.arg(self.script(name));
        cmd
    }
}

/// Returns the venv `name` under [`paths::e2e_dir`] with exactly
/// `requirements` installed, building it first if needed.
///
/// `requirements` are pip arguments such as `"ironic==39.0.0"`. The call
/// blocks while another process holds the venv's lock. Progress of a build
/// goes to stderr (shown by `cargo test` on failure or with `--nocapture`).
pub fn ensure(name: &str, requirements: &[&str]) -> Result<Venv, VenvError> {
    let base = paths::e2e_dir();
    ensure_in(&base, name, requirements)
}

/// [`ensure`] with an explicit base directory.
pub fn ensure_in(base: &Path, name: &str, requirements: &[&str]) -> Result<Venv, VenvError> {
    fs::create_dir_all(base).map_err(|source| io_err(base, source))?;
    let root = base.join(name);
    let wanted = marker_text(requirements);

    // Fast path without the lock: a finished venv never changes in place.
    if is_complete(&root, &wanted) {
        return Ok(Venv {
            root,
            install_time: None,
        });
    }

    let lock_path = base.join(format!("{name}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| io_err(&lock_path, source))?;
    lock.lock().map_err(|source| io_err(&lock_path, source))?;

    // Someone else may have finished it while we waited.
    if is_complete(&root, &wanted) {
        return Ok(Venv {
            root,
            install_time: None,
        });
    }
    remove_leftovers(base, name)?;
    if root.exists() {
        eprintln!(
            "ipa-e2e: {} has other requirements or is incomplete; rebuilding",
            root.display()
        );
        fs::remove_dir_all(&root).map_err(|source| io_err(&root, source))?;
    }

    let started = Instant::now();
    let tmp = base.join(format!("{name}.tmp-{}", std::process::id()));
    let log_path = base.join(format!("{name}.install.log"));
    eprintln!(
        "ipa-e2e: creating venv {} with {} (log: {})",
        root.display(),
        requirements.join(" "),
        log_path.display()
    );
    let log = File::create(&log_path).map_err(|source| io_err(&log_path, source))?;
    let built = build(&tmp, requirements, &log, &log_path);
    if let Err(err) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(err);
    }
    let marker = tmp.join(MARKER);
    fs::write(&marker, &wanted).map_err(|source| io_err(&marker, source))?;
    fs::rename(&tmp, &root).map_err(|source| io_err(&root, source))?;
    let install_time = started.elapsed();
    eprintln!(
        "ipa-e2e: venv {} ready in {:.1} s",
        root.display(),
        install_time.as_secs_f64()
    );
    drop(lock);
    Ok(Venv {
        root,
        install_time: Some(install_time),
    })
}

/// Creates the venv in `tmp` and installs `requirements` into it.
fn build(tmp: &Path, requirements: &[&str], log: &File, log_path: &Path) -> Result<(), VenvError> {
    let mut create = Command::new("python3");
    create.arg("-m").arg("venv").arg(tmp);
    run_logged(&mut create, log, log_path)?;

    let mut install = Command::new(tmp.join("bin").join("python"));
    install
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(requirements);
    Ok(run_logged(&mut install, log, log_path)?)
}

/// The marker's content: one requirement per line.
fn marker_text(requirements: &[&str]) -> String {
    let mut text = requirements.join("\n");
    text.push('\n');
    text
}

/// A venv is complete when its marker exists and names the same requirements.
fn is_complete(root: &Path, wanted: &str) -> bool {
    root.join("bin").join("python").exists()
        && fs::read_to_string(root.join(MARKER)).is_ok_and(|text| text == wanted)
}

/// Deletes `<name>.tmp-*` directories left by killed or failed builds.
/// Only called while holding the lock, so none of them is in progress.
fn remove_leftovers(base: &Path, name: &str) -> Result<(), VenvError> {
    let prefix = format!("{name}.tmp-");
    let entries = fs::read_dir(base).map_err(|source| io_err(base, source))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|source| io_err(&path, source))?;
        }
    }
    Ok(())
}

/// The last `lines` lines of a text file, or an empty string if unreadable.
/// Reads at most the last 64 KiB so a huge log costs nothing.
pub fn file_tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file
        .seek(SeekFrom::Start(len.saturating_sub(WINDOW)))
        .is_err()
    {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn io_err(path: &Path, source: io::Error) -> VenvError {
    VenvError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_decides_completeness() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/python"), "").unwrap();
        let wanted = marker_text(&["a==1", "b==2"]);
        assert!(!is_complete(&root, &wanted), "no marker yet");
        fs::write(root.join(MARKER), marker_text(&["a==1"])).unwrap();
        assert!(!is_complete(&root, &wanted), "other requirements");
        fs::write(root.join(MARKER), &wanted).unwrap();
        assert!(is_complete(&root, &wanted));
    }

    #[test]
    fn failed_install_leaves_nothing_that_looks_valid() {
        let dir = tempfile::tempdir().unwrap();
        // A requirement pip rejects without touching the network.
        let err = ensure_in(
            dir.path(),
            "broken",
            &["--no-index", "no-such-package-ipa-e2e"],
        )
        .unwrap_err();
        assert!(matches!(err, VenvError::Install(_)), "{err}");
        // Only the lock and the install log the error points to: no venv,
        // no half-built `broken.tmp-*`.
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["broken.install.log", "broken.lock"]);
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "1\n2\n3\n4\n").unwrap();
        assert_eq!(file_tail(&path, 2), "3\n4");
        assert_eq!(file_tail(&dir.path().join("missing"), 2), "");
    }
}
