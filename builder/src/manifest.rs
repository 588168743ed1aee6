//! The one record of what a build produced: `manifest.json`.
//!
//! The emit stage writes it and every command that reads a build (`boot`,
//! `inspect`, `diff`, `publish`) reads it back through [`Manifest::read`], so
//! there is exactly one shape and one set of checks. The manifest holds no
//! host paths and no timings: two builds of the same inputs write the same
//! bytes.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the manifest's shape; bumped when a field changes meaning.
pub const FORMAT: u32 = 1;

/// The file name inside a build directory.
pub const FILE_NAME: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "{}: cannot read the build manifest ({source}). Is {} a build output directory? Build one with `ipa-build --profile tinyipa --output {}`",
        path.display(), dir.display(), dir.display()
    )]
    Read {
        path: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a build manifest: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// What kind of file an artifact is; decides how it boots and how Glance
/// stores it. It is the profile's output format (`output.formats`,
/// `--format`): one type, so that what a profile asks for, what the build
/// writes and what the manifest records (`"kind": "initramfs"`, the same
/// lowercase names) cannot drift apart.
pub use crate::config::profile::Format as ArtifactKind;

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 3] = [
        ArtifactKind::Kernel,
        ArtifactKind::Initramfs,
        ArtifactKind::Iso,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::Kernel => "kernel",
            ArtifactKind::Initramfs => "initramfs",
            ArtifactKind::Iso => "iso",
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One file the build wrote, with the hashes an operator compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: ArtifactKind,
    /// A plain file name inside the build directory (checked on read).
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// Equals Glance's `os_hash_value` after upload.
    pub sha512: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tool: Tool,
    pub profile: ProfileRecord,
    pub source_date_epoch: u64,
    pub elements: Vec<ElementRecord>,
    pub packages: Vec<PackageRecord>,
    pub kernel: KernelRecord,
    pub agent: Option<AgentRecord>,
    /// Packages whose files went into the ISO's boot loaders, not the image.
    pub bootloaders: Vec<PackageRecord>,
    pub cmdline: String,
    pub compression: CompressionRecord,
    pub files: u64,
    pub uncompressed_bytes: u64,
    pub scrubbed: Vec<String>,
    pub audit: AuditRecord,
    pub artifacts: Vec<Artifact>,
    /// What each part of the build put into the image, largest first, so
    /// `ipa-build inspect` can say what an element costs. Absent in
    /// manifests written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<ContentRecord>,
    /// Every firmware file the image's modules name: installed with its
    /// package and component, or why not. Absent when the profile takes no
    /// firmware (`kernel.firmware: none`) and in older manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firmware: Vec<FirmwareRecord>,
}

/// What became of one firmware file a module names: `"status"` in the
/// manifest, with the installed file's details beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum FirmwareStatus {
    /// Copied into the image from its package.
    Installed(InstalledFirmware),
    /// No package of the allowed components has it: a warning, not a failure.
    Missing,
}

/// Where an installed firmware file came from and where it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledFirmware {
    /// The image path written (with `.xz`/`.zst` when the package ships it
    /// compressed).
    pub path: String,
    pub package: String,
    pub version: String,
    /// The archive component: `main` or `non-free-firmware`.
    pub component: String,
    /// Bytes in the image.
    pub size: u64,
}

/// One firmware file a module of the image names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareRecord {
    /// The path under `/lib/firmware` the module names (`bnx2x/bnx2x-e2-7.13.21.0.fw`).
    pub file: String,
    /// The modules naming it, sorted.
    pub modules: Vec<String>,
    /// Whether it went into the image, and if so from where.
    #[serde(flatten)]
    pub status: FirmwareStatus,
}

impl FirmwareRecord {
    /// The installed file's details; `None` for a missing one.
    pub fn installed(&self) -> Option<&InstalledFirmware> {
        match &self.status {
            FirmwareStatus::Installed(i) => Some(i),
            FirmwareStatus::Missing => None,
        }
    }
}

/// Uncompressed bytes one part of the build put into the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    /// As the size budget names it: `package e2fsprogs`, `element rescue`,
    /// `agent`, `kernel modules`, `shared libraries`, `other files`.
    pub owner: String,
    /// The element that brought it in (for a package, the first element in
    /// build order that names it; `profile` when only the profile does);
    /// absent for what no single element owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub name: String,
    pub description: String,
    /// File names of the `extends` chain, base first (no host paths: the
    /// manifest must not depend on where the checkout lives).
    pub chain: Vec<String>,
    pub init: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementRecord {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
    pub size: u64,
    pub suite: String,
    /// `whole`, `libraries` when only its shared libraries were taken, or
    /// `iso` for boot loader files.
    pub installed: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    pub package: String,
    pub version: String,
    pub sha256: String,
    pub release: String,
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Where the agent sits in the image (an image path, not a host path).
    pub path: PathBuf,
    /// `workspace` or `file` (`--agent`).
    pub source: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionRecord {
    pub kind: String,
    pub level: Option<u32>,
}

/// What the secret audit let through, and why: reviewed exceptions from the
/// profile's `audit.allow`, and warnings (such as `authorized_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub allowed: Vec<AllowedRecord>,
    pub warnings: Vec<FindingRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedRecord {
    pub finding: FindingRecord,
    pub reason: String,
}

/// An audit finding as recorded: the same fields as the audit's own
/// `Finding`, owned so that it can be read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub path: String,
    pub offset: u64,
    pub rule: String,
    pub severity: String,
    pub preview: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

impl From<&crate::audit::Finding> for FindingRecord {
    fn from(f: &crate::audit::Finding) -> Self {
        use crate::audit::Severity;
        FindingRecord {
            path: f.path.clone(),
            offset: f.offset,
            rule: f.rule.to_string(),
            severity: match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            }
            .to_string(),
            preview: f.preview.clone(),
            layer: f.layer.map(str::to_string),
        }
    }
}

/// A manifest read from a build directory, with what readers need beside it.
#[derive(Debug, Clone)]
pub struct BuildDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 of `manifest.json` as written: the build's identity (publish
    /// names Glance images after it).
    pub manifest_sha256: String,
}

impl Manifest {
    /// Reads and validates `DIR/manifest.json`: the shape must parse, the
    /// format must be one we write, and every artifact must be a plain file
    /// name, so that no reader can be pointed outside `DIR`.
    pub fn read(dir: &Path) -> Result<BuildDir, ManifestError> {
        let path = dir.join(FILE_NAME);
        let bytes = std::fs::read(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            dir: dir.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| ManifestError::Invalid {
            path: path.clone(),
            reason,
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(invalid(format!(
                "format {} (this ipa-build reads format {FORMAT})",
                manifest.format
            )));
        }
        for a in &manifest.artifacts {
            if !is_plain_file_name(&a.file) {
                return Err(invalid(format!(
                    "artifact file {:?} is not a plain name",
                    a.file
                )));
            }
        }
        Ok(BuildDir {
            dir: dir.to_path_buf(),
            manifest_sha256: hex::encode(Sha256::digest(&bytes)),
            manifest,
        })
    }

    /// The first artifact of a kind.
    pub fn artifact(&self, kind: ArtifactKind) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.kind == kind)
    }
}

impl BuildDir {
    /// The host path of the first artifact of a kind.
    pub fn path_of(&self, kind: ArtifactKind) -> Option<PathBuf> {
        self.manifest.artifact(kind).map(|a| self.dir.join(&a.file))
    }
}

/// A name that stays inside its directory: no separators, not `.` or `..`.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.contains('\0') && name != "." && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_only() {
        assert!(is_plain_file_name("tinyipa.kernel"));
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\0b"] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }

    /// The shape `manifest.json` had before this type existed (the emit
    /// stage's private structs), field for field and in the same order:
    /// reading and writing it back must give the same bytes, or every
    /// reproducibility comparison against an older build breaks.
    const SHAPE: &str = r#"{
  "format": 1,
  "tool": {
    "name": "ipa-build",
    "version": "0.1.0"
  },
  "profile": {
    "name": "tinyipa",
    "description": "d",
    "chain": [
      "tinyipa.yaml"
    ],
    "init": "busybox"
  },
  "source_date_epoch": 1700000000,
  "elements": [
    {
      "name": "kernel",
      "description": "k"
    }
  ],
  "packages": [
    {
      "name": "busybox-static",
      "version": "1:1.35.0-4+b3",
      "architecture": "amd64",
      "sha256": "aa",
      "size": 1,
      "suite": "bookworm",
      "installed": "whole"
    }
  ],
  "kernel": {
    "package": "linux-image-6.1.0-41-amd64",
    "version": "6.1.158-1",
    "sha256": "bb",
    "release": "6.1.0-41-amd64",
    "modules": [
      "virtio_net"
    ]
  },
  "agent": {
    "path": "/usr/bin/ipa-agent",
    "source": "workspace",
    "sha256": "cc",
    "size": 2
  },
  "bootloaders": [],
  "cmdline": "console=ttyS0",
  "compression": {
    "kind": "zstd",
    "level": null
  },
  "files": 3,
  "uncompressed_bytes": 4,
  "scrubbed": [
    "/etc/machine-id"
  ],
  "audit": {
    "allowed": [
      {
        "finding": {
          "path": "/etc/shadow",
          "offset": 5,
          "rule": "shadow-hash",
          "severity": "error",
          "preview": "root:[REDACTED]"
        },
        "reason": "r"
      }
    ],
    "warnings": [
      {
        "path": "/x.gz",
        "offset": 6,
        "rule": "authorized-keys",
        "severity": "warning",
        "preview": "p",
        "layer": "gzip"
      }
    ]
  },
  "artifacts": [
    {
      "kind": "initramfs",
      "file": "tinyipa.initramfs",
      "size": 7,
      "sha256": "dd",
      "sha512": "ee"
    }
  ]
}"#;

    #[test]
    fn the_written_shape_round_trips_byte_for_byte() {
        let m: Manifest = serde_json::from_str(SHAPE).unwrap();
        assert_eq!(serde_json::to_string_pretty(&m).unwrap(), SHAPE);
    }

    #[test]
    fn a_finding_is_recorded_as_the_audit_writes_it() {
        use crate::audit::{Finding, Severity};
        for (severity, layer) in [(Severity::Error, None), (Severity::Warning, Some("gzip"))] {
            let f = Finding {
                path: "/etc/shadow".into(),
                offset: 7,
                rule: "shadow-hash",
                severity,
                preview: "root:[REDACTED]".into(),
                layer,
            };
            let ours = serde_json::to_string(&FindingRecord::from(&f)).unwrap();
            assert_eq!(ours, serde_json::to_string(&f).unwrap());
        }
    }

    #[test]
    fn artifact_kinds_serialize_lowercase() {
        for k in ArtifactKind::ALL {
            let s = serde_json::to_string(&k).unwrap();
            assert_eq!(s, format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<ArtifactKind>(&s).unwrap(), k);
        }
    }
}
