//! `deploy.get_deploy_steps` (sync) and `deploy.execute_deploy_step`
//! (async): the in-band half of Ironic's direct deploy.

use super::Ctx;
use crate::commands::{Command, Mode, Registry};
use crate::deploy::steps::{self, DeployState};
use std::sync::Arc;

/// Registers the deploy extension; `state` is shared with
/// `standby.get_partition_uuids`.
pub fn register(r: &mut Registry, ctx: &Ctx, state: Arc<DeployState>) {
    r.register(
        "deploy",
        "get_deploy_steps",
        Command::new(Mode::Sync, &["node", "ports"], |_| {
            Ok(Some(steps::deploy_steps()))
        }),
    );
    let root = ctx.root.clone();
    r.register(
        "deploy",
        "execute_deploy_step",
        Command::new(
            Mode::Async,
            &["step", "node", "ports", "deploy_version"],
            move |p| steps::execute_deploy_step(&root, &state, p),
        ),
    );
}
