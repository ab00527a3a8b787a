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
use crate::nacos::{sole_connection, Connection};
use crate::plan::{Action, Plan};

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
    match evaluate(&ctx, &binding, owner, &mut state).await {
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

/// The gRPC connections that keep stale instances registered, where the server names them (Nacos
/// 2.x/3.x, for a user allowed the publisher list).
async fn owners(eval: &Evaluation) -> BTreeMap<InstanceKey, Connection> {
    let stale = eval
        .plan
        .services
        .iter()
        .flat_map(|sp| &sp.instances)
        .filter(|v| v.verdict.is_stale() && v.enabled)
        .filter_map(|v| {
            eval.listings
                .iter()
                .filter_map(|l| l.listing.as_ref().ok())
                .flat_map(|s| &s.instances)
                .find(|i| i.key == v.instance)
        })
        // Only an ephemeral instance has a connection to name.
        .filter(|i| i.ephemeral)
        .take(OWNERS_ASKED);
    let mut out = BTreeMap::new();
    for instance in stale {
        if let Ok(publishers) = eval.nacos.publishers(instance).await {
            if let Some(c) = sole_connection(&publishers) {
                let mut c = c.clone();
                c.detail = eval.nacos.client_detail(&c).await.ok();
                out.insert(instance.key.clone(), c);
            }
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
        for w in &sp.waiting {
            let secs = (w.due_at - now).num_seconds().max(0);
            put(&w.action, format!("{} in {secs}s", w.action.kind.verb()));
        }
    }
    out
}

/// The table `nacos-reconciler plan` prints.
pub fn render(
    eval: &Evaluation,
    owners: &BTreeMap<InstanceKey, Connection>,
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
                    Some(c) => format!("{}; {}", v.reason, c.keeps_it()),
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
            let _ = writeln!(out, "warning: {}", sp.emptied_message(false));
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
