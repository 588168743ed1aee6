//! A small Image API v2 client: create, upload, read back, list, delete.
//!
//! Only plain create + `PUT /v2/images/{id}/file` is used: it works on every
//! Glance (interoperable import needs an owner and staging), and Glance
//! answers with `os_hash_value` (SHA-512), which is what lets `publish`
//! prove the bytes stored are the bytes built.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use serde_json::{Value, json};

/// Why a call to Glance or Ironic failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{method} {url}: {message}")]
    Http {
        method: &'static str,
        url: String,
        message: String,
    },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A JSON REST endpoint with an optional Keystone token.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    token: Option<String>,
    agent: ureq::Agent,
    headers: Vec<(&'static str, &'static str)>,
}

/// What a request sends.
pub enum Body<'a> {
    None,
    Json(&'a Value, &'static str),
    File(&'a Path),
}

impl Api {
    /// `base` is the service's endpoint as a catalog or `clouds.yaml` gives
    /// it, with or without a trailing slash and a trailing `version` segment
    /// (`/v2`): the clients' paths name the version themselves.
    pub fn new(base: &str, version: &str, token: Option<String>, agent: ureq::Agent) -> Self {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix(version).unwrap_or(base);
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
            headers: Vec::new(),
        }
    }

    /// Adds a header to every request (e.g. Ironic's microversion).
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sends a request; checks the status is one of `ok`; parses JSON
    /// (`null` when empty). Bodies are never logged: they may hold secrets.
    pub fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Body,
        ok: &[u16],
    ) -> Result<Value, ApiError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let http = |e: ureq::Error| ApiError::Http {
            method,
            url: url.clone(),
            message: e.to_string(),
        };
        let mut headers: Vec<(&str, &str)> = self.headers.clone();
        if let Some(t) = &self.token {
            headers.push(("X-Auth-Token", t.as_str()));
        }
        macro_rules! hdrs {
            ($b:expr) => {{
                let mut b = $b;
                for (k, v) in &headers {
                    b = b.header(*k, *v);
                }
                b
            }};
        }
        let result = match (method, body) {
            ("GET", _) => hdrs!(self.agent.get(&url)).call(),
            ("DELETE", _) => hdrs!(self.agent.delete(&url)).call(),
            (_, Body::File(path)) => {
                let file = File::open(path).map_err(|source| ApiError::File {
                    path: path.to_path_buf(),
                    source,
                })?;
                hdrs!(self.agent.put(&url))
                    .header("Content-Type", "application/octet-stream")
                    .send(file)
            }
            (_, b) => {
                let (text, ctype) = match b {
                    Body::Json(v, ctype) => (v.to_string(), ctype),
                    _ => (String::new(), "application/json"),
                };
                let builder = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.patch(&url),
                };
                hdrs!(builder).header("Content-Type", ctype).send(text)
            }
        };
        let mut resp = result.map_err(http)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(http)?;
        if !ok.contains(&status) {
            return Err(ApiError::Status {
                method,
                url,
                status,
                body: text.chars().take(500).collect(),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ApiError::Http {
            method,
            url,
            message: format!("invalid JSON in the answer: {e}"),
        })
    }
}

/// The Image API v2.
#[derive(Debug, Clone)]
pub struct Glance {
    api: Api,
}

impl Glance {
    /// `base` is the image endpoint, with or without a trailing `/v2`.
    pub fn new(base: &str, token: Option<String>, agent: ureq::Agent) -> Self {
        Self {
            api: Api::new(base, "/v2", token, agent),
        }
    }

    /// `POST /v2/images`: a queued image with `properties` as extra keys.
    pub fn create(
        &self,
        name: &str,
        disk_format: &str,
        container_format: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Value, ApiError> {
        let mut body = json!({
            "name": name,
            "disk_format": disk_format,
            "container_format": container_format,
            "visibility": "private",
        });
        for (k, v) in properties {
            body[k] = json!(v);
        }
        self.api.call(
            "POST",
            "/v2/images",
            Body::Json(&body, "application/json"),
            &[201],
        )
    }

    /// `PUT /v2/images/{id}/file`, streaming `path`.
    pub fn upload(&self, id: &str, path: &Path) -> Result<(), ApiError> {
        self.api
            .call(
                "PUT",
                &format!("/v2/images/{id}/file"),
                Body::File(path),
                &[204],
            )
            .map(|_| ())
    }

    /// `GET /v2/images/{id}`.
    pub fn get(&self, id: &str) -> Result<Value, ApiError> {
        self.api
            .call("GET", &format!("/v2/images/{id}"), Body::None, &[200])
    }

    /// `DELETE /v2/images/{id}`; an image already gone is fine.
    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        self.api
            .call(
                "DELETE",
                &format!("/v2/images/{id}"),
                Body::None,
                &[204, 404],
            )
            .map(|_| ())
    }

    /// Every image whose property `key` equals `value`, following pages.
    pub fn list_by(&self, key: &str, value: &str) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut next = Some(format!(
            "/v2/images?limit=200&{}={}",
            urlencode(key),
            urlencode(value)
        ));
        while let Some(path) = next.take() {
            let page = self.api.call("GET", &path, Body::None, &[200])?;
            if let Some(imgs) = page["images"].as_array() {
                // Filter again: a Glance that ignores unknown filters must not
                // make us touch unrelated images.
                out.extend(imgs.iter().filter(|i| i[key] == value).cloned());
            }
            next = page["next"].as_str().map(str::to_string);
        }
        Ok(out)
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
