//! The daemon's life: look the node up, pick the callback address, start
//! auto-TLS, serve the API, heartbeat; stop when a command says so
//! (`finalize_rescue` exits 0, `lockdown` sleeps forever).

use crate::api::{ApiState, router};
use crate::commands::{Executor, Registry};
use crate::config::Config;
use crate::extensions::{Control, Ctx, RunState, builtin_registry, rescue::RESCUED_MARKER};
use crate::heartbeat::{FORCE, STOP};
use crate::ironic::{ClientConfig, HeartbeatInfo, IronicClient, IronicError, VERIFY_CA_VERSION};
use crate::server::Limits;
use crate::timing::{Signal, SystemTiming, Timing, epoch_now};
use crate::tls::TlsPolicy;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Lookup gave up.
    #[error(transparent)]
    Lookup(#[from] IronicError),
    /// The API could not listen.
    #[error(
        "cannot listen on {addr}: {source}. Check ipa-listen-host/--listen-host and ipa-listen-port/--listen-port"
    )]
    Bind {
        /// Address tried.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No address to advertise.
    #[error(
        "cannot find this machine's address towards Ironic ({0}) after the configured attempts; set ipa-advertise-host/--advertise-host"
    )]
    NoAdvertiseAddress(String),
    /// Auto-TLS failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Sleeps forever: what IPA does when it must neither serve nor exit (the
/// service would be restarted otherwise).
pub fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Serves the API on `listener` (HTTPS when `tls` is set) until `control`
/// leaves [`RunState::Serving`], with the default [`Limits`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<ApiState>,
    control: Control,
) -> RunState {
    serve_with_limits(listener, tls, state, control, Limits::default()).await
}

/// [`serve`] with explicit limits (tests shorten the timeouts).
pub async fn serve_with_limits(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<ApiState>,
    control: Control,
    limits: Limits,
) -> RunState {
    crate::server::serve(listener, tls, router(state), control, limits).await
}

/// Applies the lookup's token rules: a value of 32+ characters is adopted;
/// `******` keeps ours (fatal when we have none); anything else is ignored.
/// Returns `false` when the agent must never serve.
pub fn adopt_lookup_token(token: &RwLock<Option<String>>, lookup: Option<&str>) -> bool {
    let Ok(mut t) = token.write() else {
        return false;
    };
    match lookup {
        Some(v) if v.len() >= 32 => {
            crate::redact::remember(v);
            log::info!("using the agent token issued by Ironic");
            *t = Some(v.to_string());
            true
        }
        Some("******") => {
            if t.is_some() {
                log::info!(
                    "Ironic says the token was already issued; keeping the one from the command line"
                );
                true
            } else {
                log::error!(
                    "Ironic already issued an agent token to an earlier agent and this one has none: refusing to serve. Abort and restart the operation (e.g. rescue again) in Ironic"
                );
                false
            }
        }
        Some(_) => {
            log::warn!(
                "the agent token in the lookup response is invalid (shorter than 32 characters); ignored"
            );
            true
        }
        None => true,
    }
}

/// How long [`wait_for_macs`] polls quickly, and how often: a NIC whose
/// driver is still loading usually shows up within moments.
const MAC_QUICK_WINDOW: f64 = 5.0;
const MAC_QUICK_POLL: f64 = 0.25;

/// Waits up to 60 s for a network interface with a MAC (the spec's 5 s
/// polls), polling every [`MAC_QUICK_POLL`] s during the first
/// [`MAC_QUICK_WINDOW`] s so a late NIC costs moments, not a poll period.
fn wait_for_macs(cfg: &Config, timing: &dyn Timing) -> Vec<String> {
    let start = timing.now();
    let mut said = false;
    loop {
        let macs = crate::net::mac_addresses(&cfg.root);
        if !macs.is_empty() {
            return macs;
        }
        let waited = timing.now() - start;
        if waited >= 60.0 {
            break;
        }
        if !said {
            log::info!("waiting up to 60 s for a network interface with a MAC address");
            said = true;
        }
        timing.sleep(if waited < MAC_QUICK_WINDOW {
            MAC_QUICK_POLL
        } else {
            5.0
        });
    }
    log::warn!("no network interface with a MAC address found; looking up without addresses");
    Vec::new()
}

/// Puts the PXE NIC's MAC (`BOOTIF=`) first in the lookup's addresses:
/// the port Ironic knows the node by, whatever the interface order.
fn bootif_first(mut macs: Vec<String>, bootif: Option<&str>) -> Vec<String> {
    if let Some(pos) = bootif.and_then(|b| macs.iter().position(|m| m == b)) {
        let mac = macs.remove(pos);
        macs.insert(0, mac);
    }
    macs
}

/// The address to advertise: `ipa-advertise-host`, or the source address
/// of the route towards Ironic, taken from `urls` in order (the client's
/// list puts the URL that answered the lookup first), derived now, after
/// lookup, so it is the address DHCP gave and not what was there (nothing)
/// when the agent started.
fn advertise_ip(cfg: &Config, urls: &[String]) -> Result<IpAddr, AgentError> {
    if let Some(h) = &cfg.advertise_host {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = h.parse() {
            return Ok(ip);
        }
        log::warn!("advertise host {h:?} is not an IP address; discovering it instead");
    }
    let attempts = cfg.ip_lookup_attempts.max(1);
    for attempt in 1..=attempts {
        for url in urls {
            if let Some(ip) = crate::net::source_address_for(url) {
                log::info!("advertising {ip} (source address towards {url})");
                return Ok(ip);
            }
        }
        if attempt < attempts {
            std::thread::sleep(crate::timing::duration(cfg.ip_lookup_timeout));
        }
    }
    Err(AgentError::NoAdvertiseAddress(cfg.api_urls.join(",")))
}

async fn bind(cfg: &Config) -> Result<TcpListener, AgentError> {
    let host = cfg
        .listen_host
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addr = crate::net::host_port(host, cfg.listen_port);
    match TcpListener::bind(&addr).await {
        Ok(l) => Ok(l),
        Err(e) if host == "::" => {
            log::info!("cannot listen on [::] ({e}); using 0.0.0.0");
            let v4 = format!("0.0.0.0:{}", cfg.listen_port);
            TcpListener::bind(&v4)
                .await
                .map_err(|source| AgentError::Bind { addr: v4, source })
        }
        Err(source) => Err(AgentError::Bind { addr, source }),
    }
}

/// Runs the daemon. `Ok(())` means "exit 0" (after `finalize_rescue`); the
/// states that must not exit (no token, rescued marker, lockdown) never
/// return.
pub fn run(cfg: Config) -> Result<(), AgentError> {
    let started_at = epoch_now();
    let control = Control::default();
    // Loaded once: inspection, lookup and image downloads trust the same CAs.
    let trust = crate::trust::load(&cfg.root, &cfg.trust);
    let ctx = Ctx {
        root: cfg.root.clone(),
        control: control.clone(),
        deploy: crate::deploy::settings::Settings::new(&cfg, trust.clone()),
    };
    let registry = builtin_registry(&ctx);
    run_with(cfg, trust, registry, control, started_at)
}

/// What lookup told us about the node: enough to heartbeat.
struct Session {
    client: IronicClient,
    node_uuid: String,
    heartbeat_timeout: f64,
    /// The lookup reply's `config`, for its TLS policy.
    config: serde_json::Value,
}

/// How the API is served and what the heartbeats advertise.
#[derive(Default)]
struct Advertised {
    tls: Option<Arc<rustls::ServerConfig>>,
    callback_url: Option<String>,
    verify_ca: Option<String>,
}

/// The phases of the daemon's life, one function each: lookup and token
/// rules, the rescued marker, advertise address and auto-TLS, serve and
/// heartbeat, exit.
fn run_with(
    cfg: Config,
    trust: crate::trust::Trust,
    registry: Registry,
    control: Control,
    started_at: f64,
) -> Result<(), AgentError> {
    let rescued = crate::fsutil::under(&cfg.root, RESCUED_MARKER).exists();
    if let Some(t) = &cfg.agent_token {
        crate::redact::remember(t);
    }
    let token = Arc::new(RwLock::new(cfg.agent_token.clone()));
    let timing: Arc<dyn Timing> = Arc::new(SystemTiming::default());
    if let Some(servers) = &cfg.ntp_server {
        crate::ntp::sync(&cfg.root, servers);
    }

    // The TLS key does not depend on the address it will be certified for:
    // make it while lookup waits for the network.
    let key = cfg.auto_tls.then(|| {
        let curve = cfg.tls_certificate_curve.clone();
        std::thread::spawn(move || crate::tls::new_key(&curve))
    });
    // IPA posts the inventory before lookup; the answer names the node.
    let inspected = crate::inspect::run(&cfg, &trust, timing.as_ref());
    let session = lookup_phase(&cfg, trust, &token, &timing, inspected.as_deref())?;
    if rescued {
        log::info!(
            "{} exists: this node was rescued; not serving the API nor heartbeating",
            RESCUED_MARKER
        );
        sleep_forever();
    }
    let advertised = match &session {
        Some(s) => advertise_phase(&cfg, s, key)?,
        None => Advertised::default(),
    };
    let shared = Shared {
        token,
        timing,
        started_at,
    };
    let end = serve_phase(&cfg, registry, control, shared, session, advertised)?;
    exit_phase(&cfg, end)
}

/// Looks the node up (when an Ironic URL is configured) and applies the
/// token rules; never returns when the agent must not serve.
fn lookup_phase(
    cfg: &Config,
    trust: crate::trust::Trust,
    token: &RwLock<Option<String>>,
    timing: &Arc<dyn Timing>,
    node_uuid: Option<&str>,
) -> Result<Option<Session>, AgentError> {
    if cfg.api_urls.is_empty() {
        log::info!(
            "no Ironic URL (ipa-api-url/--api-url): serving the API without lookup or heartbeats"
        );
        return Ok(None);
    }
    let client = IronicClient::new(
        &ClientConfig {
            urls: cfg.api_urls.clone(),
            insecure: cfg.insecure,
            request_id: cfg.global_request_id.clone(),
            version_override: cfg.ironic_api_version,
            timeout: cfg.http_request_timeout,
            trust,
        },
        timing.clone(),
    );
    let first = bootif_first(wait_for_macs(cfg, timing.as_ref()), cfg.bootif.as_deref());
    if cfg.hardware_initialization_delay > 0.0 {
        log::info!(
            "waiting {} s (ipa-hardware-initialization-delay)",
            cfg.hardware_initialization_delay
        );
        timing.sleep(cfg.hardware_initialization_delay);
    }
    // Read again before each attempt: NICs keep appearing while drivers
    // load (hotplug), and the node's port may not be the first one.
    let addresses = || {
        let now = bootif_first(crate::net::mac_addresses(&cfg.root), cfg.bootif.as_deref());
        if now.is_empty() { first.clone() } else { now }
    };
    let content = client.lookup_with(
        &addresses,
        node_uuid,
        cfg.lookup_timeout,
        cfg.lookup_interval,
    )?;
    let lookup_token = content["config"]
        .get("agent_token")
        .and_then(|v| v.as_str());
    if !adopt_lookup_token(token, lookup_token) {
        sleep_forever();
    }
    crate::deploy::settings::set_md5_allowed(&content["config"]);
    let node_uuid = content["node"]["uuid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (lo, hi) = crate::config::HEARTBEAT_TIMEOUT_RANGE;
    let given = content["config"]["heartbeat_timeout"]
        .as_f64()
        .unwrap_or(300.0);
    let heartbeat_timeout = given.clamp(lo, hi);
    if heartbeat_timeout != given {
        log::warn!(
            "Ironic's heartbeat_timeout {given} is outside {lo}..{hi}; using {heartbeat_timeout}"
        );
    }
    Ok(Some(Session {
        client,
        node_uuid,
        heartbeat_timeout,
        config: content["config"].clone(),
    }))
}

/// Picks the callback address (after lookup, so an address DHCP gave while
/// lookup was retrying is the one advertised) and, with Ironic >= 1.68,
/// certifies the auto-TLS key made during lookup (`key`; made here when
/// there is none or its thread failed).
fn advertise_phase(
    cfg: &Config,
    session: &Session,
    key: Option<std::thread::JoinHandle<Result<rcgen::KeyPair, crate::tls::TlsError>>>,
) -> Result<Advertised, AgentError> {
    let ip = advertise_ip(cfg, &session.client.urls())?;
    let host = ip.to_string();
    let mut adv = Advertised::default();
    let mut proto = "http";
    if cfg.auto_tls && session.client.api_version() >= VERIFY_CA_VERSION {
        let key = match key.map(|k| k.join()) {
            Some(Ok(key)) => key?,
            _ => crate::tls::new_key(&cfg.tls_certificate_curve)?,
        };
        let cert = crate::tls::certify(&cfg.root, ip, &cfg.tls_certificate_curve, key)?;
        let mut policy = TlsPolicy {
            min_version: cfg.tls_min_version.clone(),
            cipher_suites: cfg.tls_cipher_suites.clone(),
        };
        policy.apply_lookup(&session.config);
        adv.tls = Some(crate::tls::server_config(&cert, &policy)?);
        adv.verify_ca = Some(cert.pem);
        proto = "https";
    } else if cfg.auto_tls {
        log::warn!("Ironic is older than API 1.68: auto-TLS is off, serving plain HTTP");
    }
    adv.callback_url = Some(format!(
        "{proto}://{}",
        crate::net::host_port(&host, cfg.advertise_port)
    ));
    Ok(adv)
}

/// Starts the heartbeat thread; it runs until `signal` carries [`STOP`].
fn spawn_heartbeat(
    session: Session,
    callback_url: String,
    verify_ca: Option<String>,
    token: Arc<RwLock<Option<String>>>,
    timing: Arc<dyn Timing>,
    signal: Arc<Signal>,
) {
    let Session {
        client,
        node_uuid,
        heartbeat_timeout,
        ..
    } = session;
    let spawned = std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            crate::heartbeat::run(timing.as_ref(), &signal, heartbeat_timeout, || {
                let info = HeartbeatInfo {
                    node_uuid: node_uuid.clone(),
                    callback_url: callback_url.clone(),
                    token: token.read().ok().and_then(|t| t.clone()),
                    verify_ca: verify_ca.clone(),
                };
                log::info!("heartbeat: node {node_uuid}, callback {callback_url}");
                match client.heartbeat(&info) {
                    Ok(()) => {
                        log::info!("heartbeat accepted by Ironic");
                        true
                    }
                    Err(e) => {
                        log::warn!("heartbeat failed: {e}");
                        false
                    }
                }
            });
            log::info!("heartbeats stopped");
        });
    if let Err(e) = spawned {
        log::error!("cannot start the heartbeat thread: {e}; Ironic will not hear from this agent");
    }
}

/// What every phase shares: the token (lookup may replace it), the clock,
/// and the start time reported by `/v1/status`.
struct Shared {
    token: Arc<RwLock<Option<String>>>,
    timing: Arc<dyn Timing>,
    started_at: f64,
}

/// Listens, starts the heartbeats, and serves until a command ends serving.
fn serve_phase(
    cfg: &Config,
    registry: Registry,
    control: Control,
    shared: Shared,
    session: Option<Session>,
    adv: Advertised,
) -> Result<RunState, AgentError> {
    let Shared {
        token,
        timing,
        started_at,
    } = shared;
    let signal = Arc::new(Signal::default());
    let force = signal.clone();
    let executor = Arc::new(Executor::new(
        registry,
        Arc::new(move || force.raise(FORCE)),
    ));
    let scheme = if adv.tls.is_some() { "https" } else { "http" };
    let state = Arc::new(ApiState {
        executor,
        token: token.clone(),
        started_at,
        scheme,
    });
    crate::server::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(AgentError::Runtime)?;
    let listener = rt.block_on(bind(cfg))?;
    if let Ok(addr) = listener.local_addr() {
        log::info!("API listening on {scheme}://{addr}");
    }
    if let (Some(session), Some(callback_url)) = (session, adv.callback_url) {
        spawn_heartbeat(
            session,
            callback_url,
            adv.verify_ca,
            token,
            timing,
            signal.clone(),
        );
    }
    // Heartbeats stop the moment serving ends, not after the grace period.
    let stop = signal.clone();
    let watched = control.clone();
    rt.spawn(async move {
        watched.stopped().await;
        stop.raise(STOP);
    });
    let end = rt.block_on(serve(listener, adv.tls, state, control));
    signal.raise(STOP);
    // Do not wait for a command thread that may still be running.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(end)
}

/// Lockdown sleeps forever with the interfaces down; anything else exits 0.
fn exit_phase(cfg: &Config, end: RunState) -> Result<(), AgentError> {
    match end {
        RunState::Lockdown => {
            log::warn!("lockdown: API stopped");
            crate::extensions::system::interfaces_down(&cfg.root);
            sleep_forever();
        }
        _ => {
            log::info!("rescue finalized: API and heartbeats stopped; exiting");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: &std::path::Path) -> Config {
        crate::config::from_params(root.to_path_buf(), &Default::default()).0
    }

    #[test]
    fn macs_are_polled_quickly_at_first_then_every_5_s_up_to_60_s() {
        let root = tempfile::tempdir().unwrap();
        let clock = crate::timing::ManualClock::default();
        assert!(wait_for_macs(&config(root.path()), &clock).is_empty());
        let sleeps = clock.sleeps.lock().unwrap().clone();
        let quick = sleeps.iter().take_while(|s| **s == MAC_QUICK_POLL).count();
        assert_eq!(
            quick as f64 * MAC_QUICK_POLL,
            MAC_QUICK_WINDOW,
            "{sleeps:?}"
        );
        assert!(sleeps[quick..].iter().all(|s| *s == 5.0), "{sleeps:?}");
        assert_eq!(sleeps.iter().sum::<f64>(), 60.0, "{sleeps:?}");
    }

    #[test]
    fn a_nic_already_there_costs_no_wait() {
        let root = tempfile::tempdir().unwrap();
        let nic = root.path().join("sys/class/net/eth0");
        std::fs::create_dir_all(nic.join("device")).unwrap();
        std::fs::write(nic.join("address"), "52:54:00:12:34:56\n").unwrap();
        let clock = crate::timing::ManualClock::default();
        assert_eq!(
            wait_for_macs(&config(root.path()), &clock),
            ["52:54:00:12:34:56"]
        );
        assert!(clock.sleeps.lock().unwrap().is_empty());
    }

    #[test]
    fn the_pxe_nic_goes_first() {
        let macs = || {
            vec![
                "aa:00:00:00:00:01".to_string(),
                "aa:00:00:00:00:02".to_string(),
            ]
        };
        assert_eq!(
            bootif_first(macs(), Some("aa:00:00:00:00:02")),
            ["aa:00:00:00:00:02", "aa:00:00:00:00:01"]
        );
        assert_eq!(bootif_first(macs(), Some("bb:00:00:00:00:09")), macs());
        assert_eq!(bootif_first(macs(), None), macs());
    }

    #[test]
    fn the_advertised_address_follows_the_url_that_answered() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path());
        // The first URL (the one that answered lookup) decides; loopback
        // routes to itself.
        let urls = [
            "http://127.0.0.1:6385".to_string(),
            "http://[::1]:6385".to_string(),
        ];
        assert_eq!(advertise_ip(&cfg, &urls).unwrap().to_string(), "127.0.0.1");
    }
}
