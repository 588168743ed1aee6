//! The initramfs packer against random trees, GNU cpio and the real
//! compression tools.
//!
//! Every generated tree is packed, then read back three ways: by a small
//! newc reader written here from the format description (independent of the
//! writer), by `cpio -t`, and by extracting with `cpio -idm` as root and
//! comparing the result with the tree (contents, symlinks, hardlink identity,
//! device numbers).

#[path = "common/run.rs"]
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipa_build::initramfs::{Compression, PackOptions, PackReport, cpio, pack};
use ipa_build::stage::{Meta, Special, Tree};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// A minimal newc reader, written from the format description.

#[derive(Debug, Clone)]
struct Member {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    rdev: (u32, u32),
    data: Vec<u8>,
}

fn read_newc(mut buf: &[u8]) -> Vec<(String, Member)> {
    let mut out = Vec::new();
    let field = |h: &[u8], i: usize| {
        u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap()
    };
    let pad4 = |n: usize| (4 - n % 4) % 4;
    let start_len = buf.len();
    loop {
        assert_eq!(
            &buf[..6],
            b"070701",
            "bad magic at offset {}",
            start_len - buf.len()
        );
        let h = &buf[..110];
        let namesize = field(h, 11) as usize;
        let filesize = field(h, 6) as usize;
        let name_end = 110 + namesize;
        let name = std::str::from_utf8(&buf[110..name_end - 1])
            .unwrap()
            .to_string();
        assert_eq!(buf[name_end - 1], 0, "name not NUL-terminated");
        let data_start = name_end + pad4(name_end);
        let data = buf[data_start..data_start + filesize].to_vec();
        let m = Member {
            ino: field(h, 0),
            mode: field(h, 1),
            uid: field(h, 2),
            gid: field(h, 3),
            nlink: field(h, 4),
            mtime: field(h, 5),
            rdev: (field(h, 9), field(h, 10)),
            data,
        };
        assert_eq!(
            (field(h, 7), field(h, 8)),
            (0, 0),
            "devmajor/devminor must be constant"
        );
        let next = data_start + filesize + pad4(filesize);
        buf = &buf[next..];
        if name == "TRAILER!!!" {
            assert!(buf.iter().all(|&b| b == 0), "garbage after the trailer");
            return out;
        }
        out.push((name, m));
    }
}

// ---------------------------------------------------------------------------
// Random trees.

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A hardlink to the n-th regular file created so far (mod count).
    Hardlink(usize),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Debug, Clone)]
struct Op {
    parent: usize,
    name: String,
    kind: Kind,
    meta: Option<(u32, u32, u32)>,
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9_.-]{1,12}",
        1 => "[a-z]{200,240}",
    ]
    .prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Dir),
        5 => prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 1..9),
            proptest::collection::vec(any::<u8>(), 1..70_000),
        ].prop_map(Kind::File),
        2 => "[a-z/._-]{1,60}".prop_map(Kind::Symlink),
        2 => (0usize..100).prop_map(Kind::Hardlink),
        1 => (1u32..300, 0u32..70_000).prop_map(|(a, b)| Kind::Char(a, b)),
        1 => (1u32..300, 0u32..300).prop_map(|(a, b)| Kind::Block(a, b)),
        1 => Just(Kind::Fifo),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    (
        0usize..1000,
        name_strategy(),
        kind_strategy(),
        proptest::option::of((
            0u32..70_000,
            0u32..70_000,
            prop_oneof![
                Just(0o644u32),
                Just(0o755),
                Just(0o4755),
                Just(0o600),
                Just(0o1777)
            ],
        )),
    )
        .prop_map(|(parent, name, kind, meta)| Op {
            parent,
            name,
            kind,
            meta,
        })
}

/// What we expect to find in the archive for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// uid, gid, permission bits.
type Perms = (u32, u32, u32);

struct Built {
    _dir: tempfile::TempDir,
    tree: Tree,
    expect: BTreeMap<String, (Expect, Option<Perms>)>,
    /// Groups of paths that must be hardlinks of each other.
    links: Vec<BTreeSet<String>>,
}

fn build(ops: &[Op]) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut tree = Tree::new(&root);
    let mut dirs: Vec<String> = vec![String::new()];
    let mut files: Vec<String> = Vec::new();
    let mut expect = BTreeMap::new();
    let mut link_groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for op in ops {
        let parent = &dirs[op.parent % dirs.len()];
        let path = if parent.is_empty() {
            op.name.clone()
        } else {
            format!("{parent}/{}", op.name)
        };
        if expect.contains_key(&path) || path.len() > 3000 {
            continue;
        }
        let host = root.join(&path);
        let meta = |perms: Option<(u32, u32, u32)>| perms.map(|(u, g, m)| Meta::exact(u, g, m));
        let e = match &op.kind {
            Kind::Dir => {
                std::fs::create_dir(&host).unwrap();
                dirs.push(path.clone());
                Expect::Dir
            }
            Kind::File(data) => {
                std::fs::write(&host, data).unwrap();
                files.push(path.clone());
                Expect::File(data.clone())
            }
            Kind::Symlink(t) => {
                std::os::unix::fs::symlink(t, &host).unwrap();
                Expect::Symlink(t.clone())
            }
            Kind::Hardlink(n) => {
                if files.is_empty() {
                    continue;
                }
                let first = files[n % files.len()].clone();
                std::fs::hard_link(root.join(&first), &host).unwrap();
                let data = std::fs::read(&host).unwrap();
                // All names of a group must carry the same metadata.
                let group_meta = expect.get(&first).and_then(|(_, m): &(Expect, _)| *m);
                let root_of_group = link_groups
                    .iter()
                    .find(|(_, g)| g.contains(&first))
                    .map(|(k, _)| k.clone())
                    .unwrap_or(first.clone());
                link_groups
                    .entry(root_of_group)
                    .or_insert_with(|| BTreeSet::from([first.clone()]))
                    .insert(path.clone());
                if let Some(m) = meta(group_meta) {
                    tree.set_meta(Path::new(&path), m).unwrap();
                }
                expect.insert(path, (Expect::File(data), group_meta));
                continue;
            }
            Kind::Char(a, b) | Kind::Block(a, b) => {
                let (major, minor) = (*a, *b);
                let (special, expected) = if matches!(op.kind, Kind::Char(..)) {
                    (
                        Special::CharDevice { major, minor },
                        Expect::Char(major, minor),
                    )
                } else {
                    (
                        Special::BlockDevice { major, minor },
                        Expect::Block(major, minor),
                    )
                };
                tree.add_special(Path::new(&path), special, Meta::default())
                    .unwrap();
                expected
            }
            Kind::Fifo => {
                tree.add_special(Path::new(&path), Special::Fifo, Meta::default())
                    .unwrap();
                Expect::Fifo
            }
        };
        let is_special = matches!(e, Expect::Char(..) | Expect::Block(..) | Expect::Fifo);
        let is_symlink = matches!(e, Expect::Symlink(_));
        let m = if is_special || is_symlink {
            None
        } else {
            op.meta
        };
        if let Some(mm) = meta(m) {
            tree.set_meta(Path::new(&path), mm).unwrap();
        }
        expect.insert(path, (e, m));
    }
    // Files written through a hardlink group share the first name's metadata.
    Built {
        _dir: dir,
        tree,
        expect,
        links: link_groups.into_values().collect(),
    }
}

fn pack_bytes(tree: &Tree, compression: Compression, threads: usize) -> (Vec<u8>, PackReport) {
    let opts = PackOptions {
        compression,
        level: None,
        source_date_epoch: 1_700_000_000,
        threads,
    };
    let mut out = Vec::new();
    let report = pack(tree, &opts, &mut out).unwrap();
    (out, report)
}

fn check_members(b: &Built, archive: &[u8]) {
    let members = read_newc(archive);
    let names: Vec<&String> = members.iter().map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(names, sorted, "entries must be sorted bytewise");
    let by_name: BTreeMap<&str, &Member> = members.iter().map(|(n, m)| (n.as_str(), m)).collect();
    assert_eq!(by_name.len(), b.expect.len(), "one entry per path");
    for (_, m) in &members {
        assert!(m.mtime <= 1_700_000_000, "mtime clamped");
    }
    for (path, (e, meta)) in &b.expect {
        let m = by_name
            .get(path.as_str())
            .unwrap_or_else(|| panic!("{path} missing"));
        // Parent directories come first.
        if let Some((parent, _)) = path.rsplit_once('/') {
            let pi = members.iter().position(|(n, _)| n == parent).unwrap();
            let ci = members.iter().position(|(n, _)| n == path).unwrap();
            assert!(pi < ci, "{parent} after {path}");
        }
        let (uid, gid, perms) = meta.unwrap_or((0, 0, u32::MAX));
        assert_eq!((m.uid, m.gid), (uid, gid), "{path}");
        if perms != u32::MAX {
            assert_eq!(m.mode & 0o7777, perms, "{path}");
        }
        match e {
            Expect::Dir => assert_eq!(m.mode & cpio::S_IFMT, cpio::S_IFDIR, "{path}"),
            Expect::File(data) => {
                assert_eq!(m.mode & cpio::S_IFMT, cpio::S_IFREG, "{path}");
                let in_group = b.links.iter().find(|g| g.contains(path));
                match in_group {
                    None => {
                        assert_eq!(&m.data, data, "{path}");
                        assert_eq!(m.nlink, 1, "{path}");
                    }
                    Some(g) => {
                        assert_eq!(m.nlink as usize, g.len(), "{path}");
                        let first = g
                            .iter()
                            .min_by(|a, b| a.as_bytes().cmp(b.as_bytes()))
                            .unwrap();
                        for other in g {
                            assert_eq!(
                                by_name[other.as_str()].ino,
                                m.ino,
                                "{path} and {other} share an inode"
                            );
                        }
                        if path == first {
                            assert_eq!(&m.data, data, "{path} carries the data");
                        } else {
                            assert!(m.data.is_empty(), "{path} must not repeat the data");
                        }
                    }
                }
            }
            Expect::Symlink(t) => {
                assert_eq!(m.mode & cpio::S_IFMT, cpio::S_IFLNK, "{path}");
                assert_eq!(m.data, t.as_bytes(), "{path}");
            }
            Expect::Char(a, bb) => {
                assert_eq!(m.mode & cpio::S_IFMT, cpio::S_IFCHR, "{path}");
                assert_eq!(m.rdev, (*a, *bb));
            }
            Expect::Block(a, bb) => {
                assert_eq!(m.mode & cpio::S_IFMT, cpio::S_IFBLK, "{path}");
                assert_eq!(m.rdev, (*a, *bb));
            }
            Expect::Fifo => assert_eq!(m.mode & cpio::S_IFMT, cpio::S_IFIFO, "{path}"),
        }
    }
    // Inodes: distinct per non-linked entry, 1..=n in order of first appearance.
    let mut firsts: Vec<u32> = Vec::new();
    for (_, m) in &members {
        if !firsts.contains(&m.ino) {
            firsts.push(m.ino);
        }
    }
    assert_eq!(
        firsts,
        (1..=firsts.len() as u32).collect::<Vec<_>>(),
        "inodes renumbered from 1 in order"
    );
}

fn gnu_cpio_list(archive: &Path) -> Vec<String> {
    let out = run::quiet(
        Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(archive),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn gnu_cpio_extract(b: &Built, archive: &Path) {
    let dest = tempfile::tempdir().unwrap();
    let mut out = Command::new("cpio");
    out.args(["-idm", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(archive)
        .current_dir(dest.path())
        .stdin(Stdio::null());
    run::quiet(&mut out);
    for (path, (e, meta)) in &b.expect {
        let p = dest.path().join(path);
        let md = std::fs::symlink_metadata(&p)
            .unwrap_or_else(|err| panic!("{path} not extracted: {err}"));
        if let Some((u, g, perms)) = meta {
            assert_eq!((md.uid(), md.gid()), (*u, *g), "{path}");
            if !matches!(e, Expect::Dir) {
                assert_eq!(md.permissions().mode() & 0o7777, *perms, "{path}");
            }
        }
        match e {
            Expect::Dir => assert!(md.is_dir(), "{path}"),
            Expect::File(data) => assert_eq!(&std::fs::read(&p).unwrap(), data, "{path}"),
            Expect::Symlink(t) => {
                assert_eq!(std::fs::read_link(&p).unwrap(), PathBuf::from(t), "{path}")
            }
            Expect::Char(a, bb) => {
                assert!(md.file_type().is_char_device(), "{path}");
                assert_eq!(md.rdev(), libc_makedev(*a, *bb), "{path}");
            }
            Expect::Block(a, bb) => {
                assert!(md.file_type().is_block_device(), "{path}");
                assert_eq!(md.rdev(), libc_makedev(*a, *bb), "{path}");
            }
            Expect::Fifo => assert!(md.file_type().is_fifo(), "{path}"),
        }
        if matches!(e, Expect::File(_)) {
            assert!(md.mtime() <= 1_700_000_000, "{path}: mtime clamped");
        }
    }
    for g in &b.links {
        let inos: BTreeSet<u64> = g
            .iter()
            .map(|p| std::fs::metadata(dest.path().join(p)).unwrap().ino())
            .collect();
        assert_eq!(
            inos.len(),
            1,
            "hardlinks {g:?} were extracted as separate files"
        );
    }
}

fn libc_makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (major as u64, minor as u64);
    ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let b = build(&ops);
        let (archive, report) = pack_bytes(&b.tree, Compression::None, 2);
        prop_assert_eq!(report.entries, b.expect.len());
        prop_assert_eq!(report.uncompressed_bytes, archive.len() as u64);
        prop_assert_eq!(report.compressed_bytes, archive.len() as u64);
        check_members(&b, &archive);

        // Same input, same bytes.
        let (again, report2) = pack_bytes(&b.tree, Compression::None, 1);
        prop_assert!(archive == again, "packing twice gave different bytes");
        prop_assert_eq!(report.sha256, report2.sha256);

        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &archive).unwrap();
        let listed = gnu_cpio_list(file.path());
        let want: Vec<String> = read_newc(&archive).into_iter().map(|(n, _)| n).collect();
        prop_assert_eq!(listed, want);
        gnu_cpio_extract(&b, file.path());
    }
}

/// A tree with a bit of everything, used by the compression tests.
fn sample_tree() -> Built {
    let mut ops = Vec::new();
    let mut seed: u64 = 0x1234_5678;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300 {
        let kind = match i % 6 {
            0 => Kind::Dir,
            1..=3 => {
                let len = (next() % 60_000) as usize;
                Kind::File(
                    (0..len)
                        .map(|j| {
                            if j % 4 == 0 {
                                next() as u8
                            } else {
                                b"abcdefgh"[j % 8]
                            }
                        })
                        .collect(),
                )
            }
            4 => Kind::Symlink(format!("../target-{i}")),
            _ => Kind::Hardlink(next() as usize),
        };
        ops.push(Op {
            parent: next() as usize,
            name: format!("n{i}"),
            kind,
            meta: None,
        });
    }
    build(&ops)
}

fn run_tool(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn every_compression_round_trips_through_the_cli_tools_and_ignores_thread_count() {
    let b = sample_tree();
    let (plain, _) = pack_bytes(&b.tree, Compression::None, 2);
    check_members(&b, &plain);
    for (kind, tool) in [
        (Compression::Zstd, "zstd"),
        (Compression::Gzip, "gzip"),
        (Compression::Xz, "xz"),
    ] {
        let (packed, report) = pack_bytes(&b.tree, kind, 1);
        assert_eq!(report.uncompressed_bytes, plain.len() as u64, "{kind}");
        assert_eq!(report.compressed_bytes, packed.len() as u64, "{kind}");
        assert!(packed.len() < plain.len(), "{kind} did not compress");
        let back = run_tool(tool, &["-d", "-c"], &packed);
        assert!(back == plain, "{tool} -d gave a different archive");
        for threads in [2, 4] {
            let (other, _) = pack_bytes(&b.tree, kind, threads);
            assert!(
                other == packed,
                "{kind}: {threads} threads changed the output"
            );
        }
    }
}

#[test]
fn xz_output_uses_the_crc32_check() {
    let b = sample_tree();
    let (packed, _) = pack_bytes(&b.tree, Compression::Xz, 2);
    let file = tempfile::Builder::new().suffix(".xz").tempfile().unwrap();
    std::fs::write(file.path(), &packed).unwrap();
    let out = Command::new("xz")
        .args(["-lvv"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let check_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Check:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(check_line.contains("CRC32"), "{check_line}");
}

#[test]
fn a_socket_in_the_tree_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let tree = Tree::new(dir.path());
    let err = pack(&tree, &PackOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("run.sock"), "{err}");
}

#[test]
fn a_host_file_mode_is_kept_without_a_meta_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tool"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("tool"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let tree = Tree::new(dir.path());
    let (archive, _) = pack_bytes(&tree, Compression::None, 1);
    let members = read_newc(&archive);
    assert_eq!(members[0].1.mode, cpio::S_IFREG | 0o750);
    assert_eq!(
        (members[0].1.uid, members[0].1.gid),
        (0, 0),
        "host owner must not leak into the image"
    );
}
