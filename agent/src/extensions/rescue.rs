//! `rescue.finalize_rescue`: hand the rescue password to the ramdisk (a
//! systemd `.path` unit or the `rescue-user` subcommand turns it into the
//! `rescue` user), leave the `/etc/.rescued` marker so the agent is not
//! restarted, then stop serving and exit 0.

use super::{Ctx, RunState};
use crate::commands::{Command, CommandError, Mode, Params, Registry};
use crate::fsutil::{under, write_atomic};
use serde_json::Value;
use sha_crypt::{Algorithm, CustomizedPasswordHasher, Params as CryptParams, ShaCrypt};
use std::os::unix::fs::DirBuilderExt;

/// Where the password hash goes, relative to the root.
pub const PASSWORD_FILE: &str = "/etc/ipa-rescue-config/ipa-rescue-password";
/// The marker that keeps the agent from serving after a rescue.
pub const RESCUED_MARKER: &str = "/etc/.rescued";

/// Registers `rescue.finalize_rescue`.
pub fn register(r: &mut Registry, ctx: &Ctx) {
    let ctx = ctx.clone();
    let cmd = Command::new(Mode::Sync, &["rescue_password", "hashed"], move |p| {
        finalize_rescue(&ctx, &p)
    })
    .with_validator(validate);
    r.register("rescue", "finalize_rescue", cmd);
}

fn hashed_flag(p: &Params) -> Result<bool, String> {
    match p.get("hashed") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err("hashed must be a boolean".into()),
        },
        Some(_) => Err("hashed must be a boolean".into()),
    }
}

/// Rejects what IPA would silently accept: an empty password and a
/// "hashed" value that is not a crypt string. The messages never echo the
/// password.
fn validate(p: &Params) -> Result<(), String> {
    let hashed = hashed_flag(p)?;
    let pw = match p.get("rescue_password") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err("rescue_password is required and must not be empty".into());
        }
        Some(_) => return Err("rescue_password must be a string".into()),
    };
    if hashed && !looks_like_crypt(pw) {
        return Err(
            "with hashed=true, rescue_password must be a crypt hash such as $6$salt$hash".into(),
        );
    }
    if hashed && pw.contains([':', '\n', ' ']) {
        return Err("rescue_password contains a character not allowed in a shadow entry".into());
    }
    Ok(())
}

/// `$id$...` with an alphanumeric id (`$1$`, `$2a$`, `$5$`, `$6$`, `$y$`).
pub fn looks_like_crypt(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('$') else {
        return false;
    };
    match rest.split_once('$') {
        Some((id, tail)) => {
            !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) && !tail.is_empty()
        }
        None => false,
    }
}

/// SHA-256-crypt with a random 16-character salt and the default 5000
/// rounds, written without `rounds=` like Python's `crypt`:
/// `$5$<16>$<43>`.
pub fn hash_password(password: &str) -> Result<String, CommandError> {
    let salt: [u8; 12] = crate::timing::random_bytes().map_err(|e| {
        CommandError::execution(format!("no randomness for the password salt: {e}"))
    })?;
    let hasher = ShaCrypt::new(Algorithm::Sha256Crypt, CryptParams::RECOMMENDED);
    let h = hasher
        .hash_password_customized(
            password.as_bytes(),
            &salt,
            None,
            None,
            CryptParams::RECOMMENDED,
        )
        .map_err(|e| CommandError::execution(format!("hashing the rescue password failed: {e}")))?;
    Ok(h.as_str().replacen("$rounds=5000$", "$", 1))
}

fn finalize_rescue(ctx: &Ctx, p: &Params) -> Result<Option<Value>, CommandError> {
    let hashed = hashed_flag(p).map_err(CommandError::invalid_params)?;
    let pw = p
        .get("rescue_password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    crate::redact::remember(pw);
    let crypted = if hashed {
        pw.to_string()
    } else {
        hash_password(pw)?
    };
    crate::redact::remember(&crypted);
    let path = under(&ctx.root, PASSWORD_FILE);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        write_atomic(&path, crypted.as_bytes(), 0o600)
    };
    write().map_err(|e| {
        CommandError::execution(format!(
            "Rescue Operation failed when writing the hashed rescue password to the password file {}. Error {e}",
            path.display()
        ))
    })?;
    log::info!("rescue password written to {} (mode 0600)", path.display());
    let marker = under(&ctx.root, RESCUED_MARKER);
    match std::fs::write(&marker, b"") {
        Ok(()) => log::info!("created rescue marker {}", marker.display()),
        Err(e) => log::error!("cannot create rescue marker {}: {e}", marker.display()),
    }
    ctx.control.set(RunState::Rescued);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha_crypt::{PasswordHash, PasswordVerifier};

    #[test]
    fn hash_format_and_verify() {
        let h = hash_password("password").unwrap();
        let salt_hash: Vec<&str> = h.strip_prefix("$5$").unwrap().split('$').collect();
        assert_eq!(salt_hash.len(), 2, "{h}");
        assert_eq!(salt_hash[0].len(), 16);
        assert_eq!(salt_hash[1].len(), 43);
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '/')
        };
        assert!(ok(salt_hash[0]) && ok(salt_hash[1]));
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(
            ShaCrypt::default()
                .verify_password(b"password", &parsed)
                .is_ok()
        );
        assert!(
            ShaCrypt::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
    }

    #[test]
    fn crypt_shapes() {
        for ok in ["$1$abc", "$2a$10$x", "$5$s$h", "$6$abc", "$y$j9T$x"] {
            assert!(looks_like_crypt(ok), "{ok}");
        }
        for bad in ["", "password", "$", "$$x", "$6", "$6$", "$-$x"] {
            assert!(!looks_like_crypt(bad), "{bad}");
        }
    }
}
