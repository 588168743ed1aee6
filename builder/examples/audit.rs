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
    args: ipa_build::cmd::audit::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = ipa_build::cmd::audit::run(&cli.args);
    let code = ipa_build::cmd::exit_code(&result);
    match result {
        Ok(o) => print!("{}", o.stdout),
        Err(e) => eprintln!("error: {e}"),
    }
    ExitCode::from(code)
}
