//! Where the workspace is, and where end-to-end tests keep their heavy state.
//!
//! The scratch directory (virtualenvs, logs of installs) lives under the
//! workspace's `target/` so `cargo clean` removes it and it is never
//! committed; `IPA_E2E_DIR` moves it elsewhere, e.g. to share one venv
//! between several checkouts.

use std::path::{Path, PathBuf};

/// Environment variable that overrides [`e2e_dir`].
pub const E2E_DIR_ENV: &str = "IPA_E2E_DIR";

/// The workspace root (the directory holding the top-level `Cargo.toml`).
///
/// Resolved at compile time from this crate's manifest directory, so it does
/// not depend on the directory `cargo test` was started from.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The scratch directory for end-to-end state: `$IPA_E2E_DIR`, or
/// `<workspace>/target/e2e`.
pub fn e2e_dir() -> PathBuf {
    match std::env::var_os(E2E_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target").join("e2e"),
    }
}
