//! Stage 6: element hooks, run on the host against the staged tree.
//!
//! Hooks are how an element does what data alone cannot (busybox applet
//! links, generating a file from the kernel version). They run as the
//! building user, never in a chroot, in element order and then file-name
//! order within an element; there is no global numbering across unrelated
//! elements. Each hook gets a clean, documented environment — nothing leaks
//! in from the user's shell, so a build is the same wherever it runs:
//!
//! | variable | value |
//! |---|---|
//! | `TARGET` | the staged root (write the image here) |
//! | `ELEMENT_DIR`, `ELEMENT_NAME` | the hook's element |
//! | `PROFILE_NAME`, `INIT_STYLE` | from the profile |
//! | `KERNEL_VERSION` | e.g. `6.1.0-41-amd64` |
//! | `SOURCE_DATE_EPOCH` | the build's timestamp |
//! | `PATH` | `/usr/sbin:/usr/bin:/sbin:/bin` |
//!
//! A hook that exits non-zero fails the build; its output is shown.

use std::path::{Path, PathBuf};

use super::plan::{Plan, init_name};
use crate::report::Reporter;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {hook} could not be started: {source}")]
    Spawn {
        hook: PathBuf,
        source: std::io::Error,
    },
    #[error("hook {hook} (element {element}) failed with {status}; its output ends with:\n{tail}")]
    Failed {
        hook: PathBuf,
        element: String,
        status: String,
        tail: String,
    },
}

/// One hook to run, with the element it belongs to.
#[derive(Debug, Clone)]
pub struct Hook {
    pub element: String,
    pub element_dir: PathBuf,
    pub path: PathBuf,
}

/// Settings every hook sees.
#[derive(Debug, Clone)]
pub struct HookEnv {
    pub target: PathBuf,
    pub profile_name: String,
    pub init_style: String,
    pub kernel_version: String,
    pub source_date_epoch: u64,
}

/// Stage 6: every element's hooks, in element order, against the staged tree.
pub fn hooks(
    plan: &Plan,
    target: &Path,
    kernel_version: &str,
    source_date_epoch: u64,
    reporter: &Reporter,
) -> Result<(), HookError> {
    let list: Vec<Hook> = plan
        .elements
        .iter()
        .flat_map(|el| {
            el.hooks.iter().map(|h| Hook {
                element: el.name.clone(),
                element_dir: el.dir.clone(),
                path: h.clone(),
            })
        })
        .collect();
    let st = reporter.stage("hooks", format!("{} hooks", list.len()));
    let env = HookEnv {
        target: target.to_path_buf(),
        profile_name: plan.profile.name.clone(),
        init_style: init_name(plan.profile.init).into(),
        kernel_version: kernel_version.to_string(),
        source_date_epoch,
    };
    run_all(&list, &env)?;
    st.done("");
    Ok(())
}

/// Runs the hooks in the order given. Returns what each printed, for `--debug`-style logs.
pub fn run_all(hooks: &[Hook], env: &HookEnv) -> Result<Vec<(PathBuf, String)>, HookError> {
    hooks
        .iter()
        .map(|h| run_one(h, env).map(|out| (h.path.clone(), out)))
        .collect()
}

fn run_one(hook: &Hook, env: &HookEnv) -> Result<String, HookError> {
    let out = duct::cmd(&hook.path, std::iter::empty::<&str>())
        .dir(&hook.element_dir)
        .full_env(hook_env(hook, env))
        .stdin_null()
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .map_err(|source| HookError::Spawn {
            hook: hook.path.clone(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(text);
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    let status = match out.status.code() {
        Some(c) => format!("exit status {c}"),
        None => "a signal".to_string(),
    };
    Err(HookError::Failed {
        hook: hook.path.clone(),
        element: hook.element.clone(),
        status,
        tail,
    })
}

fn hook_env(hook: &Hook, env: &HookEnv) -> Vec<(String, String)> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        ("TARGET".into(), s(&env.target)),
        ("ELEMENT_DIR".into(), s(&hook.element_dir)),
        ("ELEMENT_NAME".into(), hook.element.clone()),
        ("PROFILE_NAME".into(), env.profile_name.clone()),
        ("INIT_STYLE".into(), env.init_style.clone()),
        ("KERNEL_VERSION".into(), env.kernel_version.clone()),
        (
            "SOURCE_DATE_EPOCH".into(),
            env.source_date_epoch.to_string(),
        ),
        ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("LC_ALL".into(), "C".into()),
        ("HOME".into(), s(&env.target)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An executable `#!/bin/sh` script. It is written by a child `sh`, not
    /// by this process: a file this process had open for writing can still be
    /// open in a child that another test thread forked at that moment, and
    /// running it then fails with "Text file busy" (ETXTBSY).
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::io::Write;
        let p = dir.join(name);
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
            .arg(&p)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = sh.stdin.take().unwrap();
        write!(stdin, "#!/bin/sh\n{body}\n").unwrap();
        drop(stdin);
        assert!(sh.wait().unwrap().success(), "writing {}", p.display());
        p
    }

    fn env(target: &Path) -> HookEnv {
        HookEnv {
            target: target.to_path_buf(),
            profile_name: "p".into(),
            init_style: "busybox".into(),
            kernel_version: "6.1.0-1-amd64".into(),
            source_date_epoch: 42,
        }
    }

    #[test]
    fn hooks_see_a_clean_environment_and_write_the_target() {
        let el = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let h = script(el.path(), "10-env", "env | sort > \"$TARGET/env\"");
        run_all(
            &[Hook {
                element: "e".into(),
                element_dir: el.path().into(),
                path: h,
            }],
            &env(target.path()),
        )
        .unwrap();
        let got = std::fs::read_to_string(target.path().join("env")).unwrap();
        assert!(got.contains("ELEMENT_NAME=e\n"), "{got}");
        assert!(got.contains("KERNEL_VERSION=6.1.0-1-amd64\n"));
        assert!(got.contains("SOURCE_DATE_EPOCH=42\n"));
        assert!(
            !got.contains("CARGO"),
            "cargo's environment leaked into a hook:\n{got}"
        );
    }

    #[test]
    fn a_failing_hook_names_itself_and_shows_output() {
        let el = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let h = script(el.path(), "20-fail", "echo about to fail; exit 3");
        let err = run_all(
            &[Hook {
                element: "broken".into(),
                element_dir: el.path().into(),
                path: h.clone(),
            }],
            &env(target.path()),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&h.display().to_string()) && msg.contains("element broken"),
            "{msg}"
        );
        assert!(
            msg.contains("exit status 3") && msg.contains("about to fail"),
            "{msg}"
        );
    }

    /// The real applet-link hook of `elements/busybox-init`, run against a
    /// target whose busybox is given by `body`.
    fn applet_hook(body: &str) -> (tempfile::TempDir, Result<Vec<(PathBuf, String)>, HookError>) {
        let el_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../elements/busybox-init");
        let target = tempfile::tempdir().unwrap();
        std::fs::create_dir(target.path().join("bin")).unwrap();
        script(&target.path().join("bin"), "busybox", body);
        let hook = Hook {
            element: "busybox-init".into(),
            path: el_dir.join("hooks/10-applet-links"),
            element_dir: el_dir,
        };
        let res = run_all(&[hook], &env(target.path()));
        (target, res)
    }

    #[test]
    fn applet_links_are_made_from_the_list() {
        let (target, res) = applet_hook("printf '/bin/sh\\n/sbin/udhcpc\\n'");
        res.unwrap();
        for a in ["bin/sh", "sbin/udhcpc"] {
            let link = std::fs::read_link(target.path().join(a)).unwrap();
            assert_eq!(link, Path::new("/bin/busybox"), "{a}");
        }
    }

    #[test]
    fn a_busybox_that_cannot_run_fails_the_hook() {
        // As a busybox for another architecture looks to the host's exec.
        let (target, res) = applet_hook("echo 'cannot execute binary file' >&2; exit 126");
        let msg = res.unwrap_err().to_string();
        assert!(msg.contains("cannot run"), "{msg}");
        assert!(!target.path().join("bin/sh").exists());
        let (_t, res) = applet_hook("exit 0");
        let msg = res.unwrap_err().to_string();
        assert!(msg.contains("listed no applets"), "{msg}");
    }
}
