//! Stage 7, second half: the secret audit.
//!
//! A rescue ramdisk is handed to the tenant, and deploy ramdisks are often
//! served over plain HTTP: whatever secret a package, an element or a hook
//! leaves in the tree is published. [`crate::build::scrub`] deletes what we know
//! must never ship; this module *checks* that nothing else slipped through,
//! and refuses to let the build emit the image if something did.
//!
//! * [`rules`]: what a secret looks like (content rules anywhere in any file,
//!   name rules such as `shadow` or `authorized_keys`);
//! * [`scan`]: running them on every core, opening compressed files and
//!   archives inside the tree;
//! * the readers it scans through live beside the cpio writer:
//!   [`crate::initramfs::read`] (concatenated plain/gzip/zstd/xz cpio
//!   segments) and [`crate::initramfs::iso`] (ISO images), so `ipa-build
//!   audit PATH` works on images built by any tool.
//!
//! A finding names the file, the byte offset, the rule and a redacted
//! preview; the secret itself is never printed, logged or serialised. A
//! reviewed exception is an `audit.allow` entry in the profile (path glob,
//! rule, reason): it moves the finding to [`AuditReport::allowed`], which the
//! manifest lists, so exceptions stay visible.

pub mod rules;
pub mod scan;

use crate::initramfs::{iso, read};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use walkdir::WalkDir;

use crate::config::profile::AuditAllow;
use scan::Job;

/// How bad a finding is. Errors fail the build; warnings are reported (and
/// fail `ipa-build audit --strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One secret (or suspected secret) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Image path (`/etc/shadow`); members of archives inside the scanned
    /// object are written `OUTER!INNER` (`/boot/initrd.img!/etc/shadow`).
    pub path: String,
    /// Byte offset of the secret in the file (in its decompressed content
    /// when `layer` is set).
    pub offset: u64,
    /// Rule name, as used in `audit.allow` (see [`rules::RULES`]).
    pub rule: &'static str,
    pub severity: Severity,
    /// What was found, with the secret replaced by `[REDACTED ...]`.
    pub preview: String,
    /// Set when the file is gzip/zstd/xz data and `offset` counts in its
    /// decompressed content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<&'static str>,
}

/// The result of one audit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// Findings not covered by an allow entry, sorted by path and offset.
    pub findings: Vec<Finding>,
    /// Findings covered by an allow entry, with that entry's reason.
    pub allowed: Vec<(Finding, String)>,
    /// Allow entries that matched nothing (stale exceptions worth removing).
    pub unused_allow: Vec<AuditAllow>,
    /// Files whose content was scanned (archive members count one each).
    pub files_scanned: u64,
    /// Bytes scanned, after decompression.
    pub bytes_scanned: u64,
}

impl AuditReport {
    /// The findings that fail a build.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// The findings that are only reported.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    /// Human-readable report: one line per finding, then what to do.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        let _ = writeln!(
            s,
            "audit: {} files, {} scanned: {errors} error(s), {warnings} warning(s), {} allowed",
            self.files_scanned,
            crate::report::human_bytes(self.bytes_scanned),
            self.allowed.len()
        );
        for f in &self.findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let layer = f
                .layer
                .map(|l| format!(" (in {l} data)"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {sev}: {} at byte {}{layer}: {}: {}",
                f.path, f.offset, f.rule, f.preview
            );
        }
        for (f, reason) in &self.allowed {
            let _ = writeln!(
                s,
                "  allowed: {} at byte {}: {} ({reason})",
                f.path, f.offset, f.rule
            );
        }
        for a in &self.unused_allow {
            let _ = writeln!(
                s,
                "  note: audit.allow entry {} / {} matched nothing; remove it if it is stale",
                a.path, a.rule
            );
        }
        if !self.findings.is_empty() {
            let _ = writeln!(
                s,
                "Remove these files (or add them to `scrub:`), or, once reviewed as not secret, add an \
                 `audit.allow` entry to the profile: {{ path: <path>, rule: <rule>, reason: <why> }}."
            );
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Archive {
        path: PathBuf,
        source: read::ArchiveError,
    },
    #[error("audit.allow entry {index} (path {path:?}): {what}")]
    Allow {
        index: usize,
        path: String,
        what: String,
    },
    #[error("{path}: {what}")]
    Input { path: PathBuf, what: String },
    #[error("{0}")]
    Internal(String),
}

/// Audits a staged tree. Paths in the report are image paths (`/etc/...`).
/// Symlinks are not followed; only regular files are read.
pub fn audit_dir(
    root: &Path,
    allow: &[AuditAllow],
    threads: usize,
) -> Result<AuditReport, AuditError> {
    let matchers = compile_allow(allow)?;
    let scanned = scan::run_pool(threads, |tx| {
        for entry in WalkDir::new(root).follow_links(false).sort_by_file_name() {
            let entry = entry.map_err(|e| AuditError::Io {
                path: e
                    .path()
                    .map_or_else(|| root.to_path_buf(), Path::to_path_buf),
                source: e.into(),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            let image = format!("/{}", rel.to_string_lossy());
            if tx
                .send(Job::File {
                    image,
                    host: entry.path().to_path_buf(),
                })
                .is_err()
            {
                break;
            }
        }
        Ok(())
    })?;
    Ok(apply_allow(scanned, allow, &matchers))
}

/// Audits a directory, an initramfs (newc cpio, plain or gzip/zstd/xz, several
/// segments concatenated as the kernel accepts), an ISO image (every file,
/// and the members of any initramfs on it), or any other single file.
pub fn audit_path(
    path: &Path,
    allow: &[AuditAllow],
    threads: usize,
) -> Result<AuditReport, AuditError> {
    let meta = std::fs::metadata(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return audit_dir(path, allow, threads);
    }
    let matchers = compile_allow(allow)?;
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let scanned = if iso::is_iso(&file) {
        let files = iso::iso_files(&file).map_err(io_err)?;
        scan::run_pool(threads, |tx| {
            for f in &files {
                let data = iso::read_iso_file(&file, f).map_err(io_err)?;
                if !send_expanded(tx, &f.path, data, path)? {
                    break;
                }
            }
            Ok(())
        })?
    } else {
        let data = std::fs::read(path).map_err(io_err)?;
        scan::run_pool(threads, |tx| {
            if read::is_initramfs(&data) {
                read::for_each_entry(&data, &mut |e| {
                    tx.send(Job::Blob {
                        path: e.path,
                        data: e.data,
                    })
                    .map_err(|_| "audit workers stopped".to_string())
                })
                .map_err(|source| AuditError::Archive {
                    path: path.to_path_buf(),
                    source,
                })?;
            } else {
                let name = path
                    .file_name()
                    .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
                let _ = tx.send(Job::Blob {
                    path: format!("/{name}"),
                    data,
                });
            }
            Ok(())
        })?
    };
    Ok(apply_allow(scanned, allow, &matchers))
}

/// Sends an ISO member to the workers; an initramfs is expanded here so its
/// members are scanned in parallel. Returns false when the workers are gone.
fn send_expanded(
    tx: &std::sync::mpsc::SyncSender<Job>,
    name: &str,
    data: Vec<u8>,
    iso: &Path,
) -> Result<bool, AuditError> {
    if read::is_initramfs(&data) {
        let mut gone = false;
        let res = read::for_each_entry(&data, &mut |e| {
            tx.send(Job::Blob {
                path: format!("{name}!{}", e.path),
                data: e.data,
            })
            .map_err(|_| {
                gone = true;
                "audit workers stopped".to_string()
            })
        });
        if gone {
            return Ok(false);
        }
        if let Err(source) = res {
            return Err(AuditError::Archive {
                path: iso.join(name.trim_start_matches('/')),
                source,
            });
        }
        return Ok(true);
    }
    Ok(tx
        .send(Job::Blob {
            path: name.to_string(),
            data,
        })
        .is_ok())
}

fn compile_allow(allow: &[AuditAllow]) -> Result<Vec<GlobMatcher>, AuditError> {
    allow
        .iter()
        .enumerate()
        .map(|(index, a)| {
            if !rules::RULES.iter().any(|(r, _)| *r == a.rule) {
                let known: Vec<&str> = rules::RULES.iter().map(|(r, _)| *r).collect();
                return Err(AuditError::Allow {
                    index,
                    path: a.path.clone(),
                    what: format!(
                        "unknown rule {:?}; known rules: {}",
                        a.rule,
                        known.join(", ")
                    ),
                });
            }
            if a.reason.trim().is_empty() {
                return Err(AuditError::Allow {
                    index,
                    path: a.path.clone(),
                    what: "a reason is required".into(),
                });
            }
            GlobBuilder::new(&a.path)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| AuditError::Allow {
                    index,
                    path: a.path.clone(),
                    what: format!("invalid path glob: {e}"),
                })
        })
        .collect()
}

fn apply_allow(
    scanned: scan::Scanned,
    allow: &[AuditAllow],
    matchers: &[GlobMatcher],
) -> AuditReport {
    let mut used = vec![false; allow.len()];
    let mut report = AuditReport {
        files_scanned: scanned.files,
        bytes_scanned: scanned.bytes,
        ..Default::default()
    };
    for f in scanned.findings {
        let hit = allow
            .iter()
            .zip(matchers)
            .position(|(a, m)| a.rule == f.rule && m.is_match(&f.path));
        match hit {
            Some(i) => {
                used[i] = true;
                report.allowed.push((f, allow[i].reason.clone()));
            }
            None => report.findings.push(f),
        }
    }
    report.unused_allow = allow
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(a, _)| a.clone())
        .collect();
    report
}

// ---------------------------------------------------------------------------
// Reviewed exceptions from a profile file (`ipa-build audit --allow-file`;
// the command line itself is `cmd::audit`).
// ---------------------------------------------------------------------------

/// The part of a profile `--allow-file` reads.
#[derive(Deserialize)]
struct AllowFile {
    #[serde(default)]
    audit: Option<AllowSection>,
}

#[derive(Deserialize)]
struct AllowSection {
    #[serde(default)]
    allow: Vec<AllowEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowEntry {
    path: String,
    rule: String,
    reason: String,
}

/// Reads `audit.allow` from a profile YAML file.
pub fn load_allow_file(path: &Path) -> Result<Vec<AuditAllow>, AuditError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed: AllowFile = serde_saphyr::from_str(&text).map_err(|e| AuditError::Input {
        path: path.to_path_buf(),
        what: format!("reading audit.allow: {e}"),
    })?;
    Ok(parsed
        .audit
        .map(|a| a.allow)
        .unwrap_or_default()
        .into_iter()
        .map(|e| AuditAllow {
            path: e.path,
            rule: e.rule,
            reason: e.reason,
        })
        .collect())
}
