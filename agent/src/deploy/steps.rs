//! The deploy and clean steps this agent offers, in the shapes Ironic's
//! `refresh_steps` checks (`<kind>_steps` keyed by hardware manager, each
//! step with `interface`, `step`, `priority`), and their execution.
//!
//! The deploy list always holds `write_image` at priority 0: the conductor
//! runs it through its own out-of-band `write_image` step, and an empty
//! list would make it refresh the steps forever.

use super::settings::Settings;
use super::{erase, write};
use crate::commands::{CommandError, Outcome, Params};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Mutex;

/// The hardware manager name steps are listed under.
pub const MANAGER: &str = "IpaBuildHardwareManager";
/// Its key in `hardware_manager_version`.
const MANAGER_KEY: &str = "ipa_build_hardware_manager";

/// `hardware_manager_version`: Ironic sends it back with each step, and a
/// different value means the agent changed under it.
pub fn versions() -> Value {
    json!({ MANAGER_KEY: crate::AGENT_VERSION })
}

fn step(name: &str, priority: u32) -> Value {
    json!({"step": name, "priority": priority, "interface": "deploy", "reboot_requested": false, "abortable": true})
}

/// `deploy.get_deploy_steps`' result.
pub fn deploy_steps() -> Value {
    json!({
        "deploy_steps": { MANAGER: [step("write_image", 0), step("erase_devices_metadata", 0)] },
        "hardware_manager_version": versions(),
    })
}

/// `clean.get_clean_steps`' result (IPA's priorities: metadata 99; the full
/// erase is offered at 0, so it runs only when an operator asks).
pub fn clean_steps() -> Value {
    json!({
        "clean_steps": { MANAGER: [step("erase_devices_metadata", 99), step("erase_devices", 0)] },
        "hardware_manager_version": versions(),
    })
}

/// What deploying left for later commands (`standby.get_partition_uuids`).
#[derive(Debug, Default)]
pub struct DeployState {
    partition_uuids: Mutex<Option<Map<String, Value>>>,
}

impl DeployState {
    /// IPA's answer: `{}` before an image was written, `{"root uuid": …}` after.
    pub fn partition_uuids(&self) -> Value {
        let uuids = self
            .partition_uuids
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        Value::Object(uuids.unwrap_or_default())
    }
    fn set(&self, uuids: Map<String, Value>) {
        if let Ok(mut g) = self.partition_uuids.lock() {
            *g = Some(uuids);
        }
    }
}

/// IPA's `VersionMismatch` (409): the conductor then refreshes its steps.
fn check_version(given: Option<&Value>) -> Result<(), CommandError> {
    match given {
        Some(v) if !v.is_null() && *v != versions() => Err(CommandError {
            kind: "VersionMismatch".into(),
            code: 409,
            message: "Hardware managers version mismatch, reload agent with correct version".into(),
            details: format!(
                "Current versions: {}, versions used by ironic: {v}",
                versions()
            ),
        }),
        _ => Ok(()),
    }
}

/// The step object and its name, or a clear 400.
fn the_step(p: &Params) -> Result<(Value, String), CommandError> {
    let step = p.get("step").cloned().unwrap_or(Value::Null);
    let name = step["step"].as_str().map(str::to_string).ok_or_else(|| {
        CommandError::invalid_params(format!("Malformed step, no \"step\" key: {step}"))
    })?;
    Ok((step, name))
}

/// `deploy.execute_deploy_step`.
pub fn execute_deploy_step(
    root: &Path,
    settings: &Settings,
    state: &DeployState,
    p: Params,
) -> Outcome {
    check_version(p.get("deploy_version"))?;
    let (step, name) = the_step(&p)?;
    let node = p.get("node").cloned().unwrap_or(Value::Null);
    let args = step["args"].as_object().cloned().unwrap_or_default();
    let result = match name.as_str() {
        "write_image" => {
            let w = write::write_image(root, &settings.now(), &node, &args)?;
            let mut uuids = Map::new();
            uuids.insert("root uuid".into(), Value::String(w.disk_identifier.clone()));
            state.set(uuids);
            Value::String(format!(
                "image written to device {} ({:?}, {} bytes) root_uuid={}",
                w.device, w.format, w.size, w.disk_identifier
            ))
        }
        "erase_devices_metadata" => json!(erase::erase_devices_metadata(root)?),
        other => return Err(unknown(other)),
    };
    Ok(Some(json!({"deploy_result": result, "deploy_step": step})))
}

/// `clean.execute_clean_step`.
pub fn execute_clean_step(root: &Path, p: Params) -> Outcome {
    check_version(p.get("clean_version"))?;
    let (step, name) = the_step(&p)?;
    let result = match name.as_str() {
        "erase_devices_metadata" => erase::erase_devices_metadata(root)?,
        "erase_devices" => erase::erase_devices(root)?,
        other => return Err(unknown(other)),
    };
    Ok(Some(json!({"clean_result": result, "clean_step": step})))
}

fn unknown(name: &str) -> CommandError {
    CommandError {
        kind: "HardwareManagerMethodNotFound".into(),
        code: 500,
        message: "No HardwareManager found to handle method".into(),
        details: format!("Could not find method: {name}"),
    }
}
