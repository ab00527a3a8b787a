//! What the client is told: server addresses, namespace, API generation, credentials, TLS, limits.

use std::fmt;
use std::time::Duration;

use super::auth::Credentials;
use super::error::NacosError;

/// Which HTTP API generation to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiGeneration {
    /// Probe the server: 3.x → V3, 2.x → V2, 1.x and v1-compatible servers (rnacos) → V1.
    #[default]
    Auto,
    /// v1 endpoints (Nacos 1.x, rnacos; Nacos 2.x answers them too).
    V1,
    /// Nacos 2.x: the v2 catalog listing, v1 writes.
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
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
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

/// Normalise one configured address into a base URL without trailing `/` or `/nacos`: every path
/// the client sends starts with `/nacos`, so `http://h:8848/nacos` and `http://h:8848` are one
/// server. Another path stays, as the prefix of a reverse proxy (`https://gw/registry`).
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
    if url.query().is_some() || url.fragment().is_some() {
        return Err(NacosError::Config(format!(
            "server address {trimmed:?}: no query or fragment, only http(s)://host[:port][/nacos]"
        )));
    }
    let mut base = url.as_str().trim_end_matches('/').to_string();
    if let Some(stripped) = base.strip_suffix("/nacos") {
        base = stripped.trim_end_matches('/').to_string();
    }
    Ok(base)
}

/// Whether the configured namespace exists on the server (see [`super::NacosClient::check_namespace`]).
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
