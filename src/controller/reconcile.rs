//! One reconcile pass of a NacosBinding, as the stages it has, in the order data flows:
//! read the inputs ([`dereference`]) → choose what to list and list it ([`listing`]) → judge
//! ([`judge`], the pure planner) → confirm, write and verify ([`execute`]) → report ([`report`],
//! the status lane and Events).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::runtime::controller::Action as Requeue;
use kube::ResourceExt;
use tracing::{debug, info, instrument, warn};

use super::context::{BindingState, Context};
use super::dereference::{dereference, resync_period};
use super::events::offline_note;
use super::execute::execute;
use super::judge::{judge, Judged};
use super::listing;
use super::outcome::{key, Outcome, Written};
use super::problem::Problem;
use super::report::Report;
use super::stop::{retry_after, ReconcileError, Stop};
use crate::cluster::PodScope;
use crate::crd::NacosBinding;
use crate::model::{InstanceKey, MarkerOwner, ServiceKey, ServiceSnapshot};
use crate::nacos::{NacosClient, ServerInfo};
use crate::plan::{ActionKind, Memory, Plan, Policy, ServiceListing};

/// What a pass found and decided, before anything is written.
pub struct Evaluation {
    pub server: ServerInfo,
    pub nacos: Arc<NacosClient>,
    pub listings: Vec<ServiceListing>,
    pub plan: Plan,
    pub policy: Policy,
    /// Problems that blocked some services but not the whole pass (a failed listing, unsynced caches).
    pub problems: Vec<Problem>,
    pub now: DateTime<Utc>,
    /// When a NotReady node next crosses `nodeUnreachableSeconds`: no event marks that moment.
    pub node_deadline: Option<DateTime<Utc>>,
}

/// The stages up to the plan. Writes nothing to Nacos.
pub async fn evaluate(
    ctx: &Context,
    b: &NacosBinding,
    owner: MarkerOwner<'_>,
    state: &mut BindingState,
) -> Result<Evaluation, Stop> {
    let inputs = dereference(ctx, b, state).await?;
    let to_list = listing::choose(ctx, b, owner, &inputs, state)?;
    let mut problems = Vec::new();
    let (server, listings) = listing::list(ctx, b, &inputs, state, to_list, &mut problems).await?;
    // Read before the facts: a change after this point is judged again by the next pass.
    let seq = ctx.view.change_seq();
    let Judged {
        plan,
        policy,
        node_deadline,
        now,
        synced,
    } = judge(ctx, b, owner, &inputs.pod_scope, &listings, &inputs.memory)?;
    if let Some(kept) = &mut state.kept {
        kept.judged(seq, &plan);
    }
    if !synced {
        problems.push(Problem::CacheNotSynced(
            ctx.view.unsynced_reasons().join("; "),
        ));
    }
    Ok(Evaluation {
        server,
        nacos: inputs.nacos,
        listings,
        plan,
        policy,
        problems,
        now,
        node_deadline,
    })
}

#[instrument(skip_all, fields(binding = %key(&b)))]
pub async fn reconcile(b: Arc<NacosBinding>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let started = Instant::now();
    let uid = b.uid().unwrap_or_default();
    let resync = resync_period(&b);
    let binding = key(&b);
    let owner = MarkerOwner {
        uid: &uid,
        binding: &binding,
    };
    let state = ctx.binding_state(&uid).await;
    let mut state = state.lock().await;
    if !ctx.acting_allowed() {
        // A standby (or a leader still settling) writes nothing: not to Nacos, and not status or
        // Events, which the leader owns. Nor does it list Nacos. It forgets what it remembered, so
        // when it leads it starts from the budget and approvals the leader recorded in status, and
        // from a full listing.
        state.memory = None;
        state.kept = None;
        state.status.forget();
        return Ok(Requeue::requeue(resync.min(Duration::from_secs(5))));
    }
    let lane = state.status.clone();
    let mut rep = Report::new(&b, &ctx, lane.last());

    let eval = match evaluate(&ctx, &b, owner, &mut state).await {
        Ok(eval) => eval,
        Err(Stop::Reported { problem, soon }) => {
            rep.problem(problem).await;
            lane.submit(ctx.status_writer(), &b, rep.finish(started));
            let retry = if soon { retry_after(resync) } else { resync };
            return Ok(Requeue::requeue(retry));
        }
        Err(Stop::Api(e)) => return Err(e),
    };
    let evaluated = started.elapsed();
    rep.server(&eval.server);
    rep.overlap(ctx.claims.overlap(&uid)).await;
    for p in eval.problems.iter().cloned() {
        rep.problem(p).await;
    }

    // Act, verify, and remember what the registry showed.
    let mut memory: Memory = eval.plan.memory.clone();
    let snapshots: BTreeMap<ServiceKey, &ServiceSnapshot> = eval
        .listings
        .iter()
        .filter_map(|l| l.listing.as_ref().ok().map(|s| (l.service.clone(), &**s)))
        .collect();
    if eval.policy.max_removals.can_hold() && eval.plan.actions().any(|a| a.kind.is_removal()) {
        // Write the budget this pass is about to spend before spending it: a replica killed (or
        // replaced as leader) mid-pass leaves it in status, so its successor does not spend the
        // window's budget a second time. Without that record, act on nothing.
        if let Err(e) = lane.record_budget(&ctx.client, &b, &eval.plan.memory).await {
            warn!(error = %e, "could not record the removal budget; no action in this pass");
            lane.submit(ctx.status_writer(), &b, rep.finish(started));
            return Ok(Requeue::requeue(retry_after(resync)));
        }
    }
    let budgeted = started.elapsed();
    let marker = owner.marker();
    let outcomes: Vec<Outcome> = execute(
        &ctx,
        &b,
        &marker,
        &eval.nacos,
        &eval.plan,
        &snapshots,
        &mut memory,
    )
    .await;
    let executed = started.elapsed();
    for o in &outcomes {
        if let Some(why) = offline_note(o) {
            memory.note_offline(&o.action.instance, Utc::now(), why);
        }
    }
    follow_up(&ctx, &b, &mut state, &eval, &snapshots, &outcomes);
    state.memory = Some(memory.clone());
    if let Some(kept) = &mut state.kept {
        kept.record_writes(&outcomes, &marker);
    }
    rep.outcomes(&outcomes);
    rep.plan(&eval.plan, &memory, eval.policy.removal_window)
        .await;
    if eval.plan.approval_consumed {
        info!("approval annotation consumed");
    }
    // Come back when the next grace period ends, a node turns unreachable or a follow-up listing
    // is due, or at the resync.
    let next = eval
        .plan
        .services
        .iter()
        .flat_map(|s| s.waiting.iter().map(|w| w.due_at))
        .chain(eval.node_deadline)
        .chain(state.rechecks.next())
        .min()
        // Something already due (a check not made yet) comes back at once.
        .map(|due| (due - eval.now).to_std().unwrap_or_default() + Duration::from_millis(200))
        .unwrap_or(resync)
        .min(resync);
    lane.submit(ctx.status_writer(), &b, rep.finish(started));
    // Where a pass spends its time (cumulative from its start).
    debug!(
        ?evaluated,
        ?budgeted,
        ?executed,
        total = ?started.elapsed(),
        actions = outcomes.len(),
        "pass done"
    );
    Ok(Requeue::requeue(next.max(Duration::from_millis(500))))
}

/// Notes what may change again in the registry because of this pass (see [`super::recheck`]):
/// the deregistrations that took, and the instances we disabled that left their listing while a
/// Ready pod of the binding holds their address (where the server keeps their `enabled=false`).
fn follow_up(
    ctx: &Context,
    b: &NacosBinding,
    state: &mut BindingState,
    eval: &Evaluation,
    snapshots: &BTreeMap<ServiceKey, &ServiceSnapshot>,
    outcomes: &[Outcome],
) {
    let now = Utc::now();
    for o in outcomes {
        if o.action.kind != ActionKind::Deregister || !matches!(o.result, Written::Done) {
            continue;
        }
        let instance = snapshots
            .get(&o.action.instance.service)
            .and_then(|s| s.instances.iter().find(|i| i.key == o.action.instance));
        if let Some(instance) = instance {
            state.rechecks.after_deregistration(instance, now);
        }
    }
    let governed: BTreeSet<&ServiceKey> = eval.listings.iter().map(|l| &l.service).collect();
    state.rechecks.retain_services(&governed);
    if !eval.server.metadata_overlay {
        return;
    }
    let fresh: BTreeMap<&ServiceKey, BTreeSet<&InstanceKey>> = eval
        .listings
        .iter()
        .filter(|l| l.fresh)
        .filter_map(|l| {
            let snap = l.listing.as_ref().ok()?;
            Some((&l.service, snap.instances.iter().map(|i| &i.key).collect()))
        })
        .collect();
    let disabled_before = state
        .memory
        .as_ref()
        .map(|m| m.disabled.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    state.rechecks.note_vanished(&disabled_before, &fresh, now);
    let ips = state.rechecks.vanished_ips();
    if ips.is_empty() {
        return;
    }
    let Some(ns) = b.namespace() else { return };
    let Ok(scope) = PodScope::new(&ns, &b.spec.pods.selector, &b.spec.pods.namespaces) else {
        return;
    };
    let facts = ctx.view.facts_for_ips(&scope, ips.iter());
    let live: BTreeSet<IpAddr> = facts
        .pods
        .iter()
        .filter(|p| p.matches && p.ready && p.deletion_timestamp.is_none())
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    state.rechecks.watch_reused(|ip| live.contains(&ip), now);
}
