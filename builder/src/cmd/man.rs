//! `ipa-build man`: the ipa-build(1) man page (roff), generated from the
//! same clap definitions the parser uses.

use crate::cmd::{Error, Outcome};

/// Arguments of `ipa-build man` (none).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {}

/// The man page of `cli` (the root command, from `main.rs`).
pub fn run(_args: &Args, cli: clap::Command) -> Result<Outcome, Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cli)
        .render(&mut buf)
        .map_err(|e| Error::Output {
            what: "rendering the man page",
            message: e.to_string(),
        })?;
    Ok(Outcome::success(String::from_utf8_lossy(&buf)))
}
