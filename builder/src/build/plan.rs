//! Stages 1 and 2: the profile, its elements, and what they add up to.
//!
//! Everything later stages need to know about *what* to build is decided
//! here, once: the package names, modules, exclusions, scrub globs, the
//! kernel command line, where the agent goes, whether an ISO is wanted and
//! where the output lands. Later stages read the [`Plan`]; none of them
//! looks at the profile's raw lists again.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::budget::Owner;
use super::{BuildError, BuildOptions, iso};
use crate::config::element::{self, Element};
use crate::config::profile::{self, Dependencies, Format, InitStyle, Profile};
use crate::debian::{Arch, ArchError};
use crate::report::Reporter;

/// Paths never installed from packages unless a profile says otherwise:
/// documentation and translations a ramdisk has no reader for.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "/usr/share/doc/**",
    "/usr/share/man/**",
    "/usr/share/info/**",
    "/usr/share/locale/**",
    "/usr/share/lintian/**",
    "/usr/share/bug/**",
    // Hooks for Debian's own initramfs generator: never run inside a ramdisk.
    "/usr/share/initramfs-tools/**",
];

/// What the profile and its elements add up to.
pub struct Plan {
    pub profile: Profile,
    /// In dependency order.
    pub elements: Vec<Element>,
    /// Every package to resolve (profile's and elements'), sorted, unique;
    /// these are installed whole even in `libraries` mode.
    pub packages: BTreeSet<String>,
    pub modules: Vec<String>,
    pub exclude: Vec<String>,
    pub scrub: Vec<String>,
    /// The profile's, the elements' and `--append`'s arguments, in that order.
    pub cmdline: String,
    pub agent_path: Option<PathBuf>,
    /// The volume label when the profile asks for an ISO (checked here, so a
    /// bad label fails before any download).
    pub iso_label: Option<String>,
    /// `--output`, or `out/<output name>`.
    pub output: PathBuf,
    /// `debian.arch`, looked up once: every stage that needs an ELF machine,
    /// a library directory or a Rust target reads it from here.
    pub arch: &'static Arch,
}

/// Stages 1 and 2: loads and validates the profile, resolves its elements.
pub fn plan(opts: &BuildOptions, reporter: &Reporter) -> Result<Plan, BuildError> {
    let st = reporter.stage("profile", &opts.profile);
    let profile = profile::load_with(&opts.profile, &opts.search.profiles, &opts.overrides)?;
    st.done(profile.source.display());

    let st = reporter.stage("elements", profile.elements.join(", "));
    let elements = element::resolve(&profile, &opts.search.elements)?;
    let order: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
    st.done(order.join(" → "));
    Plan::new(profile, elements, opts)
}

impl Plan {
    fn new(
        profile: Profile,
        elements: Vec<Element>,
        opts: &BuildOptions,
    ) -> Result<Plan, BuildError> {
        let mut named: BTreeSet<String> = profile.packages.iter().cloned().collect();
        let mut modules: Vec<String> = profile.kernel.modules.clone();
        let mut scrub = profile.scrub.clone();
        let mut cmdline: Vec<String> = vec![profile.kernel.cmdline.clone()];
        let mut agent_path = None;
        for el in &elements {
            named.extend(el.packages.iter().cloned());
            modules.extend(el.modules.iter().cloned());
            scrub.extend(el.scrub.iter().cloned());
            cmdline.push(el.cmdline.clone());
            if el.agent.is_some() {
                agent_path = el.agent.clone();
            }
        }
        cmdline.extend(opts.append.iter().cloned());
        let mut seen = BTreeSet::new();
        // Names treat `-` and `_` alike; path patterns are kept as written.
        modules.retain(|m| {
            seen.insert(if m.contains('/') {
                m.clone()
            } else {
                m.replace('-', "_")
            })
        });
        let mut exclude: Vec<String> = DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect();
        exclude.extend(profile.exclude.iter().cloned());
        let arch = Arch::from_debian(&profile.debian.arch)?;
        let iso_label = iso_label(&profile)?;
        if iso_label.is_some() && !arch.iso {
            return Err(ArchError::NoIso(arch.debian).into());
        }
        let output = opts
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(&profile.output.name));
        Ok(Plan {
            packages: named,
            modules,
            exclude,
            scrub,
            cmdline: join_args(&cmdline),
            agent_path,
            iso_label,
            output,
            arch,
            profile,
            elements,
        })
    }

    /// Whether a resolved package is unpacked whole into the image, or only
    /// serves as a pool its shared libraries are taken from.
    pub fn installs_whole(&self, package: &str) -> bool {
        self.profile.debian.dependencies == Dependencies::Full || self.packages.contains(package)
    }

    /// Which element an owner of the size report belongs to: an element's
    /// own files, the first element (in build order) naming a package, or
    /// `profile` for packages only the profile names; the agent belongs to
    /// the element that places it. `None` for shared parts (kernel modules,
    /// shared libraries, other files).
    pub fn element_of(&self, owner: &Owner) -> Option<String> {
        let package = match owner {
            Owner::Element(name) => return Some(name.clone()),
            Owner::Agent => {
                return self
                    .elements
                    .iter()
                    .rfind(|e| e.agent.is_some())
                    .map(|e| e.name.clone());
            }
            Owner::Package(package) => package,
            _ => return None,
        };
        self.elements
            .iter()
            .find(|e| e.packages.iter().any(|p| p == package))
            .map(|e| e.name.clone())
            .or_else(|| {
                self.profile
                    .packages
                    .iter()
                    .any(|p| p == package)
                    .then(|| "profile".to_string())
            })
    }

    /// The artifacts' common file stem.
    pub fn name(&self) -> &str {
        &self.profile.output.name
    }
}

/// Non-empty arguments, trimmed, joined by one space.
fn join_args(args: &[String]) -> String {
    args.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn iso_label(profile: &Profile) -> Result<Option<String>, BuildError> {
    if !profile.output.formats.contains(&Format::Iso) {
        return Ok(None);
    }
    let label = match &profile.output.iso_label {
        Some(l) => l.clone(),
        None => iso::default_label(&profile.output.name),
    };
    iso::check_label(&label)?;
    Ok(Some(label))
}

/// The init style's name, as hooks (`INIT_STYLE`), the release file and the
/// manifest spell it.
pub fn init_name(init: InitStyle) -> &'static str {
    match init {
        InitStyle::Busybox => "busybox",
        InitStyle::Systemd => "systemd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_join_without_empty_ones() {
        let args = ["console=ttyS0 ", "", "  ", " quiet"].map(String::from);
        assert_eq!(join_args(&args), "console=ttyS0 quiet");
    }
}
