//! Running the rules over many files on every core.
//!
//! One producer (a directory walk, an initramfs reader, an ISO reader) feeds
//! jobs through a bounded channel to `threads` workers; each worker keeps its
//! own findings and counters, merged at the end and sorted, so the report does
//! not depend on scheduling. A file that is itself an initramfs or a gzip/
//! zstd/xz stream is opened and scanned inside, up to [`MAX_DEPTH`] levels.

use std::path::PathBuf;
use std::sync::{Mutex, mpsc};

use super::rules;
use super::{AuditError, Finding};
use crate::initramfs::read::{self as input, Entry};

/// How deep archives inside archives are opened.
const MAX_DEPTH: u32 = 3;
/// Decompressed bytes scanned per compressed file; the rest is not scanned.
const DECOMPRESS_CAP: u64 = 1 << 30;

/// One unit of work.
pub enum Job {
    /// A file on disk, known in the image as `image`.
    File { image: String, host: PathBuf },
    /// Bytes already in memory (an archive member).
    Blob { path: String, data: Vec<u8> },
}

/// What one worker (or the whole scan) found.
#[derive(Default)]
pub struct Scanned {
    pub findings: Vec<Finding>,
    pub files: u64,
    pub bytes: u64,
    pub error: Option<AuditError>,
}

/// Runs `produce` on this thread, feeding `threads` workers.
pub fn run_pool(
    threads: usize,
    produce: impl FnOnce(&mpsc::SyncSender<Job>) -> Result<(), AuditError>,
) -> Result<Scanned, AuditError> {
    let threads = threads.max(1);
    let (tx, rx) = mpsc::sync_channel::<Job>(threads * 8);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut acc = Scanned::default();
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = job else { break };
                        if let Err(e) = scan_job(job, &mut acc) {
                            acc.error.get_or_insert(e);
                        }
                    }
                    acc
                })
            })
            .collect();
        let produced = produce(&tx);
        drop(tx);
        let mut total = Scanned::default();
        for w in workers {
            let acc = w
                .join()
                .map_err(|_| AuditError::Internal("an audit worker thread panicked".into()))?;
            total.findings.extend(acc.findings);
            total.files += acc.files;
            total.bytes += acc.bytes;
            if total.error.is_none() {
                total.error = acc.error;
            }
        }
        produced?;
        if let Some(e) = total.error.take() {
            return Err(e);
        }
        total
            .findings
            .sort_by(|a, b| (&a.path, a.offset, a.rule).cmp(&(&b.path, b.offset, b.rule)));
        Ok(total)
    })
}

fn scan_job(job: Job, acc: &mut Scanned) -> Result<(), AuditError> {
    match job {
        Job::File { image, host } => {
            let data = std::fs::read(&host).map_err(|source| AuditError::Io {
                path: host.clone(),
                source,
            })?;
            scan_blob(&image, &data, 0, acc)
        }
        Job::Blob { path, data } => scan_blob(&path, &data, 0, acc),
    }
}

/// Scans one file's bytes: as an archive if it is one, else its
/// (decompressed) content with the content rules and the name rules.
pub fn scan_blob(path: &str, data: &[u8], depth: u32, acc: &mut Scanned) -> Result<(), AuditError> {
    if depth < MAX_DEPTH && input::is_initramfs(data) {
        let mut inner_err = None;
        let res = input::for_each_entry(data, &mut |e: Entry| {
            scan_blob(&format!("{path}!{}", e.path), &e.data, depth + 1, acc).map_err(|err| {
                let msg = err.to_string();
                inner_err = Some(err);
                msg
            })
        });
        if let Some(e) = inner_err {
            return Err(e);
        }
        if res.is_ok() {
            return Ok(());
        }
        // Not a well-formed archive after all: scan it as plain bytes below.
    }
    acc.files += 1;
    if data.is_empty() {
        return Ok(());
    }
    if depth < MAX_DEPTH
        && let Some(kind) = input::sniff(data)
        && let Ok(inner) = input::decompress(kind, data, DECOMPRESS_CAP)
    {
        // Name rules see the name without the compression suffix (shadow.gz → shadow).
        let stem = [".gz", ".zst", ".xz", ".tgz"]
            .iter()
            .find_map(|s| path.strip_suffix(s))
            .unwrap_or(path);
        acc.bytes += inner.len() as u64;
        return push_hits(path, stem, &inner, Some(input::layer_name(kind)), acc);
    }
    acc.bytes += data.len() as u64;
    push_hits(path, path, data, None, acc)
}

fn push_hits(
    path: &str,
    name_path: &str,
    data: &[u8],
    layer: Option<&'static str>,
    acc: &mut Scanned,
) -> Result<(), AuditError> {
    let mut hits = rules::scan_named(name_path, data);
    hits.extend(rules::scan_content(data).map_err(AuditError::Internal)?);
    for h in hits {
        acc.findings.push(Finding {
            path: path.to_string(),
            offset: h.offset as u64,
            rule: h.rule,
            severity: h.severity,
            preview: h.preview,
            layer,
        });
    }
    Ok(())
}
