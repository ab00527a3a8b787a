//! Focused passes, end to end, on Alibaba Nacos 2.5.1 and rnacos: between full listings (here
//! `resyncSeconds: 3600`, so none comes by itself during a test) a deleted pod makes the operator
//! list again only the service that holds its instance; and a pod whose instance was registered
//! after the last full listing, then deleted, still goes at once, through a full pass, not at the
//! next resync.
//!
//! The operator reaches the server through the fault proxy (no fault injected), whose log shows
//! every listing it made.

mod common;
mod faults;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const SERVICES: [&str; 3] = ["a", "b", "c"];

/// The request the operator lists the instances of one service with, on each server (see the
/// table in src/nacos/mod.rs). Nacos 2.x: the v2 catalog, one request per service for every
/// cluster (`serviceName=GROUP@@NAME`); 3.x: the admin listing, one per cluster; rnacos: its
/// console listing (which shows disabled instances), or where that is off (with auth) the v1
/// catalog. `Focus::new` checks that the first full pass listed each service that way, so a wrong
/// path here fails there instead of counting nothing.
fn listing_path(server: Server) -> &'static str {
    match server {
        Server::Nacos2 => "/nacos/v2/ns/catalog/instances",
        Server::Nacos3 => "/nacos/v3/admin/ns/instance/list",
        Server::Rnacos => "/rnacos/api/console/v2/instance/list",
        Server::RnacosAuth => "/nacos/v1/ns/catalog/instances",
    }
}

/// A scene whose Deployment of `replicas` pods has its instances spread over three services (pod
/// i in service i % 3, persistent), a binding over the three with no resync during the test,
/// reached through the proxy, and its operator, once the first pass saw every pod Live.
struct Focus {
    scene: Scene,
    proxy: FaultProxy,
    _op: Operator,
}

impl Focus {
    async fn new(server: Server, prefix: &str, replicas: usize) -> Self {
        let proxy = FaultProxy::start(&server.addr()).await;
        let scene = Scene::on(server, prefix)
            .pods(replicas)
            .registered(By::Nothing)
            .through(&proxy.addr)
            .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
            .spec(json!({
                "scope": {"cidrs": ["10.244.0.0/16", "10.245.0.0/16"]},
                "resyncSeconds": 3600
            }))
            .build()
            .await;
        let services: Vec<_> = SERVICES
            .iter()
            .map(|s| json!({"name": svc_name(&scene.ns, s)}))
            .collect();
        scene
            .bindings
            .patch(
                &scene.app,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"services": services}})),
            )
            .await
            .expect("bind the three services");
        for (i, (_, ip)) in scene.pods.iter().enumerate() {
            let svc = svc_name(&scene.ns, SERVICES[i % 3]);
            server
                .register_persistent(&Registration::new(&svc, ip, 8080))
                .await;
        }
        let me = Self {
            _op: scene.operator(),
            scene,
            proxy,
        };
        let live = me.scene.pods.len() as u32;
        me.scene
            .wait_status(
                &format!("Ready (Reconciled) with {live} live instances"),
                Duration::from_secs(90),
                |s| has_condition(s, "Ready", "True", "Reconciled") && s.instances.live == live,
            )
            .await;
        let all: BTreeSet<String> = SERVICES.iter().map(|s| me.svc(s)).collect();
        assert_eq!(
            me.listed_since(0),
            all,
            "{server}: the full pass lists every service with {}: {:#?}",
            listing_path(server),
            me.proxy.log()
        );
        me
    }

    fn svc(&self, short: &str) -> String {
        svc_name(&self.scene.ns, short)
    }

    /// The services listed since log entry `mark`.
    fn listed_since(&self, mark: usize) -> BTreeSet<String> {
        let path = listing_path(self.scene.server);
        self.proxy.log()[mark..]
            .iter()
            .filter(|e| e.method == "GET" && e.path == path)
            .filter_map(|e| e.params.get("serviceName").cloned())
            .map(|s| s.rsplit("@@").next().unwrap_or_default().to_string())
            // (not the probe a full pass makes to learn what the server lists)
            .filter(|s| s.starts_with(&self.scene.ns))
            .collect()
    }

    /// Waits until `ip:8080` of `svc` is gone from the server (deregistered, not merely disabled).
    async fn wait_deregistered(&self, svc: &str, ip: &str) {
        let server = self.scene.server;
        wait_for(
            &format!("{svc} {ip}:8080 to be deregistered"),
            Duration::from_secs(30),
            || async move { server.held(svc, ip, 8080).await.is_none().then_some(()) },
        )
        .await;
    }

    /// Asserts the instance `ip:8080` of `svc` is still registered and enabled.
    async fn assert_live_registered(&self, svc: &str, ip: &str) {
        let held = self
            .scene
            .server
            .held(svc, ip, 8080)
            .await
            .unwrap_or_else(|| panic!("WRONGFUL REMOVAL: live {svc} {ip}:8080 is gone"));
        assert!(
            held.enabled,
            "WRONGFUL REMOVAL: live {svc} {ip}:8080 is disabled: {held:?}"
        );
    }
}

fn svc_name(ns: &str, short: &str) -> String {
    format!("{ns}-{short}")
}

async fn a_deleted_pod_relists_only_the_service_of_its_instance(server: Server) {
    let focus = Focus::new(server, "focus", 6).await;
    let scene = &focus.scene;
    // Let the passes that followed the first one settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = focus.proxy.log().len();

    let (survivors, gone) = scene.scale_to(5).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let gone = gone[0].clone();
    let i = scene
        .pods
        .iter()
        .position(|(_, ip)| *ip == gone)
        .expect("the pod that went was one of ours");
    let svc = focus.svc(SERVICES[i % 3]);
    focus.wait_deregistered(&svc, &gone).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // (On Alibaba Nacos the read-back of the DELETE lists that service again too.)
    assert_eq!(
        focus.listed_since(mark),
        BTreeSet::from([svc.clone()]),
        "{server}: only the service holding the deleted pod's instance is listed again"
    );
    focus.proxy.assert_untouched(&survivors);
    for (i, (_, ip)) in scene.pods.iter().enumerate() {
        if *ip != gone {
            focus
                .assert_live_registered(&focus.svc(SERVICES[i % 3]), ip)
                .await;
        }
    }
}
per_server!(a_deleted_pod_relists_only_the_service_of_its_instance: nacos_2_5_1, rnacos);

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

async fn an_instance_registered_after_the_full_listing_goes_without_waiting_for_the_resync(
    server: Server,
) {
    let focus = Focus::new(server, "late", 3).await;
    let scene = &focus.scene;
    // A new pod of the app, and its instance registered after the operator's full listing.
    let ip = bare_pod(&scene.client, &scene.ns, "late-pod", &scene.app).await;
    let svc = focus.svc("a");
    server
        .register_persistent(&Registration::new(&svc, &ip, 8080))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = focus.proxy.log().len();

    let started = Instant::now();
    Api::<Pod>::namespaced(scene.client.clone(), &scene.ns)
        .delete("late-pod", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    focus.wait_deregistered(&svc, &ip).await;
    eprintln!(
        "{server}: instance registered after the full listing removed {:?} after its pod's deletion",
        started.elapsed()
    );
    let all: BTreeSet<String> = SERVICES.iter().map(|s| focus.svc(s)).collect();
    assert_eq!(
        focus.listed_since(mark),
        all,
        "{server}: an unlisted IP departing makes the pass full"
    );
    focus.proxy.assert_untouched(&ips(&scene.pods));
    focus.assert_live_registered(&svc, &scene.pods[0].1).await;
}
per_server!(
    an_instance_registered_after_the_full_listing_goes_without_waiting_for_the_resync:
    nacos_2_5_1, rnacos
);
