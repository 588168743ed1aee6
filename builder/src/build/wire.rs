//! Stage 5: the image must be able to start.
//!
//! Checks that the kernel will find something to run at `/init`, and
//! records what the image is in `/etc/ipa-build-release` (read by the init
//! scripts and by people on the console). A build without a runnable
//! `/init` fails here, not with a kernel panic at boot.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::plan::{Plan, init_name};
use super::{BuildError, io_err};
use crate::config::profile::InitStyle;
use crate::report::Reporter;
use crate::stage::Tree;
use crate::stage::files;

/// Stage 5.
pub fn wire(
    tree: &Tree,
    plan: &Plan,
    kernel_version: &str,
    epoch: u64,
    reporter: &Reporter,
) -> Result<(), BuildError> {
    let profile = &plan.profile;
    let st = reporter.stage("wire", format!("{:?} init", profile.init).to_lowercase());
    if !has_runnable_init(tree)? {
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
        "NAME=ipa-build\nPROFILE={}\nINIT={}\nKERNEL={kernel_version}\nBUILD_EPOCH={epoch}\nTOOL_VERSION={}\nCMDLINE=\"{}\"\n",
        profile.name,
        init_name(profile.init),
        env!("CARGO_PKG_VERSION"),
        plan.cmdline.replace('"', "'"),
    );
    let path = tree.root().join("etc/ipa-build-release");
    std::fs::write(&path, release).map_err(io_err("writing", &path))?;
    st.done("");
    Ok(())
}

/// An executable file at `/init`, or a symlink there (`/init ->
/// /lib/systemd/systemd`) that resolves to a file inside the tree.
fn has_runnable_init(tree: &Tree) -> Result<bool, BuildError> {
    let init = files::host_path_in(tree.root(), Path::new("/init"))
        .map_err(io_err("resolving /init in", tree.root()))?;
    let executable =
        std::fs::metadata(&init).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let link_ok = std::fs::read_link(&init)
        .ok()
        .and_then(|t| files::host_path_in(tree.root(), &Path::new("/").join(t)).ok())
        .is_some_and(|p| p.is_file());
    Ok(executable || link_ok)
}
