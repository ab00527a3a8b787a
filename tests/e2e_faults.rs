//! End-to-end fault scenarios (issue 5) on the shared testbed: Nacos killed mid-pass, Nacos slow /
//! answering 500 / malformed JSON, the operator SIGKILLed between a DELETE and its verification, the
//! leader killed during a mass deletion, login-token expiry and a deleted credentials Secret, and a
//! pod IP reused by a new pod of the same app.
//!
//! The operator reaches Nacos only through an in-process fault proxy (`faults::FaultProxy`), whose
//! log is a continuous record of every write: each test asserts that no live instance was ever sent a
//! DELETE or `enabled=false`, that every live instance is registered and enabled at the end, and that
//! the stale ones did go offline once the fault was over. (Scenarios that restart the API server or
//! stop every node are in `e2e_faults_private.rs`, on a testbed of their own.)

mod common;
mod faults;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use nacos_reconciler::crd::{NacosBinding, PendingState};
use serde_json::json;

/// A namespace with a Deployment whose pods' IPs are registered in `service` (directly with Nacos)
/// and a binding that reaches Nacos through `proxy`.
struct Scene {
    client: kube::Client,
    ns: String,
    svc: String,
    app: String,
    pods: Vec<(String, String)>,
    bindings: Api<NacosBinding>,
}

impl Scene {
    async fn new(
        prefix: &str,
        replicas: i32,
        nacos: &str,
        proxy: &FaultProxy,
        policy: serde_json::Value,
    ) -> Self {
        Self::on_node(prefix, replicas, None, nacos, proxy, policy).await
    }

    /// The same, the pods on `node` (a node of the test's own) when given.
    async fn on_node(
        prefix: &str,
        replicas: i32,
        node: Option<&str>,
        nacos: &str,
        proxy: &FaultProxy,
        policy: serde_json::Value,
    ) -> Self {
        let client = kube_client().await;
        install_crd(&client).await;
        let ns = unique(prefix);
        create_namespace(&client, &ns).await;
        let app = prefix.to_string();
        let pods = deploy(&client, &ns, &app, replicas, node).await;
        let svc = format!("{ns}-svc");
        register_all(nacos, &svc, &ips(&pods)).await;
        create_binding(
            &client,
            &ns,
            &app,
            binding_spec(&proxy.addr, &svc, &app, policy),
        )
        .await;
        let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
        Self {
            client,
            ns,
            svc,
            app,
            pods,
            bindings,
        }
    }

    fn binding_key(&self) -> String {
        format!("{}/{}", self.ns, self.app)
    }

    async fn wait_ready_live(&self, live: u32) {
        wait_status(
            &self.bindings,
            &self.app,
            &format!("Ready with {live} live instances"),
            Duration::from_secs(90),
            |s| has_condition(s, "Ready", "True", "Reconciled") && s.instances.live == live,
        )
        .await;
    }

    /// Scales to `n` and returns (survivors, gone IPs).
    async fn scale_to(&self, n: usize) -> (Vec<String>, Vec<String>) {
        scale(&self.client, &self.ns, &self.app, n as i32).await;
        let survivors = ips(&ready_pods(&self.client, &self.ns, &self.app, n).await);
        let gone = ips(&self.pods)
            .into_iter()
            .filter(|ip| !survivors.contains(ip))
            .collect();
        (survivors, gone)
    }
}

// ------------------------------------------------------------------------------------------------
// (1) Nacos killed in the middle of a pass with removals pending; restarted.

#[tokio::test]
async fn nacos_killed_mid_pass_then_restarted_resumes_without_removing_twice_or_touching_live() {
    let mut server = PrivateNacos::start("faults-kill").await;
    let proxy = FaultProxy::start(&server.addr).await;
    let scene = Scene::new(
        "nkill",
        10,
        &server.addr,
        &proxy,
        json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}),
    )
    .await;
    let op = Operator::start(&scene.ns);
    scene.wait_ready_live(10).await;

    // Every DELETE takes 1.5 s: the pass that removes six instances is still running when Nacos
    // goes down after the second one.
    proxy.set_delete_delay(Duration::from_millis(1500));
    let (survivors, gone) = scene.scale_to(4).await;
    assert_eq!(gone.len(), 6);
    wait_for("two DELETEs done", Duration::from_secs(60), || {
        let done = proxy.deletes_done().values().sum::<usize>() >= 2;
        async move { done.then_some(()) }
    })
    .await;
    server.stop().await;
    let stopped = Instant::now();
    let done_before = proxy.deletes_done();
    eprintln!("Nacos stopped mid-pass after DELETEs {done_before:?}");
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
        "NacosReachable=False {:?} after the stop: {:?}",
        stopped.elapsed(),
        s.conditions
            .iter()
            .find(|c| c.type_ == "NacosReachable")
            .map(|c| &c.message)
    );

    server.resume().await;
    proxy.set_delete_delay(Duration::ZERO);
    let resumed = Instant::now();
    // The survivors came back with Nacos (persistent instances); the rest of the pass is done now.
    let (addr, svc) = (server.addr.as_str(), scene.svc.as_str());
    for ip in &survivors {
        wait_for(
            &format!("{ip} listed after the restart"),
            Duration::from_secs(20),
            || async move { nacos_instance(addr, svc, ip, 8080).await.map(|_| ()) },
        )
        .await;
    }
    wait_deregistered(&server.addr, &scene.svc, &gone, Duration::from_secs(60)).await;
    eprintln!(
        "every stale instance offline {:?} after the restart",
        resumed.elapsed()
    );
    wait_passes(&op, &scene.binding_key(), 2, Duration::from_secs(30)).await;

    let done = proxy.deletes_done();
    eprintln!("DELETEs answered by Nacos per IP: {done:?}");
    for (ip, n) in &done {
        assert!(
            gone.contains(ip),
            "DELETE of {ip}, which is not a removed pod's"
        );
        assert_eq!(*n, 1, "{ip} was deregistered {n} times: {done:?}");
    }
    proxy.assert_untouched(&survivors);
    assert_live_registered(&server.addr, &scene.svc, &survivors).await;
    let s = scene
        .bindings
        .get(&scene.app)
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(s.removed_total as usize <= gone.len(), "{s:#?}");
    assert_eq!(s.instances.live, 4, "{s:#?}");
}

// ------------------------------------------------------------------------------------------------
// (2) Nacos slow (past the client's timeout), answering 500, answering malformed JSON.

#[tokio::test]
async fn slow_failing_or_garbled_nacos_removes_nothing_says_why_and_recovers() {
    let nacos = testbed_env("RNACOS_ADDR");
    let proxy = FaultProxy::start(&nacos).await;
    let scene = Scene::new(
        "nflaky",
        5,
        &nacos,
        &proxy,
        json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}),
    )
    .await;
    let op = Operator::start(&scene.ns);
    scene.wait_ready_live(5).await;

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
            "Nacos {what}: NacosReachable=False after {:?}: {msg}",
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
        assert!(
            nacos_instance(&nacos, &scene.svc, &victim, 8080)
                .await
                .is_some(),
            "{victim} was removed while Nacos was {what}"
        );

        // Nacos is well again: the stale instance goes, the live ones stay.
        proxy.set_mode(Mode::PassThrough);
        let healed = Instant::now();
        wait_deregistered(
            &nacos,
            &scene.svc,
            std::slice::from_ref(&victim),
            Duration::from_secs(60),
        )
        .await;
        wait_status(
            &scene.bindings,
            &scene.app,
            "NacosReachable=True again",
            Duration::from_secs(60),
            |s| has_condition(s, "NacosReachable", "True", "Reachable"),
        )
        .await;
        eprintln!("recovered from Nacos {what} in {:?}", healed.elapsed());
        let live = ips(&ready_pods(&scene.client, &scene.ns, &scene.app, replicas).await);
        proxy.assert_untouched(&live);
        assert_live_registered(&nacos, &scene.svc, &live).await;
    }
}

// ------------------------------------------------------------------------------------------------
// (4) The operator SIGKILLed between a DELETE and its verification, then restarted.

#[tokio::test]
async fn operator_killed_between_delete_and_verification_converges_idempotently() {
    let nacos = testbed_env("RNACOS_ADDR");
    let proxy = FaultProxy::start(&nacos).await;
    let scene = Scene::new(
        "nsigkill",
        16,
        &nacos,
        &proxy,
        json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}),
    )
    .await;
    let mut op = Operator::start_with(&scene.ns, "op-0", &[]);
    scene.wait_ready_live(16).await;
    // Armed before the pods go: the first DELETE already is one to kill after.
    proxy.arm_hold_after_delete();
    let (survivors, gone) = scene.scale_to(2).await;
    // Writes go a few at a time, so a kill can leave several in doubt: enough stale instances
    // that each of the three kills below still finds one to write.
    assert_eq!(gone.len(), 14);

    // Three times: let one DELETE through, hold the verification that follows, SIGKILL, restart.
    for cycle in 1..=3 {
        proxy.wait_held(Duration::from_secs(90)).await;
        drop(op); // TestProcess kills with SIGKILL
        let done = proxy.deletes_done();
        eprintln!("cycle {cycle}: killed between DELETE and verification; DELETEs so far {done:?}");
        if cycle < 3 {
            proxy.arm_hold_after_delete();
        }
        proxy.release();
        op = Operator::start_with(&scene.ns, &format!("op-{cycle}"), &[]);
    }
    wait_deregistered(&nacos, &scene.svc, &gone, Duration::from_secs(60)).await;
    scene.wait_ready_live(2).await;
    wait_passes(&op, &scene.binding_key(), 2, Duration::from_secs(30)).await;

    let done = proxy.deletes_done();
    eprintln!("DELETEs per IP: {done:?}");
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
    assert_live_registered(&nacos, &scene.svc, &survivors).await;
}

// ------------------------------------------------------------------------------------------------
// (5) The leader killed during a mass deletion: the new leader respects the budget already spent.

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("nacos-reconciler")
        .await
        .ok()??;
    lease.spec?.holder_identity
}

#[tokio::test]
async fn a_leader_killed_mid_mass_deletion_leaves_its_successor_the_spent_budget() {
    let nacos = testbed_env("RNACOS_ADDR");
    let proxy = FaultProxy::start(&nacos).await;
    // More than the operator's writes in flight, so the leader can die with its budget part spent.
    let budget = 6usize;
    let scene = Scene::new(
        "nleader",
        10,
        &nacos,
        &proxy,
        json!({"gracePeriodSeconds": 0, "maxRemovals": budget, "removalWindowSeconds": 3600}),
    )
    .await;
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        &scene.ns,
        "--lease-duration-seconds",
        "6",
        "--settle-seconds",
        "2",
    ];
    let first = Operator::start_with(&scene.ns, "replica-a", &flags);
    let (client, ns) = (&scene.client, scene.ns.as_str());
    wait_for(
        "replica-a to lead",
        Duration::from_secs(30),
        || async move { (holder(client, ns).await.as_deref() == Some("replica-a")).then_some(()) },
    )
    .await;
    let second = Operator::start_with(&scene.ns, "replica-b", &flags);
    scene.wait_ready_live(10).await;

    // 8 of 10 pods go; each DELETE takes 3 s, and the leader dies right after the first ones,
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
    eprintln!("replica-a killed after DELETEs {done_by_a:?}");
    assert!(
        done_by_a.values().sum::<usize>() < budget,
        "replica-a finished its batch"
    );
    let (survivors, gone) = scene.scale_to(2).await;
    assert_eq!(gone.len(), 8);
    proxy.set_delete_delay(Duration::ZERO);
    wait_for(
        "replica-b to lead",
        Duration::from_secs(20),
        || async move { (holder(client, ns).await.as_deref() == Some("replica-b")).then_some(()) },
    )
    .await;
    eprintln!("replica-b leads {:?} after the kill", killed.elapsed());
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
    eprintln!("DELETEs within the window across both leaders: {total} ({done:?}); {s:#?}");
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
    wait_deregistered(&nacos, &scene.svc, &gone, Duration::from_secs(60)).await;
    proxy.assert_untouched(&survivors);
    assert_live_registered(&nacos, &scene.svc, &survivors).await;
    assert!(proxy.deletes_done().values().all(|n| *n == 1));
}

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

/// The instance as Nacos shows it, asked with a fresh token.
async fn authed_instance(base: &str, service: &str, ip: &str) -> Option<serde_json::Value> {
    let token = try_login(base).await.expect("login");
    let r = reqwest::Client::new()
        .get(format!("{base}/nacos/v1/ns/instance"))
        .query(&[
            ("serviceName", service),
            ("ip", ip),
            ("port", "8080"),
            ("clusterName", "DEFAULT"),
            ("accessToken", &token),
        ])
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v.get("ip").is_some().then_some(v)
}

async fn authed_register(base: &str, service: &str, ip: &str) {
    let token = try_login(base).await.expect("login");
    let r = reqwest::Client::new()
        .post(format!("{base}/nacos/v1/ns/instance"))
        .query(&[
            ("serviceName", service),
            ("ip", ip),
            ("port", "8080"),
            ("ephemeral", "false"),
            ("accessToken", &token),
        ])
        .send()
        .await
        .expect("register");
    assert!(r.status().is_success(), "register {ip}: {}", r.status());
}

async fn wait_authed_gone(base: &str, service: &str, ip: &str, timeout: Duration) {
    wait_for(&format!("{ip} deregistered"), timeout, || async move {
        authed_instance(base, service, ip)
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

fn credentials_secret() -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nacos-auth"},
        "stringData": {"username": testbed_env("NACOS_USERNAME"), "password": testbed_env("NACOS_PASSWORD")}
    }))
    .unwrap()
}

#[tokio::test]
async fn expiring_tokens_cost_no_pass_and_a_deleted_secret_is_auth_failed() {
    let ttl = 4;
    let server = AuthNacos::start(ttl).await;
    let proxy = FaultProxy::start(&server.addr).await;
    // The client is told the tokens live an hour, so it keeps using one the server has expired:
    // the next request is denied and the client must log in again in the same pass.
    proxy.rewrite_token_ttl(true);
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = unique("ntoken");
    create_namespace(&client, &ns).await;
    let app = "ntoken";
    let pods = deploy(&client, &ns, app, 4, None).await;
    let svc = format!("{ns}-svc");
    for ip in ips(&pods) {
        authed_register(&server.addr, &svc, &ip).await;
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    secrets
        .create(&Default::default(), &credentials_secret())
        .await
        .unwrap();
    let mut spec = binding_spec(
        &proxy.addr,
        &svc,
        app,
        json!({"gracePeriodSeconds": 1, "maxRemovals": "100%"}),
    );
    spec["nacos"]["credentialsSecretRef"] = json!({"name": "nacos-auth"});
    create_binding(&client, &ns, app, spec).await;
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    let op = Operator::start(&ns);
    let key = format!("{ns}/{app}");
    wait_status(
        &bindings,
        app,
        "Ready with 4 live",
        Duration::from_secs(60),
        |s| has_condition(s, "Ready", "True", "Reconciled") && s.instances.live == 4,
    )
    .await;

    // Several token lifetimes, with a removal in the middle: every status seen is Ready.
    let start = Instant::now();
    let passes_before = passes(&op, &key).await;
    let mut victim = None;
    while start.elapsed() < Duration::from_secs(6 * ttl as u64) {
        let s = bindings.get(app).await.unwrap().status.unwrap();
        assert!(
            has_condition(&s, "NacosReachable", "True", "Reachable"),
            "a pass failed while tokens expired: {s:#?}"
        );
        if victim.is_none() && start.elapsed() > Duration::from_secs(2 * ttl as u64) {
            victim = Some(scale_down(&client, &ns, app, 3).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let victim = victim.unwrap();
    wait_authed_gone(&server.addr, &svc, &victim, Duration::from_secs(30)).await;
    let passes_during = passes(&op, &key).await - passes_before;
    let logins = proxy.count(|e| is_login(&e.path) && e.status == 200);
    let denied = proxy.count(|e| matches!(e.status, 401 | 403));
    let errors = metric(
        &op,
        &format!("nacos_reconciler_reconcile_errors_total{{binding=\"{key}\"}}"),
    )
    .await;
    eprintln!(
        "{passes_during} passes, {logins} logins, {denied} denied requests, {errors} failed passes"
    );
    assert!(
        denied >= 1,
        "no token expired mid-run: the test did not exercise re-login"
    );
    assert!(logins >= 2, "the client never logged in again");
    assert_eq!(errors, 0.0, "a pass failed");
    assert!(event_notes(&client, &ns, app, "AuthFailed")
        .await
        .is_empty());

    // The credentials Secret is deleted: AuthFailed, and nothing is removed.
    secrets
        .delete("nacos-auth", &Default::default())
        .await
        .unwrap();
    let s = wait_status(
        &bindings,
        app,
        "NacosReachable=False (AuthFailed)",
        Duration::from_secs(60),
        |s| has_condition(s, "NacosReachable", "False", "AuthFailed"),
    )
    .await;
    assert!(has_condition(&s, "Ready", "False", "Degraded"), "{s:#?}");
    wait_event(
        &client,
        &ns,
        app,
        "AuthFailed",
        &format!("{ns}/nacos-auth"),
        Duration::from_secs(30),
    )
    .await;
    let victim2 = scale_down(&client, &ns, app, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_passes(&op, &key, 3, Duration::from_secs(60)).await;
    assert!(
        proxy.removals_of(std::slice::from_ref(&victim2)).is_empty(),
        "a removal was sent without credentials"
    );
    assert!(authed_instance(&server.addr, &svc, &victim2)
        .await
        .is_some());

    // The Secret is back: the stale instance goes.
    secrets
        .create(&Default::default(), &credentials_secret())
        .await
        .unwrap();
    wait_authed_gone(&server.addr, &svc, &victim2, Duration::from_secs(60)).await;
    let live = ips(&ready_pods(&client, &ns, app, 2).await);
    proxy.assert_untouched(&live);
    for ip in &live {
        let i = authed_instance(&server.addr, &svc, ip)
            .await
            .expect("live instance registered");
        assert_eq!(i["enabled"], json!(true), "{i}");
    }
}

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

#[tokio::test]
async fn an_ip_reused_by_a_new_pod_of_the_same_app_keeps_its_instance() {
    let client = kube_client().await;
    let node_name = unique("reuse-node");
    let node = OwnKwokNode::start(&client, &node_name, "10.245.77.1").await;
    let nacos = testbed_env("RNACOS_ADDR");
    let proxy = FaultProxy::start(&nacos).await;
    let scene = Scene::on_node(
        "nreuse",
        2,
        Some(&node_name),
        &nacos,
        &proxy,
        json!({"gracePeriodSeconds": 15, "onPodTerminating": "Ignore", "maxRemovals": "100%"}),
    )
    .await;
    let (ns, app, svc) = (scene.ns.clone(), scene.app.as_str(), scene.svc.clone());
    let op = Operator::start(&ns);
    scene.wait_ready_live(2).await;

    let (freed, after) = cycle_one_pod(&client, &ns, app, 2).await;
    assert!(
        after.contains(&freed),
        "KWOK did not reuse {freed} (pods now {after:?})"
    );
    // Past the grace period the freed address's instance is still there: its new pod is Live.
    tokio::time::sleep(Duration::from_secs(16)).await;
    wait_passes(&op, &format!("{ns}/{app}"), 2, Duration::from_secs(30)).await;
    proxy.assert_untouched(&after);
    assert_live_registered(&nacos, &svc, &after).await;
    let s = scene.bindings.get(app).await.unwrap().status.unwrap();
    assert_eq!(
        (s.instances.live, s.instances.stale, s.removed_total),
        (2, 0, 0),
        "{s:#?}"
    );
    node.delete(&client).await;
}

#[tokio::test]
async fn an_instance_we_disabled_is_re_enabled_when_a_new_pod_of_the_app_gets_its_ip() {
    let client = kube_client().await;
    let node_name = unique("reuse2-node");
    let node = OwnKwokNode::start(&client, &node_name, "10.245.77.2").await;
    let nacos = testbed_env("RNACOS_ADDR");
    let proxy = FaultProxy::start(&nacos).await;
    let scene = Scene::on_node(
        "nreen",
        2,
        Some(&node_name),
        &nacos,
        &proxy,
        json!({"action": "Disable", "gracePeriodSeconds": 1, "onPodTerminating": "Ignore",
               "maxRemovals": "100%"}),
    )
    .await;
    let (ns, app, svc) = (scene.ns.clone(), scene.app.as_str(), scene.svc.clone());
    let _op = Operator::start(&ns);
    scene.wait_ready_live(2).await;

    let freed = scale_down(&client, &ns, app, 1).await;
    let (n, sv, f) = (nacos.as_str(), svc.as_str(), freed.as_str());
    wait_for(
        &format!("{freed} disabled"),
        Duration::from_secs(30),
        || async move {
            let i = nacos_instance(n, sv, f, 8080).await?;
            (i["enabled"] == json!(false)).then_some(())
        },
    )
    .await;
    let disabled_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    scale(&client, &ns, app, 2).await;
    let after = ips(&ready_pods(&client, &ns, app, 2).await);
    assert!(
        after.contains(&freed),
        "KWOK did not reuse {freed} (pods now {after:?})"
    );
    let new_pod_ready = Instant::now();
    wait_for(
        &format!("{freed} re-enabled"),
        Duration::from_secs(30),
        || async move {
            let i = nacos_instance(n, sv, f, 8080).await?;
            (i["enabled"] == json!(true)).then_some(())
        },
    )
    .await;
    eprintln!(
        "disabled, reused by a new pod {:?} later, re-enabled {:?} after that",
        new_pod_ready - disabled_at,
        new_pod_ready.elapsed()
    );
    wait_event(
        &client,
        &ns,
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
    assert_live_registered(&nacos, &svc, &after).await;
    node.delete(&client).await;
}
