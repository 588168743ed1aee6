//! Stage 10: putting the artifacts where the user asked, all or nothing.
//!
//! Every artifact is written into a hidden sibling directory of `--output`
//! (same filesystem, so the final `rename` is atomic) and moved into place
//! only by [`Emitter::commit`], after the whole build succeeded. A failed
//! build drops the emitter, which removes the temporary directory: the
//! output directory is never touched, not even created.
//!
//! Beside the artifacts we write what an operator needs to trust and upload
//! them: `SHA256SUMS`, one `NAME.sha512` per artifact (the value Glance
//! reports as `os_hash_value`), and `manifest.json` (the one
//! [`crate::manifest::Manifest`], built here from what the stages produced).
//!
//! `--keep-tree DIR` is handled here too: checked before the build starts
//! ([`check_keep_tree`]: an existing, non-empty `DIR` is refused, so nothing
//! of the user's is ever deleted) and done last ([`keep_tree`]).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256, Sha512};

use super::BuildError;
use super::fetch::Inputs;
use super::pack::artifact_file;
use super::plan::{Plan, init_name};
use super::stage::Staged;
use crate::audit::AuditReport;
use crate::debian::Package;
use crate::initramfs::PackReport;
use crate::manifest::{
    AgentRecord, AllowedRecord, Artifact, ArtifactKind, AuditRecord, CompressionRecord,
    ContentRecord, ElementRecord, FindingRecord, KernelRecord, Manifest, PackageRecord,
    ProfileRecord, Tool,
};
use crate::report::Reporter;

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("output path {0} exists and is not a directory")]
    NotADirectory(PathBuf),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> EmitError + 'a {
    move |source| EmitError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Collects artifacts in a temporary directory beside `--output`.
pub struct Emitter {
    output: PathBuf,
    tmp: tempfile::TempDir,
    artifacts: Vec<Artifact>,
}

impl Emitter {
    /// Prepares a temporary directory next to `output` (which need not exist).
    pub fn new(output: &Path) -> Result<Self, EmitError> {
        if output.exists() && !output.is_dir() {
            return Err(EmitError::NotADirectory(output.to_path_buf()));
        }
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
        let stem = output
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{stem}.ipa-build-"))
            .tempdir_in(&parent)
            .map_err(io_err("creating a temporary directory in", &parent))?;
        Ok(Emitter {
            output: output.to_path_buf(),
            tmp,
            artifacts: Vec::new(),
        })
    }

    /// The temporary path an artifact called `file` is written to before commit.
    pub fn path(&self, file: &str) -> PathBuf {
        self.tmp.path().join(file)
    }

    /// Records an artifact already written at [`Emitter::path`], hashing it.
    pub fn add(&mut self, kind: ArtifactKind, file: &str) -> Result<&Artifact, EmitError> {
        let path = self.path(file);
        let (size, sha256, sha512) = hash_file(&path)?;
        self.artifacts.retain(|a| a.file != file);
        self.artifacts.push(Artifact {
            kind,
            file: file.to_string(),
            size,
            sha256,
            sha512,
        });
        Ok(self.artifacts.last().expect("just pushed"))
    }

    /// Copies `src` in as artifact `file` and records it.
    pub fn add_copy(
        &mut self,
        kind: ArtifactKind,
        file: &str,
        src: &Path,
    ) -> Result<&Artifact, EmitError> {
        let dst = self.path(file);
        std::fs::copy(src, &dst).map_err(io_err("copying", src))?;
        self.add(kind, file)
    }

    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }

    /// Writes the checksum files and the manifest, then moves everything into
    /// `--output`. Returns the final artifact paths.
    pub fn commit(self, manifest: &impl Serialize) -> Result<Vec<PathBuf>, EmitError> {
        let mut names: Vec<String> = self.artifacts.iter().map(|a| a.file.clone()).collect();

        let manifest_path = self.path(crate::manifest::FILE_NAME);
        let mut json = serde_json::to_vec_pretty(manifest).map_err(|e| EmitError::Io {
            action: "serializing",
            path: manifest_path.clone(),
            source: io::Error::other(e),
        })?;
        json.push(b'\n');
        write_file(&manifest_path, &json)?;
        let (_, manifest_sha256, _) = hash_file(&manifest_path)?;

        for a in &self.artifacts {
            let name = format!("{}.sha512", a.file);
            write_file(
                &self.path(&name),
                format!("{}  {}\n", a.sha512, a.file).as_bytes(),
            )?;
            names.push(name);
        }
        let mut sums: Vec<(String, String)> = self
            .artifacts
            .iter()
            .map(|a| (a.file.clone(), a.sha256.clone()))
            .collect();
        sums.push(("manifest.json".into(), manifest_sha256));
        sums.sort();
        let text: String = sums.iter().map(|(f, h)| format!("{h}  {f}\n")).collect();
        write_file(&self.path("SHA256SUMS"), text.as_bytes())?;
        names.push("manifest.json".into());
        names.push("SHA256SUMS".into());

        std::fs::create_dir_all(&self.output).map_err(io_err("creating", &self.output))?;
        // The checksum files go last: a reader that sees SHA256SUMS sees the
        // artifacts it lists.
        let mut finals = Vec::new();
        for name in names {
            let from = self.path(&name);
            let to = self.output.join(&name);
            std::fs::rename(&from, &to).map_err(io_err("moving into place", &to))?;
            finals.push(to);
        }
        Ok(finals)
    }
}

/// What the stages produced, as the manifest records it.
pub struct Record<'a> {
    pub plan: &'a Plan,
    pub inputs: &'a Inputs,
    pub staged: &'a Staged,
    pub packed: &'a PackReport,
    pub scrubbed: &'a [String],
    pub audit: &'a AuditReport,
}

/// Stage 10: checksums, manifest, then everything into place at once.
/// Returns the manifest written.
pub fn emit(
    emitter: Emitter,
    record: &Record,
    reporter: &Reporter,
) -> Result<Manifest, BuildError> {
    let st = reporter.stage("emit", record.plan.output.display());
    let manifest = manifest(record, emitter.artifacts())?;
    emitter.commit(&manifest)?;
    st.done("");
    Ok(manifest)
}

fn manifest(r: &Record, artifacts: &[Artifact]) -> Result<Manifest, EmitError> {
    let (plan, inputs, profile) = (r.plan, r.inputs, &r.plan.profile);
    let package = |(p, _): &(Package, PathBuf), installed: &str| PackageRecord {
        name: p.name.clone(),
        version: p.version.clone(),
        architecture: p.architecture.clone(),
        sha256: p.sha256.clone(),
        size: p.size,
        suite: p.suite.clone(),
        installed: installed.to_string(),
    };
    let whole = |p: &(Package, PathBuf)| match plan.installs_whole(&p.0.name) {
        true => "whole",
        false => "libraries",
    };
    Ok(Manifest {
        format: crate::manifest::FORMAT,
        tool: Tool {
            name: "ipa-build".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        profile: ProfileRecord {
            name: profile.name.clone(),
            description: profile.description.clone(),
            chain: profile.chain.iter().map(|p| file_name(p)).collect(),
            init: init_name(profile.init).into(),
        },
        source_date_epoch: inputs.source_date_epoch,
        elements: plan
            .elements
            .iter()
            .map(|e| ElementRecord {
                name: e.name.clone(),
                description: e.description.clone(),
            })
            .collect(),
        packages: inputs
            .packages
            .iter()
            .map(|p| package(p, whole(p)))
            .collect(),
        kernel: KernelRecord {
            package: inputs.kernel.0.name.clone(),
            version: inputs.kernel.0.version.clone(),
            sha256: inputs.kernel.0.sha256.clone(),
            release: r.staged.kernel.version.clone(),
            modules: r.staged.modules.installed.clone(),
        },
        agent: agent_record(plan, inputs)?,
        bootloaders: inputs
            .bootloaders
            .iter()
            .map(|p| package(p, "iso"))
            .collect(),
        cmdline: plan.cmdline.clone(),
        compression: CompressionRecord {
            kind: profile.output.compression.name().into(),
            level: profile.output.level,
        },
        files: r.packed.entries as u64,
        uncompressed_bytes: r.packed.uncompressed_bytes,
        scrubbed: r.scrubbed.to_vec(),
        audit: AuditRecord {
            allowed: r
                .audit
                .allowed
                .iter()
                .map(|(f, reason)| AllowedRecord {
                    finding: f.into(),
                    reason: reason.clone(),
                })
                .collect(),
            warnings: r.audit.warnings().map(FindingRecord::from).collect(),
        },
        artifacts: artifacts.to_vec(),
        contents: contents(plan, r.staged),
        firmware: r.staged.firmware.clone(),
    })
}

/// The size report's owners, each with the element that brought it in.
fn contents(plan: &Plan, staged: &Staged) -> Vec<ContentRecord> {
    super::budget::contributors(&staged.tree, &staged.owners)
        .into_iter()
        .map(|c| ContentRecord {
            element: plan.element_of(&c.owner),
            owner: c.owner,
            files: c.files,
            bytes: c.bytes,
        })
        .collect()
}

fn agent_record(plan: &Plan, inputs: &Inputs) -> Result<Option<AgentRecord>, EmitError> {
    let Some(agent) = &inputs.agent else {
        return Ok(None);
    };
    let (size, sha256, _) = hash_file(&agent.bin)?;
    Ok(Some(AgentRecord {
        path: plan.agent_path.clone().unwrap_or_default(),
        source: agent.source.into(),
        sha256,
        size,
    }))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Lines an operator can paste to upload the build and use it for rescue.
pub fn upload_commands(output: &Path, name: &str, artifacts: &[Artifact]) -> Vec<String> {
    let has = |kind: ArtifactKind| artifacts.iter().any(|a| a.kind == kind);
    let dir = output.display();
    let mut lines = Vec::new();
    for (kind, var, disk, container) in [
        (ArtifactKind::Kernel, "KERNEL_ID", "aki", "aki"),
        (ArtifactKind::Initramfs, "RAMDISK_ID", "ari", "ari"),
        (ArtifactKind::Iso, "ISO_ID", "iso", "bare"),
    ] {
        if has(kind) {
            let file = artifact_file(name, kind);
            lines.push(format!(
                "{var}=$(openstack image create --disk-format {disk} --container-format {container} --file {dir}/{file} {file} -f value -c id)"
            ));
        }
    }
    if has(ArtifactKind::Kernel) && has(ArtifactKind::Initramfs) {
        lines.push(
            "openstack baremetal node set <node> --driver-info rescue_kernel=$KERNEL_ID --driver-info rescue_ramdisk=$RAMDISK_ID"
                .to_string(),
        );
    }
    lines
}

/// Refuses a `--keep-tree DIR` that exists and is not an empty directory.
/// Runs before the build starts: the old behaviour, deleting `DIR` after the
/// build, could silently destroy whatever the user had there.
pub fn check_keep_tree(dir: Option<&Path>) -> Result<(), BuildError> {
    let Some(dir) = dir else { return Ok(()) };
    let refuse = |why: &str| {
        Err(BuildError::KeepTree(format!(
            "--keep-tree {}: {why}; name a new or empty directory (ipa-build never deletes it)",
            dir.display()
        )))
    };
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Ok(false) => refuse("the directory is not empty"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if dir.exists() && !dir.is_dir() => {
            refuse(&format!("exists and is not a directory ({e})"))
        }
        Err(e) => refuse(&e.to_string()),
    }
}

/// Moves the staged tree to `--keep-tree DIR` (checked by [`check_keep_tree`]
/// before the build; an empty directory there is replaced).
pub fn keep_tree(staged: Staged, dir: Option<&Path>) -> Result<(), BuildError> {
    let Some(dir) = dir else { return Ok(()) };
    check_keep_tree(Some(dir))?;
    let tree = staged.tree.root();
    if dir.is_dir() {
        std::fs::remove_dir(dir).map_err(super::io_err("replacing the empty directory", dir))?;
    }
    std::fs::rename(tree, dir)
        .or_else(|_| duct::cmd!("cp", "-a", tree, dir).run().map(|_| ()))
        .map_err(super::io_err("keeping the staged tree at", dir))
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), EmitError> {
    let mut f = BufWriter::new(File::create(path).map_err(io_err("creating", path))?);
    f.write_all(data).map_err(io_err("writing", path))?;
    f.flush().map_err(io_err("writing", path))
}

/// Size, SHA-256 and SHA-512 of a file in one read.
pub fn hash_file(path: &Path) -> Result<(u64, String, String), EmitError> {
    let mut f = File::open(path).map_err(io_err("reading", path))?;
    let (mut s256, mut s512) = (Sha256::new(), Sha512::new());
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        s256.update(&buf[..n]);
        s512.update(&buf[..n]);
    }
    Ok((
        size,
        hex::encode(s256.finalize()),
        hex::encode(s512.finalize()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An emitter for `<temp>/out` holding one kernel `x.kernel` with
    /// `contents`; returns the temp dir, the output path, the emitter and
    /// the added artifact.
    fn with_kernel(contents: &[u8]) -> (tempfile::TempDir, PathBuf, Emitter, Artifact) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut e = Emitter::new(&out).unwrap();
        std::fs::write(e.path("x.kernel"), contents).unwrap();
        let a = e.add(ArtifactKind::Kernel, "x.kernel").unwrap().clone();
        (dir, out, e, a)
    }

    #[test]
    fn nothing_reaches_output_without_commit() {
        let (dir, out, e, _) = with_kernel(b"k");
        drop(e);
        assert!(!out.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp dir left behind"
        );
    }

    #[test]
    fn commit_writes_sums_and_manifest() {
        let (_dir, out, e, a) = with_kernel(b"abc");
        assert_eq!(
            a.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        e.commit(&serde_json::json!({"k": 1})).unwrap();
        let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
        assert!(sums.contains(&format!("{}  x.kernel\n", a.sha256)));
        assert!(sums.contains("  manifest.json\n"));
        let s512 = std::fs::read_to_string(out.join("x.kernel.sha512")).unwrap();
        assert_eq!(s512, format!("{}  x.kernel\n", a.sha512));
        // sha256sum -c accepts our format.
        let check = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(&out)
            .status();
        assert!(
            check.unwrap().success(),
            "sha256sum -c failed (its output is above)"
        );
    }

    #[test]
    fn output_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(matches!(Emitter::new(&f), Err(EmitError::NotADirectory(_))));
    }
}
