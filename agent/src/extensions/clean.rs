//! `clean.get_clean_steps` (sync) and `clean.execute_clean_step` (async):
//! automated and manual cleaning's disk wipes.

use super::Ctx;
use crate::commands::Registry;
use crate::deploy::steps;

/// Registers the clean extension.
pub fn register(r: &mut Registry, ctx: &Ctx) {
    let root = ctx.root.clone();
    super::deploy::register_steps(r, "clean", steps::clean_steps, "clean_version", move |p| {
        steps::execute_clean_step(&root, p)
    });
}
