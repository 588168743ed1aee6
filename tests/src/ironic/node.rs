//! A node as the Ironic API returns it.

use serde_json::{Map, Value};

/// Provision states a node never leaves on its own: reaching one of them
/// while waiting for another state ends the wait with an error.
pub const FAILURE_STATES: &[&str] = &[
    "error",
    "deploy failed",
    "clean failed",
    "rescue failed",
    "unrescue failed",
    "inspect failed",
    "adopt failed",
    "service failed",
];

/// `GET /v1/nodes/{id}`, with typed accessors for what tests look at.
#[derive(Debug, Clone)]
pub struct Node {
    raw: Value,
}

impl Node {
    pub(crate) fn new(raw: Value) -> Self {
        Self { raw }
    }

    /// The whole JSON document.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.raw.get(key).and_then(Value::as_str)
    }

    fn object(&self, key: &str) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.raw
            .get(key)
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    pub fn uuid(&self) -> &str {
        self.str_field("uuid").unwrap_or_default()
    }

    pub fn provision_state(&self) -> &str {
        self.str_field("provision_state").unwrap_or_default()
    }

    pub fn target_provision_state(&self) -> Option<&str> {
        self.str_field("target_provision_state")
    }

    pub fn last_error(&self) -> Option<&str> {
        self.str_field("last_error")
    }

    pub fn maintenance(&self) -> bool {
        self.raw
            .get("maintenance")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// An interface field such as `deploy_interface` or `rescue_interface`.
    pub fn interface(&self, kind: &str) -> Option<&str> {
        self.str_field(&format!("{kind}_interface"))
    }

    /// `instance_info`; secrets are readable only when the Ironic runs with
    /// [`super::IronicConfig::reveal_secrets`] (the default here).
    pub fn instance_info(&self) -> &Map<String, Value> {
        self.object("instance_info")
    }

    /// `driver_internal_info` (`agent_url`, `agent_version`,
    /// `agent_verify_ca`, `agent_last_heartbeat`, `agent_secret_token`, ...).
    /// The token is readable only with [`super::IronicConfig::reveal_secrets`].
    pub fn driver_internal_info(&self) -> &Map<String, Value> {
        self.object("driver_internal_info")
    }

    /// `instance_info.hashed_rescue_password`: present from the rescue
    /// request until the conductor's clean-up after a successful rescue.
    pub fn hashed_rescue_password(&self) -> Option<&str> {
        self.instance_info()
            .get("hashed_rescue_password")
            .and_then(Value::as_str)
    }

    /// A string field of `driver_internal_info`.
    pub fn internal(&self, key: &str) -> Option<&str> {
        self.driver_internal_info().get(key).and_then(Value::as_str)
    }

    /// Whether the node sits in one of [`FAILURE_STATES`].
    pub fn is_failed(&self) -> bool {
        FAILURE_STATES.contains(&self.provision_state())
    }
}
