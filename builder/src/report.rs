//! What a build tells the person (or CI log) watching it.
//!
//! All progress goes to stderr so that stdout stays clean for results (the
//! upload commands, or the `--json` summary). On a terminal, stages show a
//! spinner or a byte progress bar; elsewhere (CI logs, pipes) each stage
//! prints one plain line when it starts and one when it ends, so logs stay
//! readable and diffable.

use std::fmt::Display;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How stage timings are remembered for the summary and `manifest.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageTiming {
    pub stage: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Progress bars and spinners on stderr.
    Terminal,
    /// One plain line per event on stderr.
    Plain,
    /// Nothing but warnings (used by tests and library callers).
    Quiet,
}

/// Shared, cheap-to-clone reporter passed to every stage.
#[derive(Debug, Clone)]
pub struct Reporter {
    mode: Mode,
    timings: Arc<Mutex<Vec<StageTiming>>>,
}

impl Reporter {
    /// Picks bars when stderr is a terminal and `CI` is not set, plain lines otherwise.
    pub fn auto() -> Self {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        let mode = if std::io::stderr().is_terminal() && !ci {
            Mode::Terminal
        } else {
            Mode::Plain
        };
        Reporter {
            mode,
            timings: Arc::default(),
        }
    }

    /// Plain lines regardless of the terminal.
    pub fn plain() -> Self {
        Reporter {
            mode: Mode::Plain,
            timings: Arc::default(),
        }
    }

    /// Only warnings.
    pub fn quiet() -> Self {
        Reporter {
            mode: Mode::Quiet,
            timings: Arc::default(),
        }
    }

    /// Starts a named pipeline stage; it ends (and its time is recorded) when
    /// [`Stage::done`] is called or the value is dropped.
    pub fn stage(&self, name: &str, what: impl Display) -> Stage {
        let what = what.to_string();
        let spinner = match self.mode {
            Mode::Terminal => {
                let pb = ProgressBar::new_spinner();
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:>8} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.set_prefix(name.to_string());
                pb.set_message(what.clone());
                pb.enable_steady_tick(Duration::from_millis(120));
                Some(pb)
            }
            Mode::Plain => {
                eprintln!("==> {name}: {what}");
                None
            }
            Mode::Quiet => None,
        };
        Stage {
            name: name.to_string(),
            start: Instant::now(),
            spinner,
            mode: self.mode,
            timings: self.timings.clone(),
            finished: false,
        }
    }

    /// A byte-counting progress bar (downloads, compression). Thread-safe.
    pub fn bytes(&self, total: u64, label: impl Display) -> Bar {
        let label = label.to_string();
        let pb = match self.mode {
            Mode::Terminal => {
                let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                pb.set_style(
                    ProgressStyle::with_template(
                        "  {msg:<20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                pb.set_message(label.clone());
                Some(pb)
            }
            _ => None,
        };
        Bar {
            pb,
            mode: self.mode,
            label,
            total,
            start: Instant::now(),
        }
    }

    /// A line of information (suppressed when quiet).
    pub fn info(&self, msg: impl Display) {
        match self.mode {
            Mode::Terminal | Mode::Plain => eprintln!("    {msg}"),
            Mode::Quiet => {}
        }
    }

    /// A warning: always shown.
    pub fn warn(&self, msg: impl Display) {
        eprintln!("warning: {msg}");
    }

    /// Stage timings recorded so far, in order.
    pub fn timings(&self) -> Vec<StageTiming> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// A running stage; see [`Reporter::stage`].
pub struct Stage {
    name: String,
    start: Instant,
    spinner: Option<ProgressBar>,
    mode: Mode,
    timings: Arc<Mutex<Vec<StageTiming>>>,
    finished: bool,
}

impl Stage {
    /// Ends the stage with a short result ("42 packages, 31.2 MiB").
    pub fn done(mut self, result: impl Display) {
        self.finish(&result.to_string());
    }

    fn finish(&mut self, result: &str) {
        if self.finished {
            return;
        }
        self.finished = true;
        let secs = self.start.elapsed().as_secs_f64();
        if let Ok(mut t) = self.timings.lock() {
            t.push(StageTiming {
                stage: self.name.clone(),
                seconds: secs,
            });
        }
        if let Some(pb) = self.spinner.take() {
            pb.finish_and_clear();
        }
        match self.mode {
            Mode::Terminal | Mode::Plain => {
                let sep = if result.is_empty() { "" } else { ": " };
                eprintln!("    {} done in {secs:.1}s{sep}{result}", self.name);
            }
            Mode::Quiet => {}
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // A stage dropped without `done` ended early: an error is on its way up
        // and will say what happened, so only the spinner is cleared.
        if !self.finished {
            self.finished = true;
            if let Some(pb) = self.spinner.take() {
                pb.finish_and_clear();
            }
        }
    }
}

/// A byte progress bar; clones share the same bar.
#[derive(Clone)]
pub struct Bar {
    pb: Option<ProgressBar>,
    mode: Mode,
    label: String,
    total: u64,
    start: Instant,
}

impl Bar {
    pub fn inc(&self, n: u64) {
        if let Some(pb) = &self.pb {
            pb.inc(n);
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
        if self.mode == Mode::Plain {
            eprintln!(
                "    {}: {} in {:.1}s",
                self.label,
                human_bytes(self.total),
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// `1536` → `1.5 KiB`. Used in every human-facing size.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_units() {
        for (n, text) in [
            (0, "0 B"),
            (1536, "1.5 KiB"),
            (20 * 1024 * 1024, "20.0 MiB"),
        ] {
            assert_eq!(human_bytes(n), text);
        }
    }

    #[test]
    fn timings_are_recorded_in_order() {
        let r = Reporter::quiet();
        r.stage("a", "").done("");
        r.stage("b", "").done("x");
        let t: Vec<_> = r.timings().into_iter().map(|t| t.stage).collect();
        assert_eq!(t, ["a", "b"]);
    }
}
