//! `system.lockdown`: stop serving and cut the node off the network. The main
//! loop does the work once the API has answered (see `agent::run`).

use super::{Ctx, RunState};
use crate::commands::{Command, Mode, Registry};

/// Registers `system.lockdown`.
pub fn register(r: &mut Registry, ctx: &Ctx) {
    let ctx = ctx.clone();
    r.register(
        "system",
        "lockdown",
        Command::new(Mode::Sync, &[], move |_| {
            log::warn!("lockdown requested: the API stops and every interface goes down");
            ctx.control.set(RunState::Lockdown);
            Ok(None)
        }),
    );
}

/// Takes every interface except `lo` down with `ip link set <if> down`.
/// Only touches the real system when the root is `/`.
pub fn interfaces_down(root: &std::path::Path) {
    let names = crate::net::interface_names(root);
    for name in names.into_iter().filter(|n| n != "lo") {
        if root != std::path::Path::new("/") {
            log::info!("lockdown: would take {name} down (not the real root, skipped)");
            continue;
        }
        match std::process::Command::new("ip")
            .args(["link", "set", &name, "down"])
            .status()
        {
            Ok(s) if s.success() => log::info!("lockdown: {name} is down"),
            Ok(s) => log::error!("lockdown: `ip link set {name} down` failed with {s}"),
            Err(e) => log::error!("lockdown: cannot run `ip` to take {name} down: {e}"),
        }
    }
}
