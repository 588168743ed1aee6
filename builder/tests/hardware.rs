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

fn element_err(yaml: &str) -> (String, PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let el = element_in(tmp.path(), "drivers", yaml);
    let e: ConfigError = element::load("drivers", &el).expect_err("the element should fail");
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
    (e.to_string(), el.join("element.yaml"), tmp)
}

#[test]
fn element_patterns_load_next_to_names() {
    let tmp = tempfile::tempdir().unwrap();
    let el = element_in(
        tmp.path(),
        "drivers",
        "description: d\nmodules:\n  - e1000e\n  - kernel/drivers/scsi/megaraid/**\n",
    );
    let e = element::load("drivers", &el).unwrap();
    assert_eq!(e.modules, ["e1000e", "kernel/drivers/scsi/megaraid/**"]);
}

#[test]
fn a_pattern_outside_the_kernel_tree_names_file_line_and_field() {
    let (msg, file, _tmp) =
        element_err("description: d\nmodules:\n  - e1000e\n  - drivers/scsi/megaraid/**\n");
    assert!(msg.contains(&format!("{}:4:5", file.display())), "{msg}");
    assert!(msg.contains("`modules[1]`"), "{msg}");
    assert!(msg.contains("must start with `kernel/`"), "{msg}");
}

#[test]
fn an_absolute_pattern_is_explained() {
    let (msg, file, _tmp) =
        element_err("description: d\nmodules: [/lib/modules/6.12.0/kernel/drivers/scsi/**]\n");
    assert!(msg.contains(&format!("{}:2:11", file.display())), "{msg}");
    assert!(msg.contains("`modules[0]`"), "{msg}");
    assert!(msg.contains("relative to /lib/modules/<version>/"), "{msg}");
}

#[test]
fn a_pattern_that_does_not_compile_or_climbs_is_refused() {
    let (msg, _, _tmp) = element_err("description: d\nmodules:\n  - kernel/drivers/[scsi/**\n");
    assert!(msg.contains("not a valid pattern"), "{msg}");
    let (msg, _, _tmp) = element_err("description: d\nmodules:\n  - kernel/../../etc/*\n");
    assert!(msg.contains("`..`"), "{msg}");
}

#[test]
fn profile_kernel_modules_take_patterns_too() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = tmp.path().join("ok.yaml");
    std::fs::write(
        &ok,
        "description: d\ninit: busybox\nelements: []\nkernel:\n  modules: [virtio_net, \"kernel/drivers/net/ethernet/intel/**\"]\n",
    )
    .unwrap();
    let p = profile::load(ok.to_str().unwrap(), &[]).unwrap();
    assert_eq!(
        p.kernel.modules,
        ["virtio_net", "kernel/drivers/net/ethernet/intel/**"]
    );

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "description: d\ninit: busybox\nelements: []\nkernel:\n  modules:\n    - virtio_net\n    - kernel/drivers/net/./intel/**\n",
    )
    .unwrap();
    let e = profile::load(bad.to_str().unwrap(), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("{}:7:7", bad.display())), "{msg}");
    assert!(msg.contains("kernel.modules"), "{msg}");
    assert!(msg.contains("`.`"), "{msg}");
}
