//! Conformance cases 26–33 of spec §8: the Ironic client against a scripted
//! fake HTTP server, with a fake clock so back-off never really waits.

mod common;
use common::{FakeServer, dead_url};
use ipa_agent::heartbeat::{self, FORCE};
use ipa_agent::ironic::{ClientConfig, HeartbeatInfo, IronicClient, IronicError};
use ipa_agent::timing::{Signal, Timing};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

type FakeTiming = ipa_agent::timing::ManualClock;

fn client(
    urls: Vec<String>,
    version: Option<(u32, u32)>,
    request_id: Option<&str>,
) -> (IronicClient, Arc<FakeTiming>) {
    let t = Arc::new(FakeTiming::default());
    let c = IronicClient::new(
        &ClientConfig {
            urls,
            insecure: false,
            request_id: request_id.map(str::to_string),
            version_override: version,
            timeout: 5.0,
            trust: Default::default(),
        },
        t.clone(),
    );
    (c, t)
}

const UUID: &str = "deadbeef-dabb-ad00-b105-f00d00bab10c";

fn info(callback: &str, token: Option<&str>, ca: Option<&str>) -> HeartbeatInfo {
    HeartbeatInfo {
        node_uuid: UUID.into(),
        callback_url: callback.into(),
        token: token.map(str::to_string),
        verify_ca: ca.map(str::to_string),
    }
}

#[test]
fn case_26_api_version() {
    let (c, _) = client(vec![dead_url()], Some((1, 47)), None);
    assert_eq!(c.api_version(), (1, 47));
    let s = FakeServer::start(|_| (500, "no".into()));
    let (c, _) = client(vec![s.url.clone()], None, None);
    assert_eq!(c.api_version(), (1, 31));
    assert_eq!(c.api_version(), (1, 31));
    assert_eq!(s.requests().len(), 2, "a failed discovery is not cached");
    let s = FakeServer::start(|_| (200, r#"{"default_version":{"version":"1.31"}}"#.into()));
    let (c, _) = client(vec![s.url.clone()], None, None);
    assert_eq!(c.api_version(), (1, 31));
    assert_eq!(c.api_version(), (1, 31));
    assert_eq!(s.requests().len(), 1, "a discovered version is cached");
    assert_eq!(s.requests()[0].path, "/");
    assert!(
        s.requests()[0]
            .header("X-OpenStack-Ironic-API-Version")
            .is_none()
    );
}

#[test]
fn case_27_heartbeat_request() {
    let s = FakeServer::start(|_| (202, String::new()));
    let (c, _) = client(vec![s.url.clone()], Some((1, 36)), Some("R"));
    c.heartbeat(&info("http://192.0.2.1:9999", Some("tok"), None))
        .unwrap();
    let r = &s.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/v1/heartbeat/{UUID}"));
    assert_eq!(r.header("X-OpenStack-Request-ID"), Some("R"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.body,
        json!({"callback_url":"http://192.0.2.1:9999","agent_version":ipa_agent::AGENT_VERSION})
            .to_string()
    );
}

#[test]
fn case_28_heartbeat_body_variants() {
    let s = FakeServer::start(|_| (202, String::new()));
    let cb = format!("http://{}", ipa_agent::net::host_port("fc00:1111::4", 9999));
    assert_eq!(cb, "http://[fc00:1111::4]:9999");
    let (c, _) = client(vec![s.url.clone()], Some((1, 31)), None);
    c.heartbeat(&info(&cb, Some("magical"), Some("PEM")))
        .unwrap();
    assert_eq!(
        s.requests()[0].body,
        json!({"callback_url": cb}).to_string()
    );
    assert_eq!(
        s.requests()[0].header("X-OpenStack-Ironic-API-Version"),
        Some("1.31")
    );
    let (c, _) = client(vec![s.url.clone()], Some((1, 62)), None);
    c.heartbeat(&info(&cb, Some("magical"), Some("PEM")))
        .unwrap();
    let body: Value = serde_json::from_str(&s.requests()[1].body).unwrap();
    assert_eq!(body["agent_token"], "magical");
    assert!(body.get("agent_verify_ca").is_none());
    let (c, _) = client(vec![s.url.clone()], Some((1, 99)), None);
    c.heartbeat(&info(
        "https://192.0.2.1:9999",
        Some("magical"),
        Some("PEM"),
    ))
    .unwrap();
    let r = &s.requests()[2];
    assert_eq!(r.header("X-OpenStack-Ironic-API-Version"), Some("1.68"));
    let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&r.body)
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        [
            "callback_url",
            "agent_token",
            "agent_version",
            "agent_verify_ca"
        ]
    );
    assert!(r.body.contains(r#""agent_verify_ca":"PEM""#));
}

#[test]
fn case_29_heartbeat_responses() {
    let cases: Vec<(u16, &str, Option<&str>)> = vec![
        (202, "", None),
        (404, "Not a JSON", Some("Error 404: Not a JSON")),
        (
            404,
            r#"{"error_message":"{\"faultstring\":\"Resource could not be found.\"}"}"#,
            Some("Error 404: Resource could not be found."),
        ),
        (
            404,
            r#"{"error_message":{"faultstring":"Resource could not be found."}}"#,
            Some("Error 404: Resource could not be found."),
        ),
        (
            404,
            r#"{"error_message":{"title":"Resource could not be found."}}"#,
            Some("Error 404: Resource could not be found."),
        ),
    ];
    for (status, body, want) in cases {
        let body = body.to_string();
        let s = FakeServer::start(move |_| (status, body.clone()));
        let (c, _) = client(vec![s.url.clone()], Some((1, 68)), None);
        let r = c.heartbeat(&info("http://192.0.2.1:9999", None, None));
        match want {
            None => r.unwrap(),
            Some(msg) => assert_eq!(r.unwrap_err().to_string(), msg),
        }
    }
    let s = FakeServer::start(|_| (409, r#"{"faultstring":"locked"}"#.into()));
    let (c, _) = client(vec![s.url.clone()], Some((1, 68)), None);
    assert!(matches!(
        c.heartbeat(&info("http://x:1", None, None)),
        Err(IronicError::HeartbeatConflict(_))
    ));
    let (c, _) = client(vec![dead_url()], Some((1, 68)), None);
    let e = c.heartbeat(&info("http://x:1", None, None)).unwrap_err();
    assert!(
        e.to_string()
            .contains("transitory network failure or blocking port"),
        "{e}"
    );
    // First URL refuses, second accepts; the working one moves to the front.
    let s = FakeServer::start(|_| (202, String::new()));
    let dead = dead_url();
    let (c, _) = client(vec![dead.clone(), s.url.clone()], Some((1, 68)), None);
    c.heartbeat(&info("http://x:1", None, None)).unwrap();
    assert_eq!(c.urls(), vec![s.url.clone(), dead]);
}

fn lookup_ok() -> String {
    json!({"node": {"uuid": UUID, "properties": {}}, "config": {"heartbeat_timeout": 300, "agent_token": "x".repeat(43)}}).to_string()
}

#[test]
fn case_30_lookup_request() {
    let s = FakeServer::start(|_| (200, lookup_ok()));
    let (c, _) = client(vec![s.url.clone()], Some((1, 99)), None);
    let macs = vec![
        "00:0c:29:8c:11:b1".to_string(),
        "00:0c:29:8c:11:b2".to_string(),
    ];
    c.lookup(&macs, None, 10.0, 1.0).unwrap();
    c.lookup(&macs, Some(UUID), 10.0, 1.0).unwrap();
    let r = s.requests();
    assert_eq!(r[0].method, "GET");
    assert_eq!(
        r[0].path,
        "/v1/lookup?addresses=00%3A0c%3A29%3A8c%3A11%3Ab1%2C00%3A0c%3A29%3A8c%3A11%3Ab2"
    );
    assert_eq!(r[0].header("X-OpenStack-Ironic-API-Version"), Some("1.62"));
    assert!(r[1].path.ends_with(&format!("&node_uuid={UUID}")));
}

#[test]
fn case_31_lookup_outcomes() {
    // Success: returned as-is.
    let s = FakeServer::start(|_| (200, lookup_ok()));
    let (c, _) = client(vec![s.url.clone()], Some((1, 99)), None);
    let v = c.lookup(&[], None, 10.0, 1.0).unwrap();
    assert_eq!(v, serde_json::from_str::<Value>(&lookup_ok()).unwrap());
    // Retried: 400, no node, node without config/heartbeat_timeout, wrong key, bad JSON.
    let bad = [
        (400, "{}".to_string()),
        (200, json!({"config": {"heartbeat_timeout": 1}}).to_string()),
        (200, json!({"node": {"uuid": UUID}}).to_string()),
        (200, json!({"node_node": {"uuid": UUID}}).to_string()),
        (200, "nope".to_string()),
        (
            200,
            json!({"node": {"uuid": UUID}, "heartbeat_timeout": 20}).to_string(),
        ),
    ];
    let n = Arc::new(Mutex::new(0usize));
    let n2 = n.clone();
    let s = FakeServer::start(move |_| {
        let mut i = n2.lock().unwrap();
        *i += 1;
        bad[*i - 1].clone()
    });
    let (c, t) = client(vec![dead_url(), s.url.clone()], Some((1, 99)), None);
    let v = c.lookup(&[], None, 600.0, 1.0).unwrap();
    assert_eq!(
        v["config"]["heartbeat_timeout"], 20,
        "legacy form moved into config"
    );
    assert_eq!(*n.lock().unwrap(), 6);
    assert_eq!(t.sleeps.lock().unwrap().len(), 5);
    // Back-off draws are uniform(I, max(I, min(2^(n-1), 60))): our fake takes lo = I.
    assert!(t.sleeps.lock().unwrap().iter().all(|s| *s == 1.0));
    // Repeated 409s pause 5, 10, 30, 30 s (plus the back-off).
    let s = FakeServer::start(|_| (409, "{}".into()));
    let (c, t) = client(vec![s.url.clone()], Some((1, 99)), None);
    let e = c.lookup(&[], None, 70.0, 1.0).unwrap_err();
    assert!(matches!(e, IronicError::LookupTimeout(_)), "{e}");
    let pauses: Vec<f64> = t
        .sleeps
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|s| *s >= 5.0)
        .collect();
    assert_eq!(pauses, [5.0, 10.0, 30.0, 30.0]);
}

/// While Ironic cannot be reached at all (the network is not up yet),
/// lookups go out every 0.25 s for the first 10 s, then follow the spec's
/// back-off; an answer from Ironic in those seconds (case 31) does not.
#[test]
fn lookup_retries_quickly_while_ironic_is_unreachable() {
    let (c, t) = client(vec![common::dead_url()], Some((1, 99)), None);
    let e = c.lookup(&[], None, 20.0, 1.0).unwrap_err();
    assert!(matches!(e, IronicError::LookupTimeout(_)), "{e}");
    let sleeps = t.sleeps.lock().unwrap().clone();
    let quick = sleeps
        .iter()
        .take_while(|s| **s == ipa_agent::ironic::QUICK_RETRY)
        .count();
    assert_eq!(
        quick as f64 * ipa_agent::ironic::QUICK_RETRY,
        ipa_agent::ironic::QUICK_WINDOW,
        "{sleeps:?}"
    );
    // Then the spec's draws, uniform(1, max(1, 2^(n-1))) starting at n = 2
    // (the fake takes the low end), until the 20 s are used up.
    assert!(sleeps[quick..].len() >= 2, "{sleeps:?}");
    assert!(sleeps[quick..].iter().all(|s| *s == 1.0), "{sleeps:?}");
}

#[test]
fn case_32_lookup_token_rules() {
    use ipa_agent::agent::adopt_lookup_token;
    use std::sync::RwLock;
    let t = RwLock::new(Some("cmdline".to_string()));
    assert!(adopt_lookup_token(&t, Some(&"1".repeat(128))));
    assert_eq!(t.read().unwrap().as_deref(), Some("1".repeat(128).as_str()));
    let t = RwLock::new(Some("cmdline".to_string()));
    assert!(adopt_lookup_token(&t, Some("********")));
    assert_eq!(t.read().unwrap().as_deref(), Some("cmdline"));
    assert!(adopt_lookup_token(&t, Some("******")));
    let none = RwLock::new(None);
    assert!(
        !adopt_lookup_token(&none, Some("******")),
        "no token + ****** = never serve"
    );
}

#[test]
fn case_33_heartbeat_timer() {
    let t = FakeTiming::default();
    *t.draws.lock().unwrap() = vec![0.6, 0.4, 1.2, 0.5];
    let signal = Signal::default();
    let beats = Mutex::new(Vec::new());
    let outcomes = [true, true, false, true];
    let waits_at_beat = Mutex::new(Vec::new());
    heartbeat::run(&t, &signal, 20.0, || {
        let mut b = beats.lock().unwrap();
        b.push(t.now());
        waits_at_beat
            .lock()
            .unwrap()
            .push(t.sleeps.lock().unwrap().len());
        let ok = outcomes[b.len() - 1];
        if b.len() == 4 {
            signal.raise(ipa_agent::heartbeat::STOP);
        }
        ok
    });
    let beats = beats.lock().unwrap().clone();
    let round = |v: &[f64]| {
        v.iter()
            .map(|x| (x * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(round(&beats), [0.0, 12.0, 20.0, 26.0]);
    assert_eq!(
        round(&t.sleeps.lock().unwrap()),
        [5.0, 5.0, 2.0, 5.0, 3.0, 5.0, 1.0]
    );

    // A forced beat fires only once more than 5 s have passed.
    let mut timer = heartbeat::Timer::new(0.0);
    timer.beat_done(0.0, true, 300.0, 0.5);
    assert_eq!(timer.next(3.0, true), heartbeat::Next::Wait(2.001));
    assert_eq!(timer.next(5.5, true), heartbeat::Next::Beat);
    assert_eq!(timer.next(5.5, false), heartbeat::Next::Wait(5.0));
    let _ = FORCE;
}

/// The addresses are asked for again before each attempt: a NIC that shows
/// up after the agent started (the node's port, here) joins the lookup.
#[test]
fn lookup_asks_for_the_addresses_again_on_each_attempt() {
    let s = FakeServer::start(|req| {
        if req.path.contains("52%3A54%3A00%3A12%3A34%3A56") {
            (200, lookup_ok())
        } else {
            (404, "{}".into())
        }
    });
    let (c, t) = client(vec![s.url.clone()], Some((1, 99)), None);
    let calls = Mutex::new(0);
    let addresses = || {
        let mut n = calls.lock().unwrap();
        *n += 1;
        let mut macs = vec!["52:54:00:12:35:01".to_string()];
        if *n > 2 {
            macs.push("52:54:00:12:34:56".to_string());
        }
        macs
    };
    c.lookup_with(&addresses, None, 60.0, 1.0).unwrap();
    // Asked before attempt 1 and after each failure: the third list has
    // the node's port, tried at once, without a back-off wait.
    assert_eq!(*calls.lock().unwrap(), 3);
    assert_eq!(*t.sleeps.lock().unwrap(), [1.0]);
}
