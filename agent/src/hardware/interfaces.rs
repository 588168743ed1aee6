//! The physical NICs (those with a `device` under `/sys/class/net`), in the
//! fields of IPA's `NetworkInterface`. Ironic's inspection finds the node by
//! these MACs, creates ports from them, and (with `[inspector]add_ports =
//! active`) keeps only those with an IP address.

use crate::fsutil::read_trimmed;
use crate::fsutil::under;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// IPA's `NetworkInterface`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// Kernel name (`eth0`, `enp1s0`).
    pub name: String,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac_address: String,
    /// The first IPv4 address, if any.
    pub ipv4_address: Option<String>,
    /// The first global IPv6 address, else the link-local one.
    pub ipv6_address: Option<String>,
    /// `carrier` is 1 (an unreadable file, e.g. a down link, is false).
    pub has_carrier: bool,
    /// LLDP is not collected (IPA does only with `ipa-collect-lldp`).
    pub lldp: Option<serde_json::Value>,
    /// PCI vendor ID (`0x8086`).
    pub vendor: Option<String>,
    /// PCI device ID (`0x100e`).
    pub product: Option<String>,
    /// InfiniBand's DHCP client id; not computed.
    pub client_id: Option<String>,
    /// Dell's `biosdevname`; not available.
    pub biosdevname: Option<String>,
    /// Link speed in Mbit/s, when the link is up.
    pub speed_mbps: Option<u64>,
    /// `0000:00:03.0` for a PCI NIC (the parent PCI function of a virtio
    /// one).
    pub pci_address: Option<String>,
    /// The kernel driver (`virtio_net`, `e1000`).
    pub driver: Option<String>,
}

/// IP addresses by interface name.
pub type Addresses = BTreeMap<String, (Option<Ipv4Addr>, Option<Ipv6Addr>)>;

/// The NICs under `root` with their addresses from `addrs`, sorted by name.
pub fn list(root: &Path, addrs: &Addresses) -> Vec<Interface> {
    let base = under(root, "/sys/class/net");
    crate::net::interface_names(root)
        .into_iter()
        .filter_map(|name| interface(&base.join(&name), name, addrs))
        .collect()
}

fn interface(dir: &Path, name: String, addrs: &Addresses) -> Option<Interface> {
    let device = dir.join("device");
    if name == "lo" || !device.exists() {
        return None;
    }
    let mac = read_trimmed(&dir.join("address"))?.to_ascii_lowercase();
    if mac == "00:00:00:00:00:00" {
        return None;
    }
    let (v4, v6) = addrs.get(&name).copied().unwrap_or_default();
    let link_name = |p: &Path| {
        std::fs::canonicalize(p)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    // A virtio NIC's device is `virtio0` on the virtio bus, a child of the
    // PCI function: the nearest PCI-shaped ancestor is the address.
    let pci_address = std::fs::canonicalize(&device).ok().and_then(|p| {
        p.ancestors()
            .filter_map(|a| a.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .find(|n| is_pci_address(n))
    });
    Some(Interface {
        ipv4_address: v4.map(|a| a.to_string()),
        ipv6_address: v6.map(|a| a.to_string()),
        has_carrier: read_trimmed(&dir.join("carrier")).as_deref() == Some("1"),
        lldp: None,
        vendor: read_trimmed(&device.join("vendor")),
        product: read_trimmed(&device.join("device")),
        client_id: None,
        biosdevname: None,
        speed_mbps: read_trimmed(&dir.join("speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0),
        pci_address,
        driver: link_name(&device.join("driver")),
        mac_address: mac,
        name,
    })
}

/// `dddd:bb:dd.f`.
fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// Every interface's first IPv4 address and best IPv6 address (global
/// before link-local), from `getifaddrs`: the kernel publishes IPv4
/// addresses in no file under `/sys` or `/proc` that names the interface.
pub fn system_addresses() -> Addresses {
    let mut out = Addresses::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read, and free it
    // once with freeifaddrs; every pointer is checked for null before use,
    // and a sockaddr is read as sockaddr_in/in6 only when its family says so.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let entry = out.entry(name).or_default();
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    entry.0.get_or_insert(ip);
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
                    match entry.1 {
                        None => entry.1 = Some(ip),
                        Some(old) if (old.segments()[0] & 0xffc0) == 0xfe80 && !link_local => {
                            entry.1 = Some(ip)
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        libc::freeifaddrs(head);
    }
    out
}
