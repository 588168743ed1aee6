//! Every Ironic job with the shipped `tinyipa` ramdisk, against real Ironic
//! 39: inspection, automated cleaning, direct deploys of a raw and a qcow2
//! whole-disk image with a configdrive, and a deploy that must fail on a
//! wrong checksum. One Ironic and one node go through the whole sequence,
//! as an operator's machine would: enroll → manage → inspect → provide
//! (cleaning) → deploy → undeploy → deploy → undeploy → failed deploy.
//! The systemd image (`coreos`) goes through inspect → clean → raw deploy
//! on a node of its own, so both shipped profiles serve every job.
//!
//! The node uses the `manual-management` hardware type (fake power, noop
//! management), `deploy_interface=direct`, `inspect_interface=agent`, and
//! `[agent]require_tls` at its default. Fake power cannot boot anything, so
//! the test plays the power button: it boots the ramdisk in QEMU (TCG) when
//! Ironic starts a job and kills the VM when the job is over (the agent
//! powers the VM off itself at the end of a deploy). Each VM has a blank
//! 5 GiB virtio disk (the same file all along) and two NICs; the first has
//! the MAC of the node's enrolled port.
//!
//! Images are made here without root (GPT + `mkfs.ext4 -d`, `qemu-img
//! convert`) and served by [`ImageServer`]: the agent fetches
//! `http://10.0.2.2:P/...` (the host's loopback as the guest sees it), and
//! the conductor reaches the same URL through a loopback proxy set as its
//! `http_proxy`. After each job the host reads the disk file: signatures
//! gone after cleaning; after a deploy, the image's bytes in place and a
//! `config-2` partition holding the configdrive's `meta_data.json`.
//!
//! Each job prints its time from the Ironic call to the end state (run with
//! `--nocapture`); they include booting the VM under TCG.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipa_e2e::disk_images::{self, SECTOR};
use ipa_e2e::image_server::ImageServer;
use ipa_e2e::ironic::{Ironic, IronicConfig, Node};
use ipa_e2e::net::free_port;
use ipa_e2e::qemu::{self, Boot, Controller, Qemu, Vm};
use ipa_e2e::ramdisk::{Ramdisk, build_profile};
use serde_json::{Value, json};

/// The first NIC's MAC: the node's enrolled port.
const MAC: &str = "52:54:00:12:34:56";
/// The second NIC's MAC: inspection must create its port.
const SECOND_MAC: &str = "52:54:00:12:35:01";
/// Where the agent listens inside the guest (its default).
const AGENT_PORT: u16 = 9999;
/// The node's disk: the smallest of at least 4 GiB, so Ironic picks it
/// without root device hints. Sparse on the host.
const DISK_BYTES: u64 = 5 << 30;
/// From an Ironic call to its end state, VM boot included, under TCG on a
/// loaded 2-core machine.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything the jobs share: Ironic, the image server, the ramdisk, the
/// node and its disk.
struct Rig {
    ironic: Ironic,
    images: ImageServer,
    ramdisk: Ramdisk,
    dir: PathBuf,
    disk: PathBuf,
    agent_fwd: u16,
    node: String,
    timings: Vec<(String, f64)>,
}

impl Rig {
    /// Prints each job's time and the whole test's, for the figures.
    fn print_timings(&self, profile: &str, started: Instant) {
        let summary: Vec<String> = (self.timings.iter())
            .map(|(job, secs)| format!("{job} {secs:.1} s"))
            .collect();
        eprintln!(
            "[jobs] {profile}: {} ; whole test {:.1} s",
            summary.join(", "),
            started.elapsed().as_secs_f64()
        );
    }

    /// Boots the ramdisk as the node would on power-on, with `extra` kernel
    /// parameters.
    fn boot(&self, job: &str, extra: &str) -> Vm {
        let append = format!(
            "{} ipa-api-url=http://10.0.2.2:{} ipa-advertise-host=127.0.0.1 \
             ipa-advertise-port={} BOOTIF=01-{} console=ttyS0 {extra}",
            self.ramdisk.summary.cmdline,
            self.ironic.port(),
            self.agent_fwd,
            MAC.replace(':', "-")
        );
        Qemu::new(Boot::Kernel {
            kernel: self.ramdisk.kernel.clone(),
            initrd: self.ramdisk.initramfs.clone(),
            append,
        })
        .memory_mib(768)
        .nic("virtio-net-pci", MAC)
        .nic("e1000", SECOND_MAC)
        .hostfwd(self.agent_fwd, AGENT_PORT)
        .disk(&self.disk, Controller::VirtioBlk)
        .spawn_in(&self.dir.join(format!("vm-{job}")))
        .unwrap()
    }

    /// Polls the node until `wanted` with nothing pending; panics with
    /// Ironic's error and the VM's console when it fails, stalls, or the VM
    /// dies while it is still needed (a deploy ends with the agent powering
    /// the VM off, so `vm_may_exit`).
    fn wait(&self, vm: &mut Vm, job: &str, wanted: &str, vm_may_exit: bool) -> Node {
        // A failed deploy keeps `active` as its target.
        let done = |node: &Node| {
            node.provision_state() == wanted
                && (node.target_provision_state().is_none() || node.is_failed())
        };
        let watch = |_: &Node| match vm_may_exit || vm.running() {
            true => Ok(()),
            false => Err("QEMU stopped".to_string()),
        };
        let waited = self
            .ironic
            .poll(&self.node, wanted, JOB_TIMEOUT, done, watch);
        waited.unwrap_or_else(|e| {
            panic!(
                "[{job}] {e}\n{}\n--- ironic log\n{}",
                vm.diagnostics(),
                self.ironic.log_tail(40)
            )
        })
    }

    fn timed(&mut self, job: &str, since: Instant, end: &str) {
        let secs = since.elapsed().as_secs_f64();
        eprintln!("[jobs] {job}: {secs:.1} s from the Ironic call to {end:?}");
        self.timings.push((job.to_string(), secs));
    }

    /// Points the node's `instance_info` at `image` (served as `name`).
    fn set_image(&self, name: &str, image: &Path, format: &str, hash: &str) -> String {
        let url = self.images.add(name, image);
        let add = |path: &str, value: &str| json!({"op": "add", "path": path, "value": value});
        self.ironic
            .patch_node_ops(
                &self.node,
                json!([
                    add("/instance_info/image_source", &url),
                    add("/instance_info/image_os_hash_algo", "sha256"),
                    add("/instance_info/image_os_hash_value", hash),
                    add("/instance_info/image_disk_format", format),
                    add("/instance_info/image_type", "whole-disk"),
                ]),
            )
            .unwrap();
        url
    }

    /// `deploy` with a configdrive Ironic builds from `meta_data`.
    fn deploy(&self, hostname: &str) {
        let meta = json!({"uuid": self.node, "name": hostname, "hostname": hostname});
        self.ironic
            .set_provision_state(
                &self.node,
                "active",
                Some(json!({"configdrive": {"meta_data": meta}})),
            )
            .unwrap();
    }

    /// A transition that needs no agent: `target`, then wait for `state`.
    fn move_to(&self, target: &str, state: &str) {
        self.ironic
            .set_provision_state(&self.node, target, None)
            .unwrap();
        self.ironic
            .wait_for_provision_state(&self.node, state, JOB_TIMEOUT)
            .unwrap();
    }

    /// Undeploys with cleaning off for this node, back to `available`, and
    /// blanks the disk so the next deploy must write every byte it checks.
    fn undeploy(&self) {
        self.move_to("deleted", "available");
        disk_images::blank_disk(&self.disk, DISK_BYTES).unwrap();
    }
}

/// A whole-disk image whose filesystem names `tag`.
fn make_image(dir: &Path, tag: &str) -> PathBuf {
    let raw = dir.join(format!("{tag}.raw"));
    disk_images::whole_disk_image(
        &raw,
        tag,
        24,
        &[
            ("etc/hostname", &format!("{tag}\n")),
            (
                "srv/payload.txt",
                &format!("deployed by ipa-agent: {tag}\n").repeat(4000),
            ),
        ],
    )
    .unwrap();
    raw
}

/// What the host sees on the disk after a deploy of `image`: the image's
/// bytes between its primary GPT and its old backup GPT (the agent rewrites
/// both GPT areas: the backup moves to the disk's end and the configdrive
/// partition is added), the image's partition unchanged, and a partition
/// at the disk's end (at most 64 MiB) holding an ISO
/// labelled `config-2` whose `meta_data.json` names the node and
/// `hostname`.
fn check_deployed(rig: &Rig, job: &str, image: &Path, hostname: &str) {
    let len = std::fs::metadata(image).unwrap().len();
    let (from, to) = (34 * SECTOR, len - 33 * SECTOR);
    let on_disk = disk_images::read_range(&rig.disk, from, to - from).unwrap();
    let wanted = disk_images::read_range(image, from, to - from).unwrap();
    if let Some(at) = on_disk.iter().zip(&wanted).position(|(a, b)| a != b) {
        panic!(
            "[{job}] the disk differs from the image at byte {}",
            from + at as u64
        );
    }
    let parts = disk_images::partitions(&rig.disk).unwrap();
    let image_parts = disk_images::partitions(image).unwrap();
    assert_eq!(
        parts.first(),
        image_parts.first(),
        "[{job}] partitions {parts:?}"
    );
    let cd = parts
        .iter()
        .find(|p| p.start * SECTOR >= len - 33 * SECTOR)
        .unwrap_or_else(|| panic!("[{job}] no partition after the image: {parts:?}"));
    // At the end of the disk (before the backup GPT), at most 64 MiB.
    let end = (cd.start + cd.size) * SECTOR;
    assert!(
        (DISK_BYTES - (1 << 20)..=DISK_BYTES - 33 * SECTOR).contains(&end)
            && cd.size * SECTOR <= 64 << 20,
        "[{job}] configdrive partition {cd:?} on a disk of {DISK_BYTES} bytes"
    );
    let iso = rig.dir.join(format!("{job}-configdrive.iso"));
    std::fs::write(
        &iso,
        disk_images::read_range(&rig.disk, cd.start * SECTOR, cd.size * SECTOR).unwrap(),
    )
    .unwrap();
    assert_eq!(
        disk_images::label(&iso).unwrap().as_deref(),
        Some("config-2"),
        "[{job}] the configdrive partition's label"
    );
    let meta = disk_images::iso_file(&iso, "/openstack/latest/meta_data.json").unwrap();
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["uuid"], rig.node, "[{job}] meta_data {meta}");
    assert_eq!(meta["hostname"], hostname, "[{job}] meta_data {meta}");
    let _ = std::fs::remove_file(&iso);
}

/// The ramdisk, Ironic configured for the jobs, the image server, and the
/// node with its first port and a blank disk.
fn rig(dir: &Path, profile: &str) -> Rig {
    qemu::ensure_installed().unwrap();
    disk_images::ensure_tools().unwrap();
    let t = Instant::now();
    let ramdisk = build_profile(profile, &dir.join("out")).unwrap();
    eprintln!(
        "[jobs] {profile} built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let images = ImageServer::start().unwrap();
    let config = IronicConfig::default()
        .jobs()
        .env("http_proxy", &images.proxy_url())
        .env("no_proxy", "127.0.0.1,localhost");
    let ironic = Ironic::start_with(config).unwrap();
    // The pxe boot interface insists on these; they are the files the VM
    // boots, as operators set them.
    let kernel = images.add(&format!("{profile}.kernel"), &ramdisk.kernel);
    let initramfs = images.add(&format!("{profile}.initramfs"), &ramdisk.initramfs);
    let node = ironic
        .create_node(&json!({
            "name": "jobs",
            "driver": "manual-management",
            "boot_interface": "pxe",
            "deploy_interface": "direct",
            "inspect_interface": "agent",
            "management_interface": "noop",
            "power_interface": "fake",
            "network_interface": "noop",
            "driver_info": {"deploy_kernel": kernel, "deploy_ramdisk": initramfs},
        }))
        .unwrap();
    ironic.create_port(node.uuid(), MAC).unwrap();
    let disk = dir.join("node-disk.raw");
    disk_images::blank_disk(&disk, DISK_BYTES).unwrap();
    Rig {
        node: node.uuid().to_string(),
        ironic,
        images,
        ramdisk,
        dir: dir.to_path_buf(),
        disk,
        agent_fwd: free_port().unwrap(),
        timings: Vec::new(),
    }
}

/// `inspect`: the agent posts its inventory before lookup; the node ends
/// `manageable` with `cpu_arch` set and a port for the second NIC.
fn inspect(rig: &mut Rig) {
    rig.move_to("manage", "manageable");
    let t = Instant::now();
    rig.ironic
        .set_provision_state(&rig.node, "inspect", None)
        .unwrap();
    let callback = format!(
        "ipa-inspection-callback-url=http://10.0.2.2:{}/v1/continue_inspection \
         ipa-inspection-collectors=default,logs ipa-inspection-dhcp-all-interfaces=1",
        rig.ironic.port()
    );
    let mut vm = rig.boot("inspect", &callback);
    let node = rig.wait(&mut vm, "inspect", "manageable", false);
    rig.timed("inspect", t, "manageable");
    assert_eq!(
        node.raw()["properties"]["cpu_arch"],
        std::env::consts::ARCH,
        "properties {}",
        node.raw()["properties"]
    );
    assert_eq!(
        rig.ironic.port_addresses(&rig.node).unwrap(),
        vec![MAC.to_string(), SECOND_MAC.to_string()]
    );
    let stored = rig
        .ironic
        .call(
            "GET",
            &format!("/v1/nodes/{}/inventory", rig.node),
            None,
            &[200],
        )
        .unwrap();
    let inv = &stored["inventory"];
    let mut ips: Vec<(&str, &str)> = inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["mac_address"].as_str().unwrap_or_default(),
                i["ipv4_address"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    ips.sort();
    assert_eq!(
        ips,
        vec![(MAC, "10.0.2.15"), (SECOND_MAC, "10.0.3.15")],
        "{inv}"
    );
    assert_eq!(inv["boot"]["pxe_interface"], MAC, "{inv}");
    assert_eq!(inv["system_vendor"]["manufacturer"], "QEMU", "{inv}");
    assert!(
        inv["memory"]["physical_mb"].as_u64().unwrap_or(0) >= 768,
        "{inv}"
    );
    assert!(inv["cpu"]["count"].as_u64().unwrap_or(0) >= 1, "{inv}");
    let disks = inv["disks"].as_array().cloned().unwrap_or_default();
    assert!(
        disks.iter().any(|d| d["size"].as_u64() == Some(DISK_BYTES)),
        "the 5 GiB disk is not in the inventory: {inv}"
    );
    vm.kill();
}

/// `provide` with automated cleaning: `erase_devices_metadata` wipes the
/// partition table and filesystem planted on the disk.
fn clean(rig: &mut Rig) {
    let planted = make_image(&rig.dir, "planted");
    disk_images::copy_into(&planted, &rig.disk, 0).unwrap();
    // Move the backup GPT to the disk's end, where a real disk has it.
    disk_images::run(
        "sfdisk",
        &[
            "--quiet",
            "--relocate",
            "gpt-bak-std",
            &rig.disk.to_string_lossy(),
        ],
        &[],
    )
    .unwrap();
    let before = disk_images::signatures(&rig.disk).unwrap();
    assert!(before.iter().any(|s| s.ends_with("gpt")), "{before:?}");
    assert_eq!(
        disk_images::filesystem_at(&rig.disk, 1 << 20)
            .unwrap()
            .as_deref(),
        Some("ext4")
    );

    let t = Instant::now();
    rig.ironic
        .set_provision_state(&rig.node, "provide", None)
        .unwrap();
    let mut vm = rig.boot("clean", "");
    rig.wait(&mut vm, "clean", "available", false);
    rig.timed("clean", t, "available");
    vm.kill();

    let after = disk_images::signatures(&rig.disk).unwrap();
    assert!(
        after.is_empty(),
        "signatures left after cleaning: {after:?}"
    );
    assert_eq!(
        disk_images::filesystem_at(&rig.disk, 1 << 20).unwrap(),
        None
    );
    for (what, at) in [("first", 0), ("last", DISK_BYTES - (1 << 20))] {
        let mib = disk_images::read_range(&rig.disk, at, 1 << 20).unwrap();
        assert!(mib.iter().all(|b| *b == 0), "the {what} MiB is not zeroed");
    }
    let _ = std::fs::remove_file(planted);
}

/// A direct deploy of `image` (its `format` as served): `active`, the VM
/// powered off by the agent, the image and configdrive on the disk.
fn deploy(rig: &mut Rig, job: &str, served: &Path, format: &str, raw: &Path) {
    let hash = disk_images::sha256(served).unwrap();
    let name = served.file_name().unwrap().to_string_lossy().into_owned();
    rig.set_image(&name, served, format, &hash);
    let t = Instant::now();
    rig.deploy(job);
    let mut vm = rig.boot(job, "");
    rig.wait(&mut vm, job, "active", true);
    rig.timed(job, t, "active");
    if !vm.wait_exit(Duration::from_secs(60)) {
        eprintln!("[{job}] the VM still runs 60 s after the deploy; killing it");
        vm.kill();
    }
    check_deployed(rig, job, raw, job);
    let seen = rig.images.seen();
    let path = format!("/{name}");
    assert!(
        seen.iter()
            .any(|s| s.via_proxy && s.method == "HEAD" && s.path == path && s.status == 200),
        "the conductor never checked {path}: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| !s.via_proxy && s.method == "GET" && s.path == path && s.status == 200),
        "the agent never fetched {path}: {seen:?}"
    );
}

/// A deploy whose checksum is wrong: `deploy failed` saying so, and the
/// agent keeps serving (Ironic collected its logs after the failure).
fn failed_deploy(rig: &mut Rig, image: &Path) {
    let name = "wrong-checksum.raw";
    rig.set_image(name, image, "raw", &"0".repeat(64));
    let t = Instant::now();
    rig.deploy("failure");
    // One attempt: the agent retries a mismatch 9 times, 10 s apart, as IPA.
    let mut vm = rig.boot(
        "failure",
        "ipa-image-download-connection-retries=0 ipa-image-download-connection-retry-interval=1",
    );
    let node = rig.wait(&mut vm, "failure", "deploy failed", false);
    rig.timed("failure", t, "deploy failed");
    let error = node.last_error().unwrap_or_default().to_string();
    assert!(
        error.to_lowercase().contains("checksum") || error.to_lowercase().contains("hash"),
        "last_error does not say what went wrong: {error:?}"
    );
    eprintln!("[jobs] failure: last_error {error:?}");

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("https://127.0.0.1:{}/v1/status", rig.agent_fwd);
    let status = agent
        .get(&url)
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .unwrap_or_else(|e| panic!("the agent stopped serving after the failure: {e}"));
    let status: Value = serde_json::from_str(&status).unwrap();
    assert!(status["version"].is_string(), "{status}");
    let logs = rig.ironic.log_path().parent().unwrap().join("deploy-logs");
    let stored: Vec<String> = std::fs::read_dir(&logs)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&rig.node))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !stored.is_empty(),
        "Ironic stored no ramdisk logs for the failed deploy in {}",
        logs.display()
    );
    vm.kill();
}

/// A node of its own for `profile`, taken through inspection and cleaning
/// (so it is `available`); with the scratch directory and the start time.
fn inspected_and_cleaned(profile: &str) -> (tempfile::TempDir, Rig, Instant) {
    let started = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(scratch.path(), profile);
    inspect(&mut rig);
    clean(&mut rig);
    (scratch, rig, started)
}

#[test]
fn inspect_clean_deploy_and_fail_on_one_node() {
    let (scratch, mut rig, started) = inspected_and_cleaned("tinyipa");

    let raw_a = make_image(scratch.path(), "deploy-raw");
    deploy(&mut rig, "deploy-raw", &raw_a, "raw", &raw_a);
    // Cleaning was tested; undeploys skip it so the next job starts at once.
    rig.ironic
        .patch_node_ops(
            &rig.node,
            json!([{"op": "replace", "path": "/automated_clean", "value": false}]),
        )
        .unwrap();
    rig.undeploy();

    let raw_b = make_image(scratch.path(), "deploy-qcow2");
    let qcow2 = scratch.path().join("deploy-qcow2.qcow2");
    disk_images::qcow2(&raw_b, &qcow2).unwrap();
    deploy(&mut rig, "deploy-qcow2", &qcow2, "qcow2", &raw_b);
    rig.undeploy();

    failed_deploy(&mut rig, &raw_a);
    rig.print_timings("tinyipa", started);
}

/// The systemd image (networkd, udev) serves the jobs as well.
#[test]
fn coreos_inspects_cleans_and_deploys() {
    let (scratch, mut rig, started) = inspected_and_cleaned("coreos");
    let raw = make_image(scratch.path(), "deploy-raw");
    deploy(&mut rig, "deploy-raw", &raw, "raw", &raw);
    rig.print_timings("coreos", started);
}

/// The images the jobs deploy: a GPT with one partition and an ext4 at
/// 1 MiB, the same bytes every time (host tools only, no QEMU).
#[test]
fn image_has_a_gpt_and_an_ext4_at_1_mib() {
    disk_images::ensure_tools().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.raw");
    disk_images::whole_disk_image(&img, "img-root", 8, &[("etc/hostname", "deployed\n")]).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 10 << 20);
    let parts = disk_images::partitions(&img).unwrap();
    assert_eq!(
        parts,
        vec![disk_images::Partition {
            start: 2048,
            size: 16384,
            name: Some("root".into())
        }]
    );
    assert_eq!(
        disk_images::filesystem_at(&img, 1 << 20)
            .unwrap()
            .as_deref(),
        Some("ext4")
    );
    let sigs = disk_images::signatures(&img).unwrap();
    assert!(sigs.iter().any(|s| s.ends_with("gpt")), "{sigs:?}");
    let again = dir.path().join("again.raw");
    disk_images::whole_disk_image(&again, "img-root", 8, &[("etc/hostname", "deployed\n")])
        .unwrap();
    assert_eq!(
        disk_images::sha256(&img).unwrap(),
        disk_images::sha256(&again).unwrap(),
        "not reproducible"
    );
}
