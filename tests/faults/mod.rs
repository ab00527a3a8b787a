//! Support for the fault tests (`e2e_faults*.rs`, `e2e_empty_relist.rs`): an in-process
//! fault-injecting HTTP proxy between the operator and rnacos, one between the operator and the
//! Kubernetes API ([`kube_proxy`]), and the status/Event/metrics helpers those tests share.
//!
//! The operator talks to Nacos only through the proxy, so the proxy's log is a complete, continuous
//! record of every write it made: "nothing live was touched" is checked against that log, not only
//! against the registry at the end.
#![allow(dead_code)] // each test binary uses a different subset

pub mod kube_proxy;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use nacos_reconciler::crd::NacosBindingStatus;
use serde_json::json;
use tokio::sync::watch;

use crate::common::*;

/// What the proxy does with every request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    PassThrough,
    /// Wait this long, then forward (past the client's timeout: the client gives up first).
    Delay(Duration),
    /// Answer 500 without asking Nacos.
    Error500,
    /// Answer 200 with a body that is not valid JSON.
    Malformed,
}

/// One request the proxy answered.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// `ip`, `port`, `enabled`, ... from the query and the form body.
    pub params: BTreeMap<String, String>,
    /// What the client got (502 when Nacos could not be reached).
    pub status: u16,
    /// Whether Nacos itself answered (false: the proxy made the answer up).
    pub from_nacos: bool,
}

impl Entry {
    pub fn ip(&self) -> Option<&str> {
        self.params.get("ip").map(String::as_str)
    }

    /// A write that takes an instance offline: a DELETE, or `enabled=false`.
    pub fn is_removal(&self) -> bool {
        self.path.ends_with("/ns/instance")
            && (self.method == "DELETE"
                || (matches!(self.method.as_str(), "PATCH" | "PUT")
                    && self.params.get("enabled").map(String::as_str) == Some("false")))
    }

    pub fn is_delete(&self) -> bool {
        self.method == "DELETE" && self.path.ends_with("/ns/instance")
    }
}

struct Inner {
    upstream: String,
    http: reqwest::Client,
    mode: Mutex<Mode>,
    delete_delay: Mutex<Duration>,
    /// After the next DELETE was answered, hold every request until released.
    hold_armed: Mutex<bool>,
    held: watch::Sender<bool>,
    rewrite_token_ttl: Mutex<bool>,
    log: Mutex<Vec<Entry>>,
    /// Requests on their way to Nacos or back (not those waiting for a hold's release).
    in_flight: watch::Sender<usize>,
}

/// The proxy; it stops with the test's runtime.
#[derive(Clone)]
pub struct FaultProxy {
    pub addr: String,
    inner: Arc<Inner>,
    /// Set: the proxy stops listening and closes its connections (see [`FaultProxy::shut`]).
    shutdown: Arc<watch::Sender<bool>>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            mode: Mutex::new(Mode::PassThrough),
            delete_delay: Mutex::new(Duration::ZERO),
            hold_armed: Mutex::new(false),
            held: watch::Sender::new(false),
            rewrite_token_ttl: Mutex::new(false),
            log: Mutex::new(Vec::new()),
            in_flight: watch::Sender::new(0),
        });
        let shutdown = Arc::new(watch::Sender::new(false));
        let mut shut = shutdown.subscribe();
        let addr = serve_local_until(
            axum::Router::new()
                .fallback(handle)
                .with_state(inner.clone()),
            // Also once the proxy is dropped (the sender with it).
            async move {
                let _ = shut.wait_for(|s| *s).await;
            },
        )
        .await;
        Self {
            addr,
            inner,
            shutdown,
        }
    }

    /// Stops listening and closes every connection once its request is answered, as the server
    /// behind it does when killed: the client's next request finds the address refused (where it
    /// fails over), not a proxy answering 502.
    pub fn shut(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// Delays every DELETE by `d` before it is forwarded (a slow pass with removals in flight).
    pub fn set_delete_delay(&self, d: Duration) {
        *self.inner.delete_delay.lock().unwrap() = d;
    }

    /// Answers `tokenTtl: 3600` to logins, so the client trusts a token the server expires sooner.
    pub fn rewrite_token_ttl(&self, on: bool) {
        *self.inner.rewrite_token_ttl.lock().unwrap() = on;
    }

    /// Once the next DELETE has been answered, every further request waits until [`Self::release`].
    pub fn arm_hold_after_delete(&self) {
        *self.inner.hold_armed.lock().unwrap() = true;
    }

    /// Waits until the armed hold took effect (a DELETE went through).
    pub async fn wait_held(&self, timeout: Duration) {
        let mut rx = self.inner.held.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|h| *h))
            .await
            .expect("a DELETE to go through the proxy")
            .unwrap();
    }

    pub fn release(&self) {
        self.inner.held.send_replace(false);
    }

    /// Waits until no request is on its way to Nacos or back: every request that got past a hold
    /// has been answered (and logged), even when its client is gone.
    pub async fn wait_idle(&self, timeout: Duration) {
        let mut rx = self.inner.in_flight.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .expect("the proxy's requests in flight to be answered")
            .unwrap();
    }

    pub fn log(&self) -> Vec<Entry> {
        self.inner.log.lock().unwrap().clone()
    }

    /// Every removal write the operator sent for one of `ips`.
    pub fn removals_of(&self, ips: &[String]) -> Vec<Entry> {
        self.log()
            .into_iter()
            .filter(|e| e.is_removal() && e.ip().is_some_and(|ip| ips.iter().any(|i| i == ip)))
            .collect()
    }

    /// Panics if any write took (or tried to take) one of `live` offline.
    pub fn assert_untouched(&self, live: &[String]) {
        let bad = self.removals_of(live);
        assert!(
            bad.is_empty(),
            "WRONGFUL REMOVAL: the operator sent removals for live instances: {bad:#?}"
        );
    }

    /// (DELETEs, `enabled=false` writes) the operator sent for `ip`.
    pub fn removal_writes(&self, ip: &str) -> (usize, usize) {
        let sent = self.removals_of(&[ip.to_string()]);
        let deletes = sent.iter().filter(|e| e.is_delete()).count();
        (deletes, sent.len() - deletes)
    }

    /// DELETEs per IP that Nacos answered with success.
    pub fn deletes_done(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in self.log() {
            if e.is_delete() && e.from_nacos && e.status == 200 {
                *m.entry(e.ip().unwrap_or_default().to_string()).or_insert(0) += 1;
            }
        }
        m
    }

    pub fn count(&self, f: impl Fn(&Entry) -> bool) -> usize {
        self.log().iter().filter(|e| f(e)).count()
    }
}

fn parse_params(query: Option<&str>, body: &[u8], into: &mut BTreeMap<String, String>) {
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        into.insert(k.into_owned(), v.into_owned());
    }
    for (k, v) in url::form_urlencoded::parse(body) {
        into.insert(k.into_owned(), v.into_owned());
    }
}

fn answer(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

/// Serves `app` on a free loopback port in the background; returns its `http://` address.
pub async fn serve_local(app: axum::Router) -> String {
    serve_local_until(app, std::future::pending()).await
}

/// As `serve_local`, until `stop` completes (graceful: answered requests, then closed).
pub async fn serve_local_until(
    app: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await;
    });
    addr
}

/// A login request: `/nacos/v1/auth/login`, or 3.x `/nacos/v3/auth/user/login` (rnacos serves both).
pub fn is_login(path: &str) -> bool {
    path.contains("/auth/") && path.ends_with("/login")
}

fn rewrite_ttl(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let Some(at) = text.find("\"tokenTtl\":") else {
        return body.to_vec();
    };
    let start = at + "\"tokenTtl\":".len();
    let end = text[start..]
        .find(|c: char| !(c.is_ascii_digit() || c == ' '))
        .map_or(text.len(), |i| start + i);
    format!("{}3600{}", &text[..start], &text[end..]).into_bytes()
}

async fn handle(State(p): State<Arc<Inner>>, req: Request) -> Response {
    // A hold set by an earlier DELETE: wait for the release. The test kills the operator during a
    // hold, so what was held comes from a process that is gone: it never reaches Nacos.
    let mut held = p.held.subscribe();
    let was_held = *held.borrow();
    let _released = held.wait_for(|h| !*h).await.is_ok();
    drop(held);
    if was_held {
        return answer(503, "text/plain", b"held: the client is gone".to_vec());
    }
    // A request that got here is on its way to Nacos: it goes on, and is logged, even if the
    // client is killed before the answer (hyper would drop this handler with the connection).
    p.in_flight.send_modify(|n| *n += 1);
    tokio::spawn(async move {
        let reply = exchange(p.clone(), req).await;
        p.in_flight.send_modify(|n| *n -= 1);
        reply
    })
    .await
    .unwrap_or_else(|e| answer(500, "text/plain", e.to_string().into_bytes()))
}

async fn exchange(p: Arc<Inner>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers: HeaderMap = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let mut params = BTreeMap::new();
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    parse_params(
        query.as_deref(),
        if form { &body } else { &[] },
        &mut params,
    );
    let record = |status: u16, from_nacos: bool| {
        p.log.lock().unwrap().push(Entry {
            at: Instant::now(),
            method: method.to_string(),
            path: path.clone(),
            params: params.clone(),
            status,
            from_nacos,
        });
    };

    let mode = *p.mode.lock().unwrap();
    match mode {
        Mode::Error500 => {
            record(500, false);
            return answer(
                500,
                "text/plain",
                b"fault injected: internal error".to_vec(),
            );
        }
        Mode::Malformed => {
            record(200, false);
            return answer(200, "application/json", b"{\"hosts\": [{\"ip\": ".to_vec());
        }
        Mode::Delay(d) => tokio::time::sleep(d).await,
        Mode::PassThrough => {}
    }
    if method == axum::http::Method::DELETE {
        let d = *p.delete_delay.lock().unwrap();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    let url = match &query {
        Some(q) => format!("{}{path}?{q}", p.upstream),
        None => format!("{}{path}", p.upstream),
    };
    let mut rb = p.http.request(method.clone(), &url).body(body.to_vec());
    for name in ["content-type", "authorization", "accesstoken"] {
        if let Some(v) = headers.get(name) {
            rb = rb.header(name, v.clone());
        }
    }
    let (status, ctype, mut bytes) = match rb.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/plain")
                .to_string();
            match r.bytes().await {
                Ok(b) => (status, ctype, b.to_vec()),
                Err(_) => {
                    record(502, false);
                    return answer(502, "text/plain", b"upstream broke off".to_vec());
                }
            }
        }
        Err(_) => {
            record(502, false);
            return answer(502, "text/plain", b"upstream unreachable".to_vec());
        }
    };
    if is_login(&path) && *p.rewrite_token_ttl.lock().unwrap() {
        bytes = rewrite_ttl(&bytes);
    }
    record(status, true);
    if method == axum::http::Method::DELETE {
        let mut armed = p.hold_armed.lock().unwrap();
        if *armed {
            *armed = false;
            p.held.send_replace(true);
        }
    }
    answer(status, &ctype, bytes)
}

// ------------------------------------------------------------------------------------------------
// Status, Events and metrics.

pub fn has_condition(s: &NacosBindingStatus, type_: &str, status: &str, reason: &str) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
}

/// Notes of the events.k8s.io/v1 Events about binding `name` with `reason`.
pub async fn event_notes(client: &kube::Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .filter_map(|e| e.note)
        .collect()
}

/// Waits for an Event `reason` about the binding whose note contains `text`; returns the notes.
pub async fn wait_event(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    text: &str,
    timeout: Duration,
) -> Vec<String> {
    wait_for(
        &format!("an Event {reason} naming {text:?}"),
        timeout,
        || async move {
            let notes = event_notes(client, ns, name, reason).await;
            notes.iter().any(|n| n.contains(text)).then_some(notes)
        },
    )
    .await
}

/// A counter or gauge from the operator's metrics (0 when absent).
pub async fn metric(operator: &Operator, series: &str) -> f64 {
    let m = operator.metrics().await;
    m.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The number of reconcile passes the operator finished for `binding` (ns/name).
pub async fn passes(operator: &Operator, binding: &str) -> u64 {
    metric(
        operator,
        &format!("nacos_reconciler_reconcile_duration_seconds_count{{binding=\"{binding}\"}}"),
    )
    .await as u64
}

/// Waits until the operator finished `n` more passes for `binding` than now.
pub async fn wait_passes(operator: &Operator, binding: &str, n: u64, timeout: Duration) {
    let start = passes(operator, binding).await;
    wait_for(
        &format!("{n} more reconcile passes of {binding}"),
        timeout,
        || async move { (passes(operator, binding).await >= start + n).then_some(()) },
    )
    .await;
}

pub async fn scale(client: &kube::Client, ns: &str, name: &str, replicas: i32) {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale the deployment");
}

/// Deletes namespace `ns` (its pods, bindings, Events) without waiting: a test that passed gives
/// its pod IPs back to the nodes' pools (each node has a /24 for every test on the testbed).
pub async fn delete_namespace(client: &kube::Client, ns: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &Default::default())
        .await;
}

pub fn ips(pods: &[(String, String)]) -> Vec<String> {
    pods.iter().map(|(_, ip)| ip.clone()).collect()
}

/// Polls `/readyz` of the operator every 250 ms in the background; the returned flag says whether
/// it ever answered something other than 200 since `reset`.
#[derive(Clone)]
pub struct ReadyzWatch {
    not_ready_seen: Arc<Mutex<bool>>,
}

impl ReadyzWatch {
    pub fn start(metrics_addr: &str) -> Self {
        let flag = Arc::new(Mutex::new(false));
        let (f, url) = (flag.clone(), format!("http://{metrics_addr}/readyz"));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                if let Ok(r) = http.get(&url).send().await {
                    if r.status().as_u16() == 503 {
                        *f.lock().unwrap() = true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self {
            not_ready_seen: flag,
        }
    }

    pub fn not_ready_seen(&self) -> bool {
        *self.not_ready_seen.lock().unwrap()
    }

    pub fn reset(&self) {
        *self.not_ready_seen.lock().unwrap() = false;
    }
}

// ------------------------------------------------------------------------------------------------
// What a server holds, on the testbed's servers and on servers of a test's own.

pub use crate::common::servers::NacosAt;

/// What the fault tests wait for on a server (the testbed's, or one of their own).
impl NacosAt {
    /// Waits until none of `gone` is held any more (deregistered, not merely disabled).
    pub async fn wait_deregistered(&self, service: &str, gone: &[String], timeout: Duration) {
        for ip in gone {
            wait_for(
                &format!("{service} {ip}:8080 to be deregistered from {}", self.kind),
                timeout,
                || async { self.held(service, ip, 8080).await.is_none().then_some(()) },
            )
            .await;
        }
    }

    /// Waits until each of `gone` is offline for consumers: deregistered, or (where its DELETE
    /// cannot take: an ephemeral instance whose gRPC connection lives on, on Alibaba Nacos) held
    /// disabled by binding `uid`.
    pub async fn wait_offline(&self, service: &str, gone: &[String], uid: &str, timeout: Duration) {
        for ip in gone {
            wait_for(
                &format!("{service} {ip}:8080 offline on {}", self.kind),
                timeout,
                || async {
                    match self.held(service, ip, 8080).await {
                        None => Some(()),
                        Some(h) => (!h.enabled && h.disabled_by() == Some(uid)).then_some(()),
                    }
                },
            )
            .await;
        }
    }

    /// Asserts every one of `live` is registered, enabled and without the operator's marker.
    pub async fn assert_live_registered(&self, service: &str, live: &[String]) {
        for ip in live {
            let h = self.held(service, ip, 8080).await.unwrap_or_else(|| {
                panic!(
                    "WRONGFUL REMOVAL: live {service} {ip}:8080 is gone from {}",
                    self.kind
                )
            });
            assert!(
                h.enabled && h.disabled_by().is_none(),
                "WRONGFUL REMOVAL: live {service} {ip}:8080 is disabled on {}: {h:?}",
                self.kind
            );
        }
    }
}
