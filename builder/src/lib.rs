//! `ipa-build`: builds rescue and deploy ramdisks for OpenStack Ironic.
//!
//! The build is a fixed pipeline, read top to bottom in [`build::build`];
//! each stage is one module with one job. See `ARCHITECTURE.md` for the map.

pub mod agent;
pub mod audit;
pub mod build;
pub mod cache;
pub mod cmd;
pub mod config;
pub mod debian;
pub mod hardware;
pub mod host;
pub mod initramfs;
pub mod manifest;
pub mod publish;
pub mod qemu;
pub mod report;
pub mod stage;
