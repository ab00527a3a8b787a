//! A fault-injecting proxy for the Kubernetes API, for tests only: `kubectl proxy` (plain HTTP on
//! loopback, it handles authentication) with an in-process axum proxy in front of it. The operator
//! gets a kubeconfig whose server is the axum proxy, so every API request it makes passes here.
//!
//! The fault it models is the API server's watch cache answering an informer's relist with an empty
//! list. With [`KubeFaultProxy::set_empty_lists`] on, the pod collection lists an informer makes are
//! forwarded and answered with `items: []` (the real `metadata.resourceVersion` kept). Those are the
//! lists without a field selector; the operator's direct check before a removal (`status.podIP=...`)
//! and single-pod GETs pass through untouched. [`KubeFaultProxy::force_relist`] ends the open pod
//! watches and answers the next pod watch with a 410 Gone ERROR event, as an API server does when a
//! watch's resourceVersion is too old, so the informer lists again.
//!
//! [`KubeFaultProxy::freeze`] models a half-open connection: while frozen, no request is answered
//! and open responses (watches) deliver nothing more, though they stay open.
//!
//! Everything else, watches included, is streamed through as it comes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;
use tokio::sync::watch;

use crate::common::*;

/// The watch event an API server sends when the watch's resourceVersion is no longer in its cache.
pub const GONE_EVENT: &str = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Expired","code":410,"message":"too old resource version"}}"#;

/// What the proxy did with a pod request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRequest {
    /// A collection list answered as the API server answered it.
    List,
    /// A collection list answered with `items: []`; `had` items upstream.
    EmptiedList { had: usize },
    /// A watch, streamed through.
    Watch,
    /// A watch answered with [`GONE_EVENT`] alone.
    ExpiredWatch,
    /// Anything else about pods (a GET of one pod, a write).
    Other,
}

/// One pod request the proxy answered.
#[derive(Debug, Clone)]
pub struct KubeEntry {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub what: PodRequest,
    /// What the client got (502: the upstream could not be reached).
    pub status: u16,
}

struct Inner {
    upstream: String,
    http: reqwest::Client,
    empty_lists: AtomicBool,
    expire_next_watch: AtomicBool,
    /// Bumped to end the pod watches open at the time.
    cut: watch::Sender<u64>,
    /// Nothing is answered or delivered while set.
    frozen: watch::Sender<bool>,
    log: Mutex<Vec<KubeEntry>>,
}

/// The proxy and its `kubectl proxy`; both stop with the test.
pub struct KubeFaultProxy {
    /// `http://127.0.0.1:<port>`
    pub addr: String,
    inner: Arc<Inner>,
    _kubectl: TestProcess,
}

impl KubeFaultProxy {
    /// Starts `kubectl proxy` with `kubeconfig`, and the fault proxy in front of it, passing through.
    pub async fn start(kubeconfig: &str) -> Self {
        let port = free_port();
        let mut cmd = Command::new(testbed_env("KUBECTL"));
        cmd.args(["proxy", "--address", "127.0.0.1"])
            .arg(format!("--port={port}"))
            .args(["--kubeconfig", kubeconfig])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let kubectl = TestProcess::spawn(cmd, "kubectl-proxy");
        let upstream = format!("http://127.0.0.1:{port}");
        let version = format!("{upstream}/version");
        wait_for("kubectl proxy to answer", Duration::from_secs(30), || {
            let version = version.clone();
            async move {
                let r = reqwest::get(&version).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        let inner = Arc::new(Inner {
            upstream,
            // No timeout: watches stay open for minutes.
            http: reqwest::Client::builder().build().unwrap(),
            empty_lists: AtomicBool::new(false),
            expire_next_watch: AtomicBool::new(false),
            cut: watch::Sender::new(0),
            frozen: watch::Sender::new(false),
            log: Mutex::new(Vec::new()),
        });
        let addr = super::serve_local(
            axum::Router::new()
                .fallback(handle)
                .with_state(inner.clone()),
        )
        .await;
        Self {
            addr,
            inner,
            _kubectl: kubectl,
        }
    }

    /// Writes a kubeconfig (in `dir`) whose server is this proxy, with no user: the operator's.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!(
            "kubeconfig-fault-proxy-{}",
            self.addr.rsplit(':').next().unwrap_or("0")
        ));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: proxy, cluster: {{server: {:?}}}}}]\n\
                 users: [{{name: none, user: {{}}}}]\n\
                 contexts: [{{name: proxy, context: {{cluster: proxy, user: none}}}}]\n\
                 current-context: proxy\n",
                self.addr
            ),
        )
        .expect("write the proxy's kubeconfig");
        path
    }

    /// Whether informers' pod lists come back empty from now on.
    pub fn set_empty_lists(&self, on: bool) {
        self.inner.empty_lists.store(on, Ordering::SeqCst);
    }

    /// Ends the open pod watches; the next pod watch gets a 410 Gone, so its informer lists again.
    pub fn force_relist(&self) {
        self.inner.expire_next_watch.store(true, Ordering::SeqCst);
        self.inner.cut.send_modify(|n| *n += 1);
    }

    /// Whether the connection hangs from now on: requests (of any kind) wait unanswered and open
    /// watches deliver nothing, until thawed.
    pub fn freeze(&self, on: bool) {
        self.inner.frozen.send_replace(on);
    }

    /// Every pod request so far.
    pub fn log(&self) -> Vec<KubeEntry> {
        self.inner.log.lock().unwrap().clone()
    }

    /// Pod requests since `since` that `f` accepts.
    pub fn count_since(&self, since: Instant, f: impl Fn(&KubeEntry) -> bool) -> usize {
        self.log().iter().filter(|e| e.at >= since && f(e)).count()
    }
}

/// `/api/v1/pods` or `/api/v1/namespaces/<ns>/pods`: the pod collection.
fn is_pod_collection(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == "/api/v1/pods"
        || path
            .strip_prefix("/api/v1/namespaces/")
            .and_then(|rest| rest.strip_suffix("/pods"))
            .is_some_and(|ns| !ns.is_empty() && !ns.contains('/'))
}

fn is_pod_path(path: &str) -> bool {
    path == "/api/v1/pods" || path.starts_with("/api/v1/pods/") || {
        let mut parts = path.split('/').skip(1);
        parts.next() == Some("api")
            && parts.next() == Some("v1")
            && parts.next() == Some("namespaces")
            && parts.next().is_some()
            && parts.next() == Some("pods")
    }
}

fn respond(status: u16, content_type: &str, body: Body) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

/// The list with its items dropped (and no continue token: the list ends here); the number dropped.
fn emptied(body: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut list: serde_json::Value = serde_json::from_slice(body).ok()?;
    let had = list.get("items")?.as_array()?.len();
    list["items"] = serde_json::json!([]);
    if let Some(meta) = list.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("continue");
        meta.remove("remainingItemCount");
    }
    Some((serde_json::to_vec(&list).ok()?, had))
}

/// Resolves once the proxy is not frozen.
async fn thawed(p: &Inner) {
    let mut frozen = p.frozen.subscribe();
    let _ = frozen.wait_for(|f| !*f).await;
}

async fn handle(State(p): State<Arc<Inner>>, req: Request) -> Response {
    thawed(&p).await;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let get = method == axum::http::Method::GET;
    let collection = get && is_pod_collection(&path);
    let watching = collection && params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let pods = is_pod_path(&path);
    let record = |what: PodRequest, status: u16| {
        if pods {
            p.log.lock().unwrap().push(KubeEntry {
                at: Instant::now(),
                method: method.to_string(),
                path: path.clone(),
                params: params.clone(),
                what,
                status,
            });
        }
    };

    if watching && p.expire_next_watch.swap(false, Ordering::SeqCst) {
        record(PodRequest::ExpiredWatch, 200);
        return respond(
            200,
            "application/json",
            Body::from(format!("{GONE_EVENT}\n")),
        );
    }
    // Subscribed before forwarding: a cut while the watch is being set up ends it too.
    let cut = p.cut.subscribe();

    let url = match &query {
        Some(q) => format!("{}{path}?{q}", p.upstream),
        None => format!("{}{path}", p.upstream),
    };
    let mut rb = p.http.request(method.clone(), &url).body(body.to_vec());
    for name in ["content-type", "accept"] {
        if let Some(v) = headers.get(name) {
            rb = rb.header(name, v.clone());
        }
    }
    let upstream = match rb.send().await {
        Ok(r) => r,
        Err(_) => {
            record(PodRequest::Other, 502);
            return respond(502, "text/plain", Body::from("upstream unreachable"));
        }
    };
    let status = upstream.status().as_u16();
    let ctype = upstream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();

    // An informer's relist, answered from a watch cache that lost its objects.
    let informer_list = collection && !watching && !params.contains_key("fieldSelector");
    if informer_list && status == 200 && p.empty_lists.load(Ordering::SeqCst) {
        let bytes = upstream.bytes().await.unwrap_or_default();
        if let Some((body, had)) = emptied(&bytes) {
            record(PodRequest::EmptiedList { had }, 200);
            return respond(200, &ctype, Body::from(body));
        }
        record(PodRequest::List, status);
        return respond(status, &ctype, Body::from(bytes));
    }
    let what = match (collection, watching) {
        (true, true) => PodRequest::Watch,
        (true, false) => PodRequest::List,
        _ => PodRequest::Other,
    };
    record(what, status);
    let gate = p.clone();
    let stream = upstream.bytes_stream().then(move |chunk| {
        let gate = gate.clone();
        async move {
            thawed(&gate).await;
            chunk
        }
    });
    let body = if watching {
        let mut cut = cut;
        let ended = async move {
            let _ = cut.changed().await;
        };
        Body::from_stream(stream.take_until(ended))
    } else {
        Body::from_stream(stream)
    };
    respond(status, &ctype, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_paths() {
        assert!(is_pod_collection("/api/v1/pods"));
        assert!(is_pod_collection("/api/v1/namespaces/shop/pods"));
        assert!(!is_pod_collection("/api/v1/namespaces/shop/pods/orders-1"));
        assert!(!is_pod_collection("/api/v1/namespaces/shop/services"));
        assert!(!is_pod_collection("/api/v1/nodes"));
        assert!(is_pod_path("/api/v1/namespaces/shop/pods/orders-1"));
        assert!(!is_pod_path(
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"
        ));
    }

    #[test]
    fn an_emptied_list_keeps_its_resource_version() {
        let list = br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"42","continue":"x"},"items":[{"metadata":{"name":"a"}}]}"#;
        let (body, had) = emptied(list).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(had, 1);
        assert_eq!(v["items"], serde_json::json!([]));
        assert_eq!(v["metadata"], serde_json::json!({"resourceVersion": "42"}));
        let event: serde_json::Value = serde_json::from_str(GONE_EVENT).unwrap();
        assert_eq!(event["object"]["code"], 410);
    }
}
