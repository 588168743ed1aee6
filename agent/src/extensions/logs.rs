//! `log.collect_system_logs`: a gzip-compressed, base64-encoded tarball of
//! what an operator needs to debug the ramdisk: this agent's recent log
//! (already free of secrets), the kernel log and the system log files.
//! `/proc/cmdline` is left out on purpose: it may hold `ipa-agent-token`.
//! Everything else (dmesg and the journal repeat the command line) goes
//! through [`crate::redact`] before it enters the tarball.

use super::Ctx;
use crate::commands::{Command, CommandError, Mode, Registry};
use crate::fsutil::under;
use base64::Engine;
use serde_json::json;
use std::path::Path;

/// Registers `log.collect_system_logs`.
pub fn register(r: &mut Registry, ctx: &Ctx) {
    let root = ctx.root.clone();
    r.register(
        "log",
        "collect_system_logs",
        Command::new(Mode::Sync, &[], move |_| {
            let tgz = collect(&root)?;
            Ok(Some(
                json!({"system_logs": base64::engine::general_purpose::STANDARD.encode(tgz)}),
            ))
        }),
    );
}

fn command_output(prog: &str, args: &[&str]) -> Option<Vec<u8>> {
    let out = std::process::Command::new(prog).args(args).output().ok()?;
    out.status.success().then_some(out.stdout)
}

/// Builds the tarball in memory.
pub fn collect(root: &Path) -> Result<Vec<u8>, CommandError> {
    let err = |e: std::io::Error| CommandError::execution(format!("collecting logs failed: {e}"));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
        let data = crate::redact::redact_bytes(data);
        let data = data.as_slice();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(crate::timing::epoch_now() as u64);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
    };
    let agent_log = crate::logging::recent_lines().join("\n");
    add("ipa-agent.log", agent_log.as_bytes()).map_err(err)?;
    if root == Path::new("/") {
        for (name, prog, args) in [
            ("dmesg", "dmesg", &[][..]),
            ("journal", "journalctl", &["-b", "--no-pager"][..]),
            ("ip_addr", "ip", &["addr"][..]),
            ("ps", "ps", &[][..]),
        ] {
            if let Some(out) = command_output(prog, args) {
                add(name, &out).map_err(err)?;
            }
        }
    }
    for f in ["/var/log/messages", "/var/log/syslog"] {
        if let Ok(data) = std::fs::read(under(root, f)) {
            add(f.trim_start_matches('/'), &data).map_err(err)?;
        }
    }
    let gz = tar.into_inner().map_err(err)?;
    gz.finish().map_err(err)
}
