//! Host tools the build calls, and getting them onto a fresh machine.
//!
//! A newcomer on a fresh Debian 12 machine types one command. When a tool we
//! need is missing we install its Debian package ourselves if we are root (a
//! build machine), and otherwise stop with the exact `apt-get` line to run.
//! Nothing is installed behind the user's back on a workstation.

use std::path::Path;

/// Something the build needs from the host, and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// A command looked up in `PATH`, or an absolute file path.
    pub what: &'static str,
    pub package: &'static str,
}

impl Need {
    /// `what` (a command or an absolute path), provided by Debian's `package`.
    pub const fn new(what: &'static str, package: &'static str) -> Need {
        Need { what, package }
    }
}

pub const GPGV: Need = Need::new("gpgv", "gpgv");
/// C compiler wrapper for crates with C parts when building the agent for musl.
pub const MUSL_GCC: Need = Need::new("musl-gcc", "musl-tools");
pub const DEBIAN_KEYRING: Need = Need::new(
    "/usr/share/keyrings/debian-archive-keyring.gpg",
    "debian-archive-keyring",
);

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "missing on this machine: {missing}. Install with:\n    sudo apt-get install -y {packages}"
    )]
    Missing { missing: String, packages: String },
    #[error(
        "installing {packages} with apt-get failed:\n{log}\nInstall them by hand and try again"
    )]
    InstallFailed { packages: String, log: String },
}

fn present(need: &Need) -> bool {
    if need.what.starts_with('/') {
        return Path::new(need.what).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(need.what).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() == 0 }
}

/// Makes sure every need is met, installing packages as root when allowed.
pub fn ensure(needs: &[Need], may_install: bool, log: &dyn Fn(&str)) -> Result<(), HostError> {
    let missing: Vec<&Need> = needs.iter().filter(|n| !present(n)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    packages.sort();
    packages.dedup();
    let packages = packages.join(" ");
    let what = missing
        .iter()
        .map(|n| n.what)
        .collect::<Vec<_>>()
        .join(", ");
    if !(may_install && is_root()) {
        return Err(HostError::Missing {
            missing: what,
            packages,
        });
    }
    log(&format!("installing {packages} (needed: {what})"));
    let run = |args: &[&str]| {
        duct::cmd("apt-get", args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
    };
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(packages.split(' '));
    let mut out = run(&args);
    if !out.as_ref().is_ok_and(|o| o.status.success()) {
        // A fresh machine may have no package lists yet.
        let _ = run(&["update", "-q"]);
        out = run(&args);
    }
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(HostError::InstallFailed {
            packages,
            log: String::from_utf8_lossy(&o.stdout).into_owned(),
        }),
        Err(e) => Err(HostError::InstallFailed {
            packages,
            log: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_tools_need_nothing() {
        ensure(
            &[Need {
                what: "sh",
                package: "dash",
            }],
            false,
            &|_| {},
        )
        .unwrap();
    }

    #[test]
    fn missing_tools_name_the_package_to_install() {
        let err = ensure(
            &[Need {
                what: "no-such-tool-ipa",
                package: "no-such-package",
            }],
            false,
            &|_| {},
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("no-such-tool-ipa") && msg.contains("apt-get install -y no-such-package"),
            "{msg}"
        );
    }
}
