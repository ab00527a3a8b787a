//! End-to-end: the verdict table of API.md, one row at a time, with the operator binary against the
//! testbed's API server, KWOK nodes and Nacos (rnacos).
//!
//! The tests of this file run in parallel. Two of them stop a node of their own (two of five nodes
//! down stays under the freeze rule), so the others pin their pods to a testbed node, and those
//! nodes are tainted against everybody else's pods.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use nacos_reconciler::crd::{NacosBinding, NacosBindingStatus};
use serde_json::{json, Value};

/// Where the pods of these tests run: a testbed node nobody stops.
const STABLE_NODE: &str = "kwok-node-0";
const MARKER: &str = "nacos-reconciler.io/disabled-by";

/// The binding's status once the operator wrote one.
async fn status(bindings: &Api<NacosBinding>, name: &str) -> Option<NacosBindingStatus> {
    bindings.get(name).await.ok()?.status
}

fn is_ready(s: &NacosBindingStatus) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until the binding is Ready and its counts satisfy `check`; returns that status.
async fn wait_status(
    bindings: &Api<NacosBinding>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&NacosBindingStatus) -> bool,
) -> NacosBindingStatus {
    let check = &check;
    wait_for(what, timeout, || async move {
        let s = status(bindings, name).await?;
        (is_ready(&s) && check(&s)).then_some(s)
    })
    .await
}

/// Waits for `passes` more completed reconcile passes (each moves `lastSyncTime`, at least a second
/// apart; the bindings here resync every 5 s).
async fn wait_passes(bindings: &Api<NacosBinding>, name: &str, passes: usize, timeout: Duration) {
    let mut last = status(bindings, name).await.and_then(|s| s.last_sync_time);
    for i in 0..passes {
        let prev = last.clone();
        last = wait_for(
            &format!("reconcile pass {} of {passes} of {name}", i + 1),
            timeout,
            || {
                let prev = prev.clone();
                async move {
                    let t = status(bindings, name).await?.last_sync_time?;
                    // lastSyncTime has second precision: a later second is a later pass.
                    prev.as_ref().is_none_or(|p| t.0 > p.0).then_some(Some(t))
                }
            },
        )
        .await;
    }
}

/// PATCHes an instance straight on Nacos, as an administrator would (console or API), once it is
/// registered, and waits until a read shows the change. (Under load rnacos may apply a registration
/// after a PATCH sent right behind it: the PATCH upserts, then the registration overwrites it.)
async fn patch_instance(base: &str, service: &str, ip: &str, port_num: u16, form: &[(&str, &str)]) {
    wait_for(
        &format!("{service} {ip}:{port_num} to be registered"),
        Duration::from_secs(10),
        || async move { nacos_instance(base, service, ip, port_num).await },
    )
    .await;
    let port = port_num.to_string();
    let mut q: Vec<(&str, &str)> = vec![
        ("serviceName", service),
        ("ip", ip),
        ("port", &port),
        ("ephemeral", "false"),
    ];
    q.extend_from_slice(form);
    let r = reqwest::Client::new()
        .patch(format!("{base}/nacos/v1/ns/instance"))
        .query(&q)
        .send()
        .await
        .expect("PATCH the instance");
    let code = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(
        code.is_success() && body == "ok",
        "PATCH {service} {ip}:{port} {form:?}: {code} {body}"
    );
    let shows = |inst: &Value| {
        form.iter().all(|(k, v)| match *k {
            "enabled" => inst["enabled"].as_bool().map(|b| b.to_string()).as_deref() == Some(*v),
            "metadata" => serde_json::from_str::<serde_json::Map<String, Value>>(v)
                .expect("metadata is a JSON object")
                .iter()
                .all(|(mk, mv)| &inst["metadata"][mk] == mv),
            _ => true,
        })
    };
    let shows = &shows;
    wait_for(
        &format!("{service} {ip}:{port} to show {form:?}"),
        Duration::from_secs(10),
        || async move {
            let inst = nacos_instance(base, service, ip, port_num).await?;
            shows(&inst).then_some(())
        },
    )
    .await;
}

fn enabled(inst: &Value) -> bool {
    inst["enabled"]
        .as_bool()
        .unwrap_or_else(|| panic!("no `enabled` in {inst}"))
}

fn marker(inst: &Value) -> Option<String> {
    inst["metadata"][MARKER].as_str().map(str::to_string)
}

/// The (reason, message) of every Event about objects in `ns`.
async fn events(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for an Event with this reason whose message contains every one of `words`.
async fn wait_event(client: &kube::Client, ns: &str, reason: &str, words: &[&str]) -> String {
    wait_for(
        &format!("a {reason} Event naming {words:?} in {ns}"),
        Duration::from_secs(20),
        || async move {
            events(client, ns)
                .await
                .into_iter()
                .find(|(r, m)| r == reason && words.iter().all(|w| m.contains(w)))
                .map(|(_, m)| m)
        },
    )
    .await
}

/// A binding of `services` to the pods labelled app=`app`, with `policy` and optional scope CIDRs.
fn binding_spec(nacos: &str, services: &[&str], app: &str, policy: Value, cidrs: &[&str]) -> Value {
    let mut spec = json!({
        "nacos": {"serverAddr": [nacos]},
        "services": services.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
        "pods": {"selector": {"matchLabels": {"app": app}}},
        "policy": policy,
        "resyncSeconds": 5
    });
    if !cidrs.is_empty() {
        spec["scope"] = json!({ "cidrs": cidrs });
    }
    spec
}

// ------------------------------------------------------------------------------------ (3) Orphan

/// (3) A persistent instance (ephemeral=false, nobody renews or deletes it) whose pod was deleted is
/// deregistered after the grace period, and not before; its neighbour is left alone.
#[tokio::test]
async fn a_persistent_instance_whose_pod_was_deleted_is_deregistered_after_grace() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("orphan");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "pay", 2, Some(STABLE_NODE)).await;
    let svc = format!("{ns}-pay");
    for (_, ip) in &pods {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    for (_, ip) in &pods {
        let inst = nacos_instance(&nacos, &svc, ip, 8080)
            .await
            .expect("registered");
        assert_eq!(inst["ephemeral"], Value::Bool(false), "{inst}");
    }

    let grace = 6u64;
    create_binding(
        &client,
        &ns,
        "pay",
        binding_spec(
            &nacos,
            &[&svc],
            "pay",
            // Deleting a pod makes it Terminating first: ignore that, so the Orphan row decides.
            json!({"gracePeriodSeconds": grace, "onPodTerminating": "Ignore", "maxRemovals": "100%"}),
            &[],
        ),
    )
    .await;
    let _operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_status(
        &bindings,
        "pay",
        "2 live instances",
        Duration::from_secs(60),
        |s| s.instances.live == 2,
    )
    .await;

    // Scale 2 -> 1 (a replacement pod could reuse the IP: KWOK recycles them at once).
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .patch(
            "pay",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    let deleted = Instant::now();
    let survivors = ready_pods(&client, &ns, "pay", 1).await;
    let (gone_pod, gone_ip) = pods
        .iter()
        .find(|p| !survivors.contains(p))
        .cloned()
        .expect("one pod removed");
    let kept_ip = survivors[0].1.clone();

    // In grace: still registered and enabled, and listed as pending.
    let s = wait_status(
        &bindings,
        "pay",
        "the orphan to be pending in grace",
        Duration::from_secs(grace),
        |s| s.pending.iter().any(|p| p.ip == gone_ip),
    )
    .await;
    assert!(deleted.elapsed() < Duration::from_secs(grace), "{s:?}");
    let inst = nacos_instance(&nacos, &svc, &gone_ip, 8080).await;
    assert!(
        inst.as_ref().is_some_and(enabled),
        "taken offline before the grace period ended: {inst:?}"
    );

    // Past grace: deregistered (gone from the registry, not merely disabled).
    wait_for(
        "the orphan to be deregistered",
        Duration::from_secs(grace + 5),
        || {
            let (nacos, svc, ip) = (nacos.clone(), svc.clone(), gone_ip.clone());
            async move {
                nacos_instance(&nacos, &svc, &ip, 8080)
                    .await
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    let took = deleted.elapsed();
    eprintln!("orphan deregistered {took:?} after the pod's deletion (grace {grace}s)");
    // The grace clock starts at the pod's deletionTimestamp, which has second precision.
    assert!(
        took + Duration::from_secs(1) >= Duration::from_secs(grace),
        "deregistered {took:?} after the pod's deletion, before the grace period of {grace}s"
    );
    let msg = wait_event(&client, &ns, "Deregistered", &[&gone_ip, &gone_pod]).await;
    assert!(msg.contains("deleted"), "{msg}");

    let kept = nacos_instance(&nacos, &svc, &kept_ip, 8080)
        .await
        .expect("the live pod's instance is kept");
    assert!(enabled(&kept), "{kept}");
    assert_eq!(marker(&kept), None, "{kept}");
}

// ------------------------------------------------------------------------------- (4) Terminating

/// (4) A pod whose deletion has started is taken out at once with `onPodTerminating: Deregister`:
/// no grace (the grace period is 300 s), while the pod is still there, Terminating.
#[tokio::test]
async fn a_terminating_pods_instance_is_deregistered_at_once_without_grace() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("term");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "cart", 2, Some(STABLE_NODE)).await;
    let svc = format!("{ns}-cart");
    for (_, ip) in &pods {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    let (term_pod, term_ip) = pods[0].clone();
    let (_, kept_ip) = pods[1].clone();

    create_binding(
        &client,
        &ns,
        "cart",
        binding_spec(
            &nacos,
            &[&svc],
            "cart",
            json!({"gracePeriodSeconds": 300, "onPodTerminating": "Deregister", "maxRemovals": "100%"}),
            &[],
        ),
    )
    .await;
    let _operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_status(
        &bindings,
        "cart",
        "2 live instances",
        Duration::from_secs(60),
        |s| s.instances.live == 2,
    )
    .await;

    // KWOK deletes pods at once; a finalizer keeps this one Terminating.
    let pod_api = Api::<Pod>::namespaced(client.clone(), &ns);
    pod_api
        .patch(
            &term_pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["e2e.test/hold"]}})),
        )
        .await
        .unwrap();
    pod_api
        .delete(&term_pod, &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();

    wait_for(
        "the terminating pod's instance to be deregistered",
        Duration::from_secs(10),
        || {
            let (nacos, svc, ip) = (nacos.clone(), svc.clone(), term_ip.clone());
            async move {
                nacos_instance(&nacos, &svc, &ip, 8080)
                    .await
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    let took = deleted.elapsed();
    eprintln!("terminating pod's instance deregistered {took:?} after the delete");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // It was the Terminating verdict: the pod still exists, with its deletionTimestamp.
    let pod = pod_api.get(&term_pod).await.expect("the pod is still held");
    assert!(pod.metadata.deletion_timestamp.is_some(), "{pod:?}");
    let msg = wait_event(&client, &ns, "Deregistered", &[&term_ip, &term_pod]).await;
    assert!(msg.contains("terminating"), "{msg}");
    let kept = nacos_instance(&nacos, &svc, &kept_ip, 8080)
        .await
        .expect("the other pod's instance is kept");
    assert!(enabled(&kept), "{kept}");

    // Let the pod go.
    pod_api
        .patch(
            &term_pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_for("the held pod to be gone", Duration::from_secs(30), || {
        let (pod_api, name) = (pod_api.clone(), term_pod.clone());
        async move { pod_api.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

// ----------------------------------------------------------------------------------- (6) Foreign

/// (6) An instance whose IP is outside `scope` is never touched, even though no pod has its IP; an
/// in-scope orphan next to it is deregistered, so the operator was active.
#[tokio::test]
async fn an_instance_outside_scope_is_never_touched_while_an_in_scope_orphan_is_removed() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("scope");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "inv", 1, Some(STABLE_NODE)).await;
    let live_ip = pods[0].1.clone();
    let svc = format!("{ns}-inv");
    let foreign_ip = "192.168.77.1";
    // No pod ever had this in-scope IP (10.244.200.0/24 is no node's pod range).
    let orphan_ip = "10.244.200.77";
    for ip in [live_ip.as_str(), foreign_ip, orphan_ip] {
        register_http(&nacos, &svc, ip, 8080).await;
    }

    let grace = 2u64;
    create_binding(
        &client,
        &ns,
        "inv",
        binding_spec(
            &nacos,
            &[&svc],
            "inv",
            json!({"gracePeriodSeconds": grace, "maxRemovals": "100%"}),
            &["10.244.0.0/16"],
        ),
    )
    .await;
    let _operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_for(
        "the in-scope orphan to be deregistered",
        Duration::from_secs(60),
        || {
            let (nacos, svc) = (nacos.clone(), svc.clone());
            async move {
                nacos_instance(&nacos, &svc, orphan_ip, 8080)
                    .await
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    wait_event(&client, &ns, "Deregistered", &[orphan_ip]).await;

    // Several passes later the foreign instance is still there, untouched, and counted.
    wait_passes(&bindings, "inv", 2, Duration::from_secs(30)).await;
    let s = wait_status(
        &bindings,
        "inv",
        "1 live and 1 foreign instance",
        Duration::from_secs(30),
        |s| s.instances.total == 2 && s.instances.live == 1 && s.instances.foreign == 1,
    )
    .await;
    assert_eq!(s.instances.stale, 0, "{s:?}");
    assert!(
        !s.pending.iter().any(|p| p.ip == foreign_ip),
        "the foreign instance is planned for: {s:?}"
    );
    let foreign = nacos_instance(&nacos, &svc, foreign_ip, 8080)
        .await
        .expect("the foreign instance is still registered");
    assert!(enabled(&foreign), "{foreign}");
    assert_eq!(marker(&foreign), None, "{foreign}");
    let evs = events(&client, &ns).await;
    assert!(
        !evs.iter().any(|(_, m)| m.contains(foreign_ip)),
        "an Event names the foreign instance: {evs:?}"
    );
    let live = nacos_instance(&nacos, &svc, &live_ip, 8080)
        .await
        .expect("the live instance is kept");
    assert!(enabled(&live), "{live}");
}

// ------------------------------------------------------------------- (11) Disabled by someone else

/// (11) An instance an administrator disabled (enabled=false, no marker) whose pod is Live is never
/// re-enabled; an instance the operator disabled itself (marker = the binding's UID) is re-enabled
/// once a Ready pod of the binding holds its IP again.
#[tokio::test]
async fn a_live_instance_disabled_by_someone_else_stays_disabled_while_ours_is_re_enabled() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("theirs");
    create_namespace(&client, &ns).await;
    let svc = format!("{ns}-ship");
    // Theirs: the pod is Live, an administrator disabled its instance.
    let theirs_ip = deploy(&client, &ns, "ship", 1, Some(STABLE_NODE)).await[0]
        .1
        .clone();
    register_http(&nacos, &svc, &theirs_ip, 8080).await;
    patch_instance(&nacos, &svc, &theirs_ip, 8080, &[("enabled", "false")]).await;
    let theirs = nacos_instance(&nacos, &svc, &theirs_ip, 8080)
        .await
        .unwrap();
    assert!(!enabled(&theirs) && marker(&theirs).is_none(), "{theirs}");
    // Ours: the IP is held by a pod of another app, so the operator disables the instance.
    let (ours_pod, ours_ip) = deploy(&client, &ns, "dock", 1, Some(STABLE_NODE)).await[0].clone();
    register_http(&nacos, &svc, &ours_ip, 8080).await;
    patch_instance(
        &nacos,
        &svc,
        &ours_ip,
        8080,
        &[("metadata", r#"{"team":"shipping"}"#)],
    )
    .await;

    create_binding(
        &client,
        &ns,
        "ship",
        binding_spec(
            &nacos,
            &[&svc],
            "ship",
            json!({"action": "Disable", "gracePeriodSeconds": 2, "maxRemovals": "100%"}),
            &[],
        ),
    )
    .await;
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    let uid = bindings.get("ship").await.unwrap().uid().expect("a UID");
    let _operator = Operator::start(&ns);
    let ours = wait_for(
        "the operator to disable the instance on the other app's pod",
        Duration::from_secs(60),
        || {
            let (nacos, svc, ip) = (nacos.clone(), svc.clone(), ours_ip.clone());
            async move {
                let i = nacos_instance(&nacos, &svc, &ip, 8080).await?;
                (!enabled(&i)).then_some(i)
            }
        },
    )
    .await;
    assert_eq!(marker(&ours), Some(uid.clone()), "{ours}");
    wait_event(&client, &ns, "Disabled", &[&ours_ip]).await;

    // The pod joins the binding (its labels now match): Live again, so ours is re-enabled.
    Api::<Pod>::namespaced(client.clone(), &ns)
        .patch(
            &ours_pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "ship"}}})),
        )
        .await
        .unwrap();
    let relabelled = Instant::now();
    let ours = wait_for(
        "our disabled instance to be re-enabled",
        Duration::from_secs(15),
        || {
            let (nacos, svc, ip) = (nacos.clone(), svc.clone(), ours_ip.clone());
            async move {
                let i = nacos_instance(&nacos, &svc, &ip, 8080).await?;
                enabled(&i).then_some(i)
            }
        },
    )
    .await;
    eprintln!(
        "our instance re-enabled {:?} after its pod joined the binding",
        relabelled.elapsed()
    );
    assert_eq!(marker(&ours), None, "the marker is removed: {ours}");
    assert_eq!(
        ours["metadata"]["team"], "shipping",
        "other metadata kept: {ours}"
    );
    wait_event(&client, &ns, "Enabled", &[&ours_ip]).await;

    // Several passes later the administrator's choice stands.
    wait_passes(&bindings, "ship", 2, Duration::from_secs(30)).await;
    let theirs = nacos_instance(&nacos, &svc, &theirs_ip, 8080)
        .await
        .expect("still registered");
    assert!(
        !enabled(&theirs),
        "re-enabled what someone else disabled: {theirs}"
    );
    assert_eq!(marker(&theirs), None, "{theirs}");
    let s = status(&bindings, "ship").await.unwrap();
    // Both listed (the testbed's rnacos lists disabled instances too): theirs was seen, and spared.
    assert_eq!(
        (s.instances.total, s.instances.live, s.instances.offline),
        (2, 2, 0),
        "{s:?}"
    );
    assert_eq!(
        consumer_view(&nacos, &svc).await,
        vec![format!("{ours_ip}:8080")]
    );
    let evs = events(&client, &ns).await;
    assert!(
        !evs.iter().any(|(_, m)| m.contains(&theirs_ip)),
        "an Event names the instance someone else disabled: {evs:?}"
    );
}

// ------------------------------------------------------------------------------- (5) Unreachable

/// Deletes a test's own node when the test ends, even when it fails: a NotReady node left behind
/// would count towards the freeze rule of every later test.
struct DeleteNodeOnDrop(String);

impl Drop for DeleteNodeOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(testbed_env("KUBECTL"))
            .args(["--kubeconfig", &testbed_env("KUBECONFIG")])
            .args(["delete", "node", &self.0, "--wait=false"])
            .output();
    }
}

/// The Ready condition of a node: its status and when it last changed.
async fn node_ready_since(
    nodes: &Api<Node>,
    name: &str,
) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
    let n = nodes.get(name).await.ok()?;
    let c = n
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    let t = c.last_transition_time?.0;
    let t = chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)?;
    Some((c.status, t))
}

/// A Nacos server as the test talks to it: the testbed's plain rnacos, or the one with auth on.
struct Server {
    base: String,
    token: Option<String>,
}

impl Server {
    fn plain() -> Self {
        Self {
            base: testbed_env("RNACOS_ADDR"),
            token: None,
        }
    }

    async fn with_auth() -> Self {
        let base = testbed_env("RNACOS_AUTH_ADDR");
        let v: Value = reqwest::Client::new()
            .post(format!("{base}/nacos/v1/auth/login"))
            .form(&[
                ("username", testbed_env("NACOS_USERNAME")),
                ("password", testbed_env("NACOS_PASSWORD")),
            ])
            .send()
            .await
            .expect("log in to rnacos-auth")
            .json()
            .await
            .expect("a login answer");
        let token = v["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("no accessToken in {v}"))
            .to_string();
        Self {
            base,
            token: Some(token),
        }
    }

    fn query<'a>(&'a self, mut q: Vec<(&'a str, String)>) -> Vec<(&'a str, String)> {
        if let Some(t) = &self.token {
            q.push(("accessToken", t.clone()));
        }
        q
    }

    async fn register(&self, service: &str, ip: &str, port: u16) {
        let q = self.query(vec![
            ("serviceName", service.into()),
            ("ip", ip.into()),
            ("port", port.to_string()),
            ("ephemeral", "false".into()),
        ]);
        let r = reqwest::Client::new()
            .post(format!("{}/nacos/v1/ns/instance", self.base))
            .query(&q)
            .send()
            .await
            .expect("register");
        assert!(
            r.status().is_success(),
            "register {ip}:{port}: {}",
            r.status()
        );
    }

    /// The instance whatever its enabled state (the detail API shows disabled ones too).
    async fn instance(&self, service: &str, ip: &str, port: u16) -> Option<Value> {
        let q = self.query(vec![
            ("serviceName", service.into()),
            ("ip", ip.into()),
            ("port", port.to_string()),
            ("clusterName", "DEFAULT".into()),
        ]);
        let r = reqwest::Client::new()
            .get(format!("{}/nacos/v1/ns/instance", self.base))
            .query(&q)
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v.get("ip").is_some().then_some(v)
    }
}

/// (5) An instance on a node's InternalIP (a node process, or a hostNetwork pod) is disabled once its
/// node has been unreachable for `nodeUnreachableSeconds`, with our marker, and enabled again when
/// the node comes back. An instance on a healthy node's IP is left alone.
#[tokio::test]
async fn an_instance_on_an_unreachable_node_is_disabled_after_the_threshold_and_enabled_on_return()
{
    unreachable_node_case(Server::plain(), 10).await;
}

/// (5) The same on a server whose listings hide disabled instances (rnacos with auth serves no
/// console listing): the operator must find the instance it disabled to enable it again.
#[tokio::test]
async fn on_a_server_that_hides_disabled_instances_the_node_instance_is_still_enabled_on_return() {
    unreachable_node_case(Server::with_auth().await, 11).await;
}

async fn unreachable_node_case(server: Server, ip_block: u8) {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = unique("node");
    create_namespace(&client, &ns).await;
    let node_name = unique("own-node");
    let node_ip = format!("10.245.{ip_block}.{}", std::process::id() % 200 + 10);
    let _cleanup = DeleteNodeOnDrop(node_name.clone());
    let mut node = OwnKwokNode::start(&client, &node_name, &node_ip).await;
    let nodes = Api::<Node>::all(client.clone());
    // Only this test's instances live on this node: keep every other pod off it.
    nodes
        .patch(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "e2e.test/own-node", "value": "true", "effect": "NoSchedule"}
            ]}})),
        )
        .await
        .unwrap();

    let svc = format!("{ns}-agent");
    let healthy_ip = format!("{}.1", testbed_env("TESTBED_NODE_IP_PREFIX"));
    server.register(&svc, &node_ip, 9100).await;
    server.register(&svc, &healthy_ip, 9100).await;
    let mut nacos_spec = json!({"serverAddr": [server.base]});
    if server.token.is_some() {
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nacos-auth"},
            "stringData": {"username": testbed_env("NACOS_USERNAME"),
                           "password": testbed_env("NACOS_PASSWORD")}
        }))
        .unwrap();
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
            .create(&Default::default(), &secret)
            .await
            .unwrap();
        nacos_spec["credentialsSecretRef"] = json!({"name": "nacos-auth"});
    }

    let threshold = 10u64;
    create_binding(
        &client,
        &ns,
        "agent",
        json!({
            "nacos": nacos_spec,
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "agent"}}},
            // Default scope: every node's pod CIDRs and InternalIPs.
            "policy": {"onNodeUnreachable": "Disable", "nodeUnreachableSeconds": threshold,
                       "gracePeriodSeconds": 2, "maxRemovals": "100%"},
            // Long: the threshold must not wait for a resync.
            "resyncSeconds": 600
        }),
    )
    .await;
    let _operator = Operator::start(&ns);
    let bindings = Api::<NacosBinding>::namespaced(client.clone(), &ns);
    wait_status(
        &bindings,
        "agent",
        "2 live instances",
        Duration::from_secs(60),
        |s| s.instances.live == 2,
    )
    .await;
    let uid = bindings.get("agent").await.unwrap().uid().unwrap();

    // The node drops off: its Lease stops, the controller-manager marks it Unknown (~20 s).
    node.stop();
    let stopped = Instant::now();
    let (_, down_since) = wait_for(
        "the node to turn NotReady/Unknown",
        Duration::from_secs(60),
        || {
            let nodes = nodes.clone();
            let name = node_name.clone();
            async move {
                node_ready_since(&nodes, &name)
                    .await
                    .filter(|(s, _)| s != "True")
            }
        },
    )
    .await;
    eprintln!(
        "node not Ready {:?} after its kwok stopped",
        stopped.elapsed()
    );
    let due = down_since + chrono::Duration::seconds(threshold as i64);

    let disabled = wait_for(
        "the node's instance to be disabled",
        Duration::from_secs(threshold + 30),
        || {
            let (server, svc, ip) = (&server, svc.clone(), node_ip.clone());
            async move {
                let i = server.instance(&svc, &ip, 9100).await?;
                (!enabled(&i)).then_some(i)
            }
        },
    )
    .await;
    let at = chrono::Utc::now();
    eprintln!(
        "disabled {}ms after the node turned not Ready (threshold {threshold}s)",
        (at - down_since).num_milliseconds()
    );
    // lastTransitionTime has second precision.
    assert!(
        at >= due - chrono::Duration::seconds(1),
        "disabled before the threshold: at {at}, due {due}"
    );
    assert!(
        at <= due + chrono::Duration::seconds(5),
        "disabled {}s after the threshold (due {due}, at {at})",
        (at - due).num_seconds()
    );
    assert_eq!(marker(&disabled), Some(uid.clone()), "{disabled}");
    let msg = wait_event(&client, &ns, "Disabled", &[&node_ip, &node_name]).await;
    assert!(msg.contains("unreachable"), "{msg}");
    // Disabled, not deregistered, and only that one.
    let healthy = server
        .instance(&svc, &healthy_ip, 9100)
        .await
        .expect("the healthy node's instance is kept");
    assert!(enabled(&healthy), "{healthy}");
    wait_status(
        &bindings,
        "agent",
        "1 instance offline",
        Duration::from_secs(10),
        |s| s.instances.offline == 1 && s.instances.live == 1,
    )
    .await;

    // The node comes back: the instance is enabled again, marker gone.
    node.resume();
    let resumed = Instant::now();
    wait_for(
        "the node to be Ready again",
        Duration::from_secs(60),
        || {
            let nodes = nodes.clone();
            let name = node_name.clone();
            async move {
                node_ready_since(&nodes, &name)
                    .await
                    .filter(|(s, _)| s == "True")
            }
        },
    )
    .await;
    let ready_after = resumed.elapsed();
    let back = wait_for(
        "the node's instance to be enabled again",
        Duration::from_secs(10),
        || {
            let (server, svc, ip) = (&server, svc.clone(), node_ip.clone());
            async move {
                let i = server.instance(&svc, &ip, 9100).await?;
                enabled(&i).then_some(i)
            }
        },
    )
    .await;
    eprintln!(
        "node Ready {ready_after:?} after its kwok restarted; instance enabled {:?} after",
        resumed.elapsed()
    );
    // rnacos cannot clear metadata to empty: the operator then leaves the key with an empty value.
    assert!(
        marker(&back).is_none_or(|m| m.is_empty()),
        "our marker is left on an enabled instance: {back}"
    );
    wait_event(&client, &ns, "Enabled", &[&node_ip]).await;
    for ip in [&node_ip, &healthy_ip] {
        let i = server.instance(&svc, ip, 9100).await.expect("registered");
        assert!(enabled(&i), "{i}");
    }
    node.delete(&client).await;
}
