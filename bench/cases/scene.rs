//! One case on one server, alone or with the operator: its namespace, pods, instances (and the
//! client processes holding them), the events, and the consumer's view until each instance is gone.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::app::App;
use crate::common::java::Sdk;
use crate::common::{self, OwnKwokNode, TestProcess};
use crate::nacos::Nacos;
use crate::net::ClientNet;
use crate::{Case, Ctx};

const PORT: u16 = 8080;
/// An instance counts as gone once consumers have not been served it for this long: a 1.x client
/// re-registers a deleted instance at its next beat (5 s), which must not read as "gone".
pub const HOLD: Duration = Duration::from_secs(15);
/// The pod's terminationGracePeriodSeconds in case f: the process exits (its connection closes)
/// this long after the deletion started, as a process that ignores SIGTERM is killed.
pub const TERMINATION_GRACE: Duration = Duration::from_secs(30);

/// What one scene measured, per repetition.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Event → first listing of the final absence; `None`: still served at the bound.
    pub gone: Vec<Option<Duration>>,
    /// How often the instance came back after consumers stopped getting it.
    pub flaps: Vec<u32>,
    /// Case e with the operator: event → the harness saw the node not Ready.
    pub node_seen: Vec<Option<Duration>>,
    /// Case e with the operator: event → the node's Ready `lastTransitionTime` (whole seconds).
    pub node_transition: Vec<Option<Duration>>,
}

struct Rep {
    victim: String,
    addr: String,
    fired: Option<(Instant, SystemTime)>,
    absent_since: Option<Instant>,
    flaps: u32,
    result: Option<Option<Duration>>,
    close_at: Option<Instant>,
    node_seen: Option<Duration>,
    node_transition: Option<Duration>,
}

/// Holds what the scene started; dropped in field order: client processes first, then their
/// namespaces, the operator, the nodes.
struct Held {
    apps: Vec<App>,
    nets: Vec<ClientNet>,
    operator: Option<TestProcess>,
    nodes: Vec<OwnKwokNode>,
    ns: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.apps.clear();
        self.nets.clear();
        self.operator = None;
        self.nodes.clear();
        let _ = std::process::Command::new(std::env::var("KUBECTL").unwrap_or("kubectl".into()))
            .args([
                "--kubeconfig",
                &std::env::var("KUBECONFIG").unwrap_or_default(),
            ])
            .args(["delete", "namespace", &self.ns, "--wait=false"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn pod(name: &str, node: &str, grace: u64) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "cases"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": PORT}]}],
            "tolerations": [{"operator": "Exists"}],
        }
    }))?)
}

pub async fn run(
    ctx: Arc<Ctx>,
    nacos: Arc<Nacos>,
    index: usize,
    case: Case,
    op: bool,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Outcome> {
    let mut permit = Some(permit);
    let r = ctx.reps;
    let ns = format!(
        "cases-{}-{}-{}-{}",
        nacos.kind.label(),
        case.slug(),
        if op { "op" } else { "alone" },
        std::process::id()
    );
    let say = |m: &str| crate::say(format!("{ns}: {m}"));
    let client = ctx.client.clone();
    common::create_namespace(&client, &ns).await;
    let mut held = Held {
        apps: Vec::new(),
        nets: Vec::new(),
        operator: None,
        nodes: Vec::new(),
        ns: ns.clone(),
    };
    if let Some((user, pass)) = &nacos.credentials {
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "nacos-auth"},
            "stringData": {"username": user, "password": pass}
        }))?;
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await?;
    }
    // Case e with the operator: each client's pod on a node of its own, stopped at the cut.
    if case.is_net() && op {
        for i in 0..r {
            let n = ctx.node_ips.fetch_add(1, Ordering::SeqCst);
            let ip = format!("10.246.{}.{}", n / 250, n % 250 + 1);
            held.nodes
                .push(OwnKwokNode::start(&client, &format!("{ns}-n{i}"), &ip).await);
        }
    }
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let grace = if case == Case::F {
        TERMINATION_GRACE.as_secs()
    } else {
        0
    };
    // Not a testbed node: see `fillers` in main.rs.
    let filler = ctx.fillers[index % ctx.fillers.len()].clone();
    for i in 0..r {
        let node = held
            .nodes
            .get(i)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| filler.clone());
        pods.create(
            &PostParams::default(),
            &pod(&format!("v{i}"), &node, grace)?,
        )
        .await?;
        pods.create(&PostParams::default(), &pod(&format!("k{i}"), &filler, 0)?)
            .await?;
    }
    let ready = common::ready_pods(&client, &ns, "cases", 2 * r).await;
    let ip_of = |name: &str| -> Result<String> {
        ready
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ip)| ip.clone())
            .with_context(|| format!("pod {name}"))
    };
    let svc = format!("{ns}-svc");
    let mut reps = Vec::new();
    let mut all = Vec::new();
    let mut keepers = Vec::new();
    for i in 0..r {
        let victim = ip_of(&format!("v{i}"))?;
        keepers.push(format!("{}:{PORT}", ip_of(&format!("k{i}"))?));
        let addr = format!("{victim}:{PORT}");
        all.push(addr.clone());
        reps.push(Rep {
            victim,
            addr,
            fired: None,
            absent_since: None,
            flaps: 0,
            result: None,
            close_at: None,
            node_seen: None,
            node_transition: None,
        });
    }
    all.extend(keepers.iter().cloned());
    let addrs: Vec<String> = reps.iter().map(|p| p.addr.clone()).collect();
    // Healthy keepers (live pods) beside the victims: a service whose every instance is unhealthy
    // reaches Nacos's protect threshold and is served whole. Alibaba Nacos keeps a service either
    // ephemeral or persistent: keepers are of the victims' kind.
    let keeper_app = |held: &mut Held| -> Result<()> {
        held.apps.push(App::provider(
            Sdk::V2,
            &nacos,
            None,
            &svc,
            &keepers,
            &ctx.logs,
        )?);
        Ok(())
    };
    match case {
        // Victims first: `close i` closes victim i's connection.
        Case::A | Case::F => held.apps.push(App::provider(
            Sdk::V2,
            &nacos,
            None,
            &svc,
            &[addrs.clone(), keepers.clone()].concat(),
            &ctx.logs,
        )?),
        Case::B => {
            held.apps.push(App::provider(
                Sdk::V1,
                &nacos,
                None,
                &svc,
                &addrs,
                &ctx.logs,
            )?);
            keeper_app(&mut held)?;
        }
        Case::C => {
            for (n, k) in keepers.iter().enumerate() {
                let (ip, _) = k.rsplit_once(':').context("ip:port")?;
                nacos.register_persistent(&svc, ip, PORT).await?;
                if n == 0 {
                    // Alibaba Nacos TCP-checks persistent instances; nothing answers on the
                    // testbed's pod IPs, live or not, so the check would mark every one unhealthy.
                    nacos.no_health_check(&svc).await?;
                }
            }
            for p in &reps {
                nacos.register_persistent(&svc, &p.victim, PORT).await?;
            }
        }
        Case::D => {
            for a in &addrs {
                held.apps.push(App::provider(
                    Sdk::V2,
                    &nacos,
                    None,
                    &svc,
                    std::slice::from_ref(a),
                    &ctx.logs,
                )?);
            }
            keeper_app(&mut held)?;
        }
        Case::EGrpc | Case::EBeats => {
            let sdk = if case == Case::EGrpc {
                Sdk::V2
            } else {
                Sdk::V1
            };
            for p in &reps {
                let k = ctx.nets.fetch_add(1, Ordering::SeqCst);
                held.nets.push(ClientNet::create(k, &p.victim, &ctx.peer)?);
                let net = held.nets.last().map(|n| n.name.clone());
                held.apps.push(App::provider(
                    sdk,
                    &nacos,
                    net.as_deref(),
                    &svc,
                    std::slice::from_ref(&p.addr),
                    &ctx.logs,
                )?);
            }
            keeper_app(&mut held)?;
        }
    }
    for a in &mut held.apps {
        a.ready(Duration::from_secs(180)).await?;
    }
    wait_served(&nacos, &svc, &all).await?;
    if op {
        let mut policy = json!({"gracePeriodSeconds": 0});
        if case == Case::F {
            policy["onPodTerminating"] = json!("Deregister");
        }
        if let Some(m) = &ctx.max_removals {
            policy["maxRemovals"] = json!(m);
        }
        if let Some(n) = ctx.node_unreachable {
            policy["nodeUnreachableSeconds"] = json!(n.as_secs());
        }
        common::create_binding(
            &client,
            &ns,
            "cases",
            json!({
                "nacos": nacos.binding_nacos(),
                "services": [{"name": svc}],
                "pods": {"selector": {"matchLabels": {"app": "cases"}}},
                "policy": policy,
            }),
        )
        .await;
        held.operator = Some(start_operator(&ctx, &ns)?);
        let live = 2 * r as u32;
        common::wait_binding(&client, &ns, "cases", "Ready, all live", |s| {
            common::condition_is(s, "Ready", "True") && s.instances.live == live
        })
        .await;
    }
    say("set up; events start");

    let nodes_api = Api::<Node>::all(client.clone());
    let t0 = Instant::now() + Duration::from_millis(500);
    let mut last_node_poll = Instant::now();
    loop {
        let now = Instant::now();
        for (i, p) in reps.iter_mut().enumerate() {
            if p.fired.is_none() && now >= t0 + ctx.stagger * i as u32 {
                p.fired = Some((Instant::now(), SystemTime::now()));
                fire(case, i, &pods, &mut held).await?;
                if case == Case::F {
                    p.close_at = Some(Instant::now() + TERMINATION_GRACE);
                }
            }
            if p.close_at.is_some_and(|t| now >= t) {
                p.close_at = None;
                held.apps[0].close(i)?;
            }
        }
        if reps.iter().all(|p| p.fired.is_some()) {
            // The next scene may set up while this one only watches.
            permit = None;
        }
        if let Ok(served) = nacos.served(&svc).await {
            let now = Instant::now();
            for p in reps.iter_mut().filter(|p| p.result.is_none()) {
                let Some((fired, _)) = p.fired else { continue };
                let present = served.contains(&p.addr);
                match (present, p.absent_since) {
                    (false, None) => p.absent_since = Some(now),
                    (true, Some(_)) => {
                        p.absent_since = None;
                        p.flaps += 1;
                    }
                    _ => {}
                }
                if let Some(a) = p.absent_since {
                    if now - a >= HOLD {
                        p.result = Some(Some(a - fired));
                    }
                } else if now - fired > ctx.bound {
                    p.result = Some(None);
                }
            }
        }
        if !held.nodes.is_empty() && now - last_node_poll >= Duration::from_millis(500) {
            last_node_poll = now;
            for (i, p) in reps.iter_mut().enumerate() {
                let Some((fired, wall)) = p.fired else {
                    continue;
                };
                if p.node_seen.is_some() {
                    continue;
                }
                if let Some((status, since)) =
                    common::node_ready_since(&nodes_api, &held.nodes[i].name).await
                {
                    if status != "True" {
                        p.node_seen = Some(Instant::now() - fired);
                        let since = SystemTime::from(since);
                        p.node_transition = since.duration_since(wall).ok();
                    }
                }
            }
        }
        if reps.iter().all(|p| p.result.is_some()) {
            break;
        }
        let recent = reps.iter().any(|p| {
            p.fired
                .is_none_or(|(f, _)| f.elapsed() < Duration::from_secs(45))
        });
        tokio::time::sleep(if recent {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(500)
        })
        .await;
    }
    drop(permit);
    say("done");
    Ok(Outcome {
        gone: reps.iter().map(|p| p.result.flatten()).collect(),
        flaps: reps.iter().map(|p| p.flaps).collect(),
        node_seen: reps.iter().map(|p| p.node_seen).collect(),
        node_transition: reps.iter().map(|p| p.node_transition).collect(),
    })
}

/// The event of repetition `i`.
async fn fire(case: Case, i: usize, pods: &Api<Pod>, held: &mut Held) -> Result<()> {
    let name = format!("v{i}");
    let now = DeleteParams::default().grace_period(0);
    match case {
        Case::A | Case::B | Case::C => {
            pods.delete(&name, &now).await?;
        }
        Case::D => {
            held.apps[i].kill();
            pods.delete(&name, &now).await?;
        }
        Case::EGrpc | Case::EBeats => {
            held.nets[i].cut()?;
            if let Some(n) = held.nodes.get_mut(i) {
                n.stop();
            }
        }
        // Terminating: the pod's own grace period (the process exits at its end).
        Case::F => {
            pods.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

async fn wait_served(nacos: &Nacos, svc: &str, all: &[String]) -> Result<()> {
    for _ in 0..120 {
        if let Ok(s) = nacos.served(svc).await {
            if all.iter().all(|a| s.contains(a)) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("{svc}: not every instance is served 30 s after registration")
}

fn start_operator(ctx: &Ctx, ns: &str) -> Result<TestProcess> {
    let log = std::fs::File::create(ctx.logs.join(format!("operator-{ns}.log")))?;
    let mut cmd = std::process::Command::new(&ctx.operator);
    cmd.arg("run")
        .args(["--kubeconfig", &std::env::var("KUBECONFIG")?])
        .args(["--namespaces", ns])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .args(["--instance-name", &format!("cases-{ns}")])
        .args(["--log-level", "info"])
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(TestProcess::spawn(cmd, "operator-cases"))
}
