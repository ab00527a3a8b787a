//! End-to-end: two replicas with leader election. Exactly one writes to Nacos; when it dies, the
//! other takes over within the lease duration, and no instance is acted on twice.

mod common;

/// The testbed's own KWOK node the pods run on. Other tests create nodes of their own (OwnKwokNode)
/// and stop or delete them; a pod the scheduler put there would go Pending, be evicted and come back
/// elsewhere with another IP, which is not what this test is about.
const SHARED_NODE: &str = "kwok-node-0";

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::json;

const LEASE_SECONDS: u64 = 6;

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("nacos-reconciler")
        .await
        .ok()??;
    lease.spec?.holder_identity
}

/// (reporting instance, note) of every Deregistered Event in `ns`.
async fn deregistered_events(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("Deregistered"))
                .map(|e| {
                    (
                        e.reporting_instance.unwrap_or_default(),
                        e.note.unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn only_the_leader_acts_and_a_standby_takes_over_within_the_lease_duration(server: Server) {
    let scene = Scene::on(server, "leader")
        .pods(4)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    let (client, ns) = (&scene.client, scene.ns.as_str());
    let lease_secs = LEASE_SECONDS.to_string();
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        ns,
        "--lease-duration-seconds",
        &lease_secs,
        "--settle-seconds",
        "2",
    ];
    let first = Operator::start_with(ns, "replica-a", &flags);
    wait_for("replica-a to lead", Duration::from_secs(30), || async {
        (holder(client, ns).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let _second = Operator::start_with(ns, "replica-b", &flags);

    // One pod goes (scaling down: KWOK may give a deleted pod's replacement the same IP): the
    // leader, and only it, takes its instance offline. (Persistent instances: a DELETE removes
    // them on every server.)
    let (_, gone) = scene.scale_to(3).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let first_gone = gone[0].clone();
    let gone_from_nacos = |ip: String| {
        let scene = &scene;
        move || {
            let ip = ip.clone();
            async move { scene.held(&ip).await.is_none().then_some(()) }
        }
    };
    wait_for(
        "the first instance offline",
        Duration::from_secs(30),
        gone_from_nacos(first_gone.clone()),
    )
    .await;

    wait_for(
        "replica-a's Deregistered event",
        Duration::from_secs(20),
        || async {
            let e = deregistered_events(client, ns).await;
            e.iter()
                .any(|(who, note)| {
                    who == "replica-a" && note.contains(&format!("{first_gone}:8080"))
                })
                .then_some(())
        },
    )
    .await;

    // The leader dies; the standby takes over within the lease duration (plus one renewal period).
    drop(first);
    let killed = Instant::now();
    wait_for(
        "replica-b to lead",
        Duration::from_secs(LEASE_SECONDS + 5),
        || async { (holder(client, ns).await.as_deref() == Some("replica-b")).then_some(()) },
    )
    .await;
    let handover = killed.elapsed();
    eprintln!("{server}: hand-over took {handover:?}");

    let (survivors, gone) = scene.scale_to(2).await;
    let second: Vec<&String> = gone.iter().filter(|ip| **ip != first_gone).collect();
    assert_eq!(second.len(), 1, "{gone:?}");
    let second_gone = second[0].clone();
    wait_for(
        "the second instance offline",
        Duration::from_secs(30),
        gone_from_nacos(second_gone.clone()),
    )
    .await;

    // Give the Events a moment to land, then check who acted and that nothing was acted on twice.
    let events = wait_for(
        "two Deregistered events",
        Duration::from_secs(20),
        || async {
            let e = deregistered_events(client, ns).await;
            (e.len() >= 2).then_some(e)
        },
    )
    .await;
    assert_eq!(events.len(), 2, "{events:?}");
    let by = |ip: &str| {
        events
            .iter()
            .filter(|(_, note)| note.contains(&format!("{ip}:8080")))
            .map(|(who, _)| who.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by(&first_gone), ["replica-a"], "{events:?}");
    assert_eq!(by(&second_gone), ["replica-b"], "{events:?}");
    // The survivors were never touched.
    assert_eq!(survivors.len(), 2);
    for ip in &survivors {
        let held = scene
            .held(ip)
            .await
            .unwrap_or_else(|| panic!("{ip} removed"));
        assert!(
            held.enabled && held.disabled_by().is_none(),
            "{ip}: {held:?}"
        );
    }
}
per_server!(only_the_leader_acts_and_a_standby_takes_over_within_the_lease_duration: nacos_2_5_1, rnacos);
