//! Element directories written by the builder's tests, for the cases the
//! fixtures under `tests/fixtures/config` do not cover.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Writes `<root>/<name>/element.yaml` holding `yaml`; returns the element's
/// directory.
pub fn write_element(root: &Path, name: &str, yaml: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("element.yaml"), yaml).unwrap();
    dir
}
