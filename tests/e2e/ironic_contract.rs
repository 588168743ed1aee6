//! What real Ironic 39 expects from an agent, checked without our agent.
//!
//! These pin the server-side rules the agent is built on (spec §2–§3), so a
//! failure of `agent_rescue` can be told apart from a change in Ironic or in
//! the harness: the token is issued once, at the first lookup, and masked
//! afterwards; `[agent]require_tls` (left at its default) refuses `http://`
//! callbacks; a heartbeat needs the token.

use std::time::Duration;

use ipa_e2e::ironic::{Ironic, IronicError};
use serde_json::{Value, json};

const MAC: &str = "52:54:00:aa:bb:cc";

/// Ironic wraps errors as `{"error_message": "<JSON with faultstring>"}`.
fn faultstring(answer: &Value) -> String {
    let inner = answer["error_message"].as_str().unwrap_or_default();
    let parsed: Value = serde_json::from_str(inner).unwrap_or(Value::Null);
    parsed["faultstring"].as_str().unwrap_or(inner).to_string()
}

#[test]
fn lookup_issues_token_once_and_tls_is_required() {
    let ironic = Ironic::start().unwrap();
    let node = ironic.enroll_fake_node("contract").unwrap();
    let uuid = node.uuid().to_string();
    ironic.create_port(&uuid, MAC).unwrap();

    // Lookup is refused while the node is not waiting for an agent.
    let lookup = format!("/v1/lookup?addresses={MAC}");
    let refused = ironic.call("GET", &lookup, None, &[200]).unwrap_err();
    assert!(
        matches!(refused, IronicError::Api { status: 404, .. }),
        "{refused}"
    );

    ironic.bring_to_active(&uuid).unwrap();
    ironic
        .set_interfaces_in_maintenance(&uuid, &[("deploy", "custom-agent")])
        .unwrap();
    ironic.rescue(&uuid, "contract-Passw0rd").unwrap();
    ironic
        .wait_for_provision_state(&uuid, "rescue wait", Duration::from_secs(60))
        .unwrap();

    let first = ironic.call("GET", &lookup, None, &[200]).unwrap();
    assert_eq!(first["node"]["uuid"], Value::from(uuid.as_str()));
    assert_eq!(first["config"]["heartbeat_timeout"], Value::from(300));
    let token = first["config"]["agent_token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 43, "secrets.token_urlsafe() length");
    let second = ironic.call("GET", &lookup, None, &[200]).unwrap();
    assert_eq!(second["config"]["agent_token"], Value::from("******"));

    let heartbeat = format!("/v1/heartbeat/{uuid}");
    let plain = json!({
        "callback_url": "http://127.0.0.1:9",
        "agent_token": token,
        "agent_version": "13.0.0",
    });
    let answer = ironic
        .call("POST", &heartbeat, Some(&plain), &[400])
        .unwrap();
    assert_eq!(faultstring(&answer), "TLS is required by configuration");

    let no_token = json!({"callback_url": "https://127.0.0.1:9", "agent_version": "13.0.0"});
    let answer = ironic
        .call("POST", &heartbeat, Some(&no_token), &[400])
        .unwrap();
    assert_eq!(
        faultstring(&answer),
        "Agent token is required for heartbeat processing."
    );

    // Nothing above may have moved the node on.
    let node = ironic.node(&uuid).unwrap();
    assert_eq!(node.provision_state(), "rescue wait");
    assert_eq!(node.internal("agent_url"), None);
}
