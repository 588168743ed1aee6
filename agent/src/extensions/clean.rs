//! `clean.get_clean_steps` (sync) and `clean.execute_clean_step` (async):
//! automated and manual cleaning's disk wipes.

use super::Ctx;
use crate::commands::{Command, Mode, Registry};
use crate::deploy::steps;

/// Registers the clean extension.
pub fn register(r: &mut Registry, ctx: &Ctx) {
    r.register(
        "clean",
        "get_clean_steps",
        Command::new(Mode::Sync, &["node", "ports"], |_| {
            Ok(Some(steps::clean_steps()))
        }),
    );
    let root = ctx.root.clone();
    r.register(
        "clean",
        "execute_clean_step",
        Command::new(
            Mode::Async,
            &["step", "node", "ports", "clean_version"],
            move |p| steps::execute_clean_step(&root, p),
        ),
    );
}
