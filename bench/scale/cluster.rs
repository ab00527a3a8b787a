//! The harness's side of Kubernetes: KWOK nodes, bare pods bound to them (no scheduler, no
//! ReplicaSet), and watches that record when each pod deletion and node transition reached us.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;

pub const NS: &str = "bench";

/// A pod the harness created, once it runs with an IP.
#[derive(Debug, Clone)]
pub struct BenchPod {
    pub name: String,
    pub service: String,
    pub node: String,
    pub ip: String,
}

/// What the pod watch saw: running pods' IPs and when each deletion arrived.
#[derive(Default)]
pub struct PodWatch {
    pub running: HashMap<String, String>,
    /// Pod name → (arrival of the DELETED event here, wall clock then, the object's deletionTimestamp).
    pub deleted: HashMap<String, (Instant, SystemTime, Option<SystemTime>)>,
}

/// What the node watch saw: the first time each node was seen not Ready.
#[derive(Default)]
pub struct NodeWatch {
    /// Node name → (arrival here, the condition's lastTransitionTime).
    pub not_ready: HashMap<String, (Instant, Option<SystemTime>)>,
}

fn to_system(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> SystemTime {
    SystemTime::from(t.0)
}

fn running_ip(p: &Pod) -> Option<String> {
    let st = p.status.as_ref()?;
    let ready = st.phase.as_deref() == Some("Running")
        && st
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready || p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    st.pod_ip.clone()
}

pub fn watch_pods(client: &kube::Client) -> Arc<Mutex<PodWatch>> {
    let state = Arc::new(Mutex::new(PodWatch::default()));
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let st = state.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default().any_semantic()).boxed();
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else {
                continue;
            };
            let now = Instant::now();
            let mut s = st.lock().expect("lock");
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    match running_ip(&p) {
                        Some(ip) => s.running.insert(name, ip),
                        None => s.running.remove(&name),
                    };
                }
                watcher::Event::Delete(p) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    s.running.remove(&name);
                    let ts = p.metadata.deletion_timestamp.as_ref().map(to_system);
                    s.deleted
                        .entry(name)
                        .or_insert((now, SystemTime::now(), ts));
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    });
    state
}

pub fn watch_nodes(client: &kube::Client) -> Arc<Mutex<NodeWatch>> {
    let state = Arc::new(Mutex::new(NodeWatch::default()));
    let api: Api<Node> = Api::all(client.clone());
    let st = state.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default().any_semantic()).boxed();
        while let Some(ev) = stream.next().await {
            let Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) = ev else {
                continue;
            };
            let now = Instant::now();
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned());
            if let Some(c) = ready {
                if c.status != "True" {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    st.lock()
                        .expect("lock")
                        .not_ready
                        .entry(name)
                        .or_insert((now, c.last_transition_time.as_ref().map(to_system)));
                }
            }
        }
    });
    state
}

/// Creates a node. `managed` = carries the annotation the testbed's kwok manages nodes by; other
/// nodes need a kwok of their own ([`OwnKwok`]).
pub async fn create_node(
    client: &kube::Client,
    name: &str,
    internal_ip: &str,
    managed: bool,
    pods: usize,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut meta = serde_json::json!({
        "name": name,
        "labels": {"type": "kwok-bench", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
    });
    if managed {
        meta["annotations"] =
            serde_json::json!({"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"});
    }
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": meta,
    }))?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .with_context(|| format!("create node {name}"))?;
    let status = serde_json::json!({"status": {
        "addresses": [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}],
        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": pods.to_string()},
        "capacity": {"cpu": "64", "memory": "256Gi", "pods": pods.to_string()},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("set the status of node {name}"))?;
    Ok(())
}

/// Waits until every named node is Ready and has a pod CIDR.
pub async fn wait_nodes_ready(
    client: &kube::Client,
    names: &[String],
    timeout: Duration,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let list = nodes.list(&Default::default()).await?;
        let ok = names.iter().all(|n| {
            list.items.iter().any(|node| {
                node.metadata.name.as_deref() == Some(n.as_str())
                    && node
                        .spec
                        .as_ref()
                        .and_then(|s| s.pod_cidr.as_ref())
                        .is_some()
                    && node
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
        });
        if ok {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("nodes not Ready with a pod CIDR within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates bare pods bound to their nodes, many in flight.
pub async fn create_pods(
    client: &kube::Client,
    pods: &[(String, String, String)],
    in_flight: usize,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let results: Vec<Result<()>> = futures::stream::iter(pods.iter().cloned())
        .map(|(name, service, node)| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app": "bench", "svc": service}},
                    "spec": {
                        "nodeName": node,
                        "containers": [{"name": "app", "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}]}],
                        "tolerations": [{"operator": "Exists"}],
                    }
                }))?;
                let mut last = None;
                for attempt in 0..5u64 {
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                        Err(e) => last = Some(e),
                    }
                    tokio::time::sleep(Duration::from_millis(250 * (attempt + 1))).await;
                }
                Err(anyhow::anyhow!("create pod {name}: {:?}", last))
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Waits until the pod watch has every one of `pods` (name, service, node) Running with an IP.
pub async fn wait_running(
    pod_watch: &Mutex<PodWatch>,
    pods: &[(String, String, String)],
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let missing = {
            let w = pod_watch.lock().expect("lock");
            pods.iter()
                .filter(|p| !w.running.contains_key(&p.0))
                .count()
        };
        if missing == 0 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "{missing} of {} pods not Running after {timeout:?}",
                pods.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes a pod with gracePeriodSeconds 0.
pub async fn delete_pod(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    api.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .with_context(|| format!("delete pod {name}"))?;
    Ok(())
}

/// A kwok process of the harness's own for one node: killing it makes the node unreachable.
pub struct OwnKwok(Child);

impl OwnKwok {
    pub fn start(node: &str) -> Result<Self> {
        let env =
            |k: &str| std::env::var(k).with_context(|| format!("{k} is not set (testbed env)"));
        let child = Command::new(env("KWOK")?)
            .args(["--kubeconfig", &env("KUBECONFIG")?])
            .args(["--config", &env("TESTBED_KWOK_STAGES")?])
            .args(["--manage-single-node", node])
            .args(["--cidr", &env("TESTBED_CLUSTER_CIDR")?])
            .args(["--node-lease-duration-seconds", "10"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start kwok")?;
        record_pid("kwok-bench", child.id());
        Ok(Self(child))
    }

    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OwnKwok {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Records a PID under the testbed's extra-pids/, so `tests/testbed.sh down` kills it too.
pub fn record_pid(name: &str, pid: u32) {
    if let Ok(state) = std::env::var("TESTBED_STATE") {
        let dir = std::path::Path::new(&state).join("extra-pids");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}-{pid}")), pid.to_string());
    }
}

/// The API server's own account of the requests it served (its `apiserver_request_duration_seconds`
/// histogram): "VERB resource[/subresource]" → (requests, seconds spent serving them). Watches are
/// left out (long-running).
pub type ApiWork = std::collections::BTreeMap<String, (f64, f64)>;

pub fn apiserver_work() -> Result<ApiWork> {
    let env = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set (testbed env)"));
    let out = Command::new(env("KUBECTL")?)
        .args([
            "--kubeconfig",
            &env("KUBECONFIG")?,
            "get",
            "--raw",
            "/metrics",
        ])
        .output()
        .context("kubectl get --raw /metrics")?;
    if !out.status.success() {
        bail!(
            "kubectl get --raw /metrics: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut work = ApiWork::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (field, rest) =
            if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_count{") {
                (0, r)
            } else if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
                (1, r)
            } else {
                continue;
            };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let verb = label("verb");
        if verb == "WATCH" || verb == "CONNECT" {
            continue;
        }
        let (resource, sub) = (label("resource"), label("subresource"));
        let key = if sub.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{sub}")
        };
        let v: f64 = value.trim().parse().unwrap_or(0.0);
        let e = work.entry(key).or_default();
        if field == 0 {
            e.0 += v;
        } else {
            e.1 += v;
        }
    }
    Ok(work)
}

/// What the API server served between two readings.
pub fn work_between(before: &ApiWork, after: &ApiWork) -> ApiWork {
    after
        .iter()
        .map(|(k, (n, s))| {
            let (n0, s0) = before.get(k).copied().unwrap_or_default();
            (k.clone(), (n - n0, s - s0))
        })
        .filter(|(_, (n, _))| *n > 0.0)
        .collect()
}
