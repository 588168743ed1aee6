//! The whole rescue, as an operator does it: build a profile's kernel and
//! initramfs, boot them in QEMU as the rescue ramdisk of a node of real
//! Ironic 39, `rescue` the node with a password, then `ssh rescue@node` with
//! that password.
//!
//! The VM has two NICs, virtio-net and a Realtek RTL8139, each on its own
//! user-mode network; the first has the MAC of the node's Ironic port
//! (also given as `BOOTIF`). The guest
//! reaches Ironic on the host as `10.0.2.2`; Ironic reaches the agent through
//! a port forward, so the agent advertises `127.0.0.1:<forwarded port>` (its
//! auto-TLS certificate is for that address). SSH goes through a second
//! forward. Run with `--nocapture` to see the timings.
//!
//! Then the rescuer repairs the tenant's machine, as `rescue` with `sudo -n`:
//! the VM also has the tenant's disks, prepared on the host without root or
//! loop mounts (see [`TenantDisks`]): an ext4 root marked as needing a check
//! (on virtio-scsi), an XFS data disk (AHCI), two blank disks (virtio-blk
//! and a MegaRAID SAS controller, megasas-gen2) and a FAT USB stick
//! (usb-storage behind xHCI). Over SSH: fsck and mount
//! the ext4, read a file, replace root's hash in the tenant's /etc/shadow;
//! `xfs_repair -n` the XFS and read its file; RAID1 + LVM + LUKS2 + ext4 on
//! the blank disks, written, read and torn down; the data file copied to the
//! USB stick. After QEMU stops, the host checks the stick with mtools, the
//! new shadow line with debugfs, and that `e2fsck -fn` finds the ext4 clean.
//!
//! The first run creates Ironic's venv and downloads the Debian packages
//! into `target/test-cache` (a few minutes); later runs take about a minute
//! or two under TCG.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ipa_e2e::ironic::{Ironic, Node};
use ipa_e2e::net::free_port;
use ipa_e2e::paths::workspace_root;
use ipa_e2e::process::checked;
use ipa_e2e::qemu::{self, Boot, Controller, Qemu, Vm};
use ipa_e2e::ramdisk::build_profile;

/// The first NIC's MAC, which the node's Ironic port names.
const MAC: &str = "52:54:00:12:34:56";
const SECOND_MAC: &str = "52:54:00:12:35:01";
/// Where the agent listens inside the guest (its default).
const AGENT_PORT: u16 = 9999;
/// From QEMU's start to `rescue`, under TCG on a loaded 2-core machine.
const RESCUE_TIMEOUT: Duration = Duration::from_secs(420);

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

/// The tenant's data file, on the ext4 root and on the XFS disk.
const TENANT_DATA: &str = "tenant invoice 2026-11: 4711 EUR, do not lose\n";
const XFS_DATA: &str = "xfs report: all green\n";
/// The tenant root's hash after the repair (`openssl passwd -6`).
const NEW_ROOT_HASH: &str = "$6$RescuedRoot1$bsdbAsPLwel4Fkp/cMIbGGcWlw4MW4aQkP.isbf4Wz5oOyFn2wB4AmrLXfVSFZOZf2Vg1uyqi3R.17iEnD9WX/";
const OLD_ROOT_HASH: &str = "$6$OldSalt$forgottenforgottenforgottenforgottenforgotten";

/// Runs a host tool; panics with its output when it fails.
fn host(program: &str, args: &[&str], cwd: &Path) -> String {
    let out = checked(Command::new(program).args(args).current_dir(cwd));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tenant's disks, made on the host as an ordinary user: filesystems
/// populated from directories (`mkfs.ext4 -d`, `mkfs.xfs -p protofile`,
/// `mcopy`), never mounted.
struct TenantDisks {
    ext4: PathBuf,
    xfs: PathBuf,
    blank: [PathBuf; 2],
    usb: PathBuf,
}

impl TenantDisks {
    fn create(dir: &Path) -> TenantDisks {
        std::fs::create_dir_all(dir).unwrap();
        let root = dir.join("tenant-root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(
            root.join("etc/shadow"),
            format!("root:{OLD_ROOT_HASH}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"),
        )
        .unwrap();
        std::fs::write(root.join("data/invoice.txt"), TENANT_DATA).unwrap();
        let ext4 = dir.join("tenant-root.img");
        host(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-L",
                "tenant-root",
                "-d",
                "tenant-root",
                "tenant-root.img",
                "64M",
            ],
            dir,
        );
        // As after a crash: the next mount should be preceded by a check.
        host("tune2fs", &["-E", "force_fsck", "tenant-root.img"], dir);

        std::fs::write(dir.join("report.txt"), XFS_DATA).unwrap();
        std::fs::write(
            dir.join("xfs.proto"),
            format!(
                "/dev/null\n0 0\nd--755 0 0\ndata d--755 0 0\nreport.txt ---644 0 0 {}\n$\n$\n",
                dir.join("report.txt").display()
            ),
        )
        .unwrap();
        let xfs = dir.join("tenant-data.img");
        // XFS's smallest filesystem is 300 MiB; the file stays sparse.
        std::fs::File::create(&xfs)
            .unwrap()
            .set_len(320 << 20)
            .unwrap();
        host(
            "mkfs.xfs",
            &[
                "-q",
                "-f",
                "-L",
                "tenant-data",
                "-p",
                "xfs.proto",
                "tenant-data.img",
            ],
            dir,
        );

        let blank = [dir.join("blank0.img"), dir.join("blank1.img")];
        for b in &blank {
            std::fs::File::create(b).unwrap().set_len(96 << 20).unwrap();
        }
        let usb = dir.join("usb.img");
        host(
            "mkfs.vfat",
            &["-C", "-n", "RESCUEUSB", "usb.img", "32768"],
            dir,
        );
        std::fs::write(dir.join("README.TXT"), "rescue stick\n").unwrap();
        host(
            "mcopy",
            &["-i", "usb.img", "README.TXT", "::README.TXT"],
            dir,
        );
        TenantDisks {
            ext4,
            xfs,
            blank,
            usb,
        }
    }

    fn attach(&self, vm: Qemu) -> Qemu {
        vm.disk(&self.blank[0], Controller::VirtioBlk)
            .disk(&self.blank[1], Controller::Megasas)
            .disk(&self.ext4, Controller::VirtioScsi)
            .disk(&self.xfs, Controller::Ahci)
            .disk(&self.usb, Controller::Usb)
    }
}

/// Installs missing host tools (command, Debian package) when root.
fn ensure_host_tools(tools: &[(&'static str, &'static str)]) {
    let needs: Vec<ipa_build::host::Need> = tools
        .iter()
        .map(|&(what, package)| ipa_build::host::Need { what, package })
        .collect();
    ipa_build::host::ensure(&needs, true, &|m| eprintln!("{m}")).unwrap();
}

/// Host tools the disk preparation and the final checks use.
fn ensure_disk_tools() {
    ensure_host_tools(&[
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.xfs", "xfsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
    ]);
}

/// Runs `script` with `sudo -n sh -eu` over SSH (the script on stdin, so
/// no quoting through two shells); returns stdout, panics with everything
/// on failure.
fn ssh_root_script(vm: &Vm, port: u16, password: &str, step: &str, script: &str) -> String {
    let out = ssh_with_stdin(
        port,
        password,
        "rescue",
        "sudo -n sh -eu",
        script.as_bytes(),
    );
    assert!(
        out.status.success(),
        "step {step:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        vm.diagnostics()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ssh_with_stdin(
    port: u16,
    password: &str,
    user: &str,
    command: &str,
    stdin: &[u8],
) -> std::process::Output {
    use std::io::Write;
    let mut child = ssh_command(port, password, user, command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sshpass and ssh are installed");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// The repair, step by step, each timed.
fn repair_tenant_machine(profile: &str, vm: &Vm, port: u16, password: &str) {
    let step = |name: &str, script: &str| -> String {
        let t = Instant::now();
        let out = ssh_root_script(vm, port, password, name, script);
        eprintln!(
            "[{profile}] step {name}: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        out
    };
    let uid = step("sudo", "id -u\n");
    assert_eq!(uid.trim(), "0", "sudo -n id -u said {uid:?}");

    let out = step(
        "fsck ext4",
        "dev=$(blkid -L tenant-root)\necho \"device $dev\"\n\
         rc=0; e2fsck -f -y \"$dev\" || rc=$?\n[ \"$rc\" -le 1 ] || { echo \"e2fsck exit $rc\"; exit 1; }\n",
    );
    assert!(out.contains("device /dev/sd"), "{out}");

    let script = format!(
        "dev=$(blkid -L tenant-root)\nmkdir -p /mnt/tenant\nmount -t ext4 \"$dev\" /mnt/tenant\n\
         cat /mnt/tenant/data/invoice.txt\n\
         new='{NEW_ROOT_HASH}'\n\
         while IFS= read -r line; do\n\
           case \"$line\" in root:*) rest=${{line#root:}}; rest=${{rest#*:}}; printf 'root:%s:%s\\n' \"$new\" \"$rest\" ;;\n\
           *) printf '%s\\n' \"$line\" ;; esac\n\
         done < /mnt/tenant/etc/shadow > /tmp/shadow.new\n\
         cat /tmp/shadow.new > /mnt/tenant/etc/shadow\nrm -f /tmp/shadow.new\n\
         grep '^root:' /mnt/tenant/etc/shadow\numount /mnt/tenant\n"
    );
    let out = step("mount ext4, read, new root hash", &script);
    assert!(out.contains(TENANT_DATA.trim()), "{out}");
    assert!(out.contains(&format!("root:{NEW_ROOT_HASH}:")), "{out}");

    let out = step(
        "xfs_repair -n, read",
        "dev=$(blkid -L tenant-data)\nxfs_repair -n \"$dev\"\nmkdir -p /mnt/xfs\n\
         mount -t xfs -o ro \"$dev\" /mnt/xfs\ncat /mnt/xfs/data/report.txt\numount /mnt/xfs\n",
    );
    assert!(out.contains(XFS_DATA.trim()), "{out}");

    let out = step(
        "RAID1 + LVM + LUKS2 + ext4",
        "second=''\nfor d in /sys/block/sd*; do if [ \"$(cat $d/size)\" = 196608 ]; then second=/dev/${d##*/}; fi; done\n\
         [ -n \"$second\" ] || { echo 'no 96 MiB SCSI disk (the MegaRAID one)'; exit 1; }\n\
         echo \"SCSI hosts: $(cat /sys/class/scsi_host/*/proc_name | tr '\\n' ' ')\"\n\
         mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 --assume-clean /dev/vda \"$second\"\n\
         pvcreate -y /dev/md0\nvgcreate rescuevg /dev/md0\nlvcreate -y -n secure -l 100%FREE rescuevg\n\
         printf 'rescue-luks-key' > /tmp/luks.key\n\
         cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --iter-time 100 --key-file /tmp/luks.key /dev/mapper/rescuevg-secure\n\
         cryptsetup open --key-file /tmp/luks.key /dev/mapper/rescuevg-secure securedata\n\
         mkfs.ext4 -q /dev/mapper/securedata\nmkdir -p /mnt/secure\nmount /dev/mapper/securedata /mnt/secure\n\
         echo 'layered data' > /mnt/secure/proof.txt\nsync\numount /mnt/secure\n\
         mount -o ro /dev/mapper/securedata /mnt/secure\necho \"read back: $(cat /mnt/secure/proof.txt)\"\numount /mnt/secure\n\
         cryptsetup close securedata\nvgchange -an rescuevg\nmdadm --stop /dev/md0\nrm -f /tmp/luks.key\n\
         echo stack torn down\n",
    );
    assert!(
        out.contains("read back: layered data") && out.contains("stack torn down"),
        "{out}"
    );
    // One half of the mirror sits behind the MegaRAID controller.
    assert!(out.contains("megaraid_sas"), "{out}");

    step(
        "copy to USB stick",
        "ext4=$(blkid -L tenant-root)\nusb=$(blkid -L RESCUEUSB)\nmkdir -p /mnt/tenant /mnt/usb\n\
         mount -o ro \"$ext4\" /mnt/tenant\nmount -t vfat \"$usb\" /mnt/usb\n\
         cp /mnt/tenant/data/invoice.txt /mnt/usb/INVOICE.TXT\nsync\numount /mnt/usb\numount /mnt/tenant\nsync\n",
    );
}

/// What the host sees on the tenant's disks once QEMU has stopped.
fn check_disks_on_host(profile: &str, disks: &TenantDisks) {
    let dir = disks.ext4.parent().unwrap();
    let copy = host("mtype", &["-i", "usb.img", "::INVOICE.TXT"], dir);
    assert_eq!(copy, TENANT_DATA, "[{profile}] the USB stick's copy");
    let shadow = host(
        "debugfs",
        &["-R", "cat /etc/shadow", "tenant-root.img"],
        dir,
    );
    assert!(
        shadow.contains(&format!("root:{NEW_ROOT_HASH}:19000:"))
            && !shadow.contains(OLD_ROOT_HASH)
            && shadow.contains("daemon:*:"),
        "[{profile}] tenant shadow after the repair:\n{shadow}"
    );
    host("e2fsck", &["-f", "-n", "tenant-root.img"], dir);
}

/// `ssh -p port rescue@127.0.0.1 command` with `password`, through sshpass.
fn ssh(port: u16, password: &str, command: &str) -> std::process::Output {
    ssh_command(port, password, "rescue", command)
        .output()
        .expect("sshpass and ssh are installed (apt-get install sshpass openssh-client)")
}

fn ssh_command(port: u16, password: &str, user: &str, command: &str) -> Command {
    let mut c = Command::new("sshpass");
    c.arg("-e").env("SSHPASS", password).args([
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
        &format!("{user}@127.0.0.1"),
        command,
    ]);
    c
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
        // Often: the first success is the figure "SSH login after rescue".
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn ensure_ssh_tools() {
    ensure_host_tools(&[("sshpass", "sshpass"), ("ssh", "openssh-client")]);
}

fn rescue_through_ramdisk(profile: &str) {
    let started = Instant::now();
    qemu::ensure_installed().unwrap();
    ensure_ssh_tools();
    ensure_disk_tools();
    let scratch = tempfile::tempdir().unwrap();
    let disks = TenantDisks::create(&scratch.path().join("disks"));
    let ramdisk = build_profile(profile, &scratch.path().join("out")).unwrap();
    let (summary, kernel, initramfs) = (ramdisk.summary, ramdisk.kernel, ramdisk.initramfs);
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
    // BOOTIF as PXELINUX and Ironic's iPXE give it: the node's port.
    let append = format!(
        "{} ipa-api-url=http://10.0.2.2:{} ipa-advertise-host=127.0.0.1 ipa-advertise-port={agent_fwd} BOOTIF=01-{} console=ttyS0",
        summary.cmdline,
        ironic.port(),
        MAC.replace(':', "-")
    );
    let vm = Qemu::new(Boot::Kernel {
        kernel,
        initrd: initramfs,
        append,
    })
    .memory_mib(768)
    // Not only virtio: the second NIC is a Realtek RTL8139 (8139cp). The
    // PXE NIC stays virtio so the boot split measures the ramdisk, not an
    // emulated PHY: e1000e's link comes up 3-4 s after its driver loads
    // under TCG (tests/e2e/hotplug.rs plugs one in).
    .nic("virtio-net-pci", MAC)
    .nic("rtl8139", SECOND_MAC)
    .hostfwd(agent_fwd, AGENT_PORT)
    .hostfwd(ssh_fwd, 22);
    let mut vm = disks
        .attach(vm)
        .spawn_in(&scratch.path().join("vm"))
        .unwrap();
    // The end of the kernel's part of the boot: it runs the initramfs' /init.
    let run_init = vm.watch("Run /init");

    // Watch Ironic until the node is rescued, noting the first heartbeat.
    let mut heartbeat: Option<Duration> = None;
    let node = ironic
        .wait_for_provision_state_watching(
            &uuid,
            "rescue",
            RESCUE_TIMEOUT.saturating_sub(vm.elapsed()),
            |node| {
                if heartbeat.is_none() && node.internal("agent_url").is_some() {
                    heartbeat = Some(vm.elapsed());
                }
                if vm.running() {
                    Ok(())
                } else {
                    Err("QEMU stopped".into())
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.diagnostics()));
    let rescued = vm.elapsed();
    let agent_url = node.internal("agent_url").unwrap_or_default().to_string();
    assert_eq!(agent_url, format!("https://127.0.0.1:{agent_fwd}"));

    // The finisher creates the user (SSH logins work from then on), then
    // renews DHCP on every NIC.
    let id = ssh_until_ok(&vm, ssh_fwd, password, "id");
    let logged_in = vm.elapsed();
    assert!(
        id.contains("uid=") && id.contains("(rescue)"),
        "id said {id:?}"
    );
    let finished = vm
        .wait_for("rescue complete", Duration::from_secs(120))
        .unwrap();

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

    // Root logins stay refused, with any password.
    let root = ssh_command(ssh_fwd, password, "root", "id")
        .output()
        .unwrap();
    assert!(
        !root.status.success() && !String::from_utf8_lossy(&root.stdout).contains("uid=0"),
        "root logged in over SSH"
    );

    // The login message, as an interactive login shell shows it.
    let t = Instant::now();
    let motd = ssh_with_stdin(ssh_fwd, password, "rescue", "sh -l -i -c true", b"");
    let motd =
        String::from_utf8_lossy(&motd.stdout).into_owned() + &String::from_utf8_lossy(&motd.stderr);
    for want in [
        "rescue environment",
        "survives a reboot",
        "sudo -i",
        "10.0.2.15",
        "tenant-root",
        "xfs",
    ] {
        assert!(
            motd.contains(want),
            "no {want:?} in the login message:\n{motd}"
        );
    }
    eprintln!(
        "[{profile}] step login message: {:.1} s\n{motd}",
        t.elapsed().as_secs_f64()
    );

    // Nothing failed on the way up (under systemd): a failed unit is the
    // first thing `systemctl status` shows the tenant.
    let failed = ssh(
        ssh_fwd,
        password,
        "if [ -d /run/systemd/system ]; then systemctl --failed --no-legend --plain; fi",
    );
    let failed = String::from_utf8_lossy(&failed.stdout);
    assert!(
        failed.trim().is_empty(),
        "[{profile}] failed units:\n{failed}"
    );

    let repair = Instant::now();
    repair_tenant_machine(profile, &vm, ssh_fwd, password);
    let repaired = repair.elapsed();

    // Power off: every filesystem is unmounted and synced already, so go
    // straight to the firmware (busybox `poweroff -f`; `systemctl poweroff
    // -ff` under systemd, whose images have no /sbin/poweroff without
    // systemd-sysv).
    let t = Instant::now();
    let off = ssh(
        ssh_fwd,
        password,
        "sudo -n sh -c 'sync; if [ -d /run/systemd/system ]; then systemctl poweroff -ff; else poweroff -f; fi'",
    );
    if !vm.wait_exit(Duration::from_secs(120)) {
        eprintln!(
            "[{profile}] QEMU still running 120 s after poweroff ({}); killing it",
            String::from_utf8_lossy(&off.stderr).trim()
        );
        vm.kill();
    }
    eprintln!(
        "[{profile}] step poweroff: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    check_disks_on_host(profile, &disks);
    eprintln!(
        "[{profile}] step host checks: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    eprintln!(
        "[{profile}] repair over SSH {:.1} s",
        repaired.as_secs_f64()
    );

    let secs = |d: Option<Duration>| {
        d.map_or("never seen".into(), |d| format!("{:.1} s", d.as_secs_f64()))
    };
    // The boot split (figures only: timings are not asserted, machines are
    // noisy; builder/benches/boot.sh reports them with their ratio).
    if let (Some(kernel), Some(beat)) = (run_init.seen(), heartbeat) {
        let user = beat.saturating_sub(kernel);
        eprintln!(
            "[{profile}] boot split: kernel {:.1} s (QEMU start to `Run /init`), userspace {:.1} s (to Ironic's first heartbeat), userspace/kernel {:.2}",
            kernel.as_secs_f64(),
            user.as_secs_f64(),
            user.as_secs_f64() / kernel.as_secs_f64()
        );
    }
    eprintln!(
        "[{profile}] SSH login {:.1} s after the node reached rescue",
        logged_in.saturating_sub(rescued).as_secs_f64()
    );
    // The console, kept for reading the timings (and a failure) later.
    let logs = workspace_root().join("target/test-data/ramdisk_rescue");
    if std::fs::create_dir_all(&logs).is_ok() {
        let _ = std::fs::write(logs.join(format!("{profile}.serial.log")), vm.serial());
    }
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
