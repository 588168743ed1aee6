//! The build, top to bottom. Each numbered stage is one call into the module
//! that owns it; this function only sequences them and carries results from
//! one to the next. `ARCHITECTURE.md` has the same list with each stage's
//! invariants.

pub mod emit;
pub mod hooks;
pub mod iso;
pub mod scrub;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agent::{self, AgentError};
use crate::audit::{self, AuditError, Finding};
use crate::cache::Cache;
use crate::config::diag::ConfigError;
use crate::config::element::{self, Element};
use crate::config::profile::{self, Dependencies, Format, InitStyle, Profile};
use crate::debian::{self, Archive, ArchiveConfig, DebianError, Package};
use crate::host::{self, HostError};
use crate::initramfs::{self as pack, PackError, PackOptions};
use crate::report::{Reporter, StageTiming, human_bytes};
use crate::stage::Tree;
use crate::stage::elf::{self, ElfError};
use crate::stage::files::{self, FilesError};
use crate::stage::modules::{self, ModulesError};
use emit::{Artifact, EmitError, Emitter};
use hooks::{Hook, HookEnv, HookError};
use iso::{IsoError, IsoInputs};
use scrub::ScrubError;

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

pub use crate::config::options::BuildOptions;

/// What a successful build reports (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    pub profile: String,
    pub output: PathBuf,
    pub artifacts: Vec<Artifact>,
    pub packages: usize,
    pub files: u64,
    pub uncompressed_bytes: u64,
    pub kernel_version: String,
    pub cmdline: String,
    pub source_date_epoch: u64,
    pub timings: Vec<StageTiming>,
    /// Shell lines that upload the artifacts and point a node at them.
    pub upload_commands: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("{0}")]
    Debian(#[from] DebianError),
    #[error("{0}")]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Files(#[from] FilesError),
    #[error("{0}")]
    Elf(#[from] ElfError),
    #[error("{0}")]
    Modules(#[from] ModulesError),
    #[error("{0}")]
    Hook(#[from] HookError),
    #[error("{0}")]
    Scrub(#[from] ScrubError),
    #[error("{0}")]
    Pack(#[from] PackError),
    #[error("{0}")]
    Emit(#[from] EmitError),
    #[error("{0}")]
    Iso(#[from] IsoError),
    #[error("{0}")]
    AuditFailed(#[from] AuditError),
    /// The rendered findings (redacted: a secret never reaches a message).
    #[error("the image contains secrets, so it was not written:\n{0}")]
    Secrets(String),
    #[error("{0}")]
    Budget(String),
    #[error("{0}")]
    Wire(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BuildError {
    /// The process exit code for this failure; documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Config(_) => 3,
            BuildError::Debian(_) | BuildError::Host(_) => 4,
            BuildError::Budget(_) => 5,
            BuildError::Secrets(_) => 6,
            _ => 1,
        }
    }
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Builds one profile. Nothing is written to the output directory unless
/// every stage succeeds.
pub fn build(opts: &BuildOptions, reporter: &Reporter) -> Result<BuildSummary, BuildError> {
    // 1. Profile: one typed, validated configuration.
    let st = reporter.stage("profile", &opts.profile);
    let mut profile = profile::load_with(&opts.profile, &opts.profile_dirs, &opts.overrides())?;
    apply_overrides(&mut profile, opts);
    st.done(profile.source.display());

    // 2. Elements, in dependency order, and what they add up to.
    let st = reporter.stage("elements", profile.elements.join(", "));
    let elements = element::resolve(&profile, &opts.element_dirs)?;
    let mut plan = Plan::new(&profile, &elements);
    for arg in &opts.append {
        plan.cmdline = format!("{} {}", plan.cmdline, arg.trim())
            .trim()
            .to_string();
    }
    st.done(
        elements
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(" → "),
    );
    let want_iso = profile.output.formats.contains(&Format::Iso);
    let iso_label = match &profile.output.iso_label {
        Some(l) => l.clone(),
        None => iso::default_label(&profile.output.name),
    };
    if want_iso {
        iso::check_label(&iso_label)?;
    }

    // 3. Fetch: signed indices, dependency closure, verified downloads, the agent.
    let st = reporter.stage(
        "fetch",
        format!("{} packages requested", plan.packages.len()),
    );
    // The agent first: a bad --agent is a user error worth reporting before any download.
    let agent_bin = match &plan.agent_path {
        None => None,
        Some(_) => Some(obtain_agent(opts, reporter)?),
    };
    host::ensure(
        &[host::GPGV, host::DEBIAN_KEYRING],
        opts.install_host_packages,
        &|m| reporter.info(m),
    )?;
    if want_iso {
        host::ensure(iso::host_needs(), opts.install_host_packages, &|m| {
            reporter.info(m)
        })?;
    }
    let cache =
        Cache::open(&opts.cache_dir).map_err(io_err("opening the cache", &opts.cache_dir))?;
    let archive = Archive::open(
        &archive_config(&profile, opts)?,
        &cache,
        opts.offline,
        reporter,
    )?;
    let packages = archive.resolve(&plan.packages)?;
    let kernel_pkg = archive.resolve_kernel(&profile.kernel.package)?;
    // Bootloaders are files for the ISO, not part of the image: taken alone,
    // without their dependencies.
    let bootloader_pkgs: Vec<Package> = if want_iso {
        iso::ISO_PACKAGES
            .iter()
            .map(|n| archive.resolve_exact(n))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut wanted: Vec<Package> = packages.clone();
    wanted.push(kernel_pkg.clone());
    wanted.extend(bootloader_pkgs.iter().cloned());
    let fetched = archive.fetch(&wanted, &cache, reporter)?;
    let (debs, boot_debs) = fetched.split_at(packages.len());
    let kernel_deb = &boot_debs[0];
    let boot_debs = &boot_debs[1..];
    let source_date_epoch = opts
        .source_date_epoch
        .unwrap_or_else(|| archive.newest_date());
    st.done(format!(
        "{} packages, kernel {}",
        packages.len(),
        kernel_pkg.version
    ));

    // 4. Stage: the root filesystem, without root.
    let st = reporter.stage("stage", "unpacking packages, modules, element files");
    let work = match &opts.work_dir {
        Some(d) => tempfile::Builder::new().prefix("ipa-build-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("ipa-build-").tempdir(),
    }
    .map_err(io_err(
        "creating a work directory in",
        opts.work_dir.as_deref().unwrap_or(Path::new("/tmp")),
    ))?;
    let (tree_dir, pool_dir, kernel_dir) = (
        work.path().join("tree"),
        work.path().join("pool"),
        work.path().join("kernel"),
    );
    for d in [&tree_dir, &pool_dir, &kernel_dir] {
        std::fs::create_dir(d).map_err(io_err("creating", d))?;
    }
    let mut tree = Tree::new(&tree_dir);
    let mut pool = Tree::new(&pool_dir);
    files::skeleton(&tree).map_err(io_err("creating the skeleton in", &tree_dir))?;
    files::skeleton(&pool).map_err(io_err("creating the skeleton in", &pool_dir))?;

    let exclude = scrub::compile(&plan.exclude)?;
    let keep = |p: &Path| !exclude.is_match(Path::new("/").join(p.strip_prefix("/").unwrap_or(p)));
    let mut owners = Owners::default();
    for (pkg, deb) in packages.iter().zip(debs) {
        let whole = profile.debian.dependencies == Dependencies::Full
            || plan.named_packages.contains(&pkg.name);
        if whole {
            let written = debian::deb::unpack(deb, &mut tree, &keep)?;
            owners.add(&format!("package {}", pkg.name), written);
        } else {
            debian::deb::unpack(deb, &mut pool, &|_| true)?;
        }
    }
    let mut kernel_tree = Tree::new(&kernel_dir);
    debian::deb::unpack(kernel_deb, &mut kernel_tree, &|_| true)?;
    let kernel = modules::find_kernel(&kernel_dir)?;
    let mods = modules::install_modules(&kernel, &plan.modules, &mut tree)?;
    owners.add_prefix("kernel modules", format!("/lib/modules/{}", kernel.version));
    owners.add_prefix(
        "kernel modules",
        format!("/usr/lib/modules/{}", kernel.version),
    );

    for el in &elements {
        let written = files::place_element(&mut tree, el)?;
        owners.add(&format!("element {}", el.name), written);
    }
    if let (Some(dest), Some(bin)) = (&plan.agent_path, &agent_bin) {
        files::install_file(&mut tree, bin, dest, 0o755, 0, 0)
            .map_err(io_err("installing the agent at", dest))?;
        owners.add("agent", vec![dest.clone()]);
    }
    let libs = elf::library_closure(&mut tree, Some(pool.root()))?;
    owners.add("shared libraries", libs.clone());
    st.done(format!(
        "{} modules, {} libraries from dependencies",
        mods.installed.len(),
        libs.len()
    ));

    // 5. Wire: the image must be able to start.
    let st = reporter.stage("wire", format!("{:?} init", profile.init).to_lowercase());
    wire(&tree, &profile, &plan, &kernel.version, source_date_epoch)?;
    st.done("");

    // 6. Hooks, in element order.
    let hook_list: Vec<Hook> = elements
        .iter()
        .flat_map(|el| {
            el.hooks.iter().map(|h| Hook {
                element: el.name.clone(),
                element_dir: el.dir.clone(),
                path: h.clone(),
            })
        })
        .collect();
    let st = reporter.stage("hooks", format!("{} hooks", hook_list.len()));
    hooks::run_all(
        &hook_list,
        &HookEnv {
            target: tree_dir.clone(),
            profile_name: profile.name.clone(),
            init_style: init_name(profile.init).into(),
            kernel_version: kernel.version.clone(),
            source_date_epoch,
        },
    )?;
    st.done("");

    // 7. Scrub what must never ship. (The secret audit joins here.)
    let st = reporter.stage("scrub", "host keys, machine ids, caches, logs");
    let scrubbed = scrub::scrub(&mut tree, &plan.scrub)?;
    st.done(format!("{} paths removed", scrubbed.len()));
    let st = reporter.stage("audit", "scanning every file for secrets");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let findings = audit::audit_dir(tree.root(), &profile.audit.allow, threads)?;
    for w in findings.warnings() {
        reporter.warn(format!(
            "audit: {} at {} offset {}: {}",
            w.rule, w.path, w.offset, w.preview
        ));
    }
    if findings.errors().next().is_some() {
        return Err(BuildError::Secrets(findings.render()));
    }
    st.done(format!("{} files, nothing secret", findings.files_scanned));

    // 8. Pack the initramfs, straight into the emitter's temporary directory.
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&profile.output.name));
    let mut emitter = Emitter::new(&output)?;
    let name = &profile.output.name;
    let st = reporter.stage(
        "pack",
        format!("{} {}", profile.output.compression.name(), name),
    );
    let initramfs_file = format!("{name}.initramfs");
    let initramfs_path = emitter.path(&initramfs_file);
    let mut out =
        BufWriter::new(File::create(&initramfs_path).map_err(io_err("creating", &initramfs_path))?);
    let packed = pack::pack(
        &tree,
        &PackOptions {
            compression: profile.output.compression,
            level: profile.output.level.map(|l| l as i32),
            source_date_epoch,
            threads,
        },
        &mut out,
    )?;
    drop(out);
    emitter.add("initramfs", &initramfs_file)?;
    let kernel_file = format!("{name}.kernel");
    emitter.add_copy("kernel", &kernel_file, &kernel.vmlinuz)?;
    st.done(format!(
        "{} entries, {} → {}",
        packed.entries,
        human_bytes(packed.uncompressed_bytes),
        human_bytes(packed.compressed_bytes)
    ));

    // 9. ISO: one hybrid image for BIOS and UEFI, CD and USB.
    if want_iso {
        let st = reporter.stage("iso", format!("{name}.iso, label {iso_label}"));
        let boot_dir = work.path().join("bootloaders");
        std::fs::create_dir(&boot_dir).map_err(io_err("creating", &boot_dir))?;
        let mut boot_tree = Tree::new(&boot_dir);
        files::skeleton(&boot_tree).map_err(io_err("creating the skeleton in", &boot_dir))?;
        for deb in boot_debs {
            debian::deb::unpack(deb, &mut boot_tree, &|_| true)?;
        }
        let iso_file = format!("{name}.iso");
        let iso_work = work.path().join("iso");
        std::fs::create_dir(&iso_work).map_err(io_err("creating", &iso_work))?;
        iso::build_iso(
            &IsoInputs {
                kernel: &emitter.path(&kernel_file),
                initramfs: &emitter.path(&initramfs_file),
                cmdline: &plan.cmdline,
                label: &iso_label,
                source_date_epoch,
                bootloaders: &boot_dir,
                work_dir: &iso_work,
            },
            &emitter.path(&iso_file),
            reporter,
        )?;
        let size = emitter.add("iso", &iso_file)?.size;
        st.done(human_bytes(size));
    }
    check_budget(&profile, emitter.artifacts(), &tree, &owners, &packed)?;

    // 10. Emit: checksums, manifest, then everything into place at once.
    let st = reporter.stage("emit", output.display());
    let artifacts = emitter.artifacts().to_vec();
    let manifest = Manifest {
        format: 1,
        tool: Tool {
            name: "ipa-build",
            version: env!("CARGO_PKG_VERSION"),
        },
        profile: ProfileRecord {
            name: profile.name.clone(),
            description: profile.description.clone(),
            chain: profile.chain.iter().map(|p| file_name(p)).collect(),
            init: init_name(profile.init),
        },
        source_date_epoch,
        elements: elements
            .iter()
            .map(|e| ElementRecord {
                name: e.name.clone(),
                description: e.description.clone(),
            })
            .collect(),
        packages: packages
            .iter()
            .map(|p| {
                let whole = profile.debian.dependencies == Dependencies::Full
                    || plan.named_packages.contains(&p.name);
                package_record(p, if whole { "whole" } else { "libraries" })
            })
            .collect(),
        kernel: KernelRecord {
            package: kernel_pkg.name.clone(),
            version: kernel_pkg.version.clone(),
            sha256: kernel_pkg.sha256.clone(),
            release: kernel.version.clone(),
            modules: mods.installed.clone(),
        },
        agent: match &agent_bin {
            Some(bin) => {
                let (size, sha256, _) = crate::build::emit::hash_file(bin)?;
                Some(AgentRecord {
                    path: plan.agent_path.clone().unwrap_or_default(),
                    source: if opts.agent.is_some() {
                        "file"
                    } else {
                        "workspace"
                    },
                    sha256,
                    size,
                })
            }
            None => None,
        },
        bootloaders: bootloader_pkgs
            .iter()
            .map(|p| package_record(p, "iso"))
            .collect(),
        cmdline: plan.cmdline.clone(),
        compression: CompressionRecord {
            kind: profile.output.compression.name(),
            level: profile.output.level,
        },
        files: packed.entries as u64,
        uncompressed_bytes: packed.uncompressed_bytes,
        scrubbed: scrubbed.clone(),
        audit: AuditRecord {
            allowed: findings
                .allowed
                .iter()
                .map(|(f, reason)| AllowedRecord {
                    finding: f.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            warnings: findings.warnings().cloned().collect(),
        },
        artifacts: artifacts.clone(),
    };
    emitter.commit(&manifest)?;
    st.done("");

    if let Some(keep) = &opts.keep_tree {
        let _ = std::fs::remove_dir_all(keep);
        std::fs::rename(&tree_dir, keep)
            .or_else(|_| duct::cmd!("cp", "-a", &tree_dir, keep).run().map(|_| ()))
            .map_err(io_err("keeping the staged tree at", keep))?;
    }

    Ok(BuildSummary {
        profile: profile.name.clone(),
        upload_commands: upload_commands(&output, name, &artifacts),
        output,
        artifacts,
        packages: packages.len(),
        files: packed.entries as u64,
        uncompressed_bytes: packed.uncompressed_bytes,
        kernel_version: kernel.version,
        cmdline: plan.cmdline,
        source_date_epoch,
        timings: reporter.timings(),
    })
}

/// What the profile and its elements add up to.
struct Plan {
    /// Every package to resolve (profile's and elements'), sorted, unique.
    packages: Vec<String>,
    /// The same set: these are installed whole even in `libraries` mode.
    named_packages: BTreeSet<String>,
    modules: Vec<String>,
    exclude: Vec<String>,
    scrub: Vec<String>,
    cmdline: String,
    agent_path: Option<PathBuf>,
}

impl Plan {
    fn new(profile: &Profile, elements: &[Element]) -> Plan {
        let mut named: BTreeSet<String> = profile.packages.iter().cloned().collect();
        let mut modules: Vec<String> = profile.kernel.modules.clone();
        let mut scrub = profile.scrub.clone();
        let mut cmdline: Vec<String> = vec![profile.kernel.cmdline.clone()];
        let mut agent_path = None;
        for el in elements {
            named.extend(el.packages.iter().cloned());
            modules.extend(el.modules.iter().cloned());
            scrub.extend(el.scrub.iter().cloned());
            cmdline.push(el.cmdline.clone());
            if el.agent.is_some() {
                agent_path = el.agent.clone();
            }
        }
        let mut seen = BTreeSet::new();
        modules.retain(|m| seen.insert(m.replace('-', "_")));
        let mut exclude: Vec<String> = DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect();
        exclude.extend(profile.exclude.iter().cloned());
        Plan {
            packages: named.iter().cloned().collect(),
            named_packages: named,
            modules,
            exclude,
            scrub,
            cmdline: cmdline
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim())
                .collect::<Vec<_>>()
                .join(" "),
            agent_path,
        }
    }
}

fn apply_overrides(profile: &mut Profile, opts: &BuildOptions) {
    if let Some(c) = opts.compression {
        if c != profile.output.compression {
            profile.output.level = None;
        }
        profile.output.compression = c;
    }
    if let Some(l) = opts.level {
        profile.output.level = Some(l);
    }
    if !opts.formats.is_empty() {
        profile.output.formats = opts.formats.clone();
    }
}

fn archive_config(profile: &Profile, opts: &BuildOptions) -> Result<ArchiveConfig, BuildError> {
    let mut sources: Vec<debian::Source> = if profile.debian.sources.is_empty() {
        debian::sources::host_sources(&opts.etc_apt)?
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
    if let (Some(mirror), Some(first)) = (&opts.mirror, sources.first_mut()) {
        first.uri = mirror.trim_end_matches('/').to_string();
    }
    Ok(ArchiveConfig {
        sources,
        arch: profile.debian.arch.clone(),
    })
}

fn obtain_agent(opts: &BuildOptions, reporter: &Reporter) -> Result<PathBuf, AgentError> {
    match &opts.agent {
        Some(path) => {
            agent::check_static(path)?;
            Ok(path.clone())
        }
        None => {
            reporter.info("building ipa-agent from this workspace (static, size-optimised)");
            // Without musl-gcc the musl build may still work, and the glibc
            // fallback follows; so a failure here is only worth a warning.
            if let Err(e) = host::ensure(&[host::MUSL_GCC], opts.install_host_packages, &|m| {
                reporter.info(m)
            }) {
                reporter.warn(e);
            }
            agent::build_workspace_agent(&agent::workspace_root()?, reporter)
        }
    }
}

fn init_name(init: InitStyle) -> &'static str {
    match init {
        InitStyle::Busybox => "busybox",
        InitStyle::Systemd => "systemd",
    }
}

/// Stage 5: checks that the kernel will find something to run, and records
/// what the image is in `/etc/ipa-build-release` (read by the init scripts
/// and by people on the console).
fn wire(
    tree: &Tree,
    profile: &Profile,
    plan: &Plan,
    kver: &str,
    epoch: u64,
) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let init = files::host_path_in(tree.root(), Path::new("/init"))
        .map_err(io_err("resolving /init in", tree.root()))?;
    let target = std::fs::metadata(&init).ok();
    let executable = target
        .as_ref()
        .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    // A symlink /init -> /lib/systemd/systemd resolves inside the tree only.
    let link_ok = std::fs::read_link(&init)
        .ok()
        .and_then(|t| files::host_path_in(tree.root(), &Path::new("/").join(t)).ok())
        .is_some_and(|p| p.is_file());
    if !executable && !link_ok {
        let hint = match profile.init {
            InitStyle::Busybox => "add the `busybox-init` element",
            InitStyle::Systemd => "add the `systemd-init` element",
        };
        return Err(BuildError::Wire(format!(
            "the image has no executable /init, so the kernel would panic at boot; {hint} to profile {}",
            profile.source.display()
        )));
    }
    let release = format!(
        "NAME=ipa-build\nPROFILE={}\nINIT={}\nKERNEL={kver}\nBUILD_EPOCH={epoch}\nTOOL_VERSION={}\nCMDLINE=\"{}\"\n",
        profile.name,
        init_name(profile.init),
        env!("CARGO_PKG_VERSION"),
        plan.cmdline.replace('"', "'"),
    );
    let path = tree.root().join("etc/ipa-build-release");
    std::fs::write(&path, release).map_err(io_err("writing", &path))
}

/// Which package, element or part of the build put each file in the tree,
/// so an over-budget build can name its largest contributors.
#[derive(Default)]
struct Owners {
    exact: BTreeMap<PathBuf, String>,
    prefixes: Vec<(PathBuf, String)>,
}

impl Owners {
    fn add(&mut self, owner: &str, paths: Vec<PathBuf>) {
        for p in paths {
            self.exact.insert(
                Path::new("/").join(p.strip_prefix("/").unwrap_or(&p)),
                owner.to_string(),
            );
        }
    }

    fn add_prefix(&mut self, owner: &str, prefix: String) {
        self.prefixes
            .push((PathBuf::from(prefix), owner.to_string()));
    }

    fn owner(&self, image: &Path) -> String {
        if let Some(o) = self.exact.get(image) {
            return o.clone();
        }
        self.prefixes
            .iter()
            .find(|(p, _)| image.starts_with(p))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| "other files".into())
    }
}

fn check_budget(
    profile: &Profile,
    artifacts: &[Artifact],
    tree: &Tree,
    owners: &Owners,
    packed: &pack::PackReport,
) -> Result<(), BuildError> {
    let limit_for = |kind: &str| match kind {
        "kernel" => profile.size_budget.kernel,
        "initramfs" => profile.size_budget.initramfs,
        "iso" => profile.size_budget.iso,
        _ => None,
    };
    let over: Vec<(&Artifact, u64)> = artifacts
        .iter()
        .filter_map(|a| limit_for(&a.kind).filter(|l| a.size > *l).map(|l| (a, l)))
        .collect();
    if over.is_empty() {
        return Ok(());
    }
    let mut msg = String::new();
    for (a, limit) in &over {
        msg.push_str(&format!(
            "{} is {} ({} bytes), over its size_budget of {} ({} bytes) in {}\n",
            a.file,
            human_bytes(a.size),
            a.size,
            human_bytes(*limit),
            limit,
            profile.source.display()
        ));
    }
    // Attribute uncompressed sizes in the tree to their contributors.
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(tree.root())
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_file() {
            let image = Path::new("/").join(
                entry
                    .path()
                    .strip_prefix(tree.root())
                    .unwrap_or(entry.path()),
            );
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            *sizes.entry(owners.owner(&image)).or_default() += len;
        }
    }
    let mut ranked: Vec<(String, u64)> = sizes.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let ratio = packed.compressed_bytes as f64 / packed.uncompressed_bytes.max(1) as f64;
    msg.push_str(&format!(
        "largest contributors to the initramfs (uncompressed; it compresses to {:.0}% overall):\n",
        ratio * 100.0
    ));
    for (who, size) in ranked.iter().take(10) {
        msg.push_str(&format!("  {:>10}  {who}\n", human_bytes(*size)));
    }
    msg.push_str("drop modules, packages or elements, or raise size_budget in the profile");
    Err(BuildError::Budget(msg))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Lines an operator can paste to upload the build and use it for rescue.
fn upload_commands(output: &Path, name: &str, artifacts: &[Artifact]) -> Vec<String> {
    let mut lines = Vec::new();
    let has = |kind: &str| artifacts.iter().any(|a| a.kind == kind);
    let dir = output.display();
    if has("kernel") {
        lines.push(format!(
            "KERNEL_ID=$(openstack image create --disk-format aki --container-format aki --file {dir}/{name}.kernel {name}.kernel -f value -c id)"
        ));
    }
    if has("initramfs") {
        lines.push(format!(
            "RAMDISK_ID=$(openstack image create --disk-format ari --container-format ari --file {dir}/{name}.initramfs {name}.initramfs -f value -c id)"
        ));
    }
    if has("iso") {
        lines.push(format!(
            "ISO_ID=$(openstack image create --disk-format iso --container-format bare --file {dir}/{name}.iso {name}.iso -f value -c id)"
        ));
    }
    if has("kernel") && has("initramfs") {
        lines.push(
            "openstack baremetal node set <node> --driver-info rescue_kernel=$KERNEL_ID --driver-info rescue_ramdisk=$RAMDISK_ID"
                .to_string(),
        );
    }
    lines
}

#[derive(Serialize)]
struct Manifest {
    format: u32,
    tool: Tool,
    profile: ProfileRecord,
    source_date_epoch: u64,
    elements: Vec<ElementRecord>,
    packages: Vec<PackageRecord>,
    kernel: KernelRecord,
    agent: Option<AgentRecord>,
    /// Packages whose files went into the ISO's boot loaders, not the image.
    bootloaders: Vec<PackageRecord>,
    cmdline: String,
    compression: CompressionRecord,
    files: u64,
    uncompressed_bytes: u64,
    scrubbed: Vec<String>,
    audit: AuditRecord,
    artifacts: Vec<Artifact>,
}

/// What the secret audit let through, and why: reviewed exceptions from the
/// profile's `audit.allow`, and warnings (such as `authorized_keys`).
#[derive(Serialize)]
struct AuditRecord {
    allowed: Vec<AllowedRecord>,
    warnings: Vec<Finding>,
}

#[derive(Serialize)]
struct AllowedRecord {
    finding: Finding,
    reason: String,
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct ProfileRecord {
    name: String,
    description: String,
    /// File names of the `extends` chain, base first (no host paths: the
    /// manifest must not depend on where the checkout lives).
    chain: Vec<String>,
    init: &'static str,
}

#[derive(Serialize)]
struct ElementRecord {
    name: String,
    description: String,
}

#[derive(Serialize)]
struct PackageRecord {
    name: String,
    version: String,
    architecture: String,
    sha256: String,
    size: u64,
    suite: String,
    /// `whole`, `libraries` when only its shared libraries were taken, or
    /// `iso` for boot loader files.
    installed: &'static str,
}

fn package_record(p: &Package, installed: &'static str) -> PackageRecord {
    PackageRecord {
        name: p.name.clone(),
        version: p.version.clone(),
        architecture: p.architecture.clone(),
        sha256: p.sha256.clone(),
        size: p.size,
        suite: p.suite.clone(),
        installed,
    }
}

#[derive(Serialize)]
struct KernelRecord {
    package: String,
    version: String,
    sha256: String,
    release: String,
    modules: Vec<String>,
}

#[derive(Serialize)]
struct AgentRecord {
    path: PathBuf,
    source: &'static str,
    sha256: String,
    size: u64,
}

#[derive(Serialize)]
struct CompressionRecord {
    kind: &'static str,
    level: Option<u32>,
}
