//! Scale benchmark of nacos-reconciler against the local testbed (real API server, KWOK, and rnacos
//! or Alibaba Nacos 2.5.1: `--server`).
//! Not a test: it measures, prints a Markdown report, and writes it to `--out`. Run it through
//! `bench/run.sh`, which starts a private testbed and builds the release binaries first.
//!
//! Phases: nodes and bare pods (bound to KWOK nodes) → one persistent Nacos instance per pod
//! (1,000 pods : 100 services) → one NacosBinding over `bench-s*` → the operator → steady state
//! (idle CPU, forced full passes) → single deletions (grace 0) → node loss → mass deletion →
//! wrongful-removal check; the Nacos baselines run alongside, on services the operator ignores.

mod baseline;
mod cluster;
#[path = "../flags.rs"]
mod flags;
mod nacos;
mod operator;
mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use nacos_reconciler::crd::NacosBinding;

use cluster::{BenchPod, NS};
use nacos::{Nacos, OfflineTracker};
use operator::{loadavg, memory_kib, OperatorProc};
use stats::{fmt_dur, fmt_ratio, metric_sum, summarize, Summary, Table};

const PORT: u16 = 8080;
const BINDING: &str = "bench";
/// The service of the probes of the server's own publication delay, and how many there are.
const PROBE_SERVICE: &str = "bench-probe";
const PROBES: usize = 20;
/// The offline detector's listings per second at most during the mass deletion: uncapped, it took
/// a third of this 2-core machine's CPU (its own and rnacos's) from the API server it waits for.
const MASS_POLL_RATE: u64 = 400;

struct Args {
    pods: usize,
    services: usize,
    pods_per_node: usize,
    deletions: usize,
    delete_interval: Duration,
    mass: usize,
    node_pods: usize,
    node_unreachable_seconds: u32,
    baseline_bound: Duration,
    idle: Duration,
    passes: usize,
    operator: PathBuf,
    out: PathBuf,
    server: nacos::Server,
    /// Where to write the run's cost figures as one JSON object (bench/merge.py's growth table).
    cost: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let kv = flags::flags()?;
    let num = |k: &str, d: usize| -> Result<usize> {
        kv.get(k)
            .map_or(Ok(d), |v| v.parse().with_context(|| format!("--{k} {v}")))
    };
    let pods = num("pods", 1000)?;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Ok(Args {
        pods,
        services: num("services", (pods / 10).max(1))?,
        pods_per_node: num("pods-per-node", 200)?,
        deletions: num("deletions", 500.min(pods / 2))?,
        delete_interval: Duration::from_millis(num("delete-interval-ms", 200)? as u64),
        mass: num("mass", 2000.min(pods / 5))?,
        node_pods: num("node-pods", 100)?,
        node_unreachable_seconds: num("node-unreachable-seconds", 5)? as u32,
        baseline_bound: Duration::from_secs(num("baseline-bound", 120)? as u64),
        idle: Duration::from_secs(num("idle-seconds", 60)? as u64),
        passes: num("passes", 3)?,
        operator: kv
            .get("operator")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(target).join("release/nacos-reconciler")),
        out: kv
            .get("out")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("bench-{pods}.md"))),
        server: nacos::Server::parse(kv.get("server").map_or("rnacos", String::as_str))?,
        cost: kv.get("cost").map(PathBuf::from),
    })
}

fn say(msg: impl AsRef<str>) {
    let t = chrono::Utc::now().format("%H:%M:%S");
    eprintln!("[bench {t}] {}", msg.as_ref());
}

/// Converts an `Instant` to wall-clock time through a reference pair taken at start.
struct Clock(Instant, SystemTime);

impl Clock {
    fn wall(&self, i: Instant) -> SystemTime {
        if i >= self.0 {
            self.1 + (i - self.0)
        } else {
            self.1 - (self.0 - i)
        }
    }
}

/// Operator metrics that a phase reports as deltas.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    requests: f64,
    list_instances: f64,
    list_services: f64,
    passes: f64,
    pass_seconds: f64,
    deregistered: f64,
    disabled: f64,
    enabled: f64,
    not_confirmed: f64,
    failed: f64,
}

impl Counters {
    fn read(text: &str) -> Self {
        let req = "nacos_reconciler_nacos_request_duration_seconds_count";
        let act = "nacos_reconciler_actions_total";
        Self {
            requests: metric_sum(text, req, &[]),
            list_instances: metric_sum(text, req, &["operation=\"list_instances\""]),
            list_services: metric_sum(text, req, &["operation=\"list_services\""]),
            passes: metric_sum(
                text,
                "nacos_reconciler_reconcile_duration_seconds_count",
                &[],
            ),
            pass_seconds: metric_sum(text, "nacos_reconciler_reconcile_duration_seconds_sum", &[]),
            deregistered: metric_sum(text, act, &["action=\"deregister\"", "result=\"success\""]),
            disabled: metric_sum(text, act, &["action=\"disable\"", "result=\"success\""]),
            enabled: metric_sum(text, act, &["action=\"enable\"", "result=\"success\""]),
            not_confirmed: metric_sum(text, act, &["result=\"not_confirmed\""]),
            failed: metric_sum(text, act, &["result=\"failed\""]),
        }
    }

    fn minus(self, o: Self) -> Self {
        Self {
            requests: self.requests - o.requests,
            list_instances: self.list_instances - o.list_instances,
            list_services: self.list_services - o.list_services,
            passes: self.passes - o.passes,
            pass_seconds: self.pass_seconds - o.pass_seconds,
            deregistered: self.deregistered - o.deregistered,
            disabled: self.disabled - o.disabled,
            enabled: self.enabled - o.enabled,
            not_confirmed: self.not_confirmed - o.not_confirmed,
            failed: self.failed - o.failed,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let report = run(&args).await?;
    print!("{report}");
    std::fs::write(&args.out, &report).with_context(|| format!("write {}", args.out.display()))?;
    say(format!("report written to {}", args.out.display()));
    Ok(())
}

fn service_name(i: usize) -> String {
    format!("bench-s{i:04}")
}

async fn run(args: &Args) -> Result<String> {
    let clock = Clock(Instant::now(), SystemTime::now());
    let started_at = chrono::Utc::now();
    let load_start = loadavg();
    let client = kube::Client::try_default()
        .await
        .context("kube client (KUBECONFIG)")?;
    let nacos = Nacos::new(args.server)?;
    let server_pid = server_pid(args.server)?;
    let server_label = format!("{} (pid {server_pid}, measured)", args.server.title());
    let named = [(server_pid, server_label.as_str())];
    let pod_watch = cluster::watch_pods(&client);
    let node_watch = cluster::watch_nodes(&client);
    let mut out = String::new();

    // ---------------------------------------------------------------- nodes and pods
    let t = Instant::now();
    create_namespace(&client).await?;
    let nodes = args.pods.div_ceil(args.pods_per_node);
    let mut node_names = Vec::new();
    for i in 0..nodes {
        let name = format!("bench-n{i:03}");
        cluster::create_node(
            &client,
            &name,
            &format!("10.246.{}.{}", i / 250, i % 250 + 1),
            true,
            // Room for the control pods too (see below).
            args.pods_per_node + 10 + args.mass.div_ceil(nodes),
        )
        .await?;
        node_names.push(name);
    }
    let lost = "bench-lost".to_string();
    cluster::create_node(&client, &lost, "10.246.255.1", false, args.node_pods + 10).await?;
    let mut lost_kwok = cluster::OwnKwok::start(&lost)?;
    node_names.push(lost.clone());
    cluster::wait_nodes_ready(&client, &node_names, Duration::from_secs(120)).await?;
    say(format!(
        "{} nodes Ready in {:?}",
        node_names.len(),
        t.elapsed()
    ));

    let mut specs: Vec<(String, String, String)> = (0..args.pods)
        .map(|i| {
            (
                format!("p{i:05}"),
                service_name(i % args.services),
                format!("bench-n{:03}", i / args.pods_per_node),
            )
        })
        .collect();
    specs.extend((0..args.node_pods).map(|j| {
        (
            format!("l{j:04}"),
            service_name((j * 7) % args.services),
            lost.clone(),
        )
    }));
    let total = specs.len();
    let t_pods = Instant::now();
    // KWOK 0.8 makes a node's IP pool when the node's first pod needs an address, without a lock:
    // two pods of a new node at once could both get the first address. One pod per node goes first.
    let mut nodes_seen = HashSet::new();
    let (firsts, rest): (Vec<_>, Vec<_>) = specs
        .iter()
        .cloned()
        .partition(|s| nodes_seen.insert(s.2.clone()));
    cluster::create_pods(&client, &firsts, 48).await?;
    cluster::wait_running(&pod_watch, &firsts, Duration::from_secs(120)).await?;
    cluster::create_pods(&client, &rest, 48).await?;
    let created_in = t_pods.elapsed();
    say(format!("{total} pods created in {created_in:?}"));
    let deadline = Duration::from_secs(120 + total as u64 / 10);
    loop {
        let n = pod_watch.lock().expect("lock").running.len();
        if n >= total {
            break;
        }
        if t_pods.elapsed() > deadline {
            bail!(
                "only {n} of {total} pods Running with an IP after {:?}",
                t_pods.elapsed()
            );
        }
        say(format!("{n}/{total} pods Running"));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let running_in = t_pods.elapsed();

    // Control pods: as many as the mass deletion takes, running like the others but in no Nacos
    // service. They are deleted at once before the operator starts, so the report can set the
    // API server's own time for that many deletions beside the operator's mass-deletion figures.
    let control: Vec<(String, String, String)> = (0..args.mass)
        .map(|j| {
            (
                format!("c{j:05}"),
                "control".to_string(),
                format!("bench-n{:03}", j % nodes),
            )
        })
        .collect();
    cluster::create_pods(&client, &control, 48).await?;
    let timeout = Duration::from_secs(120 + control.len() as u64 / 10);
    cluster::wait_running(&pod_watch, &control, timeout).await?;
    let pods: Vec<BenchPod> = {
        let w = pod_watch.lock().expect("lock");
        specs
            .iter()
            .map(|(name, service, node)| BenchPod {
                name: name.clone(),
                service: service.clone(),
                node: node.clone(),
                ip: w.running.get(name).cloned().unwrap_or_default(),
            })
            .collect()
    };
    let mut seen = HashSet::new();
    for p in &pods {
        if !seen.insert(p.ip.clone()) {
            bail!(
                "two pods have IP {}: KWOK handed out an address twice",
                p.ip
            );
        }
    }
    say(format!("all {total} pods Running in {running_in:?}"));

    // ---------------------------------------------------------------- Nacos instances
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(pods.iter())
        .map(|p| nacos.register(&p.service, &p.ip, PORT, false))
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let registered_in = t.elapsed();
    say(format!(
        "{total} persistent instances registered in {registered_in:?}"
    ));

    // ---------------------------------------------------------------- control deletion
    let control_names: Vec<String> = control.into_iter().map(|c| c.0).collect();
    let work0 = cluster::apiserver_work()?;
    let cpu0 = operator::cpu_by_command(&named);
    let control_cost = delete_at_once(&client, &pod_watch, &control_names).await?;
    let control_cpu = operator::cpu_between(&cpu0, &operator::cpu_by_command(&named));
    let control_work = cluster::work_between(&work0, &cluster::apiserver_work()?);
    say(format!(
        "control: {} pods deleted without the operator: calls answered after {:?}, last DELETED event after {:?}",
        control_names.len(),
        control_cost.answered,
        control_cost.last_event
    ));

    // ---------------------------------------------------------------- the server's own delay
    let publication = summarize(&nacos.publication_delay(PROBE_SERVICE, PROBES).await?);
    say(format!(
        "{}'s publication delay (DELETE answered -> listing without it): p50 {}, max {}",
        args.server.title(),
        fmt_dur(publication.p50),
        fmt_dur(publication.max)
    ));

    // ---------------------------------------------------------------- binding and operator
    install_crd(&client).await?;
    create_binding(&client, &nacos, args).await?;
    let t = Instant::now();
    let log = PathBuf::from(std::env::var("TESTBED_STATE").unwrap_or_else(|_| "/tmp".into()))
        .join("logs/operator-bench.log");
    std::fs::create_dir_all(log.parent().expect("a parent")).ok();
    let mut op = OperatorProc::start(&args.operator, log.clone())?;
    say(format!(
        "operator pid {} logs to {}",
        op.pid(),
        log.display()
    ));
    wait_binding_live(&client, total, Duration::from_secs(300), &mut op).await?;
    let first_ready_in = t.elapsed();
    let (rss_synced, _) = op.memory_kib();
    let (server_rss_synced, _) = memory_kib(server_pid);
    say(format!(
        "binding Ready with {total} live instances after {first_ready_in:?}"
    ));

    let baselines = {
        let nacos = nacos.clone();
        let bound = args.baseline_bound;
        tokio::spawn(async move { baseline::run(nacos, bound).await })
    };

    // ---------------------------------------------------------------- steady state
    tokio::time::sleep(Duration::from_secs(3)).await;
    let load_idle = loadavg();
    let c0 = Counters::read(&op.metrics().await);
    let cpu0 = op.cpu_seconds();
    let server_cpu0 = operator::cpu_seconds(server_pid);
    tokio::time::sleep(args.idle).await;
    let idle_cpu_per_min = (op.cpu_seconds() - cpu0) * 60.0 / args.idle.as_secs_f64();
    let server_idle_per_min =
        (operator::cpu_seconds(server_pid) - server_cpu0) * 60.0 / args.idle.as_secs_f64();
    let idle_passes = Counters::read(&op.metrics().await).minus(c0).passes;
    say(format!(
        "idle: {idle_cpu_per_min:.3} CPU s/min ({idle_passes} passes in {:?})",
        args.idle
    ));

    let mut pass_walls = Vec::new();
    let mut pass_requests = Vec::new();
    let mut pass_lists = Vec::new();
    let mut pass_cpu = Vec::new();
    let mut pass_server_cpu = Vec::new();
    let bindings: Api<NacosBinding> = Api::namespaced(client.clone(), NS);
    // The API server's requests over the forced passes, the 2 s pauses between them included.
    let passes_work0 = cluster::apiserver_work()?;
    for i in 0..args.passes {
        // The first pass to end after the annotation may be one that began before it (seen at
        // 30,000 pods on Alibaba Nacos: focused passes, no service list asked): such a pass is not
        // taken; the annotation's own full pass is let finish and the binding annotated again.
        let mut tries = 0;
        let (d, cpu_used, server_cpu_used) = loop {
            tries += 1;
            let before = Counters::read(&op.metrics().await);
            let cpu = op.cpu_seconds();
            let server_cpu = operator::cpu_seconds(server_pid);
            let t = Instant::now();
            bindings
                .patch(
                    BINDING,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"bench.nacos-reconciler.io/pass": format!("{i}.{tries}")}}})),
                )
                .await?;
            let after = loop {
                let now = Counters::read(&op.metrics().await);
                if now.passes > before.passes {
                    break now;
                }
                if t.elapsed() > Duration::from_secs(120) {
                    bail!("no reconcile pass within 120 s of annotating the binding");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let d = after.minus(before);
            let used = (
                op.cpu_seconds() - cpu,
                operator::cpu_seconds(server_pid) - server_cpu,
            );
            if d.list_services > 0.0 && d.passes == 1.0 {
                break (d, used.0, used.1);
            }
            say(format!(
                "forced pass {i}: not one full pass ({} passes, {} listings, {} service list requests); again",
                d.passes, d.list_instances, d.list_services
            ));
            if tries >= 5 {
                bail!("no full pass within 5 annotations");
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        };
        pass_walls.push(Duration::from_secs_f64(d.pass_seconds / d.passes));
        pass_requests.push(d.requests / d.passes);
        pass_lists.push(d.list_instances / d.passes);
        pass_cpu.push(cpu_used / d.passes);
        pass_server_cpu.push(server_cpu_used / d.passes);
        say(format!(
            "full pass {i}: {:?}, {} Nacos requests ({} listings)",
            pass_walls[i], pass_requests[i], pass_lists[i]
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let passes_work = cluster::work_between(&passes_work0, &cluster::apiserver_work()?);
    // What the operator asks of the API server in a full pass: requests on its own objects (the
    // binding, its status, Events) and any listing of pods or nodes (a relist). The harness's
    // annotation (one PATCH per pass) is taken off; background traffic (kwok's leases and
    // statuses, the controller-manager) is left out by resource.
    let api_per_pass = {
        let ours: f64 = passes_work
            .iter()
            .filter(|(k, _)| {
                k.contains("nacosbindings")
                    || k.ends_with(" events")
                    || k.as_str() == "LIST pods"
                    || k.as_str() == "LIST nodes"
            })
            .map(|(_, (n, _))| n)
            .sum();
        (ours - args.passes as f64).max(0.0) / args.passes.max(1) as f64
    };
    let api_all_per_pass =
        passes_work.values().map(|(n, _)| n).sum::<f64>() / args.passes.max(1) as f64;

    // ---------------------------------------------------------------- single deletions
    let seen_deleted: nacos::SeenDeleted = {
        let w = pod_watch.clone();
        std::sync::Arc::new(move |pod: &str| w.lock().expect("lock").deleted.contains_key(pod))
    };
    let tracker = OfflineTracker::start(nacos.clone(), 4, Duration::from_millis(10), seen_deleted);
    let mut victims: Vec<&BenchPod> = pods.iter().filter(|p| p.node != lost).collect();
    stats::shuffle(&mut victims, 0x5eed_0fbe);
    let singles: Vec<&BenchPod> = victims.iter().take(args.deletions).copied().collect();
    let mass: Vec<&BenchPod> = victims
        .iter()
        .skip(args.deletions)
        .take(args.mass)
        .copied()
        .collect();
    let load_singles = loadavg();
    let m_singles = op.metrics().await;
    let c_singles = Counters::read(&m_singles);
    let ops_singles0 = requests_by_operation(&m_singles);
    let server_cpu_singles = operator::cpu_seconds(server_pid);
    let mut sent = Vec::new();
    say(format!(
        "deleting {} pods one by one, every {:?}",
        singles.len(),
        args.delete_interval
    ));
    for (id, p) in singles.iter().enumerate() {
        tracker.track(id, &p.service, &format!("{}:{PORT}", p.ip), Some(&p.name));
        let t = Instant::now();
        cluster::delete_pod(&client, &p.name).await?;
        sent.push(t);
        tokio::time::sleep(args.delete_interval).await;
    }
    tracker.wait_all(Duration::from_secs(60)).await;
    let m_singles_end = op.metrics().await;
    let d_singles = Counters::read(&m_singles_end).minus(c_singles);
    let ops_singles = fmt_by_operation(
        &ops_singles0,
        &requests_by_operation(&m_singles_end),
        singles.len() as f64,
    );
    let server_cpu_singles = operator::cpu_seconds(server_pid) - server_cpu_singles;
    let (single_watch, single_api, watch_lag) = {
        let w = pod_watch.lock().expect("lock");
        let mut from_watch = Vec::new();
        let mut from_api = Vec::new();
        let mut lag = Vec::new();
        for (id, p) in singles.iter().enumerate() {
            let seen = w.deleted.get(&p.name);
            let start = seen.map_or(sent[id], |s| s.0);
            lag.push(seen.map(|s| s.0.saturating_duration_since(sent[id])));
            let done = tracker.done_at(id);
            from_watch.push(done.map(|d| d.saturating_duration_since(start)));
            from_api.push(done.and_then(|d| {
                let ts = seen.and_then(|s| s.2)?;
                clock.wall(d).duration_since(ts).ok()
            }));
        }
        (
            summarize(&from_watch),
            summarize(&from_api),
            summarize(&lag),
        )
    };
    say(format!(
        "single deletions: p50 {} p99 {} max {} ({} timed out)",
        fmt_dur(single_watch.p50),
        fmt_dur(single_watch.p99),
        fmt_dur(single_watch.max),
        single_watch.missing
    ));

    // ---------------------------------------------------------------- node loss
    let load_node = loadavg();
    let c_node = Counters::read(&op.metrics().await);
    // Forget how the node looked before its kwok first made it Ready: only the coming transition counts.
    node_watch.lock().expect("lock").not_ready.remove(&lost);
    let t_kill = Instant::now();
    lost_kwok.stop();
    say("stopped the kwok of bench-lost; waiting for Ready=Unknown");
    let (unknown_seen, unknown_api) = loop {
        if let Some(v) = node_watch
            .lock()
            .expect("lock")
            .not_ready
            .get(&lost)
            .copied()
        {
            break v;
        }
        if t_kill.elapsed() > Duration::from_secs(180) {
            bail!("bench-lost never turned not Ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    say(format!(
        "bench-lost not Ready {:?} after its kwok stopped",
        unknown_seen.saturating_duration_since(t_kill)
    ));
    let lost_pods: Vec<&BenchPod> = pods.iter().filter(|p| p.node == lost).collect();
    let base_id = 1_000_000;
    for (j, p) in lost_pods.iter().enumerate() {
        tracker.track(base_id + j, &p.service, &format!("{}:{PORT}", p.ip), None);
    }
    tracker
        .wait_all(Duration::from_secs(
            u64::from(args.node_unreachable_seconds) + 60,
        ))
        .await;
    let d_node = Counters::read(&op.metrics().await).minus(c_node);
    let threshold = Duration::from_secs(args.node_unreachable_seconds.into());
    let node_from_seen: Vec<Option<Duration>> = (0..lost_pods.len())
        .map(|j| {
            tracker
                .done_at(base_id + j)
                .map(|d| d.saturating_duration_since(unknown_seen))
        })
        .collect();
    // The operator counts the threshold from the condition's lastTransitionTime (whole seconds,
    // written before the event reaches anyone), so "beyond the threshold" is measured from that too:
    // it overstates by up to a second.
    let node_beyond: Vec<Option<Duration>> = (0..lost_pods.len())
        .map(|j| {
            let d = tracker.done_at(base_id + j)?;
            let since = clock.wall(d).duration_since(unknown_api?).ok()?;
            Some(since.saturating_sub(threshold))
        })
        .collect();
    let node_from_api: Vec<Option<Duration>> = (0..lost_pods.len())
        .map(|j| {
            let d = tracker.done_at(base_id + j)?;
            clock.wall(d).duration_since(unknown_api?).ok()
        })
        .collect();
    let (node_seen, node_beyond, node_api) = (
        summarize(&node_from_seen),
        summarize(&node_beyond),
        summarize(&node_from_api),
    );
    say(format!(
        "node loss: p99 {} after Unknown was seen ({} beyond the threshold)",
        fmt_dur(node_seen.p99),
        fmt_dur(node_beyond.p99)
    ));

    // ---------------------------------------------------------------- mass deletion
    let load_mass = loadavg();
    let m_mass = op.metrics().await;
    let c_mass = Counters::read(&m_mass);
    let ops_mass0 = requests_by_operation(&m_mass);
    let cpu_mass = op.cpu_seconds();
    let server_cpu_mass = operator::cpu_seconds(server_pid);
    let mass_base = 2_000_000;
    for (k, p) in mass.iter().enumerate() {
        tracker.track(
            mass_base + k,
            &p.service,
            &format!("{}:{PORT}", p.ip),
            Some(&p.name),
        );
    }
    tracker.set_max_rate(MASS_POLL_RATE);
    let polls_mass = tracker.polls();
    say(format!("deleting {} pods at once", mass.len()));
    let mass_names: Vec<String> = mass.iter().map(|p| p.name.clone()).collect();
    let work0 = cluster::apiserver_work()?;
    let cpu0 = operator::cpu_by_command(&named);
    let mass_cost = delete_at_once(&client, &pod_watch, &mass_names).await?;
    let t_mass = mass_cost.started;
    let mass_cpu_deleting = operator::cpu_between(&cpu0, &operator::cpu_by_command(&named));
    tracker.wait_all(Duration::from_secs(180)).await;
    let mass_work = cluster::work_between(&work0, &cluster::apiserver_work()?);
    let polls_mass = tracker.polls() - polls_mass;
    let m_mass_end = op.metrics().await;
    let d_mass = Counters::read(&m_mass_end).minus(c_mass);
    let ops_mass_end = requests_by_operation(&m_mass_end);
    let mass_cpu = op.cpu_seconds() - cpu_mass;
    let server_cpu_mass = operator::cpu_seconds(server_pid) - server_cpu_mass;
    let mass_done: Vec<Option<Instant>> = (0..mass.len())
        .map(|k| tracker.done_at(mass_base + k))
        .collect();
    let mass_missing = mass_done.iter().filter(|d| d.is_none()).count();
    let mass_last = mass_done
        .iter()
        .flatten()
        .max()
        .map(|d| d.saturating_duration_since(t_mass));
    // The detector's last listing that still had an instance usable: the last removal happened
    // between this and `mass_last` (a round of listings apart while many were pending).
    let mass_last_usable = (0..mass.len())
        .filter_map(|k| tracker.last_usable_at(mass_base + k))
        .max()
        .map(|d| d.saturating_duration_since(t_mass));
    let mass_after_last_watch = mass_done
        .iter()
        .flatten()
        .max()
        .map(|d| d.saturating_duration_since(t_mass + mass_cost.last_event));
    let removed_mass = (mass.len() - mass_missing).max(1) as f64;
    let ops_mass = fmt_by_operation(&ops_mass0, &ops_mass_end, removed_mass);
    say(format!(
        "mass: last offline after {} ({} missing)",
        fmt_dur(mass_last),
        mass_missing
    ));

    // ---------------------------------------------------------------- wrongful removals
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (wrongful, leftovers) = check_registry(&nacos, &pods, &pod_watch, args.services).await?;
    let totals = Counters::read(&op.metrics().await);
    let (rss_end, hwm) = op.memory_kib();
    let (server_rss_end, server_hwm) = memory_kib(server_pid);
    let cpu_total = op.cpu_seconds();
    let alive = op.alive();
    say(format!(
        "wrongful removals: {} (enable actions {}), leftovers {leftovers}",
        wrongful.len(),
        totals.enabled
    ));

    say("waiting for the baselines");
    let baselines = baselines.await.context("baseline task")??;
    let load_end = loadavg();
    drop(op);

    // ---------------------------------------------------------------- report
    let op_p99 = single_watch.p99;
    out.push_str(&format!(
        "### {} pods on {}: {} instances in {} services, {} KWOK nodes\n\n",
        args.pods,
        args.server.title(),
        total,
        args.services,
        node_names.len()
    ));
    out.push_str(&format!(
        "Run {} UTC; load average (1/5/15 min) at start {load_start}, idle phase {load_idle}, single deletions \
         {load_singles}, node loss {load_node}, mass deletion {load_mass}, end {load_end}. \
         Setup: pods created in {}, all Running in {}, instances registered in {}, binding Ready with every \
         instance Live {} after the operator started. Operator alive at the end: {alive}.\n\n",
        started_at.format("%Y-%m-%d %H:%M"),
        fmt_dur(Some(created_in)),
        fmt_dur(Some(running_in)),
        fmt_dur(Some(registered_in)),
        fmt_dur(Some(first_ready_in)),
    ));

    let mut t = Table::new(&[
        "removal latency",
        "n",
        "p50",
        "p95",
        "p99",
        "max",
        "not offline in time",
    ]);
    let mut row = |name: &str, s: &Summary| {
        t.row(vec![
            name.into(),
            s.n.to_string(),
            fmt_dur(s.p50),
            fmt_dur(s.p95),
            fmt_dur(s.p99),
            fmt_dur(s.max),
            s.missing.to_string(),
        ])
    };
    row(
        "pod deleted (grace 0), from the DELETED watch event here",
        &single_watch,
    );
    if single_api.missing < single_api.n {
        row(
            "same, from the API server's deletionTimestamp (1 s resolution)",
            &single_api,
        );
    }
    row("(delete call sent → DELETED watch event here)", &watch_lag);
    row(
        &format!(
            "({}'s own: DELETE answered → first listing without it, no operator)",
            args.server.title()
        ),
        &publication,
    );
    row("node loss, from Ready=Unknown seen here", &node_seen);
    row(
        &format!(
            "node loss, beyond lastTransitionTime + nodeUnreachableSeconds ({} s)",
            args.node_unreachable_seconds
        ),
        &node_beyond,
    );
    row(
        "node loss, from the condition's lastTransitionTime (1 s resolution)",
        &node_api,
    );
    out.push_str(&t.render());
    out.push('\n');
    out.push_str(&format!(
        "Single deletions: one every {:?}; the operator made {} Nacos requests ({:.1} per deletion: {ops_singles}), \
         {} passes; {} used {server_cpu_singles:.1} CPU s meanwhile.\n\
         Node loss: {} instances on `bench-lost`, `onNodeUnreachable: Disable`; {} disabled, {} Nacos requests.\n\
         The harness's own consumer-view listings (its offline detector): {} in total.\n\n",
        args.delete_interval,
        d_singles.requests,
        d_singles.requests / singles.len().max(1) as f64,
        d_singles.passes,
        args.server.title(),
        lost_pods.len(),
        d_node.disabled,
        d_node.requests,
        tracker.polls(),
    ));

    let mut t = Table::new(&["mass deletion", "value"]);
    t.row(vec![
        "pods deleted at once (64 delete calls in flight)".into(),
        mass.len().to_string(),
    ]);
    t.row(vec![
        "all delete calls answered / last DELETED watch event here, after".into(),
        format!(
            "{} / {}",
            fmt_dur(Some(mass_cost.answered)),
            fmt_dur(Some(mass_cost.last_event))
        ),
    ]);
    t.row(vec![
        format!(
            "the same for {} control pods deleted before the operator started (API server alone)",
            control_names.len()
        ),
        format!(
            "{} / {}",
            fmt_dur(Some(control_cost.answered)),
            fmt_dur(Some(control_cost.last_event))
        ),
    ]);
    t.row(vec![
        "last instance offline, from the first delete call (first listing without it)".into(),
        fmt_dur(mass_last),
    ]);
    t.row(vec![
        "last listing that still had any of them usable, from the first delete call".into(),
        fmt_dur(mass_last_usable),
    ]);
    t.row(vec![
        "last instance offline, from the last DELETED watch event here".into(),
        fmt_dur(mass_after_last_watch),
    ]);
    t.row(vec![
        "instances not offline within 180 s".into(),
        mass_missing.to_string(),
    ]);
    t.row(vec![
        "Nacos requests per removed instance".into(),
        format!("{:.2}", d_mass.requests / removed_mass),
    ]);
    t.row(vec![
        "of which listings per removed instance".into(),
        format!("{:.2}", d_mass.list_instances / removed_mass),
    ]);
    t.row(vec![
        "Nacos requests per removed instance, by operation".into(),
        ops_mass.clone(),
    ]);
    t.row(vec![
        format!(
            "the harness's consumer-view listings meanwhile (at most {MASS_POLL_RATE}/s; each \
             service once a round, only for instances whose pod's deletion it saw)"
        ),
        polls_mass.to_string(),
    ]);
    let event_writes = |verb: &str| {
        mass_work
            .get(&format!("{verb} events"))
            .map_or(0.0, |(n, _)| *n)
    };
    t.row(vec![
        "Event writes meanwhile, create / patch (the API server's count)".into(),
        format!("{:.0} / {:.0}", event_writes("POST"), event_writes("PATCH")),
    ]);
    t.row(vec![
        format!(
            "reconcile passes / operator CPU seconds / {} CPU seconds",
            args.server.title()
        ),
        format!("{} / {:.1} / {server_cpu_mass:.1}", d_mass.passes, mass_cpu),
    ]);
    out.push_str(&t.render());
    out.push('\n');

    out.push_str(&api_work_table(&control_work, &mass_work));
    out.push('\n');
    out.push_str(&cpu_table(&control_cpu, &mass_cpu_deleting));
    out.push('\n');

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut t = Table::new(&["steady state", "value"]);
    t.row(vec![
        format!(
            "full pass over {total} instances, wall time (mean / max of {})",
            pass_walls.len()
        ),
        format!(
            "{} / {}",
            fmt_dur(Some(Duration::from_secs_f64(mean(
                &pass_walls
                    .iter()
                    .map(Duration::as_secs_f64)
                    .collect::<Vec<_>>()
            )))),
            fmt_dur(pass_walls.iter().max().copied())
        ),
    ]);
    t.row(vec![
        "Nacos requests per full pass (all / instance listings)".into(),
        format!(
            "{:.0} / {:.0} for {} services",
            mean(&pass_requests),
            mean(&pass_lists),
            args.services
        ),
    ]);
    t.row(vec![
        "operator CPU per full pass".into(),
        format!("{:.2} s", mean(&pass_cpu)),
    ]);
    t.row(vec![
        format!("{} CPU per full pass (answering it)", args.server.title()),
        format!("{:.2} s", mean(&pass_server_cpu)),
    ]);
    t.row(vec![
        "API server requests per full pass: the operator's (binding, status, Events, pod/node lists) / all, background included".into(),
        format!("{api_per_pass:.1} / {api_all_per_pass:.0}"),
    ]);
    t.row(vec![
        format!(
            "operator CPU while idle ({} s window, {idle_passes} passes in it)",
            args.idle.as_secs()
        ),
        format!("{idle_cpu_per_min:.3} CPU s/min"),
    ]);
    t.row(vec![
        format!("{} CPU in the same window", args.server.title()),
        format!("{server_idle_per_min:.3} CPU s/min"),
    ]);
    t.row(vec![
        "RSS once every instance was Live".into(),
        format!("{:.1} MiB", rss_synced as f64 / 1024.0),
    ]);
    t.row(vec![
        "peak RSS (VmHWM) over the whole run / RSS at the end".into(),
        format!(
            "{:.1} MiB / {:.1} MiB",
            hwm as f64 / 1024.0,
            rss_end as f64 / 1024.0
        ),
    ]);
    t.row(vec![
        "operator CPU over the whole run".into(),
        format!("{cpu_total:.1} s"),
    ]);
    t.row(vec![
        format!(
            "{} RSS once every instance was Live / at the end / peak (VmHWM)",
            args.server.title()
        ),
        format!(
            "{:.0} MiB / {:.0} MiB / {:.0} MiB",
            server_rss_synced as f64 / 1024.0,
            server_rss_end as f64 / 1024.0,
            server_hwm as f64 / 1024.0
        ),
    ]);
    out.push_str(&t.render());
    out.push('\n');

    let server_itself = format!("Nacos itself ({}), same run", args.server.title());
    let mut t = Table::new(&[
        server_itself.as_str(),
        "unusable after",
        "gone after",
        "operator p99 is faster by",
    ]);
    for b in &baselines {
        t.row(vec![
            b.name.into(),
            b.unusable.map_or(
                format!("> {} s (cut off)", args.baseline_bound.as_secs()),
                |d| fmt_dur(Some(d)),
            ),
            b.gone.map_or(
                format!("> {} s (cut off)", args.baseline_bound.as_secs()),
                |d| fmt_dur(Some(d)),
            ),
            fmt_ratio(op_p99, b.unusable, args.baseline_bound),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');

    let mut t = Table::new(&["target", "figure", "met"]);
    let yes = |ok: bool| if ok { "yes" } else { "**no**" }.to_string();
    let p99_ok =
        single_watch.missing == 0 && op_p99.is_some_and(|d| d <= Duration::from_millis(500));
    t.row(vec![
        "p99 removal latency ≤ 500 ms (grace 0)".into(),
        fmt_dur(op_p99),
        yes(p99_ok),
    ]);
    let node_ok =
        node_beyond.missing == 0 && node_beyond.max.is_some_and(|d| d <= Duration::from_secs(1));
    t.row(vec![
        "node loss ≤ 1 s after transition + nodeUnreachableSeconds (max)".into(),
        fmt_dur(node_beyond.max),
        yes(node_ok),
    ]);
    let mass_ok = mass_missing == 0 && mass_last.is_some_and(|d| d <= Duration::from_secs(10));
    t.row(vec![
        format!("{} simultaneous removals ≤ 10 s", mass.len()),
        fmt_dur(mass_last),
        yes(mass_ok),
    ]);
    let pass_ok = pass_walls
        .iter()
        .max()
        .is_some_and(|d| *d <= Duration::from_secs(5));
    t.row(vec![
        format!("full resync of {total} instances ≤ 5 s"),
        fmt_dur(pass_walls.iter().max().copied()),
        yes(pass_ok),
    ]);
    // Each pass also probes the server once (rnacos: one console listing of a probe service).
    let lists_ok = pass_lists.iter().all(|l| *l <= args.services as f64 + 1.0);
    t.row(vec![
        "≤ 1 listing request per service per pass".into(),
        format!(
            "{:.0} for {} services (one is the server probe's)",
            mean(&pass_lists),
            args.services
        ),
        yes(lists_ok),
    ]);
    t.row(vec![
        "peak RSS ≤ 64 MiB".into(),
        format!("{:.1} MiB", hwm as f64 / 1024.0),
        yes(hwm <= 64 * 1024),
    ]);
    t.row(vec![
        "idle CPU near zero".into(),
        format!("{idle_cpu_per_min:.3} CPU s/min"),
        yes(idle_cpu_per_min < 0.6),
    ]);
    let wrong = wrongful.len() + totals.enabled as usize;
    t.row(vec![
        "zero wrongful removals".into(),
        format!(
            "{} live instances offline, {} re-enabled, {} not confirmed",
            wrongful.len(),
            totals.enabled,
            totals.not_confirmed
        ),
        yes(wrong == 0),
    ]);
    out.push_str(&t.render());
    out.push('\n');
    if !wrongful.is_empty() {
        out.push_str(&format!(
            "Wrongfully offline (first 20): {:?}\n\n",
            wrongful.iter().take(20).collect::<Vec<_>>()
        ));
    }
    if leftovers > 0 {
        out.push_str(&format!(
            "{leftovers} instances of deleted pods were still listed at the end.\n\n"
        ));
    }
    if let Some(path) = &args.cost {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let cost = serde_json::json!({
            "pods": args.pods,
            "instances": total,
            "services": args.services,
            "server": args.server.id(),
            "run": started_at.format("%Y-%m-%d %H:%M").to_string(),
            "load_passes": load_idle,
            "pass_ms_mean": mean(&pass_walls.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>()),
            "pass_ms_max": ms(pass_walls.iter().max().copied()),
            "listings_per_pass": mean(&pass_lists),
            "nacos_requests_per_pass": mean(&pass_requests),
            "operator_cpu_per_pass": mean(&pass_cpu),
            "server_cpu_per_pass": mean(&pass_server_cpu),
            "api_per_pass": api_per_pass,
            "api_all_per_pass": api_all_per_pass,
            "rss_synced_mib": rss_synced as f64 / 1024.0,
            "rss_peak_mib": hwm as f64 / 1024.0,
            "idle_cpu_per_min": idle_cpu_per_min,
            "server_idle_cpu_per_min": server_idle_per_min,
            "server_rss_synced_mib": server_rss_synced as f64 / 1024.0,
            "server_peak_mib": server_hwm as f64 / 1024.0,
            "single_p99_ms": ms(op_p99),
            "single_missing": single_watch.missing,
            "node_missing": node_beyond.missing,
            "mass_missing": mass_missing,
            "single_requests_per_deletion": d_singles.requests / singles.len().max(1) as f64,
            "single_by_operation": ops_singles,
            "mass": mass.len(),
            "mass_last_ms": ms(mass_last),
            "mass_by_operation": ops_mass,
            "wrongful": wrong,
        });
        std::fs::write(path, format!("{cost}\n"))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(out)
}

/// The PID of the testbed's `server` (bench/run.sh stops the servers a run does not measure).
fn server_pid(server: nacos::Server) -> Result<u32> {
    let state = std::env::var("TESTBED_STATE").context("TESTBED_STATE is not set (testbed env)")?;
    let f = PathBuf::from(state).join("pids").join(server.component());
    let pid = std::fs::read_to_string(&f).with_context(|| format!("read {}", f.display()))?;
    pid.trim()
        .parse()
        .with_context(|| format!("{}: {pid:?}", f.display()))
}

/// The operator's Nacos requests by operation (`nacos_request_duration_seconds_count`).
fn requests_by_operation(text: &str) -> BTreeMap<String, f64> {
    let mut by = BTreeMap::new();
    let name = "nacos_reconciler_nacos_request_duration_seconds_count{";
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(op) = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix("operation=\""))
            .map(|v| v.trim_end_matches('"').to_string())
        else {
            continue;
        };
        *by.entry(op).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    by
}

/// `after - before` per operation, divided by `per`, as `op 1.23, …` (operations that did not
/// happen left out).
fn fmt_by_operation(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    per: f64,
) -> String {
    let parts: Vec<String> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .map(|(k, d)| format!("{k} {:.2}", d / per.max(1.0)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Live pods whose instance consumers no longer get (wrongful), and instances still listed whose pod
/// is gone (leftovers).
async fn check_registry(
    nacos: &Nacos,
    pods: &[BenchPod],
    watch: &std::sync::Arc<std::sync::Mutex<cluster::PodWatch>>,
    services: usize,
) -> Result<(Vec<String>, usize)> {
    let running: HashMap<String, String> = watch.lock().expect("lock").running.clone();
    let mut expected: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut known: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for p in pods {
        let addr = format!("{}:{PORT}", p.ip);
        known
            .entry(p.service.clone())
            .or_default()
            .insert(addr.clone());
        if running.get(&p.name) == Some(&p.ip) {
            expected.entry(p.service.clone()).or_default().insert(addr);
        }
    }
    let listed: Vec<(String, Result<Vec<nacos::Listed>>)> =
        futures::stream::iter((0..services).map(service_name))
            .map(|svc| async move {
                let r = nacos.list(&svc).await;
                (svc, r)
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let mut wrongful = Vec::new();
    let mut leftovers = 0;
    for (svc, r) in listed {
        let usable: HashSet<String> = r?
            .into_iter()
            .filter(|l| l.enabled)
            .map(|l| l.addr)
            .collect();
        for addr in expected.get(&svc).into_iter().flatten() {
            if !usable.contains(addr) {
                wrongful.push(format!("{svc} {addr}"));
            }
        }
        let exp = expected.get(&svc);
        leftovers += usable
            .iter()
            .filter(|a| {
                known.get(&svc).is_some_and(|k| k.contains(*a))
                    && !exp.is_some_and(|e| e.contains(*a))
            })
            .count();
    }
    Ok((wrongful, leftovers))
}

async fn create_namespace(client: &kube::Client) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let ns: Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )?;
    Api::<Namespace>::all(client.clone())
        .create(&Default::default(), &ns)
        .await
        .context("create namespace bench (is this a fresh testbed? bench/run.sh makes one)")?;
    // Pods need the namespace's default ServiceAccount, which the controller-manager creates.
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), NS);
    for _ in 0..120 {
        if sa.get_opt("default").await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("no default ServiceAccount in namespace {NS} after 30 s")
}

async fn install_crd(client: &kube::Client) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&nacos_reconciler::crd::crd_yaml())?;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.metadata.name.clone().context("CRD name")?;
    api.patch(
        &name,
        &PatchParams::apply("bench").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    for _ in 0..120 {
        let c = api.get(&name).await?;
        if c.status.and_then(|s| s.conditions).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        }) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("CRD not established")
}

async fn create_binding(client: &kube::Client, nacos: &Nacos, args: &Args) -> Result<()> {
    let mut spec_nacos = serde_json::json!({"serverAddr": [nacos.base]});
    // With auth, the credentials go in a Secret the binding names, as users set it up.
    if let Some((user, pass)) = nacos.credentials() {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "nacos-auth", "namespace": NS},
                "stringData": {"username": user, "password": pass}
            }))?;
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS)
            .create(&Default::default(), &secret)
            .await
            .context("create the credentials Secret")?;
        spec_nacos["credentialsSecretRef"] = serde_json::json!({"name": "nacos-auth"});
    }
    let b: NacosBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
        "metadata": {"name": BINDING, "namespace": NS},
        "spec": {
            "nacos": spec_nacos,
            "services": [{"namePattern": "bench-s*"}],
            "pods": {"selector": {"matchLabels": {"app": "bench"}}},
            "policy": {
                "gracePeriodSeconds": 0,
                "maxRemovals": "100%",
                "onNodeUnreachable": "Disable",
                "nodeUnreachableSeconds": args.node_unreachable_seconds,
            },
            "resyncSeconds": 60
        }
    }))?;
    Api::<NacosBinding>::namespaced(client.clone(), NS)
        .create(&Default::default(), &b)
        .await
        .context("create the NacosBinding")?;
    Ok(())
}

async fn wait_binding_live(
    client: &kube::Client,
    total: usize,
    timeout: Duration,
    op: &mut OperatorProc,
) -> Result<()> {
    let api: Api<NacosBinding> = Api::namespaced(client.clone(), NS);
    let t = Instant::now();
    let mut last_say = Instant::now();
    loop {
        if !op.alive() {
            bail!("the operator exited; read {}", op.log.display());
        }
        if let Some(s) = api.get(BINDING).await?.status {
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready && s.instances.live as usize == total {
                return Ok(());
            }
            if last_say.elapsed() > Duration::from_secs(10) {
                say(format!(
                    "binding: ready={ready} live={} of {total}",
                    s.instances.live
                ));
                last_say = Instant::now();
            }
        }
        if t.elapsed() > timeout {
            bail!(
                "the binding did not show {total} live instances within {timeout:?}; read {}",
                op.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long the API server took over a batch of deletions.
struct DeleteCost {
    /// The first delete call.
    started: Instant,
    /// Until every delete call was answered.
    answered: Duration,
    /// Until the last DELETED event reached the harness's watch.
    last_event: Duration,
}

/// Deletes the pods at once (64 calls in flight, grace 0) and waits for their DELETED events.
async fn delete_at_once(
    client: &kube::Client,
    pod_watch: &std::sync::Arc<std::sync::Mutex<cluster::PodWatch>>,
    names: &[String],
) -> Result<DeleteCost> {
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(names.iter())
        .map(|n| cluster::delete_pod(client, n))
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let answered = t.elapsed();
    loop {
        let last = {
            let w = pod_watch.lock().expect("lock");
            names
                .iter()
                .map(|n| w.deleted.get(n).map(|d| d.0))
                .collect::<Option<Vec<Instant>>>()
                .map(|v| v.into_iter().max().unwrap_or(t))
        };
        if let Some(last) = last {
            return Ok(DeleteCost {
                started: t,
                answered,
                last_event: last.saturating_duration_since(t),
            });
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!(
                "DELETED events missing 300 s after deleting {} pods",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API server's requests during the control deletion and during the mass deletion, side by
/// side: what the operator adds to its load. Rows with under 1 % of the mass deletion's seconds are
/// summed into one.
fn api_work_table(control: &cluster::ApiWork, mass: &cluster::ApiWork) -> String {
    let total = |w: &cluster::ApiWork| w.values().fold((0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1));
    let (_, mass_secs) = total(mass);
    type Cell = (f64, f64);
    let mut rows: Vec<(&String, Cell, Cell)> = mass
        .iter()
        .map(|(k, m)| (k, control.get(k).copied().unwrap_or_default(), *m))
        .chain(
            control
                .iter()
                .filter(|(k, _)| !mass.contains_key(*k))
                .map(|(k, c)| (k, *c, (0.0, 0.0))),
        )
        .collect();
    rows.sort_by(|a, b| b.2 .1.total_cmp(&a.2 .1).then(b.1 .1.total_cmp(&a.1 .1)));
    let mut t = Table::new(&[
        "API server requests (its own metrics; no watches)",
        "control deletion: requests / seconds serving",
        "mass deletion with the operator: requests / seconds serving",
    ]);
    let cell = |(n, s): (f64, f64)| format!("{n:.0} / {s:.2}");
    let mut rest = ((0.0, 0.0), (0.0, 0.0));
    for (k, c, m) in rows {
        if m.1 >= mass_secs * 0.01 || c.1 >= mass_secs * 0.01 {
            t.row(vec![format!("`{k}`"), cell(c), cell(m)]);
        } else {
            rest = (
                (rest.0 .0 + c.0, rest.0 .1 + c.1),
                (rest.1 .0 + m.0, rest.1 .1 + m.1),
            );
        }
    }
    t.row(vec!["everything else".into(), cell(rest.0), cell(rest.1)]);
    t.row(vec!["all".into(), cell(total(control)), cell(total(mass))]);
    t.render()
}

/// CPU seconds by process while the control pods were deleted and while the mass deletion's pods
/// were (until the last DELETED event): what competes with the API server on this machine.
fn cpu_table(control: &[(String, f64)], mass: &[(String, f64)]) -> String {
    let get =
        |v: &[(String, f64)], k: &str| v.iter().find(|(n, _)| n == k).map_or(0.0, |(_, s)| *s);
    let mut names: Vec<&String> = mass.iter().map(|(n, _)| n).collect();
    names.extend(
        control
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !mass.iter().any(|(m, _)| m == *n)),
    );
    let mut t = Table::new(&[
        "CPU seconds by process, until the last DELETED event",
        "control deletion",
        "mass deletion with the operator",
    ]);
    let (mut rest_c, mut rest_m) = (0.0, 0.0);
    for n in names {
        let (c, m) = (get(control, n), get(mass, n));
        if c >= 0.1 || m >= 0.1 {
            t.row(vec![format!("`{n}`"), format!("{c:.1}"), format!("{m:.1}")]);
        } else {
            rest_c += c;
            rest_m += m;
        }
    }
    t.row(vec![
        "everything else".into(),
        format!("{rest_c:.1}"),
        format!("{rest_m:.1}"),
    ]);
    let sum = |v: &[(String, f64)]| v.iter().map(|(_, s)| s).sum::<f64>();
    t.row(vec![
        "all".into(),
        format!("{:.1}", sum(control)),
        format!("{:.1}", sum(mass)),
    ]);
    t.render()
}
