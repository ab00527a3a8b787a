//! End-to-end: what the operator does to the registry itself, on Alibaba Nacos 2.5.1 and 3.0.3
//! (and rnacos): a non-public namespace with a non-default group and two clusters, `apiVersion: V1`
//! forced on 2.5.1, no trace left on an address that is registered again, and instances whose
//! metadata is as large as Nacos allows.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// The operator's log of a scene (`Operator::start` writes it there).
fn operator_log(scene: &Scene) -> String {
    let dir = std::path::PathBuf::from(testbed_env("TESTBED_STATE")).join("logs");
    std::fs::read_to_string(dir.join(format!("operator-{}.log", scene.ns))).unwrap_or_default()
}

/// The log lines about `ip:port` that record an action.
fn action_lines(log: &str, addr: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("instance={addr} ")) && l.contains("applied"))
        .map(str::to_string)
        .collect()
}

/// (Scenario 6) A binding of a service in a non-public namespace, a non-default group, two of its
/// three clusters: the orphans of the governed clusters go, the third cluster and the live
/// instances are untouched.
async fn a_non_public_namespace_a_group_and_two_of_three_clusters(server: Server) {
    let nacos_ns = unique("tenant");
    server.create_namespace(&nacos_ns).await;
    let scene = Scene::on(server, "tenant")
        .pods(2)
        .registered(By::Nothing)
        .build()
        .await;
    let at = |ip: &str, cluster: &str| {
        Registration::new(&scene.svc, ip, 8080)
            .group("ORDERS")
            .cluster(cluster)
            .namespace(&nacos_ns)
    };
    let (pod1, pod2) = (scene.pods[0].1.clone(), scene.pods[1].1.clone());
    let live = [at(&pod1, "c1"), at(&pod2, "c2")];
    let orphans = [at("10.244.251.1", "c1"), at("10.244.251.2", "c2")];
    let outside = at("10.244.251.3", "c3");
    for r in live.iter().chain(&orphans).chain([&outside]) {
        server.register_persistent(r).await;
    }
    let mut spec = scene.binding_spec(&[], json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}));
    spec["nacos"]["namespace"] = json!(nacos_ns);
    spec["services"] = json!([{"name": scene.svc, "group": "ORDERS", "clusters": ["c1", "c2"]}]);
    spec["scope"] = json!({"cidrs": ["10.244.0.0/16"]});
    scene.patch_spec(spec).await;
    let _operator = scene.operator();

    for r in &orphans {
        wait_for(
            &format!("orphan {} in {} to go", r.ip, r.cluster),
            Duration::from_secs(60),
            || async { server.held_at(r).await.is_none().then_some(()) },
        )
        .await;
    }
    let s = scene
        .wait_status("2 live instances", Duration::from_secs(30), |s| {
            s.instances.live == 2 && s.removed_total == 2
        })
        .await;
    for r in &live {
        let h = server.held_at(r).await.expect("a live instance is kept");
        assert!(h.enabled && h.disabled_by().is_none(), "{r:?}: {h:?}");
    }
    let h = server
        .held_at(&outside)
        .await
        .expect("cluster c3 is not governed");
    assert!(h.enabled, "{h:?}");
    assert_eq!(
        server
            .consumer_view_in(&scene.svc, "ORDERS", &nacos_ns)
            .await,
        vec![
            format!("{pod1}:8080"),
            format!("{pod2}:8080"),
            "10.244.251.3:8080".to_string()
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(
        s.nacos.as_ref().and_then(|n| n.version.clone()).as_deref(),
        Some(server.status_version())
    );
}
per_server!(a_non_public_namespace_a_group_and_two_of_three_clusters: nacos_2_5_1, nacos_3_0_3, rnacos);

/// `apiVersion: V1` on Alibaba Nacos 2.5.1 (which still answers the v1 API): status says V1 and
/// 2.5.1, and a removed pod's instance goes.
#[tokio::test]
async fn forcing_v1_on_nacos_2_5_1_takes_a_removed_pods_instance_offline() {
    let server = Server::Nacos2;
    let scene = Scene::on(server, "forcev1")
        .pods(2)
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}))
        .spec(json!({"nacos": {"apiVersion": "V1"}}))
        .build()
        .await;
    let _operator = scene.operator();
    let s = scene.wait_ready_live(2).await;
    let nacos = s.nacos.expect("status.nacos");
    assert_eq!(nacos.version.as_deref(), Some("2.5.1"));
    assert_eq!(format!("{:?}", nacos.api.expect("api")), "V1");
    let (survivors, gone) = scene.scale_to(1).await;
    scene
        .wait_consumers(&survivors, Duration::from_secs(15))
        .await;
    assert!(scene.held(&gone[0]).await.is_none());
}

/// (Scenario 8) No trace left behind. A persistent instance whose pod went is deregistered, and
/// the DELETE that worked is logged as done (not as ineffective, with no fallback write); an
/// ephemeral one whose process stays connected is disabled (the disable that took is logged as
/// done). When the address is registered again by a new pod of the app (the same ip:port), the new
/// instance is enabled and served, without the operator's marker.
async fn no_trace_is_left_on_an_address_that_is_registered_again(server: Server) {
    let client = kube_client().await;
    let node_name = unique("trace-node");
    let node_ip = match server {
        Server::Nacos2 => "10.245.78.1",
        Server::Nacos3 => "10.245.78.2",
        _ => "10.245.78.3",
    };
    let node = OwnKwokNode::start(&client, &node_name, node_ip).await;
    let mut scene = Scene::on(server, "trace")
        .pods(2)
        .on_node(&node_name)
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}))
        .build()
        .await;
    // The same pods' processes also register over gRPC in a second service of the binding.
    let grpc_svc = format!("{}-grpc", scene.ns);
    let addrs: Vec<String> = scene
        .pods
        .iter()
        .map(|(_, ip)| format!("{ip}:8080"))
        .collect();
    let mut grpc = JavaApp::provider(Sdk::V2, server, &grpc_svc, &addrs, &Provider::default());
    let spec = scene.binding_spec(
        &[&scene.svc, &grpc_svc],
        json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}),
    );
    scene.patch_spec(spec).await;
    let _operator = scene.operator();
    scene.wait_ready_live(4).await;
    let uid = scene.uid().await;

    let (_, gone) = scene.scale_to(1).await;
    let freed = gone[0].clone();
    let freed_addr = format!("{freed}:8080");
    let index = addrs
        .iter()
        .position(|a| *a == freed_addr)
        .expect("a registered address");
    wait_for(
        "the persistent instance to be deregistered",
        Duration::from_secs(30),
        || async { scene.held(&freed).await.is_none().then_some(()) },
    )
    .await;
    if server.is_alibaba() {
        wait_for(
            "the gRPC instance to be disabled by us",
            Duration::from_secs(30),
            || async {
                let h = server.held(&grpc_svc, &freed, 8080).await?;
                (!h.enabled && h.disabled_by() == Some(uid.as_str())).then_some(())
            },
        )
        .await;
    } else {
        wait_for(
            "the gRPC instance to go (rnacos)",
            Duration::from_secs(30),
            || async {
                server
                    .held(&grpc_svc, &freed, 8080)
                    .await
                    .is_none()
                    .then_some(())
            },
        )
        .await;
    }
    // The operator logs an action once its read-back is done, which may be after the test saw it.
    let log = wait_for(
        "both actions to be logged",
        Duration::from_secs(10),
        || async {
            let log = operator_log(&scene);
            (action_lines(&log, &freed_addr).len() >= 2).then_some(log)
        },
    )
    .await;
    let lines = action_lines(&log, &freed_addr);
    let persistent: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(&format!("service={} ", scene.svc)))
        .collect();
    assert!(
        persistent.len() == 1 && persistent[0].contains("action=\"deregister\" result=\"success\""),
        "the working DELETE is not logged as done, once: {persistent:#?}"
    );
    let ephemeral: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(&format!("service={grpc_svc} ")))
        .collect();
    let want = if server.is_alibaba() {
        "result=\"ineffective\""
    } else {
        "result=\"success\""
    };
    assert!(
        ephemeral.len() == 1 && ephemeral[0].contains(want),
        "{server}: the gRPC instance's deregistration is not logged {want}, once: {ephemeral:#?}"
    );
    assert!(
        !log.contains(&format!("not applied binding={}", scene.binding_key())),
        "a write failed or was not confirmed:\n{}",
        log.lines()
            .filter(|l| l.contains("not applied"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The old pod's process finally exits; a new pod of the app gets the address and registers it.
    grpc.close(index);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, _) = scene.scale_to(2).await;
    assert!(
        after.contains(&freed),
        "KWOK did not reuse {freed} (pods now {after:?})"
    );
    server
        .register_persistent(&Registration::new(&scene.svc, &freed, 8080))
        .await;
    let _new_process = JavaApp::provider(
        Sdk::V2,
        server,
        &grpc_svc,
        std::slice::from_ref(&freed_addr),
        &Provider::default(),
    );
    for svc in [&scene.svc, &grpc_svc] {
        wait_for(
            &format!("{svc} {freed_addr} to be enabled, unmarked and served"),
            Duration::from_secs(30),
            || async {
                let h = server.held(svc, &freed, 8080).await?;
                let served = server.consumer_view(svc).await.contains(&freed_addr);
                (h.enabled && h.disabled_by().is_none_or(str::is_empty) && served).then_some(())
            },
        )
        .await;
    }
    // And it stays so.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for svc in [&scene.svc, &grpc_svc] {
        let h = server.held(svc, &freed, 8080).await.expect("registered");
        assert!(h.enabled, "{svc}: {h:?}");
        if server.is_alibaba() {
            assert!(
                h.disabled_by().is_none(),
                "{svc}: the marker is left: {h:?}"
            );
        }
    }
    drop(scene.apps.drain(..));
    node.delete(&client).await;
}
per_server!(no_trace_is_left_on_an_address_that_is_registered_again: nacos_2_5_1, nacos_3_0_3, rnacos);

/// (Scenario 9) An instance whose metadata is as large as Nacos allows (over 1,000 characters, as a
/// Dubbo provider registers it) is disabled when its pod goes while its process stays connected,
/// and re-enabled when a new pod of the app gets its address; its own metadata is unchanged.
async fn an_instance_with_large_metadata_is_disabled_and_re_enabled_unchanged(server: Server) {
    let client = kube_client().await;
    let node_name = unique("meta-node");
    let node_ip = match server {
        Server::Nacos2 => "10.245.79.1",
        Server::Nacos3 => "10.245.79.2",
        _ => "10.245.79.3",
    };
    let node = OwnKwokNode::start(&client, &node_name, node_ip).await;
    let scene = Scene::on(server, "bigmeta")
        .pods(2)
        .on_node(&node_name)
        .registered(By::Nothing)
        .policy(
            json!({"action": "Disable", "gracePeriodSeconds": 1, "onPodTerminating": "Ignore",
                       "maxRemovals": "100%"}),
        )
        .build()
        .await;
    let addrs: Vec<String> = scene
        .pods
        .iter()
        .map(|(_, ip)| format!("{ip}:8080"))
        .collect();
    let _app = JavaApp::provider(
        Sdk::V2,
        server,
        &scene.svc,
        &addrs,
        &Provider {
            metadata_chars: 1010,
            ..Default::default()
        },
    );
    let _operator = scene.operator();
    scene.wait_ready_live(2).await;
    let registered = scene
        .held(&scene.pods[0].1)
        .await
        .expect("registered")
        .metadata;
    let chars: usize = registered.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(chars > 1000, "{chars} characters of metadata");
    let uid = scene.uid().await;

    let (_, gone) = scene.scale_to(1).await;
    let freed = gone[0].clone();
    wait_for(
        "the instance to be disabled by us",
        Duration::from_secs(30),
        || async {
            let h = scene.held(&freed).await?;
            (!h.enabled && h.disabled_by() == Some(uid.as_str())).then_some(h)
        },
    )
    .await;
    let mut seen = scene.held(&freed).await.expect("registered").metadata;
    seen.remove("nacos-reconciler.io/disabled-by");
    assert_eq!(
        seen, registered,
        "disabling changed the instance's metadata"
    );

    // A new pod of the app gets the address: the instance (still held by its process) is Live again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, _) = scene.scale_to(2).await;
    assert!(
        after.contains(&freed),
        "KWOK did not reuse {freed} (pods now {after:?})"
    );
    let back = wait_for(
        "the instance to be re-enabled",
        Duration::from_secs(30),
        || async {
            let h = scene.held(&freed).await?;
            h.enabled.then_some(h)
        },
    )
    .await;
    let mut meta = back.metadata.clone();
    if !server.is_alibaba() {
        // rnacos ignores an empty metadata map: the marker stays, empty.
        if meta
            .get("nacos-reconciler.io/disabled-by")
            .is_some_and(String::is_empty)
        {
            meta.remove("nacos-reconciler.io/disabled-by");
        }
    }
    assert_eq!(meta, registered, "re-enabling left the metadata changed");
    assert!(scene.consumers().await.contains(&format!("{freed}:8080")));
    node.delete(&client).await;
}
per_server!(an_instance_with_large_metadata_is_disabled_and_re_enabled_unchanged: nacos_2_5_1, nacos_3_0_3, rnacos);
