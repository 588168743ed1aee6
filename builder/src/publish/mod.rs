//! `ipa-build publish`: upload a build to Glance, prove the stored bytes are
//! the built ones, optionally point Ironic nodes at them and prune old ones.
//!
//! Order matters for safety: every upload is read back and its SHA-512
//! (`os_hash_value`) compared with the manifest before any node is touched;
//! a mismatch deletes the image and fails. Pruning runs last and never
//! deletes an image a listed node still references.

pub mod clouds;
pub mod glance;
pub mod ironic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::manifest::{Artifact, ArtifactKind, BuildDir, ManifestError};
use clouds::{CloudError, Session};
use glance::{ApiError, Glance};
pub use ironic::Role;

/// Image properties ipa-build sets and later searches by.
pub const PROP_MANIFEST: &str = "ipa_build_manifest";
pub const PROP_PROFILE: &str = "ipa_build_profile";
pub const PROP_VERSION: &str = "ipa_build_version";
pub const PROP_ARTIFACT: &str = "ipa_build_artifact";
pub const PROP_EPOCH: &str = "ipa_build_source_date_epoch";

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(
        "image {id} ({name}) does not match the build: Glance {field} is {got}, the manifest says {expected}; the image was deleted. Rebuild or check the file was not modified after the build"
    )]
    Mismatch {
        id: String,
        name: String,
        field: &'static str,
        expected: String,
        got: String,
    },
    #[error("image {id} ({name}) is {status:?} after upload, not active; it was deleted")]
    NotActive {
        id: String,
        name: String,
        status: String,
    },
    #[error(
        "--set-nodes needs a baremetal endpoint: set baremetal_endpoint_override in clouds.yaml or OS_BAREMETAL_ENDPOINT"
    )]
    NoBaremetal,
    #[error("--set-nodes needs both a kernel and an initramfs in {}", dir.display())]
    NothingToSet { dir: PathBuf },
}

/// `YYYYMMDD` (UTC) of a Unix time.
pub fn date(epoch: u64) -> String {
    let days = i64::try_from(epoch / 86_400).unwrap_or(i64::MAX / 2);
    let (y, m, d) = crate::debian::release::civil_from_days(days);
    format!("{y:04}{m:02}{d:02}")
}

/// Glance disk and container formats of an artifact kind.
pub fn formats(kind: ArtifactKind) -> (&'static str, &'static str) {
    match kind {
        ArtifactKind::Kernel => ("aki", "aki"),
        ArtifactKind::Initramfs => ("ari", "ari"),
        ArtifactKind::Iso => ("iso", "bare"),
    }
}

/// The image name: `NAME-<date>-<short manifest hash>.<kind>`.
pub fn image_name(prefix: &str, build: &BuildDir, kind: ArtifactKind) -> String {
    let hash = &build.manifest_sha256;
    format!(
        "{prefix}-{}-{}.{kind}",
        date(build.manifest.source_date_epoch),
        &hash[..12.min(hash.len())]
    )
}

/// One image of the build in Glance.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub kind: String,
    pub id: String,
    pub name: String,
    /// True when an identical image was already there (nothing uploaded).
    pub existing: bool,
}

/// The result of a publish.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Outcome {
    pub manifest_hash: String,
    pub images: Vec<Published>,
    pub nodes_set: Vec<String>,
    /// Images `--keep` deleted.
    pub deleted: Vec<String>,
    /// Older images `--keep` would have deleted but a listed node references.
    pub kept_referenced: Vec<String>,
}

impl Outcome {
    /// The id of the image of `kind`.
    pub fn id(&self, kind: &str) -> Option<&str> {
        self.images
            .iter()
            .find(|i| i.kind == kind)
            .map(|i| i.id.as_str())
    }
}

/// What to do besides uploading.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub name: Option<String>,
    pub set_nodes: Vec<String>,
    pub role: Option<Role>,
    pub keep: Option<usize>,
}

/// An HTTP agent that reports statuses instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// Publishes `build` (read with [`crate::manifest::Manifest::read`], so
/// every artifact is a plain file name inside its directory) through `session`.
pub fn publish(
    build: &BuildDir,
    session: &Session,
    opts: &Options,
) -> Result<Outcome, PublishError> {
    let agent = agent();
    let glance = Glance::new(&session.image, session.token.clone(), agent.clone());
    let prefix = opts
        .name
        .clone()
        .unwrap_or_else(|| build.manifest.profile.name.clone());
    let mut out = Outcome {
        manifest_hash: build.manifest_sha256.clone(),
        ..Outcome::default()
    };
    let existing = glance.list_by(PROP_MANIFEST, &build.manifest_sha256)?;
    for art in &build.manifest.artifacts {
        let reuse = existing.iter().find(|i| {
            i[PROP_ARTIFACT] == art.kind.name()
                && i["status"] == "active"
                && i["os_hash_value"] == art.sha512.as_str()
        });
        if let Some(img) = reuse {
            out.images.push(Published {
                kind: art.kind.to_string(),
                id: img["id"].as_str().unwrap_or_default().to_string(),
                name: img["name"].as_str().unwrap_or_default().to_string(),
                existing: true,
            });
            continue;
        }
        let name = image_name(&prefix, build, art.kind);
        out.images.push(upload_one(&glance, build, art, &name)?);
    }
    if !opts.set_nodes.is_empty() {
        let (Some(kernel), Some(ramdisk)) = (
            out.id("kernel").map(str::to_string),
            out.id("initramfs").map(str::to_string),
        ) else {
            return Err(PublishError::NothingToSet {
                dir: build.dir.clone(),
            });
        };
        let base = session
            .baremetal
            .as_ref()
            .ok_or(PublishError::NoBaremetal)?;
        let ironic = ironic::Ironic::new(base, session.token.clone(), agent.clone());
        let role = opts.role.unwrap_or(Role::Rescue);
        for node in &opts.set_nodes {
            ironic.set_images(node, role, &kernel, &ramdisk)?;
            out.nodes_set.push(node.clone());
        }
    }
    if let Some(keep) = opts.keep {
        prune(&glance, session, build, opts, keep, &mut out)?;
    }
    Ok(out)
}

/// Creates, uploads and verifies one image; deletes it on any failure after create.
fn upload_one(
    glance: &Glance,
    build: &BuildDir,
    art: &Artifact,
    name: &str,
) -> Result<Published, PublishError> {
    let (disk, container) = formats(art.kind);
    let props: BTreeMap<String, String> = [
        (PROP_MANIFEST, build.manifest_sha256.clone()),
        (PROP_PROFILE, build.manifest.profile.name.clone()),
        (PROP_VERSION, build.manifest.tool.version.clone()),
        (PROP_ARTIFACT, art.kind.to_string()),
        (PROP_EPOCH, build.manifest.source_date_epoch.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let img = glance.create(name, disk, container, &props)?;
    let id = img["id"].as_str().unwrap_or_default().to_string();
    let result = glance
        .upload(&id, &build.dir.join(&art.file))
        .map_err(PublishError::from)
        .and_then(|()| verify(glance, &id, name, art));
    if let Err(e) = result {
        // Best effort: the error to report is the upload/verify one.
        let _ = glance.delete(&id);
        return Err(e);
    }
    Ok(Published {
        kind: art.kind.to_string(),
        id,
        name: name.to_string(),
        existing: false,
    })
}

/// Reads the image back and compares status, hash algorithm, hash and size.
fn verify(glance: &Glance, id: &str, name: &str, art: &Artifact) -> Result<(), PublishError> {
    let img = glance.get(id)?;
    let status = img["status"].as_str().unwrap_or_default();
    if status != "active" {
        return Err(PublishError::NotActive {
            id: id.into(),
            name: name.into(),
            status: status.into(),
        });
    }
    let checks: [(&'static str, String, String); 3] = [
        (
            "os_hash_algo",
            "sha512".into(),
            img["os_hash_algo"].as_str().unwrap_or("(none)").into(),
        ),
        (
            "os_hash_value",
            art.sha512.clone(),
            img["os_hash_value"].as_str().unwrap_or("(none)").into(),
        ),
        (
            "size",
            art.size.to_string(),
            img["size"]
                .as_u64()
                .map(|s| s.to_string())
                .unwrap_or("(none)".into()),
        ),
    ];
    for (field, expected, got) in checks {
        if expected != got {
            return Err(PublishError::Mismatch {
                id: id.into(),
                name: name.into(),
                field,
                expected,
                got,
            });
        }
    }
    Ok(())
}

/// Deletes images of the profile from builds older than the newest `keep`,
/// sparing any image a `--set-nodes` node references.
fn prune(
    glance: &Glance,
    session: &Session,
    build: &BuildDir,
    opts: &Options,
    keep: usize,
    out: &mut Outcome,
) -> Result<(), PublishError> {
    let images = glance.list_by(PROP_PROFILE, &build.manifest.profile.name)?;
    // Builds, newest first: this one, then by source date epoch and creation time.
    let mut builds: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for i in &images {
        let Some(h) = i[PROP_MANIFEST].as_str() else {
            continue;
        };
        let epoch = i[PROP_EPOCH]
            .as_str()
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        let created = i["created_at"].as_str().unwrap_or_default().to_string();
        let e = builds
            .entry(h.to_string())
            .or_insert((epoch, created.clone()));
        if created > e.1 {
            e.1 = created;
        }
    }
    let mut order: Vec<(String, (u64, String))> = builds.into_iter().collect();
    order.sort_by(|a, b| {
        (b.0 == build.manifest_sha256)
            .cmp(&(a.0 == build.manifest_sha256))
            .then(b.1.cmp(&a.1))
    });
    let keep_hashes: Vec<&str> = order.iter().take(keep).map(|(h, _)| h.as_str()).collect();
    let nodes: Vec<Value> = match (&session.baremetal, opts.set_nodes.is_empty()) {
        (Some(base), false) => {
            let ironic = ironic::Ironic::new(base, session.token.clone(), agent());
            opts.set_nodes
                .iter()
                .map(|n| ironic.node(n))
                .collect::<Result<_, _>>()?
        }
        _ => Vec::new(),
    };
    for i in &images {
        let (Some(h), Some(id)) = (i[PROP_MANIFEST].as_str(), i["id"].as_str()) else {
            continue;
        };
        if keep_hashes.contains(&h) {
            continue;
        }
        if nodes.iter().any(|n| ironic::references(n, id)) {
            out.kept_referenced.push(id.to_string());
            continue;
        }
        glance.delete(id)?;
        out.deleted.push(id.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_names() {
        assert_eq!(date(0), "19700101");
        assert_eq!(date(1_700_000_000), "20231114");
        assert_eq!(date(951_782_400), "20000229");
        let mut m = crate::cmd::test_manifest();
        m["source_date_epoch"] = 1_700_000_000.into();
        let b = BuildDir {
            dir: "x".into(),
            manifest: serde_json::from_value(m).unwrap(),
            manifest_sha256: "0123456789abcdef".into(),
        };
        assert_eq!(
            image_name("tinyipa", &b, ArtifactKind::Kernel),
            "tinyipa-20231114-0123456789ab.kernel"
        );
        assert_eq!(formats(ArtifactKind::Initramfs), ("ari", "ari"));
        assert_eq!(formats(ArtifactKind::Iso), ("iso", "bare"));
    }
}
