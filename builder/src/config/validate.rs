//! The value checks profiles and elements share.
//!
//! Each check takes a value as written and returns `Err(message)` saying what
//! is wrong with it; the caller adds the field path, the file position and any
//! advice (see [`crate::config::diag::ConfigError`]). Keeping them here means
//! a package name, a glob or a module name is held to the same rule wherever
//! it is written, and the message reads the same.

use crate::config::diag::{Scalar, check_image_path, did_you_mean};

/// A value that must be one non-empty line (descriptions, the kernel command line).
pub fn check_one_line(field: &str, v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("is empty".to_string());
    }
    if v.trim().contains('\n') {
        return Err(format!("`{field}` must be a single line"));
    }
    Ok(())
}

/// Element and architecture names: what may appear as a directory name and in messages.
pub fn check_name(v: &str, what: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !v.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a valid {what} name (letters, digits, `-`, `_`, `.`)"
        ))
    }
}

/// Debian package names (policy §5.6.7), optionally with `:arch`.
pub fn check_package(v: &str) -> Result<(), String> {
    let name = v.split_once(':').map_or(v, |(n, _)| n);
    let ok = name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`)"
        ))
    }
}

/// A package name as an element writes it: one word (the archive decides
/// later whether it exists; elements may name virtual packages).
pub fn check_word(v: &str, what: &str) -> Result<(), String> {
    if v.is_empty() || v.contains(char::is_whitespace) {
        Err(format!("`{v}` is not a {what}"))
    } else {
        Ok(())
    }
}

/// Kernel module names as modinfo prints them.
pub fn check_module(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else if v.ends_with(".ko") {
        Err(format!("`{v}`: write the module name without `.ko`"))
    } else {
        Err(format!("`{v}` is not a kernel module name"))
    }
}

/// A module entry: a module name ([`check_module`]) or, when it holds a
/// `/`, a kernel-tree path pattern ([`check_module_pattern`]).
pub fn check_module_entry(v: &str) -> Result<(), String> {
    if v.contains('/') {
        check_module_pattern(v)
    } else {
        check_module(v)
    }
}

/// A kernel-tree path pattern such as `kernel/drivers/scsi/megaraid/**`:
/// relative to `/lib/modules/<version>/`, so it starts with `kernel/` (or
/// `updates/`, `extra/`); `*` stays within one directory, `**` crosses them.
/// It says which modules a driver family is, not which files exist today,
/// so the builder refuses one that matches nothing only at build time.
pub fn check_module_pattern(v: &str) -> Result<(), String> {
    if v.starts_with('/') {
        return Err(format!(
            "`{v}`: a module path pattern is relative to /lib/modules/<version>/; \
             write it as `kernel/...`"
        ));
    }
    if v.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
        return Err(format!(
            "`{v}` is not a module path pattern: no empty, `.` or `..` components"
        ));
    }
    if v.contains(char::is_whitespace) {
        return Err(format!(
            "`{v}` is not a module path pattern: it holds a space"
        ));
    }
    let top = v.split('/').next().unwrap_or_default();
    if !matches!(top, "kernel" | "updates" | "extra") {
        return Err(format!(
            "`{v}` is not a module path pattern: it must start with `kernel/` \
             (or `updates/`, `extra/`), as paths in modules.dep do"
        ));
    }
    globset::GlobBuilder::new(v)
        .literal_separator(true)
        .build()
        .map(|_| ())
        .map_err(|e| format!("`{v}` is not a valid pattern: {}", e.kind()))
}

/// Absolute image path globs that globset can compile.
pub fn check_glob(v: &str) -> Result<(), String> {
    check_image_path(v)?;
    globset::Glob::new(v)
        .map(|_| ())
        .map_err(|e| format!("`{v}` is not a valid glob: {}", e.kind()))
}

/// A base name for artifacts: one usable file name, never hidden.
pub fn check_file_name(v: &str) -> Result<(), String> {
    if v.is_empty() || v.contains('/') || v.starts_with('.') || v.chars().any(char::is_whitespace) {
        Err(format!("`{v}` is not a usable file name"))
    } else {
        Ok(())
    }
}

/// An ISO 9660 volume label: 1 to 32 of `A-Z`, `0-9`, `_`.
pub fn check_iso_label(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.chars().count() <= 32
        && v.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not a valid ISO volume label"))
    }
}

/// The nearest valid ISO label to `v`, for the help line.
pub fn suggest_label(v: &str) -> String {
    let s: String = v
        .chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if s.is_empty() { "IPA".to_string() } else { s }
}

/// A name that must be one of `known` (audit rule names). The error carries
/// the message and the help line: the nearest name, or the whole list.
pub fn check_known(v: &str, what: &str, known: &[&str]) -> Result<(), (String, String)> {
    if known.contains(&v) {
        return Ok(());
    }
    let help = match did_you_mean(v, known.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("known {what}s: {}", known.join(", ")),
    };
    Err((format!("unknown {what} `{v}`"), help))
}

/// A number as YAML gave it: an integer, or a string holding one.
pub fn scalar_number(v: &Scalar) -> Option<i128> {
    match v {
        Scalar::Int(n) => Some(*n),
        Scalar::Str(s) => s.trim().parse::<i128>().ok(),
        Scalar::Other(_) => None,
    }
}

/// A scalar as the user wrote it, near enough for a message.
pub fn scalar_text(v: &Scalar) -> String {
    match v {
        Scalar::Int(n) => n.to_string(),
        Scalar::Str(s) | Scalar::Other(s) => s.clone(),
    }
}

/// Parses a size: a byte count, or a number (fractions allowed) with a unit:
/// `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000), `KiB`/`MiB`/`GiB`/`TiB`
/// (powers of 1024); units are case-insensitive, a space before them optional.
/// Fractional bytes are rounded down.
pub fn parse_size(v: &Scalar) -> Result<u64, String> {
    let text = match v {
        Scalar::Int(n) => {
            return u64::try_from(*n).map_err(|_| format!("{n} is not a byte count"));
        }
        Scalar::Str(s) => s.trim(),
        Scalar::Other(s) => return Err(format!("`{s}` is not a size")),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let mult = unit_multiplier(text, unit.trim())?;
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 9 {
        return Err(format!("`{text}` is not a size"));
    }
    let digits = |d: &str| -> Result<u128, String> {
        if d.is_empty() {
            Ok(0)
        } else {
            d.parse().map_err(|_| format!("`{text}` is not a size"))
        }
    };
    let (int, frac_val) = (digits(int)?, digits(frac)?);
    let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(0));
    let bytes = int
        .checked_mul(mult)
        .and_then(|b| b.checked_add(frac_val * mult / scale))
        .ok_or_else(|| format!("`{text}` is too large"))?;
    u64::try_from(bytes).map_err(|_| format!("`{text}` is too large"))
}

/// The number of bytes in one `unit` of a size (`text` is the whole size, for the message).
fn unit_multiplier(text: &str, unit: &str) -> Result<u128, String> {
    Ok(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000u128.pow(2),
        "gb" | "g" => 1000u128.pow(3),
        "tb" | "t" => 1000u128.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            let units = ["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"];
            let hint = did_you_mean(unit, units)
                .map(|u| format!(" (did you mean `{u}`?)"))
                .unwrap_or_default();
            return Err(format!("`{text}` has an unknown unit `{unit}`{hint}"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_entries_are_names_or_tree_patterns() {
        assert_eq!(check_module_entry("e1000e"), Ok(()));
        assert_eq!(
            check_module_entry("kernel/drivers/scsi/megaraid/**"),
            Ok(())
        );
        assert_eq!(
            check_module_entry("kernel/drivers/net/ethernet/*/e1000*.ko"),
            Ok(())
        );
        let err = |v: &str| check_module_entry(v).unwrap_err();
        assert!(err("/lib/modules/kernel/x").contains("relative to /lib/modules"));
        assert!(err("kernel/../x").contains("`..`"));
        assert!(err("kernel//x").contains("empty"));
        assert!(err("drivers/scsi/**").contains("must start with `kernel/`"));
        assert!(err("kernel/drivers/[scsi").contains("not a valid pattern"));
        assert!(err("e1000e.ko").contains("without `.ko`"));
    }
}
