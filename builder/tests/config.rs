//! Profiles and elements: loading, merging, resolving, and the exact wording
//! and location of every configuration error (golden tests: a change in a
//! message or a line number must show up here).

#[path = "common/elements.rs"]
mod elements;

use std::path::{Path, PathBuf};

use ipa_build::config::diag::{ConfigError, ErrorKind};
use ipa_build::config::element::{self, DeviceKind, Mode};
use ipa_build::config::options::Overrides;
use ipa_build::config::profile::{self, Compression, Dependencies, Format, InitStyle};

const FIX: &str = "tests/fixtures/config";

fn profile_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from(FIX).join("profiles")]
}

fn element_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from(FIX).join("elements")]
}

fn load_err(name: &str) -> ConfigError {
    match profile::load(name, &profile_dirs()) {
        Ok(p) => panic!("profile {name} loaded but should fail: {p:?}"),
        Err(e) => e,
    }
}

fn resolve_err(name: &str) -> ConfigError {
    let p = profile::load(name, &profile_dirs()).unwrap();
    match element::resolve(&p, &element_dirs()) {
        Ok(e) => panic!("profile {name} resolved but should fail: {e:?}"),
        Err(e) => e,
    }
}

fn element_err(name: &str) -> ConfigError {
    let dir = Path::new(FIX).join("elements-bad").join(name);
    match element::load(name, &dir) {
        Ok(e) => panic!("element {name} loaded but should fail: {e:?}"),
        Err(e) => e,
    }
}

/// Compares a rendered error with the expected text in
/// `fixtures/config/expected/NAME.txt` (whose one final newline is the
/// file's, not the message's), showing both in full on failure.
fn golden(e: &ConfigError, name: &str) {
    let path = Path::new(FIX).join("expected").join(format!("{name}.txt"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let expected = text.strip_suffix('\n').unwrap_or(&text);
    let got = e.to_string();
    assert_eq!(
        got, expected,
        "\n--- got ---\n{got}\n--- expected ---\n{expected}\n"
    );
}

/// A test named NAME: the error EXPR (of kind KIND, when given) renders as
/// the golden text `fixtures/config/expected/NAME.txt`.
/// Declares one golden-message test per row: `name: error => Kind,` (the
/// kind is optional). A table, so that adding a case is one line.
macro_rules! golden_tests {
    ($($name:ident: $err:expr $(=> $kind:ident)?),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let e = $err;
                $(assert_eq!(e.kind(), ErrorKind::$kind);)?
                golden(&e, stringify!($name));
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// Merging and defaults.

#[test]
fn minimal_profile_gets_every_default() {
    let p = profile::load("minimal", &profile_dirs()).unwrap();
    assert_eq!(p.name, "minimal");
    assert_eq!(p.description, "Only what is required");
    assert_eq!(p.init, InitStyle::Busybox);
    assert!(p.elements.is_empty() && p.packages.is_empty() && p.scrub.is_empty());
    assert!(p.debian.sources.is_empty(), "empty sources = the host's");
    assert_eq!(p.debian.arch, "amd64");
    assert_eq!(p.debian.dependencies, Dependencies::Full);
    assert_eq!(p.kernel.package, "linux-image-amd64");
    assert_eq!(p.kernel.cmdline, "");
    assert_eq!(p.output.name, "minimal");
    assert_eq!(p.output.formats, vec![Format::Kernel, Format::Initramfs]);
    assert_eq!(p.output.compression, Compression::Zstd);
    assert_eq!(p.output.level, None);
    assert_eq!(p.output.iso_label, None);
    assert_eq!(p.size_budget, profile::SizeBudget::default());
    assert!(p.audit.allow.is_empty());
    assert_eq!(p.source, Path::new(FIX).join("profiles/minimal.yaml"));
    assert_eq!(p.chain, vec![p.source.clone()]);
}

#[test]
fn child_appends_lists_and_overrides_scalars() {
    let p = profile::load("child", &profile_dirs()).unwrap();
    assert_eq!(p.description, "Rescue image built on base");
    assert_eq!(p.init, InitStyle::Busybox, "inherited from base");
    // Appended, parent first, duplicates dropped keeping the first.
    assert_eq!(p.elements, ["kernel", "busybox-init", "agent", "rescue"]);
    assert_eq!(p.packages, ["pciutils", "iproute2"]);
    assert_eq!(p.exclude, ["/usr/share/doc/**"]);
    assert_eq!(p.scrub, ["/var/log/**", "/root/.cache/**"]);
    assert_eq!(p.kernel.modules, ["virtio_net", "e1000e", "ata_piix"]);
    // Scalars: the child wins.
    assert_eq!(p.kernel.cmdline, "console=tty0 quiet");
    assert_eq!(p.output.name, "rescue");
    assert_eq!(p.output.compression, Compression::Xz);
    assert_eq!(p.output.level, Some(9));
    assert_eq!(p.output.iso_label.as_deref(), Some("IPA_RESCUE"));
    assert_eq!(
        p.output.formats,
        [Format::Kernel, Format::Initramfs, Format::Iso]
    );
    // Sources replace the parent's list, trailing slash trimmed, keyring kept.
    assert_eq!(p.debian.sources.len(), 1);
    assert_eq!(p.debian.sources[0].uri, "file:///srv/mirror/debian");
    assert_eq!(p.debian.sources[0].components, ["main", "contrib"]);
    assert_eq!(
        p.debian.sources[0].keyring,
        Path::new("/etc/apt/trusted.gpg.d/mirror.gpg")
    );
    // A nested scalar set only by the parent survives.
    assert_eq!(p.debian.dependencies, Dependencies::Libraries);
    // Size budget merges field by field.
    assert_eq!(p.size_budget.kernel, Some(12 << 20));
    assert_eq!(p.size_budget.initramfs, Some(20 << 20));
    assert_eq!(p.size_budget.iso, Some(3 << 29));
    let rules: Vec<&str> = p.audit.allow.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(
        rules,
        ["/etc/ssl/certs/snakeoil.pem", "/etc/dropbear/example_key"]
    );
    let dir = Path::new(FIX).join("profiles");
    assert_eq!(p.chain, vec![dir.join("base.yaml"), dir.join("child.yaml")]);
    // Every value remembers the file and line that set it.
    let at = |field: &str, item: Option<&str>| {
        let s = p.site(field, item).unwrap();
        (
            s.path.file_name().unwrap().to_str().unwrap().to_string(),
            s.line,
            s.column,
        )
    };
    assert_eq!(
        at("output.compression", None),
        ("child.yaml".into(), 18, 16)
    );
    assert_eq!(at("size_budget.kernel", None), ("base.yaml".into(), 21, 11));
    assert_eq!(
        at("packages", Some("pciutils")),
        ("base.yaml".into(), 5, 12)
    );
    assert_eq!(
        at("packages", Some("iproute2")),
        ("child.yaml".into(), 4, 22)
    );
    assert_eq!(
        at("kernel.modules", Some("ata_piix")),
        ("child.yaml".into(), 13, 13)
    );
    assert!(p.site("output.level", Some("9")).is_none());
}

#[test]
fn base_default_keyring_applies() {
    let p = profile::load("base", &profile_dirs()).unwrap();
    assert_eq!(
        p.debian.sources[0].keyring,
        Path::new(profile::DEFAULT_KEYRING)
    );
    assert_eq!(p.debian.sources[0].suites, ["bookworm", "bookworm-updates"]);
}

#[test]
fn three_level_chain_through_a_relative_path() {
    let p = profile::load(&format!("{FIX}/profiles/grandchild.yaml"), &profile_dirs()).unwrap();
    let dir = Path::new(FIX).join("profiles");
    assert_eq!(p.chain.len(), 3);
    assert_eq!(p.chain[0], dir.join("base.yaml"));
    assert_eq!(p.chain[2], dir.join("grandchild.yaml"));
    assert_eq!(p.init, InitStyle::Systemd);
    assert_eq!(p.output.name, "rescue", "set by the middle profile");
    assert_eq!(p.name, "grandchild");
    assert_eq!(p.elements, ["kernel", "busybox-init", "agent", "rescue"]);
}

#[test]
fn earlier_profile_dir_wins() {
    let tmp = temp_profiles(&[(
        "minimal.yaml",
        "description: My own minimal\ninit: systemd\n",
    )]);
    let dirs = vec![
        tmp.path().to_path_buf(),
        PathBuf::from(FIX).join("profiles"),
    ];
    let p = profile::load("minimal", &dirs).unwrap();
    assert_eq!(p.description, "My own minimal");
    let listed = profile::list(&[tmp.path().to_path_buf()]).unwrap();
    assert_eq!(
        listed,
        [("minimal".to_string(), "My own minimal".to_string())]
    );
}

#[test]
fn profile_serializes_for_the_manifest() {
    let p = profile::load("child", &profile_dirs()).unwrap();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["output"]["compression"], "xz");
    assert_eq!(v["init"], "busybox");
    assert_eq!(v["size_budget"]["initramfs"], 20 << 20);
}

#[test]
fn sizes_parse() {
    use ipa_build::config::diag::Scalar;
    let s = |t: &str| profile::parse_size(&Scalar::Str(t.to_string()));
    assert_eq!(s("20MiB"), Ok(20 << 20));
    assert_eq!(s("512 KiB"), Ok(512 << 10));
    assert_eq!(s("1.5GiB"), Ok(3 << 29));
    assert_eq!(s("20MB"), Ok(20_000_000));
    assert_eq!(s("4096"), Ok(4096));
    assert_eq!(profile::parse_size(&Scalar::Int(7)), Ok(7));
    assert!(s("MiB").is_err());
    assert!(s("1.2.3MiB").is_err());
    assert!(profile::parse_size(&Scalar::Int(-1)).is_err());
}

// ---------------------------------------------------------------------------
// Elements.

#[test]
fn elements_resolve_in_dependency_order() {
    let p = profile::load("child", &profile_dirs()).unwrap();
    let els = element::resolve(&p, &element_dirs()).unwrap();
    let names: Vec<&str> = els.iter().map(|e| e.name.as_str()).collect();
    // Listed order is kernel, busybox-init, agent, rescue; every dependency first.
    assert_eq!(names, ["kernel", "busybox-init", "agent", "rescue"]);
}

#[test]
fn dependencies_come_first_even_when_listed_later() {
    let tmp = temp_profiles(&[(
        "p.yaml",
        "description: order test\ninit: busybox\nelements: [rescue, kernel]\n",
    )]);
    let p = profile::load("p", &[tmp.path().to_path_buf()]).unwrap();
    let els = element::resolve(&p, &element_dirs()).unwrap();
    let names: Vec<&str> = els.iter().map(|e| e.name.as_str()).collect();
    // rescue needs agent and busybox-init, both need kernel. Ties among the
    // unlisted go by name (agent < busybox-init).
    assert_eq!(names, ["kernel", "agent", "busybox-init", "rescue"]);
}

#[test]
fn element_fields_are_typed_with_defaults() {
    let dir = Path::new(FIX).join("elements/busybox-init");
    let e = element::load("busybox-init", &dir).unwrap();
    assert_eq!(e.init, Some(InitStyle::Busybox));
    assert_eq!(e.depends, ["kernel"]);
    assert_eq!(e.directories[2].path, Path::new("/tmp"));
    assert_eq!(e.directories[2].attrs.mode, Mode(0o1777));
    assert_eq!(e.devices[0].kind, DeviceKind::Char);
    assert_eq!((e.devices[0].major, e.devices[0].minor), (5, 1));
    assert_eq!(e.devices[1].kind, DeviceKind::Fifo);
    assert_eq!(e.devices[1].attrs.mode, Mode(0o600), "default device mode");
    assert_eq!(e.files[0].source, dir.join("files/etc/inittab"));
    assert_eq!(e.files[0].attrs.mode, Mode(0o644));
    assert_eq!(e.files_dir, Some(dir.join("files")));
    assert_eq!(e.cmdline, "rdinit=/init");
    assert!(e.hooks.is_empty());
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["directories"][0]["mode"], "0555");
    let rescue = element::load("rescue", &Path::new(FIX).join("elements/rescue")).unwrap();
    assert_eq!(rescue.directories[0].attrs.owner, 1000);
    assert_eq!(rescue.files[0].attrs.group, 42);
    let agent = element::load("agent", &Path::new(FIX).join("elements/agent")).unwrap();
    assert_eq!(
        agent.agent.as_deref(),
        Some(Path::new("/usr/bin/ipa-agent"))
    );
}

#[test]
fn hooks_are_listed_in_name_order_and_must_be_executable() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = elements::write_element(tmp.path(), "hooked", "description: has hooks\n");
    std::fs::create_dir(dir.join("hooks")).unwrap();
    for name in ["20-second", "10-first"] {
        let p = dir.join("hooks").join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(dir.join("hooks/.10-first.swp"), "").unwrap();
    let e = element::load("hooked", &dir).unwrap();
    assert_eq!(
        e.hooks,
        [dir.join("hooks/10-first"), dir.join("hooks/20-second")]
    );

    let bad = dir.join("hooks/30-not-executable");
    std::fs::write(&bad, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = element::load("hooked", &dir).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
    let shown = err
        .to_string()
        .replace(&tmp.path().display().to_string(), "TMP");
    assert_eq!(
        shown,
        "error: hook TMP/hooked/hooks/30-not-executable is not executable\n  = help: run `chmod +x TMP/hooked/hooks/30-not-executable`"
    );
}

#[test]
fn first_element_dir_wins() {
    let tmp = tempfile::tempdir().unwrap();
    elements::write_element(tmp.path(), "kernel", "description: My own kernel\n");
    let p = profile::load("minimal", &profile_dirs()).unwrap();
    let mut p = p;
    p.elements = vec!["agent".to_string()];
    let dirs = vec![
        tmp.path().to_path_buf(),
        PathBuf::from(FIX).join("elements"),
    ];
    let els = element::resolve(&p, &dirs).unwrap();
    assert_eq!(els[0].name, "kernel");
    assert_eq!(els[0].description, "My own kernel");
    let listed = element::list(&dirs[..1]).unwrap();
    assert_eq!(
        listed,
        [("kernel".to_string(), "My own kernel".to_string())]
    );
}

// ---------------------------------------------------------------------------
// Golden error messages.

golden_tests! {
    profile_key_typo: load_err("key-typo") => UnknownKey,
    element_key_typo: element_err("key-typo") => UnknownKey,
    unknown_element_with_suggestion: resolve_err("unknown-element") => NotFound,
    element_dependency_cycle: resolve_err("element-cycle") => Cycle,
    extends_cycle: load_err("loop-a") => Cycle,
    extends_missing: load_err("extends-missing") => NotFound,
    duplicate_key: load_err("duplicate") => DuplicateKey,
    bad_enum_value: load_err("bad-enum") => InvalidValue,
    unknown_debian_release_names_the_nearest: load_err("bad-release") => InvalidValue,
    unquoted_mode: element_err("unquoted-mode") => InvalidValue,
    bad_size: load_err("size") => InvalidValue,
    level_out_of_range: load_err("level"),
    level_out_of_range_for_inherited_compression: load_err("level-inherited"),
    files_entry_without_file: element_err("missing-file") => NotFound,
    relative_path_in_element: element_err("relative-path"),
    relative_path_in_profile: load_err("relative"),
    fifo_with_numbers: element_err("bad-device"),
    missing_init: load_err("no-init"),
    element_init_mismatch: resolve_err("wrong-init") => Conflict,
    unknown_profile_name: load_err("chlid"),
    missing_dependency_names_the_chain: resolve_err("missing-dependency") => NotFound,
    element_without_description: element_err("no-description") => MissingField,
    bad_format_in_a_list: load_err("bad-format"),
    empty_audit_reason: load_err("empty-reason"),
    top_level_key_typo: load_err("top-typo"),
    scalar_where_a_list_belongs: load_err("not-a-list") => Syntax,
}

#[test]
fn debian_release_is_inherited_and_defaults_to_the_hosts_suites() {
    let dir = temp_profiles(&[
        (
            "parent.yaml",
            "description: p\ninit: busybox\ndebian:\n  release: trixie\n",
        ),
        ("child.yaml", "extends: parent\n"),
    ]);
    let dirs = [dir.path().to_path_buf()];
    let child = profile::load("child", &dirs).unwrap();
    assert_eq!(child.debian.release.as_deref(), Some("trixie"));
    let minimal = profile::load("minimal", &profile_dirs()).unwrap();
    assert_eq!(
        minimal.debian.release, None,
        "no release: the host's suites"
    );
}

// ---------------------------------------------------------------------------
// The repository's own profiles and elements.

/// Every `profiles/*.yaml` in the repository loads and resolves its elements
/// from `elements/`, and every element there loads on its own.
#[test]
fn repository_profiles_and_elements_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let profiles = vec![root.join("profiles")];
    let elements = vec![root.join("elements")];
    for (name, _) in element::list(&elements).unwrap_or_else(|e| panic!("{e}")) {
        assert!(!name.is_empty());
    }
    let listed = profile::list(&profiles).unwrap_or_else(|e| panic!("{e}"));
    for (name, description) in listed {
        let p = profile::load(&name, &profiles).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.description, description);
        let els = element::resolve(&p, &elements).unwrap_or_else(|e| panic!("{e}"));
        for listed in &p.elements {
            assert!(
                els.iter().any(|e| &e.name == listed),
                "{name}: {listed} missing from the resolved list"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Property tests.

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A random valid profile and the values loading it must produce.
    #[derive(Debug, Clone)]
    struct Spec {
        description: String,
        init: InitStyle,
        elements: Vec<String>,
        packages: Vec<String>,
        modules: Vec<String>,
        cmdline: Option<String>,
        compression: Compression,
        level: Option<u32>,
        formats: Vec<Format>,
        budget: Option<(u64, &'static str, u64)>,
        label: Option<String>,
        libraries: bool,
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{1,10}"
    }

    fn compression_and_level() -> impl Strategy<Value = (Compression, Option<u32>)> {
        prop_oneof![
            Just(Compression::Zstd),
            Just(Compression::Gzip),
            Just(Compression::Xz)
        ]
        .prop_flat_map(|c| {
            let r = c.levels();
            (Just(c), proptest::option::of(*r.start()..=*r.end()))
        })
    }

    /// A size budget as (number, unit as written, bytes it means).
    fn budget() -> impl Strategy<Value = Option<(u64, &'static str, u64)>> {
        proptest::option::of((
            1u64..5000,
            prop_oneof![
                Just(("", 1u64)),
                Just(("KiB", 1024)),
                Just((" MiB", 1 << 20)),
                Just(("KB", 1000))
            ],
        ))
        .prop_map(|b| b.map(|(n, (u, m))| (n, u, n * m)))
    }

    prop_compose! {
        fn spec()(
            description in "[A-Za-z][A-Za-z0-9 ,.()-]{0,40}[A-Za-z0-9.)]",
            init in prop_oneof![Just(InitStyle::Busybox), Just(InitStyle::Systemd)],
            elements in proptest::collection::vec(name(), 0..5),
            packages in proptest::collection::vec(name(), 0..5),
            modules in proptest::collection::vec("[a-z][a-z0-9_]{1,10}", 0..4),
            cmdline in proptest::option::of("[a-z]{1,8}=[a-z0-9,]{1,10}"),
            (compression, level) in compression_and_level(),
            formats in proptest::sample::subsequence(
                vec![Format::Kernel, Format::Initramfs, Format::Iso],
                1..=3,
            ),
            budget in budget(),
            label in proptest::option::of("[A-Z][A-Z0-9_]{0,31}"),
            libraries in any::<bool>(),
        ) -> Spec {
            Spec { description, init, elements, packages, modules, cmdline, compression, level, formats, budget, label, libraries }
        }
    }

    fn word<T: serde::Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Block-style YAML for `s`, one key per line.
    fn render(s: &Spec) -> String {
        let list = |v: &[String]| format!("[{}]", v.join(", "));
        let mut y = format!("description: {}\ninit: {}\n", s.description, word(s.init));
        y += &format!(
            "elements: {}\npackages: {}\n",
            list(&s.elements),
            list(&s.packages)
        );
        y += "debian:\n  arch: amd64\n";
        if s.libraries {
            y += "  dependencies: libraries\n";
        }
        y += &format!("kernel:\n  modules: {}\n", list(&s.modules));
        if let Some(c) = &s.cmdline {
            y += &format!("  cmdline: \"{c}\"\n");
        }
        y += &format!("output:\n  compression: {}\n", word(s.compression));
        if let Some(l) = s.level {
            y += &format!("  level: {l}\n");
        }
        let formats: Vec<String> = s.formats.iter().map(word).collect();
        y += &format!("  formats: {}\n", list(&formats));
        if let Some(l) = &s.label {
            y += &format!("  iso_label: {l}\n");
        }
        if let Some((n, unit, _)) = s.budget {
            y += &format!("size_budget:\n  initramfs: \"{n}{unit}\"\n");
        }
        y += "audit:\n  allow:\n    - path: /etc/x\n      rule: private-key\n      reason: fixture\n";
        y
    }

    fn dedup(v: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for x in v {
            if !out.contains(x) {
                out.push(x.clone());
            }
        }
        out
    }

    fn load_text(text: &str) -> Result<profile::Profile, ConfigError> {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("gen.yaml"), text).unwrap();
        profile::load("gen", &[tmp.path().to_path_buf()])
    }

    /// Every key the profile schema knows, at any level.
    const KEYS: &[&str] = &[
        "description",
        "extends",
        "init",
        "elements",
        "packages",
        "exclude",
        "scrub",
        "debian",
        "sources",
        "arch",
        "dependencies",
        "kernel",
        "package",
        "modules",
        "cmdline",
        "output",
        "name",
        "formats",
        "compression",
        "level",
        "iso_label",
        "size_budget",
        "iso",
        "initramfs",
        "audit",
        "allow",
        "path",
        "rule",
        "reason",
        "uri",
        "suites",
        "components",
        "keyring",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn valid_profiles_round_trip(s in spec()) {
            let text = render(&s);
            let p = load_text(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            prop_assert_eq!(&p.description, &s.description);
            prop_assert_eq!(p.init, s.init);
            prop_assert_eq!(&p.elements, &dedup(&s.elements));
            prop_assert_eq!(&p.packages, &dedup(&s.packages));
            prop_assert_eq!(&p.kernel.modules, &dedup(&s.modules));
            prop_assert_eq!(p.kernel.cmdline, s.cmdline.clone().unwrap_or_default());
            prop_assert_eq!(p.output.compression, s.compression);
            prop_assert_eq!(p.output.level, s.level);
            prop_assert_eq!(&p.output.formats, &s.formats);
            prop_assert_eq!(&p.output.iso_label, &s.label);
            prop_assert_eq!(p.size_budget.initramfs, s.budget.map(|b| b.2));
            prop_assert_eq!(
                p.debian.dependencies,
                if s.libraries { Dependencies::Libraries } else { Dependencies::Full }
            );
            prop_assert_eq!(p.audit.allow.len(), 1);
        }

        #[test]
        fn key_typos_name_the_right_line(
            s in spec(),
            pick in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            letter in "[a-z]",
            kind in 0..3u8,
        ) {
            let text = render(&s);
            let lines: Vec<&str> = text.lines().collect();
            // Lines holding a `key:` (possibly after `- `).
            let keyed: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    let t = l.trim_start().trim_start_matches("- ");
                    t.split(':').next().is_some_and(|k| KEYS.contains(&k) && t.contains(':'))
                })
                .map(|(i, _)| i)
                .collect();
            let n = pick.index(keyed.len());
            let line = lines[n];
            let indent = line.len() - line.trim_start().trim_start_matches("- ").len();
            let key = line[indent..].split(':').next().unwrap().to_string();
            let pos = at.index(key.len() + 1);
            let mut typo = key.clone();
            match kind {
                0 => typo.insert_str(pos, &letter),
                1 if key.len() > 2 => { typo.remove(pos.min(key.len() - 1)); }
                _ => typo.replace_range(pos.min(key.len() - 1)..=pos.min(key.len() - 1), &letter),
            }
            prop_assume!(!KEYS.contains(&typo.as_str()));
            let mut new_lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            new_lines[n] = format!("{}{}{}", &line[..indent], typo, &line[indent + key.len()..]);
            let broken = new_lines.join("\n") + "\n";
            let err = load_text(&broken).expect_err(&broken);
            prop_assert_eq!(err.kind(), ErrorKind::UnknownKey, "{}", err);
            let snip = err.diagnostic().snippet.clone().expect("located");
            prop_assert_eq!(snip.line, n + 1, "{}\n{}", err, broken);
            prop_assert_eq!(snip.column, indent + 1);
            prop_assert!(err.to_string().contains(&format!("unknown key `{typo}`")), "{}", err);
        }
    }
}

// ---------------------------------------------------------------------------
// Command-line overrides and audit rule names are checked at load time.

/// Writes `files` (name, YAML) into a fresh profile directory.
fn temp_profiles(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, yaml) in files {
        std::fs::write(dir.path().join(name), yaml).unwrap();
    }
    dir
}

/// The rendered error with the temporary directory written as `DIR`.
fn rendered(e: &ConfigError, dir: &Path) -> String {
    e.to_string().replace(&dir.display().to_string(), "DIR")
}

#[test]
fn level_30_on_the_command_line_is_refused_like_level_30_in_a_profile() {
    let tmp = temp_profiles(&[
        ("plain.yaml", "description: d\ninit: busybox\n"),
        (
            "level30.yaml",
            "description: d\ninit: busybox\noutput:\n  level: 30\n",
        ),
    ]);
    let dirs = vec![tmp.path().to_path_buf()];
    let overrides = Overrides {
        level: Some(30),
        ..Overrides::default()
    };
    let cli = profile::load_with("plain", &dirs, &overrides).unwrap_err();
    let file = profile::load("level30", &dirs).unwrap_err();
    let (c, f) = (cli.diagnostic(), file.diagnostic());
    assert_eq!(c.message, f.message);
    assert_eq!((c.kind, &c.field, &c.help), (f.kind, &f.field, &f.help));
    golden(&cli, "level_30_on_the_command_line");
    assert_eq!(
        rendered(&file, tmp.path()),
        "\
error: `output.level`: level 30 is out of range for zstd (the default compression)
 --> DIR/level30.yaml:4:10
  |
4 |   level: 30
  |          ^^
  = help: zstd accepts 1..=19"
    );
    // A new compression drops the profile's level (chosen for the other
    // compressor), and its own range applies to --level.
    let gzip = Overrides {
        compression: Some(Compression::Gzip),
        level: Some(12),
        ..Overrides::default()
    };
    let e = profile::load_with("level30", &dirs, &gzip).unwrap_err();
    golden(&e, "level_12_for_gzip_on_the_command_line");
    let ok = Overrides {
        compression: Some(Compression::Gzip),
        formats: vec![Format::Iso, Format::Iso],
        ..Overrides::default()
    };
    let p = profile::load_with("level30", &dirs, &ok).unwrap();
    assert_eq!(p.output.compression, Compression::Gzip);
    assert_eq!(p.output.level, None);
    assert!(p.site("output.level", None).is_none(), "the dropped level");
    assert_eq!(p.output.formats, vec![Format::Iso]);
}

#[test]
fn unknown_audit_rule_is_a_config_error_with_a_suggestion() {
    let tmp = temp_profiles(&[(
        "p.yaml",
        "description: d
init: busybox
audit:
  allow:
    - path: /etc/ssl/private/test.key
      rule: privat-key
      reason: a test key, published on purpose
",
    )]);
    let e = profile::load("p", &[tmp.path().to_path_buf()]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
    assert_eq!(
        rendered(&e, tmp.path()),
        "\
error: `audit.allow[0].rule`: unknown audit rule `privat-key`
 --> DIR/p.yaml:6:13
  |
6 |       rule: privat-key
  |             ^^^^^^^^^^
  = help: did you mean `private-key`?"
    );
}
