//! `deploy.get_deploy_steps` (sync) and `deploy.execute_deploy_step`
//! (async): the in-band half of Ironic's direct deploy.

use super::Ctx;
use crate::commands::{Command, Mode, Outcome, Params, Registry};
use crate::deploy::steps::{self, DeployState};
use serde_json::Value;
use std::sync::Arc;

/// Registers the deploy extension; `state` is shared with
/// `standby.get_partition_uuids`.
pub fn register(r: &mut Registry, ctx: &Ctx, state: Arc<DeployState>) {
    let (root, settings) = (ctx.root.clone(), ctx.deploy.clone());
    register_steps(
        r,
        "deploy",
        steps::deploy_steps,
        "deploy_version",
        move |p| steps::execute_deploy_step(&root, &settings, &state, p),
    );
}

/// Registers `<ext>.get_<ext>_steps` (sync, returns `list()`) and
/// `<ext>.execute_<ext>_step` (async, runs `exec`), with the keyword
/// arguments Ironic sends; `version_arg` names the hardware manager version.
pub(super) fn register_steps(
    r: &mut Registry,
    ext: &str,
    list: fn() -> Value,
    version_arg: &'static str,
    exec: impl Fn(Params) -> Outcome + Send + Sync + 'static,
) {
    let exec_args: &'static [&'static str] = match version_arg {
        "clean_version" => &["step", "node", "ports", "clean_version"],
        _ => &["step", "node", "ports", "deploy_version"],
    };
    r.register(
        ext,
        &format!("get_{ext}_steps"),
        Command::new(Mode::Sync, &["node", "ports"], move |_| Ok(Some(list()))),
    );
    r.register(
        ext,
        &format!("execute_{ext}_step"),
        Command::new(Mode::Async, exec_args, exec),
    );
}
