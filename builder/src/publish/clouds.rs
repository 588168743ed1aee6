//! Where the clouds are: `clouds.yaml` in the places openstacksdk looks,
//! `OS_*` environment variables, and Keystone v3 authentication.
//!
//! Operators already have a `clouds.yaml` for the `openstack` CLI; reading
//! the same file (and the same keys) means `--os-cloud prod` just works.
//! Three ways to authenticate are supported: Keystone password,
//! application credential (both yield a token and a service catalog), and
//! `auth_type: none` with explicit `<service>_endpoint_override` URLs
//! (standalone Glance/Ironic).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

/// Why the cloud could not be configured or reached.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a valid clouds.yaml: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("cloud {name:?} not found in {searched}; add it or pass another --os-cloud")]
    NoSuchCloud { name: String, searched: String },
    #[error(
        "no cloud configured: pass --os-cloud NAME (from clouds.yaml) or set OS_AUTH_URL / OS_AUTH_TYPE=none with OS_IMAGE_ENDPOINT"
    )]
    Nothing,
    #[error("cloud {cloud:?}: {what}")]
    Incomplete { cloud: String, what: String },
    #[error("Keystone {url}: {message}")]
    Keystone { url: String, message: String },
    #[error(
        "Keystone catalog has no {interface} {service} endpoint{region}; set {service}_endpoint_override"
    )]
    NoEndpoint {
        service: String,
        interface: String,
        region: String,
    },
}

/// The `auth:` section of a cloud.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Auth {
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub password: Option<String>,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub user_domain_name: Option<String>,
    pub user_domain_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub domain_name: Option<String>,
    pub application_credential_id: Option<String>,
    pub application_credential_secret: Option<String>,
}

/// One cloud of `clouds.yaml` (the keys ipa-build uses; others are ignored).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Cloud {
    pub auth_type: Option<String>,
    pub auth: Auth,
    pub region_name: Option<String>,
    pub interface: Option<String>,
    pub image_endpoint_override: Option<String>,
    pub baremetal_endpoint_override: Option<String>,
    /// Set when loaded, for messages.
    #[serde(skip)]
    pub name: String,
}

#[derive(Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, Cloud>,
}

/// Parses the text of a `clouds.yaml`; `path` is for messages.
pub fn parse(text: &str, path: &Path) -> Result<BTreeMap<String, Cloud>, CloudError> {
    let file: CloudsFile = serde_saphyr::from_str(text).map_err(|e| CloudError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(file
        .clouds
        .into_iter()
        .map(|(name, mut c)| {
            c.name = name.clone();
            (name, c)
        })
        .collect())
}

/// Where openstacksdk looks for `clouds.yaml`, in order.
pub fn search_paths(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(f) = env("OS_CLIENT_CONFIG_FILE") {
        v.push(PathBuf::from(f));
    }
    v.push(PathBuf::from("clouds.yaml"));
    if let Some(home) = env("HOME") {
        v.push(Path::new(&home).join(".config/openstack/clouds.yaml"));
    }
    v.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    v
}

/// The cloud named `name` from the first `clouds.yaml` that defines it.
pub fn find(name: &str, paths: &[PathBuf]) -> Result<Cloud, CloudError> {
    for p in paths {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CloudError::Read {
                    path: p.clone(),
                    source,
                });
            }
        };
        if let Some(c) = parse(&text, p)?.remove(name) {
            return Ok(c);
        }
    }
    Err(CloudError::NoSuchCloud {
        name: name.to_string(),
        searched: paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A cloud from `OS_*` variables, as the `openstack` CLI reads them; `None`
/// when neither `OS_AUTH_URL` nor `OS_AUTH_TYPE` is set.
pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Cloud> {
    if env("OS_AUTH_URL").is_none() && env("OS_AUTH_TYPE").is_none() {
        return None;
    }
    Some(Cloud {
        name: "(OS_* environment)".into(),
        auth_type: env("OS_AUTH_TYPE"),
        auth: Auth {
            auth_url: env("OS_AUTH_URL"),
            username: env("OS_USERNAME"),
            user_id: env("OS_USER_ID"),
            password: env("OS_PASSWORD"),
            project_name: env("OS_PROJECT_NAME").or_else(|| env("OS_TENANT_NAME")),
            project_id: env("OS_PROJECT_ID"),
            user_domain_name: env("OS_USER_DOMAIN_NAME"),
            user_domain_id: env("OS_USER_DOMAIN_ID"),
            project_domain_name: env("OS_PROJECT_DOMAIN_NAME"),
            project_domain_id: env("OS_PROJECT_DOMAIN_ID"),
            domain_name: env("OS_DOMAIN_NAME"),
            application_credential_id: env("OS_APPLICATION_CREDENTIAL_ID"),
            application_credential_secret: env("OS_APPLICATION_CREDENTIAL_SECRET"),
        },
        region_name: env("OS_REGION_NAME"),
        interface: env("OS_INTERFACE"),
        image_endpoint_override: env("OS_IMAGE_ENDPOINT")
            .or_else(|| env("OS_IMAGE_ENDPOINT_OVERRIDE")),
        baremetal_endpoint_override: env("OS_BAREMETAL_ENDPOINT")
            .or_else(|| env("OS_BAREMETAL_ENDPOINT_OVERRIDE")),
    })
}

/// The cloud to use: `--os-cloud` (or `OS_CLOUD`) from clouds.yaml, else
/// the `OS_*` variables.
pub fn resolve(
    os_cloud: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Cloud, CloudError> {
    let name = os_cloud.map(str::to_string).or_else(|| env("OS_CLOUD"));
    if let Some(name) = name {
        let mut c = find(&name, &search_paths(env))?;
        // OS_* variables fill what the file leaves out (e.g. the password).
        if let Some(e) = from_env(env) {
            let a = &mut c.auth;
            a.password = a.password.take().or(e.auth.password);
            a.application_credential_secret = a
                .application_credential_secret
                .take()
                .or(e.auth.application_credential_secret);
        }
        return Ok(c);
    }
    from_env(env).ok_or(CloudError::Nothing)
}

/// An authenticated connection: a token (none for `auth_type: none`) and
/// the service endpoints.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: Option<String>,
    pub image: String,
    pub baremetal: Option<String>,
}

/// The Keystone v3 request body for `cloud`'s auth type.
pub fn auth_body(cloud: &Cloud) -> Result<Value, CloudError> {
    let a = &cloud.auth;
    let missing = |what: &str| CloudError::Incomplete {
        cloud: cloud.name.clone(),
        what: format!(
            "auth.{what} is required for auth_type {:?}",
            auth_type(cloud)
        ),
    };
    match auth_type(cloud) {
        "v3applicationcredential" => {
            let id = a
                .application_credential_id
                .as_ref()
                .ok_or_else(|| missing("application_credential_id"))?;
            let secret = a
                .application_credential_secret
                .as_ref()
                .ok_or_else(|| missing("application_credential_secret"))?;
            Ok(
                json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret}}}}),
            )
        }
        "password" | "v3password" => {
            let password = a.password.as_ref().ok_or_else(|| missing("password"))?;
            let domain = |id: &Option<String>, name: &Option<String>| match (id, name) {
                (Some(id), _) => json!({"id": id}),
                (None, Some(n)) => json!({"name": n}),
                (None, None) => match &a.domain_name {
                    Some(n) => json!({"name": n}),
                    None => json!({"id": "default"}),
                },
            };
            let user = match (&a.user_id, &a.username) {
                (Some(id), _) => json!({"id": id, "password": password}),
                (None, Some(n)) => json!({"name": n, "password": password,
                    "domain": domain(&a.user_domain_id, &a.user_domain_name)}),
                (None, None) => return Err(missing("username")),
            };
            let mut body = json!({"auth": {"identity": {"methods": ["password"],
                "password": {"user": user}}}});
            let project = match (&a.project_id, &a.project_name) {
                (Some(id), _) => Some(json!({"id": id})),
                (None, Some(n)) => Some(json!({"name": n,
                    "domain": domain(&a.project_domain_id, &a.project_domain_name)})),
                (None, None) => None,
            };
            if let Some(p) = project {
                body["auth"]["scope"] = json!({"project": p});
            }
            Ok(body)
        }
        other => Err(CloudError::Incomplete {
            cloud: cloud.name.clone(),
            what: format!(
                "auth_type {other:?} is not supported; use password, v3applicationcredential or none"
            ),
        }),
    }
}

/// The effective auth type (`password` when unset, as openstacksdk does).
pub fn auth_type(cloud: &Cloud) -> &str {
    cloud.auth_type.as_deref().unwrap_or("password")
}

/// The URL of `service` in a Keystone catalog.
pub fn catalog_endpoint(
    catalog: &Value,
    service: &str,
    interface: &str,
    region: Option<&str>,
) -> Option<String> {
    catalog
        .as_array()?
        .iter()
        .filter(|s| s["type"] == service)
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .find(|e| {
            e["interface"] == interface
                && region.is_none_or(|r| e["region"] == r || e["region_id"] == r)
        })
        .and_then(|e| e["url"].as_str())
        .map(|u| u.trim_end_matches('/').to_string())
}

/// Authenticates (if needed) and finds the endpoints.
pub fn connect(cloud: &Cloud, agent: &ureq::Agent) -> Result<Session, CloudError> {
    let trim = |s: &String| s.trim_end_matches('/').to_string();
    if auth_type(cloud) == "none" {
        let image = cloud
            .image_endpoint_override
            .as_ref()
            .map(trim)
            .ok_or_else(|| CloudError::Incomplete {
                cloud: cloud.name.clone(),
                what: "auth_type none needs image_endpoint_override (e.g. http://127.0.0.1:9292)"
                    .into(),
            })?;
        return Ok(Session {
            token: None,
            image,
            baremetal: cloud.baremetal_endpoint_override.as_ref().map(trim),
        });
    }
    let body = auth_body(cloud)?;
    let base = cloud
        .auth
        .auth_url
        .as_ref()
        .ok_or_else(|| CloudError::Incomplete {
            cloud: cloud.name.clone(),
            what: "auth.auth_url is required".into(),
        })?
        .trim_end_matches('/')
        .to_string();
    let url = if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    };
    let kerr = |message: String| CloudError::Keystone {
        url: url.clone(),
        message,
    };
    let mut resp = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|e| kerr(e.to_string()))?;
    let status = resp.status().as_u16();
    let token = resp
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| kerr(e.to_string()))?;
    if status != 201 && status != 200 {
        return Err(kerr(format!(
            "HTTP {status}: {}; check the credentials of cloud {:?}",
            text.chars().take(300).collect::<String>(),
            cloud.name
        )));
    }
    let token = token.ok_or_else(|| kerr("no X-Subject-Token header in the answer".into()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| kerr(format!("invalid JSON: {e}")))?;
    let catalog = &v["token"]["catalog"];
    let interface = cloud.interface.as_deref().unwrap_or("public");
    let region = cloud.region_name.as_deref();
    let find = |service: &str| catalog_endpoint(catalog, service, interface, region);
    let image = match &cloud.image_endpoint_override {
        Some(u) => trim(u),
        None => find("image").ok_or_else(|| CloudError::NoEndpoint {
            service: "image".into(),
            interface: interface.into(),
            region: region
                .map(|r| format!(" in region {r}"))
                .unwrap_or_default(),
        })?,
    };
    let baremetal = cloud
        .baremetal_endpoint_override
        .as_ref()
        .map(trim)
        .or_else(|| find("baremetal"));
    Ok(Session {
        token: Some(token),
        image,
        baremetal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
clouds:
  standalone:
    auth_type: none
    image_endpoint_override: http://127.0.0.1:9292/
    baremetal_endpoint_override: http://127.0.0.1:6385
  prod:
    region_name: RegionOne
    auth:
      auth_url: https://keystone.example:5000/v3
      username: ops
      password: s3cret
      project_name: infra
      user_domain_name: Default
      project_domain_name: Default
    some_unknown_key: 3
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000
      application_credential_id: abc
      application_credential_secret: xyz
"#;

    #[test]
    fn parses_the_three_auth_styles() {
        let c = parse(YAML, Path::new("clouds.yaml")).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(auth_type(&c["standalone"]), "none");
        assert_eq!(
            c["standalone"].image_endpoint_override.as_deref(),
            Some("http://127.0.0.1:9292/")
        );
        let prod = &c["prod"];
        assert_eq!(prod.name, "prod");
        assert_eq!(prod.region_name.as_deref(), Some("RegionOne"));
        let body = auth_body(prod).unwrap();
        let user = &body["auth"]["identity"]["password"]["user"];
        assert_eq!(user["name"], "ops");
        assert_eq!(user["domain"]["name"], "Default");
        assert_eq!(body["auth"]["scope"]["project"]["name"], "infra");
        let app = auth_body(&c["appcred"]).unwrap();
        assert_eq!(
            app["auth"]["identity"]["methods"][0],
            "application_credential"
        );
        assert_eq!(
            app["auth"]["identity"]["application_credential"]["secret"],
            "xyz"
        );
    }

    #[test]
    fn auth_none_uses_overrides_without_network() {
        let c = parse(YAML, Path::new("x")).unwrap();
        let agent = ureq::Agent::new_with_defaults();
        let s = connect(&c["standalone"], &agent).unwrap();
        assert_eq!(s.image, "http://127.0.0.1:9292");
        assert_eq!(s.baremetal.as_deref(), Some("http://127.0.0.1:6385"));
        assert!(s.token.is_none());
    }

    #[test]
    fn errors_name_the_file_and_the_cloud() {
        let e = parse("clouds: [1, 2]", Path::new("/etc/openstack/clouds.yaml")).unwrap_err();
        assert!(e.to_string().contains("/etc/openstack/clouds.yaml"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("clouds.yaml");
        std::fs::write(&f, YAML).unwrap();
        let e = find("nope", std::slice::from_ref(&f)).unwrap_err();
        assert!(e.to_string().contains("nope") && e.to_string().contains("clouds.yaml"));
        let mut missing = parse(YAML, &f).unwrap().remove("prod").unwrap();
        missing.auth.password = None;
        assert!(
            auth_body(&missing)
                .unwrap_err()
                .to_string()
                .contains("auth.password")
        );
    }

    #[test]
    fn search_order_and_env() {
        let env = |k: &str| match k {
            "OS_CLIENT_CONFIG_FILE" => Some("/x/c.yaml".to_string()),
            "HOME" => Some("/home/u".to_string()),
            "OS_AUTH_TYPE" => Some("none".to_string()),
            "OS_IMAGE_ENDPOINT" => Some("http://g:9292".to_string()),
            _ => None,
        };
        let p = search_paths(&env);
        assert_eq!(p[0], Path::new("/x/c.yaml"));
        assert_eq!(p[1], Path::new("clouds.yaml"));
        assert_eq!(p[2], Path::new("/home/u/.config/openstack/clouds.yaml"));
        assert_eq!(p[3], Path::new("/etc/openstack/clouds.yaml"));
        let c = resolve(None, &env).unwrap();
        assert_eq!(c.image_endpoint_override.as_deref(), Some("http://g:9292"));
    }

    #[test]
    fn picks_catalog_endpoint_by_interface_and_region() {
        let cat = json!([{"type": "image", "endpoints": [
            {"interface": "internal", "region": "R1", "url": "http://int"},
            {"interface": "public", "region": "R2", "url": "http://r2/"},
            {"interface": "public", "region": "R1", "url": "http://r1"}]}]);
        assert_eq!(
            catalog_endpoint(&cat, "image", "public", Some("R1")).as_deref(),
            Some("http://r1")
        );
        assert_eq!(
            catalog_endpoint(&cat, "image", "public", None).as_deref(),
            Some("http://r2")
        );
        assert!(catalog_endpoint(&cat, "baremetal", "public", None).is_none());
    }
}
