//! Shared helpers for the integration tests. They run against the testbed that `tests/testbed.sh up`
//! starts (and `./tests/run.sh` starts for them); without it they fail loudly, never skip.
#![allow(dead_code)] // each test binary uses a different subset

pub mod java;
pub mod netns;
pub mod nodes;
pub mod private;
pub mod scene;
pub mod servers;

#[allow(unused_imports)] // each test binary uses a different subset
pub use java::{JavaApp, Provider, Sdk};
#[allow(unused_imports)]
pub use nodes::{node_ready_since, not_ready_nodes, wait_safe_to_stop_a_node, DeleteNodeOnDrop};
#[allow(unused_imports)]
pub use private::{PrivateAlibabaNacos, PrivateNacos, PrivateNacosCluster, PrivateServer};
#[allow(unused_imports)]
pub use scene::{By, Scene, CLUSTER_KEY};
#[allow(unused_imports)]
pub use servers::{NacosAt, Registration, Server};

/// One test per server for the async fn `NAME(server: Server)`: `NAME::nacos_2_5_1`,
/// `NAME::nacos_3_0_3`, `NAME::rnacos`, `NAME::rnacos_auth` (those listed).
#[macro_export]
macro_rules! per_server {
    ($name:ident: $($server:ident),+ $(,)?) => {
        mod $name {
            $(
                #[tokio::test]
                async fn $server() {
                    super::$name($crate::common::Server::named(stringify!($server))).await
                }
            )+
        }
    };
}

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A testbed setting from the environment; panics with instructions when the testbed is absent.
pub fn testbed_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need the local testbed. Run them through ./tests/run.sh, \
             or `eval \"$(tests/testbed.sh up)\"` first."
        ),
    }
}

pub async fn kube_client() -> kube::Client {
    testbed_env("KUBECONFIG");
    kube::Client::try_default()
        .await
        .expect("a kube client from the testbed's KUBECONFIG")
}

/// Polls `check` every 250 ms until it returns Some, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A unique, DNS-safe name for test objects.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{:x}", std::process::id(), nanos)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A process started by a test; killed when dropped, and recorded so `testbed.sh down` kills it too.
pub struct TestProcess {
    child: Child,
    pid_file: Option<PathBuf>,
}

impl TestProcess {
    pub fn spawn(mut cmd: Command, name: &str) -> Self {
        cmd.stdin(Stdio::null());
        Self::spawn_as_set(cmd, name)
    }

    /// As `spawn`, with the standard streams as `cmd` sets them.
    pub fn spawn_as_set(mut cmd: Command, name: &str) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let pid_file = std::env::var("TESTBED_STATE").ok().map(|state| {
            let dir = PathBuf::from(state).join("extra-pids");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{name}-{}", child.id()));
            let _ = std::fs::write(&file, child.id().to_string());
            file
        });
        Self { child, pid_file }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for TestProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = &self.pid_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Which registration path a client process uses.
#[derive(Clone, Copy, Debug)]
pub enum ClientMode {
    /// Nacos 2.x gRPC: the connection owns the instances.
    Grpc,
    /// v1 HTTP registration with beats.
    Http,
}

/// Starts a real Nacos client process (nacos-sdk-python) that registers `instances` and stays alive.
/// Returns once it printed READY.
pub fn start_nacos_client(
    server: &str,
    service: &str,
    instances: &[(String, u16)],
    mode: ClientMode,
    extra: &[&str],
) -> TestProcess {
    use std::io::{BufRead, BufReader};
    let python = testbed_env("NACOS_PYTHON");
    let server = server
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let list: Vec<String> = instances
        .iter()
        .map(|(ip, p)| format!("{ip}:{p}"))
        .collect();
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/clients/nacos_client.py"))
        .args(["--server", server, "--service", service])
        .args(["--instances", &list.join(",")])
        .args([
            "--mode",
            match mode {
                ClientMode::Grpc => "grpc",
                ClientMode::Http => "http",
            },
        ])
        .args(extra)
        .stdout(Stdio::piped());
    let mut proc = TestProcess::spawn(cmd, "nacos-client");
    let stdout = proc
        .child_mut()
        .stdout
        .take()
        .expect("client stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the client's first line");
    assert_eq!(
        line.trim(),
        "READY",
        "nacos client for {service} did not register"
    );
    proc
}

/// The taint of every [`OwnKwokNode`].
pub const OWN_NODE_TAINT: &str = "e2e.test/own-node";

/// A KWOK node of the test's own, played by a kwok process of its own, so the test can make the node
/// unreachable by killing that process (kwok keeps renewing a node's Lease for as long as it runs).
pub struct OwnKwokNode {
    pub name: String,
    kwok: Option<TestProcess>,
}

impl OwnKwokNode {
    /// Creates the node with InternalIP `internal_ip` and starts its kwok; waits until it is Ready.
    pub async fn start(client: &kube::Client, name: &str, internal_ip: &str) -> Self {
        use k8s_openapi::api::core::v1::Node;
        use kube::api::{Api, Patch, PatchParams, PostParams};
        let nodes = Api::<Node>::all(client.clone());
        // Tainted: only pods pinned here (which tolerate it, see `deploy`) run on it, so no other
        // test's pods go down with it.
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"type": "kwok-own", "kubernetes.io/hostname": name}},
            "spec": {"taints": [{"key": OWN_NODE_TAINT, "value": "true", "effect": "NoSchedule"}]},
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
        let status = serde_json::json!({"status": {"addresses": [
            {"type": "InternalIP", "address": internal_ip},
            {"type": "Hostname", "address": name}
        ]}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        let mut node = Self {
            name: name.to_string(),
            kwok: None,
        };
        node.resume();
        wait_for("the node to be Ready", Duration::from_secs(60), || {
            let nodes = nodes.clone();
            async move {
                let n = nodes.get(name).await.ok()?;
                (node_ready(&n).as_deref() == Some("True")).then_some(())
            }
        })
        .await;
        node
    }

    /// Starts (again) the kwok process that plays this node's kubelet.
    pub fn resume(&mut self) {
        let mut cmd = Command::new(testbed_env("KWOK"));
        cmd.args(["--kubeconfig", &testbed_env("KUBECONFIG")])
            .args(["--config", &testbed_env("TESTBED_KWOK_STAGES")])
            .args(["--manage-single-node", &self.name])
            .args(["--cidr", &testbed_env("TESTBED_CLUSTER_CIDR")])
            .args(["--node-lease-duration-seconds", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.kwok = Some(TestProcess::spawn(cmd, "kwok"));
    }

    /// Kills the node's kwok: its Lease stops being renewed, as when a real node drops off the network.
    pub fn stop(&mut self) {
        self.kwok = None;
    }

    pub async fn delete(mut self, client: &kube::Client) {
        use k8s_openapi::api::core::v1::Node;
        self.stop();
        let _ = Api::<Node>::all(client.clone())
            .delete(&self.name, &Default::default())
            .await;
    }
}

impl Drop for OwnKwokNode {
    /// A test that fails (or forgets) leaves no NotReady node behind: nodes of the testbed's tests
    /// count towards the operator's partition freeze for every other test.
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new(testbed_env("KUBECTL"))
            .args(["--kubeconfig", &testbed_env("KUBECONFIG")])
            .args([
                "delete",
                "node",
                &self.name,
                "--ignore-not-found",
                "--wait=false",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

use kube::api::Api;

/// The status of a node's Ready condition ("True", "False", "Unknown").
pub fn node_ready(node: &k8s_openapi::api::core::v1::Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// Applies the generated CRD (idempotent) and waits until it is served.
pub async fn install_crd(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&nacos_reconciler::crd::crd_yaml()).expect("the generated CRD parses");
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.metadata.name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply("e2e-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the CRD");
    wait_for("the CRD to be established", Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let c = api.get(&name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The Lease duration of replicas started by [`Operator::replica`]: short, for quick hand-overs.
pub const LEASE_SECONDS: u64 = 6;

/// Who holds the operator's Lease in `ns`.
pub async fn lease_holder(client: &kube::Client, ns: &str) -> Option<String> {
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), ns)
        .get_opt("nacos-reconciler")
        .await
        .ok()??;
    lease.spec?.holder_identity
}

/// Waits until replica `who` holds the Lease in `ns`.
pub async fn wait_leader(client: &kube::Client, ns: &str, who: &str, timeout: Duration) {
    wait_for(&format!("{who} to lead"), timeout, || async {
        (lease_holder(client, ns).await.as_deref() == Some(who)).then_some(())
    })
    .await
}

/// The operator binary, run as a process against the testbed, watching `namespace`.
pub struct Operator {
    pub metrics_addr: String,
    log: PathBuf,
    process: TestProcess,
}

/// A failing test shows the end of the operator's log: in CI the log file goes with the run.
impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(OPERATOR_LOG_TAIL)..];
            let state = match self.process.child_mut().try_wait() {
                Ok(Some(exit)) => format!("exited: {exit}"),
                _ => "running".to_string(),
            };
            eprintln!(
                "--- last {} lines of {} (the operator is {state}) ---\n{}\n--- end of log ---",
                tail.len(),
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// How many lines of an operator's log a failing test prints.
const OPERATOR_LOG_TAIL: usize = 80;

impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, "operator", &[])
    }

    /// Starts one replica named `name` with extra `run` flags; its log file carries the name.
    pub fn start_with(namespace: &str, name: &str, extra: &[&str]) -> Self {
        Self::start_with_kubeconfig(namespace, name, &testbed_env("KUBECONFIG"), extra)
    }

    /// One of several replicas electing a leader on the Lease `nacos-reconciler` in `namespace`
    /// ([`LEASE_SECONDS`], a 2 s settle), reaching the API server through `kubeconfig`.
    pub fn replica(namespace: &str, name: &str, kubeconfig: &str) -> Self {
        let lease = LEASE_SECONDS.to_string();
        let flags = [
            "--leader-elect",
            "--lease-namespace",
            namespace,
            "--lease-duration-seconds",
            &lease,
            "--settle-seconds",
            "2",
        ];
        Self::start_with_kubeconfig(namespace, name, kubeconfig, &flags)
    }

    /// As `start_with`, reaching the API server through `kubeconfig` (a ServiceAccount's, a proxy's).
    pub fn start_with_kubeconfig(
        namespace: &str,
        name: &str,
        kubeconfig: &str,
        extra: &[&str],
    ) -> Self {
        let args = [
            &["--kubeconfig", kubeconfig],
            &["--namespaces", namespace],
            &["--log-level", "info,nacos_reconciler=debug"],
            &["--instance-name", name],
            extra,
        ]
        .concat();
        Self::start_custom(&format!("{name}-{namespace}"), &args).0
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap_or_default()
    }
}

pub async fn create_namespace(client: &kube::Client, name: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&Default::default(), &ns)
        .await
        .expect("create namespace");
}

/// Creates a Deployment of `replicas` pods labelled app=`app` and returns their pod IPs once they
/// all run Ready.
pub async fn deploy(
    client: &kube::Client,
    ns: &str,
    app: &str,
    replicas: i32,
    node_selector: Option<&str>,
) -> Vec<(String, String)> {
    use k8s_openapi::api::apps::v1::Deployment;
    let mut spec = serde_json::json!({"containers": [{"name": app, "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}]}]});
    if let Some(node) = node_selector {
        spec["nodeSelector"] = serde_json::json!({"kubernetes.io/hostname": node});
        spec["tolerations"] = serde_json::json!([{"key": OWN_NODE_TAINT, "operator": "Exists"}]);
    }
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": spec}
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&Default::default(), &d)
        .await
        .expect("create deployment");
    ready_pods(client, ns, app, replicas as usize).await
}

/// Creates `n` bare pods `<app>-<i>` labelled app=`app`, bound to the testbed's KWOK nodes in turn
/// (spec.nodeName, no scheduler), and returns (name, ip) pairs once they all run Ready. Nothing owns
/// them: no controller recreates them and the garbage collector leaves them alone, so a bare pod goes
/// only when the test deletes it. They tolerate every taint (no eviction from an unreachable node).
pub async fn create_bare_pods(
    client: &kube::Client,
    ns: &str,
    app: &str,
    n: usize,
) -> Vec<(String, String)> {
    use k8s_openapi::api::core::v1::Pod;
    let nodes: usize = testbed_env("TESTBED_KWOK_NODES")
        .parse()
        .expect("TESTBED_KWOK_NODES is a number");
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    for i in 0..n {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{app}-{i}"), "labels": {"app": app}},
            "spec": {
                "nodeName": format!("kwok-node-{}", i % nodes.max(1)),
                "containers": [{"name": app, "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}]}],
                "tolerations": [{"operator": "Exists"}],
            }
        }))
        .unwrap();
        // Refused until the namespace's `default` ServiceAccount exists (the controller creating it
        // can be slow, e.g. after an API server restart): retry, as a ReplicaSet would.
        let (api, pod) = (&api, &pod);
        let mut attempt = 0u32;
        wait_for(
            &format!("bare pod {app}-{i} created"),
            Duration::from_secs(60),
            || {
                attempt += 1;
                let first = attempt == 1;
                async move {
                    match api.create(&Default::default(), pod).await {
                        Ok(_) => Some(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => Some(()),
                        Err(e) => {
                            if first {
                                eprintln!("creating bare pod {app}-{i} (retrying): {e}");
                            }
                            None
                        }
                    }
                }
            },
        )
        .await;
    }
    ready_pods(client, ns, app, n).await
}

/// Waits until exactly `n` pods of `app` run Ready; returns (name, ip) pairs.
pub async fn ready_pods(
    client: &kube::Client,
    ns: &str,
    app: &str,
    n: usize,
) -> Vec<(String, String)> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    wait_for(
        &format!("{n} Ready pods of {app}"),
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels(&format!("app={app}")))
                    .await
                    .ok()?;
                let ready: Vec<(String, String)> = list
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter_map(|p| {
                        let st = p.status.as_ref()?;
                        let ok = st.phase.as_deref() == Some("Running")
                            && st
                                .conditions
                                .as_ref()?
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True");
                        if !ok {
                            return None;
                        }
                        Some((p.metadata.name.clone()?, st.pod_ip.clone()?))
                    })
                    .collect();
                (ready.len() == n && list.items.len() == n).then_some(ready)
            }
        },
    )
    .await
}

/// Scales Deployment `app` down to `replicas` and returns the IP of the pod that went. (Deleting a
/// pod instead lets its replacement take the same IP from KWOK: a Live instance again.)
pub async fn scale_down(client: &kube::Client, ns: &str, app: &str, replicas: usize) -> String {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let before: Vec<String> = ready_pods(client, ns, app, replicas + 1)
        .await
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            app,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale the deployment");
    let after: Vec<String> = ready_pods(client, ns, app, replicas)
        .await
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    let gone: Vec<&String> = before.iter().filter(|ip| !after.contains(ip)).collect();
    assert_eq!(gone.len(), 1, "before {before:?} after {after:?}");
    gone[0].clone()
}

/// Creates a NacosBinding from a JSON spec.
pub async fn create_binding(client: &kube::Client, ns: &str, name: &str, spec: serde_json::Value) {
    use nacos_reconciler::crd::NacosBinding;
    let b: NacosBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    }))
    .expect("a NacosBinding");
    Api::<NacosBinding>::namespaced(client.clone(), ns)
        .create(&Default::default(), &b)
        .await
        .expect("create the NacosBinding");
}

// ------------------------------------------------------------------------------------------------
// Shipping and security tests: an operator run with flags of the test's choosing, Nacos with auth.

impl Operator {
    /// The operator with exactly `args` after `run --metrics-addr <free port>`: the test chooses the
    /// kubeconfig, namespaces, log level and format. Output goes to `<state>/logs/<log_name>.log`,
    /// whose path is returned.
    pub fn start_custom(log_name: &str, args: &[&str]) -> (Self, PathBuf) {
        Self::start_custom_env(log_name, args, &[])
    }

    /// As `start_custom`, with environment variables (flags the chart passes that way).
    pub fn start_custom_env(
        log_name: &str,
        args: &[&str],
        envs: &[(String, String)],
    ) -> (Self, PathBuf) {
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let dir = std::env::var("TESTBED_STATE")
            .map(|s| PathBuf::from(s).join("logs"))
            .unwrap_or_else(|_| std::env::temp_dir());
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("{log_name}.log"));
        let file = std::fs::File::create(&log).expect("operator log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nacos-reconciler"));
        cmd.arg("run")
            .args(["--metrics-addr", &metrics_addr])
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let proc = TestProcess::spawn(cmd, "operator");
        eprintln!("{log_name} logs to {}", log.display());
        (
            Self {
                metrics_addr,
                log: log.clone(),
                process: proc,
            },
            log,
        )
    }
}

/// The events.k8s.io Events about NacosBinding `name` (every reason).
pub async fn binding_events(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            let r = e.regarding.as_ref();
            r.and_then(|r| r.kind.as_deref()) == Some("NacosBinding")
                && r.and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

/// Waits until the binding's status satisfies `check`; returns it.
pub async fn wait_binding<F>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    what: &str,
    check: F,
) -> nacos_reconciler::crd::NacosBindingStatus
where
    F: Fn(&nacos_reconciler::crd::NacosBindingStatus) -> bool,
{
    let api = Api::<nacos_reconciler::crd::NacosBinding>::namespaced(client.clone(), ns);
    let check = &check;
    let api = &api;
    wait_for(
        &format!("{ns}/{name}: {what}"),
        Duration::from_secs(90),
        || async move {
            let s = api.get(name).await.ok()?.status?;
            check(&s).then_some(s)
        },
    )
    .await
}

/// Whether a status has condition `type_` with `status`.
pub fn condition_is(
    s: &nacos_reconciler::crd::NacosBindingStatus,
    type_: &str,
    status: &str,
) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == status)
}

/// The binding's status once `check` accepts it.
pub async fn wait_status<F>(
    bindings: &kube::Api<nacos_reconciler::crd::NacosBinding>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: F,
) -> nacos_reconciler::crd::NacosBindingStatus
where
    F: Fn(&nacos_reconciler::crd::NacosBindingStatus) -> bool,
{
    // Not `wait_for`: a timeout shows the last status seen, the clue to why it never came.
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Some(s) = bindings.get(name).await.ok().and_then(|b| b.status) {
            if check(&s) {
                return s;
            }
            last = Some(s);
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; the last status: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
