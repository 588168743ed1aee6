//! Diagnostics for configuration files: where in which file, and what to do.
//!
//! Profiles and elements are written by hand, so a mistake in them is the most
//! common failure a user meets. Every [`ConfigError`] therefore carries the
//! file, line and column, the offending line itself, the field path
//! (`output.compression`) in its message, and where possible the nearest valid
//! name. It renders like a compiler error:
//!
//! ```text
//! error: unknown key `compresion` in `output`
//!   --> profiles/x.yaml:12:5
//!    |
//! 12 |   compresion: zstd
//!    |   ^^^^^^^^^^
//!    = help: did you mean `compression`?
//! ```
//!
//! Locations come from two places: `serde-saphyr`'s own errors (syntax, unknown
//! keys, duplicate keys, bad enum values) and its [`serde_saphyr::Spanned`]
//! wrapper, which keeps the line and column of values that are checked after
//! deserializing (sizes, modes, paths, element names). The parent key of a
//! location is recovered from the YAML text by indentation ([`key_path_at`]),
//! because saphyr reports positions but not the path that leads to them.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, for callers that branch on it (and for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid YAML, or a value of the wrong shape (a list where a string belongs).
    Syntax,
    /// A key the schema does not know (`deny_unknown_fields`).
    UnknownKey,
    /// The same key twice in one mapping.
    DuplicateKey,
    /// A required field is absent (after `extends` merging, for profiles).
    MissingField,
    /// A value of the right shape that is not acceptable (bad enum value, size, mode, range, path).
    InvalidValue,
    /// A named profile, element, `extends` target or `files/` entry does not exist.
    NotFound,
    /// `extends` or element `depends` loop back on themselves.
    Cycle,
    /// Two settings that cannot hold together (an element that needs another init style).
    Conflict,
}

/// A place in a configuration file, with the text needed to show it.
///
/// The line text is copied so that an error can be rendered after the file's
/// contents are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The file as the user named it (or as found in a search directory).
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// How many characters to underline (at least 1 when rendered).
    pub len: usize,
    /// The full text of `line`, without its newline.
    pub text: String,
}

impl Snippet {
    /// Builds a snippet for `line`:`column` (1-based, characters) in `source`.
    ///
    /// Out-of-range positions are clamped rather than refused: a diagnostic
    /// pointing one line too far is still better than no diagnostic.
    pub fn new(path: &Path, source: &str, line: usize, column: usize, len: usize) -> Snippet {
        let text = source
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .to_string();
        Snippet {
            path: path.to_path_buf(),
            line: line.max(1),
            column: column.max(1),
            len,
            text,
        }
    }

    /// Builds a snippet from a saphyr location (whose span length is in characters).
    pub fn from_location(path: &Path, source: &str, loc: &serde_saphyr::Location) -> Snippet {
        let len = usize::try_from(loc.span().len()).unwrap_or(1);
        Snippet::new(
            path,
            source,
            usize::try_from(loc.line()).unwrap_or(1),
            usize::try_from(loc.column()).unwrap_or(1),
            len,
        )
    }
}

/// A configuration error: message, location, and advice.
///
/// Boxed inside so that `Result<T, ConfigError>` stays one pointer wide.
#[derive(Debug)]
pub struct ConfigError(Box<Diagnostic>);

/// The contents of a [`ConfigError`].
#[derive(Debug)]
pub struct Diagnostic {
    /// What went wrong, for matching.
    pub kind: ErrorKind,
    /// One line saying what went wrong; names the field path where there is one.
    pub message: String,
    /// The field path (`output.compression`, `directories[1].mode`), when known.
    pub field: Option<String>,
    /// Where it went wrong, when a file position is known.
    pub snippet: Option<Snippet>,
    /// Extra context lines (`= note: ...`), such as the dependency chain.
    pub notes: Vec<String>,
    /// What to do about it (`= help: ...`), such as the nearest valid name.
    pub help: Option<String>,
    /// The underlying I/O error, if any.
    pub source: Option<std::io::Error>,
}

impl ConfigError {
    /// A new error of `kind` saying `message`, without a location yet.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ConfigError {
        ConfigError(Box::new(Diagnostic {
            kind,
            message: message.into(),
            field: None,
            snippet: None,
            notes: Vec::new(),
            help: None,
            source: None,
        }))
    }

    /// An error reading `path`.
    pub fn io(path: &Path, what: &str, err: std::io::Error) -> ConfigError {
        let mut e = ConfigError::new(
            ErrorKind::Io,
            format!("cannot read {what} {}: {err}", path.display()),
        );
        e.0.source = Some(err);
        e
    }

    /// Points the error at `snippet`.
    #[must_use]
    pub fn at(mut self, snippet: Snippet) -> ConfigError {
        self.0.snippet = Some(snippet);
        self
    }

    /// Points the error at `snippet` if there is one.
    #[must_use]
    pub fn at_opt(mut self, snippet: Option<Snippet>) -> ConfigError {
        if snippet.is_some() {
            self.0.snippet = snippet;
        }
        self
    }

    /// Records the field path the error is about.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> ConfigError {
        self.0.field = Some(field.into());
        self
    }

    /// Adds a `= note:` line.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> ConfigError {
        self.0.notes.push(note.into());
        self
    }

    /// Sets the `= help:` line.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> ConfigError {
        self.0.help = Some(help.into());
        self
    }

    /// Sets the help line to "did you mean `X`?" when a candidate is close to `got`.
    #[must_use]
    pub fn suggest<'a>(
        self,
        got: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> ConfigError {
        match did_you_mean(got, candidates) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The full diagnostic.
    pub fn diagnostic(&self) -> &Diagnostic {
        &self.0
    }
}

impl fmt::Display for ConfigError {
    /// Renders in the compiler-like form shown in the module docs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(f, "error: {}", d.message)?;
        let width = d.snippet.as_ref().map_or(1, |s| s.line.to_string().len());
        let pad = " ".repeat(width);
        if let Some(s) = &d.snippet {
            write!(f, "\n{pad}--> {}:{}:{}", s.path.display(), s.line, s.column)?;
            write!(f, "\n{pad} |")?;
            write!(f, "\n{} | {}", s.line, s.text)?;
            let lead: String = s
                .text
                .chars()
                .take(s.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{pad} | {lead}{}", "^".repeat(s.len.max(1)))?;
        }
        for note in &d.notes {
            write!(f, "\n{pad} = note: {note}")?;
        }
        if let Some(help) = &d.help {
            write!(f, "\n{pad} = help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The candidate nearest to `got`, if it is near enough to be a likely typo.
///
/// "Near enough" is a Levenshtein distance of at most a third of the longer
/// word (at least 1), which catches transpositions (`zsdt`/`zstd`), one missing
/// or doubled letter (`compresion`) and similar slips, without suggesting
/// `iso` for `xz`. Ties go to the earlier candidate, so the order the schema
/// lists names in decides.
pub fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for cand in candidates {
        if cand == got {
            continue;
        }
        let dist = levenshtein(&got.to_lowercase(), &cand.to_lowercase());
        let limit = (got.chars().count().max(cand.chars().count()) / 3).max(1);
        if dist <= limit && best.is_none_or(|(d, _)| dist < d) {
            best = Some((dist, cand));
        }
    }
    best.map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbouring characters as one edit
/// (optimal string alignment), since swapped letters are the commonest typo.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The chain of keys leading to position `line`:`column` (1-based) in block-style YAML.
///
/// saphyr reports where an unknown or duplicate key is, but not under which
/// parent; this recovers `["output"]` for a key at `output.compresion`, or
/// `["directories[1]"]` for a key inside the second item of `directories`, by
/// walking upwards to lines that are less indented. A flow mapping that fits
/// on one line (`- {path: /x, mode: 0755}`) is understood too; nested flow
/// collections spread over several lines are not (the path is then shorter,
/// never wrong about the line). The result names the *parents* of the key at
/// that position plus, if the position is a value rather than a key, the key
/// it belongs to.
pub fn key_path_at(source: &str, line: usize, column: usize) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let Some(&here) = lines.get(line.saturating_sub(1)) else {
        return Vec::new();
    };
    let mut path: Vec<String> = Vec::new();
    // The key that owns this position, if the position is a value on a `key: value` line.
    let here_indent = indent_of(here);
    let (here_content_indent, here_key, here_is_item) = parse_line(here);
    let col0 = column.saturating_sub(1);
    if let Some(k) = flow_key_before(here, col0) {
        // Inside a flow mapping (`- {path: /x, mode: 0755}`): the key written before us.
        path.push(k);
    } else if let Some(k) = &here_key {
        let key_end = here_content_indent + k.chars().count();
        if col0 > key_end {
            path.push(k.clone());
        }
    }
    // The column of the construct we are inside; walk up to strictly shallower lines.
    let mut limit = if here_is_item {
        here_indent
    } else {
        here_content_indent
    };
    let mut item_index: Option<usize> = None;
    if here_is_item {
        item_index = Some(count_items_before(&lines, line - 1, here_indent));
    }
    let mut i = line.saturating_sub(1);
    while i > 0 && limit > 0 {
        i -= 1;
        let l = lines[i];
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let ind = indent_of(l);
        let (content_indent, key, is_item) = parse_line(l);
        if is_item && ind < limit && content_indent <= limit {
            // An item of a list that contains us (our key is in the item's mapping).
            if item_index.is_none() {
                item_index = Some(count_items_before(&lines, i, ind));
            }
            limit = ind;
            // `- key: value` line where key is not ours: the item itself is the parent.
            continue;
        }
        if ind < limit {
            if let Some(k) = key {
                match item_index.take() {
                    Some(n) => path.push(format!("{k}[{n}]")),
                    None => path.push(k),
                }
            }
            limit = ind;
        }
    }
    path.reverse();
    path
}

/// In a flow mapping on `line`, the key whose value is at character `col0`, if any.
fn flow_key_before(line: &str, col0: usize) -> Option<String> {
    let before: String = line.chars().take(col0).collect();
    let open = before.rfind('{')?;
    let start = before.rfind(',').filter(|c| *c > open).unwrap_or(open) + 1;
    let (key, _) = before[start..].split_once(':')?;
    let key = key.trim();
    (!key.is_empty() && !key.contains(' ')).then(|| key.to_string())
}

/// Leading spaces of a line.
fn indent_of(l: &str) -> usize {
    l.chars().take_while(|c| *c == ' ').count()
}

/// (column where the content starts after any `- `, the key on the line, whether it is a list item).
fn parse_line(l: &str) -> (usize, Option<String>, bool) {
    let ind = indent_of(l);
    let rest = &l[ind..];
    let (content_indent, body, is_item) = match rest.strip_prefix("- ") {
        Some(b) => {
            let extra = b.chars().take_while(|c| *c == ' ').count();
            (ind + 2 + extra, b.trim_start(), true)
        }
        None if rest == "-" => (ind + 2, "", true),
        None => (ind, rest, false),
    };
    let key = body.find(':').and_then(|p| {
        let k = body[..p].trim();
        let after = &body[p + 1..];
        let is_key = (after.is_empty() || after.starts_with(' '))
            && !k.is_empty()
            && !k.starts_with('{')
            && !k.starts_with('[')
            && !k.contains(' ');
        is_key.then(|| k.trim_matches(|c| c == '"' || c == '\'').to_string())
    });
    (content_indent, key, is_item)
}

/// How many list items at indentation `ind` precede line index `at` in the same list.
fn count_items_before(lines: &[&str], at: usize, ind: usize) -> usize {
    let mut n = 0;
    let mut i = at;
    while i > 0 {
        i -= 1;
        let l = lines[i];
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let li = indent_of(l);
        if li < ind {
            break;
        }
        if li == ind {
            if l[li..].starts_with('-') {
                n += 1;
            } else {
                break;
            }
        }
    }
    n
}

/// A configuration file's name and text, kept while loading so that errors
/// found after deserializing can still quote the offending line.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as found (relative paths stay relative, so messages stay short).
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

impl Source {
    /// Reads `path`; `what` names the kind of file for the error ("profile", "element").
    pub fn read(path: &Path, what: &str) -> Result<Source, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, what, e))?;
        Ok(Source {
            path: path.to_path_buf(),
            text,
        })
    }

    /// The snippet for a saphyr location in this file.
    pub fn snippet(&self, loc: &serde_saphyr::Location) -> Snippet {
        Snippet::from_location(&self.path, &self.text, loc)
    }

    /// The snippet for where a [`serde_saphyr::Spanned`] value was written.
    pub fn at<T>(&self, v: &serde_saphyr::Spanned<T>) -> Snippet {
        self.snippet(&v.referenced)
    }

    /// The text of the value at `loc` exactly as written (quotes included),
    /// e.g. to show `0700` rather than the number YAML made of it.
    pub fn raw(&self, loc: &serde_saphyr::Location) -> Option<&str> {
        let start = usize::try_from(loc.span().byte_offset()?).ok()?;
        let len = usize::try_from(loc.span().byte_len()?).ok()?;
        self.text.get(start..start + len)
    }

    /// The field path (`output.compression`) of the key or value at `loc`.
    pub fn field_at(&self, loc: &serde_saphyr::Location) -> String {
        key_path_at(
            &self.text,
            usize::try_from(loc.line()).unwrap_or(1),
            usize::try_from(loc.column()).unwrap_or(1),
        )
        .join(".")
    }

    /// Deserializes the whole file, turning saphyr's errors into [`ConfigError`]s
    /// that name the field path and suggest the nearest valid key or value.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_saphyr::from_str(&self.text).map_err(|e| self.convert(&e))
    }

    fn convert(&self, err: &serde_saphyr::Error) -> ConfigError {
        use serde_saphyr::Error as E;
        let inner = err.without_snippet();
        let loc = inner.location();
        let parents = loc
            .map(|l| {
                key_path_at(
                    &self.text,
                    usize::try_from(l.line()).unwrap_or(1),
                    usize::try_from(l.column()).unwrap_or(1),
                )
            })
            .unwrap_or_default();
        let e = describe(inner, &parents);
        let Some(l) = loc else { return e };
        // Underline the offending key itself where there is one.
        let mut s = self.snippet(&l);
        match inner {
            E::SerdeUnknownField { field, .. } => s.len = field.chars().count(),
            E::DuplicateMappingKey { key: Some(k), .. } => s.len = k.chars().count(),
            E::SerdeMissingField { .. } => s.len = 1,
            _ => {}
        }
        e.at(s)
    }
}

/// " in `a.b`" for a key found under `parents`, or nothing at the top level.
fn within(parents: &[String]) -> String {
    if parents.is_empty() {
        String::new()
    } else {
        format!(" in `{}`", parents.join("."))
    }
}

/// `parents` plus `key`, as a field path.
fn field_path(parents: &[String], key: &str) -> String {
    let mut full = parents.to_vec();
    full.push(key.to_string());
    full.join(".")
}

/// The message, field and advice for one of saphyr's errors found under
/// `parents`; [`Source::convert`] adds the position.
fn describe(inner: &serde_saphyr::Error, parents: &[String]) -> ConfigError {
    use serde_saphyr::Error as E;
    let field = parents.join(".");
    match inner {
        E::SerdeUnknownField {
            field: key,
            expected,
            ..
        } => ConfigError::new(
            ErrorKind::UnknownKey,
            format!("unknown key `{key}`{}", within(parents)),
        )
        .help(match did_you_mean(key, expected.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("expected one of {}", expected.join(", ")),
        })
        .field(field_path(parents, key)),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let mut help = String::new();
            if let Some(best) = did_you_mean(variant, expected.iter().copied()) {
                help = format!("did you mean `{best}`? ");
            }
            help.push_str(&format!("expected one of {}", expected.join(", ")));
            ConfigError::new(
                ErrorKind::InvalidValue,
                format!("unknown value `{variant}` for `{field}`"),
            )
            .help(help)
            .field(field)
        }
        E::DuplicateMappingKey { key, .. } => {
            let key = key.clone().unwrap_or_else(|| "?".to_string());
            ConfigError::new(
                ErrorKind::DuplicateKey,
                format!("duplicate key `{key}`{}", within(parents)),
            )
            .help("remove one of them: YAML tools disagree on which one wins")
            .field(field_path(parents, &key))
        }
        E::SerdeMissingField { field: key, .. } => ConfigError::new(
            ErrorKind::MissingField,
            format!("missing key `{key}`{}", within(parents)),
        )
        .help(format!("add a `{key}:` key to this mapping"))
        .field(field_path(parents, key)),
        E::Unexpected { expected, .. }
            if expected.contains("sequence") || expected.contains("mapping") =>
        {
            wrong_shape(expected.contains("sequence"), field)
        }
        E::ExternallyTaggedEnumExpectedScalarOrMapping { .. } => ConfigError::new(
            ErrorKind::Syntax,
            format!("`{field}`: expected a single name, not a list or mapping"),
        )
        .field(field),
        other => {
            let msg = serde_saphyr::MessageFormatter::format_message(
                &serde_saphyr::UserMessageFormatter,
                other,
            );
            let text = if field.is_empty() {
                msg.to_string()
            } else {
                format!("`{field}`: {msg}")
            };
            ConfigError::new(ErrorKind::Syntax, text).field(field)
        }
    }
}

/// A scalar where a list (`sequence`) or a mapping was expected.
fn wrong_shape(sequence: bool, field: String) -> ConfigError {
    let (what, example) = if sequence {
        ("a list", "`[a, b]`, or one `- a` line per item")
    } else {
        (
            "a mapping",
            "`key: value` lines, indented under their parent",
        )
    };
    let text = if field.is_empty() {
        format!("expected {what} here")
    } else {
        format!("`{field}`: expected {what}")
    };
    ConfigError::new(ErrorKind::Syntax, text)
        .help(format!("write {example}"))
        .field(field)
}

/// A scalar read without deciding its type, so that a check after
/// deserializing can say *why* it is wrong (an unquoted mode, a size without a
/// unit) and point at it, instead of a generic "invalid type".
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A string (quoted or plain text that is not a number).
    Str(String),
    /// An integer written without quotes.
    Int(i128),
    /// Anything else (a float, a boolean, null), as text.
    Other(String),
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other("null".to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks that `path` is an absolute image path without `..`, `.` or empty
/// components (globs allowed), so nothing can land outside the image root.
pub fn check_image_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "`{path}` is not an absolute image path: write it from the image root, e.g. `/{}`",
            path.trim_start_matches("./")
        ));
    }
    if path.split('/').skip(1).any(|c| c == "..") {
        return Err(format!(
            "`{path}` contains `..`: image paths must not climb out of the root"
        ));
    }
    if path.contains('\0') {
        return Err("image paths cannot contain NUL".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["compression", "level", "formats"];
        assert_eq!(did_you_mean("compresion", keys), Some("compression"));
        assert_eq!(did_you_mean("zsdt", ["zstd", "gzip", "xz"]), Some("zstd"));
        assert_eq!(did_you_mean("agnet", ["kernel", "agent"]), Some("agent"));
        assert_eq!(did_you_mean("banana", keys), None);
    }

    #[test]
    fn key_paths() {
        let y = "description: x\noutput:\n  name: a\n  compresion: zstd\ndirectories:\n  - path: /a\n    mode: 0755\n  - {path: /b, mode: 1}\n";
        assert_eq!(key_path_at(y, 4, 3), vec!["output"]);
        assert_eq!(key_path_at(y, 4, 15), vec!["output", "compresion"]);
        assert_eq!(key_path_at(y, 1, 1), Vec::<String>::new());
        assert_eq!(key_path_at(y, 7, 5), vec!["directories[0]"]);
        assert_eq!(key_path_at(y, 7, 11), vec!["directories[0]", "mode"]);
        assert_eq!(key_path_at(y, 8, 22), vec!["directories[1]", "mode"]);
        assert_eq!(key_path_at(y, 8, 5), vec!["directories[1]"]);
    }

    #[test]
    fn renders_like_a_compiler() {
        let src = "output:\n  compresion: zstd\n";
        let e = ConfigError::new(
            ErrorKind::UnknownKey,
            "unknown key `compresion` in `output`",
        )
        .at(Snippet::new(Path::new("p.yaml"), src, 2, 3, 10))
        .suggest("compresion", ["compression"]);
        assert_eq!(
            e.to_string(),
            "error: unknown key `compresion` in `output`\n --> p.yaml:2:3\n  |\n2 |   compresion: zstd\n  |   ^^^^^^^^^^\n  = help: did you mean `compression`?"
        );
    }
}
