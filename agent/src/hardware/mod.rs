//! What the agent knows about the machine it runs on, read from `--root`
//! (sysfs, `/dev`, `/proc`), so tests can hand it a fake tree.
//!
//! `disks` enumerates the block devices deploy, cleaning and inspection act
//! on; each device kind gets its own module here. `inventory` puts them
//! together in IPA's inventory, for inspection.

pub mod cpu;
pub mod disks;
pub mod interfaces;
pub mod inventory;
pub mod memory;
pub mod system;
