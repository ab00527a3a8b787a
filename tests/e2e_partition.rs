//! End-to-end: a leader handover in the middle of a control-plane partition (issue 15, case 4).
//!
//! More than half of the nodes going NotReady at once freezes node-based actions, and a node still
//! down when the freeze lifts counts as down only from that moment. The freeze is kept in
//! `status.frozenAt`, so a replica that takes over as the partition heals starts from it instead of
//! judging the last node down from its original transition, long past `nodeUnreachableSeconds`.
//!
//! This binary takes most of the testbed's nodes down at once, which freezes node-based actions for
//! every binding on the testbed: it has a binary of its own (test binaries run one after another),
//! and one test.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use nacos_reconciler::crd::NacosBinding;
use serde_json::json;

/// Own nodes, all taken down: with the testbed's 3 they are most of the nodes.
const NODES: usize = 5;

async fn frozen_at(bindings: &Api<NacosBinding>, name: &str) -> Option<DateTime<Utc>> {
    let t = bindings.get(name).await.ok()?.status?.frozen_at?.0;
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)
}

async fn a_replica_taking_over_as_a_partition_heals_counts_the_last_node_down_from_the_freeze(
    server: Server,
) {
    let threshold = 30i64;
    let scene = Scene::on(server, "partition")
        .bare_pods(0)
        .registered(By::Nothing)
        .policy(
            json!({"onNodeUnreachable": "Disable", "nodeUnreachableSeconds": threshold,
                       "gracePeriodSeconds": 2, "maxRemovals": "100%"}),
        )
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    let (client, ns, svc) = (&scene.client, scene.ns.as_str(), &scene.svc);
    let nodes_api = Api::<Node>::all(client.clone());
    let mut nodes = Vec::new();
    let mut ips = Vec::new();
    for i in 1..=NODES {
        let ip = format!("10.245.81.{i}");
        // Deleted when the test ends, also when it fails (see OwnKwokNode's Drop).
        nodes.push(OwnKwokNode::start(client, &unique(&format!("part-{i}")), &ip).await);
        server
            .register_persistent(&Registration::new(svc, &ip, 9100))
            .await;
        ips.push(ip);
    }
    let kubeconfig = testbed_env("KUBECONFIG");
    let first = Operator::replica(ns, "part-a", &kubeconfig);
    wait_leader(client, ns, "part-a", Duration::from_secs(30)).await;
    let _second = Operator::replica(ns, "part-b", &kubeconfig);
    scene.wait_ready_live(NODES as u32).await;

    // The partition: every own node at once.
    let (down, total) = not_ready_nodes(&nodes_api).await;
    assert!(down.is_empty(), "nodes already down: {down:?}");
    assert!(
        NODES * 2 > total,
        "{NODES} of {total} nodes are not most of them"
    );
    for n in &mut nodes {
        n.stop();
    }
    let transitions = wait_for(
        "the own nodes to turn NotReady/Unknown",
        Duration::from_secs(90),
        || async {
            let mut since = Vec::new();
            for n in &nodes {
                match node_ready_since(&nodes_api, &n.name).await {
                    Some((s, t)) if s != "True" => since.push(t),
                    _ => return None,
                }
            }
            Some(since)
        },
    )
    .await;
    let last_down = transitions.into_iter().max().expect("nodes");
    // Frozen, and for longer than the threshold: every down node is past it by its own transition.
    wait_for("the freeze in status", Duration::from_secs(30), || async {
        frozen_at(&scene.bindings, &scene.app).await
    })
    .await;
    let past = last_down + chrono::Duration::seconds(threshold + 2);
    while Utc::now() < past {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for ip in &ips {
        let h = server.held(svc, ip, 9100).await.expect("registered");
        assert!(h.enabled, "acted on during the freeze: {h:?}");
    }

    // The leader goes; the partition heals but for one node before the standby's first pass.
    let frozen = frozen_at(&scene.bindings, &scene.app)
        .await
        .expect("frozenAt");
    drop(first);
    for n in nodes.iter_mut().skip(1) {
        n.resume();
    }
    let last = &ips[0];
    wait_leader(client, ns, "part-b", Duration::from_secs(LEASE_SECONDS * 3)).await;

    // The last node down counts from the freeze: disabled a threshold after it, not at once.
    let disabled = wait_for(
        "the last node's instance to be disabled",
        Duration::from_secs(threshold as u64 + 30),
        || async {
            server
                .held(svc, last, 9100)
                .await
                .filter(|h| !h.enabled)
                .map(|_| Utc::now())
        },
    )
    .await;
    eprintln!(
        "{server}: disabled {}s after the last frozen pass the status recorded (threshold {threshold}s)",
        (disabled - frozen).num_seconds()
    );
    assert!(
        disabled >= frozen + chrono::Duration::seconds(threshold - 1),
        "the new leader acted on the last node {}s after the freeze it was handed (threshold \
         {threshold}s): it judged the node from its original transition",
        (disabled - frozen).num_seconds()
    );
    for ip in &ips[1..] {
        let h = server.held(svc, ip, 9100).await.expect("registered");
        assert!(h.enabled, "a node that came back was acted on: {h:?}");
    }
}
per_server!(a_replica_taking_over_as_a_partition_heals_counts_the_last_node_down_from_the_freeze: nacos_2_5_1);
