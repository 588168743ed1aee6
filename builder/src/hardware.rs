//! Which hardware an image's kernel modules can drive, read from the
//! `alias` lines of `modules.alias` (and the built-in drivers' aliases in
//! `modules.builtin.modinfo`).
//!
//! A driver declares the devices it binds to as modalias patterns:
//! `pci:v00008086d000010D3sv*sd*bc*sc*i*` (Intel 82574L), a PCI class
//! (`pci:v*d*sv*sd*bc0Csc03i30*`, every xHCI controller) or a USB interface
//! class (`usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*`, USB mass storage). The
//! kernel loads a module when a device's modalias matches one of its
//! patterns, so these patterns are exactly what the image can drive.
//!
//! The comparable figure is the number of distinct PCI vendor:device pairs
//! named by some driver: it grows with every driver added and means the
//! same for two builds or for an image and the full kernel it came from.
//! Class and vendor-wide matches are listed beside it, not counted, because
//! one of them stands for devices that cannot be enumerated.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::stage::modules::module_name;

/// What a driver is for, from where it lives in the kernel tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Disk and optical controllers (SCSI, SATA, NVMe, virtio-blk, USB storage).
    Storage,
    /// USB host controllers and the USB core.
    Usb,
    /// Wired NICs. Wi-Fi counts as `other`: a server is not rescued over it,
    /// and its thousands of IDs would drown the figure a user compares.
    Network,
    Other,
}

impl Class {
    pub const ALL: [Class; 4] = [Class::Storage, Class::Usb, Class::Network, Class::Other];

    pub fn name(self) -> &'static str {
        match self {
            Class::Storage => "storage",
            Class::Usb => "usb",
            Class::Network => "network",
            Class::Other => "other",
        }
    }

    /// The class of a module from its path (`kernel/drivers/scsi/hpsa.ko`).
    pub fn of_path(path: &str) -> Class {
        let p = path.strip_prefix("kernel/").unwrap_or(path);
        let under = |dir: &str| p.starts_with(dir);
        if under("drivers/usb/storage/")
            || under("drivers/scsi/")
            || under("drivers/ata/")
            || under("drivers/nvme/")
            || under("drivers/block/")
            || under("drivers/message/")
            || under("drivers/md/")
        {
            Class::Storage
        } else if under("drivers/usb/") {
            Class::Usb
        } else if under("drivers/net/wireless/") {
            Class::Other
        } else if under("drivers/net/") || under("drivers/infiniband/") {
            Class::Network
        } else {
            Class::Other
        }
    }
}

/// The modules of a kernel or an image: where each lives and what it matches.
#[derive(Debug, Clone, Default)]
pub struct ModuleTable {
    /// Module name → path under `/lib/modules/<version>/` (`kernel/...`).
    pub paths: BTreeMap<String, String>,
    /// `(pattern, module)` for every alias.
    pub aliases: Vec<(String, String)>,
}

impl ModuleTable {
    /// From the text index files of an image's `/lib/modules/<version>/`:
    /// `modules.alias`, `modules.dep` (paths), `modules.builtin` and
    /// `modules.builtin.modinfo` (built-in drivers match devices too).
    pub fn from_index_files(
        alias: &str,
        dep: &str,
        builtin: &str,
        builtin_modinfo: &[u8],
    ) -> ModuleTable {
        let mut t = ModuleTable::default();
        for line in dep.lines() {
            if let Some((path, _)) = line.split_once(':')
                && let Some(name) = module_name(path)
            {
                t.paths.insert(name, path.to_string());
            }
        }
        for line in builtin.lines() {
            if let Some(name) = module_name(line.trim()) {
                t.paths
                    .entry(name)
                    .or_insert_with(|| line.trim().to_string());
            }
        }
        for line in alias.lines() {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(pattern), Some(module)) = (w.next(), w.next(), w.next()) {
                t.aliases
                    .push((pattern.to_string(), module.replace('-', "_")));
            }
        }
        t.aliases.extend(builtin_aliases(builtin_modinfo));
        t
    }
}

/// `alias=` entries of `modules.builtin.modinfo` (`module.key=value`, NUL-separated).
pub fn builtin_aliases(modinfo: &[u8]) -> Vec<(String, String)> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|e| {
            let e = std::str::from_utf8(e).ok()?;
            let (module, rest) = e.split_once('.')?;
            let pattern = rest.strip_prefix("alias=")?;
            Some((pattern.to_string(), module.replace('-', "_")))
        })
        .collect()
}

/// The devices one class of drivers matches; each set is sorted and
/// without repeats, which is also how it is printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClassCoverage {
    /// Modules of this class with at least one device alias.
    pub modules: BTreeSet<String>,
    /// Distinct PCI `vendor:device` pairs (`8086:10d3`).
    pub pci_ids: BTreeSet<String>,
    /// Vendor-wide PCI matches (`1af4:*`), narrowed to a class when the
    /// driver says so (`8086:*/01:06:01`, Intel's AHCI controllers).
    pub pci_vendors: BTreeSet<String>,
    /// PCI class matches: `class:subclass:progif`, `*` where any (`0c:03:30`).
    pub pci_classes: BTreeSet<String>,
    /// USB `vendor:product` pairs.
    pub usb_ids: BTreeSet<String>,
    /// USB interface classes: `class/subclass/protocol` (`08/06/50`).
    pub usb_interfaces: BTreeSet<String>,
}

/// What an image's modules can drive, per class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The figure to compare: distinct PCI vendor:device pairs, all classes.
    pub pci_ids: usize,
    pub classes: BTreeMap<Class, ClassCoverage>,
}

/// A parsed device alias.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    PciId(String),
    PciVendor(String),
    PciClass(String),
    UsbId(String),
    UsbInterface(String),
}

/// The fields of a modalias in `markers` order: `pci:v…d…sv…` → values.
/// Values are uppercase hex, `*` or glob brackets; markers are lowercase.
fn fields<'a>(body: &'a str, markers: &[&str]) -> Option<Vec<&'a str>> {
    let mut rest = body;
    let mut out = Vec::with_capacity(markers.len());
    for m in markers {
        rest = rest.strip_prefix(m)?;
        let end = rest
            .find(|c: char| c.is_ascii_lowercase())
            .unwrap_or(rest.len());
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    Some(out)
}

/// A fixed 8-digit id field as 4 lowercase hex digits (`00008086` → `8086`).
fn id(v: &str) -> Option<String> {
    let v = v.trim_end_matches('*');
    (v.len() == 8 && v.chars().all(|c| c.is_ascii_hexdigit())).then(|| v[4..].to_ascii_lowercase())
}

/// A 4-digit USB id field.
fn usb_id(v: &str) -> Option<String> {
    (v.len() == 4 && v.chars().all(|c| c.is_ascii_hexdigit())).then(|| v.to_ascii_lowercase())
}

fn byte_or_any(v: &str) -> String {
    let v = v.trim_end_matches('*');
    if v.is_empty() {
        "*".to_string()
    } else {
        v.to_ascii_lowercase()
    }
}

fn parse(pattern: &str) -> Option<Match> {
    if let Some(body) = pattern.strip_prefix("pci:") {
        let f = fields(body, &["v", "d", "sv", "sd", "bc", "sc", "i"])?;
        return match (id(f[0]), id(f[1])) {
            (Some(v), Some(d)) => Some(Match::PciId(format!("{v}:{d}"))),
            (Some(v), None) => {
                let (bc, sc, i) = (byte_or_any(f[4]), byte_or_any(f[5]), byte_or_any(f[6]));
                Some(Match::PciVendor(if bc == "*" {
                    format!("{v}:*")
                } else {
                    format!("{v}:*/{bc}:{sc}:{i}")
                }))
            }
            (None, _) => {
                let (bc, sc, i) = (byte_or_any(f[4]), byte_or_any(f[5]), byte_or_any(f[6]));
                (bc != "*").then(|| Match::PciClass(format!("{bc}:{sc}:{i}")))
            }
        };
    }
    if let Some(body) = pattern.strip_prefix("usb:") {
        let f = fields(
            body,
            &["v", "p", "d", "dc", "dsc", "dp", "ic", "isc", "ip", "in"],
        )?;
        if let (Some(v), Some(p)) = (usb_id(f[0]), usb_id(f[1])) {
            return Some(Match::UsbId(format!("{v}:{p}")));
        }
        let (ic, isc, ip) = (byte_or_any(f[6]), byte_or_any(f[7]), byte_or_any(f[8]));
        return (ic != "*").then(|| Match::UsbInterface(format!("{ic}/{isc}/{ip}")));
    }
    None
}

/// The coverage of a module table.
pub fn coverage(table: &ModuleTable) -> Coverage {
    let mut classes: BTreeMap<Class, ClassCoverage> = BTreeMap::new();
    let mut all_pci = BTreeSet::new();
    for (pattern, module) in &table.aliases {
        let Some(m) = parse(pattern) else { continue };
        let class = table
            .paths
            .get(module)
            .map_or(Class::Other, |p| Class::of_path(p));
        let s = classes.entry(class).or_default();
        s.modules.insert(module.clone());
        match m {
            Match::PciId(x) => {
                all_pci.insert(x.clone());
                s.pci_ids.insert(x);
            }
            Match::PciVendor(x) => {
                s.pci_vendors.insert(x);
            }
            Match::PciClass(x) => {
                s.pci_classes.insert(x);
            }
            Match::UsbId(x) => {
                s.usb_ids.insert(x);
            }
            Match::UsbInterface(x) => {
                s.usb_interfaces.insert(x);
            }
        }
    }
    Coverage {
        pci_ids: all_pci.len(),
        classes,
    }
}

/// `part` as a percentage of `whole`, one decimal; `None` for an empty whole.
pub fn percent(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 1000.0 / whole as f64).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aliases_parse_into_ids_vendors_and_classes() {
        use Match::*;
        /// A modalias, the kind of match it gives and that match's value.
        type Case = (&'static str, fn(String) -> Match, &'static str);
        let cases: [Case; 7] = [
            ("pci:v00008086d000010D3sv*sd*bc*sc*i*", PciId, "8086:10d3"),
            ("pci:v00001AF4d*sv*sd*bc*sc*i*", PciVendor, "1af4:*"),
            ("pci:v*d*sv*sd*bc0Csc03i30*", PciClass, "0c:03:30"),
            ("pci:v*d*sv*sd*bc01sc06i01*", PciClass, "01:06:01"),
            (
                "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",
                UsbInterface,
                "08/06/50",
            ),
            (
                "usb:v0BC2p2101d*dc*dsc*dp*ic*isc*ip*in*",
                UsbId,
                "0bc2:2101",
            ),
            (
                "pci:v00008086d*sv*sd*bc01sc06i01*",
                PciVendor,
                "8086:*/01:06:01",
            ),
        ];
        for (alias, kind, want) in cases {
            assert_eq!(parse(alias), Some(kind(want.into())), "{alias}");
        }
        assert_eq!(parse("fs-ext4"), None);
        assert_eq!(parse("pci:v*d*sv*sd*bc*sc*i*"), None);
    }

    #[test]
    fn classes_come_from_the_tree_path() {
        let cases = [
            ("kernel/drivers/scsi/hpsa.ko", Class::Storage),
            ("kernel/drivers/usb/storage/uas.ko.xz", Class::Storage),
            ("kernel/drivers/usb/host/xhci-pci.ko", Class::Usb),
            (
                "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
                Class::Network,
            ),
            (
                "kernel/drivers/net/wireless/intel/iwlwifi/iwlwifi.ko",
                Class::Other,
            ),
            ("kernel/sound/x.ko", Class::Other),
        ];
        for (path, want) in cases {
            assert_eq!(Class::of_path(path), want, "{path}");
        }
    }

    #[test]
    fn coverage_counts_distinct_pci_ids_per_class() {
        let t = ModuleTable::from_index_files(
            "# Aliases extracted from modules themselves.\n\
             alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n\
             alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n\
             alias pci:v00008086d0000105Esv*sd*bc*sc*i* e1000e\n\
             alias pci:v00001000d0000005Dsv*sd*bc*sc*i* megaraid_sas\n\
             alias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci\n\
             alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n\
             alias fs-vfat vfat\n",
            "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko:\n\
             kernel/drivers/scsi/megaraid/megaraid_sas.ko:\n\
             kernel/drivers/usb/host/xhci-pci.ko:\n\
             kernel/drivers/usb/storage/usb-storage.ko:\n\
             kernel/fs/fat/vfat.ko:\n",
            "kernel/drivers/virtio/virtio_pci.ko\n",
            b"virtio_pci.alias=pci:v00001AF4d*sv*sd*bc*sc*i*\0virtio_pci.license=GPL\0",
        );
        // The whole report, as `inspect --hardware --json` prints it: every
        // set sorted and without repeats, `fs-vfat` (no device) left out.
        let none: [&str; 0] = [];
        let class =
            |modules: &[&str], pci: &[&str], vendors: &[&str], classes: &[&str], usb: &[&str]| {
                json!({"modules": modules, "pci_ids": pci, "pci_vendors": vendors,
                   "pci_classes": classes, "usb_ids": none, "usb_interfaces": usb})
            };
        assert_eq!(
            serde_json::to_value(coverage(&t)).unwrap(),
            json!({
                "pci_ids": 3,
                "classes": {
                    "storage": class(&["megaraid_sas", "usb_storage"], &["1000:005d"], &[], &[], &["08/06/50"]),
                    "usb": class(&["xhci_pci"], &[], &[], &["0c:03:30"], &[]),
                    "network": class(&["e1000e"], &["8086:105e", "8086:10d3"], &[], &[], &[]),
                    "other": class(&["virtio_pci"], &[], &["1af4:*"], &[], &[]),
                }
            })
        );
        assert_eq!(percent(3, 12), Some(25.0));
        assert_eq!(percent(1, 0), None);
    }
}
