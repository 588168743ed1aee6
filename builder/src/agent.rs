//! Stage 3 for the agent: the `ipa-agent` binary that goes into the image.
//!
//! The agent runs in a ramdisk with nothing but busybox beside it, so it must
//! be a static binary. By default we build it from this workspace for
//! `x86_64-unknown-linux-musl` with the size-tuned `agent` profile; when the
//! musl target cannot be had, we fall back to a `crt-static` glibc build. A
//! user may instead hand us a binary with `--agent PATH`. Either way the
//! result is checked to be a static x86-64 ELF before it goes anywhere.
//!
//! The build uses its own target directory (`target/agent`), never the one
//! the caller's cargo is using: when `ipa-build` runs under `cargo test` or
//! `cargo run`, sharing the directory would wait on the outer cargo's lock.

use std::path::{Path, PathBuf};

use object::read::elf::{Dyn, ElfFile64, ProgramHeader};
use object::{Endianness, Object, elf};

use crate::report::Reporter;

use crate::debian::arch::{self, Arch};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent binary {0} does not exist")]
    NotFound(PathBuf),
    #[error(
        "agent binary {path} is not a static {arch} ELF executable ({why}); the ramdisk has no \
         dynamic loader for it. Build it with `--target {target}` or pass a static binary to --agent",
        arch = .arch.debian, target = .arch.rust_musl
    )]
    NotStatic {
        path: PathBuf,
        why: String,
        arch: &'static Arch,
    },
    #[error(
        "could not find the ipa-build workspace (looked for agent/Cargo.toml above {0}); \
         pass a prebuilt static agent with --agent PATH"
    )]
    NoWorkspace(PathBuf),
    #[error("building the agent failed for every target tried:\n{0}")]
    Build(String),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where this crate's workspace lives, if the builder runs from a checkout.
pub fn workspace_root() -> Result<PathBuf, AgentError> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("agent/Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| AgentError::NoWorkspace(manifest.to_path_buf()))
}

/// Builds the static agent from the workspace and returns the binary's path.
///
/// Tries musl first (installing the rustup target if missing, which is a
/// set-up step a newcomer should not have to do by hand), then glibc with
/// `crt-static`. The log of a failed attempt is kept in the error.
pub fn build_workspace_agent(workspace: &Path, reporter: &Reporter) -> Result<PathBuf, AgentError> {
    build_agent_for(workspace, arch::DEFAULT, reporter)
}

/// [`build_workspace_agent`] for the image's architecture (`debian.arch`).
pub fn build_agent_for(
    workspace: &Path,
    arch: &'static Arch,
    reporter: &Reporter,
) -> Result<PathBuf, AgentError> {
    let (musl, gnu) = (arch.rust_musl, arch.rust_gnu);
    let target_dir = workspace.join("target/agent");
    let mut failures = String::new();
    for target in [musl, gnu] {
        if target == musl && !ensure_rustup_target(musl, reporter) {
            failures.push_str(&format!("- {musl}: `rustup target add {musl}` failed\n"));
            continue;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut rustflags = String::new();
        if target == gnu {
            reporter.warn(format!(
                "building the agent for {gnu} with crt-static because the musl build was not possible"
            ));
            rustflags.push_str("-C target-feature=+crt-static");
        }
        let out = duct::cmd!(
            cargo,
            "build",
            "--profile",
            "agent",
            "--target",
            target,
            "-p",
            "ipa-agent",
            "--bin",
            "ipa-agent"
        )
        .dir(workspace)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env(
            format!(
                "CARGO_TARGET_{}_RUSTFLAGS",
                target.to_uppercase().replace('-', "_")
            ),
            &rustflags,
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stderr_capture()
        .stdout_capture()
        .unchecked()
        .run()
        .map_err(|e| AgentError::Build(format!("could not run cargo: {e}")))?;
        let bin = target_dir.join(target).join("agent/ipa-agent");
        if out.status.success() {
            check_static(&bin, arch)?;
            return Ok(bin);
        }
        let log = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        failures.push_str(&format!("- {target}:\n"));
        for line in tail.into_iter().rev() {
            failures.push_str(&format!("    {line}\n"));
        }
    }
    Err(AgentError::Build(failures))
}

/// True when the rustup target is (now) installed. Without rustup we cannot
/// tell; let cargo try and report.
fn ensure_rustup_target(target: &str, reporter: &Reporter) -> bool {
    let Ok(installed) = duct::cmd!("rustup", "target", "list", "--installed")
        .stderr_null()
        .read()
    else {
        return true;
    };
    if installed.lines().any(|l| l.trim() == target) {
        return true;
    }
    reporter.info(format!(
        "installing the Rust target {target} (rustup target add {target})"
    ));
    duct::cmd!("rustup", "target", "add", target)
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .is_ok_and(|o| o.status.success())
}

/// Fails unless `path` is an ELF executable for `arch` with no program
/// interpreter and no needed shared libraries.
pub fn check_static(path: &Path, arch: &'static Arch) -> Result<(), AgentError> {
    let data = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            AgentError::NotFound(path.to_path_buf())
        } else {
            AgentError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let not_static = |why: &str| AgentError::NotStatic {
        path: path.to_path_buf(),
        why: why.to_string(),
        arch,
    };
    let file =
        ElfFile64::<Endianness>::parse(&*data).map_err(|_| not_static("not a 64-bit ELF file"))?;
    if file.architecture() != arch.elf {
        return Err(not_static(&format!("not built for {}", arch.debian)));
    }
    let endian = file.endian();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_INTERP {
            return Err(not_static("it asks for a dynamic loader (PT_INTERP)"));
        }
    }
    let has_needed = file
        .elf_section_table()
        .dynamic(endian, &*data)
        .ok()
        .flatten()
        .is_some_and(|(dynamic, _)| dynamic.iter().any(|d| d.d_tag(endian) == elf::DT_NEEDED));
    if has_needed {
        return Err(not_static("it needs shared libraries (DT_NEEDED)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_host_binary_is_refused() {
        // /bin/sh on Debian is dash, dynamically linked.
        let err = check_static(Path::new("/bin/sh"), arch::DEFAULT).unwrap_err();
        assert!(matches!(err, AgentError::NotStatic { .. }), "{err}");
    }

    #[test]
    fn a_missing_binary_is_named() {
        let err = check_static(Path::new("/nonexistent/ipa-agent"), arch::DEFAULT).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ipa-agent"));
    }

    #[test]
    fn workspace_is_found_from_the_crate() {
        let root = workspace_root().unwrap();
        assert!(root.join("builder/Cargo.toml").is_file());
    }
}
