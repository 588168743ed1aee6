//! Network facts the agent reports: MAC addresses for lookup (from
//! `<root>/sys/class/net`) and the source address the kernel would use to
//! reach Ironic (the callback URL's host).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;

/// Names under `<root>/sys/class/net`, sorted.
pub fn interface_names(root: &Path) -> Vec<String> {
    let dir = crate::fsutil::under(root, "/sys/class/net");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// MACs of physical interfaces (those with a `device` entry), VLANs (`x.N`)
/// and bonds, in interface-name order, deduplicated, all-zero MACs skipped.
pub fn mac_addresses(root: &Path) -> Vec<String> {
    let base = crate::fsutil::under(root, "/sys/class/net");
    let mut macs: Vec<String> = Vec::new();
    for name in interface_names(root) {
        let dir = base.join(&name);
        let wanted =
            dir.join("device").exists() || dir.join("bonding").exists() || name.contains('.');
        if !wanted || name == "lo" {
            continue;
        }
        let Some(mac) = crate::fsutil::read_trimmed(&dir.join("address")) else {
            continue;
        };
        let mac = mac.to_ascii_lowercase();
        if mac == "00:00:00:00:00:00" || macs.contains(&mac) {
            continue;
        }
        macs.push(mac);
    }
    macs
}

/// `host` and `port` of an `http(s)://host[:port]/…` URL.
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The source address the kernel picks to reach `url` (what `ip route get`
/// reports as `src`), learned by "connecting" a UDP socket: no packet is
/// sent and no `ip` tool is needed.
pub fn source_address_for(url: &str) -> Option<IpAddr> {
    let (host, port) = url_host_port(url)?;
    let targets: Vec<SocketAddr> = (host.as_str(), port).to_socket_addrs().ok()?.collect();
    for target in targets {
        let bind: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = UdpSocket::bind(bind) else {
            continue;
        };
        if sock.connect(target).is_err() {
            continue;
        }
        if let Ok(local) = sock.local_addr() {
            let ip = local.ip();
            if !ip.is_unspecified() && !is_link_local(&ip) {
                return Some(ip);
            }
        }
    }
    None
}

/// Formats `ip:port` for a URL, bracketing IPv6.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        assert_eq!(
            url_host_port("http://10.0.2.2:6385/x"),
            Some(("10.0.2.2".into(), 6385))
        );
        assert_eq!(
            url_host_port("https://ironic"),
            Some(("ironic".into(), 443))
        );
        assert_eq!(
            url_host_port("http://[fc00::1]:6385"),
            Some(("fc00::1".into(), 6385))
        );
        assert_eq!(host_port("fc00:1111::4", 9999), "[fc00:1111::4]:9999");
    }

    #[test]
    fn loopback_source_address() {
        assert_eq!(
            source_address_for("http://127.0.0.1:6385"),
            Some("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn macs_need_a_device() {
        let t = tempfile::tempdir().unwrap();
        let net = t.path().join("sys/class/net");
        for (name, mac, dev) in [
            ("eth0", "00:0C:29:8c:11:b1\n", true),
            ("eth1", "00:0c:29:8c:11:b2\n", true),
            ("lo", "00:00:00:00:00:00\n", false),
            ("virbr0", "52:54:00:00:00:01\n", false),
        ] {
            std::fs::create_dir_all(net.join(name)).unwrap();
            std::fs::write(net.join(name).join("address"), mac).unwrap();
            if dev {
                std::fs::create_dir_all(net.join(name).join("device")).unwrap();
            }
        }
        assert_eq!(
            mac_addresses(t.path()),
            vec!["00:0c:29:8c:11:b1", "00:0c:29:8c:11:b2"]
        );
    }
}
