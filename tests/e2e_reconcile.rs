//! End-to-end: the operator binary against the testbed's API server and Nacos (rnacos).

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use nacos_reconciler::crd::NacosBinding;

#[tokio::test]
async fn scaling_down_takes_exactly_the_removed_pods_instances_offline_within_grace_plus_two_seconds(
) {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("scale");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "orders", 4, None).await;

    // Each pod is represented twice: a gRPC instance owned by a live client process, and a
    // persistent HTTP instance.
    let grpc_svc = format!("{ns}-grpc");
    let http_svc = format!("{ns}-http");
    let _clients: Vec<_> = pods
        .iter()
        .map(|(_, ip)| {
            start_nacos_client(
                &nacos,
                &grpc_svc,
                &[(ip.clone(), 8080)],
                ClientMode::Grpc,
                &[],
            )
        })
        .collect();
    for (_, ip) in &pods {
        register_http(&nacos, &http_svc, ip, 8080).await;
    }

    let grace = 3u64;
    create_binding(
        &client,
        &ns,
        "orders",
        serde_json::json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": grpc_svc}, {"name": http_svc}],
            "pods": {"selector": {"matchLabels": {"app": "orders"}}},
            "policy": {"gracePeriodSeconds": grace, "maxRemovals": "100%"},
            "resyncSeconds": 30
        }),
    )
    .await;
    let operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_for(
        "the binding to be Ready with 8 live instances",
        Duration::from_secs(60),
        || {
            let bindings = bindings.clone();
            async move {
                let b = bindings.get("orders").await.ok()?;
                let s = b.status?;
                let ready = s
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                (ready && s.instances.live == 8).then_some(())
            }
        },
    )
    .await;

    // Scale 4 -> 2.
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    deployments
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let scaled = Instant::now();
    let survivors = ready_pods(&client, &ns, "orders", 2).await;
    let removed: Vec<&(String, String)> = pods.iter().filter(|p| !survivors.contains(p)).collect();
    assert_eq!(removed.len(), 2);

    let deadline = Duration::from_secs(grace + 2);
    for svc in [&grpc_svc, &http_svc] {
        let want: Vec<String> = {
            let mut v: Vec<String> = survivors
                .iter()
                .map(|(_, ip)| format!("{ip}:8080"))
                .collect();
            v.sort();
            v
        };
        let nacos = nacos.clone();
        let svc = svc.clone();
        wait_for(
            &format!("{svc} to list only the surviving pods"),
            deadline.saturating_sub(scaled.elapsed()) + Duration::from_millis(250),
            || {
                let (nacos, svc, want) = (nacos.clone(), svc.clone(), want.clone());
                async move { (consumer_view(&nacos, &svc).await == want).then_some(()) }
            },
        )
        .await;
    }
    let took = scaled.elapsed();
    assert!(
        took <= deadline + Duration::from_millis(250),
        "took {took:?}"
    );

    // The survivors were never touched: still registered and enabled.
    for (_, ip) in &survivors {
        for svc in [&grpc_svc, &http_svc] {
            let inst = nacos_instance(&nacos, svc, ip, 8080)
                .await
                .expect("survivor listed");
            assert_eq!(inst["enabled"], serde_json::Value::Bool(true), "{svc} {ip}");
        }
    }
    let metrics = operator.metrics().await;
    assert!(
        metrics.contains("nacos_reconciler_actions_total{binding=\"")
            && metrics.contains("action=\"deregister\",result=\"success\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains("nacos_reconciler_removal_latency_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test]
async fn plan_prints_every_instance_with_its_verdict_and_changes_nothing() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("plan");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "web", 2, None).await;
    let svc = format!("{ns}-web");
    for (_, ip) in &pods {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    register_http(&nacos, &svc, "10.244.250.1", 8080).await; // no pod has this IP
    register_http(&nacos, &svc, "192.168.250.1", 8080).await; // outside the scope
    create_binding(
        &client,
        &ns,
        "web",
        serde_json::json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "web"}}},
            "scope": {"cidrs": ["10.244.0.0/16"]},
            "policy": {"gracePeriodSeconds": 0}
        }),
    )
    .await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nacos-reconciler"))
        .args([
            "plan",
            "-n",
            &ns,
            "web",
            "--kubeconfig",
            &testbed_env("KUBECONFIG"),
        ])
        .output()
        .expect("run nacos-reconciler plan");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plan failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |ip: &str| {
        text.lines()
            .find(|l| l.contains(&format!("{ip}:8080")))
            .unwrap_or_else(|| panic!("no row for {ip} in\n{text}"))
            .to_string()
    };
    for (_, ip) in &pods {
        assert!(line(ip).contains("Live"), "{text}");
    }
    let orphan = line("10.244.250.1");
    assert!(
        orphan.contains("Orphan") && orphan.contains("deregister now"),
        "{text}"
    );
    assert!(line("192.168.250.1").contains("Foreign"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");

    // Nothing was changed: the orphan is still there.
    assert!(nacos_instance(&nacos, &svc, "10.244.250.1", 8080)
        .await
        .is_some());
}

/// The registry keeps (or gets back) an instance whose pod is gone because a live client keeps it:
/// Alibaba Nacos keeps a gRPC-owned instance after a DELETE; a 1.x client re-registers within
/// seconds. rnacos behaves like the latter with a beating HTTP client, so that is what runs here.
#[tokio::test]
async fn an_instance_a_live_client_keeps_registering_ends_up_disabled_with_deregister_ineffective()
{
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("kept");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "kept", 2, None).await;
    let svc = format!("{ns}-svc");
    let _clients: Vec<_> = pods
        .iter()
        .map(|(_, ip)| {
            start_nacos_client(
                &nacos,
                &svc,
                &[(ip.clone(), 8080)],
                ClientMode::Http,
                &["--beat-seconds", "1"],
            )
        })
        .collect();
    create_binding(
        &client,
        &ns,
        "kept",
        serde_json::json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "kept"}}},
            "policy": {"gracePeriodSeconds": 1, "maxRemovals": "100%"},
            "resyncSeconds": 5
        }),
    )
    .await;
    let _operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_for("2 live instances", Duration::from_secs(60), || {
        let bindings = bindings.clone();
        async move {
            let s = bindings.get("kept").await.ok()?.status?;
            (s.instances.live == 2).then_some(())
        }
    })
    .await;

    // One pod goes; its client process goes on beating and re-registering.
    let victim_ip = scale_down(&client, &ns, "kept", 1).await;
    let survivor_ip = pods
        .iter()
        .map(|(_, ip)| ip.clone())
        .find(|ip| *ip != victim_ip)
        .expect("a survivor");
    let uid = bindings.get("kept").await.unwrap().metadata.uid.unwrap();
    let (n, s, ip) = (nacos.clone(), svc.clone(), victim_ip.clone());
    wait_for(
        "the instance disabled by us",
        Duration::from_secs(60),
        || {
            let (n, s, ip, uid) = (n.clone(), s.clone(), ip.clone(), uid.clone());
            async move {
                let i = nacos_instance(&n, &s, &ip, 8080).await?;
                (i["enabled"] == serde_json::Value::Bool(false)
                    && i["metadata"]["nacos-reconciler.io/disabled-by"]
                        == serde_json::Value::String(uid))
                .then_some(())
            }
        },
    )
    .await;
    assert!(!consumer_view(&nacos, &svc)
        .await
        .contains(&format!("{victim_ip}:8080")));

    // It stays offline while the client goes on beating, and the survivor is untouched.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let i = nacos_instance(&nacos, &svc, &victim_ip, 8080)
        .await
        .expect("still registered");
    assert_eq!(i["enabled"], serde_json::Value::Bool(false), "{i}");
    assert_eq!(
        consumer_view(&nacos, &svc).await,
        vec![format!("{survivor_ip}:8080")]
    );
    let out = std::process::Command::new(testbed_env("KUBECTL"))
        .args([
            "--kubeconfig",
            &testbed_env("KUBECONFIG"),
            "get",
            "events",
            "-n",
            &ns,
        ])
        .args([
            "--field-selector",
            "reason=DeregisterIneffective",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "no DeregisterIneffective event: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
