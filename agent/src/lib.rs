//! ipa-agent: a small, static agent for OpenStack Ironic that speaks the
//! ironic-python-agent (IPA) protocol, enough to rescue a node.
//!
//! The binary (`main.rs`) only parses flags and calls [`agent::run`] or
//! [`rescue_user::run`]; everything else lives here so tests can drive it.

pub mod agent;
pub mod api;
pub mod commands;
pub mod config;
pub mod deploy;
pub mod extensions;
pub mod fsutil;
pub mod hardware;
pub mod heartbeat;
pub mod inspect;
pub mod ironic;
pub mod logging;
pub mod net;
pub mod ntp;
pub mod redact;
pub mod rescue_user;
pub mod server;
pub mod timing;
pub mod tls;
pub mod trust;

/// The version this agent reports in `/v1/status` and heartbeats.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
