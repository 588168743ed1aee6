//! The command line's contract, through the real binary: one error style for
//! every command, the README's exit codes, and command-line values checked
//! like profile values. Every case here fails before any download, so this
//! file runs in well under a second.

use std::path::Path;
use std::process::{Command, Output};

fn ipa_build(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipa-build"))
        .args(args)
        .env("CI", "1")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A profile directory holding `p.yaml`.
fn profiles(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ipa-build --profile p --profiles-path DIR EXTRA...`.
fn build_p(dir: &tempfile::TempDir, extra: &[&str]) -> Output {
    let mut args = vec!["--profile", "p", "--profiles-path", path(dir.path())];
    args.extend(extra);
    ipa_build(&args)
}

#[test]
fn level_30_on_the_command_line_fails_like_level_30_in_the_profile() {
    let plain = profiles("description: d\ninit: busybox\n");
    let cli = build_p(&plain, &["--level", "30"]);
    let file = profiles("description: d\ninit: busybox\noutput:\n  level: 30\n");
    let yaml = build_p(&file, &[]);
    let headline =
        "error: `output.level`: level 30 is out of range for zstd (the default compression)\n";
    for o in [&cli, &yaml] {
        assert_eq!(o.status.code(), Some(3), "{}", stderr(o));
        assert!(stderr(o).contains(headline), "{}", stderr(o));
        assert!(stderr(o).contains("= help: zstd accepts 1..=19"));
    }
}

#[test]
fn every_command_prints_errors_the_same_way() {
    let missing = "/nonexistent/ipa-build-cli-test";
    for (args, code) in [
        (vec!["audit", missing], 2),
        (vec!["inspect", missing], 2),
        (vec!["diff", missing, missing], 2),
        (vec!["boot", missing, "--print"], 2),
        (vec!["publish", missing], 2),
        (vec!["build"], 2),
        (vec![], 2),
    ] {
        let o = ipa_build(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("error: "),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{args:?} printed a result");
    }
}

#[test]
fn a_failed_build_with_json_prints_the_error_object_on_stdout() {
    let bad = profiles(
        "description: d\ninit: busybox\naudit:\n  allow:\n    - {path: /x, rule: netrx, reason: r}\n",
    );
    let o = build_p(&bad, &["--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown audit rule `netrx`")
            && stderr(&o).contains("did you mean `netrc`?"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["exit_code"], 3);
    assert!(v["error"].as_str().unwrap().contains("netrx"));
}

#[test]
fn list_fails_as_a_config_error_when_a_profile_does_not_load() {
    let bad = profiles("description: d\ninit: busybox\noutput:\n  compresion: zstd\n");
    let o = ipa_build(&["list", "--profiles-path", path(bad.path())]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: unknown key `compresion`"));
}
