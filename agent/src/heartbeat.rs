//! When to heartbeat. The first beat goes out as soon as the API listens;
//! after a success the next is due `heartbeat_timeout × U(0.3, 0.6)` later,
//! after a failure `5 × U(1, 2)` later. The loop never sleeps more than 5 s
//! at a time, and a forced beat (an async command ended) fires once more
//! than 5 s have passed since the last one.

use crate::timing::{Signal, Timing};

/// Raised to request a beat now.
pub const FORCE: u8 = 1;
/// Raised to end the loop.
pub const STOP: u8 = 2;

/// The timer state: when the last beat went out and the current interval.
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    last: f64,
    interval: f64,
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Send a heartbeat now.
    Beat,
    /// Sleep this many seconds, then ask again.
    Wait(f64),
}

impl Timer {
    /// A timer whose first beat is due immediately.
    pub fn new(now: f64) -> Self {
        Timer {
            last: now,
            interval: 0.0,
        }
    }

    /// The next action at `now`.
    pub fn next(&self, now: f64, forced: bool) -> Next {
        let elapsed = now - self.last;
        if elapsed >= self.interval - 1e-9 || (forced && elapsed > 5.0) {
            return Next::Beat;
        }
        let mut wait = (self.interval - elapsed).clamp(0.0, 5.0);
        if forced {
            wait = wait.min((5.0 - elapsed).max(0.0) + 0.001);
        }
        Next::Wait(wait)
    }

    /// Records a beat at `at`; `u` is the jitter draw from `U(0.3, 0.6)`
    /// after a success or `U(1, 2)` after a failure.
    pub fn beat_done(&mut self, at: f64, ok: bool, heartbeat_timeout: f64, u: f64) {
        self.last = at;
        self.interval = if ok { heartbeat_timeout * u } else { 5.0 * u };
    }

    /// The current interval.
    pub fn interval(&self) -> f64 {
        self.interval
    }
}

/// Runs the heartbeat loop until `signal` carries [`STOP`]. `beat` sends one
/// heartbeat and says whether it succeeded.
pub fn run(
    timing: &dyn Timing,
    signal: &Signal,
    heartbeat_timeout: f64,
    mut beat: impl FnMut() -> bool,
) {
    let mut timer = Timer::new(timing.now());
    loop {
        if signal.is_raised(STOP) {
            return;
        }
        let now = timing.now();
        let forced = signal.is_raised(FORCE);
        match timer.next(now, forced) {
            Next::Beat => {
                signal.take(FORCE);
                let ok = beat();
                let u = if ok {
                    timing.uniform(0.3, 0.6)
                } else {
                    timing.uniform(1.0, 2.0)
                };
                timer.beat_done(now, ok, heartbeat_timeout, u);
                log::debug!("next heartbeat in {:.1} s", timer.interval());
            }
            // A pending force already counts; wake early only to stop then.
            Next::Wait(d) => timing.wait(d, signal, if forced { STOP } else { STOP | FORCE }),
        }
    }
}
