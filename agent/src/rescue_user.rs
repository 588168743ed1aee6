//! `ipa-agent rescue-user`: the ramdisk-side half of rescue. Reads the hash
//! that `finalize_rescue` wrote and creates (or updates) the `rescue` user
//! with it, in the files themselves (`/etc/passwd`, `/etc/shadow`,
//! `/etc/group`, `/etc/sudoers.d/rescue`), so a busybox image needs no
//! `useradd`. Idempotent: a second run with the same hash changes nothing; a
//! new hash replaces the old one.

use crate::fsutil::{under, write_atomic};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The user created.
pub const USER: &str = "rescue";

/// What can go wrong, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum RescueUserError {
    /// The password file is missing or unreadable.
    #[error("cannot read the rescue password file {path}: {source} (finalize_rescue writes it)")]
    ReadPassword {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The password file does not hold a crypt hash.
    #[error("{0} does not hold a crypt hash ($id$...); refusing to create the rescue user")]
    BadHash(PathBuf),
    /// Reading or writing an account file failed.
    #[error("cannot update {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RescueUserError + '_ {
    move |source| RescueUserError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_lines(path: &Path) -> Result<Vec<String>, RescueUserError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes `lines` if they differ from what is there (keeping the file's mode
/// when it exists).
fn write_lines(path: &Path, lines: &[String], default_mode: u32) -> Result<bool, RescueUserError> {
    let mut text = lines.join("\n");
    text.push('\n');
    if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(default_mode);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(path))?;
    }
    write_atomic(path, text.as_bytes(), mode).map_err(io(path))?;
    Ok(true)
}

fn field(line: &str, n: usize) -> Option<&str> {
    line.split(':').nth(n)
}

fn ids(lines: &[String], n: usize) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| field(l, n)?.parse().ok())
        .collect()
}

fn find<'a>(lines: &'a [String], name: &str) -> Option<(usize, &'a String)> {
    lines
        .iter()
        .enumerate()
        .find(|(_, l)| field(l, 0) == Some(name))
}

/// Whether chown is possible: tests run this as an ordinary user.
fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The shadow "last change" field for a password set at `epoch`: days
/// since 1970, or empty when the clock is not believable (before 2024).
/// Never `0`: a 0 there forces a password change at the first login, which
/// a rescue user on a node whose RTC reads 1970 cannot perform over SSH.
/// Empty disables password aging, which a rescue ramdisk never needs.
pub fn last_change_field(epoch: f64) -> String {
    const DAY_2024_01_01: f64 = 19723.0;
    let days = (epoch / 86400.0).floor();
    if days >= DAY_2024_01_01 {
        format!("{days}")
    } else {
        String::new()
    }
}

fn shadow_line(hash: &str) -> String {
    let lastchg = last_change_field(crate::timing::epoch_now());
    format!("{USER}:{hash}:{lastchg}:0:99999:7:::")
}

/// Adds the rescue user to `admin`'s member list (once).
fn add_member(group: &mut [String], admin: &str) {
    let Some((i, l)) = find(group, admin) else {
        return;
    };
    let mut parts: Vec<String> = l.split(':').map(str::to_string).collect();
    parts.resize(4, String::new());
    let mut members: Vec<String> = parts[3]
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    if !members.iter().any(|m| m == USER) {
        members.push(USER.to_string());
    }
    parts[3] = members.join(",");
    group[i] = parts.join(":");
}

/// The home directory (0700, owned by the user when we are root) and the
/// NOPASSWD sudoers drop-in.
fn write_home_and_sudoers(root: &Path, uid: u32, gid: u32) -> Result<(), RescueUserError> {
    let home = under(root, &format!("/home/{USER}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&home)
        .map_err(io(&home))?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).map_err(io(&home))?;
    if running_as_root() {
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).map_err(io(&home))?;
    }

    let sudoers_d = under(root, "/etc/sudoers.d");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&sudoers_d)
        .map_err(io(&sudoers_d))?;
    let sudoers = sudoers_d.join(USER);
    let line = format!("{USER} ALL=(ALL) NOPASSWD: ALL\n");
    if std::fs::read_to_string(&sudoers).ok().as_deref() != Some(line.as_str()) {
        write_atomic(&sudoers, line.as_bytes(), 0o440).map_err(io(&sudoers))?;
    }
    Ok(())
}

/// Creates or updates the `rescue` user under `root`.
pub fn run(root: &Path) -> Result<(), RescueUserError> {
    let pw_path = under(root, crate::extensions::rescue::PASSWORD_FILE);
    let hash = std::fs::read_to_string(&pw_path)
        .map_err(|source| RescueUserError::ReadPassword {
            path: pw_path.clone(),
            source,
        })?
        .trim()
        .to_string();
    if !crate::extensions::rescue::looks_like_crypt(&hash) || hash.contains([':', '\n', ' ']) {
        return Err(RescueUserError::BadHash(pw_path));
    }

    let passwd_p = under(root, "/etc/passwd");
    let shadow_p = under(root, "/etc/shadow");
    let group_p = under(root, "/etc/group");
    let mut passwd = read_lines(&passwd_p)?;
    let mut shadow = read_lines(&shadow_p)?;
    let mut group = read_lines(&group_p)?;

    // Admin group: sudo if the image has it, else wheel (created).
    let admin = if find(&group, "sudo").is_some() {
        "sudo"
    } else {
        "wheel"
    };
    if find(&group, admin).is_none() {
        let used = ids(&group, 2);
        let gid = (10..1000).find(|g| !used.contains(g)).unwrap_or(10);
        group.push(format!("{admin}:x:{gid}:"));
        log::info!("created group {admin} (gid {gid})");
    }

    // The user and its private group.
    let (uid, gid) = match find(&passwd, USER) {
        Some((_, l)) => (
            field(l, 2).and_then(|x| x.parse().ok()).unwrap_or(1000),
            field(l, 3).and_then(|x| x.parse().ok()).unwrap_or(1000),
        ),
        None => {
            let mut used = ids(&passwd, 2);
            used.extend(ids(&group, 2));
            let id = (1000..60000).find(|i| !used.contains(i)).unwrap_or(1000);
            (id, id)
        }
    };
    if find(&group, USER).is_none() {
        group.push(format!("{USER}:x:{gid}:"));
    }
    let shell = if under(root, "/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let pw_line = format!("{USER}:x:{uid}:{gid}:Rescue user:/home/{USER}:{shell}");
    match find(&passwd, USER) {
        Some((i, _)) => passwd[i] = pw_line,
        None => passwd.push(pw_line),
    }
    match find(&shadow, USER) {
        Some((_, l)) if field(l, 1) == Some(hash.as_str()) => {}
        Some((i, _)) => shadow[i] = shadow_line(&hash),
        None => shadow.push(shadow_line(&hash)),
    }
    add_member(&mut group, admin);

    write_lines(&group_p, &group, 0o644)?;
    write_lines(&passwd_p, &passwd, 0o644)?;
    write_lines(&shadow_p, &shadow, 0o640)?;

    write_home_and_sudoers(root, uid, gid)?;
    log::info!(
        "user {USER} (uid {uid}) is ready: member of {admin}, shell {shell}, home /home/{USER}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_change_is_never_zero() {
        assert_eq!(super::last_change_field(0.0), "");
        assert_eq!(super::last_change_field(86400.0 * 3.5), "");
        assert_eq!(super::last_change_field(1_800_000_000.0), "20833");
    }
}
