//! End-to-end, with the default `resyncSeconds` (60): no stale instance waits for the resync. Each
//! case measures the time from its event to the first consumer listing without the instance, and
//! asserts it is within the verdict's own delay plus 2 s (issue 14).

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const SLACK: Duration = Duration::from_secs(2);

/// Waits until consumers of `svc` no longer get `addr`; returns how long since `since`.
async fn gone_from_consumers(
    server: Server,
    svc: &str,
    addr: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    wait_for(
        &format!("consumers of {svc} to lose {addr}"),
        limit.saturating_sub(since.elapsed()) + Duration::from_millis(250),
        || async { (!server.consumer_view(svc).await.contains(&addr.to_string())).then_some(()) },
    )
    .await;
    since.elapsed()
}

/// A node's own process (a hostNetwork pod, a node agent) registered on the node's InternalIP: the
/// node object is deleted, its instance goes within the grace period plus 2 s.
async fn a_node_process_goes_within_grace_when_its_node_is_deleted(server: Server) {
    let client = kube_client().await;
    let node_ip = match server {
        Server::Nacos2 => "10.245.81.1",
        _ => "10.245.81.2",
    };
    let node = OwnKwokNode::start(&client, &unique("gone-node"), node_ip).await;
    let grace = 5u64;
    let scene = Scene::on(server, "nodeproc")
        .pods(1)
        .registered(By::Nothing)
        .policy(json!({"gracePeriodSeconds": grace, "maxRemovals": "100%"}))
        .build()
        .await;
    server
        .register_persistent(&Registration::new(&scene.svc, node_ip, 9100))
        .await;
    let _operator = scene.operator();
    scene.wait_ready_live(1).await;

    let deleted = Instant::now();
    node.delete(&client).await;
    let limit = Duration::from_secs(grace) + SLACK;
    let took = gone_from_consumers(
        server,
        &scene.svc,
        &format!("{node_ip}:9100"),
        deleted,
        limit,
    )
    .await;
    eprintln!(
        "{server}: the deleted node's instance went {took:?} after the deletion (grace {grace}s)"
    );
    assert!(took <= limit, "took {took:?}");
    assert!(
        took + Duration::from_secs(1) >= Duration::from_secs(grace),
        "before its grace: {took:?}"
    );
}
per_server!(a_node_process_goes_within_grace_when_its_node_is_deleted: nacos_2_5_1, rnacos);

/// A node whose InternalIP changes releases the old address: its instance is stale (the address no
/// longer belongs to a node) and goes after the grace period, within 2 s.
async fn a_nodes_old_internal_ip_is_released_when_it_changes(server: Server) {
    let client = kube_client().await;
    let (old_ip, new_ip) = match server {
        Server::Nacos2 => ("10.245.82.1", "10.245.82.11"),
        _ => ("10.245.82.2", "10.245.82.12"),
    };
    let node = OwnKwokNode::start(&client, &unique("moved-node"), old_ip).await;
    let grace = 5u64;
    let scene = Scene::on(server, "nodemove")
        .pods(1)
        .registered(By::Nothing)
        .policy(json!({"gracePeriodSeconds": grace, "maxRemovals": "100%"}))
        .build()
        .await;
    server
        .register_persistent(&Registration::new(&scene.svc, old_ip, 9100))
        .await;
    server
        .register_persistent(&Registration::new(&scene.svc, new_ip, 9100))
        .await;
    let _operator = scene.operator();
    scene
        .wait_status("one live node instance", Duration::from_secs(60), |s| {
            s.instances.live == 1
        })
        .await;

    let changed = Instant::now();
    let status = json!({"status": {"addresses": [
        {"type": "InternalIP", "address": new_ip},
        {"type": "Hostname", "address": node.name}
    ]}});
    Api::<Node>::all(client.clone())
        .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("change the node's InternalIP");
    let limit = Duration::from_secs(grace) + SLACK;
    let took = gone_from_consumers(
        server,
        &scene.svc,
        &format!("{old_ip}:9100"),
        changed,
        limit,
    )
    .await;
    eprintln!("{server}: the old address's instance went {took:?} after the change");
    assert!(took <= limit, "took {took:?}");
    // The node's new address is its own: kept.
    let h = scene
        .server
        .held(&scene.svc, new_ip, 9100)
        .await
        .expect("the new address is kept");
    assert!(h.enabled, "{h:?}");
    node.delete(&client).await;
}
per_server!(a_nodes_old_internal_ip_is_released_when_it_changes: nacos_2_5_1, rnacos);

/// A pod registered on two ports, in two Nacos clusters of one service: when it goes, both of its
/// instances go together, at the end of the grace period (5 s) plus at most 2 s. (The Orphan row,
/// `onPodTerminating: Ignore`: KWOK deletes a pod the moment it is asked to, so whether a pass
/// would see it Terminating first is a race.)
async fn every_instance_of_a_gone_pods_address_goes_in_the_same_pass(server: Server) {
    let grace = 5u64;
    let scene = Scene::on(server, "twoports")
        .pods(2)
        .registered(By::Nothing)
        .policy(json!({"gracePeriodSeconds": grace, "onPodTerminating": "Ignore", "maxRemovals": "100%"}))
        .build()
        .await;
    for (_, ip) in &scene.pods {
        for (port, cluster) in [(8080, "c1"), (9090, "c2")] {
            server
                .register_persistent(&Registration::new(&scene.svc, ip, port).cluster(cluster))
                .await;
        }
    }
    let _operator = scene.operator();
    scene.wait_ready_live(4).await;

    let scaled = Instant::now();
    let (_, gone) = scene.scale_to(1).await;
    let limit = Duration::from_secs(grace) + SLACK;
    let mut took = Vec::new();
    for port in [8080, 9090] {
        let t = gone_from_consumers(
            server,
            &scene.svc,
            &format!("{}:{port}", gone[0]),
            scaled,
            limit,
        )
        .await;
        eprintln!(
            "{server}: {}:{port} went {t:?} after the scale-down",
            gone[0]
        );
        assert!(t <= limit, "{}:{port} took {t:?}", gone[0]);
        took.push(t);
    }
    // The grace clock starts at the deletion, which has whole seconds.
    assert!(
        took[0] + Duration::from_secs(1) >= Duration::from_secs(grace),
        "before its grace: {took:?}"
    );
}
per_server!(every_instance_of_a_gone_pods_address_goes_in_the_same_pass: nacos_2_5_1, rnacos);

/// `gracePeriodSeconds: 30` acts 30-32 s after the pod's deletion, not at the resync (60 s).
async fn a_thirty_second_grace_acts_at_thirty_seconds_not_at_the_resync(server: Server) {
    let grace = 30u64;
    let scene = Scene::on(server, "grace30")
        .pods(2)
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": grace, "onPodTerminating": "Ignore", "maxRemovals": "100%"}))
        .build()
        .await;
    let _operator = scene.operator();
    scene.wait_ready_live(2).await;
    let scaled = Instant::now();
    let (_, gone) = scene.scale_to(1).await;
    let limit = Duration::from_secs(grace) + SLACK;
    let took = gone_from_consumers(
        server,
        &scene.svc,
        &format!("{}:8080", gone[0]),
        scaled,
        limit,
    )
    .await;
    eprintln!("{server}: grace {grace}s, offline after {took:?}");
    // The grace clock starts at the pod's deletionTimestamp, which has whole seconds.
    assert!(
        took + Duration::from_secs(1) >= Duration::from_secs(grace),
        "before its grace: {took:?}"
    );
    assert!(took <= limit, "took {took:?}");
}
per_server!(a_thirty_second_grace_acts_at_thirty_seconds_not_at_the_resync: nacos_2_5_1, rnacos);

/// A 1.x client keeps beating after its pod is gone. Alibaba Nacos names the HTTP registration
/// that keeps the instance: the operator sends no DELETE (the next beat would register it again)
/// and disables it at once. rnacos names nothing: the instance the operator deregistered is
/// registered again at the next beat; the operator checks again one beat later and disables it
/// then (`DeregisterIneffective`), within the beat interval plus 2 s of the deregistration.
async fn a_beating_clients_instance_is_disabled_without_a_delete_or_one_beat_after_it(
    server: Server,
) {
    let scene = Scene::on(server, "rebeat")
        .pods(2)
        .registered(By::Beats)
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}))
        .build()
        .await;
    let _operator = scene.operator();
    scene.wait_ready_live(2).await;
    let scaled = Instant::now();
    let (_, gone) = scene.scale_to(1).await;
    let victim = gone[0].clone();
    let addr = format!("{victim}:8080");
    let note = if server.is_alibaba() {
        // Never deregistered: listed all along until it is disabled.
        let took = wait_for(
            "the beating instance to be disabled",
            Duration::from_secs(20),
            || async {
                let h = scene
                    .held(&victim)
                    .await
                    .unwrap_or_else(|| panic!("{server}: {addr} was deregistered"));
                (!h.enabled && h.disabled_by().is_some()).then(|| scaled.elapsed())
            },
        )
        .await;
        eprintln!("{server}: disabled {took:?} after the scale-down, no DELETE sent");
        // The grace (1 s), then the write.
        assert!(took <= Duration::from_secs(1) + SLACK, "took {took:?}");
        let note = scene
            .event_note_within("DeregisterIneffective", &victim, Duration::from_secs(10))
            .await;
        assert!(
            note.contains(&format!(
                "registered over HTTP as ephemeral (client {addr}#true)"
            )) && !note.contains("registered again"),
            "the Event does not name the HTTP registration: {note}"
        );
        note
    } else {
        // The first removal: the DELETE takes.
        let deregistered = wait_for("the deregistration", Duration::from_secs(20), || async {
            (!scene.consumers().await.contains(&addr)).then(Instant::now)
        })
        .await;
        // The client's next beat brings it back (within a beat), and the operator disables it.
        let disabled = wait_for(
            "the re-registered instance to be disabled",
            Duration::from_secs(30),
            || async {
                let h = scene.held(&victim).await?;
                (!h.enabled && h.disabled_by().is_some()).then(Instant::now)
            },
        )
        .await;
        let took = disabled - deregistered;
        eprintln!("{server}: re-registered and disabled {took:?} after the deregistration");
        assert!(
            took <= Duration::from_secs(5) + Duration::from_secs(1) + SLACK,
            "took {took:?}"
        );
        let note = scene
            .event_note_within("DeregisterIneffective", &victim, Duration::from_secs(10))
            .await;
        assert!(
            note.contains("registered again"),
            "the Event does not name the re-registration: {note}"
        );
        note
    };
    eprintln!("{server}: {note}");
    // It stays disabled while the beats go on.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let h = scene
        .held(&victim)
        .await
        .expect("the client keeps it registered");
    assert!(!h.enabled, "{h:?}");
    assert!(!scene.consumers().await.contains(&addr));
}
per_server!(
    a_beating_clients_instance_is_disabled_without_a_delete_or_one_beat_after_it: nacos_2_5_1,
    rnacos
);
