//! The Nacos client: lists instances (disabled ones included), lists services, deregisters and
//! enables/disables instances, over the HTTP APIs of Nacos 1.x, 2.x, 3.x and rnacos.
//!
//! Transport rules: the server addresses are tried in order starting from the last one that
//! answered; only idempotent reads are retried (with exponential backoff); writes fail over to the
//! next address only when the connection could not be made at all (the request never left).
//! Login tokens are cached and refreshed shortly before `tokenTtl`; a 401/403 triggers one fresh
//! login and one retry, then a distinct [`NacosError::Auth`].
//!
//! # rnacos (0.8.8) differences, found by reading its source and checking a live server
//! - No `/nacos/v1/console/server/state`, no v2 naming, no v3 admin: detected as "V1, version
//!   unknown" ([`ServerFlavor::V1Compatible`]) when `/nacos/v1/ns/service/list` answers.
//! - **Every open-API listing hides disabled instances** (`/v1/ns/instance/list` and
//!   `/v1/ns/catalog/instances` both filter `enabled=false`). The only listing that shows them is the
//!   console's `/rnacos/api/console/v2/instance/list`, served on the main HTTP port only when
//!   `RNACOS_ENABLE_NO_AUTH_CONSOLE=true` (otherwise that path answers an HTML hint page with 200).
//!   The client probes it and uses it when available ([`ServerInfo::lists_disabled`]); otherwise it
//!   lists with `catalog/instances` (healthy and unhealthy, enabled only) and a disabled instance can
//!   be seen only one at a time through [`NacosClient::get_instance`] (`GET /v1/ns/instance`, which
//!   shows it whatever its state).
//! - Cluster filters are ignored by every listing (instances are keyed by ip:port within a service,
//!   the cluster is an attribute): the client lists once and filters clusters itself.
//!   `catalog/service` (service detail with clusters) does not exist.
//! - POST, PUT and PATCH `/v1/ns/instance` are one upsert: a PATCH of a missing instance *creates*
//!   it (Alibaba answers 404). The client therefore checks existence with `GET /v1/ns/instance` before
//!   it PATCHes on rnacos. A PATCH also marks the instance healthy, and resets `clusterName` to
//!   DEFAULT when it is not sent (verified live), so the client always sends it.
//! - PATCH keeps the weight when `weight` is absent or 1.0, keeps `ephemeral` when absent, and
//!   ignores `metadata` when it is empty or `{}`: metadata can never be cleared to empty, so removing
//!   the last key (e.g. the disabled-by marker) does not take on rnacos.
//! - Errors are HTTP 500 with a plain-text body (missing instance on `GET /v1/ns/instance`: 500
//!   `error`); auth failures are 403 with a JSON or plain body. With open-API auth off, login answers
//!   `accessToken:"AUTH_DISABLED"` for any credentials. Logins are rate-limited per user and minute.
//! - An HTTP DELETE does remove a gRPC-registered instance (unlike Alibaba Nacos).
//! - A namespace id that does not exist is not an error: `service/list` answers `{"count":0,
//!   "doms":[]}` and `catalog/instances` `{"count":0,"list":[]}`, both 200 (verified live), and
//!   queries do not create it. `GET /nacos/v1/console/namespaces` (and `/nacos/v2/console/
//!   namespace/list`) list the public namespace as `""` plus every namespace created or used by a
//!   registration (`type` 8); with open-API auth on they need the token like any other call.
//!   Hence [`NacosClient::check_namespace`].

pub mod auth;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use tokio::sync::{Mutex, RwLock};
use tracing::debug;

use auth::CachedToken;
pub use auth::Credentials;
use wire::{codes, Page, WireError, WireInstance};

use crate::model::{Instance, InstanceKey, ServiceKey, ServiceSnapshot};

// ---------------------------------------------------------------------------------------------
// Configuration

/// Which HTTP API generation to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiGeneration {
    /// Probe the server: 3.x → V3, 2.x → V2, 1.x and v1-compatible servers (rnacos) → V1.
    #[default]
    Auto,
    /// v1 endpoints (Nacos 1.x, rnacos).
    V1,
    /// Nacos 2.x: the same v1 admin endpoints (catalog, PATCH), wrapped answers accepted.
    V2,
    /// Nacos 3.x admin API (`/nacos/v3/admin/ns/...`).
    V3,
}

impl fmt::Display for ApiGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiGeneration::Auto => "Auto",
            ApiGeneration::V1 => "V1",
            ApiGeneration::V2 => "V2",
            ApiGeneration::V3 => "V3",
        })
    }
}

/// TLS settings for `https://` server addresses.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM, one or more) to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate. For tests only.
    pub insecure_skip_verify: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem_bytes", &self.ca_pem.as_ref().map(Vec::len))
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// Bounded retries for idempotent reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per read (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Everything needed to talk to one Nacos cluster.
#[derive(Debug, Clone)]
pub struct NacosConfig {
    /// Base URLs such as `http://nacos-0.nacos:8848`, tried in order (a trailing `/nacos` is accepted).
    pub server_addrs: Vec<String>,
    /// Nacos namespace id; `""` and `"public"` both mean the public namespace.
    pub namespace: String,
    pub api: ApiGeneration,
    pub credentials: Credentials,
    pub tls: TlsConfig,
    /// Timeout of one HTTP request (connect included).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Page size for paginated listings.
    pub page_size: u32,
}

impl NacosConfig {
    pub fn new(server_addrs: Vec<String>) -> Self {
        Self {
            server_addrs,
            namespace: String::new(),
            api: ApiGeneration::Auto,
            credentials: Credentials::None,
            tls: TlsConfig::default(),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            page_size: 100,
        }
    }

    /// The namespace id naming calls expect (`public` for the public namespace).
    pub fn namespace_id(&self) -> &str {
        if self.namespace.is_empty() {
            "public"
        } else {
            &self.namespace
        }
    }
}

/// Whether the configured namespace exists on the server (see [`NacosClient::check_namespace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceCheck {
    /// The public namespace: always there, not looked up.
    Public,
    /// The server lists it.
    Found,
    /// The server at `address` lists its namespaces (`known`, the public one as `""` or
    /// `public`), this one is not among them, and it holds no service of the governed groups.
    Missing { address: String, known: Vec<String> },
    /// No namespace listing could be read (why): existence not verified.
    Unverified(String),
}

/// Whether namespace id `configured` is among the ids a server `listed`; `""` and `public` both
/// name the public namespace, which always exists.
pub fn namespace_listed(configured: &str, listed: &[String]) -> bool {
    let public = |s: &str| s.is_empty() || s == "public";
    public(configured) || listed.iter().any(|n| n == configured)
}

/// rnacos's answer to `GET /v1/ns/instance` for an instance that does not exist.
fn rnacos_missing(status: u16, body: &[u8]) -> bool {
    status == 500 && String::from_utf8_lossy(body).trim() == "error"
}

/// Normalise one configured address into a base URL without trailing `/` or `/nacos`.
pub fn normalize_base_url(addr: &str) -> Result<String, NacosError> {
    let trimmed = addr.trim();
    if trimmed.is_empty() {
        return Err(NacosError::Config("empty server address".into()));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| NacosError::Config(format!("server address {trimmed:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(NacosError::Config(format!(
            "server address {trimmed:?}: need http(s)://host[:port]"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NacosError::Config(
            "server address must not carry credentials; use the credentials secret".into(),
        ));
    }
    let mut base = url.as_str().trim_end_matches('/').to_string();
    if let Some(stripped) = base.strip_suffix("/nacos") {
        base = stripped.to_string();
    }
    Ok(base)
}

// ---------------------------------------------------------------------------------------------
// Results and errors

/// Implementation behind the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFlavor {
    /// Alibaba Nacos: it reports its version.
    Nacos,
    /// Answers the v1 naming API but reports no version (rnacos and other re-implementations).
    V1Compatible,
}

/// What the server is and how the client talks to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// e.g. "2.5.2"; "unknown" for servers without a state endpoint (rnacos).
    pub version: String,
    /// The generation in use, never `Auto`.
    pub api: ApiGeneration,
    pub flavor: ServerFlavor,
    /// Whether `list_instances` includes disabled instances on this server.
    pub lists_disabled: bool,
}

/// Errors of the Nacos client. Every variant names the server address and request path;
/// none carries a password, token or secret key.
#[derive(Debug, thiserror::Error)]
pub enum NacosError {
    /// Connection refused, DNS failure or timeout on every address tried.
    #[error("Nacos unreachable for {path} (tried {addresses}): {reason}")]
    Unreachable {
        addresses: String,
        path: String,
        reason: String,
    },
    /// Bad credentials, or the server denied the request even after a fresh login.
    #[error("Nacos at {address} denied {path}: {reason}")]
    Auth {
        address: String,
        path: String,
        reason: String,
    },
    /// The server answered with an error status or error code.
    #[error("Nacos at {address} answered {status} to {path}{}: {body}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Server {
        address: String,
        path: String,
        status: u16,
        code: Option<i64>,
        body: String,
    },
    /// The answer could not be understood, or a listing was inconsistent across pages.
    #[error("unexpected answer from Nacos at {address} to {path}: {reason}")]
    Protocol {
        address: String,
        path: String,
        reason: String,
    },
    /// The service or instance does not exist (HTTP 404, codes 20004/21003/21008).
    #[error("not found at Nacos {address} {path}: {what}")]
    NotFound {
        address: String,
        path: String,
        what: String,
    },
    /// The configuration cannot work (bad address, bad CA).
    #[error("invalid Nacos client configuration: {0}")]
    Config(String),
}

impl NacosError {
    /// A short, stable label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            NacosError::Unreachable { .. } => "unreachable",
            NacosError::Auth { .. } => "auth",
            NacosError::Server { .. } => "server",
            NacosError::Protocol { .. } => "protocol",
            NacosError::NotFound { .. } => "not_found",
            NacosError::Config(_) => "config",
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, NacosError::NotFound { .. })
    }
}

pub type Result<T, E = NacosError> = std::result::Result<T, E>;

/// Map an error status/body to an error. Body codes win over the status: Nacos 2.x/3.x answer some
/// errors with HTTP 200 or 400 and a meaningful code.
pub fn classify_error(address: &str, path: &str, status: u16, body: &[u8]) -> NacosError {
    let code = wire::parse_error_code(body);
    let text = wire::truncate(String::from_utf8_lossy(body).trim(), 300);
    let (address, path) = (address.to_string(), path.to_string());
    match code {
        Some((codes::ACCESS_DENIED, message)) => NacosError::Auth {
            address,
            path,
            reason: message,
        },
        Some((
            codes::RESOURCE_NOT_FOUND | codes::INSTANCE_NOT_FOUND | codes::SERVICE_NOT_EXIST,
            message,
        )) => NacosError::NotFound {
            address,
            path,
            what: message,
        },
        Some((code, message)) if !(200..300).contains(&status) || code != 0 => match status {
            401 | 403 => NacosError::Auth {
                address,
                path,
                reason: message,
            },
            404 => NacosError::NotFound {
                address,
                path,
                what: message,
            },
            _ => NacosError::Server {
                address,
                path,
                status,
                code: Some(code),
                body: message,
            },
        },
        _ => match status {
            401 | 403 => NacosError::Auth {
                address,
                path,
                reason: text,
            },
            404 => NacosError::NotFound {
                address,
                path,
                what: text,
            },
            _ => NacosError::Server {
                address,
                path,
                status,
                code: None,
                body: text,
            },
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics hook

/// One finished HTTP exchange (or transport failure), for metrics.
#[derive(Debug, Clone)]
pub struct RequestEvent<'a> {
    pub method: &'a str,
    /// Path without query, e.g. `/nacos/v1/ns/catalog/instances`.
    pub path: &'a str,
    pub address: &'a str,
    /// `None` when no HTTP answer arrived.
    pub status: Option<u16>,
    pub elapsed: Duration,
}

/// Receives every request the client makes. Must be cheap and must not block.
pub trait RequestObserver: Send + Sync {
    fn on_request(&self, event: &RequestEvent<'_>);
}

/// A ready-made observer: plain counters.
#[derive(Debug, Default)]
pub struct RequestCounters {
    pub requests: AtomicU64,
    /// Answers with a status ≥ 400.
    pub error_answers: AtomicU64,
    /// No answer at all (connect error, timeout).
    pub transport_errors: AtomicU64,
}

impl RequestObserver for RequestCounters {
    fn on_request(&self, event: &RequestEvent<'_>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match event.status {
            None => {
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
            Some(s) if s >= 400 => {
                self.error_answers.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The registry interface the reconciler uses (mockable in tests).

/// What the reconciler needs from a service registry.
pub trait Registry: Send + Sync {
    fn server_info(&self) -> impl Future<Output = Result<ServerInfo>> + Send;
    fn list_services(&self, group: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn list_instances(
        &self,
        service: &ServiceKey,
        clusters: &[String],
    ) -> impl Future<Output = Result<ServiceSnapshot>> + Send;
    fn deregister(&self, instance: &Instance) -> impl Future<Output = Result<()>> + Send;
    fn set_enabled(
        &self,
        instance: &Instance,
        enabled: bool,
        metadata: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<()>> + Send;
}

// ---------------------------------------------------------------------------------------------
// The client

/// A Nacos client for one cluster (one [`NacosConfig`]). Cheap to clone; clones share the token
/// cache, the remembered good address and the detected server info.
#[derive(Clone)]
pub struct NacosClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: NacosConfig,
    bases: Vec<String>,
    http: reqwest::Client,
    /// Index into `bases` of the last address that answered.
    preferred: AtomicUsize,
    token: Mutex<Option<CachedToken>>,
    info: RwLock<Option<ServerInfo>>,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl fmt::Debug for NacosClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NacosClient")
            .field("servers", &self.inner.bases)
            .field("namespace", &self.inner.config.namespace)
            .field("api", &self.inner.config.api)
            .field("credentials", &self.inner.config.credentials)
            .finish()
    }
}

/// One request, described independently of the address it goes to.
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    path: &'static str,
    query: Vec<(&'static str, String)>,
    /// Sent as `application/x-www-form-urlencoded` body (writes, login).
    form: Option<Vec<(&'static str, String)>>,
    idempotent: bool,
    /// `group@@service` for access-key signing.
    sign_service: Option<String>,
}

impl Req {
    fn get(path: &'static str, query: Vec<(&'static str, String)>) -> Self {
        Self {
            method: Method::GET,
            path,
            query,
            form: None,
            idempotent: true,
            sign_service: None,
        }
    }
}

/// An HTTP answer from one address.
#[derive(Debug)]
struct Reply {
    address: String,
    path: &'static str,
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn error(&self) -> NacosError {
        classify_error(&self.address, self.path, self.status, &self.body)
    }

    /// The answer as `Ok(self)` when 2xx, else the classified error.
    fn ok(self) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    fn parse<T>(&self, f: impl FnOnce(&[u8]) -> Result<T, WireError>) -> Result<T> {
        f(&self.body).map_err(|e| self.wire_error(e))
    }

    fn wire_error(&self, e: WireError) -> NacosError {
        match e {
            WireError::Code { .. } => {
                classify_error(&self.address, self.path, self.status, &self.body)
            }
            WireError::Malformed(reason) => NacosError::Protocol {
                address: self.address.clone(),
                path: self.path.to_string(),
                reason,
            },
        }
    }

    fn protocol(&self, reason: impl Into<String>) -> NacosError {
        NacosError::Protocol {
            address: self.address.clone(),
            path: self.path.to_string(),
            reason: reason.into(),
        }
    }
}

const MAX_PAGES: u32 = 10_000;
const PROBE_SERVICE: &str = "nacos-reconciler-probe";

mod paths {
    pub const V1_INSTANCE: &str = "/nacos/v1/ns/instance";
    pub const V1_CATALOG_INSTANCES: &str = "/nacos/v1/ns/catalog/instances";
    pub const V1_CATALOG_SERVICE: &str = "/nacos/v1/ns/catalog/service";
    pub const V1_SERVICE_LIST: &str = "/nacos/v1/ns/service/list";
    pub const V1_SERVER_STATE: &str = "/nacos/v1/console/server/state";
    pub const V1_LOGIN: &str = "/nacos/v1/auth/login";
    pub const V3_LOGIN: &str = "/nacos/v3/auth/user/login";
    pub const V3_STATE: &str = "/nacos/v3/admin/core/state";
    pub const V3_INSTANCE: &str = "/nacos/v3/admin/ns/instance";
    pub const V3_INSTANCE_PARTIAL: &str = "/nacos/v3/admin/ns/instance/partial";
    pub const V3_INSTANCE_LIST: &str = "/nacos/v3/admin/ns/instance/list";
    pub const V3_SERVICE: &str = "/nacos/v3/admin/ns/service";
    pub const V3_SERVICE_LIST: &str = "/nacos/v3/admin/ns/service/list";
    pub const RNACOS_CONSOLE_INSTANCES: &str = "/rnacos/api/console/v2/instance/list";
    pub const V1_NAMESPACES: &str = "/nacos/v1/console/namespaces";
    pub const V2_NAMESPACES: &str = "/nacos/v2/console/namespace/list";
    pub const V3_NAMESPACES: &str = "/nacos/v3/admin/core/namespace/list";
}

impl NacosClient {
    pub fn new(config: NacosConfig) -> Result<Self> {
        if config.server_addrs.is_empty() {
            return Err(NacosError::Config("no server address".into()));
        }
        let bases = config
            .server_addrs
            .iter()
            .map(|a| normalize_base_url(a))
            .collect::<Result<Vec<_>>>()?;
        let connect_timeout = config.request_timeout.min(Duration::from_secs(5));
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.request_timeout)
            .connect_timeout(connect_timeout)
            .user_agent(concat!("nacos-reconciler/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.tls.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| NacosError::Config(format!("CA bundle: {}", e.without_url())))?;
            if certs.is_empty() {
                return Err(NacosError::Config("CA bundle holds no certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| NacosError::Config(format!("HTTP client: {}", e.without_url())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                bases,
                http,
                preferred: AtomicUsize::new(0),
                token: Mutex::new(None),
                info: RwLock::new(None),
                observer: None,
            }),
        })
    }

    /// Attach a per-request observer (metrics). Call before cloning the client.
    pub fn with_observer(self, observer: Arc<dyn RequestObserver>) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.observer = Some(observer);
                Self {
                    inner: Arc::new(inner),
                }
            }
            // Already shared: rebuild from the same parts, keeping nothing else mutable.
            Err(shared) => Self {
                inner: Arc::new(Inner {
                    config: shared.config.clone(),
                    bases: shared.bases.clone(),
                    http: shared.http.clone(),
                    preferred: AtomicUsize::new(shared.preferred.load(Ordering::Relaxed)),
                    token: Mutex::new(None),
                    info: RwLock::new(None),
                    observer: Some(observer),
                }),
            },
        }
    }

    pub fn config(&self) -> &NacosConfig {
        &self.inner.config
    }

    /// The base URL that answered last (where requests start).
    pub fn current_address(&self) -> &str {
        let i = self.inner.preferred.load(Ordering::Relaxed) % self.inner.bases.len();
        &self.inner.bases[i]
    }

    fn ns(&self) -> String {
        self.inner.config.namespace_id().to_string()
    }

    /// The namespace, group and name of `service`, then `more`: how every per-service query starts.
    fn service_query(
        &self,
        service: &ServiceKey,
        more: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("namespaceId", self.ns()),
            ("groupName", service.group.clone()),
            ("serviceName", service.name.clone()),
        ];
        q.extend(more);
        q
    }

    // -----------------------------------------------------------------------------------------
    // Transport

    /// Send once, trying addresses in order from the preferred one.
    async fn send_failover(&self, req: &Req, token: Option<&str>) -> Result<Reply> {
        let n = self.inner.bases.len();
        let start = self.inner.preferred.load(Ordering::Relaxed) % n;
        let mut failures: Vec<String> = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let base = &self.inner.bases[idx];
            match self.send_to(base, req, token).await {
                Ok((status, body)) => {
                    self.inner.preferred.store(idx, Ordering::Relaxed);
                    return Ok(Reply {
                        address: base.clone(),
                        path: req.path,
                        status,
                        body,
                    });
                }
                Err(e) => {
                    let connect = e.is_connect();
                    let reason = describe_transport_error(&e);
                    debug!(address = %base, path = req.path, %reason, "Nacos request failed");
                    failures.push(format!("{base}: {reason}"));
                    // A write that may have reached the server is not repeated elsewhere.
                    if !req.idempotent && !connect {
                        break;
                    }
                }
            }
        }
        Err(NacosError::Unreachable {
            addresses: self.inner.bases.join(", "),
            path: req.path.to_string(),
            reason: failures.join("; "),
        })
    }

    async fn send_to(
        &self,
        base: &str,
        req: &Req,
        token: Option<&str>,
    ) -> std::result::Result<(u16, Vec<u8>), reqwest::Error> {
        let started = Instant::now();
        let url = format!("{base}{}", req.path);
        let mut query = req.query.clone();
        if let Credentials::AccessKey {
            access_key,
            secret_key,
        } = &self.inner.config.credentials
        {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            query.extend(auth::sign_request(
                access_key,
                secret_key,
                req.sign_service.as_deref(),
                millis,
            ));
        }
        let mut rb = self.inner.http.request(req.method.clone(), &url);
        if !query.is_empty() {
            rb = rb.query(&query);
        }
        if let Some(form) = &req.form {
            rb = rb.form(form);
        }
        if let Some(t) = token {
            // Headers, not query parameters: tokens must never end up in URLs or logs.
            rb = rb
                .header(reqwest::header::AUTHORIZATION, format!("Bearer {t}"))
                .header("accessToken", t);
        }
        let result = async {
            let resp = rb.send().await?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        let elapsed = started.elapsed();
        let status = result.as_ref().ok().map(|(s, _)| *s);
        debug!(
            method = %req.method,
            address = %base,
            path = req.path,
            status = ?status,
            elapsed_ms = elapsed.as_millis() as u64,
            "Nacos request"
        );
        if let Some(obs) = &self.inner.observer {
            obs.on_request(&RequestEvent {
                method: req.method.as_str(),
                path: req.path,
                address: base,
                status,
                elapsed,
            });
        }
        result
    }

    /// Send with authentication: one fresh login and one retry on 401/403.
    async fn send_authed(&self, req: &Req) -> Result<Reply> {
        let token = self.token(false).await?;
        let reply = self.send_failover(req, token.as_deref()).await?;
        if !is_denied(reply.status) {
            return Ok(reply);
        }
        if !matches!(
            self.inner.config.credentials,
            Credentials::UserPassword { .. }
        ) {
            return Err(reply.error_as_auth());
        }
        debug!(
            path = req.path,
            "Nacos denied the request; logging in again"
        );
        let token = self.token(true).await?;
        let reply = self.send_failover(req, token.as_deref()).await?;
        if is_denied(reply.status) {
            return Err(reply.error_as_auth());
        }
        Ok(reply)
    }

    /// Send with authentication and, for idempotent requests, bounded retries with backoff on
    /// unreachable servers and 5xx answers. Returns any HTTP answer; callers classify it.
    async fn request(&self, req: &Req) -> Result<Reply> {
        let attempts = if req.idempotent {
            self.inner.config.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let result = self.send_authed(req).await;
            let retryable = match &result {
                Err(NacosError::Unreachable { .. }) => true,
                // rnacos answers a missing instance with 500 "error": an answer, not a failure.
                Ok(r) => r.status >= 500 && !rnacos_missing(r.status, &r.body),
                Err(_) => false,
            };
            if !retryable || attempt >= attempts {
                return result;
            }
            let delay = self.inner.config.retry.backoff(attempt);
            debug!(path = req.path, attempt, ?delay, "retrying Nacos read");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The current token, logging in when there is none or it is about to expire.
    async fn token(&self, force: bool) -> Result<Option<String>> {
        let Credentials::UserPassword { username, password } = &self.inner.config.credentials
        else {
            return Ok(None);
        };
        // Holding the lock across the login makes concurrent callers share one login.
        let mut guard = self.inner.token.lock().await;
        if !force {
            if let Some(t) = guard.as_ref() {
                if t.is_fresh(Instant::now()) {
                    return Ok(Some(t.token.clone()));
                }
            }
        }
        *guard = None;
        let fresh = self.login(username, password).await?;
        let token = fresh.token.clone();
        *guard = Some(fresh);
        Ok(Some(token))
    }

    async fn login(&self, username: &str, password: &str) -> Result<CachedToken> {
        let form = vec![
            ("username", username.to_string()),
            ("password", password.to_string()),
        ];
        // 3.x has its own login path; older servers answer 404 there and use the v1 one.
        let order: &[&'static str] = match self.inner.config.api {
            ApiGeneration::V1 | ApiGeneration::V2 => &[paths::V1_LOGIN],
            _ => &[paths::V3_LOGIN, paths::V1_LOGIN],
        };
        let mut last = None;
        for path in order {
            let req = Req {
                method: Method::POST,
                path,
                query: Vec::new(),
                form: Some(form.clone()),
                idempotent: true,
                sign_service: None,
            };
            let reply = self.send_with_retry_unauthed(&req).await?;
            if reply.status == 404 || reply.status == 405 {
                last = Some(reply);
                continue;
            }
            if is_denied(reply.status) {
                return Err(NacosError::Auth {
                    address: reply.address.clone(),
                    path: path.to_string(),
                    reason: format!("login as {username:?} refused"),
                });
            }
            let reply = reply.ok()?;
            let t = reply.parse(wire::parse_login)?;
            debug!(address = %reply.address, path, ttl = t.ttl_seconds, "logged in to Nacos");
            return Ok(CachedToken::new(
                t.access_token,
                t.ttl_seconds,
                Instant::now(),
            ));
        }
        Err(match last {
            Some(r) => r.error(),
            None => NacosError::Config("no login path".into()),
        })
    }

    async fn send_with_retry_unauthed(&self, req: &Req) -> Result<Reply> {
        let attempts = self.inner.config.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.send_failover(req, None).await {
                Err(NacosError::Unreachable { .. }) if attempt < attempts => {
                    tokio::time::sleep(self.inner.config.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Server detection

    /// Probe the server (version and API generation) and remember the answer.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let info = self.probe().await?;
        *self.inner.info.write().await = Some(info.clone());
        Ok(info)
    }

    /// The remembered server info, probing once if needed.
    async fn resolved(&self) -> Result<ServerInfo> {
        if let Some(info) = self.inner.info.read().await.clone() {
            return Ok(info);
        }
        self.server_info().await
    }

    async fn probe(&self) -> Result<ServerInfo> {
        let configured = self.inner.config.api;
        if matches!(configured, ApiGeneration::Auto | ApiGeneration::V3) {
            match self.probe_version(paths::V3_STATE).await {
                Ok(Some(version)) => {
                    return Ok(ServerInfo {
                        version,
                        api: ApiGeneration::V3,
                        flavor: ServerFlavor::Nacos,
                        lists_disabled: true,
                    })
                }
                Ok(None) => {}
                Err(e) if configured == ApiGeneration::V3 => return Err(e),
                Err(e) => debug!(error = %e, "3.x state probe inconclusive"),
            }
            if configured == ApiGeneration::V3 {
                return Ok(ServerInfo {
                    version: "unknown".into(),
                    api: ApiGeneration::V3,
                    flavor: ServerFlavor::Nacos,
                    lists_disabled: true,
                });
            }
        }
        match self.probe_version(paths::V1_SERVER_STATE).await {
            Ok(Some(version)) => {
                let api = match configured {
                    ApiGeneration::Auto if version.starts_with("1.") => ApiGeneration::V1,
                    ApiGeneration::Auto => ApiGeneration::V2,
                    other => other,
                };
                return Ok(ServerInfo {
                    version,
                    api,
                    flavor: ServerFlavor::Nacos,
                    lists_disabled: true,
                });
            }
            Ok(None) => {}
            Err(e) => debug!(error = %e, "1.x/2.x state probe inconclusive"),
        }
        // No state endpoint: a v1-compatible server (rnacos) if the naming API answers.
        let req = Req::get(
            paths::V1_SERVICE_LIST,
            vec![
                ("pageNo", "1".into()),
                ("pageSize", "1".into()),
                ("namespaceId", self.ns()),
            ],
        );
        let reply = self.request(&req).await?.ok()?;
        reply.parse(wire::parse_v1_service_list)?;
        let lists_disabled = self.probe_rnacos_console().await;
        Ok(ServerInfo {
            version: "unknown".into(),
            api: match configured {
                ApiGeneration::V2 => ApiGeneration::V2,
                _ => ApiGeneration::V1,
            },
            flavor: ServerFlavor::V1Compatible,
            lists_disabled,
        })
    }

    /// `Ok(Some(version))` when the state endpoint answers, `Ok(None)` when it does not exist.
    async fn probe_version(&self, path: &'static str) -> Result<Option<String>> {
        let reply = self.request(&Req::get(path, Vec::new())).await?;
        if !reply.is_success() {
            return match reply.status {
                404 | 405 | 410 | 501 => Ok(None),
                _ => Err(reply.error()),
            };
        }
        Ok(wire::parse_server_version(&reply.body).ok())
    }

    /// rnacos's console listing (includes disabled instances) is reachable on the main port only
    /// with `RNACOS_ENABLE_NO_AUTH_CONSOLE=true`.
    async fn probe_rnacos_console(&self) -> bool {
        let req = Req::get(
            paths::RNACOS_CONSOLE_INSTANCES,
            vec![
                ("namespaceId", self.ns()),
                ("groupName", "DEFAULT_GROUP".into()),
                ("serviceName", PROBE_SERVICE.into()),
            ],
        );
        match self.request(&req).await {
            Ok(r) if r.is_success() => wire::parse_rnacos_console_instances(&r.body).is_ok(),
            _ => false,
        }
    }

    /// Looks the configured namespace up in the server's namespace listing. Nacos (and rnacos)
    /// answer every naming call in an unknown namespace with empty lists, which would pass for
    /// "no instances". A namespace the listing lacks but that holds services in one of `groups`
    /// is in use (Nacos 2.x lets clients register into an id nobody created): `Found`.
    /// Servers without a readable listing (an old or trimmed API, or a user not allowed to read
    /// it) give `Unverified`; an unreachable server is an error.
    pub async fn check_namespace(&self, groups: &[String]) -> Result<NamespaceCheck> {
        let configured = self.inner.config.namespace.as_str();
        if namespace_listed(configured, &[]) {
            return Ok(NamespaceCheck::Public);
        }
        let info = self.resolved().await?;
        let candidates = if info.api == ApiGeneration::V3 {
            [paths::V3_NAMESPACES, paths::V1_NAMESPACES]
        } else {
            [paths::V1_NAMESPACES, paths::V2_NAMESPACES]
        };
        let mut why = Vec::new();
        for path in candidates {
            let reply = match self.request(&Req::get(path, Vec::new())).await {
                Ok(r) => r,
                Err(e @ NacosError::Unreachable { .. }) => return Err(e),
                Err(e) => {
                    why.push(e.to_string());
                    continue;
                }
            };
            if !reply.is_success() {
                why.push(reply.error().to_string());
                continue;
            }
            match reply.parse(wire::parse_namespace_list) {
                Ok(listed) if namespace_listed(configured, &listed) => {
                    return Ok(NamespaceCheck::Found)
                }
                Ok(listed) => {
                    for group in groups {
                        if !self.list_services(group).await?.is_empty() {
                            debug!(group, "namespace not listed, but it holds services");
                            return Ok(NamespaceCheck::Found);
                        }
                    }
                    return Ok(NamespaceCheck::Missing {
                        address: reply.address,
                        known: listed,
                    });
                }
                Err(e) => why.push(e.to_string()),
            }
        }
        Ok(NamespaceCheck::Unverified(why.join("; ")))
    }

    // -----------------------------------------------------------------------------------------
    // Services

    /// Every service name of `group` in the configured namespace (paginated, sorted, unique).
    pub async fn list_services(&self, group: &str) -> Result<Vec<String>> {
        let info = self.resolved().await?;
        let page_size = self.inner.config.page_size.max(1);
        let mut names = BTreeSet::new();
        if info.api == ApiGeneration::V3 {
            let pages = self
                .paginate(|page_no| {
                    let req = Req::get(
                        paths::V3_SERVICE_LIST,
                        vec![
                            ("namespaceId", self.ns()),
                            ("groupNameParam", group.to_string()),
                            ("serviceNameParam", String::new()),
                            ("ignoreEmptyService", "false".into()),
                            ("withInstances", "false".into()),
                            ("pageNo", page_no.to_string()),
                            ("pageSize", page_size.to_string()),
                        ],
                    );
                    async move {
                        let r = self.request(&req).await?.ok()?;
                        let page = r.parse(wire::parse_v3_service_list)?;
                        Ok((r.address, page))
                    }
                })
                .await?;
            // groupNameParam may be a fuzzy match: keep the exact group only.
            names.extend(
                pages
                    .into_iter()
                    .filter(|s| s.group.as_deref().is_none_or(|g| g == group))
                    .map(|s| s.name),
            );
        } else {
            let pages = self
                .paginate(|page_no| {
                    let req = Req::get(
                        paths::V1_SERVICE_LIST,
                        vec![
                            ("namespaceId", self.ns()),
                            ("groupName", group.to_string()),
                            ("pageNo", page_no.to_string()),
                            ("pageSize", page_size.to_string()),
                        ],
                    );
                    async move {
                        let r = self.request(&req).await?.ok()?;
                        let page = r.parse(wire::parse_v1_service_list)?;
                        Ok((r.address, page))
                    }
                })
                .await?;
            let prefix = format!("{group}@@");
            names.extend(
                pages
                    .into_iter()
                    .map(|n| n.strip_prefix(&prefix).map(str::to_string).unwrap_or(n)),
            );
        }
        Ok(names.into_iter().collect())
    }

    /// Fetch every page: stops when the collected items reach the server's count. A listing whose
    /// count changes while paging is restarted (twice at most), then fails: a listing with holes
    /// must never pass for complete.
    async fn paginate<T, F, Fut>(&self, mut fetch: F) -> Result<Vec<T>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<(String, Page<T>)>>,
    {
        let mut restarts = 0;
        'outer: loop {
            let mut items: Vec<T> = Vec::new();
            let mut total: Option<u64> = None;
            let mut page_no = 1;
            loop {
                let (address, page) = fetch(page_no).await?;
                let inconsistent = match total {
                    Some(t) => t != page.total,
                    None => false,
                };
                let empty = page.items.is_empty();
                total = Some(page.total);
                items.extend(page.items);
                let reached = items.len() as u64 >= page.total;
                if reached && !inconsistent {
                    return Ok(items);
                }
                if inconsistent || empty || page_no >= MAX_PAGES {
                    if restarts < 2 {
                        restarts += 1;
                        debug!(%address, "listing changed while paging; restarting");
                        continue 'outer;
                    }
                    return Err(NacosError::Protocol {
                        address,
                        path: "(paginated listing)".into(),
                        reason: format!(
                            "listing changed while paging: server count {}, got {}",
                            page.total,
                            items.len()
                        ),
                    });
                }
                page_no += 1;
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Instances

    /// A complete listing of `service`, disabled instances included where the server allows it
    /// (see [`ServerInfo::lists_disabled`]). `clusters` empty = every cluster of the service.
    /// A failed or partial listing is an error, never an empty snapshot.
    pub async fn list_instances(
        &self,
        service: &ServiceKey,
        clusters: &[String],
    ) -> Result<ServiceSnapshot> {
        let info = self.resolved().await?;
        let wanted: BTreeSet<&str> = clusters.iter().map(String::as_str).collect();
        let raw = match (info.api, info.flavor) {
            (ApiGeneration::V3, _) => self.list_v3(service, &wanted).await?,
            (_, ServerFlavor::V1Compatible) => {
                self.list_v1_compatible(service, info.lists_disabled)
                    .await?
            }
            _ => self.list_v1(service, &wanted).await?,
        };
        Ok(to_snapshot(service, raw, &wanted))
    }

    /// Clusters to list: the service's own, intersected with the wanted ones.
    fn pick_clusters(found: Vec<String>, wanted: &BTreeSet<&str>) -> Vec<String> {
        found
            .into_iter()
            .filter(|c| wanted.is_empty() || wanted.contains(c.as_str()))
            .collect()
    }

    async fn list_v1(
        &self,
        service: &ServiceKey,
        wanted: &BTreeSet<&str>,
    ) -> Result<Vec<WireInstance>> {
        let mut req = Req::get(paths::V1_CATALOG_SERVICE, self.service_query(service, []));
        req.sign_service = Some(grouped(service));
        let r = self.request(&req).await?.ok()?;
        let clusters = Self::pick_clusters(r.parse(wire::parse_service_clusters)?, wanted);
        let mut out = Vec::new();
        for cluster in clusters {
            out.extend(self.catalog_instances(service, Some(&cluster)).await?);
        }
        Ok(out)
    }

    /// Every page of the v1 catalog listing of `service`: one cluster, or all of them.
    async fn catalog_instances(
        &self,
        service: &ServiceKey,
        cluster: Option<&str>,
    ) -> Result<Vec<WireInstance>> {
        let page_size = self.inner.config.page_size.max(1);
        let cluster = cluster.map(|c| ("clusterName", c.to_string()));
        self.paginate(|page_no| {
            let more = cluster.clone().into_iter().chain([
                ("pageNo", page_no.to_string()),
                ("pageSize", page_size.to_string()),
            ]);
            let mut req = Req::get(
                paths::V1_CATALOG_INSTANCES,
                self.service_query(service, more),
            );
            req.sign_service = Some(grouped(service));
            async move {
                let r = self.request(&req).await?.ok()?;
                let page = r.parse(wire::parse_catalog_instances)?;
                Ok((r.address, page))
            }
        })
        .await
    }

    async fn list_v3(
        &self,
        service: &ServiceKey,
        wanted: &BTreeSet<&str>,
    ) -> Result<Vec<WireInstance>> {
        let req = Req::get(paths::V3_SERVICE, self.service_query(service, []));
        let r = self.request(&req).await?.ok()?;
        let clusters = Self::pick_clusters(r.parse(wire::parse_service_clusters)?, wanted);
        let mut out = Vec::new();
        for cluster in clusters {
            let page_size = self.inner.config.page_size.max(1);
            // The v3 admin list defaults to cluster DEFAULT only: ask for each cluster.
            let items = self
                .paginate(|page_no| {
                    let req = Req::get(
                        paths::V3_INSTANCE_LIST,
                        self.service_query(
                            service,
                            [
                                ("clusterName", cluster.clone()),
                                ("healthyOnly", "false".into()),
                                ("pageNo", page_no.to_string()),
                                ("pageSize", page_size.to_string()),
                            ],
                        ),
                    );
                    async move {
                        let r = self.request(&req).await?.ok()?;
                        let page = r.parse(wire::parse_v3_instances)?;
                        Ok((r.address, page))
                    }
                })
                .await?;
            out.extend(items);
        }
        Ok(out)
    }

    /// rnacos: the console listing when reachable (shows disabled instances), else the catalog
    /// (hides them). Both ignore clusters; the caller filters.
    async fn list_v1_compatible(
        &self,
        service: &ServiceKey,
        console: bool,
    ) -> Result<Vec<WireInstance>> {
        if console {
            let req = Req::get(
                paths::RNACOS_CONSOLE_INSTANCES,
                self.service_query(service, []),
            );
            let r = self.request(&req).await?.ok()?;
            let page = r.parse(wire::parse_rnacos_console_instances)?;
            if page.items.len() as u64 != page.total {
                return Err(r.protocol(format!(
                    "console listing count {} but {} items",
                    page.total,
                    page.items.len()
                )));
            }
            return Ok(page.items);
        }
        self.catalog_instances(service, None).await
    }

    /// One instance by key, whatever its enabled state; `None` when it does not exist.
    /// On rnacos this is the only way to see a disabled instance when the console listing is off.
    pub async fn get_instance(&self, key: &InstanceKey) -> Result<Option<Instance>> {
        let info = self.resolved().await?;
        if info.flavor == ServerFlavor::V1Compatible {
            let mut req = Req::get(
                paths::V1_INSTANCE,
                vec![
                    ("namespaceId", self.ns()),
                    ("groupName", key.service.group.clone()),
                    ("serviceName", key.service.name.clone()),
                    ("clusterName", key.cluster.clone()),
                    ("ip", key.ip.to_string()),
                    ("port", key.port.to_string()),
                ],
            );
            req.sign_service = Some(grouped(&key.service));
            let r = self.request(&req).await?;
            if !r.is_success() {
                if rnacos_missing(r.status, &r.body) {
                    return Ok(None);
                }
                return match r.error() {
                    NacosError::NotFound { .. } => Ok(None),
                    e => Err(e),
                };
            }
            let w = r.parse(wire::parse_instance_detail)?;
            let inst = wire_to_instance(&key.service, w);
            return Ok((inst.key == *key).then_some(inst));
        }
        match self
            .list_instances(&key.service, std::slice::from_ref(&key.cluster))
            .await
        {
            Ok(snap) => Ok(snap.instances.into_iter().find(|i| i.key == *key)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remove the instance. Persistent instances are sent `ephemeral=false`. Nacos answers `ok`
    /// even when nothing was removed: verify by listing again.
    pub async fn deregister(&self, instance: &Instance) -> Result<()> {
        let info = self.resolved().await?;
        let path = if info.api == ApiGeneration::V3 {
            paths::V3_INSTANCE
        } else {
            paths::V1_INSTANCE
        };
        let mut query = self.instance_params(&instance.key);
        query.push(("ephemeral", instance.ephemeral.to_string()));
        let req = Req {
            method: Method::DELETE,
            path,
            query,
            form: None,
            idempotent: false,
            sign_service: Some(grouped(&instance.key.service)),
        };
        let r = self.request(&req).await?.ok()?;
        r.parse(wire::parse_write_ack)?;
        debug!(instance = %instance.key, "deregistered");
        Ok(())
    }

    /// Set `enabled` and replace the metadata with `metadata`, keeping the weight and everything
    /// else. v1/v2: `PATCH /v1/ns/instance` with only these fields; v3: `PUT .../instance/partial`
    /// with weight and enabled (it resets what is missing).
    pub async fn set_enabled(
        &self,
        instance: &Instance,
        enabled: bool,
        metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        let info = self.resolved().await?;
        let metadata_json = serde_json::to_string(metadata).map_err(|e| NacosError::Protocol {
            address: self.current_address().to_string(),
            path: "(metadata)".into(),
            reason: e.to_string(),
        })?;
        let mut form = self.instance_params(&instance.key);
        form.push(("enabled", enabled.to_string()));
        form.push(("metadata", metadata_json));
        let (method, path) = if info.api == ApiGeneration::V3 {
            form.push(("weight", format_weight(instance.weight)));
            form.push(("ephemeral", instance.ephemeral.to_string()));
            (Method::PUT, paths::V3_INSTANCE_PARTIAL)
        } else {
            if info.flavor == ServerFlavor::V1Compatible
                && self.get_instance(&instance.key).await?.is_none()
            {
                // rnacos would create the instance: refuse instead, like Alibaba's 404.
                return Err(NacosError::NotFound {
                    address: self.current_address().to_string(),
                    path: paths::V1_INSTANCE.to_string(),
                    what: format!("instance {}", instance.key),
                });
            }
            (Method::PATCH, paths::V1_INSTANCE)
        };
        let req = Req {
            method,
            path,
            query: Vec::new(),
            form: Some(form),
            idempotent: false,
            sign_service: Some(grouped(&instance.key.service)),
        };
        let r = self.request(&req).await?.ok()?;
        r.parse(wire::parse_write_ack)?;
        debug!(instance = %instance.key, enabled, "set enabled");
        Ok(())
    }

    fn instance_params(&self, key: &InstanceKey) -> Vec<(&'static str, String)> {
        vec![
            ("namespaceId", self.ns()),
            ("groupName", key.service.group.clone()),
            ("serviceName", key.service.name.clone()),
            ("clusterName", key.cluster.clone()),
            ("ip", key.ip.to_string()),
            ("port", key.port.to_string()),
        ]
    }
}

impl Registry for NacosClient {
    fn server_info(&self) -> impl Future<Output = Result<ServerInfo>> + Send {
        NacosClient::server_info(self)
    }
    fn list_services(&self, group: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        NacosClient::list_services(self, group)
    }
    fn list_instances(
        &self,
        service: &ServiceKey,
        clusters: &[String],
    ) -> impl Future<Output = Result<ServiceSnapshot>> + Send {
        NacosClient::list_instances(self, service, clusters)
    }
    fn deregister(&self, instance: &Instance) -> impl Future<Output = Result<()>> + Send {
        NacosClient::deregister(self, instance)
    }
    fn set_enabled(
        &self,
        instance: &Instance,
        enabled: bool,
        metadata: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<()>> + Send {
        NacosClient::set_enabled(self, instance, enabled, metadata)
    }
}

impl Reply {
    fn error_as_auth(&self) -> NacosError {
        match self.error() {
            e @ NacosError::Auth { .. } => e,
            _ => NacosError::Auth {
                address: self.address.clone(),
                path: self.path.to_string(),
                reason: format!(
                    "HTTP {}: {}",
                    self.status,
                    wire::truncate(String::from_utf8_lossy(&self.body).trim(), 200)
                ),
            },
        }
    }
}

fn is_denied(status: u16) -> bool {
    status == StatusCode::UNAUTHORIZED.as_u16() || status == StatusCode::FORBIDDEN.as_u16()
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request error"
    };
    // without_url: the message must not grow with query strings.
    let mut msg = format!("{kind}: {}", e.without_url_ref());
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    // rustls says "invalid peer certificate: UnknownIssuer" deep in the chain; say up front what
    // that means to the user and what fixes it (the truncation below must not cut it off).
    if msg.contains("invalid peer certificate") {
        msg = format!(
            "TLS: the server's certificate is not trusted (put its CA in a Secret named by \
             tls.caSecretRef): {msg}"
        );
    }
    wire::truncate(&msg, 300)
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        // reqwest's Display appends " for url (...)"; cut it.
        let s = self.to_string();
        match s.find(" for url (") {
            Some(i) => s[..i].to_string(),
            None => s,
        }
    }
}

fn grouped(service: &ServiceKey) -> String {
    format!("{}@@{}", service.group, service.name)
}

fn format_weight(w: f64) -> String {
    if w.is_finite() {
        w.to_string()
    } else {
        "1".into()
    }
}

fn wire_to_instance(service: &ServiceKey, w: WireInstance) -> Instance {
    Instance {
        key: InstanceKey {
            service: service.clone(),
            cluster: w.cluster,
            ip: w.ip,
            port: w.port,
        },
        ephemeral: w.ephemeral,
        enabled: w.enabled,
        healthy: w.healthy,
        weight: w.weight,
        metadata: w.metadata,
    }
}

/// Convert, filter by wanted clusters, de-duplicate (pages may overlap) and sort.
fn to_snapshot(
    service: &ServiceKey,
    raw: Vec<WireInstance>,
    wanted: &BTreeSet<&str>,
) -> ServiceSnapshot {
    let mut by_key: BTreeMap<InstanceKey, Instance> = BTreeMap::new();
    for w in raw {
        if !wanted.is_empty() && !wanted.contains(w.cluster.as_str()) {
            continue;
        }
        let inst = wire_to_instance(service, w);
        by_key.insert(inst.key.clone(), inst);
    }
    ServiceSnapshot {
        service: service.clone(),
        instances: by_key.into_values().collect(),
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
