//! The whole rescue, as an operator does it: build a profile's kernel and
//! initramfs, boot them in QEMU as the rescue ramdisk of a node of real
//! Ironic 39, `rescue` the node with a password, then `ssh rescue@node` with
//! that password.
//!
//! The VM has two NICs (virtio-net and e1000), each on its own user-mode
//! network; the first has the MAC of the node's Ironic port. The guest
//! reaches Ironic on the host as `10.0.2.2`; Ironic reaches the agent through
//! a port forward, so the agent advertises `127.0.0.1:<forwarded port>` (its
//! auto-TLS certificate is for that address). SSH goes through a second
//! forward. Run with `--nocapture` to see the timings.
//!
//! The first run creates Ironic's venv and downloads the Debian packages
//! into `target/test-cache` (a few minutes); later runs take about a minute
//! or two under TCG.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ipa_build::build::{BuildOptions, BuildSummary, build};
use ipa_build::report::Reporter;
use ipa_e2e::ironic::{Ironic, Node};
use ipa_e2e::net::free_port;
use ipa_e2e::paths::workspace_root;
use ipa_e2e::qemu::{self, Boot, Qemu, Vm};

/// The first NIC's MAC, which the node's Ironic port names.
const MAC: &str = "52:54:00:12:34:56";
const SECOND_MAC: &str = "52:54:00:12:35:01";
/// Where the agent listens inside the guest (its default).
const AGENT_PORT: u16 = 9999;
/// From QEMU's start to `rescue`, under TCG on a loaded 2-core machine.
const RESCUE_TIMEOUT: Duration = Duration::from_secs(420);

/// Builds `profile` into `out` with the shared test download cache.
fn build_profile(profile: &str, out: &Path) -> BuildSummary {
    let root = workspace_root();
    let mut opts = BuildOptions::new(profile);
    opts.profile_dirs = vec![root.join("profiles")];
    opts.element_dirs = vec![root.join("elements")];
    opts.output = Some(out.to_path_buf());
    opts.cache_dir = root.join("target/test-cache");
    build(&opts, &Reporter::quiet()).unwrap_or_else(|e| panic!("building {profile}: {e}"))
}

fn artifact(summary: &BuildSummary, kind: &str) -> PathBuf {
    let a = summary
        .artifacts
        .iter()
        .find(|a| a.kind.name() == kind)
        .unwrap_or_else(|| panic!("{} built no {kind}", summary.profile));
    summary.output.join(&a.file)
}

/// Every file path in the initramfs, read with the builder's own reader
/// (any compression, concatenated segments).
fn initramfs_paths(initramfs: &Path) -> Vec<String> {
    let data = std::fs::read(initramfs).unwrap();
    let mut paths = Vec::new();
    ipa_build::initramfs::read::for_each_entry(&data, &mut |e| {
        paths.push(e.path);
        Ok(())
    })
    .unwrap();
    paths
}

fn assert_no_host_key(initramfs: &Path) {
    let paths = initramfs_paths(initramfs);
    assert!(
        paths.iter().any(|p| p.ends_with("/ipa-agent")),
        "the reader found no ipa-agent in {}: {} paths",
        initramfs.display(),
        paths.len()
    );
    let keys: Vec<&String> = paths
        .iter()
        .filter(|p| p.contains("host_key") || p.starts_with("/etc/dropbear/"))
        .collect();
    assert!(
        keys.is_empty(),
        "SSH host keys baked into the image: {keys:?}"
    );
}

/// Enrolls a fake-hardware node with a port for `mac`, deploys it, and
/// switches it to the interfaces a rescue through our agent uses.
fn active_node(ironic: &Ironic, name: &str, mac: &str) -> Node {
    let node = ironic.enroll_fake_node(name).unwrap();
    ironic.create_port(node.uuid(), mac).unwrap();
    ironic.bring_to_active(node.uuid()).unwrap();
    ironic
        .set_interfaces_in_maintenance(node.uuid(), &[("deploy", "custom-agent")])
        .unwrap()
}

/// `ssh -p port rescue@127.0.0.1 command` with `password`, through sshpass.
fn ssh(port: u16, password: &str, command: &str) -> std::process::Output {
    Command::new("sshpass")
        .arg("-e")
        .env("SSHPASS", password)
        .args([
            "ssh",
            "-p",
            &port.to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=60",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "LogLevel=ERROR",
            "rescue@127.0.0.1",
            command,
        ])
        .output()
        .expect("sshpass and ssh are installed (apt-get install sshpass openssh-client)")
}

/// Retries `ssh ... id` until it succeeds: dropbear makes its host key at the
/// first connection, which takes a while under TCG.
fn ssh_until_ok(vm: &Vm, port: u16, password: &str, command: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = ssh(port, password, command);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "ssh {command:?} as rescue kept failing ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            vm.diagnostics()
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn ensure_ssh_tools() {
    let needs = [
        ipa_build::host::Need {
            what: "sshpass",
            package: "sshpass",
        },
        ipa_build::host::Need {
            what: "ssh",
            package: "openssh-client",
        },
    ];
    ipa_build::host::ensure(&needs, true, &|m| eprintln!("{m}")).unwrap();
}

fn rescue_through_ramdisk(profile: &str) {
    let started = Instant::now();
    qemu::ensure_installed().unwrap();
    ensure_ssh_tools();
    let scratch = tempfile::tempdir().unwrap();
    let summary = build_profile(profile, &scratch.path().join("out"));
    let kernel = artifact(&summary, "kernel");
    let initramfs = artifact(&summary, "initramfs");
    eprintln!(
        "[{profile}] built in {:.1} s: initramfs {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&initramfs).unwrap().len()
    );
    assert_no_host_key(&initramfs);

    let ironic = Ironic::start().unwrap();
    let node = active_node(&ironic, &format!("rescue-{profile}"), MAC);
    let uuid = node.uuid().to_string();
    let password = "Tenant-Rescue-42!";
    ironic.rescue(&uuid, password).unwrap();
    ironic
        .wait_for_provision_state(&uuid, "rescue wait", Duration::from_secs(60))
        .unwrap();

    let agent_fwd = free_port().unwrap();
    let ssh_fwd = free_port().unwrap();
    let append = format!(
        "{} ipa-api-url=http://10.0.2.2:{} ipa-advertise-host=127.0.0.1 ipa-advertise-port={agent_fwd} console=ttyS0",
        summary.cmdline,
        ironic.port()
    );
    let mut vm = Qemu::new(Boot::Kernel {
        kernel,
        initrd: initramfs,
        append,
    })
    .memory_mib(512)
    .nic("virtio-net-pci", MAC)
    .nic("e1000", SECOND_MAC)
    .hostfwd(agent_fwd, AGENT_PORT)
    .hostfwd(ssh_fwd, 22)
    .spawn(&scratch.path().join("vm"))
    .unwrap();

    // Watch Ironic until the node is rescued, noting the first heartbeat.
    let mut heartbeat: Option<Duration> = None;
    let node = loop {
        let node = ironic.node(&uuid).unwrap();
        if heartbeat.is_none() && node.internal("agent_url").is_some() {
            heartbeat = Some(vm.elapsed());
        }
        if node.provision_state() == "rescue" && node.target_provision_state().is_none() {
            break node;
        }
        assert!(
            !node.is_failed(),
            "node went to {:?}: {:?}\n{}",
            node.provision_state(),
            node.last_error(),
            vm.diagnostics()
        );
        assert!(
            vm.running(),
            "QEMU stopped while the node is {:?}\n{}",
            node.provision_state(),
            vm.diagnostics()
        );
        assert!(
            vm.elapsed() < RESCUE_TIMEOUT,
            "node still {:?} (target {:?}) {:?} after QEMU started; last_error {:?}\n{}",
            node.provision_state(),
            node.target_provision_state(),
            vm.elapsed(),
            node.last_error(),
            vm.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let rescued = vm.elapsed();
    let agent_url = node.internal("agent_url").unwrap_or_default().to_string();
    assert_eq!(agent_url, format!("https://127.0.0.1:{agent_fwd}"));

    // The finisher creates the user, then renews DHCP on every NIC.
    let finished = vm
        .wait_for("rescue complete", Duration::from_secs(120))
        .unwrap();
    let id = ssh_until_ok(&vm, ssh_fwd, password, "id");
    let logged_in = vm.elapsed();
    assert!(
        id.contains("uid=") && id.contains("(rescue)"),
        "id said {id:?}"
    );

    let wrong = ssh(ssh_fwd, "not-the-password", "id");
    assert!(
        !wrong.status.success() && !String::from_utf8_lossy(&wrong.stdout).contains("uid="),
        "a wrong password was accepted"
    );

    // Both NICs hold a lease from their own network.
    let addrs = ssh_until_ok(&vm, ssh_fwd, password, "ip -4 addr");
    for ip in ["10.0.2.15/", "10.0.3.15/"] {
        assert!(
            addrs.contains(ip),
            "no {ip} lease; `ip -4 addr` said:\n{addrs}\n{}",
            vm.diagnostics()
        );
    }

    let secs = |d: Option<Duration>| {
        d.map_or("never seen".into(), |d| format!("{:.1} s", d.as_secs_f64()))
    };
    eprintln!(
        "[{profile}] from QEMU start: first heartbeat {}, rescue {}, finisher done {}, ssh login {}",
        secs(heartbeat),
        secs(Some(rescued)),
        secs(Some(finished)),
        secs(Some(logged_in))
    );
    eprintln!(
        "[{profile}] whole test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn tinyipa_rescue_over_ssh() {
    rescue_through_ramdisk("tinyipa");
}

#[test]
fn coreos_rescue_over_ssh() {
    rescue_through_ramdisk("coreos");
}
