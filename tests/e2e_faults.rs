//! End-to-end fault scenarios (issue 5) on the shared testbed, on Alibaba Nacos 2.5.1 and on
//! rnacos: Nacos killed mid-pass, Nacos slow / answering 500 / malformed JSON, the operator
//! SIGKILLed between a DELETE and its verification, the leader killed during a mass deletion,
//! login-token expiry and a deleted credentials Secret, and a pod IP reused by a new pod of the
//! same app.
//!
//! The operator reaches Nacos only through an in-process fault proxy (`faults::FaultProxy`), whose
//! log is a continuous record of every write: each test asserts that no live instance was ever sent a
//! DELETE or `enabled=false`, that every live instance is registered and enabled at the end, and that
//! the stale ones did go offline once the fault was over. (Scenarios that restart the API server or
//! stop every node are in `e2e_faults_private.rs`, on a testbed of their own.)
//!
//! Instances are registered as applications do (the official Java SDK over gRPC, one connection per
//! pod, kept open) where the scenario allows. Where it is about what a DELETE did (removed twice?
//! exactly once? the budget spent in DELETEs?) or about instances that outlive a server restart, they
//! are persistent instances over HTTP: on Alibaba Nacos the DELETE of an ephemeral instance whose
//! gRPC connection lives on is answered `ok` and removes nothing (the operator disables it instead), so
//! only persistent instances give those scenarios a DELETE that takes on both servers. A server of
//! the test's own (killed, or with short-lived tokens) gets persistent instances too: the Java SDK
//! helpers know only the testbed's servers.

mod common;
mod faults;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use nacos_reconciler::controller::WRITES_IN_FLIGHT;
use nacos_reconciler::crd::PendingState;
use serde_json::json;

/// What every binding here adds to the fixture's spec: passes every 5 s (the tests count passes),
/// the scope of the testbed's pod and own-node networks.
fn spec() -> serde_json::Value {
    json!({"resyncSeconds": 5, "scope": {"cidrs": ["10.244.0.0/16", "10.245.0.0/16"]}})
}

/// One of the testbed's own KWOK nodes, for a Deployment's pods: other tests add nodes of their
/// own that the scheduler would use too, and stop or delete them under the pods it put there.
fn testbed_node(i: usize) -> String {
    let nodes: usize = testbed_env("TESTBED_KWOK_NODES")
        .parse()
        .expect("TESTBED_KWOK_NODES is a number");
    format!("kwok-node-{}", i % nodes.max(1))
}

// ------------------------------------------------------------------------------------------------
// (1) Nacos killed in the middle of a pass with removals pending; restarted.

async fn nacos_killed_mid_pass_then_restarted_resumes_without_removing_twice_or_touching_live(
    server: Server,
) {
    let mut nacos = PrivateServer::start(server, "faults-kill", &[]).await;
    let at = nacos.at();
    let proxy = FaultProxy::start(&nacos.addr()).await;
    let scene = Scene::on(server, "nkill")
        .pods(WRITES_IN_FLIGHT + 8)
        .on_node(&testbed_node(0))
        .registered(By::Nothing)
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .spec(spec())
        .through(&proxy.addr)
        .build()
        .await;
    // Persistent instances: they are what comes back with a restarted server.
    for ip in ips(&scene.pods) {
        at.register_persistent(&Registration::new(&scene.svc, &ip, 8080))
            .await;
    }
    let op = scene.operator();
    scene.wait_ready_live(WRITES_IN_FLIGHT as u32 + 8).await;

    // Every DELETE takes 1.5 s: the removal of more instances than the operator's writes in
    // flight is still going on when Nacos goes down after the first ones.
    proxy.set_delete_delay(Duration::from_millis(1500));
    let (survivors, gone) = scene.scale_to(4).await;
    assert_eq!(gone.len(), WRITES_IN_FLIGHT + 4);
    wait_for("two DELETEs done", Duration::from_secs(60), || {
        let done = proxy.deletes_done().values().sum::<usize>() >= 2;
        async move { done.then_some(()) }
    })
    .await;
    nacos.kill().await;
    let stopped = Instant::now();
    let done_before = proxy.deletes_done();
    eprintln!("{server}: Nacos killed mid-pass after DELETEs {done_before:?}");
    assert!(
        done_before.values().sum::<usize>() < gone.len(),
        "the pass was over before Nacos went down: {done_before:?}"
    );
    let s = wait_status(
        &scene.bindings,
        &scene.app,
        "NacosReachable=False while Nacos is down",
        Duration::from_secs(60),
        |s| has_condition(s, "NacosReachable", "False", "NacosUnavailable"),
    )
    .await;
    eprintln!(
        "{server}: NacosReachable=False {:?} after the kill: {:?}",
        stopped.elapsed(),
        s.conditions
            .iter()
            .find(|c| c.type_ == "NacosReachable")
            .map(|c| &c.message)
    );

    nacos.resume().await;
    proxy.set_delete_delay(Duration::ZERO);
    let resumed = Instant::now();
    // The survivors came back with Nacos (persistent instances); the rest of the pass is done now.
    for ip in &survivors {
        wait_for(
            &format!("{ip} listed after the restart"),
            Duration::from_secs(20),
            || async { at.held(&scene.svc, ip, 8080).await.map(|_| ()) },
        )
        .await;
    }
    at.wait_deregistered(&scene.svc, &gone, Duration::from_secs(60))
        .await;
    eprintln!(
        "{server}: every stale instance offline {:?} after the restart",
        resumed.elapsed()
    );
    wait_passes(&op, &scene.binding_key(), 2, Duration::from_secs(30)).await;

    let done = proxy.deletes_done();
    eprintln!("{server}: DELETEs answered by Nacos per IP: {done:?}");
    for (ip, n) in &done {
        assert!(
            gone.contains(ip),
            "DELETE of {ip}, which is not a removed pod's"
        );
        assert_eq!(*n, 1, "{ip} was deregistered {n} times: {done:?}");
    }
    proxy.assert_untouched(&survivors);
    at.assert_live_registered(&scene.svc, &survivors).await;
    let s = scene.status().await;
    assert!(s.removed_total as usize <= gone.len(), "{s:#?}");
    assert_eq!(s.instances.live, 4, "{s:#?}");
    if let PrivateServer::Alibaba(n) = &nacos {
        eprintln!("{server}: the private server's starts took {:?}", n.starts);
    }
    drop(op);
    delete_namespace(&scene.client, &scene.ns).await;
}
per_server!(
    nacos_killed_mid_pass_then_restarted_resumes_without_removing_twice_or_touching_live:
    nacos_2_5_1, rnacos
);

// ------------------------------------------------------------------------------------------------
// (2) Nacos slow (past the client's timeout), answering 500, answering malformed JSON.

async fn slow_failing_or_garbled_nacos_removes_nothing_says_why_and_recovers(server: Server) {
    let at = NacosAt::shared(server);
    let proxy = FaultProxy::start(&server.addr()).await;
    let scene = Scene::on(server, "nflaky")
        .pods(5)
        .on_node(&testbed_node(1))
        .registered(By::Grpc)
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}))
        .spec(spec())
        .through(&proxy.addr)
        .build()
        .await;
    let op = scene.operator();
    scene.wait_ready_live(5).await;
    let uid = scene.uid().await;

    let mut replicas = 5;
    for (mode, what) in [
        (Mode::Delay(Duration::from_secs(7)), "slow"),
        (Mode::Error500, "500"),
        (Mode::Malformed, "malformed JSON"),
    ] {
        proxy.set_mode(mode);
        let faulted = Instant::now();
        let s = wait_status(
            &scene.bindings,
            &scene.app,
            &format!("NacosReachable=False with Nacos {what}"),
            Duration::from_secs(90),
            |s| has_condition(s, "NacosReachable", "False", "NacosUnavailable"),
        )
        .await;
        let msg = s
            .conditions
            .iter()
            .find(|c| c.type_ == "NacosReachable")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        eprintln!(
            "{server}: Nacos {what}: NacosReachable=False after {:?}: {msg}",
            faulted.elapsed()
        );
        assert!(has_condition(&s, "Ready", "False", "Degraded"), "{s:#?}");
        wait_event(
            &scene.client,
            &scene.ns,
            &scene.app,
            "NacosUnavailable",
            "nothing removed",
            Duration::from_secs(30),
        )
        .await;

        // A pod goes while Nacos misbehaves: nothing is removed for the service.
        replicas -= 1;
        let victim = scale_down(&scene.client, &scene.ns, &scene.app, replicas).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        wait_passes(&op, &scene.binding_key(), 2, Duration::from_secs(120)).await;
        let sent = proxy.removals_of(std::slice::from_ref(&victim));
        assert!(
            sent.is_empty(),
            "a removal was sent while Nacos was {what}: {sent:#?}"
        );
        let held = at.held(&scene.svc, &victim, 8080).await;
        assert!(
            held.as_ref().is_some_and(|h| h.enabled),
            "{victim} was taken offline while Nacos was {what}: {held:?}"
        );

        // Nacos is well again: the stale instance goes, the live ones stay.
        proxy.set_mode(Mode::PassThrough);
        let healed = Instant::now();
        at.wait_offline(
            &scene.svc,
            std::slice::from_ref(&victim),
            &uid,
            Duration::from_secs(60),
        )
        .await;
        let held = at.held(&scene.svc, &victim, 8080).await;
        let writes = proxy.removal_writes(&victim);
        if server.is_alibaba() {
            // Alibaba Nacos keeps an instance whose gRPC connection lives on (the Java app's) and
            // names that connection: the operator sends no DELETE that could not take, it disables.
            assert!(held.is_some_and(|h| !h.enabled), "{victim}");
            assert_eq!(writes, (0, 1), "{victim}: (DELETEs, enabled=false) sent");
        } else {
            // rnacos removes a gRPC instance on a DELETE.
            assert!(held.is_none(), "{victim}: {held:?}");
            assert_eq!(writes, (1, 0), "{victim}: (DELETEs, enabled=false) sent");
        }
        wait_status(
            &scene.bindings,
            &scene.app,
            "NacosReachable=True again",
            Duration::from_secs(60),
            |s| has_condition(s, "NacosReachable", "True", "Reachable"),
        )
        .await;
        eprintln!(
            "{server}: recovered from Nacos {what} in {:?}",
            healed.elapsed()
        );
        let live = ips(&ready_pods(&scene.client, &scene.ns, &scene.app, replicas).await);
        proxy.assert_untouched(&live);
        at.assert_live_registered(&scene.svc, &live).await;
    }
    drop(op);
    delete_namespace(&scene.client, &scene.ns).await;
}
per_server!(slow_failing_or_garbled_nacos_removes_nothing_says_why_and_recovers: nacos_2_5_1, rnacos);

// ------------------------------------------------------------------------------------------------
// (4) The operator SIGKILLed between a DELETE and its verification, then restarted.

async fn operator_killed_between_delete_and_verification_converges_idempotently(server: Server) {
    let at = NacosAt::shared(server);
    let proxy = FaultProxy::start(&server.addr()).await;
    // Persistent instances: the DELETE takes on every server, so "exactly once" is about DELETEs
    // that did something.
    // Claimed: a restarted operator never saw the deleted pods, and most instances at such
    // addresses would, unclaimed, be held as another cluster's (README: one Nacos, several clusters).
    let scene = Scene::on(server, "nsigkill")
        .claimed("testbed")
        .pods(WRITES_IN_FLIGHT + 20)
        .on_node(&testbed_node(2))
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .spec(spec())
        .through(&proxy.addr)
        .build()
        .await;
    let mut op = Operator::start_with(&scene.ns, "op-0", &[]);
    scene.wait_ready_live(WRITES_IN_FLIGHT as u32 + 20).await;
    // Armed before the pods go: the first DELETE already is one to kill after. On Alibaba Nacos the
    // verification (a read-back once the server refreshed its view, 0.6-1.6 s later) is held too,
    // so the kill still falls between the DELETE and its verification.
    proxy.arm_hold_after_delete();
    let (survivors, gone) = scene.scale_to(2).await;
    // Up to WRITES_IN_FLIGHT writes are in flight at once, so a kill can leave that many in doubt
    // (they reached the proxy before the hold): enough stale instances that each of the three
    // kills below still finds one to write.
    assert_eq!(gone.len(), WRITES_IN_FLIGHT + 18);

    // Three times: let one DELETE through, hold the verification that follows, SIGKILL, restart.
    for cycle in 1..=3 {
        proxy.wait_held(Duration::from_secs(90)).await;
        drop(op); // TestProcess kills with SIGKILL
                  // The operator starts again once what the killed one sent was answered and shows in the
                  // server's listing. On Alibaba Nacos that is ~0.5 s after the DELETE (the view's
                  // refresh); a restart outside a test takes longer (a new pod, its caches' sync), while
                  // here the next process listed 0.3 s after the DELETE, the listing from before it.
        proxy.wait_idle(Duration::from_secs(30)).await;
        let done = proxy.deletes_done();
        let deleted: Vec<String> = done.keys().cloned().collect();
        at.wait_deregistered(&scene.svc, &deleted, Duration::from_secs(10))
            .await;
        eprintln!(
            "{server}: cycle {cycle}: killed between DELETE and verification; DELETEs so far {done:?}"
        );
        if cycle < 3 {
            proxy.arm_hold_after_delete();
        }
        proxy.release();
        op = Operator::start_with(&scene.ns, &format!("op-{cycle}"), &[]);
    }
    at.wait_deregistered(&scene.svc, &gone, Duration::from_secs(60))
        .await;
    scene.wait_ready_live(2).await;
    wait_passes(&op, &scene.binding_key(), 2, Duration::from_secs(30)).await;

    let done = proxy.deletes_done();
    eprintln!("{server}: DELETEs per IP: {done:?}");
    let mut removed: Vec<&String> = done.keys().collect();
    removed.sort();
    let mut want: Vec<&String> = gone.iter().collect();
    want.sort();
    assert_eq!(
        removed, want,
        "every stale instance deregistered, nothing else"
    );
    assert!(
        done.values().all(|n| *n == 1),
        "an instance was deregistered twice: {done:?}"
    );
    proxy.assert_untouched(&survivors);
    at.assert_live_registered(&scene.svc, &survivors).await;
    drop(op);
    delete_namespace(&scene.client, &scene.ns).await;
}
per_server!(
    operator_killed_between_delete_and_verification_converges_idempotently: nacos_2_5_1, rnacos
);

// ------------------------------------------------------------------------------------------------
// (5) The leader killed during a mass deletion: the new leader respects the budget already spent.

async fn a_leader_killed_mid_mass_deletion_leaves_its_successor_the_spent_budget(server: Server) {
    let at = NacosAt::shared(server);
    let proxy = FaultProxy::start(&server.addr()).await;
    // More than the operator's writes in flight, so the leader can die with its budget part spent.
    let budget = WRITES_IN_FLIGHT + 4;
    // Persistent instances: the budget is counted in DELETEs that take.
    let scene = Scene::on(server, "nleader")
        .pods(WRITES_IN_FLIGHT + 10)
        .on_node(&testbed_node(0))
        .registered(By::Persistent)
        .policy(
            json!({"gracePeriodSeconds": 0, "maxRemovals": budget, "removalWindowSeconds": 3600}),
        )
        .spec(spec())
        .through(&proxy.addr)
        .build()
        .await;
    let kubeconfig = testbed_env("KUBECONFIG");
    let first = Operator::replica(&scene.ns, "replica-a", &kubeconfig);
    let (client, ns) = (&scene.client, scene.ns.as_str());
    wait_leader(client, ns, "replica-a", Duration::from_secs(30)).await;
    let second = Operator::replica(&scene.ns, "replica-b", &kubeconfig);
    scene.wait_ready_live(WRITES_IN_FLIGHT as u32 + 10).await;

    // 24 of 26 pods go; each DELETE takes 3 s, and the leader dies right after the first ones,
    // in the middle of its batch.
    proxy.set_delete_delay(Duration::from_secs(3));
    scale(&scene.client, &scene.ns, &scene.app, 2).await;
    wait_for("the leader's first DELETE", Duration::from_secs(60), || {
        let done = !proxy.deletes_done().is_empty();
        async move { done.then_some(()) }
    })
    .await;
    drop(first);
    let killed = Instant::now();
    let done_by_a = proxy.deletes_done();
    eprintln!("{server}: replica-a killed after DELETEs {done_by_a:?}");
    assert!(
        done_by_a.values().sum::<usize>() < budget,
        "replica-a finished its batch"
    );
    let (survivors, gone) = scene.scale_to(2).await;
    assert_eq!(gone.len(), WRITES_IN_FLIGHT + 8);
    proxy.set_delete_delay(Duration::ZERO);
    wait_leader(client, ns, "replica-b", Duration::from_secs(20)).await;
    eprintln!(
        "{server}: replica-b leads {:?} after the kill",
        killed.elapsed()
    );
    let s = wait_status(
        &scene.bindings,
        &scene.app,
        "RemovalsHeld=True under the new leader",
        Duration::from_secs(60),
        |s| {
            has_condition(s, "RemovalsHeld", "True", "BudgetExceeded")
                && s.pending
                    .iter()
                    .any(|p| p.state == Some(PendingState::Held))
        },
    )
    .await;
    wait_passes(&second, &scene.binding_key(), 3, Duration::from_secs(40)).await;
    let done = proxy.deletes_done();
    let total: usize = done.values().sum();
    eprintln!(
        "{server}: DELETEs within the window across both leaders: {total} ({done:?}); {s:#?}"
    );
    assert!(
        total <= budget,
        "the new leader spent the budget again: {total} removals > maxRemovals {budget}: {done:?}"
    );
    assert!(done.values().all(|n| *n == 1), "{done:?}");
    proxy.assert_untouched(&survivors);

    // Nothing stale is lost: the approval releases the held ones.
    let generation = scene
        .bindings
        .get(&scene.app)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    scene
        .bindings
        .patch(
            &scene.app,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "nacos-reconciler.io/approve-removals": generation.to_string()}}})),
        )
        .await
        .unwrap();
    at.wait_deregistered(&scene.svc, &gone, Duration::from_secs(60))
        .await;
    proxy.assert_untouched(&survivors);
    at.assert_live_registered(&scene.svc, &survivors).await;
    assert!(proxy.deletes_done().values().all(|n| *n == 1));
    drop(second);
    delete_namespace(&scene.client, &scene.ns).await;
}
per_server!(
    a_leader_killed_mid_mass_deletion_leaves_its_successor_the_spent_budget: nacos_2_5_1, rnacos
);

// ------------------------------------------------------------------------------------------------
// (8) Token expiry mid-run (re-login, no failed pass); the credentials Secret deleted (AuthFailed).

/// An rnacos of the test's own with open-API auth on and login tokens that live `ttl` seconds.
struct AuthNacos {
    addr: String,
    _proc: TestProcess,
}

impl AuthNacos {
    /// rnacos 0.8.8 now and then panics in its Raft store on a first start: try afresh, 3 times.
    async fn start(ttl: u32) -> Self {
        for _ in 0..3 {
            if let Some(n) = Self::try_start(ttl).await {
                return n;
            }
        }
        panic!("the auth rnacos never answered a login (three fresh starts)");
    }

    async fn try_start(ttl: u32) -> Option<Self> {
        let mut port = free_port();
        while port > 64_000 || std::net::TcpListener::bind(("127.0.0.1", port + 1000)).is_err() {
            port = free_port();
        }
        let dir = std::path::PathBuf::from(testbed_env("TESTBED_STATE"))
            .join(format!("rnacos-auth-ttl-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = std::env::var("RNACOS_BIN").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            format!("{home}/.cache/nacos-reconciler/rnacos-0.8.8/bin/rnacos")
        });
        let log = std::fs::File::create(dir.join("rnacos.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.env("RNACOS_HTTP_PORT", port.to_string())
            .env("RNACOS_GRPC_PORT", (port + 1000).to_string())
            .env("RNACOS_HTTP_CONSOLE_PORT", "0")
            .env("RNACOS_SDK_HOST", "127.0.0.1")
            .env("RNACOS_CONSOLE_HOST", "127.0.0.1")
            .env("RNACOS_DATA_DIR", &dir)
            .env("RNACOS_ENV_FILE", dir.join(".env"))
            .env(
                "RNACOS_RAFT_NODE_ADDR",
                format!("127.0.0.1:{}", port + 1000),
            )
            .env("RNACOS_ENABLE_OPEN_API_AUTH", "true")
            .env("RNACOS_ENABLE_NO_AUTH_CONSOLE", "false")
            .env("RNACOS_API_LOGIN_TIMEOUT", ttl.to_string())
            .env("RNACOS_INIT_ADMIN_USERNAME", testbed_env("NACOS_USERNAME"))
            .env("RNACOS_INIT_ADMIN_PASSWORD", testbed_env("NACOS_PASSWORD"))
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(Stdio::from(log));
        let proc = TestProcess::spawn(cmd, "rnacos");
        let addr = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if try_login(&addr).await.is_some() {
                return Some(Self { addr, _proc: proc });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }
}

async fn try_login(base: &str) -> Option<String> {
    let r = reqwest::Client::new()
        .post(format!("{base}/nacos/v1/auth/login"))
        .form(&[
            ("username", testbed_env("NACOS_USERNAME")),
            ("password", testbed_env("NACOS_PASSWORD")),
        ])
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["accessToken"].as_str().map(str::to_string)
}

/// A server of the test's own whose login tokens live `ttl` seconds.
enum ShortTokens {
    Rnacos(AuthNacos),
    Alibaba(PrivateAlibabaNacos),
}

impl ShortTokens {
    async fn start(server: Server, ttl: u32) -> Self {
        match server {
            Server::RnacosAuth => ShortTokens::Rnacos(AuthNacos::start(ttl).await),
            // Alibaba's tokens live 18,000 s by default: the shared server's never expire within a
            // test, so this server of the test's own is told to sign tokens that live `ttl` s
            // (its JWTs carry `exp`; each request is checked against it).
            Server::Nacos2 => ShortTokens::Alibaba(
                PrivateAlibabaNacos::start(
                    "faults-token",
                    &[(
                        "nacos.core.auth.plugin.nacos.token.expire.seconds",
                        &ttl.to_string(),
                    )],
                )
                .await,
            ),
            other => panic!("no private {other} with short-lived tokens"),
        }
    }

    fn addr(&self) -> String {
        match self {
            ShortTokens::Rnacos(n) => n.addr.clone(),
            ShortTokens::Alibaba(n) => n.addr.clone(),
        }
    }
}

fn credentials_secret() -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nacos-auth"},
        "stringData": {"username": testbed_env("NACOS_USERNAME"), "password": testbed_env("NACOS_PASSWORD")}
    }))
    .unwrap()
}

async fn expiring_tokens_cost_no_pass_and_a_deleted_secret_is_auth_failed(server: Server) {
    let ttl = 4;
    let nacos = ShortTokens::start(server, ttl).await;
    let at = NacosAt::private(server, &nacos.addr());
    let proxy = FaultProxy::start(&nacos.addr()).await;
    // The client is told the tokens live an hour, so it keeps using one the server has expired:
    // the next request is denied and the client must log in again in the same pass.
    proxy.rewrite_token_ttl(true);
    // The fixture makes the credentials Secret `nacos-auth` and names it in the binding.
    let scene = Scene::on(server, "ntoken")
        .pods(4)
        .on_node(&testbed_node(1))
        .registered(By::Nothing)
        .policy(json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}))
        .spec(spec())
        .through(&proxy.addr)
        .build()
        .await;
    for ip in ips(&scene.pods) {
        at.register_persistent(&Registration::new(&scene.svc, &ip, 8080))
            .await;
    }
    let (client, ns, app, svc) = (&scene.client, &scene.ns, scene.app.as_str(), &scene.svc);
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let op = scene.operator();
    let key = scene.binding_key();
    scene.wait_ready_live(4).await;

    // Several token lifetimes, with a removal in the middle: every status seen is Ready.
    let start = Instant::now();
    let passes_before = passes(&op, &key).await;
    let mut victim = None;
    while start.elapsed() < Duration::from_secs(6 * ttl as u64) {
        let s = scene.bindings.get(app).await.unwrap().status.unwrap();
        assert!(
            has_condition(&s, "NacosReachable", "True", "Reachable"),
            "a pass failed while tokens expired: {s:#?}"
        );
        if victim.is_none() && start.elapsed() > Duration::from_secs(2 * ttl as u64) {
            victim = Some(scale_down(client, ns, app, 3).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let victim = victim.unwrap();
    at.wait_deregistered(svc, std::slice::from_ref(&victim), Duration::from_secs(30))
        .await;
    let passes_during = passes(&op, &key).await - passes_before;
    let logins = proxy.count(|e| is_login(&e.path) && e.status == 200);
    let denied = proxy.count(|e| matches!(e.status, 401 | 403));
    let errors = metric(
        &op,
        &format!("nacos_reconciler_reconcile_errors_total{{binding=\"{key}\"}}"),
    )
    .await;
    eprintln!(
        "{server}: {passes_during} passes, {logins} logins, {denied} denied requests, {errors} failed passes"
    );
    assert!(
        denied >= 1,
        "no token expired mid-run: the test did not exercise re-login"
    );
    assert!(logins >= 2, "the client never logged in again");
    assert_eq!(errors, 0.0, "a pass failed");
    assert!(event_notes(client, ns, app, "AuthFailed").await.is_empty());

    // The credentials Secret is deleted: AuthFailed, and nothing is removed.
    secrets
        .delete("nacos-auth", &Default::default())
        .await
        .unwrap();
    let s = wait_status(
        &scene.bindings,
        app,
        "NacosReachable=False (AuthFailed)",
        Duration::from_secs(60),
        |s| has_condition(s, "NacosReachable", "False", "AuthFailed"),
    )
    .await;
    assert!(has_condition(&s, "Ready", "False", "Degraded"), "{s:#?}");
    wait_event(
        client,
        ns,
        app,
        "AuthFailed",
        &format!("{ns}/nacos-auth"),
        Duration::from_secs(30),
    )
    .await;
    let victim2 = scale_down(client, ns, app, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_passes(&op, &key, 3, Duration::from_secs(60)).await;
    assert!(
        proxy.removals_of(std::slice::from_ref(&victim2)).is_empty(),
        "a removal was sent without credentials"
    );
    let held = at.held(svc, &victim2, 8080).await;
    assert!(
        held.as_ref().is_some_and(|h| h.enabled),
        "{victim2} was taken offline without credentials: {held:?}"
    );

    // The Secret is back: the stale instance goes.
    secrets
        .create(&Default::default(), &credentials_secret())
        .await
        .unwrap();
    at.wait_deregistered(svc, std::slice::from_ref(&victim2), Duration::from_secs(60))
        .await;
    let live = ips(&ready_pods(client, ns, app, 2).await);
    proxy.assert_untouched(&live);
    at.assert_live_registered(svc, &live).await;
    if let ShortTokens::Alibaba(n) = &nacos {
        eprintln!("{server}: the private server's starts took {:?}", n.starts);
    }
    drop(op);
    delete_namespace(client, ns).await;
}
per_server!(expiring_tokens_cost_no_pass_and_a_deleted_secret_is_auth_failed: nacos_2_5_1, rnacos_auth);

// ------------------------------------------------------------------------------------------------
// (9) A pod's IP reused by a new pod of the same app.

/// Scales `app` from n to n-1 and back to n; returns (freed IP, IPs after). The pods run on a node
/// of the test's own, so KWOK hands the freed address to the next pod.
async fn cycle_one_pod(
    client: &kube::Client,
    ns: &str,
    app: &str,
    n: usize,
) -> (String, Vec<String>) {
    let freed = scale_down(client, ns, app, n - 1).await;
    // Let KWOK see the deletion and take the address back into its pool.
    tokio::time::sleep(Duration::from_secs(1)).await;
    scale(client, ns, app, n as i32).await;
    let after = ips(&ready_pods(client, ns, app, n).await);
    (freed, after)
}

/// The InternalIP of a node of the test's own (distinct per test and server).
fn own_node_ip(server: Server, test: u8) -> String {
    let server = match server {
        Server::Nacos2 => 0,
        Server::Rnacos => 1,
        other => panic!("no own-node address for {other}"),
    };
    format!("10.245.77.{}", 1 + test * 2 + server)
}

async fn an_ip_reused_by_a_new_pod_of_the_same_app_keeps_its_instance(server: Server) {
    let at = NacosAt::shared(server);
    let client = kube_client().await;
    let node_name = unique("reuse-node");
    let node = OwnKwokNode::start(&client, &node_name, &own_node_ip(server, 0)).await;
    let proxy = FaultProxy::start(&server.addr()).await;
    // The pods' processes stay connected over gRPC: the freed address's instance stays registered.
    let scene = Scene::on(server, "nreuse")
        .pods(2)
        .on_node(&node_name)
        .registered(By::Grpc)
        .policy(
            json!({"gracePeriodSeconds": 15, "onPodTerminating": "Ignore", "maxRemovals": "100%"}),
        )
        .spec(spec())
        .through(&proxy.addr)
        .build()
        .await;
    let (ns, app, svc) = (scene.ns.as_str(), scene.app.as_str(), scene.svc.as_str());
    let op = scene.operator();
    scene.wait_ready_live(2).await;

    let (freed, after) = cycle_one_pod(&client, ns, app, 2).await;
    assert!(
        after.contains(&freed),
        "KWOK did not reuse {freed} (pods now {after:?})"
    );
    // Past the grace period the freed address's instance is still there: its new pod is Live.
    tokio::time::sleep(Duration::from_secs(16)).await;
    wait_passes(&op, &scene.binding_key(), 2, Duration::from_secs(30)).await;
    proxy.assert_untouched(&after);
    at.assert_live_registered(svc, &after).await;
    let s = scene.bindings.get(app).await.unwrap().status.unwrap();
    assert_eq!(
        (s.instances.live, s.instances.stale, s.removed_total),
        (2, 0, 0),
        "{s:#?}"
    );
    drop(op);
    delete_namespace(&client, ns).await;
    node.delete(&client).await;
}
per_server!(an_ip_reused_by_a_new_pod_of_the_same_app_keeps_its_instance: nacos_2_5_1, rnacos);

async fn an_instance_we_disabled_is_re_enabled_when_a_new_pod_of_the_app_gets_its_ip(
    server: Server,
) {
    let at = NacosAt::shared(server);
    let client = kube_client().await;
    let node_name = unique("reuse2-node");
    let node = OwnKwokNode::start(&client, &node_name, &own_node_ip(server, 1)).await;
    let proxy = FaultProxy::start(&server.addr()).await;
    let scene = Scene::on(server, "nreen")
        .pods(2)
        .on_node(&node_name)
        .registered(By::Grpc)
        .policy(
            json!({"action": "Disable", "gracePeriodSeconds": 1, "onPodTerminating": "Ignore",
               "maxRemovals": "100%"}),
        )
        .spec(spec())
        .through(&proxy.addr)
        .build()
        .await;
    let (ns, app, svc) = (scene.ns.as_str(), scene.app.as_str(), scene.svc.as_str());
    let op = scene.operator();
    scene.wait_ready_live(2).await;

    let freed = scale_down(&client, ns, app, 1).await;
    wait_for(
        &format!("{freed} disabled"),
        Duration::from_secs(30),
        || async {
            let h = at.held(svc, &freed, 8080).await?;
            (!h.enabled).then_some(())
        },
    )
    .await;
    let disabled_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    scale(&client, ns, app, 2).await;
    let after = ips(&ready_pods(&client, ns, app, 2).await);
    assert!(
        after.contains(&freed),
        "KWOK did not reuse {freed} (pods now {after:?})"
    );
    let new_pod_ready = Instant::now();
    wait_for(
        &format!("{freed} re-enabled"),
        Duration::from_secs(30),
        || async {
            let h = at.held(svc, &freed, 8080).await?;
            h.enabled.then_some(())
        },
    )
    .await;
    eprintln!(
        "{server}: disabled, reused by a new pod {:?} later, re-enabled {:?} after that",
        new_pod_ready - disabled_at,
        new_pod_ready.elapsed()
    );
    wait_event(
        &client,
        ns,
        app,
        "Enabled",
        &format!("{freed}:8080"),
        Duration::from_secs(30),
    )
    .await;
    let late: Vec<_> = proxy
        .removals_of(std::slice::from_ref(&freed))
        .into_iter()
        .filter(|e| e.at > new_pod_ready)
        .collect();
    assert!(
        late.is_empty(),
        "the reused address was taken offline again: {late:#?}"
    );
    assert_eq!(proxy.removals_of(std::slice::from_ref(&freed)).len(), 1);
    let others: Vec<String> = after.iter().filter(|ip| **ip != freed).cloned().collect();
    proxy.assert_untouched(&others);
    at.assert_live_registered(svc, &after).await;
    drop(op);
    delete_namespace(&client, ns).await;
    node.delete(&client).await;
}
per_server!(
    an_instance_we_disabled_is_re_enabled_when_a_new_pod_of_the_app_gets_its_ip: nacos_2_5_1, rnacos
);
