//! `ipa-ntp-server`: one SNTP exchange (RFC 4330) before the auto-TLS
//! certificate is made, so a node whose clock is years off (a dead RTC
//! battery reads 1970 or 2000) still gives the conductor a certificate that
//! is valid now.
//!
//! Hand-written: a request is 48 bytes with one byte set, the answer four
//! timestamps; a crate would bring a runtime or a daemon for a job done
//! once at boot. The answer must come from the server asked, be a server
//! reply with a non-zero stratum (stratum 0 is a "kiss of death"), and echo
//! our transmit time, so an off-path spoofer cannot set the clock.
//!
//! The system clock is set (`clock_settime`) only when `--root` is `/`;
//! otherwise (tests, a chroot) the offset is only applied to the agent's
//! own idea of the time ([`crate::timing::set_clock_offset`]).

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::time::Duration;

/// Seconds from 1900-01-01 (NTP's epoch) to 1970-01-01.
const NTP_UNIX_OFFSET: f64 = 2_208_988_800.0;
/// Wait for one answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per server.
const ATTEMPTS: usize = 3;

/// Why a server gave no usable time.
#[derive(Debug, thiserror::Error)]
pub enum NtpError {
    /// Resolving, sending or receiving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server name did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The answer was not a valid SNTP server reply to our request.
    #[error("invalid answer: {0}")]
    Invalid(&'static str),
}

/// An NTP timestamp (seconds since 1900, 32.32 fixed point) as Unix
/// seconds. Era 0 ends in 2036: values below 2^31 are read as era 1.
fn from_ntp(b: &[u8]) -> f64 {
    let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64;
    let frac = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as f64 / 4_294_967_296.0;
    let secs = if secs < 2_147_483_648.0 {
        secs + 4_294_967_296.0
    } else {
        secs
    };
    secs + frac - NTP_UNIX_OFFSET
}

fn to_ntp(unix: f64) -> [u8; 8] {
    let t = unix + NTP_UNIX_OFFSET;
    let secs = (t.floor() as u64 & 0xffff_ffff) as u32;
    let frac = ((t - t.floor()) * 4_294_967_296.0) as u32;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&secs.to_be_bytes());
    out[4..].copy_from_slice(&frac.to_be_bytes());
    out
}

/// The client request: LI 0, version 4, mode 3, our transmit time.
pub fn request(now: f64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x23;
    p[40..48].copy_from_slice(&to_ntp(now));
    p
}

/// The clock offset (server minus us, seconds) from a reply to `sent`,
/// received at `t4`.
pub fn offset(sent: &[u8; 48], reply: &[u8], t4: f64) -> Result<f64, NtpError> {
    if reply.len() < 48 {
        return Err(NtpError::Invalid("shorter than 48 bytes"));
    }
    if reply[0] & 0x07 != 4 {
        return Err(NtpError::Invalid("not a server reply"));
    }
    if reply[1] == 0 {
        return Err(NtpError::Invalid("stratum 0 (kiss of death)"));
    }
    if reply[24..32] != sent[40..48] {
        return Err(NtpError::Invalid("does not answer our request"));
    }
    if reply[40..48].iter().all(|b| *b == 0) {
        return Err(NtpError::Invalid("no transmit time"));
    }
    let t1 = from_ntp(&sent[40..48]);
    let t2 = from_ntp(&reply[32..40]);
    let t3 = from_ntp(&reply[40..48]);
    Ok(((t2 - t1) + (t3 - t4)) / 2.0)
}

fn addr(server: &str) -> Result<SocketAddr, NtpError> {
    let s = server.trim().trim_start_matches('[');
    let with_port = if s.parse::<std::net::IpAddr>().is_ok() || !s.contains(':') {
        crate::net::host_port(s.trim_end_matches(']'), 123)
    } else {
        server.trim().to_string()
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| NtpError::Resolve(server.to_string()))
}

/// One SNTP exchange with `server` (`host` or `host:port`).
pub fn query(server: &str) -> Result<f64, NtpError> {
    let target = addr(server)?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(target)?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    let sent = request(crate::timing::system_epoch());
    sock.send(&sent)?;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf)?;
    offset(&sent, &buf[..n], crate::timing::system_epoch())
}

/// Sets the system clock to `unix` seconds.
fn set_system_clock(unix: f64) -> std::io::Result<()> {
    let ts = libc::timespec {
        tv_sec: unix.floor() as libc::time_t,
        tv_nsec: ((unix - unix.floor()) * 1e9) as libc::c_long,
    };
    // SAFETY: clock_settime reads the timespec we pass.
    let rc = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Syncs from the first of `servers` (comma-separated) that answers.
/// Returns the offset found, or `None` (logged) when none answered; the
/// certificate's wide validity window is then the only protection.
pub fn sync(root: &Path, servers: &str) -> Option<f64> {
    for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        for attempt in 1..=ATTEMPTS {
            match query(server) {
                Ok(off) => {
                    apply(root, server, off);
                    return Some(off);
                }
                Err(e) => log::warn!("NTP {server} attempt {attempt}: {e}"),
            }
        }
    }
    log::warn!("no NTP server answered ({servers}); keeping the node's clock");
    None
}

fn apply(root: &Path, server: &str, off: f64) {
    log::info!("NTP {server}: the node's clock is off by {off:+.3} s");
    if root == Path::new("/") {
        match set_system_clock(crate::timing::system_epoch() + off) {
            Ok(()) => {
                log::info!("system clock set from {server}");
                return;
            }
            Err(e) => log::warn!(
                "cannot set the system clock ({e}); correcting the agent's own time only"
            ),
        }
    }
    crate::timing::set_clock_offset(off);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_to(sent: &[u8; 48], server_time: f64) -> [u8; 48] {
        let mut r = [0u8; 48];
        r[0] = 0x24;
        r[1] = 2;
        r[24..32].copy_from_slice(&sent[40..48]);
        r[32..40].copy_from_slice(&to_ntp(server_time));
        r[40..48].copy_from_slice(&to_ntp(server_time));
        r
    }

    #[test]
    fn offset_of_a_clock_a_year_behind() {
        let now = 1_000_000_000.0; // 2001: the node thinks it is then
        let real = 1_800_000_000.25; // 2027
        let sent = request(now);
        let off = offset(&sent, &reply_to(&sent, real), now).unwrap();
        assert!((off - (real - now)).abs() < 1e-3, "{off}");
    }

    #[test]
    fn era_1_after_2036() {
        let t = 2_200_000_000.5; // 2039
        assert!((from_ntp(&to_ntp(t)) - t).abs() < 1e-6);
    }

    #[test]
    fn spoofed_or_kiss_of_death_replies_are_refused() {
        let sent = request(1_700_000_000.0);
        let other = request(1_700_000_001.0);
        assert!(offset(&sent, &reply_to(&other, 1.8e9), 1.7e9).is_err());
        let mut kod = reply_to(&sent, 1.8e9);
        kod[1] = 0;
        assert!(offset(&sent, &kod, 1.7e9).is_err());
        let mut client = reply_to(&sent, 1.8e9);
        client[0] = 0x23;
        assert!(offset(&sent, &client, 1.7e9).is_err());
        assert!(offset(&sent, &[0u8; 20], 1.7e9).is_err());
    }
}
