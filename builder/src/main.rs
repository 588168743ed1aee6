//! `ipa-build`: the command-line edge. The clap root, and the only place that
//! writes a command's result, prints errors and picks exit codes (see the
//! README's "Exit codes"); each subcommand lives in `ipa_build::cmd`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use ipa_build::cmd::{self, Outcome};

/// Build small, reproducible, audited rescue and deploy ramdisks for OpenStack Ironic.
///
/// `ipa-build --profile tinyipa` writes NAME.kernel, NAME.initramfs, SHA256SUMS,
/// NAME.*.sha512 and manifest.json into out/NAME/, then prints the commands that
/// upload them to Glance and set them as a node's rescue kernel and ramdisk.
#[derive(Parser, Debug)]
#[command(name = "ipa-build", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    build: cmd::build::Args,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a profile (the default when no subcommand is given).
    Build(Box<cmd::build::Args>),
    /// Scan a directory, an initramfs (any compression, concatenated) or an ISO
    /// for secrets. Exit 0 clean, 1 findings, 2 error.
    Audit(cmd::audit::Args),
    /// Boot a build directory in QEMU (serial console on this terminal; Ctrl-A X quits).
    Boot(cmd::boot::Args),
    /// Show what is in a build directory, an initramfs (any compression, concatenated) or an ISO.
    Inspect(cmd::inspect::Args),
    /// Compare two builds or initramfs files. Exit 0 same, 1 different, 2 error.
    Diff(cmd::diff::Args),
    /// Upload a build to Glance, verify its SHA-512, optionally set it on Ironic nodes, prune old images.
    Publish(cmd::publish::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(cmd::completions::Args),
    /// Print the ipa-build(1) man page (roff) on stdout.
    Man(cmd::man::Args),
    /// List the profiles and elements found, with their descriptions.
    List(cmd::list::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        None => cmd::build::run(&cli.build),
        Some(Command::Build(args)) => cmd::build::run(args),
        Some(Command::Audit(args)) => cmd::audit::run(args),
        Some(Command::Boot(args)) => cmd::boot::run(args),
        Some(Command::Inspect(args)) => cmd::inspect::run(args),
        Some(Command::Diff(args)) => cmd::diff::run(args),
        Some(Command::Publish(args)) => cmd::publish::run(args),
        Some(Command::Completions(args)) => cmd::completions::run(args, Cli::command()),
        Some(Command::Man(args)) => cmd::man::run(args, Cli::command()),
        Some(Command::List(args)) => cmd::list::run(args),
    };
    let code = cmd::exit_code(&result);
    let written = match result {
        Ok(Outcome { stdout, .. }) => write_stdout(&stdout),
        Err(e) => {
            report(&e);
            e.stdout().map_or(Ok(()), |s| write_stdout(&s))
        }
    };
    match written {
        Ok(()) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            // The result was lost: never report success (nor "found"), which
            // a script would believe.
            ExitCode::from(2)
        }
    }
}

/// Prints an error in the one style every command shares: `error: ` and the
/// message. Config errors arrive already rendered with their own `error:`
/// header and source snippet, so they are printed as they are.
fn report(e: &dyn std::fmt::Display) {
    let text = format!("{e:#}");
    if text.starts_with("error") {
        eprintln!("{text}");
    } else {
        eprintln!("error: {text}");
    }
}

/// Writes a command's result; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
