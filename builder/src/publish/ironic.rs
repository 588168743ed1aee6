//! Pointing Ironic nodes at published images through the Bare Metal API.

use serde_json::{Value, json};

use super::glance::{Api, ApiError, Body};

/// Which pair of `driver_info` fields to set.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Rescue,
    Deploy,
}

impl Role {
    /// The `driver_info` keys for the kernel and the ramdisk.
    pub fn fields(self) -> (&'static str, &'static str) {
        match self {
            Role::Rescue => ("rescue_kernel", "rescue_ramdisk"),
            Role::Deploy => ("deploy_kernel", "deploy_ramdisk"),
        }
    }
}

/// The Bare Metal API.
#[derive(Debug, Clone)]
pub struct Ironic {
    api: Api,
}

impl Ironic {
    /// Microversion 1.5 is the first that accepts node names in URLs.
    pub fn new(base: &str, token: Option<String>, agent: ureq::Agent) -> Self {
        Self {
            api: Api::new(base, "/v1", token, agent)
                .with_header("X-OpenStack-Ironic-API-Version", "1.5"),
        }
    }

    /// `GET /v1/nodes/{node}` (name or UUID).
    pub fn node(&self, node: &str) -> Result<Value, ApiError> {
        self.api
            .call("GET", &format!("/v1/nodes/{node}"), Body::None, &[200])
    }

    /// The JSON patch that sets `role`'s kernel and ramdisk.
    pub fn patch_for(role: Role, kernel: &str, ramdisk: &str) -> Value {
        let (k, r) = role.fields();
        json!([
            {"op": "add", "path": format!("/driver_info/{k}"), "value": kernel},
            {"op": "add", "path": format!("/driver_info/{r}"), "value": ramdisk},
        ])
    }

    /// `PATCH /v1/nodes/{node}` setting `role`'s kernel and ramdisk.
    pub fn set_images(
        &self,
        node: &str,
        role: Role,
        kernel: &str,
        ramdisk: &str,
    ) -> Result<Value, ApiError> {
        let patch = Self::patch_for(role, kernel, ramdisk);
        self.api.call(
            "PATCH",
            &format!("/v1/nodes/{node}"),
            Body::Json(&patch, "application/json"),
            &[200],
        )
    }
}

/// Whether a node's `driver_info` mentions image `id` (as a bare UUID or a
/// `glance://` URL) in any field.
pub fn references(node: &Value, id: &str) -> bool {
    node["driver_info"].as_object().is_some_and(|di| {
        di.values()
            .any(|v| v.as_str().is_some_and(|s| s.contains(id)))
    })
}
