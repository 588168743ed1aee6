//! Opening an image (or checksums file, or configdrive) URL as IPA does:
//! the URLs in order, `image_info.proxies` per scheme unless the host is in
//! `no_proxy`, `image_request_authorization` (or HTTP basic credentials) as
//! the `Authorization` header, only 200 accepted, 4xx fatal, everything else
//! retried `retries` times `retry_interval` apart.

use super::DeployError;
use super::settings::Settings;
use base64::Engine;
use serde_json::{Map, Value};
use std::io::Read;

/// Where and how to fetch.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `image_info.proxies`: scheme → proxy URL.
    pub proxies: Map<String, Value>,
    /// `image_info.no_proxy`: comma-separated hosts or domains (`*` = all).
    pub no_proxy: Option<String>,
    /// The `Authorization` header value.
    pub authorization: Option<String>,
}

impl Source {
    /// From `image_info`; a malformed authorization is an error.
    pub fn from_image_info(info: &Map<String, Value>) -> Result<Source, DeployError> {
        let mut src = Source {
            proxies: info
                .get("proxies")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            no_proxy: info
                .get("no_proxy")
                .and_then(Value::as_str)
                .map(str::to_string),
            authorization: None,
        };
        if let Some(a) = info
            .get("image_request_authorization")
            .and_then(Value::as_str)
        {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    DeployError::InvalidParams(
                        "image_request_authorization is not base64 text".into(),
                    )
                })?;
            // A Glance token (or basic credentials): masked wherever it
            // might surface, in logs or in logs Ironic collects.
            crate::redact::remember(a);
            crate::redact::remember(&raw);
            src.authorization = Some(raw);
        } else if info
            .get("image_server_auth_strategy")
            .and_then(Value::as_str)
            == Some("http_basic")
        {
            let user = info
                .get("image_server_user")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let pass = info
                .get("image_server_password")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if user.is_empty() || pass.is_empty() {
                return Err(DeployError::Download(
                    "Missing user or password fields from HTTP(S) basic auth config".into(),
                ));
            }
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            crate::redact::remember(pass);
            crate::redact::remember(&token);
            src.authorization = Some(format!("Basic {token}"));
        }
        Ok(src)
    }

    /// The proxy for `url`, if any.
    fn proxy_for(&self, url: &str) -> Option<String> {
        let scheme = url.split("://").next()?.to_lowercase();
        let proxy = self.proxies.get(&scheme)?.as_str()?.trim();
        if proxy.is_empty() || self.bypassed(host_of(url)?) {
            return None;
        }
        Some(proxy.to_string())
    }

    fn bypassed(&self, host: &str) -> bool {
        let host = host.to_lowercase();
        self.no_proxy
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .any(|e| {
                let e = e.trim_start_matches('.').to_lowercase();
                e == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))))
            })
    }
}

/// The host of an `http(s)://` URL (without port or brackets).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next();
    }
    hostport.split(':').next()
}

/// An open response body.
pub struct Body {
    /// The bytes.
    pub reader: Box<dyn Read + Send>,
    /// `Content-Length`, when the server sent one.
    pub length: Option<u64>,
    /// The URL that answered.
    pub url: String,
}

/// One attempt's failure: retry or give up.
enum Failure {
    Fatal(String),
    Retry(String),
}

/// Opens the first URL that answers 200, retrying as IPA does.
pub fn open(settings: &Settings, src: &Source, urls: &[String]) -> Result<Body, DeployError> {
    let mut errors = Vec::new();
    for attempt in 0..=settings.download.retries {
        if attempt > 0 {
            log::warn!(
                "download attempt {attempt} of {} failed; retrying in {:?}",
                settings.download.retries,
                settings.download.retry_interval
            );
            std::thread::sleep(settings.download.retry_interval);
        }
        for url in urls {
            match open_once(settings, src, url) {
                Ok(b) => return Ok(b),
                Err(Failure::Fatal(e)) => return Err(DeployError::Download(e)),
                Err(Failure::Retry(e)) => {
                    log::warn!("{e}");
                    errors.push(e);
                }
            }
        }
    }
    let last: Vec<String> = errors.into_iter().rev().take(urls.len()).collect();
    Err(DeployError::Download(format!(
        "giving up after {} attempts: {}",
        settings.download.retries + 1,
        last.join("; ")
    )))
}

fn open_once(settings: &Settings, src: &Source, url: &str) -> Result<Body, Failure> {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(Failure::Fatal(format!(
            "unsupported URL {url:?}: only http and https"
        )));
    }
    let proxy = match src.proxy_for(url) {
        Some(p) => Some(
            ureq::Proxy::new(&p).map_err(|e| Failure::Fatal(format!("bad proxy {p:?}: {e}")))?,
        ),
        None => None,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(proxy)
        .tls_config(settings.trust.tls_config(settings.insecure))
        .timeout_connect(Some(settings.download.connect_timeout))
        .timeout_recv_response(Some(settings.download.connect_timeout))
        .timeout_per_read(Some(settings.download.connect_timeout))
        .timeout_global(settings.download.max_duration)
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(a) = &src.authorization {
        req = req.header("Authorization", a);
    }
    let resp = req
        .call()
        .map_err(|e| Failure::Retry(format!("cannot get {url}: {e}")))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let msg = format!("Received status code {status} from {url}, expected 200");
        return Err(if status < 500 {
            Failure::Fatal(msg)
        } else {
            Failure::Retry(msg)
        });
    }
    let length = resp.body().content_length();
    Ok(Body {
        reader: Box::new(resp.into_body().into_reader()),
        length,
        url: url.to_string(),
    })
}

/// Downloads a small document (a checksums file, a configdrive) completely,
/// refusing more than `limit` bytes.
pub fn fetch_bytes(
    settings: &Settings,
    src: &Source,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, DeployError> {
    let body = open(settings, src, &[url.to_string()])?;
    let mut data = Vec::new();
    body.reader
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| DeployError::Download(format!("reading {url}: {e}")))?;
    if data.len() as u64 > limit {
        return Err(DeployError::Download(format!(
            "{url} is larger than {limit} bytes"
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proxies_per_scheme_and_no_proxy() {
        let info = json!({
            "proxies": {"http": "http://proxy:3128", "https": "http://sproxy:3128"},
            "no_proxy": "internal.example, .lan,10.0.0.5"
        });
        let s = Source::from_image_info(info.as_object().unwrap()).unwrap();
        assert_eq!(
            s.proxy_for("http://img/x").as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(
            s.proxy_for("https://img:8443/x").as_deref(),
            Some("http://sproxy:3128")
        );
        assert_eq!(s.proxy_for("http://a.internal.example/x"), None);
        assert_eq!(s.proxy_for("http://box.lan:80/x"), None);
        assert_eq!(s.proxy_for("http://10.0.0.5/x"), None);
        assert_eq!(
            s.proxy_for("http://10.0.0.50/x").as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(host_of("http://u:p@[::1]:80/x"), Some("::1"));
    }

    #[test]
    fn authorization_from_image_info() {
        let info = json!({"image_request_authorization": "QmVhcmVyIHNlY3JldA=="});
        let s = Source::from_image_info(info.as_object().unwrap()).unwrap();
        assert_eq!(s.authorization.as_deref(), Some("Bearer secret"));
        let logged = crate::redact::redact("GET with Bearer secret (QmVhcmVyIHNlY3JldA==)");
        assert!(
            !logged.contains("Bearer secret") && !logged.contains("QmVhcmVy"),
            "{logged}"
        );
        let info = json!({"image_server_auth_strategy": "http_basic", "image_server_user": "u", "image_server_password": "p"});
        let s = Source::from_image_info(info.as_object().unwrap()).unwrap();
        assert_eq!(s.authorization.as_deref(), Some("Basic dTpw"));
        let info = json!({"image_request_authorization": "%%%"});
        assert!(Source::from_image_info(info.as_object().unwrap()).is_err());
    }
}
