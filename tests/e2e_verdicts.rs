//! End-to-end: the verdict table of README.md, one row per test, with the operator binary against
//! the testbed's API server, KWOK nodes and each Nacos server it runs on (Alibaba Nacos 2.5.1 and
//! 3.0.3 with auth on, rnacos open and with auth).
//!
//! Nodes. The tests of this file run in parallel. The unreachable-node test stops a node of its own
//! (one per server, each with its own InternalIP), so the others pin their pods to a testbed node
//! nobody stops, and the own nodes are tainted against everybody else's pods. More than half of all
//! nodes (and at least two) not Ready freezes node-based actions for every test on the testbed, which
//! has only a few nodes (`TESTBED_KWOK_NODES`, 3 today), and other test binaries stop nodes of their
//! own as well. So the node tests of this file take their nodes down one at a time: each holds
//! [`NODE_DOWN`] from stopping its node until the node is Ready again. With one node of this file
//! down among the testbed's 3 and its own, the freeze needs three more down nodes of other binaries
//! at the same moment (down > total / 2: 4 of 7). The other servers' node tests wait meanwhile, so
//! the node cases run one after another; their setup and checks still overlap.

mod common;

use std::time::{Duration, Instant};

use common::servers::Held;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use nacos_reconciler::crd::{NacosBinding, NacosBindingStatus};
use serde_json::json;

/// Where the pods of these tests run: a testbed node nobody stops.
const STABLE_NODE: &str = "kwok-node-0";

/// Held by a node test from stopping its node until the node is Ready again (see the file comment).
static NODE_DOWN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binding's status once the operator wrote one.
async fn status(bindings: &Api<NacosBinding>, name: &str) -> Option<NacosBindingStatus> {
    bindings.get(name).await.ok()?.status
}

/// Waits for `passes` more completed reconcile passes (each moves `lastSyncTime`, at least a second
/// apart; the bindings here resync every 5 s).
async fn wait_passes(bindings: &Api<NacosBinding>, name: &str, passes: usize, timeout: Duration) {
    let mut last = status(bindings, name).await.and_then(|s| s.last_sync_time);
    for i in 0..passes {
        let prev = last.clone();
        last = wait_for(
            &format!("reconcile pass {} of {passes} of {name}", i + 1),
            timeout,
            || {
                let prev = prev.clone();
                async move {
                    let t = status(bindings, name).await?.last_sync_time?;
                    // lastSyncTime has second precision: a later second is a later pass.
                    prev.as_ref().is_none_or(|p| t.0 > p.0).then_some(Some(t))
                }
            },
        )
        .await;
    }
}

/// Disables an instance as an administrator would, and waits until the server shows it disabled
/// (Alibaba Nacos shows a write ~0.5 s later; rnacos under load may apply a registration after a
/// write sent right behind it: the write upserts, then the registration overwrites it).
async fn disable_by_hand(server: Server, r: &Registration) {
    server.set_enabled_by_hand(r, false).await;
    wait_for(
        &format!("{} {}:{} to show disabled", r.service, r.ip, r.port),
        Duration::from_secs(10),
        || async { server.held_at(r).await.filter(|h| !h.enabled) },
    )
    .await;
}

/// Sets metadata `key`=`value` as an administrator would, and waits until the server shows it.
async fn set_metadata_by_hand(server: Server, r: &Registration, key: &str, value: &str) {
    let metadata = json!({ key: value }).to_string();
    server.patch_by_hand(r, ("metadata", &metadata)).await;
    wait_for(
        &format!("{} {}:{} to show {key}={value}", r.service, r.ip, r.port),
        Duration::from_secs(10),
        || async {
            let h = server.held_at(r).await?;
            (h.metadata.get(key).map(String::as_str) == Some(value)).then_some(())
        },
    )
    .await;
}

/// The (reason, message) of every Event about objects in `ns`.
async fn events(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for an Event with this reason whose message contains every one of `words`.
/// Whether `message` names `word` whole: an Event about 10.244.0.28 does not name 10.244.0.2.
fn names(message: &str, word: &str) -> bool {
    message.match_indices(word).any(|(i, _)| {
        let before = message[..i].chars().next_back();
        let after = message[i + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

async fn wait_event(client: &kube::Client, ns: &str, reason: &str, words: &[&str]) -> String {
    wait_for(
        &format!("a {reason} Event naming {words:?} in {ns}"),
        Duration::from_secs(20),
        || async move {
            events(client, ns)
                .await
                .into_iter()
                .find(|(r, m)| r == reason && words.iter().all(|w| names(m, w)))
                .map(|(_, m)| m)
        },
    )
    .await
}

/// Waits until `ip:port` of `svc` is no longer held by the server (gone, not merely disabled).
async fn wait_gone(server: Server, svc: &str, ip: &str, port: u16, what: &str, timeout: Duration) {
    wait_for(what, timeout, || async move {
        server.held(svc, ip, port).await.is_none().then_some(())
    })
    .await;
}

// ------------------------------------------------------------------------------------ (3) Orphan

/// (3) A persistent instance (ephemeral=false, nobody renews or deletes it) whose pod was deleted is
/// deregistered after the grace period, and not before; its neighbour is left alone.
async fn a_persistent_instance_whose_pod_was_deleted_is_deregistered_after_grace(server: Server) {
    let grace = 6u64;
    let scene = Scene::on(server, "pay")
        .pods(2)
        .on_node(STABLE_NODE)
        .registered(By::Persistent)
        // Deleting a pod makes it Terminating first: ignore that, so the Orphan row decides.
        .policy(json!({"gracePeriodSeconds": grace, "onPodTerminating": "Ignore", "maxRemovals": "100%"}))
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    let (client, ns, svc) = (&scene.client, &scene.ns, &scene.svc);
    for (_, ip) in &scene.pods {
        let held = scene.held(ip).await.expect("registered");
        assert!(!held.ephemeral, "{server}: {held:?}");
    }
    let _operator = scene.operator();
    scene.wait_ready_live(2).await;

    // Scale 2 -> 1 (a replacement pod could reuse the IP: KWOK recycles them at once).
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            &scene.app,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    let deleted = Instant::now();
    let survivors = ready_pods(client, ns, &scene.app, 1).await;
    let (gone_pod, gone_ip) = scene
        .pods
        .iter()
        .find(|p| !survivors.contains(p))
        .cloned()
        .expect("one pod removed");
    let kept_ip = survivors[0].1.clone();

    // In grace: still registered and enabled, and listed as pending.
    let s = scene
        .wait_status(
            "the orphan to be pending in grace",
            Duration::from_secs(grace),
            |s| s.pending.iter().any(|p| p.ip == gone_ip),
        )
        .await;
    assert!(deleted.elapsed() < Duration::from_secs(grace), "{s:?}");
    let held = scene.held(&gone_ip).await;
    assert!(
        held.as_ref().is_some_and(|h| h.enabled),
        "{server}: taken offline before the grace period ended: {held:?}"
    );

    // Past grace: deregistered (gone from the registry, not merely disabled).
    wait_gone(
        server,
        svc,
        &gone_ip,
        8080,
        "the orphan to be deregistered",
        Duration::from_secs(grace + 5),
    )
    .await;
    let took = deleted.elapsed();
    eprintln!("{server}: orphan deregistered {took:?} after the pod's deletion (grace {grace}s)");
    // The grace clock starts at the pod's deletionTimestamp, which has second precision.
    assert!(
        took + Duration::from_secs(1) >= Duration::from_secs(grace),
        "deregistered {took:?} after the pod's deletion, before the grace period of {grace}s"
    );
    let msg = wait_event(client, ns, "Deregistered", &[&gone_ip, &gone_pod]).await;
    assert!(msg.contains("deleted"), "{msg}");

    let kept = scene
        .held(&kept_ip)
        .await
        .expect("the live pod's instance is kept");
    assert!(kept.enabled, "{kept:?}");
    assert_eq!(kept.disabled_by(), None, "{kept:?}");
}
per_server!(
    a_persistent_instance_whose_pod_was_deleted_is_deregistered_after_grace:
    nacos_2_5_1, nacos_3_0_3, rnacos
);

// ------------------------------------------------------------------------------- (4) Terminating

/// (4) A pod whose deletion has started is taken out at once with `onPodTerminating: Deregister`:
/// no grace (the grace period is 300 s), while the pod is still there, Terminating.
async fn a_terminating_pods_instance_is_deregistered_at_once_without_grace(server: Server) {
    let scene = Scene::on(server, "cart")
        .pods(2)
        .on_node(STABLE_NODE)
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": 300, "onPodTerminating": "Deregister", "maxRemovals": "100%"}))
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    let (client, ns) = (&scene.client, &scene.ns);
    let (term_pod, term_ip) = scene.pods[0].clone();
    let (_, kept_ip) = scene.pods[1].clone();
    let _operator = scene.operator();
    scene.wait_ready_live(2).await;

    // KWOK deletes pods at once; a finalizer keeps this one Terminating.
    let pod_api = Api::<Pod>::namespaced(client.clone(), ns);
    pod_api
        .patch(
            &term_pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["e2e.test/hold"]}})),
        )
        .await
        .unwrap();
    pod_api
        .delete(&term_pod, &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();

    wait_gone(
        server,
        &scene.svc,
        &term_ip,
        8080,
        "the terminating pod's instance to be deregistered",
        Duration::from_secs(10),
    )
    .await;
    let took = deleted.elapsed();
    eprintln!("{server}: terminating pod's instance deregistered {took:?} after the delete");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // It was the Terminating verdict: the pod still exists, with its deletionTimestamp.
    let pod = pod_api.get(&term_pod).await.expect("the pod is still held");
    assert!(pod.metadata.deletion_timestamp.is_some(), "{pod:?}");
    let msg = wait_event(client, ns, "Deregistered", &[&term_ip, &term_pod]).await;
    assert!(msg.contains("terminating"), "{msg}");
    let kept = scene
        .held(&kept_ip)
        .await
        .expect("the other pod's instance is kept");
    assert!(kept.enabled, "{kept:?}");

    // Let the pod go.
    pod_api
        .patch(
            &term_pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_for("the held pod to be gone", Duration::from_secs(30), || {
        let (pod_api, name) = (pod_api.clone(), term_pod.clone());
        async move { pod_api.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}
per_server!(a_terminating_pods_instance_is_deregistered_at_once_without_grace: nacos_2_5_1, rnacos);

// ----------------------------------------------------------------------------------- (6) Foreign

/// (6) An instance whose IP is outside `scope` is never touched, even though no pod has its IP; an
/// in-scope orphan next to it is deregistered, so the operator was active.
async fn an_instance_outside_scope_is_never_touched_while_an_in_scope_orphan_is_removed(
    server: Server,
) {
    let grace = 2u64;
    let scene = Scene::on(server, "inv")
        .pods(1)
        .on_node(STABLE_NODE)
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": grace, "maxRemovals": "100%"}))
        .spec(json!({"resyncSeconds": 5, "scope": {"cidrs": ["10.244.0.0/16"]}}))
        .build()
        .await;
    let (client, ns, svc) = (&scene.client, &scene.ns, &scene.svc);
    let live_ip = scene.pods[0].1.clone();
    let foreign_ip = "192.168.77.1";
    // No pod ever had this in-scope IP (10.244.200.0/24 is no node's pod range).
    let orphan_ip = "10.244.200.77";
    for ip in [foreign_ip, orphan_ip] {
        server
            .register_persistent(&Registration::new(svc, ip, 8080))
            .await;
    }

    let _operator = scene.operator();
    wait_gone(
        server,
        svc,
        orphan_ip,
        8080,
        "the in-scope orphan to be deregistered",
        Duration::from_secs(60),
    )
    .await;
    wait_event(client, ns, "Deregistered", &[orphan_ip]).await;

    // Several passes later the foreign instance is still there, untouched, and counted.
    wait_passes(&scene.bindings, &scene.app, 2, Duration::from_secs(30)).await;
    let s = scene
        .wait_status(
            "1 live and 1 foreign instance",
            Duration::from_secs(30),
            |s| s.instances.total == 2 && s.instances.live == 1 && s.instances.foreign == 1,
        )
        .await;
    assert_eq!(s.instances.stale, 0, "{s:?}");
    assert!(
        !s.pending.iter().any(|p| p.ip == foreign_ip),
        "the foreign instance is planned for: {s:?}"
    );
    let foreign = scene
        .held(foreign_ip)
        .await
        .expect("the foreign instance is still registered");
    assert!(foreign.enabled, "{foreign:?}");
    assert_eq!(foreign.disabled_by(), None, "{foreign:?}");
    let evs = events(client, ns).await;
    assert!(
        !evs.iter().any(|(_, m)| names(m, foreign_ip)),
        "an Event names the foreign instance: {evs:?}"
    );
    let live = scene
        .held(&live_ip)
        .await
        .expect("the live instance is kept");
    assert!(live.enabled, "{live:?}");
}
per_server!(
    an_instance_outside_scope_is_never_touched_while_an_in_scope_orphan_is_removed:
    nacos_2_5_1, rnacos
);

// ------------------------------------------------------------------- (11) Disabled by someone else

/// The port of the instance on an address another app's pod reused (that pod declares 8080).
const OURS_PORT: u16 = 9090;

/// (11) An instance an administrator disabled (enabled=false, no marker) whose pod is Live is never
/// re-enabled; an instance the operator disabled itself (marker = the binding's UID) is re-enabled
/// once a Ready pod of the binding holds its IP again, with the metadata an administrator gave it.
async fn a_live_instance_disabled_by_someone_else_stays_disabled_while_ours_is_re_enabled(
    server: Server,
) {
    // Theirs: the pod is Live, an administrator disabled its instance.
    let scene = Scene::on(server, "ship")
        .pods(1)
        .on_node(STABLE_NODE)
        .registered(By::Persistent)
        .policy(json!({"action": "Disable", "gracePeriodSeconds": 2, "maxRemovals": "100%"}))
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    let (client, ns, svc) = (&scene.client, &scene.ns, &scene.svc);
    let theirs_ip = scene.pods[0].1.clone();
    disable_by_hand(server, &Registration::new(svc, &theirs_ip, 8080)).await;
    let theirs = scene.held(&theirs_ip).await.unwrap();
    assert!(
        !theirs.enabled && theirs.disabled_by().is_none(),
        "{theirs:?}"
    );
    // Ours: the IP is held by a pod of another app that serves another port (it declares 8080,
    // the instance is on 9090): the address was reused, so the operator disables the instance.
    // An administrator gave it metadata of their own.
    let (ours_pod, ours_ip) = deploy(client, ns, "dock", 1, Some(STABLE_NODE)).await[0].clone();
    let ours_reg = Registration::new(svc, &ours_ip, OURS_PORT);
    server.register_persistent(&ours_reg).await;
    set_metadata_by_hand(server, &ours_reg, "team", "shipping").await;
    let ours_held = || server.held(svc, &ours_ip, OURS_PORT);
    // A canary: a pod the binding's selector does not match, holding its address and declaring
    // the instance's port. Evidence of life, not of reuse: never touched (issue 15, case 2).
    let (_, canary_ip) = deploy(client, ns, "canary", 1, Some(STABLE_NODE)).await[0].clone();
    server
        .register_persistent(&Registration::new(svc, &canary_ip, 8080))
        .await;

    let uid = scene.uid().await;
    let _operator = scene.operator();
    let ours = wait_for(
        "the operator to disable the instance on the other app's pod",
        Duration::from_secs(60),
        || async { ours_held().await.filter(|h| !h.enabled) },
    )
    .await;
    assert_eq!(ours.disabled_by(), Some(uid.as_str()), "{ours:?}");
    wait_event(client, ns, "Disabled", &[&ours_ip]).await;

    // The pod joins the binding (its labels now match): Live again, so ours is re-enabled.
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch(
            &ours_pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": scene.app}}})),
        )
        .await
        .unwrap();
    let relabelled = Instant::now();
    let ours: Held = wait_for(
        "our disabled instance to be re-enabled",
        Duration::from_secs(15),
        || async { ours_held().await.filter(|h| h.enabled) },
    )
    .await;
    eprintln!(
        "{server}: our instance re-enabled {:?} after its pod joined the binding",
        relabelled.elapsed()
    );
    assert_eq!(ours.disabled_by(), None, "the marker is removed: {ours:?}");
    wait_event(client, ns, "Enabled", &[&ours_ip]).await;

    // Several passes later the administrator's choice stands.
    wait_passes(&scene.bindings, &scene.app, 2, Duration::from_secs(30)).await;
    let theirs = scene.held(&theirs_ip).await.expect("still registered");
    assert!(
        !theirs.enabled,
        "re-enabled what someone else disabled: {theirs:?}"
    );
    assert_eq!(theirs.disabled_by(), None, "{theirs:?}");
    let s = status(&scene.bindings, &scene.app).await.unwrap();
    // All listed (these servers list disabled instances too): theirs was seen, and spared; the
    // canary's is Foreign.
    assert_eq!(
        (
            s.instances.total,
            s.instances.live,
            s.instances.offline,
            s.instances.foreign
        ),
        (3, 2, 0, 1),
        "{s:?}"
    );
    let mut consumers = vec![
        format!("{canary_ip}:8080"),
        format!("{ours_ip}:{OURS_PORT}"),
    ];
    consumers.sort();
    assert_eq!(scene.consumers().await, consumers);
    let canary = scene.held(&canary_ip).await.expect("the canary's instance");
    assert!(
        canary.enabled && canary.disabled_by().is_none(),
        "{canary:?}"
    );
    let evs = events(client, ns).await;
    for (ip, whose) in [
        (&theirs_ip, "someone else disabled"),
        (&canary_ip, "a canary serves"),
    ] {
        assert!(
            !evs.iter().any(|(_, m)| names(m, ip)),
            "an Event names the instance {whose}: {evs:?}"
        );
    }
    // Checked last, so that the rest is checked on every server: the administrator's metadata
    // outlived our disable and enable.
    assert_eq!(
        ours.metadata.get("team").map(String::as_str),
        Some("shipping"),
        "{server}: the metadata an administrator gave the instance is lost: {ours:?}"
    );
}
per_server!(
    a_live_instance_disabled_by_someone_else_stays_disabled_while_ours_is_re_enabled:
    nacos_2_5_1, nacos_3_0_3, rnacos
);

// ------------------------------------------------------------------------------- (5) Unreachable

/// (5) An instance on a node's InternalIP (a node process, or a hostNetwork pod) is disabled once its
/// node has been unreachable for `nodeUnreachableSeconds`, with our marker, and enabled again when
/// the node comes back. An instance on a healthy node's IP is left alone, and one on the node that
/// someone else disabled is never re-enabled. On rnacos_auth, a server whose listings hide disabled
/// instances, the operator must find the instance it disabled to enable it again.
async fn an_instance_on_an_unreachable_node_is_disabled_after_the_threshold_and_enabled_on_return(
    server: Server,
) {
    let threshold = 10u64;
    let scene = Scene::on(server, "agent")
        .bare_pods(0)
        .registered(By::Nothing)
        // Default scope: every node's pod CIDRs and InternalIPs.
        .policy(
            json!({"onNodeUnreachable": "Disable", "nodeUnreachableSeconds": threshold,
                       "gracePeriodSeconds": 2, "maxRemovals": "100%"}),
        )
        // Long: the threshold must not wait for a resync.
        .spec(json!({"resyncSeconds": 600}))
        .build()
        .await;
    let (client, ns, svc) = (&scene.client, &scene.ns, &scene.svc);
    // A node IP of each server's own, so that the node tests of the servers never share one.
    let ip_block = match server {
        Server::Rnacos => 10,
        Server::RnacosAuth => 11,
        Server::Nacos2 => 12,
        Server::Nacos3 => 13,
    };
    let node_name = unique("own-node");
    let node_ip = format!("10.245.{ip_block}.{}", std::process::id() % 200 + 10);
    // Declared before the node's cleanup, so dropped after it: a failing test deletes its node
    // before the next one may stop its own.
    let node_down: tokio::sync::MutexGuard<'static, ()>;
    let _cleanup = DeleteNodeOnDrop(node_name.clone());
    let mut node = OwnKwokNode::start(client, &node_name, &node_ip).await;
    let nodes = Api::<Node>::all(client.clone());
    // Only this test's instances live on this node: keep every other pod off it.
    nodes
        .patch(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "e2e.test/own-node", "value": "true", "effect": "NoSchedule"}
            ]}})),
        )
        .await
        .unwrap();

    let healthy_ip = format!("{}.1", testbed_env("TESTBED_NODE_IP_PREFIX"));
    for ip in [&node_ip, &healthy_ip] {
        server
            .register_persistent(&Registration::new(svc, ip, 9100))
            .await;
    }
    // Theirs: another process on the node, which an administrator disabled.
    let theirs = Registration::new(svc, &node_ip, 9101);
    server.register_persistent(&theirs).await;
    disable_by_hand(server, &theirs).await;

    let _operator = scene.operator();
    // rnacos with auth hides disabled instances from every listing: theirs is not counted there.
    let theirs_listed = u32::from(server != Server::RnacosAuth);
    scene.wait_ready_live(2 + theirs_listed).await;
    let uid = scene.uid().await;

    // The node drops off: its Lease stops, the controller-manager marks it Unknown (~20 s).
    node_down = NODE_DOWN.lock().await;
    wait_safe_to_stop_a_node(&nodes).await;
    node.stop();
    let stopped = Instant::now();
    let (_, down_since) = wait_for(
        "the node to turn NotReady/Unknown",
        Duration::from_secs(60),
        || {
            let nodes = nodes.clone();
            let name = node_name.clone();
            async move {
                node_ready_since(&nodes, &name)
                    .await
                    .filter(|(s, _)| s != "True")
            }
        },
    )
    .await;
    eprintln!(
        "{server}: node not Ready {:?} after its kwok stopped",
        stopped.elapsed()
    );
    let due = down_since + chrono::Duration::seconds(threshold as i64);

    let disabled = wait_for(
        "the node's instance to be disabled",
        Duration::from_secs(threshold + 30),
        || async {
            // A freeze (more than half of the nodes down, by others' nodes with ours) holds the
            // disable back until a threshold after it ends: say so rather than time out.
            let (down, total) = not_ready_nodes(&nodes).await;
            assert!(
                !(down.len() >= 2 && down.len() * 2 > total),
                "{server}: node-based actions are frozen: {} of {total} nodes not Ready: {down:?}",
                down.len()
            );
            server
                .held(svc, &node_ip, 9100)
                .await
                .filter(|h| !h.enabled)
        },
    )
    .await;
    let at = chrono::Utc::now();
    eprintln!(
        "{server}: disabled {}ms after the node turned not Ready (threshold {threshold}s)",
        (at - down_since).num_milliseconds()
    );
    // lastTransitionTime has second precision.
    assert!(
        at >= due - chrono::Duration::seconds(1),
        "disabled before the threshold: at {at}, due {due}"
    );
    assert!(
        at <= due + chrono::Duration::seconds(5),
        "disabled {}s after the threshold (due {due}, at {at})",
        (at - due).num_seconds()
    );
    assert_eq!(disabled.disabled_by(), Some(uid.as_str()), "{disabled:?}");
    // The marker names the binding too: a binding re-created under that name takes it over.
    let marker = format!("{uid} {ns}/{}", scene.app);
    assert_eq!(disabled.marker(), Some(marker.as_str()), "{disabled:?}");
    let msg = wait_event(client, ns, "Disabled", &[&node_ip, &node_name]).await;
    assert!(msg.contains("unreachable"), "{msg}");
    // Disabled, not deregistered, and only that one.
    let healthy = server
        .held(svc, &healthy_ip, 9100)
        .await
        .expect("the healthy node's instance is kept");
    assert!(healthy.enabled, "{healthy:?}");
    scene
        .wait_status("1 instance offline", Duration::from_secs(10), |s| {
            s.instances.offline == 1 && s.instances.live == 1
        })
        .await;

    // The node comes back: the instance is enabled again, marker gone.
    node.resume();
    let resumed = Instant::now();
    wait_for(
        "the node to be Ready again",
        Duration::from_secs(60),
        || {
            let nodes = nodes.clone();
            let name = node_name.clone();
            async move {
                node_ready_since(&nodes, &name)
                    .await
                    .filter(|(s, _)| s == "True")
            }
        },
    )
    .await;
    drop(node_down);
    let ready_after = resumed.elapsed();
    let back = wait_for(
        "the node's instance to be enabled again",
        Duration::from_secs(10),
        || async { server.held(svc, &node_ip, 9100).await.filter(|h| h.enabled) },
    )
    .await;
    eprintln!(
        "{server}: node Ready {ready_after:?} after its kwok restarted; instance enabled {:?} after",
        resumed.elapsed()
    );
    // rnacos cannot clear metadata to empty: the operator then leaves the key with an empty value.
    assert!(
        back.disabled_by().is_none_or(str::is_empty),
        "our marker is left on an enabled instance: {back:?}"
    );
    wait_event(client, ns, "Enabled", &[&node_ip]).await;
    for ip in [&node_ip, &healthy_ip] {
        let h = server.held(svc, ip, 9100).await.expect("registered");
        assert!(h.enabled, "{ip}: {h:?}");
    }
    // The pass that enabled ours left theirs alone (given the time Alibaba Nacos takes to show a
    // write, ~0.5 s, had it been sent).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h = server.held_at(&theirs).await.expect("theirs is registered");
    assert!(
        !h.enabled && h.disabled_by().is_none(),
        "{server}: the instance someone else disabled was touched: {h:?}"
    );
    let addr = format!("{node_ip}:9101");
    let evs = events(client, ns).await;
    assert!(
        !evs.iter().any(|(_, m)| names(m, &addr)),
        "an Event names the instance someone else disabled: {evs:?}"
    );
    node.delete(client).await;
}
per_server!(
    an_instance_on_an_unreachable_node_is_disabled_after_the_threshold_and_enabled_on_return:
    nacos_2_5_1, nacos_3_0_3, rnacos, rnacos_auth
);

// ------------------------------------------------- Overlapping bindings, pods outside the scope

/// Issue 15, cases 2 and 7, on the real API server: a second team's binding on the same service is
/// reported on both bindings (`Overlapping=True`, a `BindingsOverlap` Warning naming the other), and
/// a scope that misses the binding's pods says so (`ScopeCoversPods=False`, `PodsOutsideScope`)
/// instead of leaving every instance silently Foreign. Nothing is written to Nacos for either.
async fn overlapping_bindings_and_pods_outside_the_scope_are_reported(server: Server) {
    // The scope is the Service network: the pods' addresses (10.244.x) are all outside it.
    let scene = Scene::on(server, "twin")
        .pods(1)
        .on_node(STABLE_NODE)
        .registered(By::Persistent)
        .spec(json!({"resyncSeconds": 5, "scope": {"cidrs": ["10.96.0.0/16"]}}))
        .build()
        .await;
    let (client, ns) = (&scene.client, &scene.ns);
    let ip = scene.pods[0].1.clone();
    let other = "twin-canary";
    let mut spec = scene.binding_spec(&[&scene.svc], json!({"gracePeriodSeconds": 0}));
    spec["pods"] = json!({"selector": {"matchLabels": {"app": "canary"}}});
    spec["resyncSeconds"] = json!(5);
    create_binding(client, ns, other, spec).await;
    let _operator = scene.operator();

    let overlapping = |s: &NacosBindingStatus, names: &str| {
        s.conditions.iter().any(|c| {
            c.type_ == "Overlapping"
                && c.status == "True"
                && c.reason == "BindingsOverlap"
                && c.message.contains(names)
        })
    };
    let mine = format!("{ns}/{}", scene.app);
    let theirs = format!("{ns}/{other}");
    let s = wait_status(
        &scene.bindings,
        &scene.app,
        "Overlapping and ScopeCoversPods=False",
        Duration::from_secs(60),
        |s| {
            overlapping(s, &theirs)
                && s.conditions.iter().any(|c| {
                    c.type_ == "ScopeCoversPods"
                        && c.status == "False"
                        && c.reason == "PodsOutsideScope"
                        && c.message.contains(&format!("{ip}:8080"))
                })
        },
    )
    .await;
    assert_eq!(s.instances.foreign, 1, "{s:?}");
    wait_status(
        &scene.bindings,
        other,
        "Overlapping on the other binding too",
        Duration::from_secs(60),
        |s| overlapping(s, &mine),
    )
    .await;
    wait_event(client, ns, "BindingsOverlap", &[&theirs]).await;
    wait_event(client, ns, "PodsOutsideScope", &[&ip, "spec.scope.cidrs"]).await;
    // The other binding's selector matches no pod: to it the instance is an orphan, but the pod
    // that holds the address declares its port, so it is no evidence of reuse.
    wait_passes(&scene.bindings, other, 2, Duration::from_secs(30)).await;
    let held = scene
        .held(&ip)
        .await
        .expect("the instance is still registered");
    assert!(held.enabled && held.disabled_by().is_none(), "{held:?}");
}
per_server!(overlapping_bindings_and_pods_outside_the_scope_are_reported: nacos_2_5_1, rnacos);
