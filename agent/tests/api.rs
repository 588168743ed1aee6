//! Conformance cases 1–19 of spec §8 against the real HTTP server (axum on
//! 127.0.0.1:0) with a test-only `fake` extension registered through the
//! public registry.

mod common;
use common::{fault, get, post, serve_in_thread};
use ipa_agent::api::ApiState;
use ipa_agent::commands::{Command, CommandError, Executor, Mode, Registry};
use ipa_agent::extensions::{Control, Ctx, builtin_registry};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};

const TOK: &str = "tok-0123456789abcdef0123456789abcdef";

struct Agent {
    base: String,
    forced: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Value>>>,
    gate: Arc<Mutex<Option<mpsc::Sender<()>>>>,
    _root: tempfile::TempDir,
}

impl Agent {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn tok(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}agent_token={TOK}", self.base)
    }
    /// Posts the command `name` with `params` to `/v1/commands/{query}`
    /// with the token.
    fn run(&self, query: &str, name: &str, params: Value) -> (u16, Value) {
        post(
            &self.tok(&format!("/v1/commands/{query}")),
            &json!({"name": name, "params": params}).to_string(),
        )
    }
    /// [`Agent::run`], which must answer 200; the body.
    fn accepted(&self, query: &str, name: &str, params: Value) -> Value {
        let (s, v) = self.run(query, name, params);
        assert_eq!(s, 200, "{v}");
        v
    }
    /// `GET path` without the token, which must answer 200; the body.
    fn fetched(&self, path: &str) -> Value {
        let (s, v) = get(&self.url(path));
        assert_eq!(s, 200, "{path}");
        v
    }
    fn release(&self) {
        if let Some(tx) = self.gate.lock().unwrap().take() {
            tx.send(()).unwrap();
        }
    }
}

fn start(token: Option<&str>) -> Agent {
    let root = tempfile::tempdir().unwrap();
    let control = Control::default();
    let ctx = Ctx {
        root: root.path().to_path_buf(),
        control: control.clone(),
        deploy: Default::default(),
    };
    let mut reg: Registry = builtin_registry(&ctx);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    reg.register(
        "fake",
        "do_things",
        Command::new(Mode::Sync, &["key"], move |p| {
            s.lock().unwrap().push(Value::Object(p));
            Ok(Some(json!("v1")))
        }),
    );
    reg.register(
        "fake",
        "fake_async_command",
        Command::new(Mode::Async, &[], |_| Ok(Some(json!("v1")))),
    );
    reg.register(
        "fake",
        "async_fail",
        Command::new(Mode::Async, &[], |_| {
            Err(CommandError::invalid_params("bad thing"))
        }),
    );
    reg.register(
        "fake",
        "sync_validated",
        Command::new(Mode::Sync, &["x"], |_| Ok(None)).with_validator(|_| Err("x is wrong".into())),
    );
    reg.register(
        "fake",
        "async_validated",
        Command::new(Mode::Async, &["x"], |_| Ok(None))
            .with_validator(|_| Err("x is wrong".into())),
    );
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let gate = Arc::new(Mutex::new(Some(tx)));
    reg.register(
        "fake",
        "slow",
        Command::new(Mode::Async, &[], move |_| {
            let _ = rx.lock().unwrap().recv();
            Ok(Some(json!("done")))
        }),
    );
    let forced = Arc::new(AtomicUsize::new(0));
    let f = forced.clone();
    let executor = Arc::new(Executor::new(
        reg,
        Arc::new(move || {
            f.fetch_add(1, Ordering::SeqCst);
        }),
    ));
    let state = Arc::new(ApiState {
        executor,
        token: Arc::new(RwLock::new(token.map(str::to_string))),
        started_at: 1.5,
        scheme: "http",
    });
    let port = serve_in_thread(move |l| ipa_agent::agent::serve(l, None, state, control));
    Agent {
        base: format!("http://127.0.0.1:{port}"),
        forced,
        seen,
        gate,
        _root: root,
    }
}

fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("condition not reached");
}

#[test]
fn case_01_root_document() {
    let a = start(Some(TOK));
    let v = a.fetched("/");
    assert_eq!(v["name"], "OpenStack Ironic Python Agent API");
    assert_eq!(v["default_version"]["id"], "v1");
    assert!(
        v["versions"][0]["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/v1")
    );
}

#[test]
fn case_02_v1_document_with_and_without_slash() {
    let a = start(Some(TOK));
    for p in ["/v1", "/v1/"] {
        let v = a.fetched(p);
        assert!(
            v.get("status").is_some() && v.get("commands").is_some(),
            "{v}"
        );
        assert_eq!(
            v["media_types"][0]["type"],
            "application/vnd.openstack.ironic-python-agent.v1+json"
        );
    }
}

#[test]
fn case_03_unknown_path_404_and_wrong_method_405() {
    let a = start(Some(TOK));
    let (s, v) = get(&a.url("/v1/foo"));
    assert_eq!(s, 404);
    assert_eq!(v["faultcode"], "Client");
    assert!(fault(&v).starts_with("404 Not Found"));
    let (s, v) = post(&a.url("/v1/status"), "{}");
    assert_eq!(s, 405);
    assert!(fault(&v).starts_with("405 Method Not Allowed"));
    let head = common::client().head(&a.url("/v1/status")).call().unwrap();
    assert_eq!(head.status().as_u16(), 200);
}

#[test]
fn case_04_status_needs_no_token() {
    let a = start(None);
    for p in ["/v1/status", "/status"] {
        let v = a.fetched(p);
        assert_eq!(v["started_at"], 1.5);
        assert_eq!(v["version"], ipa_agent::AGENT_VERSION);
    }
}

#[test]
fn case_05_post_runs_command_with_params() {
    let a = start(Some(TOK));
    let v = a.accepted("", "fake.do_things", json!({"key":"value"}));
    assert_eq!(v["command_name"], "do_things");
    assert_eq!(v["command_status"], "SUCCEEDED");
    assert_eq!(v["command_result"], json!({"result": "v1"}));
    assert_eq!(
        a.seen.lock().unwrap().clone(),
        vec![json!({"key": "value"})]
    );
}

#[test]
fn case_06_wait_joins_only_when_true() {
    let a = start(Some(TOK));
    // wait=false: the POST returns while the command still runs.
    let v = a.accepted("?wait=false", "fake.slow", json!({}));
    assert_eq!(v["command_status"], "RUNNING");
    a.release();
    let id = v["id"].as_str().unwrap().to_string();
    let (_, done) = get(&a.tok(&format!("/v1/commands/{id}?wait=TRUE")));
    assert_eq!(done["command_status"], "SUCCEEDED");
    assert_eq!(done["command_result"], json!({"result": "slow: done"}));
    // wait=true on an async command blocks until it is done.
    let (_, v) = a.run("?wait=true", "fake.fake_async_command", json!({}));
    assert_eq!(v["command_status"], "SUCCEEDED");
    // The same body either way: all five keys.
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "command_name",
            "command_status",
            "command_error",
            "command_result"
        ]
    );
}

#[test]
fn case_07_missing_name_or_params() {
    let a = start(Some(TOK));
    for body in [
        "{}",
        r#"{"name":"fake.do_things","params":[]}"#,
        "[1]",
        "5",
        r#""x""#,
    ] {
        let (s, v) = post(&a.tok("/v1/commands/"), body);
        assert_eq!(s, 400, "{body}");
        assert_eq!(v["faultcode"], "Client");
        assert!(fault(&v).contains("Missing or invalid name or params"));
    }
    let (s, v) = post(&a.tok("/v1/commands/"), "not json");
    assert_eq!(s, 400);
    assert!(fault(&v).starts_with("400 Bad Request: Failed to decode JSON object: "));
    let (s, _) = post(&a.tok("/v1/commands/"), "");
    assert_eq!(s, 400);
}

#[test]
fn case_08_post_needs_the_token() {
    let a = start(Some(TOK));
    let body = r#"{"name":"fake.do_things","params":{"key":"value"}}"#;
    for url in [
        a.url("/v1/commands/"),
        a.url("/v1/commands/?agent_token=wrong"),
        a.url("/v1/commands/?agent_token="),
    ] {
        let (s, v) = post(&url, body);
        assert_eq!(s, 401);
        assert_eq!(v["faultstring"], "401 Unauthorized: Token invalid.");
    }
    assert!(a.seen.lock().unwrap().is_empty());
    // No token yet: every command call is refused.
    let b = start(None);
    let (s, _) = post(&b.url("/v1/commands/?agent_token="), body);
    assert_eq!(s, 401);
    assert!(b.seen.lock().unwrap().is_empty());
}

#[test]
fn case_09_list_needs_the_token() {
    let a = start(Some(TOK));
    post(
        &a.tok("/v1/commands"),
        r#"{"name":"fake.do_things","params":{}}"#,
    );
    for p in ["/v1/commands/", "/v1/commands", "/commands/", "/commands"] {
        let (s, v) = get(&a.tok(p));
        assert_eq!(s, 200);
        assert_eq!(v["commands"].as_array().unwrap().len(), 1);
    }
    let (s, _) = get(&a.url("/v1/commands/?agent_token=nope"));
    assert_eq!(s, 401);
    let (s, _) = get(&a.url("/v1/commands/"));
    assert_eq!(s, 401);
}

#[test]
fn case_10_get_one_needs_the_token() {
    let a = start(Some(TOK));
    let (_, v) = a.run("", "fake.do_things", json!({}));
    let id = v["id"].as_str().unwrap();
    let (s, one) = get(&a.tok(&format!("/v1/commands/{id}")));
    assert_eq!(s, 200);
    assert_eq!(one, v);
    let (s, _) = get(&a.url(&format!("/v1/commands/{id}")));
    assert_eq!(s, 401);
    let (s, _) = get(&a.url(&format!("/v1/commands/{id}?agent_token=x")));
    assert_eq!(s, 401);
}

#[test]
fn case_11_unknown_id() {
    let a = start(Some(TOK));
    let (s, v) = get(&a.tok("/v1/commands/nope"));
    assert_eq!(s, 404);
    assert_eq!(
        v["faultstring"],
        "Not found: Command Result with id nope not found."
    );
}

#[test]
fn case_12_bad_names() {
    let a = start(Some(TOK));
    let cases = [
        (
            "do_something",
            400,
            "Invalid command: Command name must be of the form <extension>.<name>",
        ),
        (
            "do.something",
            404,
            "Not found: Extension with id do not found.",
        ),
        (
            "bad_extension.fake_command",
            404,
            "Not found: Extension with id bad_extension not found.",
        ),
        ("rescue.bar", 400, "Invalid command: Unknown command: bar"),
    ];
    for (name, code, msg) in cases {
        let (s, v) = post(
            &a.tok("/v1/commands/"),
            &json!({"name": name, "params": {}}).to_string(),
        );
        assert_eq!(s, code, "{name}");
        assert_eq!(v["faultstring"], msg);
    }
}

#[test]
fn case_13_busy_returns_409() {
    let a = start(Some(TOK));
    let (_, v) = a.run("", "fake.slow", json!({}));
    assert_eq!(v["command_status"], "RUNNING");
    let (s, busy) = a.run("", "fake.do_things", json!({}));
    assert_eq!(s, 409);
    assert_eq!(busy["faultstring"], "Agent is busy: executing command slow");
    assert!(a.seen.lock().unwrap().is_empty());
    a.release();
    let (_, _) = get(&a.tok(&format!(
        "/v1/commands/{}?wait=true",
        v["id"].as_str().unwrap()
    )));
    a.accepted("", "fake.do_things", json!({}));
}

#[test]
fn case_14_functional_sequence() {
    let a = start(Some(TOK));
    assert_eq!(get(&a.url("/v1/commands/")).0, 401);
    assert_eq!(get(&a.tok("/v1/commands/")).1, json!({"commands": []}));
    let v = a.accepted("", "fake.do_things", json!({"key":"x"}));
    assert_eq!(v["command_error"], Value::Null);
    let (_, list) = get(&a.tok("/v1/commands/"));
    assert_eq!(list["commands"].as_array().unwrap().len(), 1);
    assert_eq!(list["commands"][0]["command_name"], "do_things");
    let (_, one) = get(&a.tok(&format!("/v1/commands/{}", v["id"].as_str().unwrap())));
    assert_eq!(one, list["commands"][0]);
}

#[test]
fn case_15_async_success_forces_one_heartbeat() {
    let a = start(Some(TOK));
    let (_, v) = a.run("?wait=true", "fake.fake_async_command", json!({}));
    assert_eq!(v["command_status"], "SUCCEEDED");
    assert_eq!(
        v["command_result"],
        json!({"result": "fake_async_command: v1"})
    );
    assert_eq!(v["command_error"], Value::Null);
    wait_until(|| a.forced.load(Ordering::SeqCst) == 1);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(a.forced.load(Ordering::SeqCst), 1);
}

#[test]
fn case_16_async_rest_error_fails_and_forces_one_heartbeat() {
    let a = start(Some(TOK));
    let v = a.accepted("?wait=true", "fake.async_fail", json!({}));
    assert_eq!(v["command_status"], "FAILED");
    assert_eq!(v["command_result"], Value::Null);
    assert_eq!(
        v["command_error"],
        json!({"type":"InvalidCommandParamsError","code":400,"message":"Invalid command parameters","details":"bad thing"})
    );
    wait_until(|| a.forced.load(Ordering::SeqCst) == 1);
}

#[test]
fn case_17_sync_result_no_heartbeat() {
    let a = start(Some(TOK));
    let (_, v) = a.run("", "fake.do_things", json!({}));
    assert_eq!(v["command_result"], json!({"result": "v1"}));
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(a.forced.load(Ordering::SeqCst), 0);
    // §9: an unexpected keyword is a stored FAILED TypeError, not a 500.
    let v = a.accepted("", "fake.do_things", json!({"nope":1}));
    assert_eq!(v["command_status"], "FAILED");
    assert_eq!(v["command_error"]["type"], "TypeError");
    assert_eq!(get(&a.tok("/v1/commands/")).0, 200);
}

#[test]
fn case_18_validator_failure_is_400_without_heartbeat() {
    let a = start(Some(TOK));
    for name in ["fake.sync_validated", "fake.async_validated"] {
        let (s, v) = post(
            &a.tok("/v1/commands/"),
            &json!({"name": name, "params": {"x": 1}}).to_string(),
        );
        assert_eq!(s, 400);
        assert_eq!(v["faultstring"], "Invalid command parameters: x is wrong");
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(a.forced.load(Ordering::SeqCst), 0);
    assert_eq!(get(&a.tok("/v1/commands/")).1, json!({"commands": []}));
}

#[test]
fn case_19_no_command_params_in_results() {
    let a = start(Some(TOK));
    let (_, v) = a.run("", "fake.do_things", json!({"key":"secret"}));
    assert!(v.get("command_params").is_none());
    let (_, list) = get(&a.tok("/v1/commands/"));
    assert!(!list.to_string().contains("command_params"));
    assert!(!list.to_string().contains("secret"));
}
