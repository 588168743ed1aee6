//! The host's APT sources: where packages come from by default.
//!
//! We never hard-code a mirror. Whatever the host's `apt` uses (a local
//! mirror, a proxy, a snapshot) is what the build uses, so a build on a
//! machine that can `apt-get install` can also fetch. Only `Types: deb`
//! entries matter; `deb-src` and disabled files are ignored.
//!
//! Two syntaxes exist: deb822 `*.sources` stanzas and the one-line
//! `deb [options] URI SUITE COMPONENT...` form in `*.list` files.

use std::path::{Path, PathBuf};

use super::DebianError;

/// The keyring used when a source names none (Debian's own default).
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// One archive: a base URI, its suites and components, and the keyring
/// that must have signed its `InRelease` files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// Base URI, e.g. `http://mirror/debian` or `file:///srv/mirror`, without trailing `/`.
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub keyring: PathBuf,
}

/// Reads every `*.sources` and `*.list` file under `etc_apt/sources.list.d`
/// plus `etc_apt/sources.list`, in the order apt reads them (the main file
/// first, then the directory sorted by name).
pub fn host_sources(etc_apt: &Path) -> Result<Vec<Source>, DebianError> {
    let mut out = Vec::new();
    let main = etc_apt.join("sources.list");
    if main.is_file() {
        out.extend(parse_list(&main, &read(&main)?)?);
    }
    let dir = etc_apt.join("sources.list.d");
    if dir.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| DebianError::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            match f.extension().and_then(|e| e.to_str()) {
                Some("sources") => out.extend(parse_deb822(&f, &read(&f)?)?),
                Some("list") => out.extend(parse_list(&f, &read(&f)?)?),
                _ => {}
            }
        }
    }
    if out.is_empty() {
        return Err(DebianError::Sources {
            path: etc_apt.to_path_buf(),
            line: 0,
            msg: "no `deb` sources found in sources.list or sources.list.d/*.{sources,list}; \
                  pass --mirror URL to name an archive"
                .into(),
        });
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, DebianError> {
    std::fs::read_to_string(path).map_err(|e| DebianError::io(path, e))
}

fn bad(path: &Path, line: usize, msg: impl Into<String>) -> DebianError {
    DebianError::Sources {
        path: path.to_path_buf(),
        line,
        msg: msg.into(),
    }
}

/// Parses deb822 `.sources` text (stanzas separated by blank lines).
pub fn parse_deb822(path: &Path, text: &str) -> Result<Vec<Source>, DebianError> {
    // (field name lowercased, value, line where the field started)
    let mut stanzas: Vec<Vec<(String, String, usize)>> = vec![Vec::new()];
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        if raw.starts_with('#') {
            continue;
        }
        if raw.trim().is_empty() {
            if stanzas.last().is_some_and(|s| !s.is_empty()) {
                stanzas.push(Vec::new());
            }
            continue;
        }
        let Some(cur) = stanzas.last_mut() else {
            continue;
        };
        if raw.starts_with([' ', '\t']) {
            match cur.last_mut() {
                Some(field) => {
                    field.1.push('\n');
                    field.1.push_str(raw.trim());
                }
                None => {
                    return Err(bad(
                        path,
                        line_no,
                        "continuation line without a field before it",
                    ));
                }
            }
            continue;
        }
        let Some((k, v)) = raw.split_once(':') else {
            return Err(bad(
                path,
                line_no,
                format!("expected `Field: value`, found {raw:?}"),
            ));
        };
        cur.push((k.trim().to_ascii_lowercase(), v.trim().to_string(), line_no));
    }

    let mut out = Vec::new();
    for stanza in stanzas.iter().filter(|s| !s.is_empty()) {
        let start = stanza[0].2;
        let get = |name: &str| stanza.iter().find(|f| f.0 == name);
        let words = |name: &str| -> Vec<String> {
            get(name)
                .map(|f| f.1.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if get("enabled").is_some_and(|f| f.1.eq_ignore_ascii_case("no")) {
            continue;
        }
        if !words("types").iter().any(|t| t == "deb") {
            continue;
        }
        let uris = words("uris");
        if uris.is_empty() {
            return Err(bad(path, start, "stanza has `Types: deb` but no `URIs:`"));
        }
        let suites = words("suites");
        if suites.is_empty() {
            return Err(bad(path, start, "stanza has no `Suites:`"));
        }
        if suites.iter().any(|s| s.ends_with('/')) {
            return Err(bad(
                path,
                start,
                "flat repositories (a suite ending in `/`) are not supported; use a dists/ layout",
            ));
        }
        let components = words("components");
        if components.is_empty() {
            return Err(bad(path, start, "stanza has no `Components:`"));
        }
        let keyring = match get("signed-by") {
            None => PathBuf::from(DEFAULT_KEYRING),
            Some((_, v, line)) => keyring_value(path, *line, v)?,
        };
        for uri in uris {
            out.push(Source {
                uri: uri.trim_end_matches('/').to_string(),
                suites: suites.clone(),
                components: components.clone(),
                keyring: keyring.clone(),
            });
        }
    }
    Ok(out)
}

/// `Signed-By` names a keyring file; an embedded ASCII-armored key is a
/// valid apt form, but gpgv needs a file, so we say so instead of guessing.
fn keyring_value(path: &Path, line: usize, v: &str) -> Result<PathBuf, DebianError> {
    if v.contains("BEGIN PGP") || v.contains('\n') {
        return Err(bad(
            path,
            line,
            "Signed-By holds an inline key; save it with `gpg --dearmor` to a .gpg file \
             and name that file in Signed-By",
        ));
    }
    // apt also accepts fingerprints here; we need a file for gpgv.
    let p = PathBuf::from(v.split_whitespace().next().unwrap_or(v));
    if !p.is_absolute() {
        return Err(bad(
            path,
            line,
            format!("Signed-By {v:?} is not an absolute keyring path"),
        ));
    }
    Ok(p)
}

/// Parses one-line `sources.list` text.
pub fn parse_list(path: &Path, text: &str) -> Result<Vec<Source>, DebianError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if kind != "deb" {
            continue;
        }
        let mut rest = rest.trim_start();
        let mut keyring = PathBuf::from(DEFAULT_KEYRING);
        if let Some(after) = rest.strip_prefix('[') {
            let Some((opts, tail)) = after.split_once(']') else {
                return Err(bad(path, line_no, "unclosed `[` in options"));
            };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    keyring = keyring_value(path, line_no, v)?;
                }
            }
            rest = tail.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            return Err(bad(
                path,
                line_no,
                "expected `deb [options] URI SUITE COMPONENT...`",
            ));
        };
        if suite.ends_with('/') {
            return Err(bad(
                path,
                line_no,
                "flat repositories (suite ending in `/`) are not supported",
            ));
        }
        let components: Vec<String> = words.map(str::to_string).collect();
        if components.is_empty() {
            return Err(bad(path, line_no, "no components after the suite"));
        }
        out.push(Source {
            uri: uri.trim_end_matches('/').to_string(),
            suites: vec![suite.to_string()],
            components,
            keyring,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_stanzas() {
        let text = "Types: deb deb-src\n# comment\nURIs: http://a/debian/\nSuites: bookworm bookworm-updates\n\
                    Components: main contrib\nSigned-By: /k.gpg\n\nTypes: deb-src\nURIs: http://b\nSuites: x\n\
                    Components: main\n\nTypes: deb\nEnabled: no\nURIs: http://c\nSuites: x\nComponents: main\n";
        let s = parse_deb822(Path::new("x.sources"), text).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].uri, "http://a/debian");
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert_eq!(s[0].keyring, PathBuf::from("/k.gpg"));
    }

    #[test]
    fn deb822_inline_key_is_rejected_with_advice() {
        let text = "Types: deb\nURIs: http://a\nSuites: s\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n";
        let e = parse_deb822(Path::new("/etc/apt/x.sources"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/apt/x.sources:5"), "{e}");
        assert!(e.contains("gpg --dearmor"), "{e}");
    }

    #[test]
    fn one_line_form_with_options() {
        let text = "deb-src http://x y main\ndeb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] file:///srv/m/ bookworm main non-free # c\n";
        let s = parse_list(Path::new("a.list"), text).unwrap();
        assert_eq!(
            s,
            [Source {
                uri: "file:///srv/m".into(),
                suites: vec!["bookworm".into()],
                components: vec!["main".into(), "non-free".into()],
                keyring: "/usr/share/keyrings/k.gpg".into(),
            }]
        );
        let e = parse_list(Path::new("a.list"), "deb http://x\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.list:1:"), "{e}");
    }

    #[test]
    fn directory_skips_disabled_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sources.list.d");
        std::fs::create_dir(&d).unwrap();
        for (name, text) in [
            (
                "a.sources",
                "Types: deb\nURIs: file:///m\nSuites: s\nComponents: main\n",
            ),
            ("b.list.disabled-by-farm", "deb http://nope s main\n"),
            ("c.list", "deb http://yes s main\n"),
        ] {
            std::fs::write(d.join(name), text).unwrap();
        }
        let s = host_sources(dir.path()).unwrap();
        let uris: Vec<_> = s.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["file:///m", "http://yes"]);
        assert_eq!(s[0].keyring, PathBuf::from(DEFAULT_KEYRING));
    }
}
