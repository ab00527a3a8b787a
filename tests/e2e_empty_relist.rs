//! End-to-end fault scenario (issue 5, scenario 7's last case) on the shared testbed: the informer's
//! pod relist comes back EMPTY (not refused), as when the API server's watch cache answers with an
//! empty list while every pod still exists.
//!
//! The operator reaches the Kubernetes API through a fault proxy (`faults::kube_proxy`) that, while
//! the fault is on, empties the pod lists its informer makes and forces that informer to relist
//! (410 Gone on its watch). The first empty relist is not believed, the second is; then every
//! instance looks stale, and the direct check before each removal finds the pod: nothing may be
//! written. Two ways in, so both kinds of direct check run:
//! - the fault strikes a running operator: its cache saw every pod go (tombstones); each of the
//!   4 addresses is asked about by address (`status.podIP=...`, a list the proxy passes through);
//! - the operator starts while the fault is on: its first list is empty and there is nothing to
//!   compare it with, so no pod was seen going; 20 instances are then asked about by address, in one
//!   paged list of the scope's unfinished pods (`status.phase!=...`, not the informer's list form).
//!
//! The guards a binding can turn off are off (`maxRemovals: 100%`, a 1 s grace), so the two-signal
//! check is the only one left. The operator reaches Nacos through the Nacos fault proxy, whose log
//! shows every write.

mod common;
mod faults;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use faults::kube_proxy::{KubeFaultProxy, PodRequest};
use faults::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams};
use serde_json::json;

async fn an_empty_relist_under_a_running_operator_takes_nothing_offline(server: Server) {
    empty_relist(server, 4, false).await;
}
per_server!(an_empty_relist_under_a_running_operator_takes_nothing_offline: nacos_2_5_1, rnacos);

async fn an_operator_started_on_an_empty_list_takes_nothing_offline(server: Server) {
    empty_relist(server, 20, true).await;
}
per_server!(an_operator_started_on_an_empty_list_takes_nothing_offline: nacos_2_5_1, rnacos);

/// `n` pods; `from_start`: the fault is on before the operator starts.
async fn empty_relist(server: Server, n: usize, from_start: bool) {
    let at = NacosAt::shared(server);
    let proxy = FaultProxy::start(&server.addr()).await;
    // Bare pods: only this test deletes them, and nothing recreates one on a freed IP. Their
    // processes stay connected over gRPC (the Java SDK), as a pod's application does. An operator
    // that starts on the empty list never saw any pod: unclaimed, all its instances would be held
    // as another cluster's before the second signal is asked (README: one Nacos, several
    // clusters); claimed (persistent instances carry the metadata), the second signal is what
    // stops the removals, which is what this test pins.
    let scene = Scene::on(server, &format!("emptyrl{n}")).bare_pods(n);
    let scene = if from_start {
        scene.claimed("testbed").registered(By::Persistent)
    } else {
        scene.registered(By::Grpc)
    };
    let scene = scene
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}))
        .spec(json!({"resyncSeconds": 5, "scope": {"cidrs": ["10.244.0.0/16", "10.245.0.0/16"]}}))
        .through(&proxy.addr)
        .build()
        .await;
    let (client, ns, app, svc) = (&scene.client, &scene.ns, scene.app.as_str(), &scene.svc);
    let pods = &scene.pods;
    let all = ips(pods);
    let bindings = &scene.bindings;
    let key = scene.binding_key();
    let uid = bindings
        .get(app)
        .await
        .expect("the binding")
        .metadata
        .uid
        .expect("a uid");

    let kube = KubeFaultProxy::start(&testbed_env("KUBECONFIG")).await;
    let kubeconfig = kube.kubeconfig(&PathBuf::from(testbed_env("TESTBED_STATE")));
    let start = || {
        Operator::start_with_kubeconfig(ns, "op-empty-relist", &kubeconfig.to_string_lossy(), &[])
    };
    let ready_all = |s: &nacos_reconciler::crd::NacosBindingStatus| {
        has_condition(s, "Ready", "True", "Reconciled")
            && has_condition(s, "CacheSynced", "True", "Synced")
            && s.instances.live == n as u32
    };
    let kube = &kube;
    let (op, fault) = if from_start {
        // The fault first: the operator's very first list is empty, and believed.
        kube.set_empty_lists(true);
        (start(), Instant::now())
    } else {
        let op = start();
        wait_status(
            bindings,
            app,
            &format!("Ready with {n} live instances"),
            Duration::from_secs(90),
            ready_all,
        )
        .await;
        assert!(
            kube.log().iter().any(|e| e.what == PodRequest::Watch),
            "the operator's pod watch did not go through the proxy: {:#?}",
            kube.log()
        );
        // The fault: the watch cache answers the informer's lists with nothing.
        let fault = Instant::now();
        kube.set_empty_lists(true);
        kube.force_relist();
        wait_for(
            "two emptied pod relists (the first is not believed)",
            Duration::from_secs(60),
            || async move {
                let emptied = kube.count_since(
                    fault,
                    |e| matches!(e.what, PodRequest::EmptiedList { had } if had >= n),
                );
                (emptied >= 2).then_some(())
            },
        )
        .await;
        eprintln!(
            "two empty relists {:?} after the fault began",
            fault.elapsed()
        );
        (op, fault)
    };
    // Every pod gets a NotConfirmed Event naming it, the first 10 of them; past those, one combined
    // Event counts the rest.
    let own_events = n.min(10);
    wait_for(
        &format!(
            "NotConfirmed Events naming {own_events} pods and counting the other {}",
            n - own_events
        ),
        Duration::from_secs(60),
        || async move {
            let (combined, own) = not_confirmed(client, ns, app).await;
            let named = pods
                .iter()
                .filter(|(name, _)| {
                    // " on": pod `<app>-1` is not named by the Event about `<app>-10`.
                    let text = format!("the API server still has pod {ns}/{name} on ");
                    own.iter()
                        .any(|e| e.note.as_deref().is_some_and(|t| t.contains(&text)))
                })
                .count();
            let folded: i32 = combined
                .iter()
                .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                .sum();
            (named == own_events && folded as usize == n - own_events).then_some(())
        },
    )
    .await;
    eprintln!(
        "NotConfirmed for every pod {:?} after the fault began",
        fault.elapsed()
    );
    // A few more passes with the fault on: still nothing.
    wait_passes(&op, &key, 3, Duration::from_secs(60)).await;
    let sent: Vec<_> = proxy.log().into_iter().filter(|e| e.is_removal()).collect();
    assert!(
        sent.is_empty(),
        "WRONGFUL REMOVAL: writes during an empty relist: {sent:#?}"
    );
    at.assert_live_registered(svc, &all).await;
    // The same pod's NotConfirmed pass after pass counts into its Event's series (and not again
    // into the combined one).
    let (combined, own) = not_confirmed(client, ns, app).await;
    let series: Vec<i32> = own
        .into_iter()
        .map(|e| e.series.map_or(1, |s| s.count))
        .collect();
    let folded: i32 = combined
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    assert_eq!(folded as usize, n - own_events, "{combined:#?}");
    eprintln!("NotConfirmed Events and their counts: {series:?}");
    assert!(
        series.iter().any(|c| *c >= 2),
        "no repeat counted into an Event's series: {series:?}"
    );
    let (checks, expected) = if from_start {
        let lists = kube.count_since(fault, |e| {
            e.what == PodRequest::List
                && e.params
                    .get("fieldSelector")
                    .is_some_and(|f| f.starts_with("status.phase!="))
        });
        (lists, 1)
    } else {
        let by_address = kube.count_since(fault, |e| {
            e.what == PodRequest::List
                && e.params
                    .get("fieldSelector")
                    .is_some_and(|f| f.starts_with("status.podIP="))
        });
        (by_address, pods.len())
    };
    assert!(
        checks >= expected,
        "expected at least {expected} direct checks, saw {checks}: {:#?}",
        kube.log()
    );
    let emptied = kube.count_since(fault, |e| matches!(e.what, PodRequest::EmptiedList { .. }));
    eprintln!("during the fault: {emptied} emptied relists, {checks} direct checks, no writes");

    // The fault ends; the next relist refills the cache.
    kube.set_empty_lists(false);
    let healed = Instant::now();
    kube.force_relist();
    wait_status(
        bindings,
        app,
        &format!("Ready with {n} live instances after the cache refilled"),
        Duration::from_secs(90),
        ready_all,
    )
    .await;
    eprintln!(
        "Ready with {n} live {:?} after the fault ended",
        healed.elapsed()
    );
    assert!(
        kube.count_since(healed, |e| e.what == PodRequest::List
            && !e.params.contains_key("fieldSelector"))
            > 0,
        "no full relist after the fault ended: {:#?}",
        kube.log()
    );

    // This setup can remove: a pod deleted now is taken offline, and only that one.
    let (name, ip) = pods[0].clone();
    let deleted = Instant::now();
    Api::<Pod>::namespaced(client.clone(), ns)
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete a pod");
    // rnacos removes the instance on the DELETE, and so does Alibaba Nacos a persistent one; it
    // keeps one whose gRPC connection lives on, and the operator disables it.
    at.wait_offline(
        svc,
        std::slice::from_ref(&ip),
        &uid,
        Duration::from_secs(60),
    )
    .await;
    eprintln!(
        "{server}: {ip} offline {:?} after its pod was deleted",
        deleted.elapsed()
    );
    // One DELETE; on Alibaba, for a gRPC instance, one `enabled=false` instead (Nacos names the
    // connection that keeps it, which a DELETE would not end).
    let grpc_on_alibaba = server.is_alibaba() && !from_start;
    let want = if grpc_on_alibaba { (0, 1) } else { (1, 0) };
    assert_eq!(
        proxy.removal_writes(&ip),
        want,
        "{ip}: (DELETEs, enabled=false) sent"
    );
    let rest: Vec<String> = all.iter().filter(|i| **i != ip).cloned().collect();
    proxy.assert_untouched(&rest);
    at.assert_live_registered(svc, &rest).await;
    drop(op);
    delete_namespace(client, ns).await;
}

/// The binding's NotConfirmed Events: (combined ones, own ones).
async fn not_confirmed(client: &kube::Client, ns: &str, binding: &str) -> (Vec<Event>, Vec<Event>) {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("NotConfirmed")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(binding)
        })
        .partition(|e| {
            e.note
                .as_deref()
                .is_some_and(|t| t.starts_with("(combined from similar events)"))
        })
}
