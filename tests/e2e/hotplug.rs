//! Hotplug after boot, through QEMU's QMP monitor: a NIC plugged into a
//! running ramdisk gets its driver and a DHCP lease, and a USB stick gets
//! its drivers and a block device.
//!
//! The ramdisk boots with one virtio NIC and an empty xHCI controller, no
//! Ironic (the agent serves its API without lookup). Then:
//! - a user-mode network on its own subnet (10.0.9.0/24, so the guest is
//!   10.0.9.15 there) with a host port forwarded to the guest's SSH port,
//!   and an `e1000e` NIC on it (a driver no boot device needed). The lease
//!   shows on the console, and an SSH banner read through that forward
//!   proves the guest answers on the new interface's address;
//! - a raw image as a `usb-storage` stick on the xHCI bus: the guest must
//!   load the USB storage driver and make the block device, then see it go
//!   when it is unplugged.
//!
//! tinyipa does this with busybox mdev listening for uevents; coreos with
//! systemd-udevd and networkd. Run with `--nocapture` for the timings.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ipa_e2e::net::free_port;
use ipa_e2e::qemu::{self, Boot, Controller, Qemu, Vm};
use ipa_e2e::ramdisk::{Ramdisk, build_profile};
use serde_json::json;

const MAC: &str = "52:54:00:12:34:56";
const HOT_MAC: &str = "52:54:00:12:34:99";
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const PLUG_TIMEOUT: Duration = Duration::from_secs(90);

/// What each profile says on the console when things happen.
struct Markers {
    /// Userspace is up and serving.
    up: &'static str,
    /// The hot-plugged NIC holds its lease.
    lease: &'static str,
    /// The stick's block device exists.
    stick_in: &'static str,
    /// ...and is gone again.
    stick_out: &'static str,
}

/// Reads the SSH server's banner through `port`: only a guest that holds
/// the address on the forwarded network sends one.
fn ssh_banner(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait(vm: &mut Vm, marker: &str, what: &str) -> Duration {
    let t = Instant::now();
    vm.wait_for(marker, PLUG_TIMEOUT)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    t.elapsed()
}

fn hotplug(profile: &str, m: Markers) {
    let started = Instant::now();
    qemu::ensure_installed().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let Ramdisk {
        summary,
        kernel,
        initramfs: initrd,
    } = build_profile(profile, &scratch.path().join("out")).unwrap();
    eprintln!(
        "[{profile}] built in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let stick = scratch.path().join("stick.img");
    std::fs::File::create(&stick)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mut vm = Qemu::new(Boot::Kernel {
        kernel,
        initrd,
        append: format!("{} console=ttyS0", summary.cmdline),
    })
    .memory_mib(768)
    .nic("virtio-net-pci", MAC)
    .controller(Controller::Usb)
    .spawn_in(&scratch.path().join("vm"))
    .unwrap();
    let up = vm.wait_for(m.up, BOOT_TIMEOUT).unwrap();
    eprintln!("[{profile}] up after {:.1} s", up.as_secs_f64());
    let mut qmp = vm.qmp().unwrap();

    // A NIC.
    let ssh = free_port().unwrap();
    qmp.netdev_add_user("hot0", "10.0.9.0/24", &[(ssh, 22)])
        .unwrap();
    qmp.device_add(
        "e1000e",
        "hotnic",
        json!({"netdev": "hot0", "mac": HOT_MAC, "romfile": ""}),
    )
    .unwrap();
    let leased = wait(&mut vm, m.lease, "the plugged NIC's lease");
    eprintln!(
        "[{profile}] NIC plugged: lease after {:.1} s",
        leased.as_secs_f64()
    );
    let deadline = Instant::now() + PLUG_TIMEOUT;
    let banner = loop {
        match ssh_banner(ssh) {
            Ok(b) if b.starts_with("SSH-2.0-") => break b,
            other => assert!(
                Instant::now() < deadline,
                "no SSH banner through the new NIC's network: {other:?}\n{}",
                vm.diagnostics()
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("[{profile}] SSH answers on 10.0.9.15: {}", banner.trim());

    // A USB stick, in and out.
    qmp.blockdev_add_raw("stick0", &stick).unwrap();
    qmp.device_add(
        "usb-storage",
        "stick",
        json!({"bus": "xhci0.0", "drive": "stick0", "removable": true}),
    )
    .unwrap();
    let plugged = wait(&mut vm, m.stick_in, "the USB stick's block device");
    eprintln!(
        "[{profile}] USB stick plugged: block device after {:.1} s",
        plugged.as_secs_f64()
    );
    qmp.device_del("stick").unwrap();
    qmp.wait_event("DEVICE_DELETED", PLUG_TIMEOUT).unwrap();
    let removed = wait(&mut vm, m.stick_out, "the USB stick's removal");
    eprintln!(
        "[{profile}] USB stick removed: seen after {:.1} s",
        removed.as_secs_f64()
    );
    eprintln!(
        "[{profile}] whole test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn tinyipa_hotplug_nic_and_usb_stick() {
    hotplug(
        "tinyipa",
        Markers {
            up: "API listening on",
            lease: "bound to 10.0.9.15",
            stick_in: "hotplug: block device /dev/sd",
            stick_out: "hotplug: block device /dev/sda removed",
        },
    );
}

#[test]
fn coreos_hotplug_nic_and_usb_stick() {
    hotplug(
        "coreos",
        Markers {
            up: "API listening on",
            // networkd, through the journal on the console.
            lease: "DHCPv4 address 10.0.9.15/24",
            // The kernel's own messages: the USB storage driver was loaded
            // (by udev) and the disk attached; then detached.
            stick_in: "Attached SCSI removable disk",
            stick_out: "USB disconnect",
        },
    );
}
