//! HTTP to one Nacos cluster: addresses in failover order, login and token reuse, access-key
//! signing, bounded retries of reads, pagination, and a per-request observer for metrics.
//!
//! The server addresses are tried in order starting from the last one that answered; only
//! idempotent reads are retried (with exponential backoff); writes fail over to the next address
//! only when the connection could not be made at all (the request never left). Login tokens are
//! cached and refreshed shortly before `tokenTtl`; a 401/403 triggers one fresh login and one
//! retry, then a distinct [`NacosError::Auth`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use tokio::sync::Mutex;
use tracing::debug;

use super::auth::{self, CachedToken, Credentials};
use super::config::{normalize_base_url, ApiGeneration, NacosConfig};
use super::error::{classify_error, NacosError, Result};
use super::wire::{self, Page, WireError};
use crate::model::ServiceKey;

/// What a request is for: the `operation` label of the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Login,
    ServerInfo,
    ListNamespaces,
    ListServices,
    ListInstances,
    GetInstance,
    ListPublishers,
    ClientDetail,
    Deregister,
    SetEnabled,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Login => "login",
            Operation::ServerInfo => "server_info",
            Operation::ListNamespaces => "list_namespaces",
            Operation::ListServices => "list_services",
            Operation::ListInstances => "list_instances",
            Operation::GetInstance => "get_instance",
            Operation::ListPublishers => "list_publishers",
            Operation::ClientDetail => "client_detail",
            Operation::Deregister => "deregister",
            Operation::SetEnabled => "set_enabled",
        }
    }
}

/// One finished HTTP exchange (or transport failure), for metrics.
#[derive(Debug, Clone)]
pub struct RequestEvent<'a> {
    pub operation: Operation,
    pub method: &'a str,
    /// Path without query, e.g. `/nacos/v1/ns/catalog/instances`.
    pub path: &'a str,
    pub address: &'a str,
    /// `None` when no HTTP answer arrived.
    pub status: Option<u16>,
    pub elapsed: Duration,
    /// The request asked whether the server has an endpoint at all (detection, a login path of
    /// another generation): its absence (404, 405, 410, 501) is an answer, not an error.
    pub probe: bool,
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

/// Query or form parameters.
pub type Params = Vec<(&'static str, String)>;

/// One request, described independently of the address it goes to.
#[derive(Debug, Clone)]
pub struct Req {
    pub operation: Operation,
    pub method: Method,
    pub path: &'static str,
    pub query: Params,
    /// Sent as `application/x-www-form-urlencoded` body (writes, login).
    pub form: Option<Params>,
    pub idempotent: bool,
    /// `group@@service` for access-key signing.
    pub sign_service: Option<String>,
    /// See [`RequestEvent::probe`].
    pub probe: bool,
}

impl Req {
    /// A read: retried, failed over.
    pub fn get(operation: Operation, path: &'static str, query: Params) -> Self {
        Self {
            operation,
            method: Method::GET,
            path,
            query,
            form: None,
            idempotent: true,
            sign_service: None,
            probe: false,
        }
    }

    /// A read that asks whether the server has the endpoint (see [`RequestEvent::probe`]).
    pub fn probing(mut self) -> Self {
        self.probe = true;
        self
    }

    /// A write about `service`: sent once (failed over only when the connection was refused).
    pub fn write(
        operation: Operation,
        method: Method,
        path: &'static str,
        service: &ServiceKey,
        form: Params,
    ) -> Self {
        // DELETE carries its parameters in the query (servers ignore a DELETE body); the others
        // in a form body.
        let (query, form) = if method == Method::DELETE {
            (form, None)
        } else {
            (Vec::new(), Some(form))
        };
        Self {
            operation,
            method,
            path,
            query,
            form,
            idempotent: false,
            sign_service: Some(grouped(service)),
            probe: false,
        }
    }

    /// Signed with `service` when access keys are in use.
    pub fn signed(mut self, service: &ServiceKey) -> Self {
        self.sign_service = Some(grouped(service));
        self
    }
}

/// `group@@name`, as Nacos names a service across groups.
pub fn grouped(service: &ServiceKey) -> String {
    format!("{}@@{}", service.group, service.name)
}

/// An HTTP answer from one address.
#[derive(Debug)]
pub struct Reply {
    pub address: String,
    pub path: &'static str,
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn error(&self) -> NacosError {
        classify_error(&self.address, self.path, self.status, &self.body)
    }

    /// The answer as `Ok(self)` when 2xx, else the classified error.
    pub fn ok(self) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    pub fn parse<T>(&self, f: impl FnOnce(&[u8]) -> Result<T, WireError>) -> Result<T> {
        f(&self.body).map_err(|e| match e {
            WireError::Code { .. } => self.error(),
            WireError::Malformed(reason) => self.protocol(reason),
        })
    }

    pub fn protocol(&self, reason: impl Into<String>) -> NacosError {
        NacosError::Protocol {
            address: self.address.clone(),
            path: self.path.to_string(),
            reason: reason.into(),
        }
    }

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

/// Most pages a listing may have: a server whose count never comes true must not page forever.
const MAX_PAGES: u32 = 10_000;

mod paths {
    pub const V1_LOGIN: &str = "/nacos/v1/auth/login";
    pub const V3_LOGIN: &str = "/nacos/v3/auth/user/login";
}

/// The connection to one Nacos cluster, shared by the generations' modules.
pub struct Transport {
    pub config: NacosConfig,
    bases: Vec<String>,
    http: reqwest::Client,
    /// Index into `bases` of the last address that answered.
    preferred: AtomicUsize,
    token: Mutex<Option<CachedToken>>,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl Transport {
    pub fn new(config: NacosConfig, observer: Option<Arc<dyn RequestObserver>>) -> Result<Self> {
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
            config,
            bases,
            http,
            preferred: AtomicUsize::new(0),
            token: Mutex::new(None),
            observer,
        })
    }

    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// The base URL that answered last (where requests start).
    pub fn current_address(&self) -> &str {
        let i = self.preferred.load(Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// The namespace id every naming call carries.
    pub fn ns(&self) -> String {
        self.config.namespace_id().to_string()
    }

    pub fn page_size(&self) -> u32 {
        self.config.page_size.max(1)
    }

    /// The namespace, group and name of `service`, then `more`: how every per-service query starts.
    pub fn service_query(
        &self,
        service: &ServiceKey,
        more: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Params {
        let mut q = vec![
            ("namespaceId", self.ns()),
            ("groupName", service.group.clone()),
            ("serviceName", service.name.clone()),
        ];
        q.extend(more);
        q
    }

    /// Send once, trying addresses in order from the preferred one.
    async fn send_failover(&self, req: &Req, token: Option<&str>) -> Result<Reply> {
        let n = self.bases.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures: Vec<String> = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let base = &self.bases[idx];
            match self.send_to(base, req, token).await {
                Ok((status, body)) => {
                    self.preferred.store(idx, Ordering::Relaxed);
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
            addresses: self.bases.join(", "),
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
        } = &self.config.credentials
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
        let mut rb = self.http.request(req.method.clone(), &url);
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
        if let Some(obs) = &self.observer {
            obs.on_request(&RequestEvent {
                operation: req.operation,
                method: req.method.as_str(),
                path: req.path,
                address: base,
                status,
                elapsed,
                probe: req.probe,
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
        if !matches!(self.config.credentials, Credentials::UserPassword { .. }) {
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
    /// `answer` says which 5xx answers are answers rather than failures (rnacos's "missing").
    pub async fn request_with(&self, req: &Req, answer: fn(u16, &[u8]) -> bool) -> Result<Reply> {
        let attempts = if req.idempotent {
            self.config.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let result = self.send_authed(req).await;
            let retryable = match &result {
                Err(NacosError::Unreachable { .. }) => true,
                // 501 is Nacos's `no such api`: asking again changes nothing.
                Ok(r) => r.status >= 500 && r.status != 501 && !answer(r.status, &r.body),
                Err(_) => false,
            };
            if !retryable || attempt >= attempts {
                return result;
            }
            let delay = self.config.retry.backoff(attempt);
            debug!(path = req.path, attempt, ?delay, "retrying Nacos read");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// [`Self::request_with`] where every 5xx is a failure.
    pub async fn request(&self, req: &Req) -> Result<Reply> {
        self.request_with(req, |_, _| false).await
    }

    /// The current token, logging in when there is none or it is about to expire.
    async fn token(&self, force: bool) -> Result<Option<String>> {
        let Credentials::UserPassword { username, password } = &self.config.credentials else {
            return Ok(None);
        };
        // Holding the lock across the login makes concurrent callers share one login.
        let mut guard = self.token.lock().await;
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
        let order: &[&'static str] = match self.config.api {
            ApiGeneration::V1 | ApiGeneration::V2 => &[paths::V1_LOGIN],
            _ => &[paths::V3_LOGIN, paths::V1_LOGIN],
        };
        let mut last = None;
        for (i, path) in order.iter().enumerate() {
            let req = Req {
                operation: Operation::Login,
                method: Method::POST,
                path,
                query: Vec::new(),
                form: Some(form.clone()),
                idempotent: true,
                sign_service: None,
                // Every path but the last may be one this server does not have.
                probe: i + 1 < order.len(),
            };
            let reply = self.send_with_retry_unauthed(&req).await?;
            if reply.status == 404 || reply.status == 405 || reply.status == 501 {
                last = Some(reply);
                continue;
            }
            // Nacos 3.0.3 answers a wrong password with HTTP 500 (its AccessException goes
            // unhandled; an unknown user gets 403): both are a refused login, not an outage.
            if is_denied(reply.status) || (*path == paths::V3_LOGIN && reply.status == 500) {
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
        let attempts = self.config.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.send_failover(req, None).await {
                Err(NacosError::Unreachable { .. }) if attempt < attempts => {
                    tokio::time::sleep(self.config.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Fetch every page: stops when the collected items reach the server's count. A listing whose
    /// count changes while paging is restarted (twice at most), then fails: a listing with holes
    /// must never pass for complete.
    pub async fn paginate<T, F, Fut>(&self, mut fetch: F) -> Result<Vec<T>>
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

    /// Every page of a listing whose pages all come from `req` plus `pageNo`/`pageSize`.
    pub async fn paged<T>(
        &self,
        req: &Req,
        parse: fn(&[u8]) -> Result<Page<T>, WireError>,
    ) -> Result<Vec<T>> {
        let page_size = self.page_size().to_string();
        self.paginate(|page_no| {
            let mut req = req.clone();
            req.query.push(("pageNo", page_no.to_string()));
            req.query.push(("pageSize", page_size.clone()));
            async move {
                let r = self.request(&req).await?.ok()?;
                let page = r.parse(parse)?;
                Ok((r.address, page))
            }
        })
        .await
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
    let mut msg = format!("{kind}: {}", without_url(e));
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

/// reqwest's Display appends " for url (...)"; cut it.
fn without_url(e: &reqwest::Error) -> String {
    let s = e.to_string();
    match s.find(" for url (") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
