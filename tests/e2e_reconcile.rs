//! End-to-end: the operator binary against the testbed's API server and each Nacos server, with
//! instances registered by the official Java SDK: a scale-down, `plan`, and the mission's own
//! cases (a pod gone while its process stays connected, or keeps beating).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// (Scenario 1) Scale-down of a Deployment whose pods registered over gRPC (and, in a second
/// service, as persistent instances): exactly the removed pods' instances go offline within
/// `gracePeriodSeconds` + 2 s; the others are untouched.
async fn scaling_down_takes_exactly_the_removed_pods_instances_offline_within_grace_plus_two_seconds(
    server: Server,
) {
    let grace = 3u64;
    let mut scene = Scene::on(server, "scale")
        .pods(4)
        .registered(By::Grpc)
        .policy(json!({"gracePeriodSeconds": grace, "maxRemovals": "100%"}))
        .build()
        .await;
    // The same pods as persistent instances of a second service of the binding.
    let http_svc = format!("{}-http", scene.ns);
    for (_, ip) in &scene.pods {
        server
            .register_persistent(&Registration::new(&http_svc, ip, 8080))
            .await;
    }
    let spec = scene.binding_spec(
        &[&scene.svc, &http_svc],
        json!({"gracePeriodSeconds": grace, "maxRemovals": "100%"}),
    );
    scene.patch_spec(spec).await;
    let operator = scene.operator();
    scene.wait_ready_live(8).await;

    let scaled = Instant::now();
    let (survivors, gone) = scene.scale_to(2).await;
    assert_eq!(gone.len(), 2);
    let deadline = Duration::from_secs(grace + 2);
    let left = |d: Duration| deadline.saturating_sub(scaled.elapsed()) + d;
    scene
        .wait_consumers(&survivors, left(Duration::from_millis(250)))
        .await;
    let want = scene.addrs(&survivors);
    wait_for(
        &format!("{http_svc} to list only the survivors"),
        left(Duration::from_millis(250)),
        || async { (server.consumer_view(&http_svc).await == want).then_some(()) },
    )
    .await;
    let took = scaled.elapsed();
    eprintln!("{server}: the removed pods' instances went offline {took:?} after the scale-down");
    assert!(
        took <= deadline + Duration::from_millis(250),
        "took {took:?}"
    );

    // The survivors were never touched: registered, enabled, no marker.
    for ip in &survivors {
        for svc in [&scene.svc, &http_svc] {
            let held = server.held(svc, ip, 8080).await.expect("survivor listed");
            assert!(
                held.enabled && held.disabled_by().is_none(),
                "{svc} {ip}: {held:?}"
            );
        }
    }
    // The persistent instances were deregistered, not merely disabled.
    for ip in &gone {
        assert!(server.held(&http_svc, ip, 8080).await.is_none(), "{ip}");
    }
    // An action is counted once its read-back saw it, which may come after a consumer did (on
    // Alibaba Nacos both wait for the server's ~0.6 s publication).
    let counted = |m: &str| {
        m.contains("action=\"deregister\",result=\"success\"} ")
            && m.contains("nacos_reconciler_removal_latency_seconds_count")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = operator.metrics().await;
    while !counted(&metrics) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        metrics = operator.metrics().await;
    }
    assert!(counted(&metrics), "{metrics}");
    drop(scene.apps.drain(..));
}
per_server!(
    scaling_down_takes_exactly_the_removed_pods_instances_offline_within_grace_plus_two_seconds:
    nacos_2_5_1, nacos_3_0_3, rnacos
);

/// `plan` prints the server, every instance with its verdict and what would be done, and changes
/// nothing.
async fn plan_prints_every_instance_with_its_verdict_and_changes_nothing(server: Server) {
    let scene = Scene::on(server, "plan")
        .pods(2)
        .spec(json!({"scope": {"cidrs": ["10.244.0.0/16"]}}))
        .policy(json!({"gracePeriodSeconds": 0}))
        .build()
        .await;
    for ip in ["10.244.250.1", "192.168.250.1"] {
        // No pod has the first; the second is outside the scope.
        server
            .register_persistent(&Registration::new(&scene.svc, ip, 8080))
            .await;
    }
    let text = scene.plan();
    let header = text.lines().next().unwrap_or_default();
    let want = match server {
        Server::Nacos2 => "Nacos 2.5.1 (api V2)",
        Server::Nacos3 => "Nacos 3.0.3 (api V3)",
        _ => "rnacos (version not reported, api V1)",
    };
    assert_eq!(header, want, "{text}");
    let line = |ip: &str| {
        text.lines()
            .find(|l| l.contains(&format!("{ip}:8080")))
            .unwrap_or_else(|| panic!("no row for {ip} in\n{text}"))
            .to_string()
    };
    for (_, ip) in &scene.pods {
        assert!(line(ip).contains("Live"), "{text}");
    }
    let orphan = line("10.244.250.1");
    assert!(
        orphan.contains("Orphan")
            && orphan.contains("deregister now")
            && orphan.contains("persistent: Nacos never removes these by itself"),
        "{text}"
    );
    assert!(line("192.168.250.1").contains("Foreign"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(
        scene.held("10.244.250.1").await.is_some(),
        "plan changed something"
    );
}
per_server!(plan_prints_every_instance_with_its_verdict_and_changes_nothing: nacos_2_5_1, nacos_3_0_3, rnacos);

/// Waits for a `DeregisterIneffective` Event naming `ip`; returns its note.
async fn deregister_ineffective(scene: &Scene, ip: &str) -> String {
    scene
        .event_note("DeregisterIneffective", &format!("{ip}:"))
        .await
}

/// (Scenario 2, the mission's own case) A pod is deleted while its process stays connected over
/// gRPC. Alibaba Nacos answers the DELETE `ok` and keeps the instance: the operator sees that,
/// disables it and says `DeregisterIneffective`; a consumer on the Java SDK (its subscriber and
/// `selectInstances`) no longer gets it. (rnacos removes the instance on the DELETE itself.)
async fn a_pod_gone_while_its_grpc_client_stays_connected_is_taken_away_from_consumers(
    server: Server,
) {
    let scene = Scene::on(server, "zombie")
        .pods(2)
        .registered(By::Grpc)
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}))
        .build()
        .await;
    let mut consumer = JavaApp::consumer(server, &scene.svc, false);
    let all = scene.addrs(
        &scene
            .pods
            .iter()
            .map(|(_, ip)| ip.clone())
            .collect::<Vec<_>>(),
    );
    consumer
        .wait_push(Duration::from_secs(30), |l| l == all.as_slice())
        .expect("the consumer to get both instances");
    let _operator = scene.operator();
    scene.wait_ready_live(2).await;

    let deleted = Instant::now();
    let (survivors, gone) = scene.scale_to(1).await;
    let victim = format!("{}:8080", gone[0]);
    let want = scene.addrs(&survivors);
    let pushed = consumer.wait_push(Duration::from_secs(20), |l| l == want.as_slice());
    assert!(
        pushed.is_some(),
        "{server}: the consumer was never pushed the list without {victim}"
    );
    eprintln!(
        "{server}: the consumer's subscriber lost {victim} {:?} after the scale-down",
        deleted.elapsed()
    );
    assert_eq!(
        consumer.select(),
        want,
        "selectInstances still gives {victim}"
    );
    assert_eq!(scene.consumers().await, want);

    let held = scene.held(&gone[0]).await;
    if server.is_alibaba() {
        // The process still owns the instance: still registered, disabled by this binding.
        let uid = scene.uid().await;
        let held = held.expect("still registered: its gRPC connection is alive");
        assert!(!held.enabled, "{held:?}");
        assert_eq!(held.disabled_by(), Some(uid.as_str()));
        let note = deregister_ineffective(&scene, &gone[0]).await;
        eprintln!("{note}");
        assert!(
            note.contains("a gRPC connection keeps it registered (client 127.0.0.1:")
                && note.contains("Nacos-Java-Client:v2.5.1), connected since"),
            "{note}"
        );
        // The status says it too, for as long as Nacos lists the instance.
        let why = scene.still_registered(&gone[0]).await;
        assert!(
            why.starts_with("a gRPC connection keeps it registered (client 127.0.0.1:")
                && why.contains("Nacos-Java-Client:v2.5.1), connected since"),
            "{why}"
        );
    } else {
        assert!(
            held.is_none(),
            "{server} keeps a deleted gRPC instance: {held:?}"
        );
    }
    // The survivor is untouched.
    let kept = scene
        .held(&survivors[0])
        .await
        .expect("the survivor is registered");
    assert!(kept.enabled && kept.disabled_by().is_none(), "{kept:?}");
}
per_server!(
    a_pod_gone_while_its_grpc_client_stays_connected_is_taken_away_from_consumers:
    nacos_2_5_1, nacos_3_0_3, rnacos
);

/// (Scenario 3) A 1.x client goes on beating after its pod is gone: the instance ends disabled and
/// stays so while the beats go on. Alibaba Nacos names the HTTP registration that keeps it: no
/// DELETE is sent. rnacos does not: the client registers again the instance the operator
/// deregistered, and the disable that follows is the same removal as that deregistration: a
/// budget of 2 takes two such instances offline (counted twice, it held the disables for the
/// whole window).
async fn a_1x_client_that_keeps_beating_ends_disabled_and_stays_so(server: Server) {
    let scene = Scene::on(server, "beats")
        .pods(3)
        .registered(By::Beats)
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": 2}))
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    let _operator = scene.operator();
    scene.wait_ready_live(3).await;
    let uid = scene.uid().await;

    let (survivors, gone) = scene.scale_to(1).await;
    assert_eq!(gone.len(), 2);
    for ip in &gone {
        wait_for(
            &format!("the beating instance {ip} to be disabled by this binding"),
            Duration::from_secs(60),
            || async {
                let h = scene.held(ip).await?;
                (!h.enabled && h.disabled_by() == Some(uid.as_str())).then_some(())
            },
        )
        .await;
    }
    let s = scene.status().await;
    assert_eq!(s.removals.len(), 2, "each removal counted once: {s:#?}");
    assert!(
        s.conditions
            .iter()
            .all(|c| c.type_ != "RemovalsHeld" || c.status == "False"),
        "{s:#?}"
    );
    let victim = gone[0].clone();
    // Why it is still registered, with the address to look for: on Alibaba Nacos, the HTTP
    // registration the server names (no DELETE was sent); elsewhere, the re-registration after
    // the DELETE.
    let cause = if server.is_alibaba() {
        format!(
            "registered over HTTP as ephemeral (client {victim}:8080#true): Nacos keeps it while \
             beats for it come"
        )
    } else {
        format!(
            "s after the operator deregistered it: something still sends beats for {victim}:8080 \
             or holds"
        )
    };
    let note = deregister_ineffective(&scene, &victim).await;
    eprintln!("{server}: {note}");
    assert!(note.contains(&cause), "{server}: {note}");

    // The status says why it is still listed, and so does `plan`: on Alibaba Nacos, which names
    // the publisher, the beats over HTTP; elsewhere, what keeps an ephemeral instance.
    let why = scene.still_registered(&victim).await;
    assert!(why.contains(&cause), "{server}: {why}");
    let text = scene.plan();
    let row = text
        .lines()
        .find(|l| l.contains(&format!(" {victim}:8080 ")))
        .unwrap_or_default();
    let generic =
        "ephemeral: Nacos keeps it while its client's gRPC connection (2.x) or beats (1.x) last";
    assert_eq!(
        row.contains(generic),
        !server.is_alibaba(),
        "{server}: {row}"
    );
    let named = if server.is_alibaba() {
        cause.as_str()
    } else {
        generic
    };
    eprintln!("{server}: status.stillRegistered: {why}\n{server}: plan: {row}");
    assert!(row.contains(named), "{server}: {text}");

    // It stays offline while the client goes on beating (beats every 5 s), the survivor untouched.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let h = scene
        .held(&victim)
        .await
        .expect("still registered: the client beats");
    assert!(!h.enabled, "{h:?}");
    assert_eq!(scene.consumers().await, scene.addrs(&survivors));
}
per_server!(a_1x_client_that_keeps_beating_ends_disabled_and_stays_so: nacos_2_5_1, rnacos);

/// (Issue 19, the empty-service trap) The last instance of a service goes while its process stays
/// connected: a consumer without push-empty protection gets the empty list, one with it
/// (`namingPushEmptyProtection`, official Java SDK) ignores that push and keeps the dead address.
/// `plan` warns of it first; the operator (started once the pod is gone) takes the instance
/// offline all the same, and says so: a `ServiceEmptied` Warning naming the protection, and
/// `nacos_reconciler_services_emptied_total`.
async fn the_last_instance_going_warns_about_push_empty_protection(server: Server) {
    let scene = Scene::on(server, "empty")
        .pods(1)
        .registered(By::Grpc)
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .build()
        .await;
    let all = scene.addrs(&[scene.pods[0].1.clone()]);
    let mut protected = JavaApp::consumer(server, &scene.svc, true);
    let mut plain = JavaApp::consumer(server, &scene.svc, false);
    for c in [&mut protected, &mut plain] {
        c.wait_push(Duration::from_secs(30), |l| l == all.as_slice())
            .expect("the consumer to get the instance");
    }
    let (_, gone) = scene.scale_to(0).await;
    assert_eq!(gone.len(), 1);
    let text = scene.plan();
    assert!(
        text.contains(&format!(
            "warning: {}: taking its last usable instances offline (dry run)",
            scene.svc
        )),
        "{text}"
    );
    // Why it is still online: its process (the Java app, on loopback) is still connected.
    let named = text.contains("a gRPC connection keeps it registered (client 127.0.0.1:");
    assert_eq!(named, server.is_alibaba(), "{server}: {text}");
    assert_eq!(
        text.contains("Nacos-Java-Client:v2.5.1), connected since"),
        server.is_alibaba(),
        "{server}: the connection's SDK: {text}"
    );
    let operator = scene.operator();
    plain
        .wait_push(Duration::from_secs(30), <[String]>::is_empty)
        .expect("the consumer without push-empty protection to be pushed the empty list");
    let note = scene.event_note("ServiceEmptied", &scene.svc).await;
    eprintln!("{server}: {note}");
    assert!(
        note.contains(&scene.svc) && note.contains("namingPushEmptyProtection=true"),
        "{note}"
    );
    assert_eq!(
        protected.select(),
        all,
        "{server}: the protected consumer no longer gets the dead address"
    );
    assert_eq!(plain.select(), Vec::<String>::new());
    let metrics = operator.metrics().await;
    assert!(
        metrics.contains(&format!(
            "nacos_reconciler_services_emptied_total{{binding=\"{}\"}} 1",
            scene.binding_key()
        )),
        "{metrics}"
    );
}
per_server!(
    the_last_instance_going_warns_about_push_empty_protection: nacos_2_5_1, nacos_3_0_3, rnacos
);
