//! `Packages` indices: one stanza per binary package.
//!
//! Only the fields the build needs are kept; a full bookworm `main` index
//! has ~64,000 stanzas (50 MB), so parsing walks the text once without
//! building intermediate maps.

use std::io::Read;
use std::path::Path;

use super::DebianError;

/// One binary package as the signed index describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Path below the source URI (`pool/main/b/busybox/...deb`).
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    pub installed_size_kib: Option<u64>,
    /// The archive's base URI this stanza came from.
    pub source_uri: String,
    pub suite: String,
    pub component: String,
    /// Raw `Depends` field (empty if none).
    pub depends: String,
    /// Raw `Pre-Depends` field (empty if none).
    pub pre_depends: String,
    /// Raw `Provides` field (empty if none).
    pub provides: String,
    pub essential: bool,
    #[serde(skip)]
    pub priority: String,
}

impl Package {
    /// The full download URL.
    pub fn url(&self) -> String {
        format!(
            "{}/{}",
            self.source_uri.trim_end_matches('/'),
            self.filename.trim_start_matches('/')
        )
    }
}

/// Where a `Packages` file came from, stamped on each parsed package.
pub struct Origin<'a> {
    pub url: &'a str,
    pub source_uri: &'a str,
    pub suite: &'a str,
    pub component: &'a str,
}

/// Decompresses an index according to its name (`.xz`, `.gz`, or plain).
pub fn decompress(path: &Path, name: &str) -> Result<String, DebianError> {
    let file = std::fs::File::open(path).map_err(|e| DebianError::io(path, e))?;
    let file = std::io::BufReader::new(file);
    let mut reader: Box<dyn Read> = if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(file))
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|e| DebianError::Index {
            url: name.to_string(),
            msg: format!("cannot decompress: {e}"),
        })?;
    Ok(text)
}

/// Parses `Packages` text, keeping packages for `arch` and `all`.
pub fn parse(text: &str, origin: &Origin<'_>, arch: &str) -> Result<Vec<Package>, DebianError> {
    let mut out = Vec::new();
    let mut cur = Blank::default();
    let mut last_field: Option<&str> = None;
    let mut start_line = 1;
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            if let Some(p) = cur.finish(origin, start_line, arch)? {
                out.push(p);
            }
            cur = Blank::default();
            last_field = None;
            start_line = n + 2;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Continuation: only relation fields matter (some archives wrap them).
            if let Some(f) = last_field
                && let Some(slot) = cur.relation(f)
            {
                slot.push(' ');
                slot.push_str(line.trim());
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(DebianError::Index {
                url: origin.url.into(),
                msg: format!("line {}: expected `Field: value`, found {line:?}", n + 1),
            });
        };
        let v = v.trim();
        last_field = Some(k);
        match k {
            "Package" => cur.name = v.into(),
            "Version" => cur.version = v.into(),
            "Architecture" => cur.architecture = v.into(),
            "Filename" => cur.filename = v.into(),
            "SHA256" => cur.sha256 = v.to_ascii_lowercase(),
            "Size" => cur.size = v.parse().ok(),
            "Installed-Size" => cur.installed = v.parse().ok(),
            "Depends" => cur.depends = v.into(),
            "Pre-Depends" => cur.pre_depends = v.into(),
            "Provides" => cur.provides = v.into(),
            "Essential" => cur.essential = v == "yes",
            "Priority" => cur.priority = v.into(),
            _ => {}
        }
    }
    if let Some(p) = cur.finish(origin, start_line, arch)? {
        out.push(p);
    }
    Ok(out)
}

#[derive(Default)]
struct Blank {
    name: String,
    version: String,
    architecture: String,
    filename: String,
    sha256: String,
    size: Option<u64>,
    installed: Option<u64>,
    depends: String,
    pre_depends: String,
    provides: String,
    essential: bool,
    priority: String,
}

impl Blank {
    fn relation(&mut self, field: &str) -> Option<&mut String> {
        match field {
            "Depends" => Some(&mut self.depends),
            "Pre-Depends" => Some(&mut self.pre_depends),
            "Provides" => Some(&mut self.provides),
            _ => None,
        }
    }

    fn finish(
        &mut self,
        o: &Origin<'_>,
        line: usize,
        arch: &str,
    ) -> Result<Option<Package>, DebianError> {
        if self.name.is_empty() {
            return Ok(None);
        }
        if self.architecture != arch && self.architecture != "all" {
            return Ok(None);
        }
        let missing = [
            ("Version", self.version.is_empty()),
            ("Filename", self.filename.is_empty()),
            ("SHA256", self.sha256.len() != 64),
            ("Size", self.size.is_none()),
        ];
        if let Some((field, _)) = missing.iter().find(|m| m.1) {
            return Err(DebianError::Index {
                url: o.url.into(),
                msg: format!(
                    "stanza of {} at line {line} lacks a valid {field} field",
                    self.name
                ),
            });
        }
        let b = std::mem::take(self);
        Ok(Some(Package {
            name: b.name,
            version: b.version,
            architecture: b.architecture,
            filename: b.filename,
            sha256: b.sha256,
            size: b.size.unwrap_or(0),
            installed_size_kib: b.installed,
            source_uri: o.source_uri.into(),
            suite: o.suite.into(),
            component: o.component.into(),
            depends: b.depends,
            pre_depends: b.pre_depends,
            provides: b.provides,
            essential: b.essential,
            priority: b.priority,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stanzas_and_filters_arch() {
        let h = "a".repeat(64);
        let text = format!(
            "Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b (>= 2),\n c\nDescription: x\n more\n\
             Filename: pool/a.deb\nSize: 10\nSHA256: {h}\n\nPackage: b\nVersion: 2\nArchitecture: arm64\n\
             Filename: pool/b.deb\nSize: 1\nSHA256: {h}\n\nPackage: c\nVersion: 3\nArchitecture: all\n\
             Filename: pool/c.deb\nSize: 1\nSHA256: {h}\nEssential: yes\n"
        );
        let o = Origin {
            url: "u",
            source_uri: "file:///m",
            suite: "s",
            component: "main",
        };
        let p = parse(&text, &o, "amd64").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].depends, "b (>= 2), c");
        assert_eq!(p[0].url(), "file:///m/pool/a.deb");
        assert!(p[1].essential);
    }

    #[test]
    fn missing_hash_is_an_error() {
        let o = Origin {
            url: "http://m/Packages.xz",
            source_uri: "",
            suite: "",
            component: "",
        };
        let e = parse(
            "Package: a\nVersion: 1\nArchitecture: all\nFilename: f\nSize: 1\n",
            &o,
            "amd64",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("http://m/Packages.xz: stanza of a at line 1 lacks a valid SHA256"),
            "{e}"
        );
    }
}
