//! Driver coverage declared as data: kernel-tree path patterns in elements
//! and profiles, checked at load with the file, line and field of a bad one.
//! (The builds that use them, `inspect --hardware` and the firmware closure
//! are in `tests/firmware.rs`.)

use std::path::{Path, PathBuf};

use ipa_build::config::diag::{ConfigError, ErrorKind};
use ipa_build::config::{element, profile};

/// An element directory `dir/NAME` holding `yaml` as its element.yaml.
fn element_in(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let el = dir.join(name);
    std::fs::create_dir_all(&el).unwrap();
    std::fs::write(el.join("element.yaml"), yaml).unwrap();
    el
}

/// Loads `yaml` as the element `drivers` in a fresh temporary directory
/// (kept alive by the returned guard); also returns its element.yaml path.
fn element_load(
    yaml: &str,
) -> (
    Result<element::Element, ConfigError>,
    PathBuf,
    tempfile::TempDir,
) {
    let tmp = tempfile::tempdir().unwrap();
    let el = element_in(tmp.path(), "drivers", yaml);
    (element::load("drivers", &el), el.join("element.yaml"), tmp)
}

fn element_err(yaml: &str) -> (String, PathBuf, tempfile::TempDir) {
    let (e, file, tmp) = element_load(yaml);
    let e: ConfigError = e.expect_err("the element should fail");
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
    (e.to_string(), file, tmp)
}

#[test]
fn element_patterns_load_next_to_names() {
    let (e, _, _tmp) =
        element_load("description: d\nmodules:\n  - e1000e\n  - kernel/drivers/scsi/megaraid/**\n");
    assert_eq!(
        e.unwrap().modules,
        ["e1000e", "kernel/drivers/scsi/megaraid/**"]
    );
}

/// Loads `yaml` as an element that must fail, and checks that the message
/// points at `line:column` of its element.yaml, names `field` and says `says`.
fn assert_pattern_err(yaml: &str, line_col: &str, field: &str, says: &str) {
    let (msg, file, _tmp) = element_err(yaml);
    assert!(
        msg.contains(&format!("{}:{line_col}", file.display())),
        "{msg}"
    );
    assert!(msg.contains(&format!("`{field}`")), "{msg}");
    assert!(msg.contains(says), "{msg}");
}

#[test]
fn a_pattern_outside_the_kernel_tree_names_file_line_and_field() {
    assert_pattern_err(
        "description: d\nmodules:\n  - e1000e\n  - drivers/scsi/megaraid/**\n",
        "4:5",
        "modules[1]",
        "must start with `kernel/`",
    );
}

#[test]
fn an_absolute_pattern_is_explained() {
    assert_pattern_err(
        "description: d\nmodules: [/lib/modules/6.12.0/kernel/drivers/scsi/**]\n",
        "2:11",
        "modules[0]",
        "relative to /lib/modules/<version>/",
    );
}

#[test]
fn a_pattern_that_does_not_compile_or_climbs_is_refused() {
    let (msg, _, _tmp) = element_err("description: d\nmodules:\n  - kernel/drivers/[scsi/**\n");
    assert!(msg.contains("not a valid pattern"), "{msg}");
    let (msg, _, _tmp) = element_err("description: d\nmodules:\n  - kernel/../../etc/*\n");
    assert!(msg.contains("`..`"), "{msg}");
}

/// Writes `yaml` as `dir/NAME.yaml` and loads it as a profile.
fn load_profile(
    dir: &Path,
    name: &str,
    yaml: &str,
) -> (Result<profile::Profile, ConfigError>, PathBuf) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    (profile::load(file.to_str().unwrap(), &[]), file)
}

#[test]
fn profile_kernel_modules_take_patterns_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _) = load_profile(
        tmp.path(),
        "ok",
        "description: d\ninit: busybox\nelements: []\nkernel:\n  modules: [virtio_net, \"kernel/drivers/net/ethernet/intel/**\"]\n",
    );
    assert_eq!(
        ok.unwrap().kernel.modules,
        ["virtio_net", "kernel/drivers/net/ethernet/intel/**"]
    );

    let (e, bad) = load_profile(
        tmp.path(),
        "bad",
        "description: d\ninit: busybox\nelements: []\nkernel:\n  modules:\n    - virtio_net\n    - kernel/drivers/net/./intel/**\n",
    );
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains(&format!("{}:7:7", bad.display())), "{msg}");
    assert!(msg.contains("kernel.modules"), "{msg}");
    assert!(msg.contains("`.`"), "{msg}");
}
