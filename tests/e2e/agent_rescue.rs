//! `ipa-agent` against real Ironic 39: a rescue must reach `rescue`, leave
//! exactly Ironic's password hash on disk, and end the agent with status 0.
//!
//! Ironic runs all-in-one on loopback with `[agent]require_tls` at its
//! default (true), so the agent must use auto-TLS. The agent runs unprivileged
//! in a temporary root. First run creates Ironic's venv (about a minute).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ipa_e2e::agent::{AgentProcess, FakeRoot, agent_binary};
use ipa_e2e::ironic::{Ironic, Node};
use ipa_e2e::net::free_port;
use sha_crypt::{PasswordVerifier, ShaCrypt};

const MAC: &str = "52:54:00:12:34:56";

/// How long Ironic may take from the agent's start to `rescue`.
const RESCUE_TIMEOUT: Duration = Duration::from_secs(180);

/// Enrolls a node with a port for `mac`, deploys it, and switches it to the
/// interfaces a rescue through our agent uses.
fn active_node(ironic: &Ironic, name: &str, mac: &str) -> Node {
    let node = ironic.enroll_fake_node(name).unwrap();
    ironic.create_port(node.uuid(), mac).unwrap();
    ironic.bring_to_active(node.uuid()).unwrap();
    let node = ironic
        .set_interfaces_in_maintenance(node.uuid(), &[("deploy", "custom-agent")])
        .unwrap();
    assert_eq!(node.interface("deploy"), Some("custom-agent"));
    assert_eq!(node.interface("rescue"), Some("agent"));
    assert_eq!(node.provision_state(), "active");
    node
}

/// Starts a rescue with `password`, waits for `rescue wait` and returns the
/// hash Ironic will send to the agent (only readable before the rescue ends).
fn start_rescue(ironic: &Ironic, uuid: &str, password: &str) -> String {
    ironic.rescue(uuid, password).unwrap();
    let node = ironic
        .wait_for_provision_state(uuid, "rescue wait", Duration::from_secs(60))
        .unwrap();
    node.hashed_rescue_password()
        .expect("instance_info.hashed_rescue_password is set in rescue wait")
        .to_string()
}

/// Runs the agent against `ironic` in `root` until the node reaches `rescue`
/// and the agent exits; returns the node and the agent's exit status.
fn run_agent_to_rescue(ironic: &Ironic, uuid: &str, root: &FakeRoot) -> (Node, i32) {
    let binary = agent_binary().unwrap();
    let port = free_port().unwrap().to_string();
    let args: Vec<String> = [
        "--api-url",
        ironic.url(),
        "--root",
        root.path().to_str().unwrap(),
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        &port,
        "--advertise-host",
        "127.0.0.1",
        "--advertise-port",
        &port,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut agent = AgentProcess::spawn(&binary, &args).unwrap();
    let started = Instant::now();
    let mut exited_at: Option<Instant> = None;
    let node = ironic
        .wait_for_provision_state_watching(uuid, "rescue", RESCUE_TIMEOUT, |_| {
            let Some(status) = agent.try_status() else {
                return Ok(());
            };
            if !status.success() {
                return Err(format!("the agent exited early with {status}"));
            }
            // A successful agent exits right after answering finalize_rescue;
            // Ironic records the result within a second or two.
            let exited = *exited_at.get_or_insert_with(Instant::now);
            if exited.elapsed() < Duration::from_secs(15) {
                Ok(())
            } else {
                Err(format!(
                    "the agent exited ({status}) 15 s ago and Ironic has not recorded the rescue"
                ))
            }
        })
        .unwrap_or_else(|e| panic!("{e}\n--- agent log\n{}", agent.log_tail(40)));
    eprintln!(
        "rescue reached {:.1} s after the agent started",
        started.elapsed().as_secs_f64()
    );
    let status = agent
        .wait_timeout(Duration::from_secs(20))
        .expect("agent exits after finalize_rescue");
    (node, status.code().unwrap_or(-1))
}

fn assert_password_file(root: &FakeRoot, expected_hash: &str, password: &str) {
    let file = root.rescue_password_file();
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written == expected_hash,
        "{} does not hold exactly the hash Ironic stored ({} vs {} bytes)",
        file.display(),
        written.len(),
        expected_hash.len()
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode of {}", file.display());
    // Independent of Ironic: the hash is SHA-256-crypt (Ironic's default)
    // and verifies against the password given to the rescue call.
    assert!(written.starts_with("$5$"), "not a $5$ hash");
    assert!(
        ShaCrypt::default()
            .verify_password(password.as_bytes(), written.as_str())
            .is_ok(),
        "the stored hash does not verify against the rescue password"
    );
    assert!(
        root.rescued_marker().exists(),
        "/etc/.rescued marker missing"
    );
}

#[test]
fn agent_rescues_node_through_real_ironic() {
    let started = Instant::now();
    // Build first: Ironic would sit idle during a cold agent build.
    agent_binary().unwrap();
    eprintln!(
        "agent binary ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ironic = Ironic::start().unwrap();
    eprintln!(
        "ironic up at {} after {:.1} s",
        ironic.url(),
        started.elapsed().as_secs_f64()
    );
    let node = active_node(&ironic, "rescue-me", MAC);
    let uuid = node.uuid().to_string();

    let password = "Rescue-me-0nce!";
    let hash = start_rescue(&ironic, &uuid, password);
    let root = FakeRoot::with_nic(MAC).unwrap();
    let (node, code) = run_agent_to_rescue(&ironic, &uuid, &root);

    assert_eq!(code, 0, "agent exit status");
    assert_password_file(&root, &hash, password);
    let agent_url = node.internal("agent_url").unwrap_or_default();
    assert!(
        agent_url.starts_with("https://127.0.0.1:"),
        "agent_url {agent_url:?}"
    );
    // The conductor's clean-up drops both passwords once the rescue succeeded.
    assert_eq!(node.hashed_rescue_password(), None);
    eprintln!("whole test took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn rescue_again_after_unrescue_gets_a_fresh_token() {
    agent_binary().unwrap();
    let ironic = Ironic::start().unwrap();
    let mac = "52:54:00:65:43:21";
    let node = active_node(&ironic, "rescue-twice", mac);
    let uuid = node.uuid().to_string();

    let first_hash = start_rescue(&ironic, &uuid, "first-Passw0rd");
    let first_root = FakeRoot::with_nic(mac).unwrap();
    let (node, code) = run_agent_to_rescue(&ironic, &uuid, &first_root);
    assert_eq!(code, 0);
    assert_password_file(&first_root, &first_hash, "first-Passw0rd");
    let first_token = node
        .internal("agent_secret_token")
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        first_token.len(),
        43,
        "Ironic issues secrets.token_urlsafe() tokens"
    );

    ironic.unrescue(&uuid).unwrap();
    ironic
        .wait_for_provision_state(&uuid, "active", Duration::from_secs(60))
        .unwrap();

    // A new boot of the rescue ramdisk: new root, new agent, new password.
    let second_hash = start_rescue(&ironic, &uuid, "second-Passw0rd");
    let wiped = ironic.node(&uuid).unwrap();
    assert_eq!(
        wiped.internal("agent_secret_token"),
        None,
        "rescue wipes the token"
    );
    let second_root = FakeRoot::with_nic(mac).unwrap();
    let (node, code) = run_agent_to_rescue(&ironic, &uuid, &second_root);
    assert_eq!(code, 0);
    assert_password_file(&second_root, &second_hash, "second-Passw0rd");
    let second_token = node.internal("agent_secret_token").unwrap_or_default();
    assert_eq!(second_token.len(), 43);
    assert!(
        second_token != first_token,
        "the second rescue reused the first token"
    );
}
