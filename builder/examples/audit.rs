//! `ipa-build audit` as a stand-alone program, for `benches/audit.sh` and for
//! trying the audit on any tree or image:
//! `cargo run --release -p ipa-build --example audit -- [--json] PATH`.
//! Exit status: 0 clean, 1 findings, 2 error.

use std::process::ExitCode;

use clap::Parser;

/// Scan a directory, an initramfs or an ISO image for secrets.
#[derive(Parser, Debug)]
#[command(name = "ipa-build-audit")]
struct Cli {
    #[command(flatten)]
    args: ipa_build::audit::AuditArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(ipa_build::audit::run_cli(&cli.args).clamp(0, 255) as u8)
}
