//! The shared-library closure of every ELF binary in the staged tree.
//!
//! A ramdisk has no package manager to pull in libraries later, so every
//! dynamically linked program must find its program interpreter (`PT_INTERP`)
//! and every `DT_NEEDED` library inside the image. We read those from the ELF
//! headers ourselves (no `ldd`, which would run the host's loader on foreign
//! binaries) and resolve each name as glibc's `ld.so` would: `DT_RPATH` (only
//! when there is no `DT_RUNPATH`), `DT_RUNPATH`, the directories listed in the
//! tree's `/etc/ld.so.conf.d/*.conf`, then the standard directories.
//!
//! Each name is looked up first in the tree, then in the *pool*: a directory
//! where the pipeline unpacked dependency packages whose files are not
//! installed wholesale. A library found only in the pool is copied into the
//! tree at the same image path, with the symlink chain that leads to it
//! (`libz.so.1 -> libz.so.1.2.13`), and is closed over in turn.
//!
//! Symlinks are resolved *inside* the tree root (or the pool root): an
//! absolute target such as `/usr/lib/x86_64-linux-gnu/libc.so.6` means that
//! path in the image, never on the host. The tree may use merged-/usr links
//! (`lib -> usr/lib`); copies go through them.
//!
//! A name that an object's own search path cannot find is not yet an error:
//! `ld.so` satisfies a `DT_NEEDED` entry with any object already loaded under
//! that `DT_SONAME`, so a library without a `RUNPATH` of its own works when
//! every program that loads it brings the name in first (systemd's
//! `libsystemd-core-252.so` needs `libsystemd-shared-252.so`, which only the
//! systemd programs' `RUNPATH` finds). So the closure ends with the loader's
//! view of the whole image: each program's load order is simulated, and a
//! name still unresolved is accepted only when at least one program loads
//! the object and every program that does has the name loaded by then.
//! Whatever is left fails the build with [`ElfError::Missing`], naming the
//! object and the soname: a binary in the image that cannot start is a bug
//! found at boot, too late.
//!
//! Only 64-bit ELF files are examined (the images are x86-64); kernel modules
//! (`*.ko*`) are skipped, since they are not loaded by `ld.so`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, ElfFile64, ProgramHeader};
use object::{Endianness, Object};

use crate::debian::arch::{ARCHES, Arch};
use crate::stage::Tree;
use crate::stage::tree::{Last, ResolveError};

/// The directories glibc's `ld.so` searches on Debian when nothing else
/// matches, in its order: the multiarch directories first. An image holds
/// one architecture's libraries, so the triplets of every supported
/// architecture ([`crate::debian::arch::ARCHES`]) can be listed together.
fn standard_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for a in ARCHES {
        dirs.push(PathBuf::from(format!("/lib/{}", a.triplet)));
        dirs.push(PathBuf::from(format!("/usr/lib/{}", a.triplet)));
    }
    dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(PathBuf::from));
    dirs
}

/// Symlink hops allowed while resolving one path (as the kernel's `MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error(
        "{binary} needs {library}, which is neither in the image nor in the unpacked packages \
         (searched {searched}), and no program in the image that loads {binary} brings it in; \
         add the Debian package that ships it to the profile's packages"
    )]
    Missing {
        binary: PathBuf,
        library: String,
        searched: String,
    },
    #[error(
        "{binary} is a malformed ELF file ({why}); remove it or replace it with a working build"
    )]
    Malformed { binary: PathBuf, why: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: too many levels of symbolic links, or a link that leaves the image")]
    SymlinkLoop { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ElfError + '_ {
    move |source| ElfError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What one ELF file asks of the dynamic loader.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DynamicInfo {
    pub interpreter: Option<String>,
    /// `DT_SONAME`: the name other objects' `DT_NEEDED` match once loaded.
    pub soname: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

/// Reads `PT_INTERP`, `DT_NEEDED`, `DT_RPATH` and `DT_RUNPATH`. Returns `None`
/// for files that are not 64-bit ELF for an architecture we build for.
pub fn dynamic_info(data: &[u8], path: &Path) -> Result<Option<DynamicInfo>, ElfError> {
    if data.len() < 5 || &data[..4] != b"\x7fELF" || data[4] != elf::ELFCLASS64.0 {
        return Ok(None);
    }
    let malformed = |why: String| ElfError::Malformed {
        binary: path.to_path_buf(),
        why,
    };
    let file = ElfFile64::<Endianness>::parse(data).map_err(|e| malformed(e.to_string()))?;
    // Firmware blobs can be ELF files for other processors: not ours to load.
    if Arch::from_elf(file.architecture()).is_none() {
        return Ok(None);
    }
    let endian = file.endian();
    let mut info = DynamicInfo::default();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_INTERP {
            let bytes = ph
                .data(endian, data)
                .map_err(|_| malformed("unreadable PT_INTERP".into()))?;
            let s = bytes.split(|&b| b == 0).next().unwrap_or_default();
            info.interpreter = Some(String::from_utf8_lossy(s).into_owned());
        }
    }
    let sections = file.elf_section_table();
    if let Some((dynamic, link)) = sections
        .dynamic(endian, data)
        .map_err(|e| malformed(format!("dynamic section: {e}")))?
    {
        let strings = sections
            .strings(endian, data, link)
            .map_err(|e| malformed(format!("dynamic strings: {e}")))?;
        for d in dynamic {
            let tag = d.d_tag(endian);
            let string = || -> Result<String, ElfError> {
                let off =
                    u32::try_from(d.val(endian)).map_err(|_| malformed("string offset".into()))?;
                let s = strings
                    .get(off)
                    .map_err(|_| malformed("string offset".into()))?;
                Ok(String::from_utf8_lossy(s).into_owned())
            };
            if tag == elf::DT_NEEDED {
                info.needed.push(string()?);
            } else if tag == elf::DT_SONAME {
                info.soname = Some(string()?);
            } else if tag == elf::DT_RPATH {
                info.rpath.extend(string()?.split(':').map(str::to_string));
            } else if tag == elf::DT_RUNPATH {
                info.runpath
                    .extend(string()?.split(':').map(str::to_string));
            }
        }
    }
    Ok(Some(info))
}

/// Makes every dynamically linked ELF file in `tree` complete: copies its
/// interpreter and libraries (recursively) from `pool` when the tree lacks
/// them. Returns the image paths added (`/usr/lib/x86_64-linux-gnu/libz.so.1`,
/// symlinks included), sorted.
pub fn library_closure(tree: &mut Tree, pool: Option<&Path>) -> Result<Vec<PathBuf>, ElfError> {
    let root = tree.root().to_path_buf();
    let conf_dirs = ld_so_conf_dirs(&root);
    let mut queue: VecDeque<PathBuf> = VecDeque::new(); // image paths of ELF files to examine
    for item in walkdir::WalkDir::new(&root).follow_links(false) {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(&root).to_path_buf();
            ElfError::Io {
                path,
                source: e.into(),
            }
        })?;
        if !item.file_type().is_file() || is_kernel_module(item.path()) {
            continue;
        }
        if let Ok(rel) = item.path().strip_prefix(&root) {
            queue.push_back(Path::new("/").join(rel));
        }
    }
    let mut added = BTreeSet::new();
    let mut seen = BTreeSet::new();
    // Every ELF object examined, and the names its own search path missed.
    let mut objects: BTreeMap<PathBuf, DynamicInfo> = BTreeMap::new();
    let mut unresolved: Vec<Unresolved> = Vec::new();
    while let Some(image) = queue.pop_front() {
        if !seen.insert(image.clone()) {
            continue;
        }
        let host = root.join(image.strip_prefix("/").unwrap_or(&image));
        if !looks_like_elf64(&host)? {
            continue;
        }
        let data = std::fs::read(&host).map_err(io_err(&host))?;
        let Some(info) = dynamic_info(&data, &image)? else {
            continue;
        };
        let origin = image.parent().unwrap_or(Path::new("/"));
        let mut wants: Vec<(String, Vec<PathBuf>)> = Vec::new();
        if let Some(interp) = &info.interpreter {
            wants.push((interp.clone(), vec![]));
        }
        let dirs = search_dirs(&info, origin, &conf_dirs);
        for lib in &info.needed {
            wants.push((lib.clone(), dirs.clone()));
        }
        for (name, dirs) in wants {
            let candidates: Vec<PathBuf> = if name.contains('/') {
                vec![PathBuf::from(&name)]
            } else {
                dirs.iter().map(|d| d.join(&name)).collect()
            };
            let mut found = None;
            for c in &candidates {
                if let Some(real) = resolve(&root, c)? {
                    found = Some(real);
                    break;
                }
            }
            if found.is_none()
                && let Some(pool) = pool
            {
                for c in &candidates {
                    if resolve(pool, c)?.is_some() {
                        found = Some(copy_from_pool(&root, pool, c, &mut added)?);
                        break;
                    }
                }
            }
            match found {
                Some(real) => queue.push_back(real),
                None => {
                    let searched = candidates
                        .iter()
                        .filter_map(|c| c.parent())
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    unresolved.push(Unresolved {
                        object: image.clone(),
                        library: name,
                        searched,
                    });
                }
            }
        }
        objects.insert(image, info);
    }
    if let Some(missing) = unresolved_in_every_program(&root, &objects, &conf_dirs, unresolved)? {
        return Err(ElfError::Missing {
            binary: missing.object,
            library: missing.library,
            searched: missing.searched,
        });
    }
    Ok(added.into_iter().collect())
}

/// A `DT_NEEDED` name (or interpreter) that its object's own search path
/// does not find in the image.
#[derive(Debug, Clone)]
struct Unresolved {
    object: PathBuf,
    library: String,
    searched: String,
}

/// The first of `unresolved` that the loader's view of the whole image does
/// not excuse, or `None` when every one is loaded by each program that
/// loads its object (see the module documentation).
fn unresolved_in_every_program(
    root: &Path,
    objects: &BTreeMap<PathBuf, DynamicInfo>,
    conf: &[PathBuf],
    unresolved: Vec<Unresolved>,
) -> Result<Option<Unresolved>, ElfError> {
    if unresolved.is_empty() {
        return Ok(None);
    }
    // Programs: objects with an interpreter and no soname (libc.so.6 has an
    // interpreter too, but it is a library).
    let mut loads: Vec<(BTreeSet<PathBuf>, BTreeSet<String>)> = Vec::new();
    for (image, info) in objects {
        if info.interpreter.is_some() && info.soname.is_none() {
            loads.push(simulate_load(root, objects, conf, image)?);
        }
    }
    for u in unresolved {
        let mut programs = loads.iter().filter(|(paths, _)| paths.contains(&u.object));
        let first = programs.next();
        let excused = first.is_some_and(|(_, names)| names.contains(&u.library))
            && programs.all(|(_, names)| names.contains(&u.library));
        if !excused {
            return Ok(Some(u));
        }
    }
    Ok(None)
}

/// The objects `ld.so` loads for `program` (breadth first, as it does) and
/// the names they satisfy: each `DT_NEEDED` name is matched against the
/// sonames and file names loaded so far, then looked up through the needing
/// object's own search path.
fn simulate_load(
    root: &Path,
    objects: &BTreeMap<PathBuf, DynamicInfo>,
    conf: &[PathBuf],
    program: &Path,
) -> Result<(BTreeSet<PathBuf>, BTreeSet<String>), ElfError> {
    let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<PathBuf> = VecDeque::from([program.to_path_buf()]);
    paths.insert(program.to_path_buf());
    while let Some(image) = queue.pop_front() {
        let Some(info) = objects.get(&image) else {
            continue;
        };
        let origin = image.parent().unwrap_or(Path::new("/"));
        let dirs = search_dirs(info, origin, conf);
        for lib in &info.needed {
            if names.contains(lib) {
                continue;
            }
            let candidates: Vec<PathBuf> = if lib.contains('/') {
                vec![PathBuf::from(lib)]
            } else {
                dirs.iter().map(|d| d.join(lib)).collect()
            };
            for c in &candidates {
                if let Some(real) = resolve(root, c)? {
                    names.insert(lib.clone());
                    if let Some(soname) = objects.get(&real).and_then(|i| i.soname.clone()) {
                        names.insert(soname);
                    }
                    if paths.insert(real.clone()) {
                        queue.push_back(real);
                    }
                    break;
                }
            }
        }
    }
    Ok((paths, names))
}

fn is_kernel_module(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    [&b".ko"[..], b".ko.xz", b".ko.zst", b".ko.gz"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn looks_like_elf64(host: &Path) -> Result<bool, ElfError> {
    let mut head = [0u8; 5];
    let mut f = std::fs::File::open(host).map_err(io_err(host))?;
    match f.read_exact(&mut head) {
        Ok(()) => Ok(&head[..4] == b"\x7fELF" && head[4] == elf::ELFCLASS64.0),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io_err(host)(e)),
    }
}

/// The search list for one object, in `ld.so`'s order.
fn search_dirs(info: &DynamicInfo, origin: &Path, conf: &[PathBuf]) -> Vec<PathBuf> {
    let expand = |d: &String| -> Option<PathBuf> {
        let o = origin.to_string_lossy();
        let d = d.replace("${ORIGIN}", &o).replace("$ORIGIN", &o);
        // `$LIB` and `$PLATFORM` are not used by anything we ship; a path
        // that still has a `$` cannot be resolved and is skipped.
        (d.starts_with('/') && !d.contains('$')).then(|| PathBuf::from(d))
    };
    let mut dirs = Vec::new();
    if info.runpath.is_empty() {
        dirs.extend(info.rpath.iter().filter_map(expand));
    }
    dirs.extend(info.runpath.iter().filter_map(expand));
    dirs.extend(conf.iter().cloned());
    dirs.extend(standard_dirs());
    let mut seen = BTreeSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// Library directories from the tree's `/etc/ld.so.conf.d/*.conf`.
fn ld_so_conf_dirs(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("etc/ld.so.conf.d"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "conf"));
    files.sort();
    let mut dirs = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.starts_with('/') {
                dirs.push(PathBuf::from(line));
            }
        }
    }
    dirs
}

/// Resolves an image path inside `root`, following symlinks as the kernel
/// would if `root` were `/` (by [`Tree::resolve_in`]). Returns the final
/// image path when it names a regular file, `None` when something along the
/// way does not exist.
pub fn resolve(root: &Path, image: &Path) -> Result<Option<PathBuf>, ElfError> {
    resolve_to(root, image, std::fs::Metadata::is_file)
}

/// [`resolve`], keeping the result when `want` accepts what is there.
fn resolve_to(
    root: &Path,
    image: &Path,
    want: fn(&std::fs::Metadata) -> bool,
) -> Result<Option<PathBuf>, ElfError> {
    let rel = Tree::resolve_in(root, image, Last::Follow).map_err(|e| match e {
        ResolveError::Loop { .. } => ElfError::SymlinkLoop {
            path: image.to_path_buf(),
        },
        ResolveError::Io { path, source } => ElfError::Io { path, source },
    })?;
    let host = root.join(&rel);
    match std::fs::symlink_metadata(&host) {
        Ok(md) => Ok(want(&md).then(|| Path::new("/").join(rel))),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            Ok(None)
        }
        Err(e) => Err(io_err(&host)(e)),
    }
}

fn components(p: &Path) -> VecDeque<PathBuf> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(PathBuf::from(s)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

/// Where a new entry at image path `image` goes on disk in the tree: its
/// parent resolved through the tree's directory symlinks (created when
/// missing), plus the file name.
fn tree_target(root: &Path, image: &Path) -> Result<(PathBuf, PathBuf), ElfError> {
    let name = image.file_name().ok_or_else(|| ElfError::SymlinkLoop {
        path: image.to_path_buf(),
    })?;
    let parent = image.parent().unwrap_or(Path::new("/"));
    // Create the parent, following links already in the tree: walk the
    // components and resolve each prefix.
    let mut real_parent = PathBuf::from("/");
    for c in components(parent) {
        let candidate = real_parent.join(&c);
        match resolve_dir(root, &candidate)? {
            Some(dir) => real_parent = dir,
            None => {
                let host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
                std::fs::create_dir_all(&host).map_err(io_err(&host))?;
                real_parent = candidate;
            }
        }
    }
    let image_out = real_parent.join(name);
    let host = root.join(image_out.strip_prefix("/").unwrap_or(&image_out));
    Ok((image_out, host))
}

/// Like [`resolve`], for a directory.
fn resolve_dir(root: &Path, image: &Path) -> Result<Option<PathBuf>, ElfError> {
    resolve_to(root, image, std::fs::Metadata::is_dir)
}

/// Copies `image` from the pool into the tree: each symlink met on the way
/// from the name to the real file is recreated at the same image path, then
/// the file itself. Returns the image path of the copied file.
fn copy_from_pool(
    root: &Path,
    pool: &Path,
    image: &Path,
    added: &mut BTreeSet<PathBuf>,
) -> Result<PathBuf, ElfError> {
    let mut current = image.to_path_buf();
    for _ in 0..MAX_HOPS {
        let parent = current.parent().unwrap_or(Path::new("/")).to_path_buf();
        let pool_parent = resolve_dir(pool, &parent)?.ok_or_else(|| ElfError::SymlinkLoop {
            path: current.clone(),
        })?;
        let name = current.file_name().ok_or_else(|| ElfError::SymlinkLoop {
            path: current.clone(),
        })?;
        let pool_host = pool
            .join(pool_parent.strip_prefix("/").unwrap_or(&pool_parent))
            .join(name);
        let md = std::fs::symlink_metadata(&pool_host).map_err(io_err(&pool_host))?;
        // The tree may already hold this step of the chain (an earlier copy).
        if let Some(real) = resolve(root, &current)? {
            return Ok(real);
        }
        let (image_out, host_out) = tree_target(root, &current)?;
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&pool_host).map_err(io_err(&pool_host))?;
            if std::fs::symlink_metadata(&host_out).is_err() {
                std::os::unix::fs::symlink(&target, &host_out).map_err(io_err(&host_out))?;
                added.insert(image_out);
            }
            current = if target.is_absolute() {
                target
            } else {
                lexical(&parent.join(target))
            };
        } else if md.is_file() {
            std::fs::copy(&pool_host, &host_out).map_err(io_err(&host_out))?;
            added.insert(image_out.clone());
            return Ok(image_out);
        } else {
            return Ok(image_out);
        }
    }
    Err(ElfError::SymlinkLoop {
        path: image.to_path_buf(),
    })
}

/// Removes `.` and `..` without touching the filesystem.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in components(p) {
        if c.as_os_str() == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::write(r.join("usr/lib/libx.so.1.0"), b"x").unwrap();
        symlink("libx.so.1.0", r.join("usr/lib/libx.so.1")).unwrap();
        symlink("/lib/libx.so.1", r.join("usr/lib/abs")).unwrap();
        symlink("../../../../../etc/passwd", r.join("usr/lib/escape")).unwrap();
        assert_eq!(
            resolve(r, Path::new("/lib/libx.so.1")).unwrap(),
            Some(PathBuf::from("/usr/lib/libx.so.1.0"))
        );
        assert_eq!(
            resolve(r, Path::new("/usr/lib/abs")).unwrap(),
            Some(PathBuf::from("/usr/lib/libx.so.1.0"))
        );
        // `..` at the root stays at the root, as in the kernel: no host /etc/passwd.
        assert_eq!(resolve(r, Path::new("/usr/lib/escape")).unwrap(), None);
        assert_eq!(resolve(r, Path::new("/lib/missing")).unwrap(), None);
    }

    #[test]
    fn origin_and_runpath_order() {
        let info = DynamicInfo {
            interpreter: None,
            soname: None,
            needed: vec![],
            rpath: vec!["/ignored".into()],
            runpath: vec!["$ORIGIN/../lib".into(), "/opt/x".into()],
        };
        let dirs = search_dirs(
            &info,
            Path::new("/usr/bin"),
            &[PathBuf::from("/usr/local/lib")],
        );
        assert_eq!(dirs[0], PathBuf::from("/usr/bin/../lib"));
        assert_eq!(dirs[1], PathBuf::from("/opt/x"));
        assert_eq!(dirs[2], PathBuf::from("/usr/local/lib"));
        assert!(
            !dirs.contains(&PathBuf::from("/ignored")),
            "RPATH is ignored when RUNPATH is set"
        );
    }

    /// Compiles C `source` with `cc args` into `out`.
    fn cc(dir: &Path, source: &str, args: &[&str], out: &Path) {
        let src = dir.join("src.c");
        std::fs::write(&src, source).unwrap();
        let st = std::process::Command::new("cc")
            .arg(&src)
            .args(args)
            .arg("-o")
            .arg(out)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(st.success(), "cc {args:?}");
    }

    /// A tree where `liba.so.1` (standard directory, no RUNPATH) needs
    /// `libb.so.1`, which lives in a private directory only `/usr/bin/prog`'s
    /// RUNPATH names: the layout of systemd's libsystemd-core/-shared.
    fn private_library_tree(dir: &Path) -> (PathBuf, PathBuf) {
        let root = dir.join("root");
        let pool = dir.join("pool");
        let libdir = root.join("usr/lib/x86_64-linux-gnu");
        let private = libdir.join("priv");
        std::fs::create_dir_all(&private).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        cc(
            dir,
            "int b(void){return 1;}\n",
            &["-shared", "-fPIC", "-Wl,-soname,libb.so.1"],
            &private.join("libb.so.1"),
        );
        cc(
            dir,
            "int b(void); int a(void){return b();}\n",
            &[
                "-shared",
                "-fPIC",
                "-Wl,-soname,liba.so.1",
                "-Wl,--no-as-needed",
                "-Lroot/usr/lib/x86_64-linux-gnu/priv",
                "-l:libb.so.1",
            ],
            &libdir.join("liba.so.1"),
        );
        cc(
            dir,
            "int a(void); int b(void); int main(void){return a()+b();}\n",
            &[
                "-Wl,--no-as-needed",
                "-Lroot/usr/lib/x86_64-linux-gnu",
                "-Lroot/usr/lib/x86_64-linux-gnu/priv",
                "-l:liba.so.1",
                "-l:libb.so.1",
                "-Wl,--enable-new-dtags,-rpath,/usr/lib/x86_64-linux-gnu/priv",
            ],
            &root.join("usr/bin/prog"),
        );
        // libc and the loader come from the pool, as from Debian's libc6.
        for lib in [
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib64/ld-linux-x86-64.so.2",
        ] {
            let dest = pool.join(lib);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(Path::new("/").join(lib), &dest).unwrap();
        }
        (root, pool)
    }

    #[test]
    fn a_name_every_loading_program_brings_in_is_resolved_across_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let (root, pool) = private_library_tree(dir.path());
        let info = dynamic_info(
            &std::fs::read(root.join("usr/lib/x86_64-linux-gnu/liba.so.1")).unwrap(),
            Path::new("liba"),
        )
        .unwrap()
        .unwrap();
        assert!(info.runpath.is_empty() && info.rpath.is_empty(), "{info:?}");
        assert_eq!(info.soname.as_deref(), Some("liba.so.1"));
        let mut tree = Tree::new(&root);
        let added = library_closure(&mut tree, Some(&pool)).unwrap();
        assert!(
            added.contains(&PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")),
            "{added:?}"
        );
    }

    #[test]
    fn a_name_no_loading_program_brings_in_fails_naming_object_and_soname() {
        let dir = tempfile::tempdir().unwrap();
        let (root, pool) = private_library_tree(dir.path());
        // A second program loads liba.so.1 without the private RUNPATH: in
        // its process libb.so.1 is not found, so the image is broken.
        cc(
            dir.path(),
            "int a(void); int main(void){return a();}\n",
            &[
                "-Wl,--no-as-needed",
                "-Lroot/usr/lib/x86_64-linux-gnu",
                "-Wl,--allow-shlib-undefined",
                "-l:liba.so.1",
            ],
            &root.join("usr/bin/other"),
        );
        let mut tree = Tree::new(&root);
        let liba_needs_libb = (
            PathBuf::from("/usr/lib/x86_64-linux-gnu/liba.so.1"),
            "libb.so.1".to_string(),
        );
        assert_eq!(missing(&mut tree, &pool), liba_needs_libb);

        // No program at all loads liba.so.1: nothing excuses the name.
        std::fs::remove_file(root.join("usr/bin/other")).unwrap();
        std::fs::remove_file(root.join("usr/bin/prog")).unwrap();
        assert_eq!(missing(&mut tree, &pool), liba_needs_libb);
    }

    /// Runs the closure, which must fail with [`ElfError::Missing`]: which
    /// object needs which library. (How the message reads is checked on a
    /// real binary in `tests/modules.rs`.)
    fn missing(tree: &mut Tree, pool: &Path) -> (PathBuf, String) {
        match library_closure(tree, Some(pool)) {
            Err(ElfError::Missing {
                binary, library, ..
            }) => (binary, library),
            other => panic!("expected a missing library, got {other:?}"),
        }
    }
}
