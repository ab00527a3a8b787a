//! End-to-end: the safety rules and what users see, with the operator binary against the testbed's
//! API server and real Nacos servers (rnacos): the removal budget and its approval, dry-run, a Nacos
//! outage, wrong credentials, and `kubectl get` / `kubectl describe`.

mod common;
mod faults;

use std::time::{Duration, Instant};

use common::*;
use faults::{has_condition, scale, wait_passes};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use nacos_reconciler::crd::{NacosBinding, PendingState, PlannedAction};
use serde_json::json;

const APPROVE: &str = "nacos-reconciler.io/approve-removals";

/// The events.k8s.io/v1 Events about binding `name` with `reason`.
async fn events(client: &kube::Client, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("NacosBinding")
        })
        .collect()
}

/// Waits until Events with `reason` about the binding exist and every string of `each` is named by
/// one of their notes; returns the notes.
async fn wait_events(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    type_: &str,
    each: &[String],
) -> Vec<String> {
    let what = format!("{type_} Events {reason} naming {each:?}");
    wait_for(&what, Duration::from_secs(60), || async move {
        let evs = events(client, ns, name, reason).await;
        if evs.is_empty() || evs.iter().any(|e| e.type_.as_deref() != Some(type_)) {
            return None;
        }
        let notes: Vec<String> = evs.iter().filter_map(|e| e.note.clone()).collect();
        each.iter()
            .all(|s| notes.iter().any(|n| n.contains(s.as_str())))
            .then_some(notes)
    })
    .await
}

/// Runs the testbed's kubectl; panics with its stderr when it fails.
fn kubectl(args: &[&str]) -> String {
    let out = std::process::Command::new(testbed_env("KUBECTL"))
        .args(["--kubeconfig", &testbed_env("KUBECONFIG")])
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn addrs(pods: &[(String, String)]) -> Vec<String> {
    let mut v: Vec<String> = pods.iter().map(|(_, ip)| format!("{ip}:8080")).collect();
    v.sort();
    v
}

// ------------------------------------------------------------------------------------------------
// (7) The removal budget, RemovalsHeld, and the approval annotation.

#[tokio::test]
async fn a_mass_deletion_removes_only_the_budget_and_the_approval_releases_the_rest() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("budget");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "mass", 10, None).await;
    let svc = format!("{ns}-svc");
    for (_, ip) in &pods {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    create_binding(
        &client,
        &ns,
        "mass",
        json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "mass"}}},
            "policy": {"gracePeriodSeconds": 1, "maxRemovals": "50%", "removalWindowSeconds": 3600},
            "resyncSeconds": 5
        }),
    )
    .await;
    let operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_status(
        &bindings,
        "mass",
        "Ready with 10 live instances",
        Duration::from_secs(60),
        |s| has_condition(s, "Ready", "True", "Reconciled") && s.instances.live == 10,
    )
    .await;

    // 80% of the pods go at once.
    scale(&client, &ns, "mass", 2).await;
    let scaled = Instant::now();
    let survivors = ready_pods(&client, &ns, "mass", 2).await;
    let gone: Vec<String> = pods
        .iter()
        .filter(|p| !survivors.contains(p))
        .map(|(_, ip)| ip.clone())
        .collect();
    assert_eq!(gone.len(), 8);

    let s = wait_status(
        &bindings,
        "mass",
        "5 removals and 3 held",
        Duration::from_secs(60),
        |s| {
            s.removed_total >= 5
                && s.pending
                    .iter()
                    .filter(|p| p.state == Some(PendingState::Held))
                    .count()
                    >= 3
        },
    )
    .await;
    eprintln!("budget spent and rest held after {:?}", scaled.elapsed());
    assert_eq!(s.removed_total, 5, "{s:#?}");
    assert!(
        has_condition(&s, "RemovalsHeld", "True", "BudgetExceeded"),
        "{s:#?}"
    );
    let held: Vec<String> = s
        .pending
        .iter()
        .filter(|p| p.state == Some(PendingState::Held))
        .map(|p| {
            assert_eq!(p.service, svc);
            assert_eq!(p.action, PlannedAction::Deregister);
            format!("{}:{}", p.ip, p.port)
        })
        .collect();
    assert_eq!(held.len(), 3, "{s:#?}");
    assert_eq!(s.pending.len(), 3, "only held removals are pending: {s:#?}");
    for h in &held {
        let ip = h.trim_end_matches(":8080");
        assert!(
            gone.contains(&ip.to_string()),
            "held {h} is not a deleted pod's"
        );
    }
    assert_eq!(s.services.len(), 1);
    assert_eq!(s.services[0].held, 3, "{s:#?}");

    // Nacos shows the survivors and exactly the held instances; the budget stays spent.
    let mut want = addrs(&survivors);
    want.extend(held.iter().cloned());
    want.sort();
    assert_eq!(consumer_view(&nacos, &svc).await, want);
    wait_passes(&operator, &format!("{ns}/mass"), 2, Duration::from_secs(30)).await;
    assert_eq!(
        consumer_view(&nacos, &svc).await,
        want,
        "held instances were removed"
    );
    let s = bindings.get("mass").await.unwrap().status.unwrap();
    assert_eq!(s.removed_total, 5, "{s:#?}");
    assert!(has_condition(&s, "RemovalsHeld", "True", "BudgetExceeded"));

    let generation = bindings
        .get("mass")
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    let notes = wait_events(&client, &ns, "mass", "RemovalsHeld", "Warning", &held).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("{APPROVE}={generation}"))),
        "the RemovalsHeld event says how to approve: {notes:?}"
    );

    // The approval annotation releases the held batch.
    bindings
        .patch(
            "mass",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {APPROVE: generation.to_string()}}})),
        )
        .await
        .unwrap();
    let approved = Instant::now();
    let want = addrs(&survivors);
    wait_for(
        "the held instances to be removed after the approval",
        Duration::from_secs(30),
        || {
            let (nacos, svc, want) = (nacos.clone(), svc.clone(), want.clone());
            async move { (consumer_view(&nacos, &svc).await == want).then_some(()) }
        },
    )
    .await;
    eprintln!(
        "approval released the held batch in {:?}",
        approved.elapsed()
    );
    let s = wait_status(
        &bindings,
        "mass",
        "RemovalsHeld=False with nothing pending",
        Duration::from_secs(30),
        |s| has_condition(s, "RemovalsHeld", "False", "WithinBudget") && s.pending.is_empty(),
    )
    .await;
    assert_eq!(s.removed_total, 8, "{s:#?}");
    assert_eq!(
        s.approved_token.as_deref(),
        Some(generation.to_string().as_str())
    );
    assert_eq!(s.instances.live, 2);
    assert_eq!(s.instances.total, 2);
}

// ------------------------------------------------------------------------------------------------
// (7b) A mass removal's Events: ten of their own, the rest counted into one combined Event.

#[tokio::test]
async fn a_mass_removal_gives_ten_events_of_their_own_and_one_combined_event_for_the_rest() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("fold");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "fold", 1, None).await;
    let svc = format!("{ns}-svc");
    register_http(&nacos, &svc, &pods[0].1, 8080).await;
    // No pod has these IPs: 14 instances to deregister in one go.
    let orphans: Vec<String> = (1..=14).map(|i| format!("10.244.252.{i}")).collect();
    for ip in &orphans {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    create_binding(
        &client,
        &ns,
        "fold",
        json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "fold"}}},
            "scope": {"cidrs": ["10.244.0.0/16"]},
            "policy": {"gracePeriodSeconds": 0, "maxRemovals": "100%"},
            "resyncSeconds": 5
        }),
    )
    .await;
    let _operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_status(
        &bindings,
        "fold",
        "14 instances deregistered",
        Duration::from_secs(60),
        |s| s.removed_total == 14 && s.instances.total == 1,
    )
    .await;

    // Ten Events name an instance each; one combined Event counts the other four.
    let what = "10 Deregistered Events of their own and a combined one counting 4";
    let evs = wait_for(what, Duration::from_secs(30), || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let evs = events(&client, &ns, "fold", "Deregistered").await;
            let count = |e: &Event| e.series.as_ref().map_or(1, |s| s.count);
            let (combined, own): (Vec<Event>, Vec<Event>) = evs.into_iter().partition(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|n| n.starts_with("(combined from similar events)"))
            });
            (own.len() == 10 && combined.len() == 1 && count(&combined[0]) == 4)
                .then_some((own, combined))
        }
    })
    .await;
    let (own, combined) = evs;
    let mut named: Vec<&String> = own
        .iter()
        .map(|e| {
            let note = e.note.as_deref().unwrap_or_default();
            assert_eq!(e.series, None, "no repeats: {e:?}");
            orphans
                .iter()
                .find(|ip| note.starts_with(&format!("{svc} {ip}:8080 deregistered")))
                .unwrap_or_else(|| panic!("{note} names none of the instances"))
        })
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(named.len(), 10, "each Event names another instance");
    let note = combined[0].note.as_deref().unwrap_or_default();
    assert!(
        note.contains("more than 10 Deregistered Events within 10 minutes"),
        "{note}"
    );
    assert!(
        orphans
            .iter()
            .any(|ip| note.contains(&format!("{svc} {ip}:8080 deregistered"))),
        "the combined Event names its first instance: {note}"
    );
    // kubectl describe shows the count.
    let out = kubectl(&["describe", "nb", "fold", "-n", &ns]);
    assert!(
        out.lines()
            .any(|l| l.contains("(combined from similar events)") && l.contains("(x4 over")),
        "{out}"
    );
}

// ------------------------------------------------------------------------------------------------
// (8) Dry-run.

#[tokio::test]
async fn dry_run_changes_nothing_in_nacos_and_reports_what_it_would_deregister() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("dryrun");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "dry", 2, None).await;
    let svc = format!("{ns}-svc");
    for (_, ip) in &pods {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    // No pod has these IPs.
    let orphans: Vec<String> = (1..=3).map(|i| format!("10.244.251.{i}")).collect();
    for ip in &orphans {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    create_binding(
        &client,
        &ns,
        "dry",
        json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "dry"}}},
            "scope": {"cidrs": ["10.244.0.0/16"]},
            "policy": {"gracePeriodSeconds": 0, "maxRemovals": "100%", "dryRun": true},
            "resyncSeconds": 5
        }),
    )
    .await;
    let operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    let s = wait_status(
        &bindings,
        "dry",
        "3 dry-run entries in status.pending",
        Duration::from_secs(60),
        |s| {
            s.pending
                .iter()
                .filter(|p| p.state == Some(PendingState::DryRun))
                .count()
                == 3
        },
    )
    .await;
    let mut pending: Vec<String> = s
        .pending
        .iter()
        .map(|p| {
            assert_eq!(p.action, PlannedAction::Deregister, "{p:?}");
            assert_eq!(p.state, Some(PendingState::DryRun), "{p:?}");
            p.ip.clone()
        })
        .collect();
    pending.sort();
    assert_eq!(pending, orphans);
    let named: Vec<String> = orphans
        .iter()
        .map(|ip| format!("{svc} {ip}:8080"))
        .collect();
    let notes = wait_events(&client, &ns, "dry", "WouldDeregister", "Normal", &named).await;
    assert!(
        notes
            .iter()
            .all(|n| n.contains("would be deregistered (dryRun)")),
        "{notes:?}"
    );

    // Several passes later nothing has changed in Nacos.
    wait_passes(&operator, &format!("{ns}/dry"), 3, Duration::from_secs(45)).await;
    for ip in pods.iter().map(|(_, ip)| ip).chain(&orphans) {
        let i = nacos_instance(&nacos, &svc, ip, 8080)
            .await
            .unwrap_or_else(|| panic!("{ip} was removed in dry-run"));
        assert_eq!(
            i["enabled"],
            json!(true),
            "{ip} was disabled in dry-run: {i}"
        );
    }
    let s = bindings.get("dry").await.unwrap().status.unwrap();
    assert_eq!(s.removed_total, 0, "{s:#?}");
    assert_eq!(
        (s.instances.total, s.instances.live, s.instances.stale),
        (5, 2, 3)
    );
    assert!(has_condition(&s, "Ready", "True", "Reconciled"), "{s:#?}");
    assert!(events(&client, &ns, "dry", "Deregistered").await.is_empty());
    let metrics = operator.metrics().await;
    assert!(
        !metrics.contains("action=\"deregister\",result=\"success\"} "),
        "{metrics}"
    );

    // Turning dry-run off carries out exactly what it reported.
    bindings
        .patch(
            "dry",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"policy": {"dryRun": false}}})),
        )
        .await
        .unwrap();
    let want = addrs(&pods);
    wait_for(
        "the orphans to be deregistered once dryRun is off",
        Duration::from_secs(30),
        || {
            let (nacos, svc, want) = (nacos.clone(), svc.clone(), want.clone());
            async move { (consumer_view(&nacos, &svc).await == want).then_some(()) }
        },
    )
    .await;
}

// ------------------------------------------------------------------------------------------------
// (9) Nacos unavailable, and wrong credentials.

#[tokio::test]
async fn a_nacos_outage_removes_nothing_and_the_binding_recovers_when_nacos_returns() {
    let client = kube_client().await;
    install_crd(&client).await;
    let mut server = PrivateNacos::start("outage").await;
    let nacos = server.addr.clone();
    let ns = unique("outage");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "out", 3, None).await;
    let svc = format!("{ns}-svc");
    for (_, ip) in &pods {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    let grace = 2u64;
    create_binding(
        &client,
        &ns,
        "out",
        json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "out"}}},
            "policy": {"gracePeriodSeconds": grace, "maxRemovals": "100%",
                       "onPodTerminating": "Ignore"},
            "resyncSeconds": 5
        }),
    )
    .await;
    let operator = Operator::start(&ns);
    let binding = format!("{ns}/out");
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_status(
        &bindings,
        "out",
        "Ready and NacosReachable with 3 live instances",
        Duration::from_secs(60),
        |s| {
            has_condition(s, "Ready", "True", "Reconciled")
                && has_condition(s, "NacosReachable", "True", "Reachable")
                && s.instances.live == 3
        },
    )
    .await;

    // Nacos goes away; then a pod goes away too.
    server.stop().await;
    let stopped = Instant::now();
    let s = wait_status(
        &bindings,
        "out",
        "NacosReachable=False (NacosUnavailable)",
        Duration::from_secs(30),
        |s| has_condition(s, "NacosReachable", "False", "NacosUnavailable"),
    )
    .await;
    eprintln!(
        "NacosReachable=False {:?} after the stop",
        stopped.elapsed()
    );
    assert!(has_condition(&s, "Ready", "False", "Degraded"), "{s:#?}");
    wait_events(&client, &ns, "out", "NacosUnavailable", "Warning", &[]).await;
    scale(&client, &ns, "out", 2).await;
    let survivors = ready_pods(&client, &ns, "out", 2).await;
    let victim = pods
        .iter()
        .find(|p| !survivors.contains(p))
        .expect("a removed pod")
        .clone();
    // Two passes after the grace period ended, with Nacos still down: nothing was removed.
    let deleted = Instant::now();
    wait_for(
        "the grace period to end",
        Duration::from_secs(grace + 1),
        || async move { (deleted.elapsed() > Duration::from_secs(grace)).then_some(()) },
    )
    .await;
    wait_passes(&operator, &binding, 2, Duration::from_secs(40)).await;
    let s = bindings.get("out").await.unwrap().status.unwrap();
    assert_eq!(s.removed_total, 0, "{s:#?}");
    assert!(has_condition(
        &s,
        "NacosReachable",
        "False",
        "NacosUnavailable"
    ));
    assert!(events(&client, &ns, "out", "Deregistered").await.is_empty());
    let metrics = operator.metrics().await;
    assert!(
        !metrics.contains("action=\"deregister\""),
        "an action was attempted while Nacos was down: {metrics}"
    );

    // Nacos returns with its data: the survivors were kept, the dead pod's instance goes.
    server.resume().await;
    let resumed = Instant::now();
    for (_, ip) in &survivors {
        wait_for(
            &format!("{ip} to be listed after the restart"),
            Duration::from_secs(10),
            || {
                let (nacos, svc) = (nacos.clone(), svc.clone());
                async move { nacos_instance(&nacos, &svc, ip, 8080).await.map(|_| ()) }
            },
        )
        .await;
    }
    let want = addrs(&survivors);
    wait_for(
        "the dead pod's instance to be removed once Nacos is back",
        Duration::from_secs(30),
        || {
            let (nacos, svc, want) = (nacos.clone(), svc.clone(), want.clone());
            async move { (consumer_view(&nacos, &svc).await == want).then_some(()) }
        },
    )
    .await;
    let s = wait_status(
        &bindings,
        "out",
        "Ready and NacosReachable again",
        Duration::from_secs(30),
        |s| {
            has_condition(s, "Ready", "True", "Reconciled")
                && has_condition(s, "NacosReachable", "True", "Reachable")
        },
    )
    .await;
    eprintln!("recovered {:?} after Nacos returned", resumed.elapsed());
    assert_eq!(s.removed_total, 1, "{s:#?}");
    assert_eq!(s.instances.live, 2, "{s:#?}");
    wait_events(
        &client,
        &ns,
        "out",
        "Deregistered",
        "Normal",
        &[format!(
            "{svc} {}:8080 deregistered: pod {ns}/{}",
            victim.1, victim.0
        )],
    )
    .await;
}

#[tokio::test]
async fn wrong_credentials_give_auth_failed_and_remove_nothing_until_the_password_is_fixed() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_AUTH_ADDR");
    let password = testbed_env("NACOS_PASSWORD");
    let token = nacos_login(&nacos, &testbed_env("NACOS_USERNAME"), &password).await;
    let ns = unique("auth");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "auth", 1, None).await;
    let svc = format!("{ns}-svc");
    let live_ip = pods[0].1.clone();
    let orphan_ip = "10.244.252.1";
    register_http_with_token(&nacos, &token, &svc, &live_ip, 8080).await;
    register_http_with_token(&nacos, &token, &svc, orphan_ip, 8080).await;

    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nacos-auth"},
        "stringData": {"username": testbed_env("NACOS_USERNAME"), "password": "not-the-password"}
    }))
    .unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    create_binding(
        &client,
        &ns,
        "auth",
        json!({
            "nacos": {"serverAddr": [nacos], "credentialsSecretRef": {"name": "nacos-auth"}},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "auth"}}},
            "scope": {"cidrs": ["10.244.0.0/16"]},
            "policy": {"gracePeriodSeconds": 0, "maxRemovals": "100%"},
            "resyncSeconds": 5
        }),
    )
    .await;
    let operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    let s = wait_status(
        &bindings,
        "auth",
        "NacosReachable=False (AuthFailed)",
        Duration::from_secs(60),
        |s| has_condition(s, "NacosReachable", "False", "AuthFailed"),
    )
    .await;
    assert!(has_condition(&s, "Ready", "False", "Degraded"), "{s:#?}");
    let notes = wait_events(&client, &ns, "auth", "AuthFailed", "Warning", &[]).await;
    assert!(
        notes.iter().all(|n| !n.contains("not-the-password")),
        "an event shows the password: {notes:?}"
    );
    wait_passes(&operator, &format!("{ns}/auth"), 2, Duration::from_secs(40)).await;
    assert!(
        nacos_instance_with_token(&nacos, &token, &svc, orphan_ip, 8080)
            .await
            .is_some(),
        "the orphan was removed with wrong credentials"
    );
    let s = bindings.get("auth").await.unwrap().status.unwrap();
    assert_eq!(s.removed_total, 0, "{s:#?}");
    assert!(has_condition(&s, "NacosReachable", "False", "AuthFailed"));

    // The right password: the orphan goes, the live instance stays.
    secrets
        .patch(
            "nacos-auth",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": password}})),
        )
        .await
        .unwrap();
    let fixed = Instant::now();
    wait_for(
        "the orphan to be removed with the right password",
        Duration::from_secs(40),
        || {
            let (nacos, token, svc) = (nacos.clone(), token.clone(), svc.clone());
            async move {
                nacos_instance_with_token(&nacos, &token, &svc, orphan_ip, 8080)
                    .await
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "orphan removed {:?} after the password was fixed",
        fixed.elapsed()
    );
    let s = wait_status(
        &bindings,
        "auth",
        "NacosReachable=True and Ready",
        Duration::from_secs(30),
        |s| {
            has_condition(s, "NacosReachable", "True", "Reachable")
                && has_condition(s, "Ready", "True", "Reconciled")
        },
    )
    .await;
    assert_eq!(s.removed_total, 1, "{s:#?}");
    assert!(
        nacos_instance_with_token(&nacos, &token, &svc, &live_ip, 8080)
            .await
            .is_some()
    );
}

// ------------------------------------------------------------------------------------------------
// (10) What kubectl shows.

#[tokio::test]
async fn kubectl_get_shows_the_counts_and_describe_shows_the_events() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("kubectl");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "kc", 4, None).await;
    let svc_a = format!("{ns}-a");
    let svc_b = format!("{ns}-b");
    for (_, ip) in &pods {
        register_http(&nacos, &svc_a, ip, 8080).await;
    }
    register_http(&nacos, &svc_b, "192.168.77.1", 8080).await; // outside the scope
    create_binding(
        &client,
        &ns,
        "kc",
        json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc_a}, {"name": svc_b}],
            "pods": {"selector": {"matchLabels": {"app": "kc"}}},
            "scope": {"cidrs": ["10.244.0.0/16"]},
            "policy": {"gracePeriodSeconds": 1, "maxRemovals": "100%"},
            "resyncSeconds": 5
        }),
    )
    .await;
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    // An instance this binding took offline earlier (its marker), whose pod is long gone.
    let uid = bindings.get("kc").await.unwrap().metadata.uid.unwrap();
    register_http(&nacos, &svc_b, "10.244.253.1", 8080).await;
    let r = reqwest::Client::new()
        .put(format!("{nacos}/nacos/v1/ns/instance"))
        .query(&[
            ("serviceName", svc_b.as_str()),
            ("ip", "10.244.253.1"),
            ("port", "8080"),
            ("ephemeral", "false"),
            ("enabled", "false"),
            (
                "metadata",
                &json!({"nacos-reconciler.io/disabled-by": uid}).to_string(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let _operator = Operator::start(&ns);
    wait_status(
        &bindings,
        "kc",
        "4 live instances",
        Duration::from_secs(60),
        |s| s.instances.live == 4,
    )
    .await;
    scale(&client, &ns, "kc", 3).await;
    let survivors = ready_pods(&client, &ns, "kc", 3).await;
    let (victim, victim_ip) = pods
        .iter()
        .find(|p| !survivors.contains(p))
        .unwrap()
        .clone();
    wait_status(
        &bindings,
        "kc",
        "the removed pod's instance deregistered",
        Duration::from_secs(30),
        |s| {
            s.removed_total == 1
                && s.instances.total == 5
                && s.pending.is_empty()
                && has_condition(s, "Ready", "True", "Reconciled")
        },
    )
    .await;
    assert_eq!(consumer_view(&nacos, &svc_a).await, addrs(&survivors));

    let out = kubectl(&["get", "nb", "-n", &ns]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "SERVICES",
            "INSTANCES",
            "LIVE",
            "STALE",
            "OFFLINE",
            "REMOVED",
            "READY",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(lines.len(), 2, "{out}");
    // services 2; instances 3 live + the foreign one + the one we disabled earlier (stale, offline).
    assert_eq!(
        lines[1][..8],
        ["kc", "2", "5", "3", "1", "1", "1", "True"],
        "{out}"
    );
    // The short name and the category work too.
    assert!(kubectl(&["get", "nacos", "-n", &ns]).contains("kc"));

    let out = kubectl(&["describe", "nb", "kc", "-n", &ns]);
    let events = out
        .split_once("Events:")
        .unwrap_or_else(|| panic!("no Events in describe:\n{out}"))
        .1;
    let line = events
        .lines()
        .find(|l| l.contains("Deregistered"))
        .unwrap_or_else(|| panic!("no Deregistered event in describe:\n{out}"));
    assert!(line.contains("Normal"), "{line}");
    assert!(
        line.contains(&format!(
            "{svc_a} {victim_ip}:8080 deregistered: pod {ns}/{victim} "
        )),
        "the event names service, ip:port, pod and reason:\n{out}"
    );
    assert!(
        line.contains("deleted") || line.contains("terminating"),
        "{line}"
    );
}
