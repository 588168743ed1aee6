//! Free TCP ports on loopback.

use std::net::{Ipv4Addr, TcpListener};

/// Asks the kernel for a free port on 127.0.0.1.
///
/// The port is released before it is returned, so another process could take
/// it in between; the window is a few milliseconds and the kernel hands out
/// ephemeral ports round-robin, which makes a collision unlikely in practice.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
