//! `ipa-build`: the command-line edge. Parses flags into typed options, runs
//! the pipeline, and turns errors into messages and exit codes (see the
//! README's "Exit codes").

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use ipa_build::build::{self as pipeline, BuildOptions};
use ipa_build::cache::Cache;
use ipa_build::config::profile::{Compression, Format};
use ipa_build::config::{element, profile};
use ipa_build::report::{Reporter, human_bytes};

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
    build: BuildArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a profile (the default when no subcommand is given).
    Build(Box<BuildArgs>),
    /// Scan a directory, an initramfs (any compression, concatenated) or an ISO
    /// for secrets. Exit 0 clean, 1 findings, 2 error.
    Audit(ipa_build::audit::AuditArgs),
    /// Boot a build directory in QEMU (serial console on this terminal; Ctrl-A X quits).
    Boot(ipa_build::cmd::boot::BootArgs),
    /// Show what is in a build directory, an initramfs (any compression, concatenated) or an ISO.
    Inspect(ipa_build::cmd::inspect::InspectArgs),
    /// Compare two builds or initramfs files. Exit 0 same, 1 different, 2 error.
    Diff(ipa_build::cmd::diff::DiffArgs),
    /// Upload a build to Glance, verify its SHA-512, optionally set it on Ironic nodes, prune old images.
    Publish(ipa_build::publish::PublishArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the ipa-build(1) man page (roff) on stdout.
    Man,
    /// List the profiles and elements found, with their descriptions.
    List(PathArgs),
}

#[derive(Args, Debug, Clone)]
struct PathArgs {
    /// Extra directory of profiles, searched before the built-in ones (repeatable).
    #[arg(long = "profiles-path", value_name = "DIR")]
    profiles_path: Vec<PathBuf>,
    /// Extra directory of elements, searched before the built-in ones (repeatable).
    #[arg(long = "elements-path", value_name = "DIR")]
    elements_path: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct BuildArgs {
    /// Profile name (from the profile directories) or path to a profile YAML file.
    #[arg(long, short = 'p', value_name = "NAME|FILE")]
    profile: Option<String>,
    /// Output directory [default: out/NAME].
    #[arg(long, short = 'o', value_name = "DIR")]
    output: Option<PathBuf>,
    /// Download cache [default: $XDG_CACHE_HOME/ipa-build or ~/.cache/ipa-build].
    #[arg(long, value_name = "DIR", env = "IPA_BUILD_CACHE")]
    cache: Option<PathBuf>,
    /// Use only what is in the cache; fail, naming what is missing, otherwise.
    #[arg(long)]
    offline: bool,
    /// Debian mirror replacing the first apt source's URI [default: the host's apt sources].
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// A prebuilt static ipa-agent binary instead of building this workspace's.
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
    /// Timestamp for every file and date in the outputs
    /// [default: the Date of the newest signed Debian index used].
    #[arg(long, value_name = "SECONDS", env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<u64>,
    /// Initramfs compression, overriding the profile.
    #[arg(long, value_enum)]
    compression: Option<CompressionArg>,
    /// Compression level, overriding the profile.
    #[arg(long)]
    level: Option<u32>,
    /// Artifacts to write, overriding the profile (repeatable).
    #[arg(long = "format", value_enum)]
    formats: Vec<FormatArg>,
    /// Extra kernel argument for the ISO's boot menu, after the profile's (repeatable).
    #[arg(long, value_name = "ARG")]
    append: Vec<String>,
    /// Where to put the temporary staging tree [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the staged root filesystem in DIR after the build, for inspection.
    #[arg(long, value_name = "DIR")]
    keep_tree: Option<PathBuf>,
    /// Never install missing host packages, even as root; just say what is missing.
    #[arg(long)]
    no_install: bool,
    /// Print a machine-readable JSON summary on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// Only warnings and errors on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    paths: PathArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum CompressionArg {
    Zstd,
    Gzip,
    Xz,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    Kernel,
    Initramfs,
    Iso,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::List(paths)) => list(&paths),
        Some(Command::Build(args)) => build(&args),
        Some(Command::Audit(args)) => exit(ipa_build::audit::run_cli(&args)),
        Some(Command::Boot(args)) => exit(ipa_build::cmd::boot::run_cli(&args)),
        Some(Command::Inspect(args)) => exit(ipa_build::cmd::inspect::run_cli(&args)),
        Some(Command::Diff(args)) => exit(ipa_build::cmd::diff::run_cli(&args)),
        Some(Command::Publish(args)) => exit(ipa_build::publish::run_cli(&args)),
        Some(Command::Completions { shell }) => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ipa-build", &mut buf);
            print_bytes(&buf)
        }
        Some(Command::Man) => {
            let mut buf = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut buf) {
                Ok(()) => print_bytes(&buf),
                Err(e) => {
                    eprintln!("error: rendering the man page: {e}");
                    Err(1)
                }
            }
        }
        None => build(&cli.build),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// Writes generated text to stdout; a closed pipe (`| head`) is not an error.
fn print_bytes(buf: &[u8]) -> Result<(), u8> {
    use std::io::Write;
    match std::io::stdout().write_all(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            Err(1)
        }
    }
}

/// Maps a subcommand's status (0 success) onto `main`'s result.
fn exit(code: i32) -> Result<(), u8> {
    match code {
        0 => Ok(()),
        c => Err(u8::try_from(c).unwrap_or(2)),
    }
}

/// Built-in profile and element directories: the checkout this binary was
/// built from, so `cargo run` works from anywhere in it.
fn builtin(dir: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir()
        && cwd.join(dir).is_dir()
    {
        dirs.push(cwd.join(dir));
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    if repo.is_dir() && !dirs.iter().any(|d| same(d, &repo)) {
        dirs.push(repo);
    }
    dirs
}

fn same(a: &std::path::Path, b: &std::path::Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

fn search_paths(paths: &PathArgs) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut profiles = paths.profiles_path.clone();
    profiles.extend(builtin("profiles"));
    let mut elements = paths.elements_path.clone();
    elements.extend(builtin("elements"));
    (profiles, elements)
}

fn list(paths: &PathArgs) -> Result<(), u8> {
    let (profile_dirs, element_dirs) = search_paths(paths);
    let print =
        |title: &str,
         items: Result<Vec<(String, String)>, ipa_build::config::diag::ConfigError>| {
            match items {
                Ok(items) => {
                    println!("{title}:");
                    let width = items.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
                    for (name, desc) in items {
                        println!("  {name:<width$}  {desc}");
                    }
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    Err(3u8)
                }
            }
        };
    print("profiles", profile::list(&profile_dirs))?;
    println!();
    print("elements", element::list(&element_dirs))
}

fn build(args: &BuildArgs) -> Result<(), u8> {
    let Some(profile) = args.profile.clone() else {
        eprintln!(
            "error: no profile given. Try `ipa-build --profile tinyipa`; `ipa-build list` shows the profiles."
        );
        return Err(2);
    };
    let (profile_dirs, element_dirs) = search_paths(&args.paths);
    let reporter = if args.quiet {
        Reporter::quiet()
    } else {
        Reporter::auto()
    };
    let opts = BuildOptions {
        profile,
        profile_dirs,
        element_dirs,
        output: args.output.clone(),
        cache_dir: args.cache.clone().unwrap_or_else(Cache::default_dir),
        offline: args.offline,
        mirror: args.mirror.clone(),
        agent: args.agent.clone(),
        source_date_epoch: args.source_date_epoch,
        compression: args.compression.map(|c| match c {
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Xz => Compression::Xz,
        }),
        level: args.level,
        formats: args
            .formats
            .iter()
            .map(|f| match f {
                FormatArg::Kernel => Format::Kernel,
                FormatArg::Initramfs => Format::Initramfs,
                FormatArg::Iso => Format::Iso,
            })
            .collect(),
        append: args.append.clone(),
        work_dir: args.work_dir.clone(),
        keep_tree: args.keep_tree.clone(),
        install_host_packages: !args.no_install,
        etc_apt: PathBuf::from("/etc/apt"),
    };
    match pipeline::build(&opts, &reporter) {
        Ok(summary) => {
            if args.json {
                match serde_json::to_string_pretty(&summary) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: could not print the summary: {e}");
                        return Err(1);
                    }
                }
            } else {
                println!("Built {} in {}:", summary.profile, summary.output.display());
                for a in &summary.artifacts {
                    println!(
                        "  {:<28} {:>10}  sha256 {}",
                        a.file,
                        human_bytes(a.size),
                        a.sha256
                    );
                }
                println!("\nUpload to Glance and use for rescue:");
                for line in &summary.upload_commands {
                    println!("  {line}");
                }
            }
            Ok(())
        }
        Err(e) => {
            let code = e.exit_code();
            let text = e.to_string();
            if text.starts_with("error") {
                eprintln!("{text}");
            } else {
                eprintln!("error: {text}");
            }
            if args.json {
                println!("{}", serde_json::json!({"error": text, "exit_code": code}));
            }
            Err(code as u8)
        }
    }
}
