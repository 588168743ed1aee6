//! libkmod's binary module indexes (`modules.*.bin`), written by us instead
//! of the host's `depmod`.
//!
//! kmod's `modprobe` and udev (through libkmod) never read the text
//! `modules.dep`/`modules.alias`: they look names up in these tries.
//! `kmod_load_resources()` opens `modules.dep.bin`, `modules.alias.bin`,
//! `modules.symbols.bin` and `modules.builtin.bin` and gives up on all of them
//! when one is missing (only `modules.builtin.alias.bin` is optional), so an
//! image that runs udev needs all five. Writing them here keeps the build free
//! of a host tool that must understand the kernel's module format, and makes
//! them a pure function of the module set like the rest of the image.
//!
//! The format, as `libkmod-index.c` documents it and `depmod` writes it: a
//! 12-byte header (magic `0xB007F457`, version 2.1, offset of the root node),
//! then the nodes of a path-compressed trie over 7-bit ASCII keys. A node is
//! referenced by a 32-bit big-endian word whose high nibble says which parts
//! the node has (prefix, children, values) and whose low 28 bits are its file
//! offset. A node holds, in order and each only when present: its prefix
//! (the label characters after the one that selected it) with a NUL; the
//! first and last child character and one reference per character in that
//! range (0 for none); a value count and `(priority, string NUL)` pairs,
//! lowest priority first.
//!
//! We lay nodes out as kmod 30's `depmod` does (children before their
//! parent), which with the same insertion order gives byte-identical files;
//! readers follow the offsets and accept any layout (kmod 34 and later write
//! parents first).
//!
//! Hand-written rather than taken from a crate: it is ~150 lines, no crate
//! writes this format, and the index is core to the images booting.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// `"BOOTFAST"`, as kmod spells it since module-init-tools added versions.
const MAGIC: u32 = 0xB007_F457;
/// Major 2, minor 1: readers check only the major.
const VERSION: u32 = 0x0002_0001;
const FLAG_PREFIX: u32 = 0x8000_0000;
const FLAG_VALUES: u32 = 0x4000_0000;
const FLAG_CHILDS: u32 = 0x2000_0000;
/// Node offsets live in the low 28 bits of a reference.
const OFFSET_MASK: u32 = 0x0FFF_FFFF;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(
        "{what} {text:?} has a character outside 7-bit ASCII; libkmod's index format cannot hold it"
    )]
    NotAscii { what: &'static str, text: String },
    #[error("a module index would exceed 256 MiB, the largest offset the format can address")]
    TooLarge,
}

#[derive(Debug, Default)]
struct Node {
    /// Label characters after the one that selected this node.
    prefix: Vec<u8>,
    /// `(priority, value)`, lowest priority first; equal priorities newest first.
    values: Vec<(u32, String)>,
    children: BTreeMap<u8, Node>,
}

/// A trie being filled with `key → value` pairs, then written as one index file.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    root: Node,
}

impl IndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` under `key`. A key may hold several values (an alias
    /// several modules provide); libkmod returns them in priority order.
    pub fn insert(&mut self, key: &str, value: &str, priority: u32) -> Result<(), IndexError> {
        check_ascii("index key", key)?;
        check_ascii("index value", value)?;
        let key = key.as_bytes();
        let mut node = &mut self.root;
        let mut i = 0;
        loop {
            // Make node.prefix a prefix of key[i..], splitting the node if not.
            let common = node
                .prefix
                .iter()
                .zip(&key[i..])
                .take_while(|(a, b)| a == b)
                .count();
            if common < node.prefix.len() {
                let ch = node.prefix[common];
                let tail = node.prefix[common + 1..].to_vec();
                node.prefix.truncate(common);
                let old = Node {
                    prefix: tail,
                    values: std::mem::take(&mut node.values),
                    children: std::mem::take(&mut node.children),
                };
                node.children.insert(ch, old);
            }
            i += common;
            let Some(&ch) = key.get(i) else {
                add_value(&mut node.values, value, priority);
                return Ok(());
            };
            match node.children.entry(ch) {
                Entry::Vacant(slot) => {
                    let mut child = Node {
                        prefix: key[i + 1..].to_vec(),
                        ..Node::default()
                    };
                    add_value(&mut child.values, value, priority);
                    slot.insert(child);
                    return Ok(());
                }
                Entry::Occupied(child) => node = child.into_mut(),
            }
            i += 1;
        }
    }

    /// The index file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, IndexError> {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // root offset, patched below
        let root = write_node(&self.root, &mut out)?;
        out[8..12].copy_from_slice(&root.to_be_bytes());
        Ok(out)
    }
}

fn check_ascii(what: &'static str, text: &str) -> Result<(), IndexError> {
    if text.is_ascii() {
        Ok(())
    } else {
        Err(IndexError::NotAscii {
            what,
            text: text.to_string(),
        })
    }
}

/// Before the first value of equal or higher priority, as depmod inserts.
fn add_value(values: &mut Vec<(u32, String)>, value: &str, priority: u32) {
    let at = values
        .iter()
        .position(|(p, _)| *p >= priority)
        .unwrap_or(values.len());
    values.insert(at, (priority, value.to_string()));
}

/// Writes `node` after its children (post-order) and returns its reference.
fn write_node(node: &Node, out: &mut Vec<u8>) -> Result<u32, IndexError> {
    let mut child_refs = Vec::new();
    let range = node
        .children
        .keys()
        .next()
        .zip(node.children.keys().next_back());
    if let Some((&first, &last)) = range {
        for ch in first..=last {
            child_refs.push(match node.children.get(&ch) {
                Some(child) => write_node(child, out)?,
                None => 0,
            });
        }
    }
    let offset = u32::try_from(out.len())
        .ok()
        .filter(|o| o & !OFFSET_MASK == 0)
        .ok_or(IndexError::TooLarge)?;
    let mut reference = offset;
    if !node.prefix.is_empty() {
        out.extend_from_slice(&node.prefix);
        out.push(0);
        reference |= FLAG_PREFIX;
    }
    if let Some((&first, &last)) = range {
        out.push(first);
        out.push(last);
        for r in child_refs {
            out.extend_from_slice(&r.to_be_bytes());
        }
        reference |= FLAG_CHILDS;
    }
    if !node.values.is_empty() {
        let count = u32::try_from(node.values.len()).map_err(|_| IndexError::TooLarge)?;
        out.extend_from_slice(&count.to_be_bytes());
        for (priority, value) in &node.values {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(value.as_bytes());
            out.push(0);
        }
        reference |= FLAG_VALUES;
    }
    Ok(reference)
}

/// kmod's `alias_normalize`: `-` becomes `_` except inside `[...]` character
/// classes; `None` for an unbalanced bracket (depmod warns and skips it).
pub fn normalize_alias(alias: &str) -> Option<String> {
    let mut out = String::with_capacity(alias.len());
    let mut chars = alias.chars();
    while let Some(c) = chars.next() {
        match c {
            '-' => out.push('_'),
            ']' => return None,
            '[' => {
                out.push('[');
                loop {
                    match chars.next() {
                        Some(']') => {
                            out.push(']');
                            break;
                        }
                        Some(c) => out.push(c),
                        None => return None,
                    }
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// kmod's `path_to_modname`: the file name up to its first dot, `-` → `_`.
fn modname_of_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split('.').next().unwrap_or(base).replace('-', "_")
}

/// One installed module as the indexes see it; a slice of these is in
/// `modules.dep` order, and a module's position is its priority.
#[derive(Debug, Clone)]
pub struct IndexedModule<'a> {
    /// `virtio_net`.
    pub name: &'a str,
    /// The `modules.dep` line without its newline: `path: dep dep`.
    pub dep_line: String,
    /// `alias=` values from `.modinfo`, in file order.
    pub aliases: Vec<&'a str>,
    /// Symbols the module exports.
    pub exports: Vec<&'a str>,
}

/// The five `modules.*.bin` files, by file name.
pub fn write_indexes(
    modules: &[IndexedModule<'_>],
    modules_builtin: &str,
    builtin_modinfo: &[u8],
) -> Result<Vec<(&'static str, Vec<u8>)>, IndexError> {
    let mut dep = IndexBuilder::new();
    let mut alias = IndexBuilder::new();
    // A symbol exported twice belongs to the later module, as in depmod.
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    for (idx, m) in modules.iter().enumerate() {
        let prio = priority(idx)?;
        dep.insert(m.name, &m.dep_line, prio)?;
        for a in &m.aliases {
            if let Some(key) = normalize_alias(a) {
                alias.insert(&key, m.name, prio)?;
            }
        }
        for s in &m.exports {
            owners.insert(s, idx);
        }
    }
    let mut symbols = IndexBuilder::new();
    for (sym, idx) in owners {
        symbols.insert(&format!("symbol:{sym}"), modules[idx].name, priority(idx)?)?;
    }
    let mut builtin = IndexBuilder::new();
    for line in modules_builtin.lines() {
        if line.starts_with(|c: char| c.is_ascii_alphabetic()) {
            builtin.insert(&modname_of_path(line), "", 0)?;
        }
    }
    let mut builtin_alias = IndexBuilder::new();
    // `modname.key=value` records, NUL-separated.
    for record in builtin_modinfo.split(|&b| b == 0) {
        let record = String::from_utf8_lossy(record);
        let Some((modname, rest)) = record.split_once('.') else {
            continue;
        };
        let Some(("alias", value)) = rest.split_once('=') else {
            continue;
        };
        if modname.is_empty() || value.is_empty() {
            continue;
        }
        if let Some(key) = normalize_alias(value) {
            builtin_alias.insert(&key, modname, 0)?;
        }
    }
    Ok(vec![
        ("modules.dep.bin", dep.to_bytes()?),
        ("modules.alias.bin", alias.to_bytes()?),
        ("modules.symbols.bin", symbols.to_bytes()?),
        ("modules.builtin.bin", builtin.to_bytes()?),
        ("modules.builtin.alias.bin", builtin_alias.to_bytes()?),
    ])
}

fn priority(idx: usize) -> Result<u32, IndexError> {
    u32::try_from(idx).map_err(|_| IndexError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader written from the format description, to check the writer.
    fn lookup(file: &[u8], key: &str) -> Vec<(u32, String)> {
        let be = |at: usize| u32::from_be_bytes(file[at..at + 4].try_into().unwrap());
        assert_eq!(be(0), MAGIC);
        assert_eq!(be(4) >> 16, 2);
        let mut r = be(8);
        let key = key.as_bytes();
        let mut i = 0;
        loop {
            let mut at = (r & OFFSET_MASK) as usize;
            if r & FLAG_PREFIX != 0 {
                let end = at + file[at..].iter().position(|&b| b == 0).unwrap();
                let prefix = &file[at..end];
                if !key[i..].starts_with(prefix) {
                    return vec![];
                }
                i += prefix.len();
                at = end + 1;
            }
            let mut children = None;
            if r & FLAG_CHILDS != 0 {
                let (first, last) = (file[at], file[at + 1]);
                children = Some((first, last, at + 2));
                at += 2 + 4 * (usize::from(last - first) + 1);
            }
            if i == key.len() {
                let mut out = vec![];
                if r & FLAG_VALUES != 0 {
                    let n = be(at);
                    at += 4;
                    for _ in 0..n {
                        let p = be(at);
                        let end = at + 4 + file[at + 4..].iter().position(|&b| b == 0).unwrap();
                        out.push((p, String::from_utf8(file[at + 4..end].to_vec()).unwrap()));
                        at = end + 1;
                    }
                }
                return out;
            }
            let Some((first, last, refs)) = children else {
                return vec![];
            };
            let ch = key[i];
            if ch < first || ch > last {
                return vec![];
            }
            r = be(refs + 4 * usize::from(ch - first));
            if r == 0 {
                return vec![];
            }
            i += 1;
        }
    }

    #[test]
    fn empty_index_is_a_header_and_a_bare_root() {
        let bytes = IndexBuilder::new().to_bytes().unwrap();
        assert_eq!(
            bytes,
            [0xB0, 0x07, 0xF4, 0x57, 0, 2, 0, 1, 0, 0, 0, 12],
            "root node with nothing in it sits right after the header"
        );
    }

    #[test]
    fn keys_split_shared_prefixes_and_keep_every_value() {
        let mut b = IndexBuilder::new();
        let keys = ["ask", "ate", "on", "once", "one", "a", "ask"];
        for (n, k) in keys.iter().enumerate() {
            b.insert(k, &format!("v{n}"), n as u32).unwrap();
        }
        let f = b.to_bytes().unwrap();
        assert_eq!(lookup(&f, "ask"), [(0, "v0".into()), (6, "v6".into())]);
        assert_eq!(lookup(&f, "ate"), [(1, "v1".into())]);
        assert_eq!(lookup(&f, "on"), [(2, "v2".into())]);
        assert_eq!(lookup(&f, "once"), [(3, "v3".into())]);
        assert_eq!(lookup(&f, "one"), [(4, "v4".into())]);
        assert_eq!(lookup(&f, "a"), [(5, "v5".into())]);
        assert!(lookup(&f, "o").is_empty());
        assert!(lookup(&f, "onc").is_empty());
        assert!(lookup(&f, "zzz").is_empty());
    }

    #[test]
    fn values_sort_by_priority_newest_first_among_equals() {
        let mut b = IndexBuilder::new();
        b.insert("k", "late", 5).unwrap();
        b.insert("k", "early", 1).unwrap();
        b.insert("k", "also-early", 1).unwrap();
        let f = b.to_bytes().unwrap();
        assert_eq!(
            lookup(&f, "k"),
            [
                (1, "also-early".into()),
                (1, "early".into()),
                (5, "late".into())
            ]
        );
    }

    #[test]
    fn non_ascii_is_refused() {
        let err = IndexBuilder::new().insert("é", "x", 0).unwrap_err();
        assert!(err.to_string().contains("7-bit ASCII"), "{err}");
    }

    #[test]
    fn alias_normalisation_keeps_brackets() {
        assert_eq!(
            normalize_alias("pci:v-[a-c]d-").as_deref(),
            Some("pci:v_[a-c]d_")
        );
        assert_eq!(normalize_alias("a]b"), None);
        assert_eq!(normalize_alias("a[b"), None);
    }

    #[test]
    fn builtin_indexes_come_from_the_kernel_lists() {
        let files = write_indexes(
            &[],
            "kernel/fs/ext4/ext4.ko\nkernel/drivers/a/snd-foo.ko\n",
            b"ext4.alias=fs-ext4\0ext4.license=GPL\0crc32c_generic.alias=crypto-crc32c\0",
        )
        .unwrap();
        let get = |n: &str| files.iter().find(|(f, _)| *f == n).unwrap().1.clone();
        let builtin = get("modules.builtin.bin");
        assert_eq!(lookup(&builtin, "snd_foo"), [(0, String::new())]);
        assert_eq!(lookup(&builtin, "ext4"), [(0, String::new())]);
        let alias = get("modules.builtin.alias.bin");
        assert_eq!(lookup(&alias, "fs_ext4"), [(0, "ext4".into())]);
        assert_eq!(
            lookup(&alias, "crypto_crc32c"),
            [(0, "crc32c_generic".into())]
        );
        assert!(lookup(&alias, "GPL").is_empty());
    }
}
