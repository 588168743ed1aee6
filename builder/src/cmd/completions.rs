//! `ipa-build completions SHELL`: a shell completion script, generated from
//! the same clap definitions the parser uses, so it never drifts.

use crate::cmd::{Error, Outcome};

/// Arguments of `ipa-build completions`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The completion script for `cli` (the root command, from `main.rs`).
pub fn run(args: &Args, mut cli: clap::Command) -> Result<Outcome, Error> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "ipa-build", &mut buf);
    Ok(Outcome::success(String::from_utf8_lossy(&buf)))
}
