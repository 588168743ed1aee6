//! A real Glance (Image API v2) on loopback, without Keystone.
//!
//! Glance no longer ships a server of its own: its WSGI app
//! (`glance.wsgi.api:application`) runs under gunicorn, reads its config from
//! `OS_GLANCE_CONFIG_DIR`, keeps its database in sqlite and images in a file
//! store under a temporary directory removed on drop. Without Keystone the
//! policy must not enforce the new defaults (they need a project scope).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::GroupChild;
use crate::venv::{self, VenvError};
use crate::{net, paths};

const GLANCE_VENV: &str = "venv-glance";
const REQUIREMENTS: &[&str] = &["glance==33.0.0", "gunicorn"];
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why Glance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum GlanceError {
    #[error(transparent)]
    Venv(#[from] VenvError),
    #[error("{path}: {source}")]
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
    #[error("glance-api-paste.ini not found under {venv}; is the glance package complete?")]
    NoPaste { venv: PathBuf },
    #[error("glance at {url} did not answer within {waited:?} (or exited); log {log}:\n{tail}")]
    NotReady {
        url: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> GlanceError {
    GlanceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A running Glance API; stopped and its state removed on drop.
pub struct Glance {
    url: String,
    // The process must die before its state directory goes.
    process: GroupChild,
    _state: tempfile::TempDir,
    dir: PathBuf,
}

impl Glance {
    /// Installs (once) and starts Glance on a free loopback port.
    pub fn start() -> Result<Self, GlanceError> {
        let venv = venv::ensure(GLANCE_VENV, REQUIREMENTS)?;
        let runs = paths::e2e_dir().join("runs");
        fs::create_dir_all(&runs).map_err(|e| io_err(&runs, e))?;
        let state = tempfile::Builder::new()
            .prefix("glance-")
            .tempdir_in(&runs)
            .map_err(|e| io_err(&runs, e))?;
        let dir = state.path().to_path_buf();
        let port = net::free_port().map_err(|e| io_err(Path::new("127.0.0.1:0"), e))?;
        for sub in ["images", "staging", "tasks"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        }
        let paste = find_paste(venv.root()).ok_or_else(|| GlanceError::NoPaste {
            venv: venv.root().to_path_buf(),
        })?;
        let paste_dst = dir.join("glance-api-paste.ini");
        fs::copy(&paste, &paste_dst).map_err(|e| io_err(&paste_dst, e))?;
        let conf = dir.join("glance-api.conf");
        fs::write(&conf, render_conf(&dir)).map_err(|e| io_err(&conf, e))?;

        let dbsync_log = dir.join("dbsync.log");
        let mut cmd = venv.script_command("glance-manage");
        cmd.arg("--config-file").arg(&conf).arg("db_sync");
        run_logged(&mut cmd, &dbsync_log, "glance-manage db_sync")?;

        let log = dir.join("glance.log");
        let out = File::create(&log).map_err(|e| io_err(&log, e))?;
        let err = out.try_clone().map_err(|e| io_err(&log, e))?;
        let mut cmd = venv.script_command("gunicorn");
        cmd.arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--workers", "1", "--timeout", "300"])
            .arg("glance.wsgi.api:application")
            .env("OS_GLANCE_CONFIG_DIR", &dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let process =
            GroupChild::spawn(&mut cmd).map_err(|e| io_err(&venv.script("gunicorn"), e))?;
        let mut g = Self {
            url: format!("http://127.0.0.1:{port}"),
            process,
            _state: state,
            dir,
        };
        g.wait_ready(&log)?;
        Ok(g)
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Glance's state directory (config, sqlite, file store).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn wait_ready(&mut self, log: &Path) -> Result<(), GlanceError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let started = Instant::now();
        let url = format!("{}/v2/images", self.url);
        loop {
            let exited = matches!(self.process.try_status(), Ok(Some(_)));
            if !exited
                && let Ok(resp) = agent.get(&url).call()
                && resp.status() == 200
            {
                return Ok(());
            }
            if exited || started.elapsed() > START_TIMEOUT {
                return Err(GlanceError::NotReady {
                    url,
                    waited: started.elapsed(),
                    log: log.to_path_buf(),
                    tail: venv::file_tail(log, 40),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Glance {
    fn drop(&mut self) {
        let _ = self.process.kill_group();
    }
}

fn find_paste(root: &Path) -> Option<PathBuf> {
    walk(root, 0)
}

fn walk(dir: &Path, depth: usize) -> Option<PathBuf> {
    if depth > 6 {
        return None;
    }
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "glance-api-paste.ini") {
            return Some(p);
        }
        if e.file_type().is_ok_and(|t| t.is_dir())
            && let Some(found) = walk(&p, depth + 1)
        {
            return Some(found);
        }
    }
    None
}

fn render_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[DEFAULT]\n\
         enabled_backends = fs:file\n\
         [database]\n\
         connection = sqlite:///{d}/glance.sqlite\n\
         [glance_store]\n\
         default_backend = fs\n\
         [fs]\n\
         filesystem_store_datadir = {d}/images\n\
         [os_glance_staging_store]\n\
         filesystem_store_datadir = {d}/staging\n\
         [os_glance_tasks_store]\n\
         filesystem_store_datadir = {d}/tasks\n\
         [oslo_policy]\n\
         enforce_new_defaults = false\n\
         enforce_scope = false\n\
         [paste_deploy]\n\
         config_file = {d}/glance-api-paste.ini\n"
    )
}

fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<(), GlanceError> {
    let out = File::create(log).map_err(|e| io_err(log, e))?;
    let err = out.try_clone().map_err(|e| io_err(log, e))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| io_err(log, e))?;
    if !status.success() {
        return Err(GlanceError::Setup {
            command: what.to_string(),
            status: status.to_string(),
            log: log.to_path_buf(),
            tail: venv::file_tail(log, 30),
        });
    }
    Ok(())
}
