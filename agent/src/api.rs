//! The agent's REST API (IPA's `api/app.py`): routes, token check, exact
//! error bodies. Command execution is in [`crate::commands`].
//!
//! Every error body is `{"faultcode": "Client"|"Server", "faultstring": "…"}`
//! with a string faultstring: Ironic evaluates `'agent_token' in faultstring`
//! on every error.

use crate::commands::{CommandError, Executor, Params};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// Shared state of the API.
pub struct ApiState {
    /// Runs commands and stores results.
    pub executor: Arc<Executor>,
    /// The agent token; `None` until lookup (or the command line) gives one.
    pub token: Arc<RwLock<Option<String>>>,
    /// Epoch seconds at start, for `/v1/status`.
    pub started_at: f64,
    /// `http` or `https`, for links in the root documents.
    pub scheme: &'static str,
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The largest command body accepted (from an authenticated client; an
/// unauthenticated one gets no byte of its body read). Sized for the deploy
/// commands to come: a configdrive of up to 64 MiB, base64-encoded (4/3),
/// may appear up to three times in one request, plus 1 MiB for the rest.
pub const MAX_BODY_BYTES: usize = 3 * base64_len(64 * 1024 * 1024) + 1024 * 1024;

const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The JSON text of an error body for `status`.
pub fn fault_body(status: u16, faultstring: &str) -> String {
    let code = if status >= 500 { "Server" } else { "Client" };
    json!({"faultcode": code, "faultstring": faultstring}).to_string()
}

/// An error body.
pub fn fault(status: StatusCode, faultstring: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        fault_body(status.as_u16(), faultstring),
    )
        .into_response()
}

/// An error after which the connection closes, so hyper never reads the
/// rest of a request body nobody will use.
fn fault_and_close(status: StatusCode, faultstring: &str) -> Response {
    let mut r = fault(status, faultstring);
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// Turns any error response that is not already JSON (an extractor
/// rejection, a framework default) into the spec's error body, so a
/// conductor always finds a string `faultstring`.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let close = resp.headers().get(header::CONNECTION).cloned();
    let (_, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let desc = String::from_utf8_lossy(&text);
    let reason = status.canonical_reason().unwrap_or("Error");
    let desc = if desc.trim().is_empty() {
        reason.to_string()
    } else {
        desc.trim().to_string()
    };
    let mut r = fault(status, &format!("{} {reason}: {desc}", status.as_u16()));
    if let Some(c) = close {
        r.headers_mut().insert(header::CONNECTION, c);
    }
    r
}

fn rest_error(e: &CommandError) -> Response {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    fault(status, &e.to_string())
}

async fn not_found() -> Response {
    fault(
        StatusCode::NOT_FOUND,
        "404 Not Found: The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
    )
}

async fn method_not_allowed() -> Response {
    fault(
        StatusCode::METHOD_NOT_ALLOWED,
        "405 Method Not Allowed: The method is not allowed for the requested URL.",
    )
}

/// Decodes `%XX` and `+` in a query component.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last value of `key` in the query string.
fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.rsplit('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn wants_wait(uri: &Uri) -> bool {
    query_param(uri, "wait").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Valid only if both tokens are non-empty and equal (constant time).
fn token_ok(state: &ApiState, uri: &Uri) -> bool {
    let given = query_param(uri, "agent_token").unwrap_or_default();
    let Ok(guard) = state.token.read() else {
        return false;
    };
    match guard.as_deref() {
        Some(mine) if !mine.is_empty() && !given.is_empty() => {
            bool::from(mine.as_bytes().ct_eq(given.as_bytes()))
        }
        _ => false,
    }
}

/// 401, closing the connection: the body of an unauthenticated request is
/// never read.
fn unauthorized() -> Response {
    fault_and_close(StatusCode::UNAUTHORIZED, "401 Unauthorized: Token invalid.")
}

fn too_large() -> Response {
    fault_and_close(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "413 Request Entity Too Large: The data value transmitted exceeds the capacity limit ({MAX_BODY_BYTES} bytes)."
        ),
    )
}

/// Reads the body of an authenticated request, at most [`MAX_BODY_BYTES`];
/// a declared length over the limit is refused before any byte is read.
async fn read_body(req: Request) -> Result<axum::body::Bytes, Response> {
    read_body_limited(req, MAX_BODY_BYTES).await
}

async fn read_body_limited(req: Request, limit: usize) -> Result<axum::body::Bytes, Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body: Body = req.into_body();
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            too_large()
        } else {
            fault_and_close(
                StatusCode::BAD_REQUEST,
                &format!("400 Bad Request: cannot read the request body: {e}"),
            )
        }
    })
}

fn base_url(state: &ApiState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{}", state.scheme, host)
}

fn version_v1(base: &str) -> Value {
    json!({
        "id": "v1",
        "links": [
            {"href": format!("{base}/v1"), "rel": "self"},
            {"href": "https://docs.openstack.org/ironic-python-agent/", "rel": "describedby", "type": "text/html"}
        ]
    })
}

async fn root(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let v = version_v1(&base_url(&s, &headers));
    json_response(
        StatusCode::OK,
        &json!({
            "name": "OpenStack Ironic Python Agent API",
            "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
            "versions": [v.clone()],
            "default_version": v,
        }),
    )
}

async fn v1(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let base = base_url(&s, &headers);
    let mut doc = version_v1(&base);
    let links = |x: &str| {
        json!([
            {"href": format!("{base}/v1/{x}"), "rel": "self"},
            {"href": format!("{base}/{x}"), "rel": "bookmark"}
        ])
    };
    doc["commands"] = links("commands");
    doc["status"] = links("status");
    doc["media_types"] = json!([{"base": "application/json", "type": "application/vnd.openstack.ironic-python-agent.v1+json"}]);
    json_response(StatusCode::OK, &doc)
}

async fn status(State(s): State<Arc<ApiState>>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"started_at": s.started_at, "version": crate::AGENT_VERSION}),
    )
}

async fn list_commands(State(s): State<Arc<ApiState>>, uri: Uri) -> Response {
    if !token_ok(&s, &uri) {
        return unauthorized();
    }
    let list: Vec<Value> = s.executor.list().iter().map(|e| e.to_json()).collect();
    json_response(StatusCode::OK, &json!({"commands": list}))
}

async fn get_command(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    if !token_ok(&s, &uri) {
        return unauthorized();
    }
    // A rejected id (not UTF-8 once decoded) is an id nobody has.
    let id = id.map(|Path(id)| id).unwrap_or_else(|_| {
        uri.path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    match s.executor.get(&id) {
        Ok(entry) => {
            if wants_wait(&uri) {
                entry.wait_done().await;
            }
            json_response(StatusCode::OK, &entry.to_json())
        }
        Err(e) => rest_error(&e),
    }
}

/// `POST /v1/commands/`: the token is checked before any byte of the body
/// is read.
async fn run_command(State(s): State<Arc<ApiState>>, req: Request) -> Response {
    let uri = req.uri().clone();
    if !token_ok(&s, &uri) {
        return unauthorized();
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return fault(
                StatusCode::BAD_REQUEST,
                &format!("400 Bad Request: Failed to decode JSON object: {e}"),
            );
        }
    };
    let (name, params) = match (parsed.get("name"), parsed.get("params")) {
        (Some(Value::String(n)), Some(Value::Object(p))) => (n.clone(), p.clone()),
        _ => {
            return fault(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: Missing or invalid name or params",
            );
        }
    };
    let executor = s.executor.clone();
    let started =
        tokio::task::spawn_blocking(move || executor.execute(&name, Params::from_iter(params)))
            .await;
    match started {
        Ok(Ok(entry)) => {
            if wants_wait(&uri) {
                entry.wait_done().await;
            }
            json_response(StatusCode::OK, &entry.to_json())
        }
        Ok(Err(e)) => rest_error(&e),
        Err(e) => rest_error(&CommandError::execution(format!(
            "the command thread failed: {e}"
        ))),
    }
}

fn with_405(m: MethodRouter<Arc<ApiState>>) -> MethodRouter<Arc<ApiState>> {
    m.fallback(method_not_allowed)
}

/// The full router. HEAD works wherever GET does (axum answers HEAD with the
/// GET handler and no body).
pub fn router(state: Arc<ApiState>) -> Router {
    let commands = || with_405(get(list_commands).post(run_command));
    let command = || with_405(get(get_command));
    Router::new()
        .route("/", with_405(get(root)))
        .route("/v1", with_405(get(v1)))
        .route("/v1/", with_405(get(v1)))
        .route("/v1/status", with_405(get(status)))
        .route("/status", with_405(get(status)))
        .route("/v1/commands", commands())
        .route("/v1/commands/", commands())
        .route("/commands", commands())
        .route("/commands/", commands())
        .route("/v1/commands/{id}", command())
        .route("/commands/{id}", command())
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body whose length was not declared (chunked) is cut at the limit
    /// with 413; one within the limit is read whole.
    #[tokio::test]
    async fn undeclared_body_over_the_limit_is_413() {
        let req = Request::builder()
            .method("POST")
            .body(Body::from(vec![b'x'; 16]))
            .unwrap();
        assert!(req.headers().get(header::CONTENT_LENGTH).is_none());
        let r = read_body_limited(req, 10).await.unwrap_err();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let req = Request::builder().body(Body::from(vec![b'x'; 8])).unwrap();
        assert_eq!(read_body_limited(req, 10).await.unwrap().len(), 8);
    }
}
