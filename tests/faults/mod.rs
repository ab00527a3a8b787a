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
        let addr = serve_local(
            axum::Router::new()
                .fallback(handle)
                .with_state(inner.clone()),
        )
        .await;
        Self { addr, inner }
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
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

/// Waits until none of `ips` is listed in `service` any more (the detail API shows disabled ones,
/// so a disabled instance still counts as listed: use `consumer_view` for "offline").
pub async fn wait_deregistered(nacos: &str, service: &str, gone: &[String], timeout: Duration) {
    for ip in gone {
        wait_for(
            &format!("{service} {ip}:8080 to be deregistered"),
            timeout,
            || async move {
                nacos_instance(nacos, service, ip, 8080)
                    .await
                    .is_none()
                    .then_some(())
            },
        )
        .await;
    }
}

/// Asserts every live instance is still registered and enabled in Nacos.
pub async fn assert_live_registered(nacos: &str, service: &str, live: &[String]) {
    for ip in live {
        let i = nacos_instance(nacos, service, ip, 8080)
            .await
            .unwrap_or_else(|| panic!("WRONGFUL REMOVAL: live {service} {ip}:8080 is gone"));
        assert_eq!(
            i["enabled"],
            json!(true),
            "WRONGFUL REMOVAL: live {service} {ip}:8080 is disabled: {i}"
        );
    }
}

/// Registers `ips` as persistent instances of `service` (port 8080), directly with Nacos.
pub async fn register_all(nacos: &str, service: &str, ips: &[String]) {
    for ip in ips {
        register_http(nacos, service, ip, 8080).await;
    }
}

/// A standard binding spec for these tests.
pub fn binding_spec(
    nacos: &str,
    service: &str,
    app: &str,
    policy: serde_json::Value,
) -> serde_json::Value {
    json!({
        "nacos": {"serverAddr": [nacos]},
        "services": [{"name": service}],
        "pods": {"selector": {"matchLabels": {"app": app}}},
        "scope": {"cidrs": ["10.244.0.0/16", "10.245.0.0/16"]},
        "policy": policy,
        "resyncSeconds": 5
    })
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
// Alibaba Nacos of a test's own.

/// The HTTP port of a server of the test's own: Alibaba Nacos also binds port - 1000 (Raft), + 1000
/// (SDK gRPC) and + 1001 (cluster gRPC); rnacos + 1000 (gRPC).
pub fn nacos_port() -> u16 {
    loop {
        let port = free_port();
        if !(2_000..64_000).contains(&port) {
            continue;
        }
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port - 1000) && free(port + 1000) && free(port + 1001) {
            return port;
        }
    }
}

/// The Alibaba Nacos 2.5.1 the testbed built (`tests/testbed.sh build nacos`).
fn alibaba_2_5_1_dist() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = std::path::PathBuf::from(home).join(".cache/nacos-reconciler");
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()))
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("nacos-server-2.5.1-")
        })
        .map(|e| e.path().join("nacos"))
        .filter(|d| d.join("target/nacos-server.jar").is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no built Alibaba Nacos 2.5.1 under {}: run tests/testbed.sh build nacos",
            cache.display()
        )
    })
}

/// An Alibaba Nacos 2.5.1 server of the test's own (standalone, auth on, the testbed's user), so a
/// test can kill and restart it, or run it with settings of its own, without disturbing the others.
/// Started as `tests/testbed.sh` starts the shared one (`launch_nacos`, `ready_nacos`), with a
/// smaller heap. Its `nacos.home` (embedded storage, the Raft log of persistent instances) and
/// `user.home` survive a restart, and so do persistent instances.
pub struct PrivateAlibabaNacos {
    pub addr: String,
    pub port: u16,
    pub dir: std::path::PathBuf,
    proc: Option<TestProcess>,
    /// How long each start took, until a login worked.
    pub starts: Vec<Duration>,
}

impl PrivateAlibabaNacos {
    /// Starts a server with `properties` appended to its `application.properties` (after the
    /// testbed's, so they win); waits until its admin user exists and a login works.
    pub async fn start(name: &str, properties: &[(&str, &str)]) -> Self {
        let dist = alibaba_2_5_1_dist();
        let port = nacos_port();
        let base = std::env::var("TESTBED_STATE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let dir = base.join(format!("nacos-2.5.1-{name}-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["home", "logs", "conf"] {
            std::fs::create_dir_all(dir.join(sub)).expect("the private Nacos's directories");
        }
        for entry in std::fs::read_dir(dist.join("conf")).expect("the Nacos conf directory") {
            let entry = entry.expect("a conf entry");
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.join("conf").join(entry.file_name()))
                    .expect("copy the Nacos conf");
            }
        }
        let conf = dir.join("conf/application.properties");
        let mut text = std::fs::read_to_string(&conf).expect("application.properties");
        text.push_str("\n# tests/faults: loopback, auth on (as tests/testbed.sh's launch_nacos)\n");
        for (k, v) in [
            ("nacos.inetutils.ip-address", "127.0.0.1"),
            ("nacos.core.auth.enabled", "true"),
            (
                "nacos.core.auth.plugin.nacos.token.secret.key",
                // base64 of 'nacos-reconciler-testbed-token-secret-key!', the testbed's key
                "bmFjb3MtcmVjb25jaWxlci10ZXN0YmVkLXRva2VuLXNlY3JldC1rZXkh",
            ),
            (
                "nacos.core.auth.server.identity.key",
                "nacos-reconciler-testbed",
            ),
            (
                "nacos.core.auth.server.identity.value",
                "nacos-reconciler-testbed",
            ),
            ("server.port", &port.to_string()),
        ]
        .into_iter()
        .chain(properties.iter().copied())
        {
            text.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(&conf, text).expect("write application.properties");
        let mut n = Self {
            addr: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            proc: None,
            starts: Vec::new(),
        };
        n.resume().await;
        n
    }

    /// Starts the server (again) on the same port and state; waits until a login works. From 2.4
    /// there is no default user: the admin is created once, while none exists.
    pub async fn resume(&mut self) {
        assert!(self.proc.is_none(), "the private Nacos already runs");
        let started = Instant::now();
        let jar = alibaba_2_5_1_dist().join("target/nacos-server.jar");
        let home = self.dir.join("home");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/stdout.log"))
            .expect("the private Nacos's stdout log");
        let mut cmd = std::process::Command::new(testbed_env("NACOS_JAVA"));
        // Its working directory too: Tomcat's access logs and Derby's log go there.
        cmd.current_dir(&self.dir)
            .env("HOME", &home)
            .args(["-Xms128m", "-Xmx384m", "-XX:MaxMetaspaceSize=256m"])
            .arg("-XX:-OmitStackTraceInFastThrow")
            .arg(format!("-Duser.home={}", home.display()))
            .arg("-Dnacos.standalone=true")
            .arg(format!("-Dnacos.home={}", self.dir.display()))
            .arg("-jar")
            .arg(&jar)
            .arg(format!(
                "--spring.config.additional-location=file:{}/conf/",
                self.dir.display()
            ))
            .arg(format!(
                "--logging.config={}/conf/nacos-logback.xml",
                self.dir.display()
            ))
            .stdout(out.try_clone().expect("log file"))
            .stderr(out);
        self.proc = Some(TestProcess::spawn(cmd, "nacos-2.5.1"));
        let (user, pass) = (testbed_env("NACOS_USERNAME"), testbed_env("NACOS_PASSWORD"));
        let http = reqwest::Client::new();
        let first = self.starts.is_empty();
        let deadline = Duration::from_secs(240);
        loop {
            if let Some(p) = self.proc.as_mut() {
                if let Ok(Some(status)) = p.child_mut().try_wait() {
                    panic!(
                        "the private Alibaba Nacos exited ({status}); read {}/logs/",
                        self.dir.display()
                    );
                }
            }
            if first {
                let _ = http
                    .post(format!("{}/nacos/v1/auth/users/admin", self.addr))
                    .form(&[("password", pass.as_str())])
                    .send()
                    .await;
            }
            let login = http
                .post(format!("{}/nacos/v1/auth/login", self.addr))
                .form(&[("username", user.as_str()), ("password", pass.as_str())])
                .send()
                .await;
            if let Ok(r) = login {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < deadline,
                "the private Alibaba Nacos on {} did not answer a login within {deadline:?}; \
                 read {}/logs/",
                self.addr,
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let took = started.elapsed();
        eprintln!(
            "private Alibaba Nacos 2.5.1 on {} started in {took:?} ({})",
            self.addr,
            if first { "first start" } else { "restart" }
        );
        self.starts.push(took);
    }

    /// SIGKILL, as a crash or an OOM kill: the process is gone at once, mid-request.
    pub async fn kill(&mut self) {
        if let Some(proc) = self.proc.take() {
            drop(proc); // TestProcess kills with SIGKILL and reaps
        }
    }

    /// SIGTERM, as a restart does; waits until the process exited.
    pub async fn stop(&mut self) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &proc.pid().to_string()])
            .status();
        wait_for(
            "the private Alibaba Nacos to exit",
            Duration::from_secs(30),
            || {
                let exited = proc.child_mut().try_wait().ok().flatten().is_some();
                async move { exited.then_some(()) }
            },
        )
        .await;
    }
}

// ------------------------------------------------------------------------------------------------
// What a server holds, on the testbed's servers and on servers of a test's own.

/// A Nacos server as the fault tests look at it: one of the testbed's, or one of the test's own at
/// `addr` that is spoken to as the testbed server `kind` is (`Server`'s helpers know only the
/// testbed's addresses).
#[derive(Clone, Debug)]
pub struct NacosAt {
    pub kind: Server,
    /// `None`: the testbed's own `kind`.
    private: Option<String>,
    token: Arc<Mutex<Option<(String, Instant)>>>,
}

impl NacosAt {
    pub fn shared(kind: Server) -> Self {
        Self {
            kind,
            private: None,
            token: Default::default(),
        }
    }

    /// A server of the test's own at `addr` (with the testbed's user where `kind` has auth).
    pub fn private(kind: Server, addr: &str) -> Self {
        Self {
            kind,
            private: Some(addr.trim_end_matches('/').to_string()),
            token: Default::default(),
        }
    }

    pub fn addr(&self) -> String {
        self.private.clone().unwrap_or_else(|| self.kind.addr())
    }

    /// A token for a private server, reused until a second before the server expires it (its
    /// tokens may live seconds; rnacos limits logins per minute).
    async fn private_token(&self) -> Option<String> {
        let (user, pass) = self.kind.credentials()?;
        if let Some((t, until)) = self.token.lock().unwrap().clone() {
            if Instant::now() < until {
                return Some(t);
            }
        }
        let v: serde_json::Value = wait_for(
            &format!("a login to {}", self.addr()),
            Duration::from_secs(30),
            || async {
                let r = reqwest::Client::new()
                    .post(format!("{}/nacos/v1/auth/login", self.addr()))
                    .form(&[("username", user.as_str()), ("password", pass.as_str())])
                    .send()
                    .await
                    .ok()?;
                let v: serde_json::Value = r.json().await.ok()?;
                v["accessToken"].is_string().then_some(v)
            },
        )
        .await;
        let token = v["accessToken"].as_str().unwrap_or_default().to_string();
        let ttl = v["tokenTtl"].as_u64().unwrap_or(5);
        let until =
            Instant::now() + Duration::from_secs(ttl).saturating_sub(Duration::from_secs(1));
        *self.token.lock().unwrap() = Some((token.clone(), until));
        Some(token)
    }

    /// A call to the private server; panics when it cannot be asked (a server that does not
    /// answer must not read as "instance gone").
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, String)],
    ) -> (u16, String) {
        let url = format!("{}{path}", self.addr());
        let mut rb = reqwest::Client::new().request(method.clone(), &url);
        rb = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            rb.query(params)
        } else {
            rb.form(params)
        };
        if let Some(t) = self.private_token().await {
            rb = rb.header("accessToken", t);
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Registers a persistent instance `ip:8080` of `service` over HTTP; waits until it is listed.
    pub async fn register_persistent(&self, service: &str, ip: &str) {
        if self.private.is_none() {
            return self
                .kind
                .register_persistent(&Registration::new(service, ip, 8080))
                .await;
        }
        let params = [
            ("serviceName", service.to_string()),
            ("ip", ip.to_string()),
            ("port", "8080".to_string()),
            ("ephemeral", "false".to_string()),
        ];
        let (status, body) = self
            .call(reqwest::Method::POST, "/nacos/v1/ns/instance", &params)
            .await;
        assert!(
            status == 200 && body.contains("ok"),
            "register {service} {ip}:8080 on {}: {status} {body}",
            self.addr()
        );
        // Alibaba Nacos lists a change only once it refreshed its view (about 500 ms later).
        wait_for(
            &format!("{service} {ip}:8080 to be listed on {}", self.addr()),
            Duration::from_secs(10),
            || async { self.held(service, ip).await },
        )
        .await;
    }

    /// What the server holds about `ip:8080` of `service` (disabled ones too); `None`: not there.
    pub async fn held(&self, service: &str, ip: &str) -> Option<crate::common::servers::Held> {
        if self.private.is_none() {
            return self.kind.held(service, ip, 8080).await;
        }
        let instance = if self.kind.is_alibaba() {
            // 2.5.1's detail API has no `enabled`: its v2 catalog lists every instance with it.
            let params = [
                ("namespaceId", "public".to_string()),
                ("serviceName", format!("DEFAULT_GROUP@@{service}")),
                ("pageNo", "1".into()),
                ("pageSize", "1000".into()),
            ];
            let (status, body) = self
                .call(
                    reqwest::Method::GET,
                    "/nacos/v2/ns/catalog/instances",
                    &params,
                )
                .await;
            assert_eq!(status, 200, "v2 catalog on {}: {body}", self.addr());
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["data"]["instances"].as_array().and_then(|a| {
                a.iter()
                    .find(|i| i["ip"] == ip && i["port"] == 8080 && i["clusterName"] == "DEFAULT")
                    .cloned()
            })?
        } else {
            let params = [
                ("serviceName", service.to_string()),
                ("ip", ip.to_string()),
                ("port", "8080".to_string()),
                ("clusterName", "DEFAULT".to_string()),
            ];
            let (status, body) = self
                .call(reqwest::Method::GET, "/nacos/v1/ns/instance", &params)
                .await;
            // rnacos answers a missing instance 500 `error`.
            if status == 500 && body.trim() == "error" {
                return None;
            }
            assert_eq!(status, 200, "instance detail on {}: {body}", self.addr());
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()
        };
        instance.get("ip")?;
        Some(crate::common::servers::Held {
            enabled: instance["enabled"].as_bool().unwrap_or(true),
            ephemeral: instance["ephemeral"].as_bool().unwrap_or(true),
            metadata: instance["metadata"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// `ip:port` of the instances of `service` consumers get (enabled ones), sorted.
    pub async fn consumer_view(&self, service: &str) -> Vec<String> {
        if self.private.is_none() {
            return self.kind.consumer_view(service).await;
        }
        let params = [
            ("serviceName", service.to_string()),
            ("healthyOnly", "false".to_string()),
        ];
        let (status, body) = self
            .call(reqwest::Method::GET, "/nacos/v1/ns/instance/list", &params)
            .await;
        assert_eq!(status, 200, "instance list on {}: {body}", self.addr());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut out: Vec<String> = v["hosts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|h| h["enabled"].as_bool().unwrap_or(true))
                    .map(|h| format!("{}:{}", h["ip"].as_str().unwrap_or(""), h["port"]))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Waits until none of `gone` is held any more (deregistered, not merely disabled).
    pub async fn wait_deregistered(&self, service: &str, gone: &[String], timeout: Duration) {
        for ip in gone {
            wait_for(
                &format!("{service} {ip}:8080 to be deregistered from {}", self.kind),
                timeout,
                || async { self.held(service, ip).await.is_none().then_some(()) },
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
                    match self.held(service, ip).await {
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
            let h = self.held(service, ip).await.unwrap_or_else(|| {
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
