//! The deploy, clean, image and standby commands through the real registry
//! and executor, as Ironic's conductor calls them: result shapes, async
//! completion, errors as `command_error`, and the agent still answering.

use ipa_agent::commands::{Executor, Params, Status};
use ipa_agent::deploy::settings::Settings;
use ipa_agent::extensions::{Control, Ctx, builtin_registry};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The registry with the agent's default settings, except that a failed
/// image download is not retried (the tests' image URLs do not answer).
fn executor(root: &Path) -> Executor {
    let mut deploy = Settings::default();
    deploy.download.retries = 0;
    let ctx = Ctx {
        root: root.to_path_buf(),
        control: Control::default(),
        deploy,
    };
    Executor::new(builtin_registry(&ctx), Arc::new(|| {}))
}

fn params(v: Value) -> Params {
    v.as_object().unwrap().clone()
}

/// Runs a command and waits for it; returns the IPA result object.
fn run(x: &Executor, name: &str, p: Value) -> Value {
    let e = x.execute(name, params(p)).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while e.state().status == Status::Running && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    e.to_json()
}

/// A root with one 5 GiB sparse disk whose first and last MiB hold data.
fn root_with_disk(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::FileExt;
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("sys/block/vda")).unwrap();
    std::fs::write(
        root.join("sys/block/vda/size"),
        format!("{}\n", (5u64 << 30) / 512),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let f = std::fs::File::create(root.join("dev/vda")).unwrap();
    f.set_len(5 << 30).unwrap();
    f.write_all_at(&[0x55u8; 4096], 0).unwrap();
    f.write_all_at(&[0x55u8; 4096], (5 << 30) - 4096).unwrap();
    root
}

#[test]
fn step_lists_have_the_shape_refresh_steps_checks() {
    let d = tempfile::tempdir().unwrap();
    let x = executor(d.path());
    let r = run(
        &x,
        "deploy.get_deploy_steps",
        json!({"node": {}, "ports": []}),
    );
    assert_eq!(r["command_status"], "SUCCEEDED");
    let res = &r["command_result"];
    let steps: Vec<&Value> = res["deploy_steps"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
        .collect();
    assert!(
        steps.iter().any(|s| s["step"] == "write_image"
            && s["priority"] == 0
            && s["interface"] == "deploy")
    );
    assert!(res["hardware_manager_version"].is_object());
    let r = run(
        &x,
        "clean.get_clean_steps",
        json!({"node": {}, "ports": []}),
    );
    let steps: Vec<&Value> = r["command_result"]["clean_steps"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
        .collect();
    let prio = |n: &str| {
        steps
            .iter()
            .find(|s| s["step"] == n)
            .map(|s| s["priority"].clone())
    };
    assert_eq!(prio("erase_devices_metadata"), Some(json!(99)));
    assert_eq!(prio("erase_devices"), Some(json!(0)));
    for s in steps {
        assert!(s["interface"].is_string() && s["step"].is_string() && s["priority"].is_number());
    }
}

#[test]
fn clean_step_erases_metadata_and_echoes_the_step() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_disk(d.path());
    let x = executor(&root);
    let versions = run(
        &x,
        "clean.get_clean_steps",
        json!({"node": {}, "ports": []}),
    )["command_result"]["hardware_manager_version"]
        .clone();
    let step = json!({"step": "erase_devices_metadata", "priority": 99, "interface": "deploy", "abortable": true});
    let r = run(
        &x,
        "clean.execute_clean_step",
        json!({"step": step, "node": {}, "ports": [], "clean_version": versions}),
    );
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(r["command_name"], "execute_clean_step");
    assert_eq!(r["command_result"]["clean_step"], step);
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(root.join("dev/vda")).unwrap();
    let mut start = [1u8; 4096];
    f.read_exact_at(&mut start, 0).unwrap();
    assert!(start.iter().all(|b| *b == 0));
    let mut end = [1u8; 4096];
    f.read_exact_at(&mut end, (5 << 30) - 4096).unwrap();
    assert!(end.iter().all(|b| *b == 0));
    let r = run(
        &x,
        "clean.execute_clean_step",
        json!({"step": step, "node": {}, "ports": [], "clean_version": {"other": "1"}}),
    );
    assert_eq!(r["command_error"]["type"], "VersionMismatch", "{r}");
}

#[test]
fn a_failed_deploy_step_is_a_command_error_and_the_agent_keeps_serving() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_disk(d.path());
    let x = executor(&root);
    let step = json!({"step": "write_image", "interface": "deploy", "priority": 80,
        "args": {"image_info": {"id": "i", "urls": ["http://127.0.0.1:9/i.raw"], "checksum": "a".repeat(64)},
                 "configdrive": null}});
    let r = run(
        &x,
        "deploy.execute_deploy_step",
        json!({"step": step, "node": {}, "ports": [], "deploy_version": null}),
    );
    assert_eq!(r["command_status"], "FAILED", "{r}");
    let details = r["command_error"]["details"].as_str().unwrap();
    assert!(details.contains("127.0.0.1:9"), "{details}");
    assert_eq!(r["command_result"], Value::Null);
    let r = run(&x, "standby.get_partition_uuids", json!({}));
    assert_eq!(
        r["command_result"],
        json!({}),
        "nothing written: no root uuid"
    );
    let r = run(
        &x,
        "image.install_bootloader",
        json!({"root_uuid": "0x0", "target_boot_mode": "uefi", "efi_system_part_uuid": null, "prep_boot_part_uuid": null}),
    );
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(x.list().len(), 3, "every command stays listed");
}
