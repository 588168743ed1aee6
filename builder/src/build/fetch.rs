//! Stage 3: every input, verified, in the cache.
//!
//! The agent comes first (a bad `--agent` is the user's mistake and worth
//! reporting before any download), then the host tools the later stages
//! run, then the Debian archive: signed indices, the dependency closure of
//! the named packages, the kernel, and (for an ISO) the boot loaders, taken
//! alone without their dependencies because they are files for the ISO,
//! not part of the image.

use std::path::PathBuf;

use super::firmware::{self, FirmwareSupply};
use super::{BuildError, BuildOptions, io_err, iso, plan::Plan};
use crate::agent::{self, AgentError};
use crate::cache::Cache;
use crate::debian::{self, Arch, Archive, ArchiveConfig, Package};
use crate::host;
use crate::report::Reporter;

/// The static agent going into the image.
pub struct AgentInput {
    pub bin: PathBuf,
    /// `file` for `--agent`, `workspace` when built here (as the manifest says).
    pub source: &'static str,
}

/// Every input of the build, each verified and in the cache.
pub struct Inputs {
    /// The dependency closure of the plan's packages, with their `.deb`s.
    pub packages: Vec<(Package, PathBuf)>,
    pub kernel: (Package, PathBuf),
    /// Boot loader packages for the ISO; empty without one.
    pub bootloaders: Vec<(Package, PathBuf)>,
    pub agent: Option<AgentInput>,
    /// `--source-date-epoch`, or the newest signed index's `Date:`, so the
    /// same archive state gives the same bytes without the user choosing.
    pub source_date_epoch: u64,
    /// Where firmware comes from, unless the profile takes none.
    pub firmware: Option<FirmwareSupply>,
}

/// Stage 3.
pub fn fetch(opts: &BuildOptions, plan: &Plan, reporter: &Reporter) -> Result<Inputs, BuildError> {
    let st = reporter.stage(
        "fetch",
        format!("{} packages requested", plan.packages.len()),
    );
    let agent = match &plan.agent_path {
        None => None,
        Some(_) => Some(obtain_agent(opts, plan.arch, reporter)?),
    };
    let say = |m: &str| reporter.info(m);
    host::ensure(
        &[host::GPGV, host::DEBIAN_KEYRING],
        opts.fetch.install_host_packages,
        &say,
    )?;
    if plan.iso_label.is_some() {
        host::ensure(iso::host_needs(), opts.fetch.install_host_packages, &say)?;
    }
    let cache = Cache::open(&opts.fetch.cache_dir)
        .map_err(io_err("opening the cache", &opts.fetch.cache_dir))?;
    let archive = Archive::open(
        &archive_config(plan, opts)?,
        &cache,
        opts.fetch.offline,
        reporter,
    )?;
    let packages = archive.resolve(&plan.packages)?;
    let kernel = archive.resolve_kernel(&plan.profile.kernel.package)?;
    let bootloaders: Vec<Package> = match plan.iso_label {
        Some(_) => iso::ISO_PACKAGES
            .iter()
            .map(|n| archive.resolve_exact(n))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let mut wanted: Vec<Package> = packages.clone();
    wanted.push(kernel.clone());
    wanted.extend(bootloaders.iter().cloned());
    let mut debs = archive.fetch(&wanted, &cache, reporter)?.into_iter();
    let mut take = |pkgs: Vec<Package>| -> Vec<(Package, PathBuf)> {
        pkgs.into_iter().zip(debs.by_ref()).collect()
    };
    let packages = take(packages);
    let kernel = take(vec![kernel]).remove(0);
    let bootloaders = take(bootloaders);
    let source_date_epoch = opts
        .source_date_epoch
        .unwrap_or_else(|| archive.newest_date());
    let firmware = firmware::supply(plan.profile.kernel.firmware, archive, &cache, reporter)?;
    st.done(format!(
        "{} packages, kernel {}{}",
        packages.len(),
        kernel.0.version,
        match &firmware {
            Some(f) => format!(", {} firmware files indexed", f.index.len()),
            None => String::new(),
        }
    ));
    Ok(Inputs {
        packages,
        kernel,
        bootloaders,
        agent,
        source_date_epoch,
        firmware,
    })
}

fn archive_config(plan: &Plan, opts: &BuildOptions) -> Result<ArchiveConfig, BuildError> {
    let profile = &plan.profile;
    let mut sources: Vec<debian::Source> = if profile.debian.sources.is_empty() {
        debian::sources::host_sources(&opts.fetch.etc_apt)?
    } else {
        profile
            .debian
            .sources
            .iter()
            .map(|s| debian::Source {
                uri: s.uri.clone(),
                suites: s.suites.clone(),
                components: s.components.clone(),
                keyring: s.keyring.clone(),
            })
            .collect()
    };
    if let Some(release) = &profile.debian.release {
        sources = debian::suites::for_release(&sources, release, opts.fetch.mirror.as_deref())?;
    }
    // Firmware from non-free-firmware needs that component of every Debian
    // source; the host's sources say where the archive is, not which
    // components an image may take.
    for comp in profile.kernel.firmware.components() {
        for s in sources.iter_mut().filter(|s| debian::suites::is_debian(s)) {
            if !s.components.iter().any(|c| c == comp) {
                s.components.push((*comp).to_string());
            }
        }
    }
    if let (Some(mirror), Some(first)) = (&opts.fetch.mirror, sources.first_mut()) {
        first.uri = mirror.trim_end_matches('/').to_string();
    }
    Ok(ArchiveConfig {
        sources,
        arch: profile.debian.arch.clone(),
    })
}

fn obtain_agent(
    opts: &BuildOptions,
    arch: &'static Arch,
    reporter: &Reporter,
) -> Result<AgentInput, AgentError> {
    if let Some(path) = &opts.agent {
        agent::check_static(path, arch)?;
        return Ok(AgentInput {
            bin: path.clone(),
            source: "file",
        });
    }
    reporter.info("building ipa-agent from this workspace (static, size-optimised)");
    // Without musl-gcc the musl build may still work, and the glibc
    // fallback follows; so a failure here is only worth a warning.
    if let Err(e) = host::ensure(&[host::MUSL_GCC], opts.fetch.install_host_packages, &|m| {
        reporter.info(m)
    }) {
        reporter.warn(e);
    }
    Ok(AgentInput {
        bin: agent::build_agent_for(&agent::workspace_root()?, arch, reporter)?,
        source: "workspace",
    })
}
