//! `ipa-agent`: the daemon (default) and the ramdisk-side `rescue-user`
//! step. Flags mirror the `ipa-*` kernel parameters and win over them.

use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A rescue-capable agent for OpenStack Ironic (ironic-python-agent protocol).
///
/// Settings come from the kernel command line (<root>/proc/cmdline, ipa-*
/// parameters); the flags below override them.
#[derive(Parser, Debug)]
#[command(name = "ipa-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Prefix for every file read or written (/proc/cmdline, /etc, /sys/class/net, /run)
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Ironic API URL(s), comma-separated (ipa-api-url)
    #[arg(long, value_name = "URL[,URL]")]
    api_url: Option<String>,
    /// Address the API listens on (ipa-listen-host, default ::)
    #[arg(long, value_name = "IP")]
    listen_host: Option<String>,
    /// Port the API listens on (ipa-listen-port, default 9999)
    #[arg(long, value_name = "PORT")]
    listen_port: Option<String>,
    /// Address put in the callback URL (ipa-advertise-host; default: discovered)
    #[arg(long, value_name = "IP")]
    advertise_host: Option<String>,
    /// Port put in the callback URL (ipa-advertise-port, default 9999)
    #[arg(long, value_name = "PORT")]
    advertise_port: Option<String>,
    /// Pre-shared agent token (ipa-agent-token)
    #[arg(long, value_name = "TOKEN")]
    agent_token: Option<String>,
    /// CA file (PEM) to trust for Ironic, besides IPA's config files, the
    /// virtual media's ironic.crt and the system bundle (ipa-cafile)
    #[arg(long, value_name = "PATH")]
    cafile: Option<String>,
    /// Do not verify Ironic's TLS certificate (ipa-insecure)
    #[arg(long)]
    insecure: bool,
    /// Serve plain HTTP even when Ironic supports auto-TLS
    #[arg(long)]
    no_auto_tls: bool,
    /// Seconds before lookup gives up (ipa-lookup-timeout, default 600)
    #[arg(long, value_name = "SECONDS")]
    lookup_timeout: Option<String>,
    /// Starting lookup retry interval (ipa-lookup-interval, default 1)
    #[arg(long, value_name = "SECONDS")]
    lookup_interval: Option<String>,
    /// Force the Ironic API version, e.g. 1.68 (ipa-ironic-api-version)
    #[arg(long, value_name = "X.Y")]
    ironic_api_version: Option<String>,
    /// X-OpenStack-Request-ID for calls to Ironic (ipa-global-request-id)
    #[arg(long, value_name = "ID")]
    global_request_id: Option<String>,
    /// Log detail (ipa-debug)
    #[arg(long)]
    debug: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create or update the `rescue` user from the hash finalize_rescue wrote
    RescueUser,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut params: BTreeMap<String, String> = ipa_agent::config::read_kernel_params(&cli.root);
    let flags = [
        ("ipa-api-url", &cli.api_url),
        ("ipa-listen-host", &cli.listen_host),
        ("ipa-listen-port", &cli.listen_port),
        ("ipa-advertise-host", &cli.advertise_host),
        ("ipa-advertise-port", &cli.advertise_port),
        ("ipa-agent-token", &cli.agent_token),
        ("ipa-cafile", &cli.cafile),
        ("ipa-lookup-timeout", &cli.lookup_timeout),
        ("ipa-lookup-interval", &cli.lookup_interval),
        ("ipa-ironic-api-version", &cli.ironic_api_version),
        ("ipa-global-request-id", &cli.global_request_id),
    ];
    for (k, v) in flags {
        if let Some(v) = v {
            params.insert(k.to_string(), v.clone());
        }
    }
    for (k, on, value) in [
        ("ipa-insecure", cli.insecure, "1"),
        ("ipa-debug", cli.debug, "1"),
        ("ipa-enable-auto-tls", cli.no_auto_tls, "0"),
    ] {
        if on {
            params.insert(k.to_string(), value.to_string());
        }
    }
    let (mut config, mut warnings) = ipa_agent::config::from_params(cli.root.clone(), &params);
    let conf = ipa_agent::trust::read_agent_conf(&cli.root);
    config.apply_agent_conf(&conf, &mut warnings);
    ipa_agent::logging::init(config.debug);
    for w in warnings {
        log::warn!("{w}");
    }
    match cli.command {
        Some(Cmd::RescueUser) => {
            ipa_agent::rescue_user::run(&cli.root)?;
        }
        None => {
            log::info!(
                "ipa-agent {} starting (root {})",
                ipa_agent::AGENT_VERSION,
                cli.root.display()
            );
            if let Err(e) = ipa_agent::agent::run(config) {
                log::error!("{e}");
                return Err(e.into());
            }
        }
    }
    Ok(())
}
