//! End-to-end: bindings that reference what does not exist — a (CA) Secret, a reachable Nacos
//! address, a Nacos namespace — each get a condition and a Warning Event naming the problem,
//! nothing is removed on their behalf, and the same operator process keeps serving a healthy
//! binding next to them. On Alibaba Nacos 2.5.1 and 3.0.3 (auth on) and rnacos.

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

/// A GET to `server` (with its token where it has auth): the status and the JSON answer.
async fn get_json(server: Server, path: &str, query: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut rb = reqwest::Client::new()
        .get(format!("{}{path}", server.addr()))
        .query(query);
    if let Some(t) = server.token().await {
        rb = rb.header("accessToken", t);
    }
    let r = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {server}: {e}"));
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    eprintln!("{server}, {path} in {query:?}: {status} {body}");
    let v = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {path} on {server}: {e}: {status} {body}"));
    (status, v)
}

/// What the server answers for a namespace that does not exist: empty listings, 200 — which is
/// why the operator looks the namespace up instead of trusting them. (Queries do not create it:
/// the namespace listing still lacks it afterwards.) Each server is asked what the operator would
/// ask it: rnacos and 2.5.1 the v1 service list and their instance listing, 3.0.3 (v1/v2 admin API
/// off) its v3 admin service list.
async fn unknown_namespace_lists_nothing(server: Server, namespace: &str, service: &str) {
    let (services, instances, namespaces) = match server {
        Server::Nacos3 => {
            let (st, v) = get_json(
                server,
                "/nacos/v3/admin/ns/service/list",
                &[
                    ("namespaceId", namespace),
                    ("pageNo", "1"),
                    ("pageSize", "10"),
                ],
            )
            .await;
            assert_eq!(st, 200, "{v}");
            assert_eq!(v["data"]["totalCount"], json!(0), "{v}");
            let (st, v) = get_json(
                server,
                "/nacos/v1/ns/instance/list",
                &[("namespaceId", namespace), ("serviceName", service)],
            )
            .await;
            assert_eq!(st, 200, "{v}");
            assert_eq!(v["hosts"], json!([]), "{v}");
            return assert_namespace_unlisted(
                server,
                "/nacos/v3/admin/core/namespace/list",
                namespace,
            )
            .await;
        }
        Server::Nacos2 => (
            "/nacos/v1/ns/service/list",
            "/nacos/v2/ns/catalog/instances",
            "/nacos/v1/console/namespaces",
        ),
        Server::Rnacos | Server::RnacosAuth => (
            "/nacos/v1/ns/service/list",
            "/nacos/v1/ns/catalog/instances",
            "/nacos/v1/console/namespaces",
        ),
    };
    let (st, v) = get_json(
        server,
        services,
        &[
            ("pageNo", "1"),
            ("pageSize", "10"),
            ("namespaceId", namespace),
        ],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["count"], json!(0), "{v}");
    let grouped = format!("DEFAULT_GROUP@@{service}");
    let query: &[(&str, &str)] = if server == Server::Nacos2 {
        &[
            ("serviceName", &grouped),
            ("pageNo", "1"),
            ("pageSize", "10"),
            ("namespaceId", namespace),
        ]
    } else {
        &[
            ("serviceName", service),
            ("clusterName", "DEFAULT"),
            ("pageNo", "1"),
            ("pageSize", "10"),
            ("namespaceId", namespace),
        ]
    };
    let (st, v) = get_json(server, instances, query).await;
    assert_eq!(st, 200, "{v}");
    // 2.5.1 answers {"code":0,"data":{"count":0}}, rnacos {"count":0,"list":[]}.
    let count = if server == Server::Nacos2 {
        &v["data"]["count"]
    } else {
        &v["count"]
    };
    assert_eq!(count, &json!(0), "{v}");
    assert_namespace_unlisted(server, namespaces, namespace).await;
}

async fn assert_namespace_unlisted(server: Server, path: &str, namespace: &str) {
    let (st, namespaces) = get_json(server, path, &[]).await;
    assert_eq!(st, 200, "{namespaces}");
    let ids: Vec<&str> = namespaces["data"]
        .as_array()
        .expect("a namespace list")
        .iter()
        .filter_map(|n| n["namespace"].as_str())
        .collect();
    assert!(!ids.contains(&namespace), "{server}: {namespaces}");
}

async fn bad_references_are_reported_and_the_healthy_binding_is_still_served(server: Server) {
    let policy = json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"});
    let scope = json!({"cidrs": ["10.244.0.0/16"]});
    // (d) the healthy binding, served by the same operator as the failing ones.
    let scene = Scene::on(server, "healthy")
        .pods(2)
        .registered(By::Persistent)
        .policy(policy.clone())
        .spec(json!({"scope": scope, "resyncSeconds": 5}))
        .build()
        .await;
    let (client, ns) = (&scene.client, &scene.ns);
    let nacos = server.addr();

    // Each failing binding governs a service with an orphan (an in-scope address no pod has) in
    // the public namespace: nothing may remove it.
    let orphan = "10.244.253.9";
    let svc = |b: &str| format!("{ns}-{b}");
    for b in ["nosecret", "unreachable", "nonamespace"] {
        server
            .register_persistent(&Registration::new(&svc(b), orphan, 8080))
            .await;
    }
    let missing_ns = format!("missing-{}", std::process::id());
    // A different id, so this probe cannot affect the binding's.
    unknown_namespace_lists_nothing(server, &format!("{missing_ns}-probe"), &svc("nonamespace"))
        .await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    // Each the server's own `spec.nacos` (with the credentials Secret where it has auth), with
    // one thing wrong.
    let with = |patch: serde_json::Value| {
        let mut nacos = server.binding_nacos();
        common::scene::merge(&mut nacos, patch);
        nacos
    };
    let bindings_spec = [
        (
            "nosecret",
            with(json!({"tls": {"caSecretRef": {"name": "nacos-ca-missing"}}})),
        ),
        ("unreachable", with(json!({"serverAddr": [dead]}))),
        ("nonamespace", with(json!({"namespace": missing_ns}))),
    ];
    for (name, nacos_spec) in &bindings_spec {
        create_binding(
            client,
            ns,
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
    let operator = scene.operator();
    let bindings = &scene.bindings;

    // (a) The missing (CA) Secret: SpecValid=False (SecretNotFound), an Event naming it. A missing
    // credentials Secret is AuthFailed instead (tests/e2e_faults.rs).
    let m = wait_condition(bindings, "nosecret", "SpecValid", "False", "SecretNotFound").await;
    assert!(m.contains(&format!("{ns}/nacos-ca-missing")), "{m}");
    wait_warning(
        client,
        ns,
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
        bindings,
        "unreachable",
        "NacosReachable",
        "False",
        "NacosUnavailable",
    )
    .await;
    assert!(m.contains(&dead), "{m}");
    wait_warning(
        client,
        ns,
        "unreachable",
        "NacosUnavailable",
        &[&dead, "nothing removed"],
    )
    .await;
    // (c) The unknown namespace: NacosReachable=False (NamespaceNotFound), an Event naming it.
    let m = wait_condition(
        bindings,
        "nonamespace",
        "NacosReachable",
        "False",
        "NamespaceNotFound",
    )
    .await;
    assert!(m.contains(&format!("{missing_ns:?}")), "{m}");
    wait_warning(
        client,
        ns,
        "nonamespace",
        "NamespaceNotFound",
        &[
            &format!("Nacos namespace {missing_ns:?} does not exist at {nacos}"),
            "nothing removed",
        ],
    )
    .await;
    for name in ["nosecret", "unreachable", "nonamespace"] {
        wait_condition(bindings, name, "Ready", "False", "Degraded").await;
    }

    // (d) Meanwhile the healthy binding works: a scale-down is acted on.
    wait_condition(bindings, &scene.app, "Ready", "True", "Reconciled").await;
    let (survivors, gone) = scene.scale_to(1).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let gone = &gone[0];
    wait_for(
        &format!("{gone}:8080 of the healthy binding to be taken offline"),
        Duration::from_secs(60),
        || async { scene.held(gone).await.is_none().then_some(()) },
    )
    .await;
    assert_eq!(scene.consumers().await, scene.addrs(&survivors));

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
            server.held(&svc(name), orphan, 8080).await.is_some(),
            "{server}, {name}: the orphan was removed"
        );
    }
    let healthy = bindings.get(&scene.app).await.unwrap().status.unwrap();
    assert_eq!(healthy.removed_total, 1, "{healthy:#?}");
    let metrics = operator.metrics().await;
    for name in ["nosecret", "unreachable", "nonamespace"] {
        assert!(
            !metrics.contains(&format!("binding=\"{ns}/{name}\",action=")),
            "{name} attempted an action: {metrics}"
        );
    }
}
per_server!(
    bad_references_are_reported_and_the_healthy_binding_is_still_served:
    nacos_2_5_1, nacos_3_0_3, rnacos
);
