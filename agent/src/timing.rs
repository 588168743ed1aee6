//! Time and randomness behind one trait, so the lookup back-off and the
//! heartbeat timer can be tested without waiting for real seconds.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The clock, the sleeper and the jitter source used by the Ironic client and
/// the heartbeater.
pub trait Timing: Send + Sync {
    /// Seconds since an arbitrary, monotonic origin.
    fn now(&self) -> f64;
    /// Sleeps for `secs` seconds.
    fn sleep(&self, secs: f64);
    /// A uniformly distributed value in `[lo, hi]`.
    fn uniform(&self, lo: f64, hi: f64) -> f64;
    /// Sleeps up to `secs` seconds, returning early when `signal` is
    /// raised. A fake clock just advances.
    fn wait(&self, secs: f64, signal: &Signal, mask: u8) {
        signal.wait_timeout(secs, mask);
    }
}

/// The real clock.
pub struct SystemTiming {
    origin: Instant,
}

impl Default for SystemTiming {
    fn default() -> Self {
        SystemTiming {
            origin: Instant::now(),
        }
    }
}

impl Timing for SystemTiming {
    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
    fn sleep(&self, secs: f64) {
        if secs > 0.0 {
            std::thread::sleep(duration(secs));
        }
    }
    fn uniform(&self, lo: f64, hi: f64) -> f64 {
        let mut b = [0u8; 8];
        // A failing getrandom only makes the jitter less random; never fatal.
        let _ = getrandom::fill(&mut b);
        let unit = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }
}

/// A clock for tests: time moves only when slept on (or waited on), every
/// sleep is recorded, and `uniform` returns the queued `draws` in turn, then
/// `lo`. Public so the integration tests use this one too.
#[derive(Default)]
pub struct ManualClock {
    pub now: Mutex<f64>,
    pub sleeps: Mutex<Vec<f64>>,
    pub draws: Mutex<Vec<f64>>,
}

impl ManualClock {
    /// The sleeps so far.
    pub fn slept(&self) -> Vec<f64> {
        self.sleeps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Timing for ManualClock {
    fn now(&self) -> f64 {
        self.now.lock().map(|n| *n).unwrap_or(0.0)
    }
    fn sleep(&self, secs: f64) {
        if let Ok(mut s) = self.sleeps.lock() {
            s.push(secs);
        }
        if let Ok(mut n) = self.now.lock() {
            *n += secs;
        }
    }
    fn uniform(&self, lo: f64, _hi: f64) -> f64 {
        match self.draws.lock() {
            Ok(mut d) if !d.is_empty() => d.remove(0),
            _ => lo,
        }
    }
    fn wait(&self, secs: f64, _signal: &Signal, _mask: u8) {
        self.sleep(secs);
    }
}

/// Seconds to a `Duration` that never panics: negative or NaN is zero, and
/// anything too large for a `Duration` is a day (longer than any wait the
/// agent makes once its parameters are clamped).
pub fn duration(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs.min(86400.0)).unwrap_or(Duration::from_secs(86400))
}

/// Random bytes from the OS; the caller decides what a failure means.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], std::io::Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(b)
}

/// A random UUID version 4, the command id format IPA uses.
pub fn uuid4() -> String {
    let mut b: [u8; 16] = random_bytes().unwrap_or_else(|_| {
        // Ids only need to be unique within this process.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        n.to_le_bytes()
    });
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Correction found by NTP when the system clock could not be set (stored
/// as f64 bits; 0 = none).
static CLOCK_OFFSET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Records `secs` to add to the system clock from now on (see
/// [`crate::ntp`]).
pub fn set_clock_offset(secs: f64) {
    CLOCK_OFFSET.store(secs.to_bits(), std::sync::atomic::Ordering::SeqCst);
}

/// The system clock, uncorrected, in seconds since the Unix epoch.
pub fn system_epoch() -> f64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Seconds since the Unix epoch as a float, like Python's `time.time()`,
/// corrected by NTP when the system clock could not be set.
pub fn epoch_now() -> f64 {
    system_epoch() + f64::from_bits(CLOCK_OFFSET.load(std::sync::atomic::Ordering::SeqCst))
}

/// Flags another thread can raise to wake a waiting loop (the heartbeater:
/// "force a beat", "stop").
#[derive(Default)]
pub struct Signal {
    flags: Mutex<u8>,
    cv: Condvar,
}

impl Signal {
    /// Raises `bits` and wakes waiters.
    pub fn raise(&self, bits: u8) {
        if let Ok(mut f) = self.flags.lock() {
            *f |= bits;
        }
        self.cv.notify_all();
    }
    /// Whether any of `bits` is raised.
    pub fn is_raised(&self, bits: u8) -> bool {
        self.flags.lock().map(|f| *f & bits != 0).unwrap_or(false)
    }
    /// Clears `bits`, returning whether any was raised.
    pub fn take(&self, bits: u8) -> bool {
        self.flags
            .lock()
            .map(|mut f| {
                let was = *f & bits != 0;
                *f &= !bits;
                was
            })
            .unwrap_or(false)
    }
    /// Waits up to `secs` or until one of the `mask` flags is raised.
    pub fn wait_timeout(&self, secs: f64, mask: u8) {
        let Ok(g) = self.flags.lock() else { return };
        if *g & mask != 0 || secs <= 0.0 {
            return;
        }
        let _ = self
            .cv
            .wait_timeout_while(g, duration(secs), |f| *f & mask == 0);
    }
}
