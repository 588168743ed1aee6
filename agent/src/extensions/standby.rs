//! `standby.power_off` (async), `standby.sync` (sync) and
//! `standby.get_partition_uuids` (sync, after `deploy.write_image`).

use super::Ctx;
use crate::commands::{Command, CommandError, Mode, Registry};
use crate::deploy::steps::DeployState;
use crate::fsutil::under;
use std::path::Path;
use std::sync::Arc;

/// Registers `standby.power_off` and `standby.sync`.
pub fn register(r: &mut Registry, ctx: &Ctx) {
    let root = ctx.root.clone();
    r.register(
        "standby",
        "power_off",
        Command::new(Mode::Async, &[], move |_| power_off(&root).map(|()| None)),
    );
    r.register(
        "standby",
        "sync",
        Command::new(Mode::Sync, &[], |_| run("sync", &[]).map(|()| None)),
    );
}

/// Registers `standby.get_partition_uuids`: `{}` until an image was
/// written, then IPA's `{"root uuid": <disk identifier>}` for a whole-disk
/// image.
pub fn register_partition_uuids(r: &mut Registry, state: Arc<DeployState>) {
    r.register(
        "standby",
        "get_partition_uuids",
        Command::new(Mode::Sync, &[], move |_| Ok(Some(state.partition_uuids()))),
    );
}

fn run(prog: &str, args: &[&str]) -> Result<(), CommandError> {
    match std::process::Command::new(prog).args(args).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(CommandError::execution(format!("`{prog}` exited with {s}"))),
        Err(e) => Err(CommandError::execution(format!("cannot run `{prog}`: {e}"))),
    }
}

/// `poweroff`, falling back to the magic SysRq `o`. With a root other than
/// `/` (tests) only the SysRq file under that root is written, so a test can
/// never switch the host off.
fn power_off(root: &Path) -> Result<(), CommandError> {
    log::warn!("powering off");
    if root == Path::new("/") {
        match run("poweroff", &[]) {
            Ok(()) => return Ok(()),
            Err(e) => log::warn!("{e}; trying SysRq"),
        }
    }
    let trigger = under(root, "/proc/sysrq-trigger");
    std::fs::write(&trigger, b"o").map_err(|e| {
        CommandError::execution(format!(
            "cannot power off: writing {} failed: {e}",
            trigger.display()
        ))
    })
}
