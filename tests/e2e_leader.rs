//! End-to-end: two replicas with leader election. Exactly one writes to Nacos; when it dies, the
//! other takes over within the lease duration, and no instance is acted on twice.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;

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

#[tokio::test]
async fn only_the_leader_acts_and_a_standby_takes_over_within_the_lease_duration() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("leader");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "app", 4, None).await;
    let svc = format!("{ns}-svc");
    for (_, ip) in &pods {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    create_binding(
        &client,
        &ns,
        "app",
        serde_json::json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "app"}}},
            "policy": {"gracePeriodSeconds": 0, "maxRemovals": "100%"},
            "resyncSeconds": 5
        }),
    )
    .await;
    let lease_secs = LEASE_SECONDS.to_string();
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        &ns,
        "--lease-duration-seconds",
        &lease_secs,
        "--settle-seconds",
        "2",
    ];
    let first = Operator::start_with(&ns, "replica-a", &flags);
    wait_for("replica-a to lead", Duration::from_secs(30), || {
        let (client, ns) = (client.clone(), ns.clone());
        async move { (holder(&client, &ns).await.as_deref() == Some("replica-a")).then_some(()) }
    })
    .await;
    let _second = Operator::start_with(&ns, "replica-b", &flags);

    // One pod goes (scaling down: KWOK may give a deleted pod's replacement the same IP): the
    // leader, and only it, takes its instance offline.
    let first_gone = scale_down(&client, &ns, "app", 3).await;
    let gone = |ip: String| {
        let (nacos, svc) = (nacos.clone(), svc.clone());
        move || {
            let (nacos, svc, ip) = (nacos.clone(), svc.clone(), ip.clone());
            async move {
                nacos_instance(&nacos, &svc, &ip, 8080)
                    .await
                    .is_none()
                    .then_some(())
            }
        }
    };
    wait_for(
        "the first instance offline",
        Duration::from_secs(30),
        gone(first_gone.clone()),
    )
    .await;

    wait_for(
        "replica-a's Deregistered event",
        Duration::from_secs(20),
        || {
            let (client, ns, ip) = (client.clone(), ns.clone(), first_gone.clone());
            async move {
                let e = deregistered_events(&client, &ns).await;
                e.iter()
                    .any(|(who, note)| who == "replica-a" && note.contains(&format!("{ip}:8080")))
                    .then_some(())
            }
        },
    )
    .await;

    // The leader dies; the standby takes over within the lease duration (plus one renewal period).
    drop(first);
    let killed = Instant::now();
    wait_for(
        "replica-b to lead",
        Duration::from_secs(LEASE_SECONDS + 5),
        || {
            let (client, ns) = (client.clone(), ns.clone());
            async move { (holder(&client, &ns).await.as_deref() == Some("replica-b")).then_some(()) }
        },
    )
    .await;
    let handover = killed.elapsed();
    eprintln!("hand-over took {handover:?}");

    let second_gone = scale_down(&client, &ns, "app", 2).await;
    wait_for(
        "the second instance offline",
        Duration::from_secs(30),
        gone(second_gone.clone()),
    )
    .await;

    // Give the Events a moment to land, then check who acted and that nothing was acted on twice.
    let events = wait_for("two Deregistered events", Duration::from_secs(20), || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let e = deregistered_events(&client, &ns).await;
            (e.len() >= 2).then_some(e)
        }
    })
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
    for (_, ip) in ready_pods(&client, &ns, "app", 2).await {
        assert!(
            nacos_instance(&nacos, &svc, &ip, 8080).await.is_some(),
            "{ip} removed"
        );
    }
}
