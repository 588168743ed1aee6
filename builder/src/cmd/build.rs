//! `ipa-build build` (and `ipa-build` with no subcommand): build a profile.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::build::{self, BuildOptions, BuildSummary};
use crate::cmd::{Error, Outcome, PathArgs};
use crate::config::options::Overrides;
use crate::config::profile::{Compression, Format};
use crate::report::{Reporter, human_bytes};

/// Arguments of a build. Also the root's own flags: `ipa-build --profile X`
/// is `ipa-build build --profile X`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Profile name (from the profile directories) or path to a profile YAML file.
    #[arg(long, short = 'p', value_name = "NAME|FILE")]
    pub profile: Option<String>,
    /// Output directory [default: out/NAME].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Download cache [default: $XDG_CACHE_HOME/ipa-build or ~/.cache/ipa-build].
    #[arg(long, value_name = "DIR", env = "IPA_BUILD_CACHE")]
    pub cache: Option<PathBuf>,
    /// Use only what is in the cache; fail, naming what is missing, otherwise.
    #[arg(long)]
    pub offline: bool,
    /// Debian mirror replacing the first apt source's URI [default: the host's apt sources].
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// A prebuilt static ipa-agent binary instead of building this workspace's.
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Timestamp for every file and date in the outputs
    /// [default: the Date of the newest signed Debian index used].
    #[arg(long, value_name = "SECONDS", env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<u64>,
    /// Initramfs compression, overriding the profile.
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,
    /// Compression level, overriding the profile; checked against the
    /// compressor's range exactly like `output.level`.
    #[arg(long)]
    pub level: Option<u32>,
    /// Artifacts to write, overriding the profile (repeatable).
    #[arg(long = "format", value_enum)]
    pub formats: Vec<Format>,
    /// Extra kernel argument for the ISO's boot menu, after the profile's (repeatable).
    #[arg(long, value_name = "ARG")]
    pub append: Vec<String>,
    /// Where to put the temporary staging tree [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Keep the staged root filesystem in DIR after the build, for inspection.
    #[arg(long, value_name = "DIR")]
    pub keep_tree: Option<PathBuf>,
    /// Never install missing host packages, even as root; just say what is missing.
    #[arg(long)]
    pub no_install: bool,
    /// Print a machine-readable JSON summary on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Only warnings and errors on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub paths: PathArgs,
}

impl Args {
    /// The build's options: [`BuildOptions::new`]'s defaults with what the
    /// command line says laid over them.
    pub fn options(&self, profile: String) -> BuildOptions {
        let mut opts = BuildOptions::new(profile);
        opts.search = self.paths.search_paths();
        opts.output.clone_from(&self.output);
        if let Some(c) = &self.cache {
            opts.fetch.cache_dir.clone_from(c);
        }
        opts.fetch.offline = self.offline;
        opts.fetch.mirror.clone_from(&self.mirror);
        opts.agent.clone_from(&self.agent);
        opts.source_date_epoch = self.source_date_epoch;
        opts.overrides = Overrides {
            compression: self.compression,
            level: self.level,
            formats: self.formats.clone(),
        };
        opts.append.clone_from(&self.append);
        opts.work_dir.clone_from(&self.work_dir);
        opts.keep_tree.clone_from(&self.keep_tree);
        opts.fetch.install_host_packages = !self.no_install;
        opts
    }
}

/// Builds the profile; the summary (or `--json`) is the outcome.
pub fn run(args: &Args) -> Result<Outcome, Error> {
    let Some(profile) = args.profile.clone() else {
        return Err(Error::Usage(
            "no profile given. Try `ipa-build --profile tinyipa`; `ipa-build list` shows the profiles."
                .to_string(),
        ));
    };
    let reporter = if args.quiet {
        Reporter::quiet()
    } else {
        Reporter::auto()
    };
    let summary =
        build::build(&args.options(profile), &reporter).map_err(|source| Error::Build {
            source,
            json: args.json,
        })?;
    if args.json {
        return crate::cmd::json(&summary).map(Outcome::success);
    }
    Ok(Outcome::success(render(&summary)))
}

/// The human summary: artifacts with sizes and hashes, then the upload commands.
fn render(summary: &BuildSummary) -> String {
    let mut s = format!(
        "Built {} in {}:\n",
        summary.profile,
        summary.output.display()
    );
    for a in &summary.artifacts {
        let _ = writeln!(
            s,
            "  {:<28} {:>10}  sha256 {}",
            a.file,
            human_bytes(a.size),
            a.sha256
        );
    }
    s.push_str("\nUpload to Glance and use for rescue:\n");
    for line in &summary.upload_commands {
        let _ = writeln!(s, "  {line}");
    }
    s
}
