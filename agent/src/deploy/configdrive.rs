//! The configdrive: a gzip+base64 string (or a URL serving one, or serving
//! the raw image), at most 64 MiB once unpacked, an ISO 9660 image labelled
//! `config-2`. It goes into a new 64 MiB partition at the end of the disk,
//! after the GPT backup moved there: `sgdisk -n 0:-64MB:0` on GPT and
//! `parted mkpart primary fat32 -64MiB -0` on a DOS table in IPA; here our
//! own table code does the same on either.

use super::DeployError;
use super::gpt::{Gpt, LINUX_FS_TYPE};
use super::mbr;
use super::target::Target;
use base64::Engine;
use std::io::Read;

/// The largest configdrive accepted, and the largest partition made for it
/// (its start is aligned up, so it may be up to 1 MiB smaller).
pub const MAX: u64 = 64 << 20;
/// Partitions start on 1 MiB boundaries, as sgdisk and parted align them.
const ALIGN: u64 = 1 << 20;
/// Space an image must leave free at the end of the disk for the
/// configdrive partition, its alignment and the GPT backup.
pub const RESERVED: u64 = MAX + ALIGN + 64 * 512;

fn bad(why: impl std::fmt::Display) -> DeployError {
    DeployError::Configdrive(format!("malformed configdrive: {why}"))
}

/// The ISO image of a configdrive given as Ironic sends it. `fetch`
/// downloads a URL (at most `limit` bytes).
pub fn decode(
    value: &str,
    fetch: impl Fn(&str, u64) -> Result<Vec<u8>, DeployError>,
) -> Result<Vec<u8>, DeployError> {
    let is_url = value.starts_with("http://") || value.starts_with("https://");
    let raw = if is_url {
        fetch(value, 3 * MAX)?
    } else {
        value.as_bytes().to_vec()
    };
    let compact: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let data = match base64::engine::general_purpose::STANDARD.decode(&compact) {
        Ok(d) => d,
        Err(_) if is_url => raw,
        Err(e) => return Err(bad(format!("not base64 ({e})"))),
    };
    let iso = if data.starts_with(&[0x1f, 0x8b]) {
        gunzip(&data)?
    } else {
        data
    };
    check_iso(&iso)?;
    Ok(iso)
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, DeployError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(MAX + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("gzip: {e}")))?;
    if out.len() as u64 > MAX {
        return Err(DeployError::Configdrive(
            "Config drive size exceeds maximum limit of 64MiB".into(),
        ));
    }
    Ok(out)
}

/// An ISO 9660 primary volume descriptor with the volume id `config-2`.
fn check_iso(iso: &[u8]) -> Result<(), DeployError> {
    if iso.len() as u64 > MAX {
        return Err(DeployError::Configdrive(
            "Config drive size exceeds maximum limit of 64MiB".into(),
        ));
    }
    let pvd = iso
        .get(32768..32768 + 2048)
        .ok_or_else(|| bad("too short for an ISO 9660 image"))?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return Err(bad("not an ISO 9660 image"));
    }
    let label = String::from_utf8_lossy(&pvd[40..72]).trim().to_string();
    if !label.eq_ignore_ascii_case("config-2") {
        return Err(bad(format!("the ISO is labelled {label:?}, not config-2")));
    }
    Ok(())
}

/// Adds the configdrive partition at the end of `t` and writes `iso` into
/// it; returns the partition's byte offset.
pub fn write(t: &Target, iso: &[u8]) -> Result<u64, DeployError> {
    let (start, len) = if let Some(mut g) = Gpt::read(t)? {
        g.move_backup_to_end(t)?;
        gpt_partition(t, &mut g)?
    } else if mbr::read(t)?.is_some() {
        mbr_partition(t)?
    } else {
        return Err(DeployError::Configdrive(
            "the image has neither a GPT nor a DOS partition table; there is no place for the configdrive partition".into(),
        ));
    };
    let size = iso.len() as u64;
    if size > len {
        return Err(DeployError::Configdrive(format!(
            "the configdrive ({size} bytes) does not fit the {len}-byte partition at the end of the disk"
        )));
    }
    t.write_at(start, iso)?;
    // Stale bytes right after the ISO would confuse blkid; never past the
    // partition (the GPT backup follows it).
    t.zero(start + size, (len - size).min(ALIGN))?;
    log::info!(
        "configdrive ({} bytes) written at byte {start} of {}",
        iso.len(),
        t.path().display()
    );
    Ok(start)
}

/// Where a partition ending before byte `end` starts: `MAX` before it,
/// aligned up, so it is at most `MAX` long.
fn aligned_start(end: u64) -> u64 {
    end.saturating_sub(MAX).div_ceil(ALIGN) * ALIGN
}

/// Adds the GPT partition; returns its byte offset and length.
fn gpt_partition(t: &Target, g: &mut Gpt) -> Result<(u64, u64), DeployError> {
    let s = g.sector;
    let last = g.last_usable();
    let first = aligned_start((last + 1) * s) / s;
    check_room(
        first,
        g.partitions().iter().map(|p| p.1 + 1).max().unwrap_or(34),
    )?;
    g.add_partition(t, first, last, LINUX_FS_TYPE)?;
    Ok((first * s, (last + 1 - first) * s))
}

/// Adds the DOS partition; returns its byte offset and length.
fn mbr_partition(t: &Target) -> Result<(u64, u64), DeployError> {
    let entries = mbr::read(t)?.unwrap_or(
        [mbr::Entry {
            kind: 0,
            start: 0,
            sectors: 0,
        }; 4],
    );
    // A DOS table addresses 2^32 sectors: on a bigger disk the partition
    // goes just below that limit, as IPA does.
    let end = (t.size() / 512).min(u32::MAX as u64);
    let first = aligned_start(end * 512) / 512;
    let used = entries
        .iter()
        .filter(|e| e.kind != 0)
        .map(|e| e.start + e.sectors)
        .max()
        .unwrap_or(1);
    check_room(first, used)?;
    mbr::add_partition(t, first, end - first, mbr::FAT32_LBA)?;
    Ok((first * 512, (end - first) * 512))
}

fn check_room(first: u64, first_free: u64) -> Result<(), DeployError> {
    if first < first_free {
        return Err(DeployError::Configdrive(format!(
            "no room for a 64 MiB configdrive partition at the end of the disk: it would start at sector {first} but partitions reach sector {first_free}"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deploy::target::test_target;
    use std::io::Write;

    /// A minimal ISO 9660 image labelled `label`.
    pub(crate) fn iso(label: &str) -> Vec<u8> {
        let mut v = vec![0u8; 40 * 2048];
        v[32768] = 1;
        v[32769..32774].copy_from_slice(b"CD001");
        let mut l = format!("{label:<32}").into_bytes();
        l.truncate(32);
        v[32768 + 40..32768 + 72].copy_from_slice(&l);
        v[36000] = 0x42; // "meta_data"
        v
    }

    pub(crate) fn gzip_b64(data: &[u8]) -> String {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }

    fn no_fetch(_: &str, _: u64) -> Result<Vec<u8>, DeployError> {
        panic!("no fetch")
    }

    #[test]
    fn decodes_strings_and_urls() {
        let cd = iso("config-2");
        assert_eq!(decode(&gzip_b64(&cd), no_fetch).unwrap(), cd);
        let fetched = decode("http://h/cd", |u, _| {
            assert_eq!(u, "http://h/cd");
            Ok(cd.clone())
        })
        .unwrap();
        assert_eq!(fetched, cd, "a URL may serve the raw ISO");
    }

    #[test]
    fn malformed_configdrives_are_clean_failures() {
        for (value, why) in [
            ("!!!not base64", "not base64"),
            (&gzip_b64(b"hello")[..], "too short"),
            (&gzip_b64(&iso("cidata"))[..], "not config-2"),
            (
                &base64::engine::general_purpose::STANDARD.encode([0x1f, 0x8b, 1, 2, 3])[..],
                "gzip",
            ),
        ] {
            let e = decode(value, no_fetch).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
        let big = gzip_b64(&vec![0u8; (MAX + 1) as usize]);
        assert!(
            decode(&big, no_fetch)
                .unwrap_err()
                .to_string()
                .contains("64MiB")
        );
    }

    fn disk(mut img: Vec<u8>, size: usize) -> (tempfile::TempDir, Target) {
        img.resize(size, 0);
        test_target(img)
    }

    #[test]
    fn gpt_gets_a_partition_at_the_end_holding_the_iso() {
        let (_d, t) = disk(super::super::gpt::tests::gpt_image(8192, 8191), 200 << 20);
        let cd = iso("config-2");
        let start = write(&t, &cd).unwrap();
        let g = Gpt::read(&t).unwrap().unwrap();
        let last = (200u64 << 20) / 512 - 1;
        assert_eq!(g.backup_lba(), last);
        let parts = g.partitions();
        assert_eq!(parts[1], (start / 512, last - 33));
        assert_eq!(start % (1 << 20), 0);
        assert!((last - 33 + 1) * 512 - start >= MAX - (1 << 20));
        let mut back = vec![0u8; cd.len()];
        t.read_at(start, &mut back).unwrap();
        assert_eq!(back, cd);
    }

    #[test]
    fn mbr_gets_a_primary_partition_at_the_end() {
        let img = crate::deploy::mbr::test_dos_image(0x83, 2048, 8192);
        let (_d, t) = disk(img, 100 << 20);
        let start = write(&t, &iso("config-2")).unwrap();
        let e = mbr::read(&t).unwrap().unwrap();
        assert_eq!(e[1].kind, mbr::FAT32_LBA);
        assert_eq!(e[1].start * 512, start);
        assert_eq!((e[1].start + e[1].sectors) * 512, 100 << 20);
        assert_eq!(start, 36 << 20);
    }

    #[test]
    fn no_table_or_no_room_is_refused() {
        let (_d, t) = disk(vec![], 100 << 20);
        assert!(
            write(&t, &iso("config-2"))
                .unwrap_err()
                .to_string()
                .contains("neither")
        );
        let mut img = vec![0u8; 512];
        img[510] = 0x55;
        img[511] = 0xAA;
        img[446 + 4] = 0x83;
        img[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        img[446 + 12..446 + 16].copy_from_slice(&(190_000u32).to_le_bytes());
        let (_d2, t) = disk(img, 100 << 20);
        assert!(
            write(&t, &iso("config-2"))
                .unwrap_err()
                .to_string()
                .contains("no room")
        );
    }
}
