//! Logging to stderr in a form an operator can read on a serial console:
//! `2026-08-01T12:00:00.123Z INFO  message`.
//!
//! Every line goes through [`crate::redact::redact`] before it is printed
//! or kept. Only records from this crate are printed: dependencies (the HTTP client in
//! particular) may log request bodies at debug level, and a heartbeat body
//! carries the agent token. The last lines are also kept in memory for
//! `log.collect_system_logs`.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;

const KEEP_LINES: usize = 2000;

struct Logger {
    level: log::LevelFilter,
    recent: Mutex<VecDeque<String>>,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level && m.target().starts_with("ipa_agent")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {:<5} {}",
            timestamp(crate::timing::epoch_now()),
            record.level(),
            record.args()
        );
        // The last net: whatever a message carries, no secret is printed.
        let line = crate::redact::redact(&line).into_owned();
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        if let Ok(mut q) = self.recent.lock() {
            if q.len() >= KEEP_LINES {
                q.pop_front();
            }
            q.push_back(line);
        }
    }

    fn flush(&self) {}
}

/// Installs the stderr logger; `debug` adds detail. Safe to call twice.
pub fn init(debug: bool) {
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let logger = LOGGER.get_or_init(|| Logger {
        level,
        recent: Mutex::new(VecDeque::new()),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// The most recent log lines (already free of secrets), oldest first.
pub fn recent_lines() -> Vec<String> {
    LOGGER
        .get()
        .and_then(|l| l.recent.lock().ok().map(|q| q.iter().cloned().collect()))
        .unwrap_or_default()
}

/// RFC 3339 UTC timestamp with milliseconds, computed without a date crate.
pub fn timestamp(epoch: f64) -> String {
    let ms = (epoch * 1000.0) as i64;
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// Days since 1970-01-01 to a (year, month, day) civil date (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_redacted_before_they_are_kept() {
        super::init(false);
        crate::redact::remember("kept-token-0123456789");
        log::warn!("lookup said agent_token=abcdef123456 and kept-token-0123456789");
        let lines = super::recent_lines();
        let line = lines
            .iter()
            .find(|l| l.contains("lookup said"))
            .expect("line kept");
        assert!(line.contains("agent_token=*** and ***"), "{line}");
    }

    #[test]
    fn timestamp_is_rfc3339() {
        assert_eq!(super::timestamp(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::timestamp(1_700_000_000.5),
            "2023-11-14T22:13:20.500Z"
        );
    }
}
