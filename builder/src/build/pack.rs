//! Stage 8: the initramfs and the kernel, straight into the emitter's
//! temporary directory.
//!
//! The newc writer and the compressors live in [`crate::initramfs`]; this
//! stage only chooses the options from the profile and records the results
//! as artifacts.

use super::BuildError;
use super::emit::Emitter;
use super::plan::Plan;
use super::stage::Staged;
use crate::initramfs::{self, PackOptions, PackReport};
use crate::manifest::ArtifactKind;
use crate::report::{Reporter, human_bytes};

/// Stage 8.
pub fn pack(
    plan: &Plan,
    staged: &Staged,
    source_date_epoch: u64,
    emitter: &mut Emitter,
    reporter: &Reporter,
) -> Result<PackReport, BuildError> {
    let output = &plan.profile.output;
    let name = plan.name();
    let st = reporter.stage("pack", format!("{} {name}", output.compression.name()));
    let opts = PackOptions {
        compression: output.compression,
        level: output.level.map(|l| l as i32),
        source_date_epoch,
        threads: super::threads(),
    };
    let initramfs_file = artifact_file(name, ArtifactKind::Initramfs);
    let packed = initramfs::pack_to_file(&staged.tree, &opts, &emitter.path(&initramfs_file))?;
    emitter.add(ArtifactKind::Initramfs, &initramfs_file)?;
    let kernel_file = artifact_file(name, ArtifactKind::Kernel);
    emitter.add_copy(ArtifactKind::Kernel, &kernel_file, &staged.kernel.vmlinuz)?;
    st.done(format!(
        "{} entries, {} → {}",
        packed.entries,
        human_bytes(packed.uncompressed_bytes),
        human_bytes(packed.compressed_bytes)
    ));
    Ok(packed)
}

/// `NAME.kernel`, `NAME.initramfs`, `NAME.iso`: the one naming rule for
/// artifacts (upload commands and the ISO stage use it too).
pub fn artifact_file(name: &str, kind: ArtifactKind) -> String {
    format!("{name}.{kind}")
}
