//! The files that give the rescue user root: the `sudo` element's
//! `/etc/sudoers` (modes from its element.yaml) and the drop-in
//! `ipa-agent rescue-user` writes, each checked with the real `visudo -cf`
//! when the host has it (the CI installs `sudo`), so a syntax error fails
//! here rather than as "sudo: parse error" on a rescued node.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipa_build::config::element::{Attrs, Mode};
use ipa_e2e::agent::{FakeRoot, agent_binary};
use ipa_e2e::paths::workspace_root;
use ipa_e2e::process::checked;

fn elements() -> PathBuf {
    workspace_root().join("elements")
}

/// Runs `visudo -cf path`; `None` when visudo is not installed here.
fn visudo(path: &Path) -> Option<std::process::Output> {
    let visudo = ["/usr/sbin/visudo", "/sbin/visudo"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())?;
    Some(Command::new(visudo).arg("-cf").arg(path).output().unwrap())
}

fn assert_visudo_ok(path: &Path) {
    match visudo(path) {
        Some(out) => assert!(
            out.status.success(),
            "visudo -cf {} failed: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        None => eprintln!("visudo not installed (apt-get install sudo): syntax not checked"),
    }
}

#[test]
fn the_sudo_element_ships_a_valid_sudoers_that_reads_sudoers_d() {
    let el = ipa_build::config::element::load("sudo", &elements().join("sudo")).unwrap();
    assert!(el.packages.iter().any(|p| p == "sudo"), "{:?}", el.packages);
    let listed = |path: &str| {
        let f = el.files.iter().find(|f| f.path == Path::new(path));
        let d = el.directories.iter().find(|d| d.path == Path::new(path));
        f.map(|f| f.attrs).or(d.map(|d| d.attrs))
    };
    let root = |mode| {
        Some(Attrs {
            mode: Mode(mode),
            owner: 0,
            group: 0,
        })
    };
    assert_eq!(
        listed("/etc/sudoers"),
        root(0o440),
        "sudoers as visudo wants it"
    );
    assert_eq!(listed("/etc/sudoers.d"), root(0o750), "sudoers.d, created");

    let path = elements().join("sudo/files/etc/sudoers");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&"@includedir /etc/sudoers.d"), "{text}");
    // `ssh node sudo -n ...` has no tty, and busybox images have no PAM.
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("requiretty") && !l.contains("!requiretty"))
    );
    assert!(text.contains("!pam_acct_mgmt") && text.contains("!pam_session"));
    assert_visudo_ok(&path);

    // The rescue element pulls sudo into every image that rescues.
    let rescue = ipa_build::config::element::load("rescue", &elements().join("rescue")).unwrap();
    assert!(
        rescue.depends.iter().any(|d| d == "sudo"),
        "{:?}",
        rescue.depends
    );
}

#[test]
fn the_rescue_user_drop_in_is_valid_and_root_only() {
    let root = FakeRoot::with_nic("52:54:00:12:34:56").unwrap();
    for (file, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\nsudo:x:27:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
    ] {
        std::fs::write(root.path().join(file), text).unwrap();
    }
    let pw = root.rescue_password_file();
    std::fs::create_dir_all(pw.parent().unwrap()).unwrap();
    std::fs::write(&pw, "$6$salt$0123456789abcdefghijklmnopqrstuvwxyzABCDEF\n").unwrap();
    checked(
        Command::new(agent_binary().unwrap())
            .arg("--root")
            .arg(root.path())
            .arg("rescue-user"),
    );
    let dir = root.path().join("etc/sudoers.d");
    let drop_in = dir.join("rescue");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o750, "{}", dir.display());
    assert_eq!(mode(&drop_in), 0o440, "{}", drop_in.display());
    let text = std::fs::read_to_string(&drop_in).unwrap();
    assert_eq!(text, "rescue ALL=(ALL) NOPASSWD: ALL\n");
    // sudo skips files in sudoers.d whose names hold a `.` or end in `~`.
    assert!(!"rescue".contains('.'));
    assert_visudo_ok(&drop_in);
}
