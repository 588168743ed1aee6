//! A real Glance (Image API v2) on loopback, without Keystone.
//!
//! Glance no longer ships a server of its own: its WSGI app
//! (`glance.wsgi.api:application`) runs under gunicorn, reads its config from
//! `OS_GLANCE_CONFIG_DIR`, keeps its database in sqlite and images in a file
//! store under a temporary directory removed on drop. Without Keystone the
//! policy must not enforce the new defaults (they need a project scope).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::peer::{self, Peer, PeerError, Running, io_err};
use crate::venv;

/// Glance, pinned, and the WSGI server it needs.
const GLANCE: Peer = Peer {
    service: "glance",
    venv: "venv-glance",
    requirements: &["glance==33.0.0", "gunicorn"],
};

/// Why Glance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum GlanceError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("glance-api-paste.ini not found under {venv}; is the glance package complete?")]
    NoPaste { venv: PathBuf },
}

/// A running Glance API; stopped and its state removed on drop.
pub struct Glance {
    url: String,
    // The process must die before its state directory goes.
    server: Running,
    _state: tempfile::TempDir,
    dir: PathBuf,
}

impl Glance {
    /// Installs (once) and starts Glance on a free loopback port.
    pub fn start() -> Result<Self, GlanceError> {
        let peer = GLANCE.prepare()?;
        let dir = peer.dir().to_path_buf();
        for sub in ["images", "staging", "tasks"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let paste = find_paste(peer.venv.root()).ok_or_else(|| GlanceError::NoPaste {
            venv: peer.venv.root().to_path_buf(),
        })?;
        let paste_dst = dir.join("glance-api-paste.ini");
        fs::copy(&paste, &paste_dst).map_err(io_err(&paste_dst))?;
        let conf = peer.write("glance-api.conf", &render_conf(&dir))?;

        let mut cmd = peer.venv.script_command("glance-manage");
        cmd.arg("--config-file").arg(&conf).arg("db_sync");
        peer.setup(&mut cmd, &dir.join("dbsync.log"))?;

        let log = dir.join("glance.log");
        let url = format!("http://127.0.0.1:{}", peer.port);
        let mut cmd = peer.venv.script_command("gunicorn");
        cmd.arg("--bind")
            .arg(format!("127.0.0.1:{}", peer.port))
            .args(["--workers", "1", "--timeout", "300"])
            .arg("glance.wsgi.api:application")
            .env("OS_GLANCE_CONFIG_DIR", &dir);
        let mut server = peer.spawn(&mut cmd, &log)?;
        let probe: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let images = format!("{url}/v2/images");
        server.wait_ready(
            "glance",
            &images,
            peer::START_TIMEOUT,
            || probe.get(&images).call().is_ok_and(|r| r.status() == 200),
            || (log.clone(), venv::file_tail(&log, 40)),
        )?;
        Ok(Self {
            url,
            server,
            _state: peer.state,
            dir,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Glance's state directory (config, sqlite, file store).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Glance {
    fn drop(&mut self) {
        let _ = self.server.process.kill_group();
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
