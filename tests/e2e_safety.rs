//! End-to-end: the safety rules and what users see, with the operator binary against the testbed's
//! API server and each Nacos server (Alibaba Nacos 2.5.1 and 3.0.3, rnacos): the removal budget and
//! its approval, dry-run, a Nacos outage, wrong credentials, and `kubectl get` / `kubectl describe`.

mod common;
mod faults;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use faults::{has_condition, wait_passes};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use nacos_reconciler::crd::{PendingState, PlannedAction};
use serde_json::json;

const APPROVE: &str = "nacos-reconciler.io/approve-removals";

/// The testbed's own KWOK node the pods run on. Other tests create nodes of their own (OwnKwokNode)
/// and stop or delete them; a pod the scheduler put there would go Pending, be evicted and come back
/// elsewhere with another IP, which is not what these tests are about.
const SHARED_NODE: &str = "kwok-node-1";

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
    let out = Command::new(testbed_env("KUBECTL"))
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

fn ips(scene: &Scene) -> Vec<String> {
    scene.pods.iter().map(|(_, ip)| ip.clone()).collect()
}

// ------------------------------------------------------------------------------------------------
// (7) The removal budget, RemovalsHeld, and the approval annotation.

async fn a_mass_deletion_removes_only_the_budget_and_the_approval_releases_the_rest(
    server: Server,
) {
    let scene = Scene::on(server, "mass")
        .pods(10)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .policy(
            json!({"gracePeriodSeconds": 1, "maxRemovals": "50%", "removalWindowSeconds": 3600}),
        )
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    let (client, ns, name, svc) = (&scene.client, &scene.ns, &scene.app, &scene.svc);
    let operator = scene.operator();
    scene
        .wait_status(
            "Ready with 10 live instances",
            Duration::from_secs(60),
            |s| has_condition(s, "Ready", "True", "Reconciled") && s.instances.live == 10,
        )
        .await;

    // 80% of the pods go at once.
    let scaled = Instant::now();
    let (survivors, gone) = scene.scale_to(2).await;
    assert_eq!(gone.len(), 8);

    let s = wait_status(
        &scene.bindings,
        name,
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
    eprintln!(
        "{server}: budget spent and rest held after {:?}",
        scaled.elapsed()
    );
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
            assert_eq!(&p.service, svc);
            assert_eq!(p.action, PlannedAction::Deregister);
            // Why it is still online, and why it waits.
            assert!(
                p.reason
                    .contains("; persistent: Nacos never removes these by itself; ")
                    && p.reason
                        .ends_with("held by the removal budget (5 of 5 removals per 3600s used)"),
                "{}",
                p.reason
            );
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
    // `plan` says why Nacos still lists each, and that the budget will hold it when its grace
    // (started over: `plan` has not seen the pods go) runs out; so do the Events of those removed.
    let text = scene.plan();
    for h in &held {
        let row = text
            .lines()
            .find(|l| l.contains(&format!(" {h} ")))
            .unwrap_or_default();
        assert!(
            row.contains("persistent: Nacos never removes these by itself")
                && row
                    .contains(", then held by the removal budget (5 of 5 removals per 3600s used)"),
            "{h}: {text}"
        );
    }
    let removed: Vec<String> = gone
        .iter()
        .filter(|ip| !held.contains(&format!("{ip}:8080")))
        .map(|ip| format!("{ip}:8080"))
        .collect();
    let notes = wait_events(client, ns, name, "Deregistered", "Normal", &removed).await;
    assert!(
        notes
            .iter()
            .all(|n| n.contains("persistent: Nacos never removes these by itself")),
        "{notes:#?}"
    );

    // Nacos shows the survivors and exactly the held instances; the budget stays spent.
    let mut want = scene.addrs(&survivors);
    want.extend(held.iter().cloned());
    want.sort();
    assert_eq!(scene.consumers().await, want);
    wait_passes(&operator, &scene.binding_key(), 2, Duration::from_secs(30)).await;
    assert_eq!(scene.consumers().await, want, "held instances were removed");
    let s = scene.bindings.get(name).await.unwrap().status.unwrap();
    assert_eq!(s.removed_total, 5, "{s:#?}");
    assert!(has_condition(&s, "RemovalsHeld", "True", "BudgetExceeded"));

    let generation = scene
        .bindings
        .get(name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    let notes = wait_events(client, ns, name, "RemovalsHeld", "Warning", &held).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("{APPROVE}={generation}"))),
        "the RemovalsHeld event says how to approve: {notes:?}"
    );

    // The approval annotation releases the held batch.
    scene
        .bindings
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {APPROVE: generation.to_string()}}})),
        )
        .await
        .unwrap();
    let approved = Instant::now();
    scene
        .wait_consumers(&survivors, Duration::from_secs(30))
        .await;
    eprintln!(
        "{server}: approval released the held batch in {:?}",
        approved.elapsed()
    );
    let s = wait_status(
        &scene.bindings,
        name,
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
    // Persistent instances: the removals were deregistrations on every server, nothing disabled.
    for ip in &gone {
        assert!(scene.held(ip).await.is_none(), "{ip} is still registered");
    }
}
per_server!(
    a_mass_deletion_removes_only_the_budget_and_the_approval_releases_the_rest:
    nacos_2_5_1, rnacos
);

// ------------------------------------------------------------------------------------------------
// (7b) A mass removal's Events: ten of their own, the rest counted into one combined Event.

async fn a_mass_removal_gives_ten_events_of_their_own_and_one_combined_event_for_the_rest(
    server: Server,
) {
    // Claimed: the orphans below have no pod to have been seen on, which, unclaimed, is taken
    // for another cluster's instances (held).
    let scene = Scene::on(server, "fold")
        .claimed("testbed")
        .pods(1)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .spec(json!({"scope": {"cidrs": ["10.244.0.0/16"]}, "resyncSeconds": 5}))
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .build()
        .await;
    let (client, ns, name, svc) = (&scene.client, &scene.ns, &scene.app, &scene.svc);
    // No pod has these IPs: 14 instances to deregister in one go.
    let orphans: Vec<String> = (1..=14).map(|i| format!("10.244.252.{i}")).collect();
    for ip in &orphans {
        server.register_persistent(&scene.registration(ip)).await;
    }
    let _operator = scene.operator();
    wait_status(
        &scene.bindings,
        name,
        "14 instances deregistered",
        Duration::from_secs(60),
        |s| s.removed_total == 14 && s.instances.total == 1,
    )
    .await;
    for ip in &orphans {
        assert!(scene.held(ip).await.is_none(), "{ip} is still registered");
    }

    // Ten Events name an instance each; one combined Event counts the other four.
    let what = "10 Deregistered Events of their own and a combined one counting 4";
    let (own, combined) = wait_for(what, Duration::from_secs(30), || async {
        let evs = events(client, ns, name, "Deregistered").await;
        let count = |e: &Event| e.series.as_ref().map_or(1, |s| s.count);
        let (combined, own): (Vec<Event>, Vec<Event>) = evs.into_iter().partition(|e| {
            e.note
                .as_deref()
                .is_some_and(|n| n.starts_with("(combined from similar events)"))
        });
        (own.len() == 10 && combined.len() == 1 && count(&combined[0]) == 4)
            .then_some((own, combined))
    })
    .await;
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
    let out = kubectl(&["describe", "nb", name, "-n", ns]);
    assert!(
        out.lines()
            .any(|l| l.contains("(combined from similar events)") && l.contains("(x4 over")),
        "{out}"
    );
}
per_server!(
    a_mass_removal_gives_ten_events_of_their_own_and_one_combined_event_for_the_rest:
    nacos_2_5_1, rnacos
);

// ------------------------------------------------------------------------------------------------
// (8) Dry-run.

async fn dry_run_changes_nothing_in_nacos_and_reports_what_it_would_deregister(server: Server) {
    let scene = Scene::on(server, "dry")
        .claimed("testbed")
        .pods(2)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .spec(json!({"scope": {"cidrs": ["10.244.0.0/16"]}, "resyncSeconds": 5}))
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%", "dryRun": true}))
        .build()
        .await;
    let (client, ns, name, svc) = (&scene.client, &scene.ns, &scene.app, &scene.svc);
    // No pod has these IPs.
    let orphans: Vec<String> = (1..=3).map(|i| format!("10.244.251.{i}")).collect();
    for ip in &orphans {
        server.register_persistent(&scene.registration(ip)).await;
    }
    let operator = scene.operator();
    let s = wait_status(
        &scene.bindings,
        name,
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
    let notes = wait_events(client, ns, name, "WouldDeregister", "Normal", &named).await;
    assert!(
        notes
            .iter()
            .all(|n| n.contains("would be deregistered (dryRun)")),
        "{notes:?}"
    );

    // Several passes later nothing has changed in Nacos.
    wait_passes(&operator, &scene.binding_key(), 3, Duration::from_secs(45)).await;
    for ip in ips(&scene).iter().chain(&orphans) {
        let held = scene
            .held(ip)
            .await
            .unwrap_or_else(|| panic!("{ip} was removed in dry-run"));
        assert!(
            held.enabled && held.disabled_by().is_none(),
            "{ip} was disabled in dry-run: {held:?}"
        );
    }
    let s = scene.bindings.get(name).await.unwrap().status.unwrap();
    assert_eq!(s.removed_total, 0, "{s:#?}");
    assert_eq!(
        (s.instances.total, s.instances.live, s.instances.stale),
        (5, 2, 3)
    );
    assert!(has_condition(&s, "Ready", "True", "Reconciled"), "{s:#?}");
    assert!(events(client, ns, name, "Deregistered").await.is_empty());
    let metrics = operator.metrics().await;
    assert!(
        !metrics.contains("action=\"deregister\",result=\"success\"} "),
        "{metrics}"
    );

    // Turning dry-run off carries out exactly what it reported.
    scene
        .bindings
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"policy": {"dryRun": false}}})),
        )
        .await
        .unwrap();
    scene
        .wait_consumers(&ips(&scene), Duration::from_secs(30))
        .await;
    for ip in &orphans {
        assert!(scene.held(ip).await.is_none(), "{ip} is still registered");
    }
}
per_server!(dry_run_changes_nothing_in_nacos_and_reports_what_it_would_deregister: nacos_2_5_1, rnacos);

// ------------------------------------------------------------------------------------------------
// (9) Nacos unavailable, and wrong credentials.

/// (On Alibaba Nacos the outage is real: a server of the test's own, stopped and started again.)
async fn a_nacos_outage_removes_nothing_and_the_binding_recovers_when_nacos_returns(
    server: Server,
) {
    let grace = 2u64;
    // Start the server while the pods come up (an Alibaba JVM takes 20-35 s).
    let (mut nacos, scene) = match server {
        Server::Nacos2 => {
            let mut n = PrivateAlibabaNacos::launch("outage", &[]);
            let scene = outage_scene(server, &n.addr, grace).await;
            n.ready().await;
            (PrivateServer::Alibaba(n), scene)
        }
        _ => {
            let n = PrivateServer::start(server, "outage", &[]).await;
            let scene = outage_scene(server, &n.addr(), grace).await;
            (n, scene)
        }
    };
    let at = nacos.at();
    let (client, ns, name, svc) = (&scene.client, &scene.ns, &scene.app, &scene.svc);
    for ip in ips(&scene) {
        at.register_persistent(&Registration::new(svc, &ip, scene.port))
            .await;
    }
    let operator = scene.operator();
    let binding = scene.binding_key();
    scene
        .wait_status(
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
    nacos.stop().await;
    let stopped = Instant::now();
    let s = wait_status(
        &scene.bindings,
        name,
        "NacosReachable=False (NacosUnavailable)",
        Duration::from_secs(30),
        |s| has_condition(s, "NacosReachable", "False", "NacosUnavailable"),
    )
    .await;
    eprintln!(
        "{server}: NacosReachable=False {:?} after the stop",
        stopped.elapsed()
    );
    assert!(has_condition(&s, "Ready", "False", "Degraded"), "{s:#?}");
    wait_events(client, ns, name, "NacosUnavailable", "Warning", &[]).await;
    let (survivors, gone) = scene.scale_to(2).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let victim = scene
        .pods
        .iter()
        .find(|(_, ip)| *ip == gone[0])
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
    let s = scene.bindings.get(name).await.unwrap().status.unwrap();
    assert_eq!(s.removed_total, 0, "{s:#?}");
    assert!(has_condition(
        &s,
        "NacosReachable",
        "False",
        "NacosUnavailable"
    ));
    assert!(events(client, ns, name, "Deregistered").await.is_empty());
    let metrics = operator.metrics().await;
    assert!(
        !metrics.contains("action=\"deregister\""),
        "an action was attempted while Nacos was down: {metrics}"
    );

    // Nacos returns with its data: the survivors were kept, the dead pod's instance goes.
    nacos.resume().await;
    let resumed = Instant::now();
    for ip in &survivors {
        let addr = format!("{ip}:{}", scene.port);
        wait_for(
            &format!("{addr} to be listed after the restart"),
            Duration::from_secs(10),
            || async { at.consumer_view(svc).await.contains(&addr).then_some(()) },
        )
        .await;
    }
    let want = scene.addrs(&survivors);
    wait_for(
        "the dead pod's instance to be removed once Nacos is back",
        Duration::from_secs(30),
        || async { (at.consumer_view(svc).await == want).then_some(()) },
    )
    .await;
    let s = scene
        .wait_status(
            "Ready and NacosReachable again, the removal counted",
            Duration::from_secs(30),
            // The status reports the removal once it is verified: after consumers lost it.
            |s| {
                has_condition(s, "Ready", "True", "Reconciled")
                    && has_condition(s, "NacosReachable", "True", "Reachable")
                    && s.removed_total >= 1
            },
        )
        .await;
    eprintln!(
        "{server}: recovered {:?} after Nacos returned",
        resumed.elapsed()
    );
    assert_eq!(s.removed_total, 1, "{s:#?}");
    assert_eq!(s.instances.live, 2, "{s:#?}");
    // The server is known again for what it is.
    let version = match server {
        Server::Nacos2 => "2.5.1",
        _ => "rnacos (version not reported)",
    };
    assert_eq!(
        s.nacos.as_ref().and_then(|n| n.version.as_deref()),
        Some(version),
        "{s:#?}"
    );
    wait_events(
        client,
        ns,
        name,
        "Deregistered",
        "Normal",
        &[format!(
            "{svc} {}:8080 deregistered: pod {ns}/{}",
            victim.1, victim.0
        )],
    )
    .await;
}
per_server!(
    a_nacos_outage_removes_nothing_and_the_binding_recovers_when_nacos_returns:
    nacos_2_5_1, rnacos
);

/// Three pods and a binding to the private server at `addr` (nothing registered yet).
async fn outage_scene(server: Server, addr: &str, grace: u64) -> Scene {
    Scene::on(server, "outage")
        .pods(3)
        .on_node(SHARED_NODE)
        .registered(By::Nothing)
        .through(addr)
        .policy(json!({"gracePeriodSeconds": grace, "maxRemovals": "100%",
                       "onPodTerminating": "Ignore"}))
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await
}

async fn wrong_credentials_give_auth_failed_and_remove_nothing_until_the_password_is_fixed(
    server: Server,
) {
    let scene = Scene::on(server, "auth")
        .pods(1)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .spec(json!({"scope": {"cidrs": ["10.244.0.0/16"]}, "resyncSeconds": 5}))
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .build()
        .await;
    let (client, ns, name) = (&scene.client, &scene.ns, &scene.app);
    let live_ip = scene.pods[0].1.clone();
    let orphan_ip = "10.244.252.1";
    server
        .register_persistent(&Registration::new(&scene.svc, orphan_ip, scene.port))
        .await;
    // The Secret the binding names gets a wrong password before the operator starts.
    let (_, password) = server.credentials().expect("a server with auth");
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    secrets
        .patch(
            "nacos-auth",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "not-the-password"}})),
        )
        .await
        .unwrap();
    let operator = scene.operator();
    // (Nacos 3.0.3 answers a wrong password with HTTP 500; it reads as AuthFailed all the same.)
    let s = wait_status(
        &scene.bindings,
        name,
        "NacosReachable=False (AuthFailed)",
        Duration::from_secs(60),
        |s| has_condition(s, "NacosReachable", "False", "AuthFailed"),
    )
    .await;
    assert!(has_condition(&s, "Ready", "False", "Degraded"), "{s:#?}");
    let notes = wait_events(client, ns, name, "AuthFailed", "Warning", &[]).await;
    assert!(
        notes.iter().all(|n| !n.contains("not-the-password")),
        "an event shows the password: {notes:?}"
    );
    wait_passes(&operator, &scene.binding_key(), 2, Duration::from_secs(40)).await;
    let held = scene
        .held(orphan_ip)
        .await
        .expect("the orphan was removed with wrong credentials");
    assert!(held.enabled, "disabled with wrong credentials: {held:?}");
    let s = scene.bindings.get(name).await.unwrap().status.unwrap();
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
        || async { scene.held(orphan_ip).await.is_none().then_some(()) },
    )
    .await;
    eprintln!(
        "{server}: orphan removed {:?} after the password was fixed",
        fixed.elapsed()
    );
    // The status reports the removal once it is verified: after Nacos stopped listing it.
    let s = wait_status(
        &scene.bindings,
        name,
        "NacosReachable=True, Ready and the removal counted",
        Duration::from_secs(30),
        |s| {
            has_condition(s, "NacosReachable", "True", "Reachable")
                && has_condition(s, "Ready", "True", "Reconciled")
                && s.removed_total >= 1
        },
    )
    .await;
    assert_eq!(s.removed_total, 1, "{s:#?}");
    let held = scene.held(&live_ip).await.expect("the live instance");
    assert!(
        held.enabled && held.disabled_by().is_none(),
        "{live_ip}: {held:?}"
    );
}
per_server!(
    wrong_credentials_give_auth_failed_and_remove_nothing_until_the_password_is_fixed:
    nacos_2_5_1, nacos_3_0_3, rnacos_auth
);

// ------------------------------------------------------------------------------------------------
// (10) What kubectl shows.

async fn kubectl_get_shows_the_counts_and_describe_shows_the_events_and_the_server_version(
    server: Server,
) {
    let scene = Scene::on(server, "kc")
        .pods(4)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}))
        .build()
        .await;
    let (ns, name) = (&scene.ns, &scene.app);
    let svc_a = scene.svc.clone();
    let svc_b = format!("{ns}-b");
    server
        .register_persistent(&Registration::new(&svc_b, "192.168.77.1", 8080)) // outside the scope
        .await;
    let spec = scene.binding_spec(
        &[&svc_a, &svc_b],
        json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}),
    );
    let mut spec = json!({ "spec": spec });
    spec["spec"]["scope"] = json!({"cidrs": ["10.244.0.0/16"]});
    spec["spec"]["resyncSeconds"] = json!(5);
    scene
        .bindings
        .patch(name, &PatchParams::default(), &Patch::Merge(spec))
        .await
        .expect("the second service and the scope");
    // An instance this binding took offline earlier (its marker), whose pod is long gone.
    let uid = scene
        .bindings
        .get(name)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let mut offline = Registration::new(&svc_b, "10.244.253.1", 8080);
    offline
        .metadata
        .insert("nacos-reconciler.io/disabled-by".into(), uid.clone());
    server.register_persistent(&offline).await;
    server.set_enabled_by_hand(&offline, false).await;
    wait_for(
        "the marked instance to be listed disabled",
        Duration::from_secs(10),
        || async {
            let h = server.held_at(&offline).await?;
            (!h.enabled && h.disabled_by() == Some(uid.as_str())).then_some(())
        },
    )
    .await;

    let _operator = scene.operator();
    scene.wait_ready_live(4).await;
    let (survivors, gone) = scene.scale_to(3).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let (victim, victim_ip) = scene
        .pods
        .iter()
        .find(|(_, ip)| *ip == gone[0])
        .unwrap()
        .clone();
    let s = wait_status(
        &scene.bindings,
        name,
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
    assert_eq!(scene.consumers().await, scene.addrs(&survivors));
    // The instance marked offline earlier stays as it was: registered, disabled, marked.
    let h = server
        .held_at(&offline)
        .await
        .expect("the offline instance");
    assert!(!h.enabled && h.disabled_by() == Some(uid.as_str()), "{h:?}");
    // The server's real version (and the API spoken).
    let version = match server {
        Server::Nacos2 => "2.5.1",
        Server::Nacos3 => "3.0.3",
        _ => "rnacos (version not reported)",
    };
    let seen = s.nacos.clone().expect("status.nacos");
    assert_eq!(seen.version.as_deref(), Some(version), "{seen:?}");
    assert_eq!(
        seen.api.map(|a| format!("{a:?}")).as_deref(),
        Some(server.api()),
        "{seen:?}"
    );

    let out = kubectl(&["get", "nb", "-n", ns]);
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
    assert!(kubectl(&["get", "nacos", "-n", ns]).contains("kc"));

    let out = kubectl(&["describe", "nb", name, "-n", ns]);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")
                == format!("Version: {version}")),
        "describe does not show the version {version}:\n{out}"
    );
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
per_server!(
    kubectl_get_shows_the_counts_and_describe_shows_the_events_and_the_server_version:
    nacos_2_5_1, nacos_3_0_3, rnacos
);
