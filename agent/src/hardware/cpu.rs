//! The processors, from `/proc/cpuinfo` and `/sys/devices/system/cpu`, in
//! the fields IPA's `CPU` has. The architecture is the one this binary was
//! built for: a static agent only runs on its own architecture, and
//! Ironic's `architecture` hook copies it into the node's `cpu_arch`.

use crate::fsutil::read_trimmed;
use crate::fsutil::under;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// IPA's `CPU`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cpu {
    /// `model name` of the first processor.
    pub model_name: Option<String>,
    /// MHz as text, like IPA: the maximum from cpufreq, else `cpu MHz`.
    pub frequency: Option<String>,
    /// Logical processors.
    pub count: usize,
    /// `x86_64`, `aarch64`, ...
    pub architecture: String,
    /// The first processor's flags (`flags`, or `Features` on ARM).
    pub flags: Vec<String>,
    /// Distinct `physical id`s; `None` when the kernel does not say.
    pub socket_count: Option<usize>,
}

/// Reads the processors under `root`.
pub fn read(root: &Path) -> Cpu {
    let text = std::fs::read_to_string(under(root, "/proc/cpuinfo")).unwrap_or_default();
    let mut processors = 0usize;
    let mut model_name = None;
    let mut mhz = None;
    let mut flags = Vec::new();
    let mut sockets = BTreeSet::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => processors += 1,
            "model name" if model_name.is_none() => model_name = Some(value.to_string()),
            "cpu MHz" if mhz.is_none() => mhz = Some(value.to_string()),
            "flags" | "Features" if flags.is_empty() => {
                flags = value.split_whitespace().map(str::to_string).collect();
            }
            "physical id" => {
                sockets.insert(value.to_string());
            }
            _ => {}
        }
    }
    let count = if processors > 0 {
        processors
    } else {
        online_count(root).unwrap_or(1)
    };
    Cpu {
        model_name,
        frequency: max_mhz(root).or(mhz),
        count,
        architecture: std::env::consts::ARCH.to_string(),
        flags,
        socket_count: (!sockets.is_empty()).then_some(sockets.len()),
    }
}

/// cpufreq's `cpuinfo_max_freq` (kHz) of cpu0 as MHz text.
fn max_mhz(root: &Path) -> Option<String> {
    let khz: u64 = read_trimmed(&under(
        root,
        "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
    ))?
    .parse()
    .ok()?;
    Some(format!("{}", khz / 1000))
}

/// The number of CPUs in `/sys/devices/system/cpu/online` (`0-3,6`).
fn online_count(root: &Path) -> Option<usize> {
    let text = read_trimmed(&under(root, "/sys/devices/system/cpu/online"))?;
    let mut n = 0usize;
    for part in text.split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => 1,
        };
    }
    Some(n)
}
