//! Harness for end-to-end tests: real OpenStack Ironic on loopback, the agent
//! binary built the way the builder ships it, and the small helpers they share.
//!
//! Everything here starts real processes (a Python virtualenv with Ironic, the
//! static `ipa-agent`); nothing is mocked. Later tests (QEMU boots of whole
//! ramdisks, Glance publishing) reuse the same pieces, so each module has one
//! job:
//!
//! - [`paths`]: where the workspace and the e2e scratch directory are.
//! - [`net`]: free loopback ports.
//! - [`venv`]: Python virtualenvs created on demand, once, under a lock.
//! - [`process`]: a child process in its own process group, killed on drop.
//! - [`ironic`]: an all-in-one Ironic and a typed client for what tests need.
//! - [`agent`]: building and running `ipa-agent` against a fake root.
//! - [`qemu`]: a VM booting a built ramdisk, its serial console in a file.
//! - [`ramdisk`]: a profile built into a kernel and initramfs.
//! - [`image_server`]: images served at one URL to a VM and, through a
//!   loopback proxy, to Ironic.
//! - [`disk_images`]: whole-disk images made without root, and reading
//!   disk files back.

pub mod agent;
pub mod disk_images;
pub mod glance;
pub mod image_server;
pub mod ironic;
pub mod net;
pub mod paths;
pub mod peer;
pub mod process;
pub mod qemu;
pub mod ramdisk;
pub mod venv;
