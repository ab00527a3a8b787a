//! The fixture every end-to-end test starts from, on any testbed server: a namespace of its own,
//! pods (a Deployment or bare pods), their instances registered in a service of their own the way
//! applications register them, the credentials Secret where the server has auth, and a binding.
//!
//! ```ignore
//! let scene = Scene::on(server, "scale").pods(4).registered(By::Grpc)
//!     .policy(json!({"gracePeriodSeconds": 3})).build().await;
//! let _operator = scene.operator();
//! scene.wait_ready_live(4).await;
//! ```

use std::time::Duration;

use kube::api::Api;
use nacos_reconciler::crd::{NacosBinding, NacosBindingStatus};
use serde_json::{json, Value};

use super::java::{JavaApp, Provider, Sdk};
use super::servers::{Held, Registration, Server};
use super::*;

/// How the pods' instances get into Nacos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// Persistent instances over HTTP: only a DELETE removes them.
    Persistent,
    /// The official Java SDK 2.5.1 over gRPC, one connection per pod, kept open for the test:
    /// the connection owns each ephemeral instance (a pod's process that outlives its pod).
    Grpc,
    /// The official Java SDK 1.4.8 over HTTP, beating every 5 s, one client per pod: it
    /// re-registers an instance that was deleted.
    Beats,
    /// Not registered: the test registers what it needs.
    Nothing,
}

/// Where the pods come from.
#[derive(Clone, Debug)]
enum Pods {
    Deployment {
        replicas: usize,
        node: Option<String>,
    },
    Bare(usize),
}

/// What to set up; `build` does it.
#[must_use]
pub struct SceneBuilder {
    server: Server,
    prefix: String,
    pods: Pods,
    by: By,
    port: u16,
    policy: Value,
    spec: Value,
    nacos_addr: Option<String>,
    claim: Option<(String, String)>,
}

/// The metadata of [`SceneBuilder::claimed`] instances, as several clusters' applications would
/// register it: `k8s-cluster: <name>`.
pub const CLUSTER_KEY: &str = "k8s-cluster";

/// A namespace, its pods, their registered instances, and a binding of them (not yet served:
/// start the operator with [`Scene::operator`]).
pub struct Scene {
    pub server: Server,
    pub client: kube::Client,
    pub ns: String,
    /// The app label of the pods, and the binding's name.
    pub app: String,
    /// The Nacos service the pods' instances are registered in.
    pub svc: String,
    pub port: u16,
    /// (name, IP) of the pods, as created.
    pub pods: Vec<(String, String)>,
    pub bindings: Api<NacosBinding>,
    /// The Java applications holding the instances (killed when the scene is dropped).
    pub apps: Vec<JavaApp>,
    /// Metadata every persistent instance of the scene is registered with (see [`SceneBuilder::claimed`]).
    pub claim: Option<(String, String)>,
}

impl Scene {
    /// A scene on `server`; `prefix` names the namespace, the app and the binding.
    pub fn on(server: Server, prefix: &str) -> SceneBuilder {
        SceneBuilder {
            server,
            prefix: prefix.to_string(),
            pods: Pods::Deployment {
                replicas: 2,
                node: None,
            },
            by: By::Persistent,
            port: 8080,
            policy: json!({}),
            spec: json!({}),
            nacos_addr: None,
            claim: None,
        }
    }
}

impl SceneBuilder {
    /// A Deployment of `replicas` pods (the default is 2).
    pub fn pods(mut self, replicas: usize) -> Self {
        self.pods = Pods::Deployment {
            replicas,
            node: None,
        };
        self
    }

    /// The Deployment's pods all on `node`.
    pub fn on_node(mut self, node: &str) -> Self {
        if let Pods::Deployment { node: n, .. } = &mut self.pods {
            *n = Some(node.to_string());
        }
        self
    }

    /// `n` bare pods (nothing recreates them) instead of a Deployment.
    pub fn bare_pods(mut self, n: usize) -> Self {
        self.pods = Pods::Bare(n);
        self
    }

    pub fn registered(mut self, by: By) -> Self {
        self.by = by;
        self
    }

    /// The binding's `spec.policy`.
    pub fn policy(mut self, policy: Value) -> Self {
        self.policy = policy;
        self
    }

    /// More of the binding's spec (merged over the defaults: `resyncSeconds`, `scope`, ...).
    pub fn spec(mut self, spec: Value) -> Self {
        self.spec = spec;
        self
    }

    /// Instances registered with `k8s-cluster: <cluster>` and the binding claiming those
    /// (`scope.instanceMetadata`), as the README says to configure several clusters sharing one
    /// Nacos. Unclaimed, a scene whose stale instances are mostly at addresses the operator never
    /// saw (registered without a pod, or an operator restarted after the pods went) has their
    /// removals held as another cluster's.
    pub fn claimed(mut self, cluster: &str) -> Self {
        self.claim = Some((CLUSTER_KEY.to_string(), cluster.to_string()));
        self
    }

    /// The binding reaches Nacos at `addr` (a fault proxy) instead of the server itself.
    pub fn through(mut self, addr: &str) -> Self {
        self.nacos_addr = Some(addr.to_string());
        self
    }

    pub async fn build(self) -> Scene {
        let client = kube_client().await;
        install_crd(&client).await;
        let ns = unique(&self.prefix);
        create_namespace(&client, &ns).await;
        self.server.create_credentials(&client, &ns).await;
        let app = self.prefix.clone();
        let pods = match &self.pods {
            Pods::Deployment { replicas, node } => {
                deploy(&client, &ns, &app, *replicas as i32, node.as_deref()).await
            }
            Pods::Bare(n) => create_bare_pods(&client, &ns, &app, *n).await,
        };
        let svc = format!("{ns}-svc");
        let mut scene = Scene {
            server: self.server,
            client: client.clone(),
            ns: ns.clone(),
            app: app.clone(),
            svc: svc.clone(),
            port: self.port,
            pods,
            bindings: Api::namespaced(client.clone(), &ns),
            apps: Vec::new(),
            claim: self.claim.clone(),
        };
        let ips: Vec<String> = scene.pods.iter().map(|(_, ip)| ip.clone()).collect();
        scene.register(&ips, self.by).await;
        let mut spec = scene.binding_spec(&[&svc], self.policy);
        if let Some(addr) = &self.nacos_addr {
            spec["nacos"]["serverAddr"] = json!([addr]);
        }
        if let Some((key, value)) = &self.claim {
            merge(
                &mut spec,
                json!({"scope": {"instanceMetadata": {"matchLabels": {key: value}}}}),
            );
        }
        merge(&mut spec, self.spec);
        create_binding(&client, &ns, &app, spec).await;
        scene
    }
}

/// `patch` merged into `base`, objects key by key (as a JSON merge patch, without deletions).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

impl Scene {
    /// A binding spec of `services` to this scene's pods on its server, with `policy`; resync 60 s
    /// (the default) so that nothing a test checks waits on it.
    pub fn binding_spec(&self, services: &[&str], policy: Value) -> Value {
        json!({
            "nacos": self.server.binding_nacos(),
            "services": services.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
            "pods": {"selector": {"matchLabels": {"app": self.app}}},
            "policy": policy,
        })
    }

    /// Registers `ip:port` instances of the scene's service for `ips`, `by` the given means.
    pub async fn register(&mut self, ips: &[String], by: By) {
        let addrs: Vec<String> = ips.iter().map(|ip| format!("{ip}:{}", self.port)).collect();
        match by {
            By::Nothing => {}
            By::Persistent => {
                for ip in ips {
                    self.server
                        .register_persistent(&self.registration(ip))
                        .await;
                }
            }
            By::Grpc | By::Beats => {
                assert!(
                    self.claim.is_none(),
                    "a claimed scene registers persistent instances (the Java provider sets no metadata)"
                );
                let sdk = if by == By::Grpc { Sdk::V2 } else { Sdk::V1 };
                let app =
                    JavaApp::provider(sdk, self.server, &self.svc, &addrs, &Provider::default());
                self.apps.push(app);
            }
        }
    }

    /// A persistent instance of the scene's service at `ip`, with the scene's claim metadata.
    pub fn registration(&self, ip: &str) -> Registration {
        let mut r = Registration::new(&self.svc, ip, self.port);
        if let Some((key, value)) = &self.claim {
            r.metadata.insert(key.clone(), value.clone());
        }
        r
    }

    /// The operator binary, watching this namespace.
    /// Waits (30 s) for an Event of the binding with `reason` whose note contains `naming`;
    /// returns the note.
    pub async fn event_note(&self, reason: &str, naming: &str) -> String {
        self.event_note_within(reason, naming, Duration::from_secs(30))
            .await
    }

    /// As [`Self::event_note`], waiting `timeout`.
    pub async fn event_note_within(&self, reason: &str, naming: &str, timeout: Duration) -> String {
        wait_for(
            &format!("a {reason} Event naming {naming}"),
            timeout,
            || async {
                binding_events(&self.client, &self.ns, &self.app)
                    .await
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some(reason))
                    .filter_map(|e| e.note)
                    .find(|n| n.contains(naming))
            },
        )
        .await
    }

    /// What `nacos-reconciler plan` prints for the scene's binding.
    pub fn plan(&self) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nacos-reconciler"))
            .args(["plan", "-n", &self.ns, &self.app])
            .args(["--kubeconfig", &testbed_env("KUBECONFIG")])
            .output()
            .expect("run nacos-reconciler plan");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "plan failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    pub fn operator(&self) -> Operator {
        Operator::start(&self.ns)
    }

    /// The binding's UID: the value of its disabled-by marker.
    pub async fn uid(&self) -> String {
        self.bindings
            .get(&self.app)
            .await
            .expect("the binding")
            .metadata
            .uid
            .expect("a UID")
    }

    /// Merges `spec` into the binding's spec (a JSON merge patch).
    pub async fn patch_spec(&self, spec: Value) {
        use kube::api::{Patch, PatchParams};
        self.bindings
            .patch(
                &self.app,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch the binding's spec");
    }

    /// `namespace/name` of the binding, as logs and metrics name it.
    pub fn binding_key(&self) -> String {
        format!("{}/{}", self.ns, self.app)
    }

    /// The binding's status once it is Ready and `check` accepts it.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&NacosBindingStatus) -> bool,
    ) -> NacosBindingStatus {
        let ready = |s: &NacosBindingStatus| condition_is(s, "Ready", "True") && check(s);
        wait_status(&self.bindings, &self.app, what, timeout, ready).await
    }

    /// The binding's status as the API server has it now.
    pub async fn status(&self) -> NacosBindingStatus {
        self.bindings
            .get(&self.app)
            .await
            .expect("the binding")
            .status
            .expect("the binding's status")
    }

    /// Why Nacos still lists `ip` (taken offline by this binding), once `status.stillRegistered`
    /// says so.
    pub async fn still_registered(&self, ip: &str) -> String {
        let entry = |s: &NacosBindingStatus| {
            s.still_registered
                .iter()
                .find(|e| e.ip == ip && e.port == self.port && e.service == self.svc)
                .map(|e| e.reason.clone())
        };
        let s = self
            .wait_status(
                &format!("{ip} in status.stillRegistered"),
                Duration::from_secs(20),
                |s| entry(s).is_some(),
            )
            .await;
        entry(&s).unwrap_or_default()
    }

    /// Waits until the binding is Ready with `live` live instances.
    pub async fn wait_ready_live(&self, live: u32) -> NacosBindingStatus {
        self.wait_status(
            &format!("Ready with {live} live instances"),
            Duration::from_secs(90),
            |s| s.instances.live == live,
        )
        .await
    }

    /// Scales the Deployment to `n`; returns (survivors, gone) IPs.
    pub async fn scale_to(&self, n: usize) -> (Vec<String>, Vec<String>) {
        use k8s_openapi::api::apps::v1::Deployment;
        use kube::api::{Patch, PatchParams};
        Api::<Deployment>::namespaced(self.client.clone(), &self.ns)
            .patch(
                &self.app,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": n}})),
            )
            .await
            .expect("scale the Deployment");
        let survivors: Vec<String> = ready_pods(&self.client, &self.ns, &self.app, n)
            .await
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        let gone = self
            .pods
            .iter()
            .map(|(_, ip)| ip.clone())
            .filter(|ip| !survivors.contains(ip))
            .collect();
        (survivors, gone)
    }

    /// Takes pod `name` away for good; returns (survivors, its IP). Not by deleting it: the
    /// Deployment would replace it, and KWOK hands a freed IP out again first, so the replacement
    /// often gets the same IP and the instance is rightly live again. The Deployment is scaled
    /// down by one instead, this pod the cheapest to delete (`pod-deletion-cost`).
    pub async fn remove_pod(&self, name: &str) -> (Vec<String>, String) {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Patch, PatchParams};
        Api::<Pod>::namespaced(self.client.clone(), &self.ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "controller.kubernetes.io/pod-deletion-cost": "-1000"
                }}})),
            )
            .await
            .expect("mark the pod to go first");
        let replicas = Api::<Deployment>::namespaced(self.client.clone(), &self.ns)
            .get(&self.app)
            .await
            .expect("the Deployment")
            .spec
            .and_then(|s| s.replicas)
            .expect("the Deployment's replicas") as usize;
        let (survivors, gone) = self.scale_to(replicas - 1).await;
        let ip = self
            .pods
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ip)| ip.clone())
            .expect("a pod of the scene");
        assert_eq!(
            gone,
            std::slice::from_ref(&ip),
            "scaling down took another pod"
        );
        (survivors, ip)
    }

    /// `ip:port` of the scene's instances that consumers get, sorted.
    pub async fn consumers(&self) -> Vec<String> {
        self.server.consumer_view(&self.svc).await
    }

    /// What the server holds about the scene's instance on `ip`.
    pub async fn held(&self, ip: &str) -> Option<Held> {
        self.server.held(&self.svc, ip, self.port).await
    }

    /// `ip:port` of `ips`, sorted.
    pub fn addrs(&self, ips: &[String]) -> Vec<String> {
        let mut v: Vec<String> = ips.iter().map(|ip| format!("{ip}:{}", self.port)).collect();
        v.sort();
        v
    }

    /// Waits until consumers get exactly `ips`; returns how long that took.
    pub async fn wait_consumers(&self, ips: &[String], timeout: Duration) -> Duration {
        let want = self.addrs(ips);
        let started = std::time::Instant::now();
        wait_for(
            &format!("consumers of {} to get exactly {want:?}", self.svc),
            timeout,
            || async { (self.consumers().await == want).then_some(()) },
        )
        .await;
        started.elapsed()
    }
}
