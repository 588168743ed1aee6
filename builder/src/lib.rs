//! `ipa-build`: builds rescue and deploy ramdisks for OpenStack Ironic.
//!
//! The build is a fixed pipeline, read top to bottom in [`pipeline::build`];
//! each stage is one module with one job. See `ARCHITECTURE.md` for the map.

pub mod agent;
pub mod audit;
pub mod boot;
pub mod cache;
pub mod debian;
pub mod diag;
pub mod diff;
pub mod element;
pub mod emit;
pub mod hooks;
pub mod host;
pub mod inspect;
pub mod iso;
pub mod pack;
pub mod pipeline;
pub mod profile;
pub mod publish;
pub mod report;
pub mod scrub;
pub mod stage;
