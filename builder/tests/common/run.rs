//! Running host tools from the builder's tests: one place that fails the
//! test with the tool's stderr, so each test says only what it runs.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `cmd`; fails the test, showing the command and its stderr, unless it
/// succeeds.
pub fn checked(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`checked`], and the tool must not complain on stderr either.
pub fn quiet(cmd: &mut Command) -> Output {
    let out = checked(cmd);
    let complaint = String::from_utf8_lossy(&out.stderr);
    assert!(complaint.is_empty(), "{cmd:?} complained: {complaint}");
    out
}

/// The stdout of a [`checked`] run, as text.
pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&checked(cmd).stdout).into_owned()
}
