//! The `write_image` deploy step: pick the disk, fetch and verify the image
//! while writing it (raw straight through, qcow2 converted), then move the
//! GPT backup to the end and add the configdrive.
//!
//! Nothing touches the disk before the image's format and size are known
//! to fit with room for the configdrive. A download that breaks or hashes
//! wrong is retried as IPA retries it; a final checksum mismatch wipes the
//! start and end of what was written, so a corrupt image cannot boot.

use super::checksum::{self, Expected, Hasher};
use super::download::{self, Source};
use super::format::{self, Format};
use super::input::Input;
use super::pipeline;
use super::qcow2::{Header, stream};
use super::settings::Settings;
use super::target::Target;
use super::{DeployError, configdrive, gpt::Gpt, hints, root_device};
use crate::fsutil::under;
use crate::hardware::disks;
use serde_json::{Map, Value};
use std::io::Read;
use std::path::Path;

/// The first bytes read before deciding anything (a qcow2 header and its
/// extensions fit).
const HEAD: usize = 4096;
const MIB: u64 = 1 << 20;

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The disk, e.g. `/dev/vda`.
    pub device: String,
    /// Detected format.
    pub format: Format,
    /// Bytes of disk the image covers (its virtual size).
    pub size: u64,
    /// IPA's `root uuid` for a whole-disk image: the MBR disk signature.
    pub disk_identifier: String,
}

/// Runs the step with the `args` Ironic sent (`image_info`, `configdrive`)
/// for `node` (for the root device hints).
pub fn write_image(
    root: &Path,
    settings: &Settings,
    node: &Value,
    args: &Map<String, Value>,
) -> Result<Written, DeployError> {
    let info = args
        .get("image_info")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            DeployError::InvalidParams("write_image needs an image_info object".into())
        })?;
    let urls = validate(info)?;
    let cd = match args.get("configdrive").or_else(|| info.get("configdrive")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(DeployError::InvalidParams(
                "configdrive must be a string (gzip+base64 or a URL)".into(),
            ));
        }
    };
    let disk = root_device::choose(
        &disks::list(root).map_err(|e| DeployError::NoDevice(e.to_string()))?,
        &hints::from_node(node)?,
    )?;
    log::info!("writing image {} to {}", info["id"], disk.name);
    let src = Source::from_image_info(info)?;
    let fetch = |url: &str, limit: u64| download::fetch_bytes(settings, &src, url, limit);
    let expected = checksum::expected(info, settings.md5_allowed, |u| {
        Ok(String::from_utf8_lossy(&fetch(u, 1 << 20)?).into_owned())
    })?;
    let iso = cd.map(|c| configdrive::decode(&c, fetch)).transpose()?;
    let t = Target::open(&under(root, &disk.name))?;
    let reserve = if iso.is_some() {
        configdrive::RESERVED
    } else {
        0
    };
    let claimed = info.get("disk_format").and_then(Value::as_str);
    let (format, size) =
        write_with_retries(&t, settings, &src, &urls, &expected, claimed, reserve)?;
    finish(&t, iso.as_deref())?;
    Ok(Written {
        device: disk.name,
        format,
        size,
        disk_identifier: disk_identifier(&t)?,
    })
}

/// IPA's checks on `image_info`; returns the URLs.
fn validate(info: &Map<String, Value>) -> Result<Vec<String>, DeployError> {
    if info.get("id").is_none() {
        return Err(DeployError::InvalidParams(
            "Image is missing 'id' field.".into(),
        ));
    }
    let urls: Vec<String> = info
        .get("urls")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if urls.is_empty() {
        return Err(DeployError::InvalidParams(
            "Image 'urls' must be a list with at least one element.".into(),
        ));
    }
    if info.get("image_type").and_then(Value::as_str) == Some("partition") {
        return Err(DeployError::InvalidParams(
            "partition images are not supported by this agent; use a whole-disk image".into(),
        ));
    }
    Ok(urls)
}

/// Downloads and writes, retrying broken downloads and checksum
/// mismatches; wipes the disk's boot areas when it finally fails after
/// writing began.
pub fn write_with_retries(
    t: &Target,
    settings: &Settings,
    src: &Source,
    urls: &[String],
    expected: &Expected,
    claimed: Option<&str>,
    reserve: u64,
) -> Result<(Format, u64), DeployError> {
    let mut attempt = 0;
    loop {
        let body = download::open(settings, src, urls)?;
        let mut input = Input::new(body.reader, Hasher::new(expected.algo));
        let result = write_stream(t, &mut input, body.length, claimed, reserve).and_then(|written| {
            let digest = input.digest();
            if digest == expected.hex {
                Ok(written)
            } else {
                Err(DeployError::Checksum(format!(
                    "Image failed to verify against checksum. location: {}; expected {:?} {}, got {digest}",
                    body.url, expected.algo, expected.hex
                )))
            }
        });
        let err = match result {
            Ok(written) => return Ok(written),
            Err(e) => e,
        };
        let retry = matches!(err, DeployError::Download(_) | DeployError::Checksum(_));
        if !retry || attempt >= settings.download.retries {
            if t.dirty() {
                wipe_boot_areas(t);
            }
            return Err(err);
        }
        attempt += 1;
        log::warn!(
            "{err}; attempt {attempt} of {} in {:?}",
            settings.download.retries,
            settings.download.retry_interval
        );
        std::thread::sleep(settings.download.retry_interval);
    }
}

/// Writes one download to `t`; returns the format and the bytes covered.
pub fn write_stream<R: Read>(
    t: &Target,
    input: &mut Input<R>,
    length: Option<u64>,
    claimed: Option<&str>,
    reserve: u64,
) -> Result<(Format, u64), DeployError> {
    let head = input.fetch(0, HEAD, true)?;
    let fmt = format::detect(&head)?;
    format::check_claim(fmt, claimed)?;
    let room = t.size().saturating_sub(reserve);
    let size = match fmt {
        Format::Raw => length.ok_or_else(|| {
            DeployError::InvalidImage("the server sent no Content-Length: a raw image's size must be known before writing".into())
        })?,
        Format::Qcow2 => Header::parse(&head)?.size,
    };
    if size > room {
        return Err(DeployError::InvalidImage(format!(
            "the image needs {size} bytes{} but {} has {} bytes",
            if reserve > 0 {
                " plus 65 MiB for the configdrive"
            } else {
                ""
            },
            t.path().display(),
            t.size()
        )));
    }
    if size + MIB < t.size() {
        // A stale backup GPT at the old end must not outlive the new image.
        t.zero(t.size() - MIB, MIB)?;
    }
    match fmt {
        Format::Raw => copy_raw(t, input, &head, size)?,
        Format::Qcow2 => {
            stream::convert(&Header::parse(&head)?, input, t)?;
        }
    }
    Ok((fmt, size))
}

/// Streams raw bytes to the disk; the count must match `Content-Length`.
fn copy_raw<R: Read>(
    t: &Target,
    input: &mut Input<R>,
    head: &[u8],
    size: u64,
) -> Result<(), DeployError> {
    let too_long = || {
        DeployError::Download(format!(
            "the server sent more than its Content-Length of {size} bytes"
        ))
    };
    if (head.len() as u64) > size {
        return Err(too_long());
    }
    t.write_at(0, head)?;
    pipeline::copy(t, input, head.len() as u64, size)?;
    if input.drain()? != size {
        return Err(too_long());
    }
    Ok(())
}

/// After a write: GPT backup to the end, configdrive, flush, re-read.
fn finish(t: &Target, iso: Option<&[u8]>) -> Result<(), DeployError> {
    match iso {
        Some(iso) => {
            configdrive::write(t, iso)?;
        }
        // Without a configdrive a GPT that cannot be fixed is only logged,
        // as IPA does: the image is written and the primary table is intact.
        None => match Gpt::read(t) {
            Ok(Some(mut g)) => {
                if let Err(e) = g.move_backup_to_end(t) {
                    log::warn!("cannot move the GPT backup header to the end of the disk: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => log::warn!("not moving the GPT backup header: {e}"),
        },
    }
    t.sync()?;
    t.reread_partitions();
    Ok(())
}

/// Zeroes the first MiB (MBR, primary GPT), the last MiB, and any backup
/// GPT the primary points to: neither firmware nor a kernel can then find
/// a partition table to boot from.
fn wipe_boot_areas(t: &Target) {
    log::warn!(
        "wiping the partition tables on {} after a failed write",
        t.path().display()
    );
    if let Err(e) = super::erase::wipe_metadata(t, &[]).and_then(|()| t.sync()) {
        log::error!(
            "could not wipe {} after a failed write: {e}",
            t.path().display()
        );
    }
}

/// The MBR disk signature as IPA prints it (`hexdump -s 440 -n 4 -e '"0x%08x"'`).
fn disk_identifier(t: &Target) -> Result<String, DeployError> {
    let mut b = [0u8; 4];
    t.read_at(440, &mut b)?;
    Ok(format!("0x{:08x}", u32::from_le_bytes(b)))
}
