//! `InRelease`: the one signed file of a suite.
//!
//! We let `gpgv` check the signature and hand back the signed text itself
//! (`--output -`), and parse only that: text outside the signed block (an
//! attacker can append anything after the signature) never reaches the
//! parser. The SHA-256 list then pins every index file we read.
//!
//! `Valid-Until` is what stops a mirror from replaying old, vulnerable but
//! correctly signed indices (bookworm-security sets it to a week). Its date
//! format is RFC 2822 with `UTC` as the zone name, parsed here by hand
//! rather than with a date crate for one field.

use std::collections::HashMap;
use std::path::Path;

use super::DebianError;

/// The parts of a verified `InRelease` we use.
#[derive(Debug, Clone)]
pub struct Release {
    pub url: String,
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub date: Option<String>,
    pub valid_until: Option<String>,
    /// Path relative to `dists/<suite>/` → (sha256, size).
    pub sha256: HashMap<String, (String, u64)>,
}

/// Runs `gpgv --keyring KEYRING --output - FILE` and returns the signed text.
pub fn verify(file: &Path, keyring: &Path, url: &str) -> Result<String, DebianError> {
    if !keyring.is_file() {
        return Err(DebianError::BadSignature {
            url: url.to_string(),
            keyring: keyring.to_path_buf(),
            gpgv: format!(
                "  keyring {} does not exist (install debian-archive-keyring?)",
                keyring.display()
            ),
        });
    }
    let out = duct::cmd(
        "gpgv",
        [
            "--keyring".as_ref(),
            keyring.as_os_str(),
            "--output".as_ref(),
            "-".as_ref(),
            file.as_os_str(),
        ],
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .map_err(|e| DebianError::Gpgv {
        url: url.to_string(),
        msg: e.to_string(),
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let gpgv = stderr
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(DebianError::BadSignature {
            url: url.to_string(),
            keyring: keyring.to_path_buf(),
            gpgv,
        });
    }
    String::from_utf8(out.stdout).map_err(|_| DebianError::Index {
        url: url.to_string(),
        msg: "signed text is not UTF-8".into(),
    })
}

/// Parses the signed text of an `InRelease` (or a plain `Release`).
pub fn parse(url: &str, text: &str) -> Result<Release, DebianError> {
    let mut r = Release {
        url: url.to_string(),
        suite: None,
        codename: None,
        date: None,
        valid_until: None,
        sha256: HashMap::new(),
    };
    let mut in_sha256 = false;
    for line in text.lines() {
        if let Some(entry) = line.strip_prefix(' ') {
            if in_sha256 {
                let mut w = entry.split_whitespace();
                let (Some(hash), Some(size), Some(name)) = (w.next(), w.next(), w.next()) else {
                    return Err(DebianError::Index {
                        url: url.into(),
                        msg: format!("bad SHA256 line {line:?}"),
                    });
                };
                let size = size.parse().map_err(|_| DebianError::Index {
                    url: url.into(),
                    msg: format!("bad size in {line:?}"),
                })?;
                r.sha256
                    .insert(name.to_string(), (hash.to_ascii_lowercase(), size));
            }
            continue;
        }
        in_sha256 = false;
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match k {
            "SHA256" => in_sha256 = true,
            "Suite" => r.suite = Some(v),
            "Codename" => r.codename = Some(v),
            "Date" => r.date = Some(v),
            "Valid-Until" => r.valid_until = Some(v),
            _ => {}
        }
    }
    if r.sha256.is_empty() {
        return Err(DebianError::Index {
            url: url.into(),
            msg: "no SHA256 list (only SHA256 is trusted; MD5/SHA1-only archives are refused)"
                .into(),
        });
    }
    Ok(r)
}

impl Release {
    /// Fails if `Valid-Until` lies before `now` (seconds since the epoch).
    pub fn check_valid_until(&self, now: i64) -> Result<(), DebianError> {
        let Some(vu) = &self.valid_until else {
            return Ok(());
        };
        let until = parse_date(vu).ok_or_else(|| DebianError::Index {
            url: self.url.clone(),
            msg: format!("cannot read Valid-Until date {vu:?}"),
        })?;
        if until < now {
            return Err(DebianError::Expired {
                url: self.url.clone(),
                valid_until: vu.clone(),
                now: format_date(now),
            });
        }
        Ok(())
    }
}

/// Parses `Fri, 27 Nov 2026 00:12:41 UTC` (also `+0000`/`GMT`/`Z`, and
/// without the weekday) into seconds since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.split_once(',').map_or(s, |(_, rest)| rest);
    let mut w = s.split_whitespace();
    let day: i64 = w.next()?.parse().ok()?;
    let mon = w.next()?;
    let year: i64 = w.next()?.parse().ok()?;
    let mut hms = w.next()?.split(':');
    let (h, m, sec): (i64, i64, i64) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next().unwrap_or("0").parse().ok()?,
    );
    let offset = match w.next() {
        None | Some("UTC" | "GMT" | "Z" | "UT") => 0,
        Some(z) if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            let o = hh * 3600 + mm * 60;
            if z.starts_with('-') { -o } else { o }
        }
        Some(_) => return None,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? as i64 + 1;
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec - offset)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `(year, month, day)` of a count of days since 1970-01-01: the inverse of
/// [`days_from_civil`] (Howard Hinnant's algorithm). Shared by every place
/// that prints a date, so there is one calendar in the builder.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-21 10:01:30 UTC`, for messages.
pub fn format_date(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let secs = t.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Fri, 27 Nov 2026 00:12:41 UTC"),
            Some(1_795_738_361)
        );
        assert_eq!(
            parse_date("27 Nov 2026 01:12:41 +0100"),
            Some(1_795_738_361)
        );
        assert_eq!(format_date(1_795_738_361), "2026-11-27 00:12:41 UTC");
        assert_eq!(parse_date("someday"), None);
    }

    #[test]
    fn parse_and_expiry() {
        let text = "Origin: Debian\nSuite: oldstable-security\nValid-Until: Fri, 27 Nov 2026 00:12:41 UTC\nSHA256:\n \
                    e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages\n \
                    AB 12 main/binary-amd64/Packages.xz\nMD5Sum:\n ff 1 other\n";
        let r = parse("http://m/dists/s/InRelease", text).unwrap();
        assert_eq!(r.sha256.len(), 2);
        assert_eq!(
            r.sha256["main/binary-amd64/Packages.xz"],
            ("ab".to_string(), 12)
        );
        assert!(!r.sha256.contains_key("other"));
        assert!(r.check_valid_until(1_795_738_000).is_ok());
        let e = r.check_valid_until(1_795_800_000).unwrap_err().to_string();
        assert!(
            e.contains("http://m/dists/s/InRelease expired: Valid-Until is Fri, 27 Nov 2026"),
            "{e}"
        );
    }
}
