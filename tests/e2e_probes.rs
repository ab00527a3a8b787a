//! End-to-end: the probes tell the truth. An operator whose identity cannot list what it watches
//! never syncs: `/readyz` stays unready and it writes nothing, while `/healthz` answers.

mod common;

/// The testbed's own KWOK node the pods run on. Other tests create nodes of their own (OwnKwokNode)
/// and stop or delete them; a pod the scheduler put there would go Pending, be evicted and come back
/// elsewhere with another IP, which is not what this test is about.
const SHARED_NODE: &str = "kwok-node-2";

use std::time::Duration;

use common::*;
use serde_json::json;

/// A kubeconfig for the `default` ServiceAccount of `ns` (no RBAC at all), via the TokenRequest API.
fn powerless_kubeconfig(ns: &str) -> std::path::PathBuf {
    let kubectl = testbed_env("KUBECTL");
    let admin = testbed_env("KUBECONFIG");
    let out = std::process::Command::new(&kubectl)
        .args([
            "--kubeconfig",
            &admin,
            "create",
            "token",
            "default",
            "-n",
            ns,
        ])
        .output()
        .expect("kubectl create token");
    assert!(
        out.status.success(),
        "create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let server = std::process::Command::new(&kubectl)
        .args(["--kubeconfig", &admin, "config", "view", "--minify", "-o"])
        .arg("jsonpath={.clusters[0].cluster.server}")
        .output()
        .expect("kubectl config view");
    let ca = std::process::Command::new(&kubectl)
        .args(["--kubeconfig", &admin, "config", "view", "--minify", "-o"])
        .arg("jsonpath={.clusters[0].cluster.certificate-authority}")
        .output()
        .expect("kubectl config view");
    let path = std::env::temp_dir().join(format!("{ns}-powerless.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\n\
             users:\n- name: u\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            String::from_utf8_lossy(&server.stdout),
            String::from_utf8_lossy(&ca.stdout)
        ),
    )
    .expect("write kubeconfig");
    path
}

async fn status_of(url: &str) -> Option<u16> {
    reqwest::get(url).await.ok().map(|r| r.status().as_u16())
}

/// The powerless operator serves a binding with an orphan it would deregister at once: it never
/// syncs, so it never gets that far.
async fn readyz_is_unready_while_the_caches_cannot_sync_and_healthz_answers(server: Server) {
    let scene = Scene::on(server, "probes")
        .pods(1)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .spec(json!({"scope": {"cidrs": ["10.244.0.0/16"]}, "resyncSeconds": 5}))
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .build()
        .await;
    let orphan = "10.244.254.1"; // no pod has it
    server
        .register_persistent(&Registration::new(&scene.svc, orphan, scene.port))
        .await;
    let client = scene.client.clone();
    let ns = scene.ns.clone();
    // The token controller needs the ServiceAccount first.
    wait_for(
        "the default ServiceAccount",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client, &ns)
                    .get_opt("default")
                    .await
                    .ok()?
                    .map(|_| ())
            }
        },
    )
    .await;
    let kubeconfig = powerless_kubeconfig(&ns);
    let port = free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nacos-reconciler"));
    cmd.arg("run")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--namespaces", &ns])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _operator = TestProcess::spawn(cmd, "operator-powerless");

    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    wait_for("/healthz to answer 200", Duration::from_secs(20), || {
        let url = healthz.clone();
        async move { (status_of(&url).await == Some(200)).then_some(()) }
    })
    .await;
    // Several seconds of watch failures: never ready.
    for _ in 0..10 {
        assert_eq!(status_of(&readyz).await, Some(503));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(status_of(&healthz).await, Some(200));
    // It wrote nothing: not to Nacos (the orphan and the pod's instance are there, enabled), not
    // to the binding's status, no Event.
    for ip in [orphan, scene.pods[0].1.as_str()] {
        let held = scene
            .held(ip)
            .await
            .unwrap_or_else(|| panic!("{ip} was removed"));
        assert!(
            held.enabled && held.disabled_by().is_none(),
            "{ip}: {held:?}"
        );
    }
    let binding = scene.bindings.get(&scene.app).await.expect("the binding");
    assert!(binding.status.is_none(), "{:?}", binding.status);
    let events = binding_events(&client, &ns, &scene.app).await;
    assert!(events.is_empty(), "{events:?}");
}
per_server!(readyz_is_unready_while_the_caches_cannot_sync_and_healthz_answers: nacos_2_5_1, rnacos);
