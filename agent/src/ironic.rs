//! The client side of the protocol: API version discovery, lookup with
//! back-off, heartbeat. Blocking (ureq) and run from a plain thread: the
//! agent makes a request every few minutes, the async runtime is for the
//! API server.
//!
//! Every request tries the configured URLs in order; the one that answered
//! moves to the front. Nothing here logs a token or a response body (a
//! lookup response carries the token).

use crate::timing::Timing;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Fallback when discovery fails (not cached).
pub const MIN_VERSION: (u32, u32) = (1, 31);
/// `agent_version` in heartbeats.
pub const AGENT_VERSION_VERSION: (u32, u32) = (1, 36);
/// `agent_token` in heartbeats and lookup.
pub const AGENT_TOKEN_VERSION: (u32, u32) = (1, 62);
/// `agent_verify_ca` in heartbeats (auto-TLS).
pub const VERIFY_CA_VERSION: (u32, u32) = (1, 68);

/// Errors from Ironic calls; the messages are what the operator reads.
#[derive(Debug, thiserror::Error)]
pub enum IronicError {
    /// No URL answered at all.
    #[error("cannot reach Ironic at {url}: {msg}")]
    Transport {
        /// The last URL tried.
        url: String,
        /// The transport error.
        msg: String,
    },
    /// Heartbeat got 409 (node locked, or Ironic is not ready).
    #[error("heartbeat conflict: Ironic answered 409 ({0}); will retry")]
    HeartbeatConflict(String),
    /// Heartbeat failed to connect.
    #[error(
        "Error heartbeating to agent API: {0}. This could be a transitory network failure or blocking port; will retry"
    )]
    HeartbeatConnection(String),
    /// Heartbeat got an unexpected status.
    #[error("Error {0}: {1}")]
    Heartbeat(u16, String),
    /// Lookup did not succeed within `ipa-lookup-timeout`.
    #[error(
        "Could not look up node info within {0} s (ipa-lookup-timeout). Check that Ironic has a port with one of this machine's MACs and the node is in a state that allows lookup"
    )]
    LookupTimeout(f64),
}

/// How to reach Ironic.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URLs without trailing slash.
    pub urls: Vec<String>,
    /// Skip TLS verification.
    pub insecure: bool,
    /// `X-OpenStack-Request-ID`.
    pub request_id: Option<String>,
    /// `ipa-ironic-api-version`.
    pub version_override: Option<(u32, u32)>,
    /// Per-request timeout, seconds.
    pub timeout: f64,
    /// CAs to trust and the client certificate ([`crate::trust`]).
    pub trust: crate::trust::Trust,
}

/// What a heartbeat carries.
#[derive(Debug, Clone)]
pub struct HeartbeatInfo {
    /// Node UUID from lookup.
    pub node_uuid: String,
    /// `<proto>://<ip>:<port>`.
    pub callback_url: String,
    /// The agent token (sent as null when absent, from 1.62).
    pub token: Option<String>,
    /// The auto-TLS PEM, if any.
    pub verify_ca: Option<String>,
}

/// The Ironic API client.
pub struct IronicClient {
    urls: Mutex<Vec<String>>,
    agent: ureq::Agent,
    request_id: Option<String>,
    version_override: Option<(u32, u32)>,
    cached_version: Mutex<Option<(u32, u32)>>,
    timing: Arc<dyn Timing>,
    insecure: bool,
    /// Set while lookup retries quickly and has said why once: failed
    /// requests are then logged at debug level, not four warnings a second.
    quiet_failures: AtomicBool,
    /// Reported as `agent_version`.
    pub agent_version: String,
}

fn fmt_version(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

/// One request to Ironic, whichever URL it goes to: a GET, or a POST of
/// `post`, with the API version header when `version` is set.
struct Call<'a> {
    version: Option<(u32, u32)>,
    post: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn get(version: Option<(u32, u32)>) -> Call<'a> {
        Call {
            version,
            post: None,
        }
    }

    fn post(version: (u32, u32), body: &'a str) -> Call<'a> {
        Call {
            version: Some(version),
            post: Some(body),
        }
    }

    fn method(&self) -> &'static str {
        if self.post.is_some() { "POST" } else { "GET" }
    }
}

impl IronicClient {
    /// A client for `cfg`, using `timing` for back-off.
    pub fn new(cfg: &ClientConfig, timing: Arc<dyn Timing>) -> Self {
        let timeout = crate::timing::duration(cfg.timeout.max(0.1));
        let agent = cfg.trust.ironic_agent(cfg.insecure, timeout);
        IronicClient {
            urls: Mutex::new(cfg.urls.clone()),
            agent,
            request_id: cfg.request_id.clone(),
            version_override: cfg.version_override,
            cached_version: Mutex::new(None),
            quiet_failures: AtomicBool::new(false),
            timing,
            insecure: cfg.insecure,
            agent_version: crate::AGENT_VERSION.to_string(),
        }
    }

    /// The URLs in their current order (the last one that worked first).
    pub fn urls(&self) -> Vec<String> {
        self.urls.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Sends one request, trying each URL in order. Returns the status and
    /// body of the first URL that answered.
    fn request(&self, path: &str, call: &Call) -> Result<(u16, String), IronicError> {
        let method = call.method();
        let urls = self.urls();
        let mut last = IronicError::Transport {
            url: String::new(),
            msg: "no Ironic URL configured (ipa-api-url)".into(),
        };
        for (i, base) in urls.iter().enumerate() {
            let url = format!("{base}{path}");
            let result = self.send(&url, call);
            match result {
                Ok(ok) => {
                    if i > 0
                        && let Ok(mut u) = self.urls.lock()
                        && let Some(pos) = u.iter().position(|x| x == base)
                    {
                        let b = u.remove(pos);
                        u.insert(0, b);
                    }
                    return Ok(ok);
                }
                Err(msg) => {
                    let level = if self.quiet_failures.load(Ordering::Relaxed) {
                        log::Level::Debug
                    } else {
                        log::Level::Warn
                    };
                    log::log!(
                        level,
                        "request {method} {base}{} failed: {msg}",
                        strip_query(path)
                    );
                    last = IronicError::Transport {
                        url: base.clone(),
                        msg,
                    };
                }
            }
        }
        Err(last)
    }

    fn send(&self, url: &str, call: &Call) -> Result<(u16, String), String> {
        let mut headers: Vec<(&str, String)> = vec![
            ("Accept", "application/json".into()),
            ("Content-Type", "application/json".into()),
        ];
        if let Some(v) = call.version {
            headers.push(("X-OpenStack-Ironic-API-Version", fmt_version(v)));
        }
        if let Some(id) = &self.request_id {
            headers.push(("X-OpenStack-Request-ID", id.clone()));
        }
        let resp = if let Some(body) = call.post {
            let mut req = self.agent.post(url);
            for (k, v) in &headers {
                req = req.header(*k, v);
            }
            req.send(body)
        } else {
            let mut req = self.agent.get(url);
            for (k, v) in &headers {
                req = req.header(*k, v);
            }
            req.call()
        };
        let resp = resp.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, text))
    }

    /// The Ironic API version: the override, the cached discovery, or a new
    /// discovery (`GET /`). A failed discovery gives 1.31 and is not cached.
    pub fn api_version(&self) -> (u32, u32) {
        self.known_version().unwrap_or_else(|| {
            log::warn!(
                "cannot discover the Ironic API version; using {} for now",
                fmt_version(MIN_VERSION)
            );
            MIN_VERSION
        })
    }

    /// The override, the cached version, or one discovery attempt; `None`
    /// when that attempt failed. Lookup treats `None` as a failed attempt
    /// and retries, so one failed `GET /` at startup can never decide the
    /// agent's whole life (plain HTTP, no token) with the 1.31 fallback.
    pub fn known_version(&self) -> Option<(u32, u32)> {
        if let Some(v) = self.version_override {
            return Some(v);
        }
        if let Ok(c) = self.cached_version.lock()
            && let Some(v) = *c
        {
            return Some(v);
        }
        let v = self
            .request("/", &Call::get(None))
            .ok()
            .and_then(|(_, body)| {
                let v: Value = serde_json::from_str(&body).ok()?;
                let s = v.get("default_version")?.get("version")?.as_str()?;
                let (a, b) = s.split_once('.')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })?;
        log::info!("Ironic API version {}", fmt_version(v));
        if let Ok(mut c) = self.cached_version.lock() {
            *c = Some(v);
        }
        Some(v)
    }

    /// `POST /v1/heartbeat/<uuid>`; 202 is success.
    pub fn heartbeat(&self, info: &HeartbeatInfo) -> Result<(), IronicError> {
        let ver = self.api_version();
        let mut body = Map::new();
        body.insert(
            "callback_url".into(),
            Value::String(info.callback_url.clone()),
        );
        if ver >= AGENT_TOKEN_VERSION {
            body.insert(
                "agent_token".into(),
                info.token.clone().map(Value::String).unwrap_or(Value::Null),
            );
        }
        if ver >= AGENT_VERSION_VERSION {
            body.insert(
                "agent_version".into(),
                Value::String(self.agent_version.clone()),
            );
        }
        if ver >= VERIFY_CA_VERSION
            && let Some(pem) = &info.verify_ca
        {
            body.insert("agent_verify_ca".into(), Value::String(pem.clone()));
        }
        let body = Value::Object(body).to_string();
        let path = format!("/v1/heartbeat/{}", info.node_uuid);
        let header = ver.min(VERIFY_CA_VERSION);
        let (status, text) = match self.request(&path, &Call::post(header, &body)) {
            Ok(x) => x,
            Err(e) => return Err(IronicError::HeartbeatConnection(e.to_string())),
        };
        match status {
            202 => Ok(()),
            409 => Err(IronicError::HeartbeatConflict(error_text(&text))),
            _ => Err(IronicError::Heartbeat(status, error_text(&text))),
        }
    }

    /// One lookup attempt: `Ok(content)` or the reason to retry (and whether
    /// Ironic said 409).
    fn try_lookup(&self, macs: &[String], node_uuid: Option<&str>) -> Result<Value, Attempt> {
        if self.insecure {
            log::warn!(
                "ipa-insecure: Ironic's TLS certificate is NOT verified; anyone on the path can pose as Ironic and take this node. Give the CA with ipa-cafile instead"
            );
        }
        let mut path = format!("/v1/lookup?addresses={}", urlencode(&macs.join(",")));
        if let Some(u) = node_uuid {
            path.push_str(&format!("&node_uuid={}", urlencode(u)));
        }
        let version = self.known_version().ok_or_else(|| {
            Attempt::Unreachable("cannot discover the Ironic API version (GET /)".to_string())
        })?;
        let header = version.min(AGENT_TOKEN_VERSION);
        let (status, text) =
            self.request(&path, &Call::get(Some(header)))
                .map_err(|e| match e {
                    IronicError::Transport { .. } => Attempt::Unreachable(e.to_string()),
                    e => Attempt::Failed(e.to_string()),
                })?;
        if status != 200 {
            let reason = format!("Ironic answered {status}: {}", error_text(&text));
            return Err(if status == 409 {
                Attempt::Locked(reason)
            } else {
                Attempt::Failed(reason)
            });
        }
        let mut content: Value = serde_json::from_str(&text)
            .map_err(|e| Attempt::Failed(format!("response is not JSON: {e}")))?;
        let has_uuid = content
            .get("node")
            .and_then(|n| n.get("uuid"))
            .and_then(Value::as_str)
            .is_some();
        if !has_uuid {
            return Err(Attempt::Failed("response has no node.uuid".into()));
        }
        let Some(obj) = content.as_object_mut() else {
            return Err(Attempt::Failed("response is not an object".into()));
        };
        if !obj.contains_key("config") {
            // The legacy form: heartbeat_timeout at the top level.
            match obj.remove("heartbeat_timeout") {
                Some(t) => {
                    let mut cfg = Map::new();
                    cfg.insert("heartbeat_timeout".into(), t);
                    obj.insert("config".into(), Value::Object(cfg));
                }
                None => {
                    return Err(Attempt::Failed(
                        "response has neither config nor heartbeat_timeout".into(),
                    ));
                }
            }
        }
        if content["config"]
            .get("heartbeat_timeout")
            .and_then(Value::as_f64)
            .is_none()
        {
            return Err(Attempt::Failed(
                "response config has no numeric heartbeat_timeout".into(),
            ));
        }
        Ok(content)
    }

    /// Looks the node up by MACs, retrying with randomized exponential
    /// back-off (`uniform(I, max(I, min(2^(n-1), 60)))` before attempt n)
    /// until `timeout` seconds have passed. 409s add pauses of 5, 10, then
    /// 30 s.
    ///
    /// One difference from IPA: while Ironic cannot be reached at all (no
    /// route or address yet: DHCP has not finished) in the first
    /// [`QUICK_WINDOW`] seconds, attempts are [`QUICK_RETRY`] apart, so the
    /// lookup goes out moments after the lease instead of up to a back-off
    /// step later; such attempts do not advance the back-off. Anything
    /// Ironic answers follows the spec's schedule.
    pub fn lookup(
        &self,
        macs: &[String],
        node_uuid: Option<&str>,
        timeout: f64,
        interval: f64,
    ) -> Result<Value, IronicError> {
        self.lookup_with(&|| macs.to_vec(), node_uuid, timeout, interval)
    }

    /// [`IronicClient::lookup`] with the addresses asked for again before
    /// every attempt: a NIC whose driver loads after the agent started (the
    /// node's PXE port among them) joins the next attempt instead of the
    /// lookup asking for the wrong ports until it times out.
    pub fn lookup_with(
        &self,
        addresses: &dyn Fn() -> Vec<String>,
        node_uuid: Option<&str>,
        timeout: f64,
        interval: f64,
    ) -> Result<Value, IronicError> {
        let start = self.timing.now();
        let mut macs = addresses();
        let mut conflicts = 0usize;
        let mut attempt: u32 = 1;
        // Attempts that count for the back-off (the first, and every one
        // after a spec wait).
        let mut backoff_attempt: u32 = 1;
        let mut quiet = false;
        loop {
            if !quiet {
                log::info!(
                    "lookup attempt {attempt}: addresses {} at {}",
                    macs.join(","),
                    self.urls().join(",")
                );
            }
            let quick = match self.try_lookup(&macs, node_uuid) {
                Ok(content) => {
                    self.quiet_failures.store(false, Ordering::Relaxed);
                    log::info!(
                        "lookup succeeded (attempt {attempt}): node {}, heartbeat_timeout {}",
                        content["node"]["uuid"].as_str().unwrap_or_default(),
                        content["config"]["heartbeat_timeout"]
                    );
                    return Ok(content);
                }
                Err(Attempt::Unreachable(reason)) if self.timing.now() - start < QUICK_WINDOW => {
                    if !quiet {
                        log::warn!(
                            "lookup attempt {attempt} failed: {reason}; the network may not be up yet: retrying every {QUICK_RETRY} s for up to {QUICK_WINDOW} s"
                        );
                    }
                    quiet = true;
                    true
                }
                Err(Attempt::Locked(reason)) => {
                    log::warn!("lookup attempt {attempt} failed: {reason}; retrying");
                    let pause = [5.0, 10.0, 30.0][conflicts.min(2)];
                    conflicts += 1;
                    log::info!("node is locked in Ironic; pausing {pause} s");
                    self.timing.sleep(pause);
                    false
                }
                Err(Attempt::Unreachable(reason) | Attempt::Failed(reason)) => {
                    log::warn!("lookup attempt {attempt} failed: {reason}; retrying");
                    false
                }
            };
            if self.timing.now() - start >= timeout {
                self.quiet_failures.store(false, Ordering::Relaxed);
                return Err(IronicError::LookupTimeout(timeout));
            }
            attempt += 1;
            // New interfaces since this attempt: try them at once.
            let now = addresses();
            if now != macs {
                log::info!(
                    "network interfaces changed: addresses now {}",
                    now.join(",")
                );
                macs = now;
                quiet = false;
                self.quiet_failures.store(false, Ordering::Relaxed);
                continue;
            }
            self.quiet_failures.store(quick, Ordering::Relaxed);
            if quick {
                self.timing.sleep(QUICK_RETRY);
                continue;
            }
            quiet = false;
            backoff_attempt += 1;
            let hi = 2f64
                .powi(backoff_attempt.saturating_sub(1).min(30) as i32)
                .min(60.0);
            let wait = self.timing.uniform(interval, interval.max(hi));
            self.timing.sleep(wait);
        }
    }
}

/// How one lookup attempt failed, which decides the wait before the next.
#[derive(Debug)]
enum Attempt {
    /// No Ironic URL answered at all (connection refused, no route, DNS).
    Unreachable(String),
    /// Ironic answered 409: the node is locked.
    Locked(String),
    /// Ironic answered, but not with a usable lookup.
    Failed(String),
}

/// How soon after a lookup that could not reach Ironic the next goes out,
/// during the first [`QUICK_WINDOW`] seconds.
pub const QUICK_RETRY: f64 = 0.25;
/// How long lookups that cannot reach Ironic are retried every
/// [`QUICK_RETRY`] seconds: long enough for DHCP on a fast network.
pub const QUICK_WINDOW: f64 = 10.0;

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// Percent-encodes a query value (MACs, UUIDs: only `:` and `,` matter).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The readable part of an Ironic error body: `error_message` (a dict, or a
/// JSON string holding one) → `faultstring`, else `title`, else the raw
/// body.
pub fn error_text(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.to_string();
    };
    let inner = match &v {
        Value::Object(m) => m.get("error_message").cloned().unwrap_or(v.clone()),
        other => other.clone(),
    };
    let inner = match inner {
        Value::Object(m) => m,
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => m,
            _ => return body.to_string(),
        },
        _ => return body.to_string(),
    };
    for key in ["faultstring", "title"] {
        if let Some(s) = inner.get(key).and_then(Value::as_str)
            && !s.is_empty()
        {
            return s.to_string();
        }
    }
    body.to_string()
}
