//! Focused passes, end to end: between full listings (here `resyncSeconds: 3600`, so none comes by
//! itself during a test) a deleted pod makes the operator list again only the service that holds its
//! instance; and a pod whose instance was registered after the last full listing, then deleted,
//! still goes at once, through a full pass, not at the next resync.
//!
//! The operator reaches rnacos through the fault proxy (no fault injected), whose log shows every
//! listing it made.

mod common;
mod faults;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use nacos_reconciler::crd::NacosBinding;
use serde_json::json;

const SERVICES: [&str; 3] = ["a", "b", "c"];

/// A namespace, a Deployment of `replicas` pods whose instances are spread over three services
/// (pod i in service i % 3), and a binding over the three with no resync during the test.
struct Scene {
    client: kube::Client,
    ns: String,
    app: String,
    pods: Vec<(String, String)>,
    proxy: FaultProxy,
    nacos: String,
    _op: Operator,
}

fn svc_name(ns: &str, short: &str) -> String {
    format!("{ns}-{short}")
}

impl Scene {
    async fn new(prefix: &str, replicas: i32) -> Self {
        let nacos = testbed_env("RNACOS_ADDR");
        let proxy = FaultProxy::start(&nacos).await;
        let client = kube_client().await;
        install_crd(&client).await;
        let ns = unique(prefix);
        create_namespace(&client, &ns).await;
        let app = prefix.to_string();
        let pods = deploy(&client, &ns, &app, replicas, None).await;
        for (i, (_, ip)) in pods.iter().enumerate() {
            register_http(&nacos, &svc_name(&ns, SERVICES[i % 3]), ip, 8080).await;
        }
        let services: Vec<_> = SERVICES
            .iter()
            .map(|s| json!({"name": svc_name(&ns, s)}))
            .collect();
        create_binding(
            &client,
            &ns,
            &app,
            json!({
                "nacos": {"serverAddr": [proxy.addr]},
                "services": services,
                "pods": {"selector": {"matchLabels": {"app": app}}},
                "scope": {"cidrs": ["10.244.0.0/16", "10.245.0.0/16"]},
                "policy": {"gracePeriodSeconds": 0, "maxRemovals": "100%"},
                "resyncSeconds": 3600
            }),
        )
        .await;
        let me = Self {
            _op: Operator::start(&ns),
            client,
            ns,
            app,
            pods,
            proxy,
            nacos,
        };
        let bindings = Api::<NacosBinding>::namespaced(me.client.clone(), &me.ns);
        let live = me.pods.len() as u32;
        wait_status(
            &bindings,
            &me.app,
            &format!("Ready with {live} live instances"),
            Duration::from_secs(90),
            |s| has_condition(s, "Ready", "True", "Reconciled") && s.instances.live == live,
        )
        .await;
        me
    }

    fn svc(&self, short: &str) -> String {
        svc_name(&self.ns, short)
    }

    /// The services listed since log entry `mark`.
    fn listed_since(&self, mark: usize) -> BTreeSet<String> {
        self.proxy.log()[mark..]
            .iter()
            .filter(|e| {
                e.path.ends_with("/instance/list") || e.path.ends_with("/catalog/instances")
            })
            .filter_map(|e| e.params.get("serviceName").cloned())
            .map(|s| s.rsplit("@@").next().unwrap_or_default().to_string())
            // (not the probe a full pass makes to learn what the server lists)
            .filter(|s| s.starts_with(&self.ns))
            .collect()
    }
}

#[tokio::test]
async fn a_deleted_pod_relists_only_the_service_of_its_instance() {
    let scene = Scene::new("focus", 6).await;
    // Let the passes that followed the first one settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = scene.proxy.log().len();

    let gone = scale_down(&scene.client, &scene.ns, &scene.app, 5).await;
    let i = scene
        .pods
        .iter()
        .position(|(_, ip)| *ip == gone)
        .expect("the pod that went was one of ours");
    let svc = scene.svc(SERVICES[i % 3]);
    wait_deregistered(
        &scene.nacos,
        &svc,
        std::slice::from_ref(&gone),
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(
        scene.listed_since(mark),
        BTreeSet::from([svc.clone()]),
        "only the service holding the deleted pod's instance is listed again"
    );
    let live: Vec<String> = ips(&scene.pods)
        .into_iter()
        .filter(|ip| *ip != gone)
        .collect();
    scene.proxy.assert_untouched(&live);
    for (i, (_, ip)) in scene.pods.iter().enumerate() {
        if *ip != gone {
            assert_live_registered(
                &scene.nacos,
                &scene.svc(SERVICES[i % 3]),
                std::slice::from_ref(ip),
            )
            .await;
        }
    }
}

/// A pod no controller owns (nothing recreates it, so its IP stays free once it is deleted).
async fn bare_pod(client: &kube::Client, ns: &str, name: &str, app: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": app, "image": "app:1", "ports": [{"containerPort": 8080}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    wait_for(
        &format!("pod {ns}/{name} Running with an IP"),
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let p = pods.get(name).await.ok()?;
                let st = p.status?;
                let ready = st
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                (st.phase.as_deref() == Some("Running") && ready)
                    .then_some(st.pod_ip)
                    .flatten()
            }
        },
    )
    .await
}

#[tokio::test]
async fn an_instance_registered_after_the_full_listing_goes_without_waiting_for_the_resync() {
    let scene = Scene::new("late", 3).await;
    // A new pod of the app, and its instance registered after the operator's full listing.
    let ip = bare_pod(&scene.client, &scene.ns, "late-pod", &scene.app).await;
    let svc = scene.svc("a");
    register_http(&scene.nacos, &svc, &ip, 8080).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = scene.proxy.log().len();

    let started = Instant::now();
    Api::<Pod>::namespaced(scene.client.clone(), &scene.ns)
        .delete("late-pod", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    wait_deregistered(
        &scene.nacos,
        &svc,
        std::slice::from_ref(&ip),
        Duration::from_secs(30),
    )
    .await;
    eprintln!(
        "instance registered after the full listing removed {:?} after its pod's deletion",
        started.elapsed()
    );
    let all: BTreeSet<String> = SERVICES.iter().map(|s| scene.svc(s)).collect();
    assert_eq!(
        scene.listed_since(mark),
        all,
        "an unlisted IP departing makes the pass full"
    );
    scene.proxy.assert_untouched(&ips(&scene.pods));
    assert_live_registered(&scene.nacos, &svc, &[scene.pods[0].1.clone()]).await;
}
