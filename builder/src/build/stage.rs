//! Stage 4: the root filesystem, assembled in a temporary directory without
//! root.
//!
//! The work directory holds three trees: `tree` (the image), `pool` (whole
//! packages in `libraries` mode, from which only the shared libraries the
//! image's binaries need are copied) and `kernel` (the unpacked kernel
//! package, from which modules are taken). While placing files we note who
//! put each one there ([`Owners`]), so an over-budget build can name its
//! largest contributors.

use std::path::{Path, PathBuf};

use super::budget::{Owner, Owners};
use super::fetch::Inputs;
use super::{BuildError, BuildOptions, io_err, plan::Plan, scrub};
use crate::debian::deb;
use crate::manifest::{FirmwareRecord, InstalledFirmware};
use crate::report::Reporter;
use crate::stage::Tree;
use crate::stage::elf;
use crate::stage::files;
use crate::stage::modules::{self, Kernel, ModulesReport};

/// The staged image and what the later stages need to know about it.
pub struct Staged {
    /// Removed when dropped, unless `--keep-tree` moved the tree out first.
    pub work: tempfile::TempDir,
    pub tree: Tree,
    pub owners: Owners,
    pub kernel: Kernel,
    pub modules: ModulesReport,
    /// Every firmware file the modules name (empty with `kernel.firmware: none`).
    pub firmware: Vec<FirmwareRecord>,
}

/// Stage 4.
pub fn stage(
    opts: &BuildOptions,
    plan: &Plan,
    inputs: &Inputs,
    reporter: &Reporter,
) -> Result<Staged, BuildError> {
    let st = reporter.stage("stage", "unpacking packages, modules, element files");
    let work = work_dir(opts.work_dir.as_deref())?;
    let mut tree = new_tree(work.path(), "tree")?;
    let mut pool = new_tree(work.path(), "pool")?;
    let mut owners = Owners::default();
    unpack_packages(plan, inputs, &mut tree, &mut pool, &mut owners)?;

    // No skeleton: the kernel package is read as it is laid out.
    let mut kernel_tree = Tree::new(new_dir(work.path(), "kernel")?);
    deb::unpack(&inputs.kernel.1, &mut kernel_tree, &|_| true)?;
    let kernel = modules::find_kernel(kernel_tree.root(), plan.arch.kernel_image)?;
    let mods = modules::install_modules(&kernel, &plan.modules, &mut tree)?;
    for dir in ["/lib/modules", "/usr/lib/modules"] {
        owners.add_prefix(Owner::KernelModules, format!("{dir}/{}", kernel.version));
    }
    let firmware = match &inputs.firmware {
        Some(supply) => {
            let (records, written) =
                super::firmware::install(supply, &mods, &mut tree, work.path(), reporter)?;
            owners.add(Owner::Firmware, written);
            records
        }
        None => Vec::new(),
    };

    for el in &plan.elements {
        let written = files::place_element(&mut tree, el)?;
        owners.add(Owner::Element(el.name.clone()), written);
    }
    if let (Some(dest), Some(agent)) = (&plan.agent_path, &inputs.agent) {
        files::install_file(&mut tree, &agent.bin, dest, 0o755, 0, 0)
            .map_err(io_err("installing the agent at", dest))?;
        owners.add(Owner::Agent, vec![dest.clone()]);
    }
    let libs = elf::library_closure(&mut tree, Some(pool.root()))?;
    let installed: Vec<&InstalledFirmware> = firmware
        .iter()
        .filter_map(FirmwareRecord::installed)
        .collect();
    st.done(format!(
        "{} modules, {} firmware files ({}), {} libraries from dependencies",
        mods.installed.len(),
        installed.len(),
        crate::report::human_bytes(installed.iter().map(|r| r.size).sum()),
        libs.len()
    ));
    owners.add(Owner::SharedLibraries, libs);
    Ok(Staged {
        work,
        tree,
        owners,
        kernel,
        modules: mods,
        firmware,
    })
}

/// Packages the plan names (or all, with `dependencies: full`) go into the
/// image, minus the excluded paths; the rest into the library pool.
fn unpack_packages(
    plan: &Plan,
    inputs: &Inputs,
    tree: &mut Tree,
    pool: &mut Tree,
    owners: &mut Owners,
) -> Result<(), BuildError> {
    let exclude = scrub::compile(&plan.exclude)?;
    let keep = |p: &Path| !exclude.is_match(Path::new("/").join(p.strip_prefix("/").unwrap_or(p)));
    for (pkg, deb_file) in &inputs.packages {
        if plan.installs_whole(&pkg.name) {
            let written = deb::unpack(deb_file, tree, &keep)?;
            owners.add(Owner::Package(pkg.name.clone()), written);
        } else {
            deb::unpack(deb_file, pool, &|_| true)?;
        }
    }
    Ok(())
}

/// A fresh `ipa-build-*` directory under `--work-dir` or the system's temp dir.
pub fn work_dir(parent: Option<&Path>) -> Result<tempfile::TempDir, BuildError> {
    let mut b = tempfile::Builder::new();
    b.prefix("ipa-build-");
    match parent {
        Some(d) => b.tempdir_in(d),
        None => b.tempdir(),
    }
    .map_err(io_err(
        "creating a work directory in",
        parent.unwrap_or(Path::new("/tmp")),
    ))
}

/// `WORK/NAME` as a new [`Tree`] with the usual skeleton (merged-`/usr` links).
pub fn new_tree(work: &Path, name: &str) -> Result<Tree, BuildError> {
    let dir = new_dir(work, name)?;
    let tree = Tree::new(&dir);
    files::skeleton(&tree).map_err(io_err("creating the skeleton in", &dir))?;
    Ok(tree)
}

fn new_dir(work: &Path, name: &str) -> Result<PathBuf, BuildError> {
    let dir = work.join(name);
    std::fs::create_dir(&dir).map_err(io_err("creating", &dir))?;
    Ok(dir)
}
