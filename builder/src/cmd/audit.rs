//! `ipa-build audit PATH`: the build's secret audit on a directory, an
//! initramfs (cpio, plain/gzip/zstd/xz, concatenated segments) or an ISO.
//! Exit status: 0 clean, 1 findings, 2 error.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::audit::{self, rules};
use crate::cmd::{Error, Outcome};

/// Arguments of `ipa-build audit`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Directory, initramfs or ISO image to scan.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Take reviewed exceptions from this profile's `audit.allow` list
    /// (only that file; `extends:` is not followed).
    #[arg(long, value_name = "PROFILE.yaml")]
    pub allow_file: Option<PathBuf>,
    /// Warnings (such as authorized_keys) fail too.
    #[arg(long)]
    pub strict: bool,
    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// List the rules and exit.
    #[arg(long)]
    pub list_rules: bool,
}

/// Scans `args.path`; the report is the outcome, `Found` when anything
/// fails (errors, and warnings too with `--strict`).
pub fn run(args: &Args) -> Result<Outcome, Error> {
    if args.list_rules {
        let mut s = String::new();
        for (name, what) in rules::RULES {
            let _ = writeln!(s, "{name:26} {what}");
        }
        return Ok(Outcome::success(s));
    }
    let allow = match &args.allow_file {
        Some(p) => audit::load_allow_file(p)?,
        None => Vec::new(),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let report = audit::audit_path(&args.path, &allow, threads)?;
    let text = if args.json {
        crate::cmd::json(&report)?
    } else {
        report.render()
    };
    let warnings = if args.strict {
        report.warnings().count()
    } else {
        0
    };
    Ok(Outcome::found_if(
        report.errors().count() + warnings > 0,
        text,
    ))
}
