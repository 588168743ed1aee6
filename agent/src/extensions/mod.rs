//! The extensions this agent ships: `rescue`, `system`, `standby`, `log`,
//! `deploy`, `clean`, `image`.
//! Each module registers its commands into a [`Registry`].

pub mod clean;
pub mod deploy;
pub mod image;
pub mod logs;
pub mod rescue;
pub mod standby;
pub mod system;

use crate::commands::Registry;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// What the daemon should do next; commands change it, the main loop and the
/// heartbeater watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Serve the API and heartbeat.
    Serving,
    /// `finalize_rescue` succeeded: stop serving and heartbeating, exit 0.
    Rescued,
    /// `system.lockdown`: stop serving, take interfaces down, sleep forever.
    Lockdown,
}

/// Shared handle to the run state.
#[derive(Clone)]
pub struct Control {
    tx: Arc<watch::Sender<RunState>>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            tx: Arc::new(watch::channel(RunState::Serving).0),
        }
    }
}

impl Control {
    /// Requests a new state (the first non-serving state wins).
    pub fn set(&self, s: RunState) {
        self.tx.send_if_modified(|cur| {
            if *cur == RunState::Serving {
                *cur = s;
                true
            } else {
                false
            }
        });
    }
    /// The current state.
    pub fn get(&self) -> RunState {
        *self.tx.borrow()
    }
    /// Resolves once the agent must stop serving; returns the new state.
    pub async fn stopped(&self) -> RunState {
        let mut rx = self.tx.subscribe();
        match rx.wait_for(|s| *s != RunState::Serving).await {
            Ok(s) => *s,
            Err(_) => RunState::Serving,
        }
    }
}

/// What commands may touch.
#[derive(Clone)]
pub struct Ctx {
    /// File-system prefix (`/` in a ramdisk).
    pub root: PathBuf,
    /// Run state of the daemon.
    pub control: Control,
    /// How `deploy.write_image` downloads: the agent's configuration and trust.
    pub deploy: crate::deploy::settings::Settings,
}

/// The registry with every built-in extension.
pub fn builtin_registry(ctx: &Ctx) -> Registry {
    let mut r = Registry::default();
    rescue::register(&mut r, ctx);
    system::register(&mut r, ctx);
    standby::register(&mut r, ctx);
    logs::register(&mut r, ctx);
    let deployed = std::sync::Arc::new(crate::deploy::steps::DeployState::default());
    deploy::register(&mut r, ctx, deployed.clone());
    standby::register_partition_uuids(&mut r, deployed);
    clean::register(&mut r, ctx);
    image::register(&mut r, ctx);
    r
}
