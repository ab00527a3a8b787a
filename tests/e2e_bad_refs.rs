//! End-to-end: bindings that reference what does not exist — a credentials Secret, a reachable
//! Nacos address, a Nacos namespace — each get a condition and a Warning Event naming the problem,
//! nothing is removed on their behalf, and the same operator process keeps serving a healthy
//! binding next to them.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use nacos_reconciler::crd::{NacosBinding, NacosBindingStatus};
use serde_json::json;

fn condition(s: &NacosBindingStatus, type_: &str) -> Option<(String, String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until condition `type_` of binding `name` is `status` with `reason`; returns its message.
async fn wait_condition(
    bindings: &Api<NacosBinding>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    let what = format!("{name}: {type_}={status} ({reason})");
    wait_for(&what, Duration::from_secs(60), || async move {
        let s = bindings.get(name).await.ok()?.status?;
        let (st, r, m) = condition(&s, type_)?;
        (st == status && r == reason).then_some(m)
    })
    .await
}

/// Waits for a Warning Event `reason` about binding `name` whose note contains every `needle`.
async fn wait_warning(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    needles: &[&str],
) -> String {
    let what = format!("a Warning Event {reason} about {name} naming {needles:?}");
    wait_for(&what, Duration::from_secs(60), || async move {
        let events: Vec<Event> = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .ok()?
            .items;
        events.into_iter().find_map(|e| {
            let about = e.regarding.as_ref()?;
            let note = e.note.clone()?;
            (about.name.as_deref() == Some(name)
                && about.kind.as_deref() == Some("NacosBinding")
                && e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && needles.iter().all(|n| note.contains(n)))
            .then_some(note)
        })
    })
    .await
}

/// The number of reconcile passes the operator finished for `binding` (ns/name).
async fn passes(operator: &Operator, binding: &str) -> u64 {
    let prefix =
        format!("nacos_reconciler_reconcile_duration_seconds_count{{binding=\"{binding}\"}} ");
    operator
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_passes(operator: &Operator, binding: &str, n: u64) {
    let start = passes(operator, binding).await;
    wait_for(
        &format!("{n} more passes of {binding}"),
        Duration::from_secs(60),
        || async move { (passes(operator, binding).await >= start + n).then_some(()) },
    )
    .await;
}

/// What rnacos answers for a namespace that does not exist: empty listings, 200 — which is why
/// the operator looks the namespace up instead of trusting them. (Queries do not create it: the
/// namespace listing still lacks it afterwards.)
async fn unknown_namespace_lists_nothing(nacos: &str, namespace: &str, service: &str) {
    let http = reqwest::Client::new();
    let services: serde_json::Value = http
        .get(format!("{nacos}/nacos/v1/ns/service/list"))
        .query(&[
            ("pageNo", "1"),
            ("pageSize", "10"),
            ("namespaceId", namespace),
        ])
        .send()
        .await
        .expect("service list")
        .json()
        .await
        .expect("service list JSON");
    assert_eq!(services["count"], json!(0), "{services}");
    let r = http
        .get(format!("{nacos}/nacos/v1/ns/catalog/instances"))
        .query(&[
            ("serviceName", service),
            ("clusterName", "DEFAULT"),
            ("pageNo", "1"),
            ("pageSize", "10"),
            ("namespaceId", namespace),
        ])
        .send()
        .await
        .expect("catalog instances");
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    eprintln!("rnacos, catalog/instances in unknown namespace {namespace:?}: {status} {body}");
    assert!(status.is_success(), "{status} {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("catalog JSON");
    assert_eq!(v["count"], json!(0), "{body}");
    let namespaces: serde_json::Value = http
        .get(format!("{nacos}/nacos/v1/console/namespaces"))
        .send()
        .await
        .expect("namespace list")
        .json()
        .await
        .expect("namespace list JSON");
    eprintln!("rnacos namespaces: {namespaces}");
    let ids: Vec<&str> = namespaces["data"]
        .as_array()
        .expect("a namespace list")
        .iter()
        .filter_map(|n| n["namespace"].as_str())
        .collect();
    assert!(!ids.contains(&namespace), "{namespaces}");
}

#[tokio::test]
async fn bad_references_are_reported_and_the_healthy_binding_is_still_served() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("badrefs");
    create_namespace(&client, &ns).await;

    // Each failing binding governs a service with an orphan (an in-scope address no pod has) in
    // the public namespace: nothing may remove it.
    let orphan = "10.244.253.9";
    let svc = |b: &str| format!("{ns}-{b}");
    for b in ["nosecret", "unreachable", "nonamespace"] {
        register_http(&nacos, &svc(b), orphan, 8080).await;
    }
    let missing_ns = format!("missing-{}", std::process::id());
    // A different id, so this probe cannot affect the binding's.
    unknown_namespace_lists_nothing(&nacos, &format!("{missing_ns}-probe"), &svc("nonamespace"))
        .await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let policy = json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"});
    let scope = json!({"cidrs": ["10.244.0.0/16"]});
    let bindings_spec = [
        (
            "nosecret",
            json!({"serverAddr": [nacos], "tls": {"caSecretRef": {"name": "nacos-ca-missing"}}}),
        ),
        ("unreachable", json!({"serverAddr": [dead]})),
        (
            "nonamespace",
            json!({"serverAddr": [nacos], "namespace": missing_ns}),
        ),
    ];
    for (name, nacos_spec) in &bindings_spec {
        create_binding(
            &client,
            &ns,
            name,
            json!({
                "nacos": nacos_spec,
                "services": [{"name": svc(name)}],
                "pods": {"selector": {"matchLabels": {"app": name}}},
                "scope": scope, "policy": policy, "resyncSeconds": 5
            }),
        )
        .await;
    }
    // (d) the healthy binding, served by the same operator.
    let pods = deploy(&client, &ns, "healthy", 2, None).await;
    for (_, ip) in &pods {
        register_http(&nacos, &svc("healthy"), ip, 8080).await;
    }
    create_binding(
        &client,
        &ns,
        "healthy",
        json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc("healthy")}],
            "pods": {"selector": {"matchLabels": {"app": "healthy"}}},
            "scope": scope, "policy": policy, "resyncSeconds": 5
        }),
    )
    .await;
    let operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);

    // (a) The missing (CA) Secret: SpecValid=False (SecretNotFound), an Event naming it. A missing
    // credentials Secret is AuthFailed instead (tests/e2e_faults.rs).
    let m = wait_condition(
        &bindings,
        "nosecret",
        "SpecValid",
        "False",
        "SecretNotFound",
    )
    .await;
    assert!(m.contains(&format!("{ns}/nacos-ca-missing")), "{m}");
    wait_warning(
        &client,
        &ns,
        "nosecret",
        "SecretNotFound",
        &[
            &format!("Secret {ns}/nacos-ca-missing not found"),
            "nothing removed",
        ],
    )
    .await;
    // (b) The dead address: NacosReachable=False (NacosUnavailable), an Event naming it.
    let m = wait_condition(
        &bindings,
        "unreachable",
        "NacosReachable",
        "False",
        "NacosUnavailable",
    )
    .await;
    assert!(m.contains(&dead), "{m}");
    wait_warning(
        &client,
        &ns,
        "unreachable",
        "NacosUnavailable",
        &[&dead, "nothing removed"],
    )
    .await;
    // (c) The unknown namespace: NacosReachable=False (NamespaceNotFound), an Event naming it.
    let m = wait_condition(
        &bindings,
        "nonamespace",
        "NacosReachable",
        "False",
        "NamespaceNotFound",
    )
    .await;
    assert!(m.contains(&format!("{missing_ns:?}")), "{m}");
    wait_warning(
        &client,
        &ns,
        "nonamespace",
        "NamespaceNotFound",
        &[
            &format!("Nacos namespace {missing_ns:?} does not exist at {nacos}"),
            "nothing removed",
        ],
    )
    .await;
    for name in ["nosecret", "unreachable", "nonamespace"] {
        wait_condition(&bindings, name, "Ready", "False", "Degraded").await;
    }

    // (d) Meanwhile the healthy binding works: a scale-down is acted on.
    wait_condition(&bindings, "healthy", "Ready", "True", "Reconciled").await;
    let gone = scale_down(&client, &ns, "healthy", 1).await;
    wait_for(
        &format!("{gone}:8080 of the healthy binding to be taken offline"),
        Duration::from_secs(60),
        || {
            let (nacos, svc) = (nacos.clone(), svc("healthy"));
            let gone = gone.clone();
            async move {
                nacos_instance(&nacos, &svc, &gone, 8080)
                    .await
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    let mut live: Vec<String> = pods
        .iter()
        .filter(|(_, ip)| *ip != gone)
        .map(|(_, ip)| format!("{ip}:8080"))
        .collect();
    live.sort();
    assert_eq!(consumer_view(&nacos, &svc("healthy")).await, live);

    // A few more passes of every failing binding: still failing, still nothing removed.
    for name in ["nosecret", "unreachable", "nonamespace"] {
        wait_passes(&operator, &format!("{ns}/{name}"), 2).await;
        let s = bindings.get(name).await.unwrap().status.unwrap();
        assert_eq!(s.removed_total, 0, "{name}: {s:#?}");
        assert_eq!(
            condition(&s, "Ready").map(|c| c.0).as_deref(),
            Some("False"),
            "{name}: {s:#?}"
        );
        assert!(
            nacos_instance(&nacos, &svc(name), orphan, 8080)
                .await
                .is_some(),
            "{name}: the orphan was removed"
        );
    }
    let healthy = bindings.get("healthy").await.unwrap().status.unwrap();
    assert_eq!(healthy.removed_total, 1, "{healthy:#?}");
    let metrics = operator.metrics().await;
    for name in ["nosecret", "unreachable", "nonamespace"] {
        assert!(
            !metrics.contains(&format!("binding=\"{ns}/{name}\",action=")),
            "{name} attempted an action: {metrics}"
        );
    }
}
