//! Issue 13, "nothing secret in logs": what `log.collect_system_logs`
//! returns and what the agent prints, with the token on the kernel command
//! line, in log files that repeat it, and a rescue hash in a log file.

mod common;
use base64::Engine;
use common::{Killed, agent_command, agent_log, free_port, post, wait_listening};
use serde_json::json;
use std::io::Read;
use std::time::Duration;

const TOKEN: &str = "CmdlineToken-0123456789abcdef0123456789";
const HASH: &str = "$6$rounds=5000$saltsaltsalt$Zx8CjI1cQeqKfSNdE0gc1mDkqsOXrcYk";

#[test]
fn collected_logs_and_agent_output_hold_no_secret() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(
        root.join("proc/cmdline"),
        format!("BOOT_IMAGE=vmlinuz ipa-agent-token={TOKEN} ipa-debug=1\n"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::write(
        root.join("var/log/messages"),
        format!(
            "kernel: Command line: BOOT_IMAGE=vmlinuz ipa-agent-token={TOKEN} quiet\n\
             httpd: GET /v1/commands/?agent_token={TOKEN} 200\n\
             agent: {{\"agent_token\": \"{TOKEN}\", \"rescue_password\": \"hunter2-pw\"}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("var/log/syslog"),
        format!("useradd: rescue:{HASH}:19000::\n"),
    )
    .unwrap();
    let port = free_port();
    let child = Killed(agent_command(root, port, &[]).spawn().unwrap());
    wait_listening(port, Duration::from_secs(10));
    let (status, v) = post(
        &format!("http://127.0.0.1:{port}/v1/commands/?agent_token={TOKEN}"),
        &json!({"name": "log.collect_system_logs", "params": {}}).to_string(),
    );
    drop(child);
    assert_eq!(status, 200, "{v}");
    let b64 = v["command_result"]["system_logs"].as_str().unwrap();
    let tgz = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz.as_slice()));
    let mut all = String::new();
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        names.push(e.path().unwrap().display().to_string());
        e.read_to_string(&mut all).unwrap();
    }
    assert!(names.contains(&"var/log/messages".to_string()), "{names:?}");
    assert!(all.contains("ipa-agent-token=***"), "{all}");
    for secret in [TOKEN, "hunter2-pw", &HASH[3..]] {
        assert!(!all.contains(secret), "{secret} in collected logs:\n{all}");
    }
    let printed = agent_log(root);
    assert!(!printed.contains(TOKEN), "{printed}");
}
