//! A small client for the parts of Ironic's REST API that tests drive.
//!
//! It always asks for the newest microversion (`latest`), treats any
//! unexpected status as an error carrying Ironic's answer, and never logs
//! request bodies (they may hold rescue passwords).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{IronicError, Node, NodeWait};

/// How often [`IronicClient::wait_for_provision_state`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Timeout for one state transition of a fake-hardware node. They take well
/// under a second; the margin covers a busy machine.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// REST client for one Ironic endpoint.
#[derive(Debug, Clone)]
pub struct IronicClient {
    base: String,
    agent: ureq::Agent,
}

impl IronicClient {
    /// A client for `base`, e.g. `http://127.0.0.1:6385`.
    pub fn new(base: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether `GET /` answers 200.
    pub fn is_up(&self) -> bool {
        let url = format!("{}/", self.base);
        matches!(self.agent.get(&url).call(), Ok(resp) if resp.status() == 200)
    }

    /// Sends a request and returns the status and body text.
    fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), IronicError> {
        let url = format!("{}{path}", self.base);
        let http_err = |source: ureq::Error| IronicError::Http {
            method,
            url: url.clone(),
            source: Box::new(source),
        };
        let version = ("X-OpenStack-Ironic-API-Version", "latest");
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header(version.0, version.1).call(),
            ("DELETE", _) => self.agent.delete(&url).header(version.0, version.1).call(),
            (_, body) => {
                let text = body.map(Value::to_string).unwrap_or_default();
                let builder = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.patch(&url),
                };
                builder
                    .header(version.0, version.1)
                    .header("Content-Type", "application/json")
                    .send(text)
            }
        };
        let mut resp = result.map_err(http_err)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(http_err)?;
        Ok((status, text))
    }

    /// Sends a request, checks the status is one of `ok`, and parses the
    /// body as JSON (`null` for an empty body).
    pub fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        ok: &[u16],
    ) -> Result<Value, IronicError> {
        let (status, text) = self.request(method, path, body)?;
        let url = format!("{}{path}", self.base);
        if !ok.contains(&status) {
            return Err(IronicError::Api {
                method,
                url,
                status,
                body: text,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|source| IronicError::Json {
            url,
            body: text,
            source,
        })
    }

    /// `GET /v1/nodes/{id}`.
    pub fn node(&self, id: &str) -> Result<Node, IronicError> {
        self.call("GET", &format!("/v1/nodes/{id}"), None, &[200])
            .map(Node::new)
    }

    /// Enrolls a `fake-hardware` node named `name` with `network_interface=noop`,
    /// `rescue_interface=agent` and `deploy_interface=fake`.
    ///
    /// The deploy interface starts as `fake` because a `custom-agent` deploy
    /// on fake hardware stops in `wait call-back` until an agent heartbeats
    /// (there is none during deploy). Switch it with
    /// [`Self::set_interfaces_in_maintenance`] once the node is active, since
    /// heartbeats in `rescue wait` are handled by the deploy interface.
    pub fn enroll_fake_node(&self, name: &str) -> Result<Node, IronicError> {
        let body = json!({
            "name": name,
            "driver": "fake-hardware",
            "deploy_interface": "fake",
            "network_interface": "noop",
            "rescue_interface": "agent",
        });
        self.call("POST", "/v1/nodes", Some(&body), &[201])
            .map(Node::new)
    }

    /// `POST /v1/nodes` with `body` (driver, interfaces, driver_info...).
    pub fn create_node(&self, body: &Value) -> Result<Node, IronicError> {
        self.call("POST", "/v1/nodes", Some(body), &[201])
            .map(Node::new)
    }

    /// The MAC addresses of the node's ports, sorted.
    pub fn port_addresses(&self, node_uuid: &str) -> Result<Vec<String>, IronicError> {
        let path = format!("/v1/ports?node_uuid={node_uuid}");
        let ports = self.call("GET", &path, None, &[200])?;
        let mut macs: Vec<String> = ports["ports"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["address"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        macs.sort();
        Ok(macs)
    }

    /// Applies JSON patch operations as they are (`add` of nested or
    /// non-string values, `remove`), unlike [`Self::patch_node`].
    pub fn patch_node_ops(&self, id: &str, ops: Value) -> Result<Node, IronicError> {
        self.call("PATCH", &format!("/v1/nodes/{id}"), Some(&ops), &[200])
            .map(Node::new)
    }

    /// Creates a port with `mac` on the node: lookup finds nodes by port MACs.
    pub fn create_port(&self, node_uuid: &str, mac: &str) -> Result<Value, IronicError> {
        let body = json!({"node_uuid": node_uuid, "address": mac});
        self.call("POST", "/v1/ports", Some(&body), &[201])
    }

    /// `PUT /v1/nodes/{id}/states/provision` with `target` plus `extra` fields
    /// (e.g. `rescue_password`). Returns once Ironic accepted it (202).
    pub fn set_provision_state(
        &self,
        id: &str,
        target: &str,
        extra: Option<Value>,
    ) -> Result<(), IronicError> {
        let mut body = json!({"target": target});
        if let (Some(Value::Object(fields)), Some(map)) = (extra, body.as_object_mut()) {
            map.extend(fields);
        }
        let path = format!("/v1/nodes/{id}/states/provision");
        self.call("PUT", &path, Some(&body), &[202]).map(drop)
    }

    /// Polls the node until `provision_state == wanted` and no transition is
    /// pending (`target_provision_state` empty, unless `wanted` is itself a
    /// waiting state such as `rescue wait`).
    ///
    /// A node that lands in one of [`super::FAILURE_STATES`] other than
    /// `wanted` ends the wait early with [`IronicError::Failed`]; running out of
    /// time gives [`IronicError::Timeout`].
    pub fn wait_for_provision_state(
        &self,
        id: &str,
        wanted: &str,
        timeout: Duration,
    ) -> Result<Node, IronicError> {
        self.wait_for_provision_state_watching(id, wanted, timeout, |_| Ok(()))
    }

    /// [`wait_for_provision_state`](Self::wait_for_provision_state) for a
    /// node that gets there only through a process the test runs (the agent,
    /// a QEMU VM): `watch` sees every polled node and returns `Err(why)` once
    /// that process can no longer get it there (it exited, QEMU stopped). The
    /// wait then ends with [`IronicError::Stopped`] at once instead of running
    /// out the timeout.
    pub fn wait_for_provision_state_watching(
        &self,
        id: &str,
        wanted: &str,
        timeout: Duration,
        watch: impl FnMut(&Node) -> Result<(), String>,
    ) -> Result<Node, IronicError> {
        let waiting_state = wanted.ends_with(" wait") || wanted.starts_with("wait ");
        let done = |node: &Node| {
            node.provision_state() == wanted
                && (waiting_state || node.target_provision_state().is_none())
        };
        self.poll(id, wanted, timeout, done, watch)
    }

    /// The loop behind the waits: polls the node until `done(node)`; `what`
    /// names the condition in errors. A failure state that `what` does not
    /// name, `watch` giving up (as in
    /// [`wait_for_provision_state_watching`](Self::wait_for_provision_state_watching)),
    /// or the timeout end it with an error.
    pub fn poll(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Node) -> bool,
        mut watch: impl FnMut(&Node) -> Result<(), String>,
    ) -> Result<Node, IronicError> {
        let started = Instant::now();
        loop {
            let node = self.node(id)?;
            if done(&node) {
                return Ok(node);
            }
            let wait = || {
                Box::new(NodeWait {
                    node: id.to_string(),
                    wanted: what.to_string(),
                    waited: started.elapsed(),
                    state: node.provision_state().to_string(),
                    target: node.target_provision_state().map(str::to_string),
                    last_error: node.last_error().map(str::to_string),
                })
            };
            if node.is_failed() && node.provision_state() != what {
                return Err(IronicError::Failed(wait()));
            }
            if let Err(why) = watch(&node) {
                return Err(IronicError::Stopped { wait: wait(), why });
            }
            if started.elapsed() > timeout {
                return Err(IronicError::Timeout(wait()));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Moves an enrolled node manage → provide → deploy to `active`.
    pub fn bring_to_active(&self, id: &str) -> Result<Node, IronicError> {
        for (target, state) in [
            ("manage", "manageable"),
            ("provide", "available"),
            ("active", "active"),
        ] {
            self.set_provision_state(id, target, None)?;
            self.wait_for_provision_state(id, state, STEP_TIMEOUT)?;
        }
        self.node(id)
    }

    /// Turns maintenance mode on or off and waits until the node shows it.
    pub fn set_maintenance(&self, id: &str, on: bool) -> Result<Node, IronicError> {
        let path = format!("/v1/nodes/{id}/maintenance");
        if on {
            let body = json!({"reason": "ipa-e2e: changing interfaces"});
            self.call("PUT", &path, Some(&body), &[202])?;
        } else {
            self.call("DELETE", &path, None, &[202])?;
        }
        let what = if on {
            "maintenance on"
        } else {
            "maintenance off"
        };
        let done = |node: &Node| node.maintenance() == on;
        self.poll(id, what, STEP_TIMEOUT, done, |_| Ok(()))
    }

    /// Replaces node fields with a JSON patch, e.g. `[("/deploy_interface", "custom-agent")]`.
    pub fn patch_node(&self, id: &str, fields: &[(&str, &str)]) -> Result<Node, IronicError> {
        let ops: Vec<Value> = fields
            .iter()
            .map(|(path, value)| json!({"op": "replace", "path": path, "value": value}))
            .collect();
        self.call(
            "PATCH",
            &format!("/v1/nodes/{id}"),
            Some(&Value::Array(ops)),
            &[200],
        )
        .map(Node::new)
    }

    /// Sets interfaces (`("deploy", "custom-agent")`, ...) of a node in any
    /// state: Ironic lets an active node's interfaces change only in
    /// maintenance, so this enters maintenance, patches, and leaves it.
    pub fn set_interfaces_in_maintenance(
        &self,
        id: &str,
        interfaces: &[(&str, &str)],
    ) -> Result<Node, IronicError> {
        self.set_maintenance(id, true)?;
        let paths: Vec<String> = interfaces
            .iter()
            .map(|(kind, _)| format!("/{kind}_interface"))
            .collect();
        let fields: Vec<(&str, &str)> = paths
            .iter()
            .zip(interfaces)
            .map(|(path, (_, value))| (path.as_str(), *value))
            .collect();
        let patched = self.patch_node(id, &fields);
        // Leave maintenance even when the patch failed, then report the patch.
        let unset = self.set_maintenance(id, false);
        patched?;
        unset
    }

    /// Starts a rescue with `password` (the node must be `active`, `rescue`
    /// or `rescue failed`). The node goes to `rescue wait` until an agent
    /// heartbeats.
    pub fn rescue(&self, id: &str, password: &str) -> Result<(), IronicError> {
        self.set_provision_state(id, "rescue", Some(json!({"rescue_password": password})))
    }

    /// Ends a rescue; the node returns to `active`.
    pub fn unrescue(&self, id: &str) -> Result<(), IronicError> {
        self.set_provision_state(id, "unrescue", None)
    }

    /// Aborts a waiting operation (e.g. `rescue wait` → `rescue failed`).
    pub fn abort(&self, id: &str) -> Result<(), IronicError> {
        self.set_provision_state(id, "abort", None)
    }
}
