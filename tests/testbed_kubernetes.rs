//! Proves the testbed's Kubernetes is real: the pinned API server, KWOK nodes that run pods, and the
//! node lifecycle controller reacting to a node that stops reporting.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{
    create_namespace, kube_client, node_ready, testbed_env, unique, wait_for, OwnKwokNode,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn api_server_reports_the_pinned_version_and_kwok_nodes_are_ready() {
    let client = kube_client().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, testbed_env("TESTBED_K8S_VERSION"));

    let want: usize = testbed_env("TESTBED_KWOK_NODES").parse().unwrap();
    let nodes = Api::<Node>::all(client)
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .unwrap();
    let ready: Vec<_> = nodes
        .items
        .iter()
        .filter(|n| node_ready(n).as_deref() == Some("True"))
        .collect();
    assert!(
        ready.len() >= want,
        "want {want} Ready KWOK nodes, have {}",
        ready.len()
    );
    // Each keeps the InternalIP the testbed gave it (tests register node processes there).
    let prefix = testbed_env("TESTBED_NODE_IP_PREFIX");
    for i in 0..want {
        let name = format!("kwok-node-{i}");
        let node = nodes
            .items
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no node {name}"));
        let ips: Vec<&str> = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .map(|a| a.address.as_str())
            .collect();
        assert_eq!(ips, [format!("{prefix}.{}", i + 1)], "{name}");
    }
}

#[tokio::test]
async fn a_deployment_gets_running_ready_pods_with_distinct_ips_from_the_cluster_cidr() {
    let client = kube_client().await;
    let ns = unique("deploy");
    create_namespace(&client, &ns).await;
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}]}]}
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &deploy)
        .await
        .unwrap();

    let pods_api = Api::<Pod>::namespaced(client.clone(), &ns);
    let pods = wait_for("3 Running, Ready pods", Duration::from_secs(90), || {
        let pods_api = pods_api.clone();
        async move {
            let pods = pods_api
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let ready: Vec<Pod> = pods
                .items
                .into_iter()
                .filter(|p| {
                    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        && pod_ready(p)
                })
                .collect();
            (ready.len() == 3).then_some(ready)
        }
    })
    .await;

    let cidr: ipnet::IpNet = testbed_env("TESTBED_CLUSTER_CIDR").parse().unwrap();
    let ips: BTreeSet<IpAddr> = pods
        .iter()
        .map(|p| {
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.as_deref()).unwrap();
            ip.parse().unwrap()
        })
        .collect();
    assert_eq!(ips.len(), 3, "pod IPs must be distinct: {ips:?}");
    for ip in &ips {
        assert!(cidr.contains(ip), "{ip} is outside {cidr}");
    }
    for p in &pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert!(
            node.is_some_and(|n| n.starts_with("kwok-")),
            "scheduled on {node:?}"
        );
    }

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_node_whose_management_stops_becomes_ready_unknown_within_the_grace_period() {
    let client = kube_client().await;
    let nodes = Api::<Node>::all(client.clone());
    let mut node = OwnKwokNode::start(&client, &unique("kwok-lost"), "10.245.1.1").await;

    // Its kwok dies: no more Lease renewals, no more status updates, as when the node drops off.
    node.stop();
    let stopped = Instant::now();

    let grace = humantime_secs(&testbed_env("TESTBED_NODE_MONITOR_GRACE"));
    // Grace period, plus the last Lease's remaining life and the controller's 2 s monitor period.
    let bound = Duration::from_secs(grace + 15);
    let name = node.name.clone();
    wait_for("Ready=Unknown", bound, || {
        let nodes = nodes.clone();
        let name = name.clone();
        async move {
            let n = nodes.get(&name).await.ok()?;
            (node_ready(&n).as_deref() == Some("Unknown")).then_some(())
        }
    })
    .await;
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(grace / 2),
        "Unknown after {took:?}: too early to be the lifecycle controller's doing"
    );

    // Management resumes: the node is Ready again.
    node.resume();
    wait_for("Ready=True again", Duration::from_secs(30), || {
        let nodes = nodes.clone();
        let name = name.clone();
        async move {
            let n = nodes.get(&name).await.ok()?;
            (node_ready(&n).as_deref() == Some("True")).then_some(())
        }
    })
    .await;
    node.delete(&client).await;
}

/// "20s" -> 20
fn humantime_secs(s: &str) -> u64 {
    s.trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("bad duration {s}"))
}
