//! End-to-end fault scenarios (issue 5) that disturb the whole cluster, so they run on a testbed of
//! their own (`tests/testbed.sh up` with a private `TESTBED_STATE`, torn down at the end) while the
//! other tests keep the shared one:
//!
//! - (6) first: every node `Ready=Unknown` at once (the testbed's kwok, which plays all nodes, is
//!   killed): the partition freeze holds, nothing is removed; nodes back: nothing live removed;
//! - (3) kube-apiserver restarted under the operator: watches resume, caches resync, no removals
//!   while unsynced;
//! - (7) the operator's RBAC revoked mid-run (its relist is refused): missing evidence, no removals,
//!   `CacheSynced=False`, `/readyz` 503; RBAC restored: the stale instances go. (7)'s other case, a
//!   relist that comes back empty rather than refused, needs no private cluster: it is
//!   `e2e_empty_relist.rs`, on the shared testbed, behind a Kubernetes API fault proxy of its own;
//! - last, two Kubernetes clusters sharing one Nacos (issue 17 B): this testbed's cluster and the
//!   shared one (two API servers, pods from the same 10.244.0.0/16), both registering into this
//!   testbed's Alibaba Nacos 2.5.1. Unclaimed, cluster A's operator holds cluster B's instances and
//!   says so; claimed (`scope.instanceMetadata`), each operator takes only its own stale instance
//!   offline and writes nothing to the other's.
//!
//! One test, the phases in sequence: they share the private control plane and would disturb each
//! other in parallel. They run on the private testbed's Alibaba Nacos 2.5.1 (these faults are the
//! cluster's; the Nacos-side faults run on rnacos too, in `e2e_faults.rs`). The operator reaches
//! Nacos through the fault proxy, whose log shows every write.

mod common;
mod faults;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use nacos_reconciler::crd::{NacosBinding, NacosBindingStatus};
use serde_json::json;

/// A testbed of this test's own; `down` on drop (its logs are copied next to the shared testbed's).
struct PrivateTestbed {
    state: PathBuf,
    logs_to: PathBuf,
    env: BTreeMap<String, String>,
}

fn script() -> PathBuf {
    repo_root().join("tests/testbed.sh")
}

impl PrivateTestbed {
    fn up() -> Self {
        // The shared testbed must exist: it proves the components are built (an `up` here would
        // otherwise start a cold build), and its state directory is where ours goes next to.
        let shared = PathBuf::from(testbed_env("TESTBED_STATE"));
        testbed_env("KUBECONFIG");
        let state = PathBuf::from(format!("{}-faults-private", shared.display()));
        let started = Instant::now();
        // rnacos 0.8.8 now and then panics on its first start (Raft): start afresh, up to 3 times.
        let mut out = None;
        for _ in 0..3 {
            let _ = Command::new(script())
                .arg("down")
                .env("TESTBED_STATE", &state)
                .output();
            let o = Command::new(script())
                .arg("up")
                .env("TESTBED_STATE", &state)
                .output()
                .expect("run tests/testbed.sh up");
            let ok = o.status.success();
            out = Some(o);
            if ok {
                break;
            }
        }
        let out = out.expect("an attempt");
        let me = Self {
            state: state.clone(),
            logs_to: shared.join("logs").join("faults-private"),
            env: BTreeMap::new(),
        };
        assert!(
            out.status.success(),
            "private testbed did not come up:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut me = me;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) else {
                continue;
            };
            if k != "PATH" {
                me.env.insert(k.to_string(), v.to_string());
            }
        }
        eprintln!(
            "private testbed up in {:?} ({})",
            started.elapsed(),
            state.display()
        );
        // Only this test runs in this binary: the helpers read the testbed from the environment.
        for (k, v) in &me.env {
            std::env::set_var(k, v);
        }
        me
    }

    /// Restarts the private kube-apiserver (down `down_seconds`), off the runtime.
    async fn restart_apiserver(&self, down_seconds: u32) {
        let state = self.state.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(script())
                .args(["restart-apiserver", &down_seconds.to_string()])
                .env("TESTBED_STATE", &state)
                .output()
                .expect("run tests/testbed.sh restart-apiserver")
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "restart-apiserver failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn kwok_pid(&self) -> u32 {
        std::fs::read_to_string(self.state.join("pids/kwok"))
            .expect("the private testbed's kwok pid")
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for PrivateTestbed {
    fn drop(&mut self) {
        let _ = std::fs::create_dir_all(&self.logs_to);
        if let Ok(entries) = std::fs::read_dir(self.state.join("logs")) {
            for e in entries.flatten() {
                let _ = std::fs::copy(e.path(), self.logs_to.join(e.file_name()));
            }
        }
        let _ = Command::new(script())
            .arg("down")
            .env("TESTBED_STATE", &self.state)
            .output();
    }
}

/// The IPs of the pods of `app` that are not being deleted (Ready or not).
async fn pod_ips(client: &kube::Client, ns: &str, app: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status?.pod_ip)
        .collect()
}

/// The IPs of the pods of `app` that the API server shows Running and Ready.
async fn ready_ips(client: &kube::Client, ns: &str, app: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let st = p.status?;
            let ready = st
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(st.pod_ip?)
        })
        .collect()
}

/// Scales `app` to `n` without needing the pods Ready; returns the IPs of the pods that went or are
/// going (after an API server restart KWOK may leave deleted pods Terminating: still evidence).
async fn scale_and_diff(client: &kube::Client, ns: &str, app: &str, n: usize) -> Vec<String> {
    let before = pod_ips(client, ns, app).await;
    scale(client, ns, app, n as i32).await;
    let after = wait_for(
        &format!("{app} scaled to {n}"),
        Duration::from_secs(90),
        || async move {
            let ips = pod_ips(client, ns, app).await;
            (ips.len() == n).then_some(ips)
        },
    )
    .await;
    before
        .into_iter()
        .filter(|ip| !after.contains(ip))
        .collect()
}

/// Deletes `n` pods of `app` with grace 0 (gone from the API at once); returns their IPs.
async fn force_delete_pods(client: &kube::Client, ns: &str, app: &str, n: usize) -> Vec<String> {
    use kube::api::DeleteParams;
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods");
    let mut gone = Vec::new();
    for p in list.items.iter().take(n) {
        let name = p.metadata.name.clone().unwrap();
        gone.push(p.status.clone().and_then(|s| s.pod_ip).unwrap());
        pods.delete(&name, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete pod");
    }
    gone
}

/// One phase's namespace, pods, instances and binding, on Alibaba Nacos 2.5.1 (the server users
/// run; these faults are Kubernetes's, and every other fault test runs on rnacos too), reached
/// through the fault proxy.
struct Phase {
    client: kube::Client,
    ns: String,
    app: String,
    svc: String,
    at: NacosAt,
    proxy: FaultProxy,
    bindings: Api<NacosBinding>,
    _scene: Scene,
}

/// The server of every phase.
const SERVER: Server = Server::Nacos2;

impl Phase {
    /// Pods from a Deployment of `replicas`.
    async fn new(prefix: &str, replicas: i32, policy: serde_json::Value) -> (Self, Vec<String>) {
        Self::setup(prefix, replicas as usize, false, policy).await
    }

    /// `n` bare pods: they go only when the test deletes them, API server restarts or not.
    async fn with_bare_pods(
        prefix: &str,
        n: usize,
        policy: serde_json::Value,
    ) -> (Self, Vec<String>) {
        Self::setup(prefix, n, true, policy).await
    }

    async fn setup(
        prefix: &str,
        n: usize,
        bare: bool,
        policy: serde_json::Value,
    ) -> (Self, Vec<String>) {
        // The private testbed's addresses: `PrivateTestbed::up` set its environment.
        let proxy = FaultProxy::start(&SERVER.addr()).await;
        let scene = Scene::on(SERVER, prefix);
        let scene = if bare {
            scene.bare_pods(n)
        } else {
            scene.pods(n)
        };
        let scene = scene
            .registered(By::Persistent)
            .policy(policy)
            .spec(json!({
                "scope": {"cidrs": ["10.244.0.0/16", "10.245.0.0/16"]},
                "resyncSeconds": 5
            }))
            .through(&proxy.addr)
            .build()
            .await;
        let pods = scene.pods.iter().map(|(_, ip)| ip.clone()).collect();
        (
            Self {
                client: scene.client.clone(),
                ns: scene.ns.clone(),
                app: scene.app.clone(),
                svc: scene.svc.clone(),
                at: SERVER.at(),
                proxy,
                bindings: scene.bindings.clone(),
                _scene: scene,
            },
            pods,
        )
    }

    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.app)
    }

    async fn wait_live(&self, live: u32) {
        wait_status(
            &self.bindings,
            &self.app,
            &format!("Ready with {live} live"),
            Duration::from_secs(90),
            |s| has_condition(s, "Ready", "True", "Reconciled") && s.instances.live == live,
        )
        .await;
    }
}

#[tokio::test]
async fn cluster_wide_faults_on_a_private_testbed() {
    // The shared testbed's cluster, before this testbed's environment replaces it: the second
    // cluster of the last phase.
    let shared_kubeconfig = testbed_env("KUBECONFIG");
    let tb = PrivateTestbed::up();
    // First, before an API server restart slows the controllers down; its new kwok plays the
    // nodes for the rest of the test.
    let _kwok = every_node_unknown(&tb).await;
    apiserver_restart(&tb).await;
    rbac_revoked(&tb).await;
    two_clusters_share_one_nacos(&shared_kubeconfig).await;
}

// ------------------------------------------------------------------------------------------------
// (3) kube-apiserver restarted under the operator.

async fn apiserver_restart(tb: &PrivateTestbed) {
    let grace = 6u64;
    let (ph, pods) = Phase::new(
        "papi",
        4,
        json!({"gracePeriodSeconds": grace, "onPodTerminating": "Ignore", "maxRemovals": "100%"}),
    )
    .await;
    let op = Operator::start(&ph.ns);
    let readyz = ReadyzWatch::start(&op.metrics_addr);
    ph.wait_live(4).await;
    readyz.reset();

    // Two pods go; their grace period ends while the API server is down.
    scale(&ph.client, &ph.ns, &ph.app, 2).await;
    let survivors = ips(&ready_pods(&ph.client, &ph.ns, &ph.app, 2).await);
    let gone: Vec<String> = pods
        .iter()
        .filter(|ip| !survivors.contains(ip))
        .cloned()
        .collect();
    // When the API server stopped and started answering, as a client sees it (every 50 ms): the
    // restart script only says when it began and when it noticed the server ready again.
    let answers = Arc::new(Mutex::new(Vec::<(Instant, bool)>::new()));
    let poller = {
        let (client, answers) = (ph.client.clone(), answers.clone());
        tokio::spawn(async move {
            loop {
                let at = Instant::now();
                let ok = tokio::time::timeout(Duration::from_secs(1), client.apiserver_version())
                    .await
                    .is_ok_and(|r| r.is_ok());
                answers.lock().unwrap().push((at, ok));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tb.restart_apiserver(grace as u32 + 4).await;
    let answered_again = || {
        let a = answers.lock().unwrap();
        a.iter().skip_while(|(_, ok)| *ok).any(|(_, ok)| *ok)
    };
    let polled_from = Instant::now();
    while !answered_again() && polled_from.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
    let answers = answers.lock().unwrap().clone();
    let down_from = answers
        .iter()
        .find(|(_, ok)| !ok)
        .map(|(at, _)| *at)
        .expect("the API server never stopped answering");
    let up_at = answers
        .iter()
        .find(|(at, ok)| *ok && *at > down_from)
        .map(|(at, _)| *at)
        .expect("the API server never answered again");
    eprintln!("kube-apiserver did not answer for {:?}", up_at - down_from);
    assert!(
        readyz.not_ready_seen(),
        "/readyz never said the caches were unsynced while the API server was down"
    );
    let during: Vec<_> = ph
        .proxy
        .log()
        .into_iter()
        .filter(|e| e.is_removal() && e.at >= down_from && e.at <= up_at)
        .collect();
    assert!(
        during.is_empty(),
        "removals while the API server was down: {during:#?}"
    );

    // Watches resume, caches resync, and the stale instances go.
    ph.at
        .wait_deregistered(&ph.svc, &gone, Duration::from_secs(90))
        .await;
    eprintln!(
        "stale instances removed {:?} after the API server returned",
        up_at.elapsed()
    );
    // (Not `live == 2`: a long restart can outlast the nodes' Lease grace and leave pods not Ready.)
    wait_status(
        &ph.bindings,
        &ph.app,
        "CacheSynced and Ready again",
        Duration::from_secs(60),
        |s| {
            has_condition(s, "CacheSynced", "True", "Synced")
                && has_condition(s, "Ready", "True", "Reconciled")
        },
    )
    .await;
    ph.proxy.assert_untouched(&survivors);
    ph.at.assert_live_registered(&ph.svc, &survivors).await;
    drop(op);
}

// ------------------------------------------------------------------------------------------------
// (7) RBAC revoked mid-run: the relist is refused.

fn kubectl_apply(yaml: &str) {
    use std::io::Write;
    let mut child = Command::new(testbed_env("KUBECTL"))
        .args([
            "--kubeconfig",
            &testbed_env("KUBECONFIG"),
            "apply",
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kubectl(args: &[&str]) -> String {
    let out = Command::new(testbed_env("KUBECTL"))
        .args(["--kubeconfig", &testbed_env("KUBECONFIG")])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A kubeconfig for the ServiceAccount `sa` in `ns` (a TokenRequest token, no client certificate).
fn service_account_kubeconfig(dir: &Path, ns: &str, sa: &str) -> PathBuf {
    let token = kubectl(&["create", "token", sa, "-n", ns, "--duration", "1h"]);
    let server = kubectl(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let ca = kubectl(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority}",
    ]);
    let path = dir.join(format!("kubeconfig-{ns}-{sa}"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: t, cluster: {{server: {server:?}, certificate-authority: {ca:?}}}}}]\n\
             users: [{{name: sa, user: {{token: {:?}}}}}]\n\
             contexts: [{{name: t, context: {{cluster: t, user: sa}}}}]\n\
             current-context: t\n",
            token.trim()
        ),
    )
    .unwrap();
    path
}

async fn rbac_revoked(tb: &PrivateTestbed) {
    // Bare pods: no controller deletes or recreates them across the API server restart (orphans of a
    // Deployment were at the garbage collector's mercy), so every pod the test leaves is a survivor.
    let (ph, pods) = Phase::with_bare_pods(
        "prbac",
        4,
        json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}),
    )
    .await;
    let ns = ph.ns.clone();
    // The operator's grants, the pod/endpointslice part in a RoleBinding of its own to revoke.
    kubectl_apply(&format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: op, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-nodes}}
rules: [{{apiGroups: [""], resources: [nodes], verbs: [get, list, watch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-nodes}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-nodes}}
subjects: [{{kind: ServiceAccount, name: op, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: op-base, namespace: {ns}}}
rules:
- {{apiGroups: [nacos-reconciler.io], resources: [nacosbindings], verbs: [get, list, watch]}}
- {{apiGroups: [nacos-reconciler.io], resources: [nacosbindings/status], verbs: [get, patch, update]}}
- {{apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}}
- {{apiGroups: [""], resources: [secrets], verbs: [get]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: op-base, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: op-base}}
subjects: [{{kind: ServiceAccount, name: op, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: op-pods, namespace: {ns}}}
rules:
- {{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}}
- {{apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}}
"#
    ));
    let pods_binding = format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: op-pods, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: op-pods}}
subjects: [{{kind: ServiceAccount, name: op, namespace: {ns}}}]
"#
    );
    kubectl_apply(&pods_binding);
    let kubeconfig = service_account_kubeconfig(&tb.state, &ns, "op");
    let op = Operator::start_with_kubeconfig(&ns, "op-sa", &kubeconfig.to_string_lossy(), &[]);
    let readyz = ReadyzWatch::start(&op.metrics_addr);
    ph.wait_live(4).await;

    // Revoke pods and endpointslices; restart the API server so every watch must list again.
    kubectl(&["delete", "rolebinding", "op-pods", "-n", &ns]);
    readyz.reset();
    tb.restart_apiserver(1).await;
    let s = wait_status(
        &ph.bindings,
        &ph.app,
        "CacheSynced=False with RBAC revoked",
        Duration::from_secs(90),
        |s| has_condition(s, "CacheSynced", "False", "NotSynced"),
    )
    .await;
    let msg = s
        .conditions
        .iter()
        .find(|c| c.type_ == "CacheSynced")
        .map(|c| c.message.clone());
    eprintln!("RBAC revoked: CacheSynced=False: {msg:?}");
    assert!(has_condition(&s, "Ready", "False", "Degraded"), "{s:#?}");
    wait_event(
        &ph.client,
        &ns,
        &ph.app,
        "CacheNotSynced",
        // (not "nothing removed": a long note is cut at 1000 characters)
        "forbidden",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        readyz.not_ready_seen(),
        "/readyz stayed 200 with the pod watch refused"
    );

    // Pods go meanwhile (deleted at once, grace 0): tempting, but there is no evidence.
    let gone = force_delete_pods(&ph.client, &ns, &ph.app, 2).await;
    assert_eq!(gone.len(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_passes(&op, &ph.key(), 3, Duration::from_secs(60)).await;
    let sent: Vec<_> = ph
        .proxy
        .log()
        .into_iter()
        .filter(|e| e.is_removal())
        .collect();
    assert!(sent.is_empty(), "removals without pod evidence: {sent:#?}");
    for ip in &gone {
        assert!(ph.at.held(&ph.svc, ip, 8080).await.is_some());
    }

    // RBAC restored: the watch lists again, the stale instances go.
    kubectl_apply(&pods_binding);
    let restored = Instant::now();
    ph.at
        .wait_deregistered(&ph.svc, &gone, Duration::from_secs(120))
        .await;
    eprintln!(
        "stale instances removed {:?} after RBAC was restored",
        restored.elapsed()
    );
    // Every pod the test did not delete still exists (nothing else deletes bare pods), and none of
    // their instances was ever written to.
    let existing = existing_pod_ips(&ph.client, &ns).await;
    let survivors: Vec<String> = pods
        .iter()
        .filter(|ip| !gone.contains(ip))
        .cloned()
        .collect();
    assert_eq!(survivors.len(), 2, "pods {pods:?}, deleted {gone:?}");
    let missing: Vec<&String> = survivors
        .iter()
        .filter(|ip| !existing.contains(*ip))
        .collect();
    assert!(
        missing.is_empty(),
        "bare pods on {missing:?} vanished without the test deleting them (pods now: {existing:?})"
    );
    ph.proxy.assert_untouched(&survivors);
    ph.at.assert_live_registered(&ph.svc, &survivors).await;
    drop(op);
}

/// The IPs of the pods of `ns` the API server has and that are not being deleted.
async fn existing_pod_ips(client: &kube::Client, ns: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status?.pod_ip)
        .collect()
}

// ------------------------------------------------------------------------------------------------
// (6) Every node Ready=Unknown at once.

async fn node_states(client: &kube::Client) -> Vec<(String, Option<String>)> {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), node_ready(n)))
        .collect()
}

async fn every_node_unknown(tb: &PrivateTestbed) -> TestProcess {
    let (ph, pods) = Phase::new(
        "pfreeze",
        3,
        json!({"gracePeriodSeconds": 1, "maxRemovals": "100%", "onNodeUnreachable": "Deregister",
               "nodeUnreachableSeconds": 15, "onPodUnready": "Disable"}),
    )
    .await;
    // The nodes' own addresses are registered too (hostNetwork-style instances): node evidence only.
    let prefix = testbed_env("TESTBED_NODE_IP_PREFIX");
    let node_ips: Vec<String> = (1..=3).map(|i| format!("{prefix}.{i}")).collect();
    for ip in &node_ips {
        ph.at
            .register_persistent(&Registration::new(&ph.svc, ip, 8080))
            .await;
    }
    let op = Operator::start(&ph.ns);
    ph.wait_live(6).await;
    let mut everything = pods.clone();
    everything.extend(node_ips.iter().cloned());

    // kwok plays every node: killed, no node renews its Lease.
    let kwok = tb.kwok_pid();
    let killed = Command::new("kill").arg(kwok.to_string()).status().unwrap();
    assert!(killed.success());
    let down = Instant::now();
    let client = &ph.client;
    let states = wait_for(
        "every node Ready=Unknown",
        Duration::from_secs(120),
        || async move {
            let s = node_states(client).await;
            (!s.is_empty() && s.iter().all(|(_, r)| r.as_deref() == Some("Unknown"))).then_some(s)
        },
    )
    .await;
    eprintln!(
        "every node Unknown {:?} after kwok died: {states:?}",
        down.elapsed()
    );
    wait_event(
        &ph.client,
        &ph.ns,
        &ph.app,
        "NodeActionsFrozen",
        "node-based actions are frozen",
        Duration::from_secs(60),
    )
    .await;
    // Past nodeUnreachableSeconds: still nothing.
    tokio::time::sleep(Duration::from_secs(16)).await;
    wait_passes(&op, &ph.key(), 3, Duration::from_secs(60)).await;
    let sent: Vec<_> = ph
        .proxy
        .log()
        .into_iter()
        .filter(|e| e.is_removal())
        .collect();
    assert!(sent.is_empty(), "removals during the partition: {sent:#?}");
    ph.at.assert_live_registered(&ph.svc, &everything).await;

    // The nodes come back (a new kwok for them): nothing live was lost, and a real removal works.
    let mut cmd = Command::new(testbed_env("KWOK"));
    cmd.args(["--kubeconfig", &testbed_env("KUBECONFIG")])
        .args(["--config", &testbed_env("TESTBED_KWOK_STAGES")])
        .args([
            "--manage-nodes-with-annotation-selector",
            "kwok.x-k8s.io/node=fake",
        ])
        .args(["--cidr", &testbed_env("TESTBED_CLUSTER_CIDR")])
        .args(["--node-lease-duration-seconds", "10"])
        .args(["--server-address", &format!("127.0.0.1:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let kwok = TestProcess::spawn(cmd, "kwok");
    wait_for(
        "every node Ready again",
        Duration::from_secs(120),
        || async move {
            let s = node_states(client).await;
            s.iter()
                .all(|(_, r)| r.as_deref() == Some("True"))
                .then_some(())
        },
    )
    .await;
    wait_passes(&op, &ph.key(), 3, Duration::from_secs(60)).await;
    let sent: Vec<_> = ph
        .proxy
        .log()
        .into_iter()
        .filter(|e| e.is_removal())
        .collect();
    let pods_now = pod_ips(&ph.client, &ph.ns, &ph.app).await;
    eprintln!("after the partition: pods {pods_now:?}; writes {sent:#?}");
    // Node instances are live again; pods may still be not Ready (the node controller marked them),
    // and with onPodUnready=Disable that is a legitimate disable, but never a deregistration.
    assert!(
        sent.iter().all(|e| !e.is_delete()),
        "a deregistration after the partition: {sent:#?}"
    );
    ph.proxy.assert_untouched(&node_ips);
    // The node controller marked the pods not Ready and KWOK does not mark them Ready again, so
    // onPodUnready=Disable may now disable them (policy, after the freeze); a pod the API server
    // shows Ready must be enabled.
    let ready = ready_ips(&ph.client, &ph.ns, &ph.app).await;
    eprintln!("Ready pods after the partition: {ready:?}");
    ph.proxy.assert_untouched(&ready);
    ph.at.assert_live_registered(&ph.svc, &ready).await;
    // Conditions allow again: a pod that goes is taken offline.
    let gone = scale_and_diff(&ph.client, &ph.ns, &ph.app, 2).await;
    for ip in &gone {
        wait_for(
            &format!("{ip} offline"),
            Duration::from_secs(60),
            || async {
                match ph.at.held(&ph.svc, ip, 8080).await {
                    None => Some(()),
                    Some(h) => (!h.enabled).then_some(()),
                }
            },
        )
        .await;
    }
    let sent: Vec<_> = ph
        .proxy
        .log()
        .into_iter()
        .filter(|e| e.is_removal())
        .collect();
    eprintln!("every removal of the phase: {sent:#?}");
    ph.proxy.assert_untouched(&node_ips);
    ph.at.assert_live_registered(&ph.svc, &node_ips).await;
    drop(op);
    kwok
}

// ------------------------------------------------------------------------------------------------
// Two Kubernetes clusters, one Nacos (issue 17 B).

/// A Ready node of the cluster that takes the testbed's shared pods (no taint), and its podCIDR.
async fn shared_node(client: &kube::Client, not_cidr: Option<&str>) -> (String, String) {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    nodes
        .items
        .into_iter()
        .filter(|n| n.spec.as_ref().is_none_or(|s| s.taints.is_none()))
        .filter(|n| node_ready(n).as_deref() == Some("True"))
        .filter_map(|n| {
            let cidr = n.spec.as_ref()?.pod_cidr.clone()?;
            Some((n.metadata.name?, cidr))
        })
        .find(|(_, cidr)| Some(cidr.as_str()) != not_cidr)
        .expect("a Ready untainted node with a podCIDR")
}

/// One cluster's side: a namespace with a Deployment `orders` on one node, its pods' instances
/// registered in the shared service with `k8s-cluster: <cluster>`, and a binding reaching Nacos
/// through a proxy of its own (whose log shows what this side's operator wrote).
struct Side {
    cluster: &'static str,
    client: kube::Client,
    kubeconfig: String,
    ns: String,
    pods: Vec<String>,
    proxy: FaultProxy,
    bindings: Api<NacosBinding>,
}

const TWO_APP: &str = "orders";

/// A client of the cluster `kubeconfig` names.
async fn client_of(kubeconfig: &str) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("read the kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("a kube config");
    kube::Client::try_from(config).expect("a kube client")
}

impl Side {
    async fn new(
        cluster: &'static str,
        kubeconfig: &str,
        node: &str,
        replicas: i32,
        svc: &str,
    ) -> Self {
        let client = client_of(kubeconfig).await;
        install_crd(&client).await;
        let ns = unique(&format!("two-{cluster}"));
        create_namespace(&client, &ns).await;
        SERVER.create_credentials(&client, &ns).await;
        let pods = ips(&deploy(&client, &ns, TWO_APP, replicas, Some(node)).await);
        for ip in &pods {
            SERVER.register_persistent(&claimed(svc, ip, cluster)).await;
        }
        Self {
            cluster,
            bindings: Api::namespaced(client.clone(), &ns),
            client,
            kubeconfig: kubeconfig.to_string(),
            ns,
            pods,
            proxy: FaultProxy::start(&SERVER.addr()).await,
        }
    }

    /// The binding of the shared service: every address of 10.244.0.0/16 in scope (the two
    /// clusters' pod networks overlap, as VPC-native pod ranges of one VPC do), claiming this
    /// cluster's instances or, with `claim` false, every instance.
    async fn bind(&self, svc: &str, claim: bool) {
        let mut scope = json!({"cidrs": ["10.244.0.0/16"]});
        if claim {
            scope["instanceMetadata"] = json!({"matchLabels": {CLUSTER_KEY: self.cluster}});
        }
        let mut nacos = SERVER.binding_nacos();
        nacos["serverAddr"] = json!([self.proxy.addr]);
        let spec = json!({
            "nacos": nacos,
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": TWO_APP}}},
            "scope": scope,
            "policy": {"gracePeriodSeconds": 0, "maxRemovals": "100%"},
            "resyncSeconds": 5,
        });
        match self
            .bindings
            .get_opt(TWO_APP)
            .await
            .expect("get the binding")
        {
            None => create_binding(&self.client, &self.ns, TWO_APP, spec).await,
            Some(_) => {
                use kube::api::{Patch, PatchParams};
                self.bindings
                    .patch(
                        TWO_APP,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"scope": scope}})),
                    )
                    .await
                    .expect("patch the binding's scope");
            }
        }
    }

    fn operator(&self) -> Operator {
        Operator::start_with_kubeconfig(
            &self.ns,
            &format!("operator-{}", self.cluster),
            &self.kubeconfig,
            &[],
        )
    }

    async fn status(
        &self,
        what: &str,
        check: impl Fn(&NacosBindingStatus) -> bool,
    ) -> NacosBindingStatus {
        let what = format!("cluster {}: {what}", self.cluster);
        wait_status(
            &self.bindings,
            TWO_APP,
            &what,
            Duration::from_secs(90),
            check,
        )
        .await
    }
}

/// Deletes the earlier phases' namespaces and waits until their pods are gone: a pod of theirs
/// could hold an address of cluster B's, which would make it an address cluster A has shown.
async fn clear_earlier_phases(client: &kube::Client) {
    let pods = || async {
        Api::<Pod>::all(client.clone())
            .list(&ListParams::default())
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter_map(|p| p.metadata.namespace)
            .filter(|ns| ns != "kube-system" && ns != "default")
            .collect::<BTreeSet<String>>()
    };
    for ns in pods().await {
        delete_namespace(client, &ns).await;
    }
    wait_for(
        "the earlier phases' pods gone",
        Duration::from_secs(120),
        || async { pods().await.is_empty().then_some(()) },
    )
    .await;
}

fn claimed(svc: &str, ip: &str, cluster: &str) -> Registration {
    let mut r = Registration::new(svc, ip, 8080);
    r.metadata.insert(CLUSTER_KEY.into(), cluster.into());
    r
}

async fn two_clusters_share_one_nacos(shared_kubeconfig: &str) {
    let at = SERVER.at();
    let svc = unique("two-clusters-svc");
    // Cluster A: this testbed's; cluster B: the shared testbed's. Their pods on nodes of different
    // podCIDRs, so that no address is both clusters' (the overlap is of ranges, not of pods).
    let a_kubeconfig = testbed_env("KUBECONFIG");
    let a_client = kube_client().await;
    clear_earlier_phases(&a_client).await;
    let (a_node, a_cidr) = shared_node(&a_client, None).await;
    let (b_node, b_cidr) = shared_node(&client_of(shared_kubeconfig).await, Some(&a_cidr)).await;
    eprintln!("two clusters: A's pods on {a_node} ({a_cidr}), B's on {b_node} ({b_cidr})");
    let a = Side::new("a", &a_kubeconfig, &a_node, 2, &svc).await;
    let b = Side::new("b", shared_kubeconfig, &b_node, 4, &svc).await;
    for ip in &b.pods {
        assert!(!a.pods.contains(ip), "{ip} is a pod of both clusters");
    }

    // Unclaimed, A's operator finds B's four instances at addresses no pod of A ever had: most of
    // the service. It holds them, and says what to configure.
    a.bind(&svc, false).await;
    let op_a = a.operator();
    let s = a
        .status("the service held as shared with another cluster", |s| {
            has_condition(s, "SharedService", "True", "AnotherClusterSuspected")
                && condition_is(s, "RemovalsHeld", "True")
                && s.instances.live == 2
        })
        .await;
    let mut held: Vec<String> = s.pending.iter().map(|p| p.ip.clone()).collect();
    held.sort();
    let mut b_pods = b.pods.clone();
    b_pods.sort();
    assert_eq!(held, b_pods, "held: B's instances, pending {:?}", s.pending);
    let notes = wait_event(
        &a.client,
        &a.ns,
        TWO_APP,
        "AnotherClusterSuspected",
        "spec.scope.instanceMetadata",
        Duration::from_secs(30),
    )
    .await;
    assert!(notes.iter().any(|n| n.contains(&svc)), "{notes:?}");
    wait_passes(
        &op_a,
        &format!("{}/{TWO_APP}", a.ns),
        3,
        Duration::from_secs(60),
    )
    .await;
    assert!(
        a.proxy.log().iter().all(|e| !e.is_removal()),
        "unclaimed, A's operator wrote a removal: {:#?}",
        a.proxy.log()
    );
    at.assert_live_registered(&svc, &b.pods).await;
    for ip in &b.pods {
        let r = claimed(&svc, ip, "b");
        let held = at.held_at(&r).await.expect("B's instance registered");
        assert!(held.enabled, "B's instance {ip} was disabled");
    }

    // Claimed on both sides: each operator takes its own stale instance offline, and only that.
    a.bind(&svc, true).await;
    b.bind(&svc, true).await;
    let op_b = b.operator();
    a.status("B's instances Foreign, nothing held", |s| {
        has_condition(s, "SharedService", "False", "NotShared")
            && condition_is(s, "RemovalsHeld", "False")
            && s.instances.live == 2
            && s.instances.foreign == 4
    })
    .await;
    b.status("A's instances Foreign", |s| {
        s.instances.live == 4 && s.instances.foreign == 2
    })
    .await;
    let a_gone = scale_down(&a.client, &a.ns, TWO_APP, 1).await;
    let b_gone = scale_down(&b.client, &b.ns, TWO_APP, 3).await;
    let started = Instant::now();
    at.wait_deregistered(
        &svc,
        &[a_gone.clone(), b_gone.clone()],
        Duration::from_secs(60),
    )
    .await;
    eprintln!(
        "claimed: each cluster's stale instance deregistered within {:?}",
        started.elapsed()
    );
    let removed = |side: &Side| -> Vec<String> {
        let mut ips: Vec<String> = side
            .proxy
            .log()
            .iter()
            .filter(|e| e.is_removal())
            .filter_map(|e| e.ip().map(str::to_string))
            .collect();
        ips.sort();
        ips.dedup();
        ips
    };
    assert_eq!(removed(&a), [a_gone.as_str()], "A's operator's removals");
    assert_eq!(removed(&b), [b_gone.as_str()], "B's operator's removals");
    let survivors: Vec<String> = a
        .pods
        .iter()
        .chain(&b.pods)
        .filter(|ip| **ip != a_gone && **ip != b_gone)
        .cloned()
        .collect();
    at.assert_live_registered(&svc, &survivors).await;
    drop((op_a, op_b));
    delete_namespace(&a.client, &a.ns).await;
    delete_namespace(&b.client, &b.ns).await;
}
