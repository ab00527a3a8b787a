//! A three-member Alibaba Nacos 2.5.1 cluster (issue 17 A), of this test's own (cluster mode,
//! embedded storage, auth on; two members on this machine, one in a network namespace of the
//! test's own, see `PrivateNacosCluster`), as production runs Nacos. The binding lists the three
//! members; each member sits behind a recording proxy, so every write the operator sends, to
//! whichever member, is seen, and none may take a live instance offline.
//!
//! One test, the phases in sequence on one cluster (starting it takes a minute or two):
//! 1. a gRPC client (the official Java SDK) connected to member 0, its pod deleted, the operator
//!    talking to member 1: the instance ends offline as seen from all three members;
//! 2. one member partitioned from the other two (member 2 runs in a network namespace of the
//!    test's own, cut off on the cluster's ports), the operator reading from it first: its listing
//!    and the others' disagree (it lacks an instance registered meanwhile, and lists one whose pod
//!    went); no live instance is written to, and once the partition heals the stale one goes;
//! 3. the member the operator uses is killed mid-pass: it fails over to the next address, and the
//!    stale persistent instances go, nothing else;
//! 4. the Raft leader of the persistent instances killed as their pods go: writes fail until the
//!    two members left elect a leader; the stale instances go then, nothing else.

mod common;
mod faults;

use std::time::{Duration, Instant};

use common::*;
use faults::*;
use nacos_reconciler::controller::WRITES_IN_FLIGHT;
use serde_json::json;

const SERVER: Server = Server::Nacos2;

#[tokio::test]
async fn a_three_member_alibaba_nacos_cluster() {
    let started = Instant::now();
    let mut cluster = PrivateNacosCluster::start("cluster").await;
    eprintln!(
        "Nacos cluster {:?} up in {:?}",
        cluster.addrs(),
        started.elapsed()
    );
    grpc_owner_on_one_member_operator_on_another(&cluster).await;
    a_member_partitioned_from_the_others(&cluster).await;
    the_member_in_use_killed_mid_pass(&mut cluster).await;
    cluster.restart(1).await;
    the_raft_leader_killed(&mut cluster).await;
}

/// A proxy in front of each member, and the binding's `serverAddr`: member 1 first, then 0 and 2.
async fn proxies(cluster: &PrivateNacosCluster) -> (Vec<FaultProxy>, serde_json::Value) {
    let mut proxies = Vec::new();
    for addr in cluster.addrs() {
        proxies.push(FaultProxy::start(&addr).await);
    }
    let order = json!([proxies[1].addr, proxies[0].addr, proxies[2].addr]);
    (proxies, order)
}

/// `pods` pods of a Deployment, nothing registered, and a binding of the cluster in `order` (grace
/// 0, no budget).
async fn scene(prefix: &str, pods: usize, order: serde_json::Value) -> Scene {
    Scene::on(SERVER, prefix)
        .pods(pods)
        .registered(By::Nothing)
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .spec(json!({"nacos": {"serverAddr": order}, "resyncSeconds": 5}))
        .build()
        .await
}

/// Whether `ip:8080` of `svc` is offline as member `i` lists it: gone, or disabled.
async fn offline_at(cluster: &PrivateNacosCluster, i: usize, svc: &str, ip: &str) -> bool {
    cluster
        .at(i)
        .held(svc, ip, 8080)
        .await
        .is_none_or(|h| !h.enabled)
}

/// Waits until `ip:8080` of `svc` is offline as all three members list it.
async fn offline_everywhere(cluster: &PrivateNacosCluster, svc: &str, ip: &str, timeout: Duration) {
    wait_for(
        &format!("{ip}:8080 offline as all three members list it"),
        timeout,
        || async {
            for i in 0..3 {
                if !offline_at(cluster, i, svc, ip).await {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

fn assert_untouched(proxies: &[FaultProxy], live: &[String]) {
    for p in proxies {
        p.assert_untouched(live);
    }
}

/// Ephemeral instances live in the member their client is connected to and reach the others by
/// Distro, with the connection that publishes them: asked through another member, that member
/// names the connection, so the operator sends no DELETE (which would be answered `ok` and change
/// nothing) and disables the instance, which every member shows.
async fn grpc_owner_on_one_member_operator_on_another(cluster: &PrivateNacosCluster) {
    let (proxies, order) = proxies(cluster).await;
    let scene = scene("cgrpc", 2, order).await;
    let addrs: Vec<String> = scene
        .pods
        .iter()
        .map(|(_, ip)| format!("{ip}:8080"))
        .collect();
    let member0 = cluster.members[0].addr.trim_start_matches("http://");
    let _app = JavaApp::provider(
        Sdk::V2,
        SERVER,
        &scene.svc,
        &addrs,
        &Provider {
            server_addr: Some(member0.to_string()),
            ..Default::default()
        },
    );
    let _op = scene.operator();
    scene.wait_ready_live(2).await;
    let (survivors, gone) = scene.scale_to(1).await;
    let ip = gone[0].clone();
    let took = Instant::now();
    offline_everywhere(cluster, &scene.svc, &ip, Duration::from_secs(60)).await;
    let writes: Vec<(usize, (usize, usize))> = proxies
        .iter()
        .map(|p| p.removal_writes(&ip))
        .enumerate()
        .collect();
    eprintln!(
        "gRPC owner on member 0, operator on member 1: {ip} offline on all three members {:?} \
         after the pod's deletion; (DELETEs, disables) per member: {writes:?}",
        took.elapsed()
    );
    assert_eq!(
        proxies[1].removal_writes(&ip),
        (0, 1),
        "the operator disabled it through the first address, member 1, without a DELETE that \
         could not take: {writes:?}"
    );
    assert_untouched(&proxies, &survivors);
    for i in 0..3 {
        let held = cluster.at(i).held(&scene.svc, &survivors[0], 8080).await;
        assert!(
            held.is_some_and(|h| h.enabled),
            "member {i}: the live instance {} is not listed enabled",
            survivors[0]
        );
    }
    delete_namespace(&scene.client, &scene.ns).await;
}

/// Member 2, the operator's first address, is cut off from members 0 and 1 (their Raft, Distro and
/// member reports), its HTTP port still answering. The applications' gRPC connections are to
/// member 0. While it is cut off, a pod goes (its process stays connected: the instance is stale
/// everywhere) and a new instance is registered, which member 2 never hears of: the members'
/// listings disagree. The operator reads member 2; whatever it writes there cannot commit (no
/// Raft majority) and nothing reaches a live instance. Healed, the stale instance goes offline on
/// every member and the live ones stay untouched.
async fn a_member_partitioned_from_the_others(cluster: &PrivateNacosCluster) {
    let (proxies, _) = proxies(cluster).await;
    let order = json!([proxies[2].addr, proxies[0].addr, proxies[1].addr]);
    let scene = scene("cpart", 3, order).await;
    let member0 = cluster.members[0].addr.trim_start_matches("http://");
    let on_member0 = Provider {
        server_addr: Some(member0.to_string()),
        ..Default::default()
    };
    let ips: Vec<String> = scene.pods.iter().map(|(_, ip)| ip.clone()).collect();
    let _first = JavaApp::provider(
        Sdk::V2,
        SERVER,
        &scene.svc,
        &[format!("{}:8080", ips[0]), format!("{}:8080", ips[1])],
        &on_member0,
    );
    let _op = scene.operator();
    scene.wait_ready_live(2).await;
    for i in 0..3 {
        cluster
            .at(i)
            .assert_live_registered(&scene.svc, &ips[..2])
            .await;
    }

    cluster.cut_off_member_2();
    let cut = Instant::now();
    let _late = JavaApp::provider(
        Sdk::V2,
        SERVER,
        &scene.svc,
        &[format!("{}:8080", ips[2])],
        &on_member0,
    );
    let (_, gone) = scene.remove_pod(&scene.pods[0].0).await;
    let live = vec![ips[1].clone(), ips[2].clone()];
    // The disagreement: member 0 lists the late instance, member 2 (below) does not.
    wait_for(
        &format!("member 0 to list {}", ips[2]),
        Duration::from_secs(30),
        || async { cluster.at(0).held(&scene.svc, &ips[2], 8080).await },
    )
    .await;
    // A few of the operator's passes (resync 5 s) while the partition lasts.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        cluster
            .at(2)
            .held(&scene.svc, &ips[2], 8080)
            .await
            .is_none(),
        "member 2 heard of {} while cut off: the cut does not hold",
        ips[2]
    );
    assert_untouched(&proxies, &live);
    let tried: Vec<(usize, usize)> = proxies.iter().map(|p| p.removal_writes(&gone)).collect();
    eprintln!(
        "member 2 cut off for {:?}: (DELETEs, disables) of the stale {gone} per member: {tried:?}; \
         offline on member 0: {}",
        cut.elapsed(),
        offline_at(cluster, 0, &scene.svc, &gone).await
    );

    cluster.reconnect_member_2();
    let healed = Instant::now();
    offline_everywhere(cluster, &scene.svc, &gone, Duration::from_secs(120)).await;
    eprintln!(
        "partition healed: the stale {gone} offline on all three members {:?} later",
        healed.elapsed()
    );
    // Member 2 hears of the late instance again (Distro), and every live one is as registered.
    wait_for(
        &format!("member 2 to list {} after the partition", ips[2]),
        Duration::from_secs(60),
        || async { cluster.at(2).held(&scene.svc, &ips[2], 8080).await },
    )
    .await;
    for i in 0..3 {
        cluster
            .at(i)
            .assert_live_registered(&scene.svc, &live)
            .await;
    }
    assert_untouched(&proxies, &live);
    delete_namespace(&scene.client, &scene.ns).await;
    // The next phase registers over HTTP, which needs the members to agree again.
    cluster.wait_converged().await;
}

/// Member 1, the first address, is killed while the pass's DELETEs go through it (each held 1.5 s
/// by its proxy; up to WRITES_IN_FLIGHT go at once, and more stale instances leave some for after
/// the kill): the DELETEs in flight fail and are not repeated elsewhere (they may have reached the
/// server), the next requests find member 1 refused and go to member 0, and every stale instance
/// goes, no live one.
async fn the_member_in_use_killed_mid_pass(cluster: &mut PrivateNacosCluster) {
    let (proxies, order) = proxies(cluster).await;
    proxies[1].set_delete_delay(Duration::from_millis(1500));
    let scene = scene("ckill", WRITES_IN_FLIGHT + 8, order).await;
    let at = cluster.at(0);
    for (_, ip) in &scene.pods {
        at.register_persistent(&Registration::new(&scene.svc, ip, 8080))
            .await;
    }
    let _op = scene.operator();
    scene.wait_ready_live(WRITES_IN_FLIGHT as u32 + 8).await;
    let (survivors, gone) = scene.scale_to(2).await;
    assert_eq!(gone.len(), WRITES_IN_FLIGHT + 6);
    wait_for(
        "a DELETE on its way to member 1",
        Duration::from_secs(60),
        || async { (proxies[1].count(|e| e.is_delete()) >= 1).then_some(()) },
    )
    .await;
    cluster.members[1].kill().await;
    proxies[1].shut();
    let killed = Instant::now();
    for i in [0, 2] {
        cluster
            .at(i)
            .wait_deregistered(&scene.svc, &gone, Duration::from_secs(90))
            .await;
    }
    let after: Vec<usize> = proxies
        .iter()
        .map(|p| p.count(|e| e.is_removal()))
        .collect();
    eprintln!(
        "member 1 killed mid-pass: the {} stale instances gone {:?} later; removal writes per \
         member {after:?}",
        gone.len(),
        killed.elapsed()
    );
    assert!(
        after[0] + after[2] > 0,
        "nothing went to the other members after the kill: {after:?}"
    );
    assert_untouched(&proxies, &survivors);
    for i in [0, 2] {
        cluster
            .at(i)
            .assert_live_registered(&scene.svc, &survivors)
            .await;
    }
    delete_namespace(&scene.client, &scene.ns).await;
}

/// Persistent instances are written through the Raft leader of the naming group. It is killed as
/// the pods go: until the other two elect a new leader, writes fail (and a failed write takes
/// nothing offline); then the stale instances go, and no live one is touched.
async fn the_raft_leader_killed(cluster: &mut PrivateNacosCluster) {
    let (proxies, order) = proxies(cluster).await;
    let scene = scene("craft", 4, order).await;
    for (_, ip) in &scene.pods {
        cluster
            .at(0)
            .register_persistent(&Registration::new(&scene.svc, ip, 8080))
            .await;
    }
    let _op = scene.operator();
    scene.wait_ready_live(4).await;
    let leader = cluster.raft_leader(0, "naming_persistent_service_v2").await;
    cluster.members[leader].kill().await;
    proxies[leader].shut();
    let killed = Instant::now();
    let (survivors, gone) = scene.scale_to(2).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in &others {
        cluster
            .at(*i)
            .wait_deregistered(&scene.svc, &gone, Duration::from_secs(120))
            .await;
    }
    let failed: usize = proxies
        .iter()
        .map(|p| p.count(|e| e.is_removal() && e.status != 200))
        .sum();
    eprintln!(
        "Raft leader (member {leader}) killed: the {} stale instances gone {:?} later; {failed} \
         removal writes failed meanwhile",
        gone.len(),
        killed.elapsed()
    );
    assert_untouched(&proxies, &survivors);
    for i in &others {
        cluster
            .at(*i)
            .assert_live_registered(&scene.svc, &survivors)
            .await;
    }
    delete_namespace(&scene.client, &scene.ns).await;
}
