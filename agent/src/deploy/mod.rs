//! Deploying a whole-disk image and cleaning disks: the work behind the
//! `deploy`, `clean`, `image` and `standby.get_partition_uuids` commands.
//!
//! One module per job, so each can be tested on a regular file:
//! `hints` (Ironic's root device hints), `root_device` (which disk),
//! `target` (the device or file written to), `erase` (metadata and full
//! wipes), `settings` (download policy and TLS trust), `checksum`,
//! `download`, `format` (what the bytes are), `qcow2` (streaming
//! conversion), `write` (download → disk), `gpt`/`mbr` (partition tables),
//! `configdrive`, and `steps` (the step lists and their dispatch).

pub mod checksum;
pub mod configdrive;
pub mod download;
pub mod erase;
pub mod format;
pub mod gpt;
pub mod hints;
pub mod input;
pub mod mbr;
pub mod pipeline;
pub mod qcow2;
pub mod root_device;
pub mod settings;
pub mod steps;
pub mod target;
pub mod write;

use crate::commands::CommandError;

/// Why a deploy or clean step failed. Each variant maps to the IPA error
/// class the conductor would see from ironic-python-agent.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The request itself is wrong (missing `image_info`, bad hints…).
    #[error("{0}")]
    InvalidParams(String),
    /// No disk qualifies (none at all, or none matching the hints).
    #[error("{0}")]
    NoDevice(String),
    /// The image could not be fetched.
    #[error("{0}")]
    Download(String),
    /// The bytes do not hash to what Ironic said.
    #[error("{0}")]
    Checksum(String),
    /// The image's content is refused (format, size, layout).
    #[error("{0}")]
    InvalidImage(String),
    /// Reading or writing the disk failed.
    #[error("{0}")]
    Write(String),
    /// The configdrive is malformed or does not fit.
    #[error("{0}")]
    Configdrive(String),
    /// Erasing a disk failed.
    #[error("{0}")]
    Erase(String),
}

impl DeployError {
    /// The `(type, message)` IPA would report.
    fn class(&self) -> (&'static str, &'static str) {
        match self {
            DeployError::InvalidParams(_) => {
                ("InvalidCommandParamsError", "Invalid command parameters")
            }
            DeployError::NoDevice(_) => (
                "DeviceNotFound",
                "Error finding the disk or partition device to deploy the image onto",
            ),
            DeployError::Download(_) => ("ImageDownloadError", "Error downloading image"),
            DeployError::Checksum(_) => ("ImageChecksumError", "Error verifying image checksum"),
            DeployError::InvalidImage(_) => {
                ("InvalidImage", "The provided image is not valid for use")
            }
            DeployError::Write(_) => ("ImageWriteError", "Error writing image to device"),
            DeployError::Configdrive(_) => ("InstanceDeployFailure", "Configdrive failed"),
            DeployError::Erase(_) => ("BlockDeviceEraseError", "Error erasing block device"),
        }
    }
}

impl From<DeployError> for CommandError {
    fn from(e: DeployError) -> Self {
        let (kind, message) = e.class();
        let code = if matches!(e, DeployError::InvalidParams(_)) {
            400
        } else {
            500
        };
        CommandError {
            kind: kind.into(),
            code,
            message: message.into(),
            details: e.to_string(),
        }
    }
}

/// Formats an I/O error with what was being done, for `DeployError`s.
pub(crate) fn io_msg(what: impl std::fmt::Display, e: &std::io::Error) -> String {
    format!("{what}: {e}")
}
