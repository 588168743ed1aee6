//! What an image is, from its first bytes, never from `disk_format`: raw
//! (including ISO 9660) or qcow2 are written; every other container
//! (VMDK, VHD, VHDX, VDI, QED, LUKS, qcow v1) is refused by name, like
//! IPA's format inspector, because writing it raw would leave a disk that
//! cannot boot.

use super::DeployError;

/// How many leading bytes `detect` needs.
pub const PROBE: usize = 512;

/// A format this agent can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Bytes as they go on the disk.
    Raw,
    /// QEMU copy-on-write v2/v3, converted while writing.
    Qcow2,
}

/// Detects the format of an image starting with `head` (at least
/// [`PROBE`] bytes unless the image is shorter).
pub fn detect(head: &[u8]) -> Result<Format, DeployError> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"QFI\xfb") {
        let version = head
            .get(4..8)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        return match version {
            Some(2 | 3) => Ok(Format::Qcow2),
            v => Err(refused(&format!("qcow version {}", v.unwrap_or(0)))),
        };
    }
    let others: [(usize, &[u8], &str); 7] = [
        (0, b"KDMV", "vmdk"),
        (0, b"# Disk DescriptorFile", "vmdk (descriptor)"),
        (0, b"vhdxfile", "vhdx"),
        (0, b"conectix", "vhd"),
        (0, b"QED\0", "qed"),
        (0, b"LUKS\xba\xbe", "luks"),
        (0x40, &[0x7f, 0x10, 0xda, 0xbe], "vdi"),
    ];
    match others.iter().find(|(off, magic, _)| at(*off, magic)) {
        Some((_, _, name)) => Err(refused(name)),
        None => Ok(Format::Raw),
    }
}

fn refused(what: &str) -> DeployError {
    DeployError::InvalidImage(format!(
        "the image is {what}; only raw and qcow2 images can be written"
    ))
}

/// Checks the content against what Ironic said (`disk_format`): a claimed
/// raw image that is qcow2 is refused (it would be written as qcow2 bytes),
/// and so is a claimed qcow2 that is not one. `iso`, `None` and unknown
/// names are not claims about the layout.
pub fn check_claim(detected: Format, claimed: Option<&str>) -> Result<(), DeployError> {
    match (claimed.map(str::to_lowercase).as_deref(), detected) {
        (Some("raw"), Format::Qcow2) => Err(DeployError::InvalidImage(
            "the image claims to be raw (disk_format) but its content is qcow2; refusing it".into(),
        )),
        (Some("qcow2"), Format::Raw) => Err(DeployError::InvalidImage(
            "the image claims to be qcow2 (disk_format) but its content is not; refusing it".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(off: usize, magic: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; PROBE];
        h[off..off + magic.len()].copy_from_slice(magic);
        h
    }

    #[test]
    fn detects_from_content() {
        assert_eq!(
            detect(&head(0, b"QFI\xfb\0\0\0\x03")).unwrap(),
            Format::Qcow2
        );
        assert_eq!(detect(&head(510, &[0x55, 0xaa])).unwrap(), Format::Raw);
        assert_eq!(detect(b"tiny").unwrap(), Format::Raw);
        for (off, magic, name) in [
            (0, &b"QFI\xfb\0\0\0\x01"[..], "qcow version 1"),
            (0, b"KDMV", "vmdk"),
            (0, b"vhdxfile", "vhdx"),
            (0, b"conectix", "vhd"),
            (0x40, &[0x7f, 0x10, 0xda, 0xbe][..], "vdi"),
            (0, b"LUKS\xba\xbe", "luks"),
        ] {
            let e = detect(&head(off, magic)).unwrap_err().to_string();
            assert!(e.contains(name), "{name}: {e}");
        }
    }

    #[test]
    fn a_claimed_raw_qcow2_is_refused() {
        let e = check_claim(Format::Qcow2, Some("raw")).unwrap_err();
        assert!(e.to_string().contains("claims to be raw"), "{e}");
        assert!(check_claim(Format::Raw, Some("qcow2")).is_err());
        assert!(check_claim(Format::Qcow2, Some("qcow2")).is_ok());
        assert!(check_claim(Format::Raw, Some("iso")).is_ok());
        assert!(check_claim(Format::Qcow2, None).is_ok());
    }
}
