//! The image writer on its own, for `benches/write.sh`: downloads URL and
//! writes it to TARGET (an existing file or block device) exactly as the
//! `write_image` step does, then prints one line of JSON with the format,
//! the bytes, the seconds, MB/s and the peak RSS (`VmHWM`).
//!
//! Usage: write_image URL TARGET SHA256

use ipa_agent::deploy::checksum::{Algo, Expected};
use ipa_agent::deploy::download::Source;
use ipa_agent::deploy::settings::Settings;
use ipa_agent::deploy::target::Target;
use ipa_agent::deploy::write;
use std::time::{Duration, Instant};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, target, sha] = args.as_slice() else {
        anyhow::bail!("usage: write_image URL TARGET SHA256");
    };
    let t = Target::open(std::path::Path::new(target))?;
    let mut settings = Settings::default();
    settings.download.retries = 0;
    settings.download.retry_interval = Duration::ZERO;
    let expected = Expected {
        algo: Algo::Sha256,
        hex: sha.to_lowercase(),
    };
    let started = Instant::now();
    let (format, size) = write::write_with_retries(
        &t,
        &settings,
        &Source::default(),
        std::slice::from_ref(url),
        &expected,
        None,
        0,
    )?;
    t.sync()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"format\": \"{format:?}\", \"bytes\": {size}, \"seconds\": {secs:.2}, \"mb_per_s\": {:.1}, \"peak_rss_kib\": {}}}",
        size as f64 / 1e6 / secs,
        peak_rss_kib()
    );
    Ok(())
}
