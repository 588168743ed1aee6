//! The operator workflow against real services: `publish` to a real Glance,
//! point a real Ironic's nodes at the images, prune with `--keep`; and
//! `inspect`/`diff` on two real builds that differ by one package.
//!
//! Glance and Ironic run from PyPI on 127.0.0.1 (see `ipa_e2e::glance` and
//! `ipa_e2e::ironic`); the first run installs them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ipa_build::manifest::Manifest;
use ipa_build::publish::clouds::{self, Session};
use ipa_build::publish::{self, Options, PublishError, Role};
use ipa_e2e::glance::Glance;
use ipa_e2e::ironic::Ironic;
use serde_json::{Value, json};
use sha2_like::sha512_hex;

/// SHA-512 through the system's `sha512sum`: an independent implementation
/// from the one the builder uses.
mod sha2_like {
    pub fn sha512_hex(path: &std::path::Path) -> String {
        let out = ipa_e2e::process::checked(std::process::Command::new("sha512sum").arg(path));
        String::from_utf8(out.stdout).unwrap()[..128].to_string()
    }
}

fn get(url: &str) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(url)
        .header("X-OpenStack-Ironic-API-Version", "1.1")
        .call()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    if status == 404 {
        return Value::Null;
    }
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A build directory like ipa-build writes, with small artifacts of `seed`.
fn fake_build(dir: &Path, seed: u8, epoch: u64, corrupt: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut artifacts = Vec::new();
    for (kind, len) in [("kernel", 70_001usize), ("initramfs", 150_003)] {
        let file = format!("tinyipa.{kind}");
        let path = dir.join(&file);
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        std::fs::write(&path, &data).unwrap();
        let sha512 = sha512_hex(&path);
        if corrupt && kind == "initramfs" {
            // The file changes after it was hashed: one flipped byte.
            let mut d = data.clone();
            d[len / 2] ^= 0x01;
            std::fs::write(&path, &d).unwrap();
        }
        artifacts
            .push(json!({"kind": kind, "file": file, "size": len, "sha256": "", "sha512": sha512}));
    }
    let manifest = json!({
        "format": 1,
        "tool": {"name": "ipa-build", "version": "0.1.0"},
        "profile": {"name": "tinyipa-e2e", "description": "", "chain": [], "init": "busybox"},
        "source_date_epoch": epoch,
        "elements": [],
        "packages": [],
        "kernel": {"package": "linux-image-amd64", "version": "1", "sha256": "", "release": "6.1", "modules": []},
        "agent": null,
        "bootloaders": [],
        "cmdline": "",
        "compression": {"kind": "zstd", "level": null},
        "files": 0,
        "uncompressed_bytes": 0,
        "scrubbed": [],
        "audit": {"allowed": [], "warnings": []},
        "artifacts": artifacts,
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

fn images_with(glance: &str, key: &str, value: &str) -> Vec<Value> {
    get(&format!("{glance}/v2/images?{key}={value}"))["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i[key] == value)
        .cloned()
        .collect()
}

/// Publish options setting `nodes`' images in `role`, keeping `keep`
/// builds.
fn options(nodes: &[&str], role: Option<Role>, keep: Option<usize>) -> Options {
    Options {
        set_nodes: nodes.iter().map(|n| n.to_string()).collect(),
        role,
        keep,
        ..Options::default()
    }
}

#[test]
fn publish_verifies_sets_nodes_reuses_and_prunes() {
    let glance = Glance::start().unwrap();
    let ironic = Ironic::start().unwrap();
    let n1 = ironic.client().enroll_fake_node("pub-node-1").unwrap();
    let n2 = ironic.client().enroll_fake_node("pub-node-2").unwrap();
    let session = Session {
        token: None,
        image: glance.url().to_string(),
        baremetal: Some(ironic.url().to_string()),
    };
    let tmp = tempfile::tempdir().unwrap();

    // 1. First build: upload, verify, set both nodes' rescue fields.
    let b1 = Manifest::read(&fake_build(&tmp.path().join("b1"), 1, 1_700_000_000, false)).unwrap();
    let opts = options(&["pub-node-1", n2.uuid()], Some(Role::Rescue), None);
    let o1 = publish::publish(&b1, &session, &opts).unwrap();
    assert_eq!(o1.images.len(), 2);
    assert!(o1.images.iter().all(|i| !i.existing));
    let k1 = o1.id("kernel").unwrap().to_string();
    let r1 = o1.id("initramfs").unwrap().to_string();
    let img = get(&format!("{}/v2/images/{k1}", glance.url()));
    assert_eq!(img["disk_format"], "aki");
    assert_eq!(img["container_format"], "aki");
    assert_eq!(img["status"], "active");
    assert_eq!(
        img["os_hash_value"].as_str().unwrap(),
        sha512_hex(&b1.dir.join("tinyipa.kernel"))
    );
    assert!(
        img["name"]
            .as_str()
            .unwrap()
            .starts_with("tinyipa-e2e-20231114-")
    );
    assert_eq!(img["ipa_build_manifest"], b1.manifest_sha256.as_str());
    let img = get(&format!("{}/v2/images/{r1}", glance.url()));
    assert_eq!(img["disk_format"], "ari");
    assert_eq!(img["container_format"], "ari");
    for n in [n1.uuid(), n2.uuid()] {
        let node = get(&format!("{}/v1/nodes/{n}", ironic.url()));
        assert_eq!(node["driver_info"]["rescue_kernel"], k1.as_str());
        assert_eq!(node["driver_info"]["rescue_ramdisk"], r1.as_str());
    }

    // 2. Same build again: a no-op returning the same ids.
    let again = publish::publish(&b1, &session, &Options::default()).unwrap();
    assert!(again.images.iter().all(|i| i.existing));
    assert_eq!(again.id("kernel"), Some(k1.as_str()));
    assert_eq!(
        images_with(glance.url(), "ipa_build_manifest", &b1.manifest_sha256).len(),
        2
    );

    // 3. Second build as node 1's deploy images with --keep 1: node 1 still
    //    references build 1 for rescue, so build 1 must survive.
    let b2 = Manifest::read(&fake_build(&tmp.path().join("b2"), 2, 1_700_100_000, false)).unwrap();
    let o2 = publish::publish(
        &b2,
        &session,
        &options(&["pub-node-1"], Some(Role::Deploy), Some(1)),
    )
    .unwrap();
    assert!(o2.deleted.is_empty(), "{o2:?}");
    let mut kept = o2.kept_referenced.clone();
    kept.sort();
    let mut want = vec![k1.clone(), r1.clone()];
    want.sort();
    assert_eq!(kept, want);
    let node = get(&format!("{}/v1/nodes/{}", ironic.url(), n1.uuid()));
    assert_eq!(
        node["driver_info"]["deploy_kernel"],
        o2.id("kernel").unwrap()
    );
    assert_eq!(node["driver_info"]["rescue_kernel"], k1.as_str());

    // 4. Move both nodes' rescue to build 2 with --keep 1: build 1 goes.
    let o3 = publish::publish(
        &b2,
        &session,
        &options(&["pub-node-1", "pub-node-2"], Some(Role::Rescue), Some(1)),
    )
    .unwrap();
    assert!(o3.images.iter().all(|i| i.existing));
    let mut deleted = o3.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, want);
    let left = images_with(glance.url(), "ipa_build_profile", "tinyipa-e2e");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter()
            .all(|i| i["ipa_build_manifest"] == b2.manifest_sha256.as_str())
    );
    assert!(get(&format!("{}/v2/images/{k1}", glance.url())).is_null());

    // 5. A file modified after hashing is caught, and its image deleted.
    let bad = Manifest::read(&fake_build(&tmp.path().join("bad"), 3, 1_700_200_000, true)).unwrap();
    let err = publish::publish(&bad, &session, &options(&["pub-node-1"], None, None)).unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::Mismatch {
                field: "os_hash_value",
                ..
            }
        ),
        "{err}"
    );
    let bad_images = images_with(glance.url(), "ipa_build_manifest", &bad.manifest_sha256);
    assert!(
        bad_images
            .iter()
            .all(|i| i["ipa_build_artifact"] != "initramfs"),
        "{bad_images:?}"
    );
    // Nodes were not touched: uploads come first.
    let node = get(&format!("{}/v1/nodes/{}", ironic.url(), n1.uuid()));
    assert_eq!(
        node["driver_info"]["rescue_kernel"],
        o2.id("kernel").unwrap()
    );
}

/// Two real builds, tinyipa and tinyipa + pciutils, shared by the tests below.
fn real_builds() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static B: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    B.get_or_init(|| {
        let root = ipa_e2e::paths::workspace_root();
        let tmp = tempfile::tempdir().unwrap();
        let profiles = tmp.path().join("profiles");
        std::fs::create_dir_all(&profiles).unwrap();
        std::fs::write(
            profiles.join("tinyipa-pci.yaml"),
            "description: tinyipa plus pciutils\nextends: tinyipa\npackages: [pciutils]\n",
        )
        .unwrap();
        let mut outs = Vec::new();
        for profile in ["tinyipa", "tinyipa-pci"] {
            let out = tmp.path().join(profile);
            let mut opts = ipa_build::build::BuildOptions::new(profile);
            opts.search = ipa_build::build::SearchPaths::checkout(&root);
            opts.search.profiles.insert(0, profiles.clone());
            opts.output = Some(out.clone());
            opts.fetch.cache_dir = root.join("target/test-cache");
            opts.source_date_epoch = Some(1_700_000_000);
            ipa_build::build::build(&opts, &ipa_build::report::Reporter::quiet()).unwrap();
            outs.push(out);
        }
        let b = outs.pop().unwrap();
        let a = outs.pop().unwrap();
        (tmp, a, b)
    })
}

#[test]
fn inspect_and_diff_two_real_builds() {
    let (_, a, b) = real_builds();
    let ins = ipa_build::cmd::inspect::inspect(a).unwrap();
    assert_eq!(ins.kind, "build");
    assert!(ins.manifest.is_some());
    let m = ins.manifest.as_ref().unwrap();
    assert_eq!(ins.kernels.len(), 1);
    assert_eq!(ins.kernels[0].release, m.kernel.release);
    let wanted: Vec<String> = m.kernel.modules.clone();
    for w in &wanted {
        let base = w.rsplit('/').next().unwrap();
        let base = base.split(".ko").next().unwrap().replace('-', "_");
        assert!(
            ins.kernels[0]
                .modules
                .iter()
                .any(|x| x.replace('-', "_") == base),
            "module {w} not found"
        );
    }
    assert!(
        ins.files
            .iter()
            .any(|f| f.path == "/init" || f.path.ends_with("/busybox"))
    );
    assert!(ins.largest_files(1)[0].size > 0);

    let d = ipa_build::cmd::diff::diff_paths(a, b).unwrap();
    assert!(d.have_manifests);
    let added: Vec<&str> = d.packages.added.iter().map(|p| p.name.as_str()).collect();
    assert!(added.contains(&"pciutils"), "{added:?}");
    assert!(d.packages.removed.is_empty(), "{:?}", d.packages.removed);
    assert!(
        d.files.added.iter().any(|f| f.path.ends_with("/lspci")),
        "{:?}",
        d.files.added
    );
    assert!(d.files.removed.is_empty(), "{:?}", d.files.removed);
    assert_eq!(d.kernel.old_release, d.kernel.new_release);
    assert!(d.totals.uncompressed.delta > 0);
    assert!(ipa_build::cmd::diff::diff_paths(a, a).unwrap().is_empty());

    // The same through an initramfs file instead of the directory.
    let file = ipa_build::cmd::inspect::build_initramfs(b, None).unwrap();
    let d2 = ipa_build::cmd::diff::diff_paths(a, &file).unwrap();
    assert!(!d2.have_manifests);
    assert_eq!(d2.files.added.len(), d.files.added.len());
}

#[test]
fn publish_a_real_build() {
    let (_, a, _) = real_builds();
    let glance = Glance::start().unwrap();
    // Connect the way operators do: a clouds.yaml without Keystone.
    let tmp = tempfile::tempdir().unwrap();
    let clouds_yaml = tmp.path().join("clouds.yaml");
    std::fs::write(
        &clouds_yaml,
        format!(
            "clouds:\n  standalone:\n    auth_type: none\n    image_endpoint_override: {}/\n",
            glance.url()
        ),
    )
    .unwrap();
    let cloud = clouds::find("standalone", &[clouds_yaml]).unwrap();
    let session = clouds::connect(&cloud, &publish::agent()).unwrap();
    assert_eq!(session.image, glance.url());
    let build = Manifest::read(a).unwrap();
    let o = publish::publish(&build, &session, &Options::default()).unwrap();
    for art in &build.manifest.artifacts {
        let id = o.id(art.kind.name()).unwrap();
        let img = get(&format!("{}/v2/images/{id}", glance.url()));
        assert_eq!(
            img["os_hash_value"].as_str().unwrap(),
            sha512_hex(&build.dir.join(&art.file))
        );
        assert_eq!(img["size"].as_u64().unwrap(), art.size);
    }
}
