//! Nodes of a test's own that it stops: cleanup, readiness, and the guard against tripping the
//! operator's partition freeze for every other test on the testbed.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::{node_ready, testbed_env};

/// Deletes a test's own node when the test ends, even when it fails: a NotReady node left behind
/// would count towards the freeze rule of every later test.
pub struct DeleteNodeOnDrop(pub String);

impl Drop for DeleteNodeOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(testbed_env("KUBECTL"))
            .args(["--kubeconfig", &testbed_env("KUBECONFIG")])
            .args(["delete", "node", &self.0, "--wait=false"])
            .output();
    }
}

/// The Ready condition of a node: its status and when it last changed.
pub async fn node_ready_since(
    nodes: &Api<Node>,
    name: &str,
) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
    let n = nodes.get(name).await.ok()?;
    let c = n
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    let t = c.last_transition_time?.0;
    let t = chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)?;
    Some((c.status, t))
}

/// The names of the nodes that are not Ready (by their Ready condition; none yet counts as not
/// Ready), and how many nodes there are.
pub async fn not_ready_nodes(nodes: &Api<Node>) -> (Vec<String>, usize) {
    let all = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    let down = all
        .items
        .iter()
        .filter(|n| node_ready(n).as_deref() != Some("True"))
        .map(|n| n.name_any())
        .collect();
    (down, all.items.len())
}

/// Waits until one more node down keeps fewer than half of all nodes down, so that stopping this
/// test's node cannot freeze node-based actions (the operator's partition rule). Nodes of other
/// tests left NotReady would make this test fail for a reason not its own: it says so.
pub async fn wait_safe_to_stop_a_node(nodes: &Api<Node>) {
    let started = Instant::now();
    loop {
        let (down, total) = not_ready_nodes(nodes).await;
        if (down.len() + 1) * 2 < total {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "cannot stop a node: {} of {total} nodes are not Ready already ({down:?}); one more \
             would freeze node-based actions for every test on the testbed",
            down.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
