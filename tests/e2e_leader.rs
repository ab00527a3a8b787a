//! End-to-end: two replicas with leader election. Exactly one writes to Nacos; when it dies, the
//! other takes over within the lease duration, and no instance is acted on twice; a leader cut off
//! from the API server (a half-open connection) stops acting before its standby takes over.

mod common;
mod faults;

/// The testbed's own KWOK node the pods run on. Other tests create nodes of their own (OwnKwokNode)
/// and stop or delete them; a pod the scheduler put there would go Pending, be evicted and come back
/// elsewhere with another IP, which is not what this test is about.
const SHARED_NODE: &str = "kwok-node-0";

use std::time::{Duration, Instant};

use common::*;
use faults::kube_proxy::KubeFaultProxy;
use faults::FaultProxy;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::json;

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
    let kubeconfig = testbed_env("KUBECONFIG");
    let first = Operator::replica(ns, "replica-a", &kubeconfig);
    wait_leader(client, ns, "replica-a", Duration::from_secs(30)).await;
    let _second = Operator::replica(ns, "replica-b", &kubeconfig);

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
    wait_leader(
        client,
        ns,
        "replica-b",
        Duration::from_secs(LEASE_SECONDS + 5),
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

/// Issue 15, case 3. The leader's connection to the API server goes half-open: nothing it asks is
/// answered and its watches go silent but stay open, so its caches still count as synced, while
/// Nacos stays reachable. Its cache keeps a node NotReady that is Ready again meanwhile; with
/// nothing else to stop it, it would disable the node's instance, live again, once the node's
/// `nodeUnreachableSeconds` passed. It must stop acting once its last Lease renewal is older than
/// the lease duration (before its standby takes over), so no write ever reaches that instance.
/// On a server with auth (Alibaba Nacos here) the frozen leader's pass stops earlier, at the read
/// of the credentials Secret (an API error: no action); on rnacos without auth nothing but that
/// fence stops it: without the fence the rnacos case fails (tried once, see issue 15's note).
async fn a_leader_cut_off_from_the_api_server_stops_acting_before_the_standby_takes_over(
    server: Server,
) {
    let threshold = 25u64;
    let proxy = FaultProxy::start(&server.addr()).await;
    let scene = Scene::on(server, "fence")
        .bare_pods(0)
        .registered(By::Nothing)
        .policy(
            json!({"onNodeUnreachable": "Disable", "nodeUnreachableSeconds": threshold,
                       "gracePeriodSeconds": 2, "maxRemovals": "100%"}),
        )
        .spec(json!({"resyncSeconds": 5}))
        .through(&proxy.addr)
        .build()
        .await;
    let (client, ns, svc) = (&scene.client, scene.ns.as_str(), &scene.svc);
    let node_name = unique("fence-node");
    let node_ip = match server {
        Server::Nacos2 => "10.245.80.1",
        _ => "10.245.80.2",
    };
    // Deleted when the test ends, also when it fails (see OwnKwokNode's Drop).
    let mut node = OwnKwokNode::start(client, &node_name, node_ip).await;
    let nodes = Api::<Node>::all(client.clone());
    server
        .register_persistent(&Registration::new(svc, node_ip, 9100))
        .await;

    let kube = KubeFaultProxy::start(&testbed_env("KUBECONFIG")).await;
    let through_proxy = kube.kubeconfig(&std::env::temp_dir());
    let _a = Operator::replica(ns, "fenced-a", through_proxy.to_str().unwrap());
    wait_leader(client, ns, "fenced-a", Duration::from_secs(30)).await;
    let _b = Operator::replica(ns, "fenced-b", &testbed_env("KUBECONFIG"));
    scene.wait_ready_live(1).await;

    // The node drops off; the leader sees it and waits for the threshold.
    wait_safe_to_stop_a_node(&nodes).await;
    node.stop();
    let (_, down_since) = wait_for(
        "the node to turn NotReady/Unknown",
        Duration::from_secs(60),
        || async {
            node_ready_since(&nodes, &node_name)
                .await
                .filter(|(s, _)| s != "True")
        },
    )
    .await;
    // Its watch delivers that within milliseconds (nothing in status shows a node before its
    // threshold: the instance is Live until then). The test fails without the fence (tried once).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Its API connection hangs; the node comes back, which only the standby can see.
    kube.freeze(true);
    let frozen = Instant::now();
    node.resume();
    wait_for(
        "the node to be Ready again",
        Duration::from_secs(60),
        || async {
            node_ready_since(&nodes, &node_name)
                .await
                .filter(|(s, _)| s == "True")
        },
    )
    .await;
    wait_leader(
        client,
        ns,
        "fenced-b",
        Duration::from_secs(LEASE_SECONDS * 3),
    )
    .await;
    eprintln!(
        "{server}: fenced-b leads {:?} after the freeze",
        frozen.elapsed()
    );

    // Past the moment the frozen cache calls the node unreachable, and some more.
    let due = down_since + chrono::Duration::seconds(threshold as i64 + 10);
    while chrono::Utc::now() < due {
        proxy.assert_untouched(&[node_ip.to_string()]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.assert_untouched(&[node_ip.to_string()]);
    let held = server
        .held(svc, node_ip, 9100)
        .await
        .expect("the node's instance is kept");
    assert!(held.enabled && held.disabled_by().is_none(), "{held:?}");
    kube.freeze(false);
    node.delete(client).await;
}
per_server!(a_leader_cut_off_from_the_api_server_stops_acting_before_the_standby_takes_over: nacos_2_5_1, rnacos);
