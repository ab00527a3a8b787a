//! One reconcile pass of a NacosBinding, as the stages it has, in the order data flows:
//! take in what earlier executions ended ([`super::in_flight`]) → read the inputs
//! ([`dereference`]) → choose what to list and list it ([`listing`]) → judge ([`judge`], the pure
//! planner) → launch the execution that confirms, writes and verifies ([`launch`]) → report
//! ([`report`], the status lane and Events).

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
use super::execute::launch;
use super::focus;
use super::in_flight::Finished;
use super::judge::{judge, Judged};
use super::listing;
use super::outcome::{key, Written};
use super::problem::Problem;
use super::report::Report;
use super::status::memory_from_status;
use super::stop::{retry_after, ReconcileError, Stop};
use crate::cluster::PodScope;
use crate::crd::NacosBinding;
use crate::model::{InstanceKey, MarkerOwner, ServiceKey, ServiceSnapshot};
use crate::nacos::{NacosClient, ServerInfo};
use crate::plan::{ActionKind, Plan, Policy, ServiceListing};

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
    in_flight: &BTreeSet<InstanceKey>,
) -> Result<Evaluation, Stop> {
    let inputs = dereference(ctx, b, state).await?;
    let to_list = listing::choose(ctx, b, owner, &inputs, state, in_flight)?;
    let mut problems = Vec::new();
    let (server, listings) = listing::list(ctx, b, &inputs, state, to_list, &mut problems).await?;
    // Read before the facts: a change after this point is judged again by the next pass.
    let seq = ctx.view.change_seq();
    // A focused pass judges the listings that may judge differently since the last judgement and
    // carries that judgement for the others.
    let carried = state.kept.as_mut().and_then(|k| k.take_plans());
    let partial = match (&state.kept, carried) {
        (Some(kept), Some(carried)) => {
            let changed = listing::changed_since(ctx, kept.judged_at());
            kept.to_judge(&listings, &carried, &changed, &inputs.memory)
                .map(|some| (some, carried))
        }
        _ => None,
    };
    let governed: Option<BTreeSet<ServiceKey>> = partial
        .as_ref()
        .map(|_| listings.iter().map(|l| l.service.clone()).collect());
    let judged = partial.as_ref().map_or(&listings[..], |(some, _)| some);
    if partial.is_some() {
        debug!(
            judged = judged.len(),
            of = listings.len(),
            "judging what may have changed"
        );
    }
    let Judged {
        mut plan,
        policy,
        node_deadline,
        now,
        synced,
    } = judge(ctx, b, owner, &inputs, judged, governed.as_ref(), in_flight)?;
    if let Some((_, carried)) = partial {
        focus::carry(&mut plan, carried, &listings);
    }
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
        // What executions of its leading days did is in the status the leader wrote (a write
        // cut short by the lost leadership is checked by the next leader's listings).
        let _ = state.in_flight.collect();
        return Ok(Requeue::requeue(resync.min(Duration::from_secs(5))));
    }
    let lane = state.status.clone();
    let mut rep = Report::new(&b, &ctx, lane.last());
    let marker = owner.marker();
    // What earlier passes' executions did since, taken in before judging anew; the instances still
    // in flight are judged but not acted on.
    let (finished, in_flight) = state.in_flight.collect();
    take_in(&b, &mut state, &finished, &marker);
    rep.ended(&finished, false).await;

    let eval = match evaluate(&ctx, &b, owner, &mut state, &in_flight).await {
        Ok(eval) => eval,
        Err(Stop::Reported { problem, soon }) => {
            rep.problem(problem).await;
            lane.submit(ctx.status_writer(), &b, rep.finish(started));
            let retry = if soon { retry_after(resync) } else { resync };
            return Ok(Requeue::requeue(retry));
        }
        Err(Stop::Api(e)) => {
            if !finished.is_empty() {
                lane.submit(ctx.status_writer(), &b, rep.finish(started));
            }
            return Err(e);
        }
    };
    let evaluated = started.elapsed();
    rep.server(&eval.server);
    rep.overlap(ctx.claims.overlap(&uid)).await;
    for p in eval.problems.iter().cloned() {
        rep.problem(p).await;
    }

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
    let snapshots: BTreeMap<ServiceKey, &ServiceSnapshot> = eval
        .listings
        .iter()
        .filter_map(|l| l.listing.as_ref().ok().map(|s| (l.service.clone(), &**s)))
        .collect();
    // Carried out beside the passes that follow; this pass waits for the writes' answers only.
    let mut pending = launch(
        &ctx,
        &b,
        eval.nacos.clone(),
        !eval.server.settle.is_zero(),
        &eval.plan,
        &snapshots,
        &state.in_flight,
    );
    let launched = eval.plan.actions().count();
    follow_up(&ctx, &b, &mut state, &eval);
    state.memory = Some(eval.plan.memory.clone());
    if let Some(pending) = &mut pending {
        pending.writes_answered().await;
    }
    let executed = started.elapsed();
    // What ended meanwhile, this pass's actions above all (on a server that shows a write at once,
    // all of them): reported now, the rest by a later pass.
    let (ended, _) = state.in_flight.collect();
    take_in(&b, &mut state, &ended, &marker);
    rep.ended(&ended, true).await;
    let memory = state.memory.get_or_insert_with(Default::default);
    rep.plan(&eval.plan, memory, eval.policy.removal_window)
        .await;
    if eval.plan.approval_consumed {
        info!("approval annotation consumed");
    }
    // Come back when the next grace period ends, a node turns unreachable or a follow-up listing
    // is due, or at the resync.
    let due = eval
        .plan
        .services
        .iter()
        .flat_map(|s| s.waiting.iter().map(|w| w.due_at))
        .chain(eval.node_deadline)
        .chain(state.rechecks.next());
    let next = next_pass(due, eval.now, resync);
    lane.submit(ctx.status_writer(), &b, rep.finish(started));
    if let Some(kept) = &mut state.kept {
        kept.keep_plans(eval.plan.services);
    }
    // Where a pass spends its time (cumulative from its start).
    debug!(
        ?evaluated,
        ?budgeted,
        ?executed,
        total = ?started.elapsed(),
        launched,
        ended = finished.len() + ended.len(),
        "pass done"
    );
    Ok(Requeue::requeue(next))
}

/// How late a pass comes after the moment it waits for: that moment is on the wall clock, the
/// timer on another, and the two may drift apart a little over a long wait.
const AFTER_DUE: Duration = Duration::from_millis(50);
/// How soon a pass comes back when something was due already (a check it could not make): no
/// sooner, or it would loop.
const DUE_AGAIN: Duration = Duration::from_millis(500);

/// When the next pass comes: just after the earliest of `due`, or at the resync.
fn next_pass(
    due: impl Iterator<Item = DateTime<Utc>>,
    now: DateTime<Utc>,
    resync: Duration,
) -> Duration {
    let next = match due.min().map(|due| (due - now).to_std()) {
        None => resync,
        Some(Ok(wait)) if !wait.is_zero() => wait + AFTER_DUE,
        Some(_) => DUE_AGAIN,
    };
    next.min(resync)
}

/// Takes in what the actions that ended since the last pass did: what the memory must keep of
/// them, the kept listings brought up to their writes, and the deregistrations that took, to list
/// again (see [`super::recheck`]).
fn take_in(b: &NacosBinding, state: &mut BindingState, finished: &[Finished], marker: &str) {
    if finished.is_empty() {
        return;
    }
    let memory = state.memory.get_or_insert_with(|| memory_from_status(b));
    let now = Utc::now();
    for f in finished {
        for change in &f.changes {
            memory.apply(change);
        }
        if let Some(why) = offline_note(&f.outcome) {
            memory.note_offline(&f.outcome.action.instance, now, why);
        }
        if f.outcome.action.kind == ActionKind::Deregister
            && matches!(f.outcome.result, Written::Done)
        {
            state.rechecks.after_deregistration(&f.instance, now);
        }
    }
    if let Some(kept) = &mut state.kept {
        kept.record_writes(finished.iter().map(|f| &f.outcome), marker);
    }
}

/// Notes what may change again in the registry: the instances we disabled that left their listing
/// while a Ready pod of the binding holds their address (where the server keeps their
/// `enabled=false`; see [`super::recheck`]).
fn follow_up(ctx: &Context, b: &NacosBinding, state: &mut BindingState, eval: &Evaluation) {
    let now = Utc::now();
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

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn the_next_pass_comes_just_after_what_is_due_or_at_the_resync() {
        let now = Utc::now();
        let resync = Duration::from_secs(60);
        let at = |ms: i64| now + TimeDelta::milliseconds(ms);
        let ms = Duration::from_millis;
        // A node crossing `nodeUnreachableSeconds` in 5 s: 50 ms after it, not 200 (node loss
        // was timed from that moment).
        assert_eq!(
            next_pass([at(5_000), at(9_000)].into_iter(), now, resync),
            ms(5_050)
        );
        assert_eq!(next_pass([at(10)].into_iter(), now, resync), ms(60));
        // Already due, or due now: back in 500 ms, not in a loop.
        assert_eq!(next_pass([at(-3_000)].into_iter(), now, resync), ms(500));
        assert_eq!(next_pass([now].into_iter(), now, resync), ms(500));
        // Nothing due, or due after the resync: the resync.
        assert_eq!(next_pass(std::iter::empty(), now, resync), resync);
        assert_eq!(next_pass([at(600_000)].into_iter(), now, resync), resync);
    }
}
