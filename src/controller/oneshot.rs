//! `nacos-reconciler plan`: one evaluation of a binding, printed as a table. Writes nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use kube::{Api, Client, ResourceExt};

use super::context::{BindingState, Context};
use super::outcome::key;
use super::problem::Problem;
use super::reconcile::{evaluate, Evaluation};
use super::stop::Stop;
use crate::cluster::{ClusterView, ClusterViewConfig};
use crate::crd::NacosBinding;
use crate::leader::ActingGate;
use crate::metrics::Metrics;
use crate::model::{InstanceKey, MarkerOwner};
use crate::nacos::Publisher;
use crate::plan::{emptied_message, Action, Plan, EPHEMERAL_CAUSE};

/// Why `plan` could not show a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("reading NacosBinding {binding}: {source}")]
    ReadBinding {
        binding: String,
        source: kube::Error,
    },
    #[error("the cluster caches did not sync within 60s")]
    SyncTimeout,
    #[error(transparent)]
    Sync(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    Api(#[from] super::stop::ReconcileError),
    #[error("{}", describe(.0))]
    Stopped(Problem),
}

/// Evaluates `namespace/name` once against the cluster and Nacos and renders the table.
pub async fn plan_once(
    client: Client,
    watches: Client,
    namespace: &str,
    name: &str,
) -> Result<String, PlanError> {
    let binding = Api::<NacosBinding>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|source| PlanError::ReadBinding {
            binding: format!("{namespace}/{name}"),
            source,
        })?;
    let (view, _changes) = ClusterView::start(watches, &ClusterViewConfig::default());
    tokio::time::timeout(Duration::from_secs(60), view.wait_until_synced())
        .await
        .map_err(|_| PlanError::SyncTimeout)??;
    let ctx = Context::new(
        client,
        view,
        Arc::new(Metrics::new()),
        Arc::new(ActingGate::always()),
        "nacos-reconciler-plan",
        None,
    );
    let mut state = BindingState::default();
    let (uid, key) = (binding.uid().unwrap_or_default(), key(&binding));
    let owner = MarkerOwner {
        uid: &uid,
        binding: &key,
    };
    match evaluate(&ctx, &binding, owner, &mut state, &Default::default()).await {
        Err(Stop::Api(e)) => Err(e.into()),
        Err(Stop::Reported { problem, .. }) => Err(PlanError::Stopped(problem)),
        Ok(eval) => {
            let owners = owners(&eval).await;
            Ok(render(&eval, &owners, binding.spec.default_scope()))
        }
    }
}

/// Stale instances asked about, at most: each is one request.
const OWNERS_ASKED: usize = 50;

/// What keeps stale instances registered, where the server names their publisher (Nacos 2.x/3.x,
/// for a user allowed the publisher list): a gRPC connection, with what its client reports of
/// itself, or an HTTP registration and its beats.
async fn owners(eval: &Evaluation) -> BTreeMap<InstanceKey, String> {
    let stale = eval
        .plan
        .services
        .iter()
        .flat_map(|sp| &sp.instances)
        .filter(|v| v.verdict.is_stale())
        .filter_map(|v| {
            eval.listings
                .iter()
                .filter(|l| l.service == v.instance.service)
                .filter_map(|l| l.listing.as_ref().ok())
                .flat_map(|s| &s.instances)
                .find(|i| i.key == v.instance)
        })
        // Only an ephemeral instance has a publisher to name.
        .filter(|i| i.ephemeral)
        .take(OWNERS_ASKED);
    let mut out = BTreeMap::new();
    for instance in stale {
        let Ok(mut publishers) = eval.nacos.publishers(instance).await else {
            continue;
        };
        if let [one] = publishers.as_mut_slice() {
            if let Publisher::Connection(c) = one {
                c.detail = eval.nacos.client_detail(c).await.ok();
            }
            out.insert(instance.key.clone(), one.keeps_it());
        }
    }
    out
}

fn describe(p: &Problem) -> String {
    match p {
        Problem::InvalidSpec(m) => format!("invalid spec: {m}"),
        Problem::NacosUnavailable(m) => format!("Nacos unavailable: {m}"),
        Problem::SecretNotFound(m) => format!("missing Secret: {m}"),
        Problem::AuthFailed(m) => format!("Nacos authentication failed: {m}"),
        Problem::NamespaceNotFound(m) => format!("unknown Nacos namespace: {m}"),
        Problem::CacheNotSynced(m) => format!("cluster caches not synced: {m}"),
    }
}

/// What the plan would do with each instance, in words.
fn actions_by_instance(
    plan: &Plan,
    now: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<InstanceKey, String> {
    let mut out = BTreeMap::new();
    let mut put = |a: &Action, text: String| {
        out.insert(a.instance.clone(), text);
    };
    for sp in &plan.services {
        for a in &sp.actions {
            put(a, format!("{} now", a.kind.verb()));
        }
        for a in &sp.would_act {
            put(a, format!("{} (dry run)", a.kind.verb()));
        }
        for (a, budget) in sp.held_with_budget() {
            let why = budget.map_or_else(
                || "held: the service looks shared with another cluster".into(),
                |b| b.to_string(),
            );
            put(a, format!("{} {why}", a.kind.verb()));
        }
        // `plan` starts the grace clocks afresh (it has not seen the pods go): it says which of
        // them the budget will hold once they run out.
        let held_when_due: Vec<&InstanceKey> =
            sp.held_when_due().map(|w| &w.action.instance).collect();
        for w in &sp.waiting {
            let secs = (w.due_at - now).num_seconds().max(0);
            let mut text = format!("{} in {secs}s", w.action.kind.verb());
            if held_when_due.contains(&&w.action.instance) {
                text.push_str(&format!(", then {}", sp.budget));
            }
            put(&w.action, text);
        }
    }
    out
}

/// The table `nacos-reconciler plan` prints.
pub fn render(
    eval: &Evaluation,
    owners: &BTreeMap<InstanceKey, String>,
    default_scope: bool,
) -> String {
    let actions = actions_by_instance(&eval.plan, eval.now);
    let mut rows = vec![[
        "SERVICE".to_string(),
        "INSTANCE".into(),
        "ENABLED".into(),
        "VERDICT".into(),
        "ACTION".into(),
        "REASON".into(),
    ]];
    for sp in &eval.plan.services {
        for v in &sp.instances {
            rows.push([
                sp.service.to_string(),
                format!("{}:{}", v.instance.ip, v.instance.port),
                v.enabled.to_string(),
                v.verdict.to_string(),
                actions
                    .get(&v.instance)
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                match owners.get(&v.instance) {
                    // What the server names replaces the cause told from the listing alone.
                    Some(why) => match v.reason.strip_suffix(EPHEMERAL_CAUSE) {
                        Some(evidence) => format!("{evidence}{why}"),
                        None => format!("{}; {why}", v.reason),
                    },
                    None => v.reason.clone(),
                },
            ]);
        }
        for u in &sp.unaddressable {
            rows.push([
                sp.service.to_string(),
                u.address.clone(),
                "?".into(),
                "Foreign".into(),
                "-".into(),
                format!("the address {}", u.why),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!("{}\n", eval.server.describe());
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for sp in &eval.plan.services {
        if let Some(why) = &sp.blocked {
            let _ = writeln!(out, "{}: no action: {why}", sp.service);
        }
        if sp.empties {
            let _ = writeln!(out, "warning: {}", emptied_message(&sp.service, false));
        }
    }
    for p in &eval.problems {
        let _ = writeln!(out, "warning: {}", describe(p));
    }
    if let Some(gap) = eval.plan.scope_gap(default_scope) {
        let _ = writeln!(out, "warning: {gap}");
    }
    if eval.plan.frozen {
        let _ = writeln!(
            out,
            "node-based actions are frozen: more than half of the nodes are not Ready"
        );
    }
    let _ = writeln!(out, "nothing was changed (plan only)");
    out
}
