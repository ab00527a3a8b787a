//! The planner: the pure heart of the operator. Plain data in (cluster facts, registry listings,
//! policy, memory, `now`), plain data out (verdicts, actions, held and waiting ones, updated memory).
//! No I/O, no clock, no Kubernetes or HTTP types, so every safety rule is testable without a server.
//!
//! Choices where the contract is silent, each the safer or the more predictable option:
//! - A node InternalIP is judged by the node alone (a hostNetwork pod shares it with the node).
//!   Node deletions are not tracked, so the "node no longer exists" row never fires: such an IP is
//!   then judged like a pod IP.
//! - Unready instances wait out the grace period like Gone and Orphan; Terminating and Unreachable
//!   do not (the node threshold already is Unreachable's grace).
//! - While frozen, a pod that is not Ready on a node that is not Ready is node evidence too: no action.
//! - A stale instance that someone else disabled may be deregistered but never disabled by us: our
//!   marker on it would later let us re-enable what we did not disable.
//! - The planner records the removals it plans in the returned [`Memory`] (a failed attempt still
//!   spends budget: conservative). The executor reports what its verification saw with
//!   [`Memory::mark_ineffective`] and [`Memory::forget_deregistration`].
//! - An approval token is consumed by the first pass with complete evidence, held or not, so an old
//!   approval never releases a future batch. Dry-run neither spends budget nor consumes approvals.

mod cause;
mod classify;
mod decide;
mod memory;
mod policy;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::{
    Instance, InstanceKey, MarkerOwner, NodeDeparture, NodeFacts, NodeReadiness, PodFacts,
    PodTombstone, ServiceKey, ServiceSnapshot,
};

pub use cause::EPHEMERAL as EPHEMERAL_CAUSE;
pub use classify::{Confirm, Verdict};
pub use decide::ActionKind;
pub use memory::{Change, Memory, OfflineNote};
pub use policy::{
    MaxRemovals, NodeAction, Policy, PortFilter, RemovalAction, TerminatingAction, UnreadyAction,
};

use classify::{ClusterIndex, Evidence};
use decide::{decide, disabled_by_us, DecideCtx, Decision};
use policy::delta;

/// One governed service and the outcome of listing it in this pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceListing {
    pub service: ServiceKey,
    /// `Err` carries why the listing failed: no evidence, so no action for this service. Shared:
    /// passes keep listings between them and copy them often.
    pub listing: Result<Arc<ServiceSnapshot>, String>,
    /// Listed in this pass. A listing kept from an earlier pass still gives verdicts, counts and grace
    /// deadlines, but never an action: nothing is written without a listing made in the same pass.
    pub fresh: bool,
}

impl ServiceListing {
    /// A listing made in this pass.
    pub fn fresh(service: ServiceKey, listing: Result<ServiceSnapshot, String>) -> Self {
        Self {
            service,
            listing: listing.map(Arc::new),
            fresh: true,
        }
    }
}

/// Everything one pass decides from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The binding as our disabled-by markers name it.
    pub owner: MarkerOwner<'a>,
    pub policy: &'a Policy,
    /// Every watch cache has synced; until then absence proves nothing.
    pub caches_synced: bool,
    /// False during the settle period after winning leadership.
    pub acting_allowed: bool,
    /// All pods with IPs, matching or not (others are needed to recognise IP reuse).
    pub pods: &'a [PodFacts],
    pub nodes: &'a [NodeFacts],
    pub tombstones: &'a [PodTombstone],
    /// Nodes deleted, and addresses nodes no longer have (see [`NodeDeparture`]).
    pub departed_nodes: &'a [NodeDeparture],
    pub services: &'a [ServiceListing],
    /// Every governed service when `services` holds only some of them (a focused pass judges only
    /// the listings whose verdicts may have changed): what the memory holds of the others is kept.
    pub governed: Option<&'a BTreeSet<ServiceKey>>,
    /// The approval annotation's current token; it releases held removals once per distinct value.
    pub approval: Option<&'a str>,
    pub memory: &'a Memory,
    /// Instances an earlier pass's actions are still being written or verified for: judged and
    /// counted, never acted on again until that execution has ended (the registry may still list
    /// an instance it removed, which would look like a deregistration that did not take).
    pub in_flight: &'a BTreeSet<InstanceKey>,
    pub now: DateTime<Utc>,
}

/// A write to Nacos, with what the executor, the events and the metrics need.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub kind: ActionKind,
    pub instance: InstanceKey,
    /// Persistent instances need `ephemeral=false` on delete.
    pub ephemeral: bool,
    pub verdict: Verdict,
    /// For events and logs, e.g. "pod shop/orders-7d9f deleted 31s ago".
    pub reason: String,
    /// When the evidence appeared: the start of the removal latency.
    pub evidence_at: DateTime<Utc>,
    pub confirm: Confirm,
    /// A Disable that stands in for a deregistration seen not to take (Nacos kept the instance, or
    /// a client registered it again).
    pub replaces_deregister: bool,
}

/// An action still in its grace period.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub action: Action,
    pub due_at: DateTime<Utc>,
}

/// One listed instance as the plan table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceVerdict {
    pub instance: InstanceKey,
    pub verdict: Verdict,
    pub reason: String,
    pub enabled: bool,
    /// Disabled by this binding.
    pub offline: bool,
    /// A pod of the binding (namespace/name) holds this address although it is outside the scope.
    pub pod_outside_scope: Option<String>,
    /// An Orphan at an address this cluster has not shown on a pod or node.
    pub unseen_address: bool,
}

/// Most of a service's in-scope instances are Orphans at addresses this cluster has not shown on a
/// pod or node: the mark of another Kubernetes cluster registering into the same service. Without
/// `instanceMetadata` to tell them apart, the removals of those Orphans are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedService {
    /// Orphans at unseen addresses.
    pub unseen: usize,
    /// Instances of the service in scope (not Foreign).
    pub in_scope: usize,
}

/// `live + stale + foreign = total`; `offline` (disabled by us) overlaps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub total: usize,
    pub live: usize,
    pub stale: usize,
    pub offline: usize,
    pub foreign: usize,
    pub held: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    pub service: ServiceKey,
    pub counts: Counts,
    /// Every listed instance, ordered by key.
    pub instances: Vec<InstanceVerdict>,
    /// Listed at addresses the operator cannot act on (counted as Foreign).
    pub unaddressable: Vec<crate::model::Unaddressable>,
    /// To execute now (empty in dry-run).
    pub actions: Vec<Action>,
    /// Over the removal budget, waiting for the window or an approval.
    pub held: Vec<Action>,
    /// In grace, with the time each becomes due.
    pub waiting: Vec<Waiting>,
    /// Dry-run: what `actions` would have held.
    pub would_act: Vec<Action>,
    /// Why this service gets no actions at all in this pass.
    pub blocked: Option<String>,
    /// The service looks shared with another cluster (its removals at unseen addresses are in `held`).
    pub shared: Option<SharedService>,
    /// The pass's removals (`actions`, or `would_act` in dry-run) take away the last instances
    /// consumers can use: consumers with push-empty protection ignore that push and keep calling
    /// the old addresses.
    pub empties: bool,
    /// The removal budget as this pass left it.
    pub budget: Budget,
}

/// A service's removal budget: `used` of `limit` removals in the last `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    pub used: usize,
    pub limit: usize,
    pub window_secs: i64,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held by the removal budget ({} of {} removals per {}s used)",
            self.used, self.limit, self.window_secs
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Ordered by service key.
    pub services: Vec<ServicePlan>,
    /// More than half of the nodes are not Ready: node-based actions are suspended.
    pub frozen: bool,
    pub dry_run: bool,
    /// The approval token released held removals in this pass and is now consumed.
    pub approval_consumed: bool,
    /// The memory to keep for the next pass.
    pub memory: Memory,
}

impl ServicePlan {
    /// Each held removal, in order, with the budget that holds it; `None`: the shared-service
    /// guard holds it (an orphan at an unseen address; its reason says so).
    pub fn held_with_budget(&self) -> impl Iterator<Item = (&Action, Option<Budget>)> {
        let unseen: BTreeSet<&InstanceKey> = match self.shared {
            Some(_) => self
                .instances
                .iter()
                .filter(|v| v.unseen_address)
                .map(|v| &v.instance)
                .collect(),
            None => BTreeSet::new(),
        };
        self.held
            .iter()
            .map(move |a| (a, (!unseen.contains(&a.instance)).then_some(self.budget)))
    }

    /// The removals in grace that the budget, as this pass left it, would hold when they fall
    /// due (unless its window frees room or an approval comes first): those beyond its room, in
    /// the order they fall due.
    pub fn held_when_due(&self) -> impl Iterator<Item = &Waiting> {
        let room = self.budget.limit.saturating_sub(self.budget.used);
        self.waiting
            .iter()
            .filter(|w| w.action.kind.is_removal())
            .skip(room)
    }

    /// The held removals the shared-service guard holds; the rest of `held` is the budget's.
    pub fn held_as_shared(&self) -> impl Iterator<Item = &Action> {
        self.held_with_budget()
            .filter_map(|(a, budget)| budget.is_none().then_some(a))
    }

    pub(crate) fn empty(service: ServiceKey) -> Self {
        Self {
            service,
            counts: Counts::default(),
            instances: Vec::new(),
            unaddressable: Vec::new(),
            actions: Vec::new(),
            held: Vec::new(),
            waiting: Vec::new(),
            would_act: Vec::new(),
            blocked: None,
            shared: None,
            empties: false,
            budget: Budget::default(),
        }
    }
}

/// What taking the last usable instances of `service` away means for consumers, and what to check.
pub fn emptied_message(service: &ServiceKey, done: bool) -> String {
    let what = if done {
        "its last usable instances were taken offline"
    } else {
        "taking its last usable instances offline (dry run)"
    };
    format!(
        "{service}: {what}: no enabled, healthy instance with a weight above 0 is left. Consumers \
         with push-empty protection (namingPushEmptyProtection=true) ignore a push without one \
         and keep calling the old addresses until an instance registers: check them (their \
         Nacos client logs \"empty or error push\") and restart them. The addresses are dead, \
         so the operator acts all the same"
    )
}

impl Plan {
    /// Every action to execute now, service by service.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.services.iter().flat_map(|s| s.actions.iter())
    }

    /// Every removal held over budget, service by service.
    pub fn held(&self) -> impl Iterator<Item = &Action> {
        self.services.iter().flat_map(|s| s.held.iter())
    }

    /// Dry-run: every action that would have been executed, service by service.
    pub fn would_act(&self) -> impl Iterator<Item = &Action> {
        self.services.iter().flat_map(|s| s.would_act.iter())
    }

    /// What to tell the user when pods of the binding hold instances outside the scope (issue 15,
    /// case 7): the operator would silently never act on them. `default_scope`: the binding sets no
    /// `scope.cidrs`, so the scope is the nodes' podCIDRs and InternalIPs.
    pub fn scope_gap(&self, default_scope: bool) -> Option<String> {
        let mut outside = self.services.iter().flat_map(|s| {
            s.instances
                .iter()
                .filter_map(move |v| Some((&s.service, v, v.pod_outside_scope.as_ref()?)))
        });
        let (service, first, pod) = outside.next()?;
        let more = outside.count();
        let hint = if default_scope {
            "the default scope is the nodes' podCIDRs and InternalIPs, and pod addresses outside \
             them (VPC-native or routed CNIs, Calico IP pools, Cilium cluster-pool: nodes without \
             podCIDR) need spec.scope.cidrs set to the pod network"
        } else {
            "spec.scope.cidrs does not cover the pod network"
        };
        Some(format!(
            "{} instance(s) of this binding's pods are outside the scope and never taken offline, \
             e.g. {}:{} of {service} (pod {pod}): {hint}",
            more + 1,
            first.instance.ip,
            first.instance.port
        ))
    }
}

/// Decides one pass. Pure: the same input always gives the same plan.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let frozen = is_frozen(input.nodes);
    let nodes = since_last_freeze(input.nodes, input.memory.frozen_at);
    let index = ClusterIndex::new(input.pods, &nodes, input.tombstones, input.departed_nodes);
    let mut memory = input.memory.clone();
    if frozen {
        memory.frozen_at = Some(input.now);
    }
    let mut listings: Vec<&ServiceListing> = input.services.iter().collect();
    listings.sort_by(|a, b| a.service.cmp(&b.service));
    let mut services: Vec<ServicePlan> = listings
        .iter()
        .map(|l| plan_service(input, &index, frozen, &mut memory, l))
        .collect();
    let approval_consumed = release_approved(input, &mut memory, &mut services);
    for (service, listing) in services.iter_mut().zip(&listings) {
        service.empties = empties(service, listing);
        if input.policy.dry_run {
            service.would_act = std::mem::take(&mut service.actions);
        } else {
            let window = delta(input.policy.removal_window);
            record_actions(
                &mut memory,
                &service.service,
                &service.actions,
                input.now,
                window,
            );
        }
        service.counts.held = service.held.len();
    }
    if input.caches_synced {
        prune_memory(input, &mut memory, &listings);
    }
    Plan {
        services,
        frozen,
        dry_run: input.policy.dry_run,
        approval_consumed,
        memory,
    }
}

/// Nodes as the planner judges them: a node not Ready counts as down only since the last frozen
/// pass, so a partition that heals node by node does not act on the last ones to report.
fn since_last_freeze(nodes: &[NodeFacts], frozen_at: Option<DateTime<Utc>>) -> Vec<NodeFacts> {
    let mut nodes = nodes.to_vec();
    if let Some(at) = frozen_at {
        for n in nodes
            .iter_mut()
            .filter(|n| n.readiness != NodeReadiness::Ready)
        {
            n.readiness_since = Some(n.readiness_since.map_or(at, |s| s.max(at)));
        }
    }
    nodes
}

/// A control-plane partition looks like most nodes going NotReady at once: more than half of them,
/// and at least two.
pub fn is_frozen(nodes: &[NodeFacts]) -> bool {
    let down = nodes
        .iter()
        .filter(|n| n.readiness != NodeReadiness::Ready)
        .count();
    down >= 2 && down * 2 > nodes.len()
}

/// The next moment a node that is not Ready crosses `nodeUnreachableSeconds`. Such a node's
/// instances are Live (nothing waiting) until then, and no Kubernetes event marks the crossing, so
/// the caller must pass again at that moment rather than at the next resync.
pub fn next_node_deadline(
    nodes: &[NodeFacts],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let threshold = delta(policy.node_unreachable_after);
    nodes
        .iter()
        .filter(|n| n.readiness != NodeReadiness::Ready)
        .filter_map(|n| n.readiness_since)
        .map(|since| policy::after(since, threshold))
        .filter(|due| *due > now)
        .min()
}

/// Why nothing may act anywhere in this pass.
fn pass_blocked(input: &PlanInput<'_>) -> Option<String> {
    if !input.caches_synced {
        Some("watch caches not synced: no evidence yet".to_string())
    } else if !input.acting_allowed {
        Some("leader settle period: not acting yet".to_string())
    } else {
        None
    }
}

fn plan_service(
    input: &PlanInput<'_>,
    index: &ClusterIndex<'_>,
    frozen: bool,
    memory: &mut Memory,
    listing: &ServiceListing,
) -> ServicePlan {
    let mut out = ServicePlan::empty(listing.service.clone());
    let snapshot = match &listing.listing {
        Ok(snapshot) => snapshot,
        Err(reason) => {
            out.blocked = Some(format!("listing failed: {reason}"));
            return out;
        }
    };
    let mut instances: Vec<&Instance> = snapshot.instances.iter().collect();
    instances.sort_by(|a, b| a.key.cmp(&b.key));
    let mut removals = Vec::new();
    for instance in instances {
        plan_instance(
            input,
            index,
            frozen,
            memory,
            instance,
            &mut out,
            &mut removals,
        );
    }
    // Never touched, but instances of the service all the same.
    out.counts.total += snapshot.unaddressable.len();
    out.counts.foreign += snapshot.unaddressable.len();
    out.unaddressable = snapshot.unaddressable.clone();
    let shared_held = hold_if_shared(input, &mut out, &mut removals);
    apply_budget(input, memory, &mut out, removals);
    if !shared_held.is_empty() {
        out.held.extend(shared_held);
        out.held.sort_by(action_order);
    }
    if !listing.fresh {
        out.actions.clear();
        out.held.clear();
    }
    if let Some(reason) = pass_blocked(input) {
        out.actions.clear();
        out.held.clear();
        if !input.caches_synced {
            out.waiting.clear();
        }
        out.blocked = Some(reason);
    }
    out
}

/// Classifies one instance, remembers what needs remembering, and routes its decision.
fn plan_instance(
    input: &PlanInput<'_>,
    index: &ClusterIndex<'_>,
    frozen: bool,
    memory: &mut Memory,
    instance: &Instance,
    out: &mut ServicePlan,
    removals: &mut Vec<Action>,
) {
    let first_seen = memory.first_seen_stale.get(&instance.key).copied();
    let mut evidence = index.classify(instance, input.policy, first_seen, input.now);
    if input.caches_synced {
        remember(memory, instance, &evidence, input.now);
    }
    if frozen && evidence.node_based && evidence.verdict.is_stale() {
        evidence.reason.push_str(" (frozen: most nodes not ready)");
    }
    // Disabled or not, why it is still listed: what keeps a stale instance registered.
    if evidence.verdict.is_stale() {
        let why = cause::still_served(instance, memory, input.now);
        evidence.reason = format!("{}; {why}", evidence.reason);
    }
    let ctx = DecideCtx {
        policy: input.policy,
        owner: &input.owner,
        memory,
        frozen,
        now: input.now,
    };
    if input.in_flight.contains(&instance.key) {
        evidence
            .reason
            .push_str(" (an earlier action on it is still being carried out)");
    } else if let Some(decision) = decide(instance, &evidence, &ctx) {
        route(out, removals, instance, &evidence, decision, input.now);
    }
    count(&mut out.counts, instance, &evidence, &input.owner);
    out.instances.push(InstanceVerdict {
        instance: instance.key.clone(),
        verdict: evidence.verdict,
        reason: evidence.reason,
        enabled: instance.enabled,
        offline: disabled_by_us(instance, &input.owner),
        pod_outside_scope: evidence.pod_outside_scope,
        unseen_address: evidence.unseen_address,
    });
}

/// Without `instanceMetadata` the operator cannot tell another cluster's instances from stale ones
/// of its own: both are Orphans. When most of a service's in-scope instances are Orphans at
/// addresses this cluster has not shown on a pod or node (and at least two are), that is taken for
/// another cluster sharing the service, and their removals are held (taken out of `removals` and
/// returned). One such Orphan, e.g. the stale instance of a pod deleted while the operator was
/// down, is still acted on. Not judged before the caches synced: every address looks unseen then.
fn hold_if_shared(
    input: &PlanInput<'_>,
    out: &mut ServicePlan,
    removals: &mut Vec<Action>,
) -> Vec<Action> {
    if input.policy.instance_claim.is_some() || !input.caches_synced {
        return Vec::new();
    }
    let unseen: BTreeSet<&InstanceKey> = out
        .instances
        .iter()
        .filter(|v| v.unseen_address)
        .map(|v| &v.instance)
        .collect();
    let in_scope = out.counts.total - out.counts.foreign;
    if unseen.len() < 2 || unseen.len() * 2 <= in_scope {
        return Vec::new();
    }
    let (mut held, kept): (Vec<Action>, Vec<Action>) = std::mem::take(removals)
        .into_iter()
        .partition(|a| unseen.contains(&a.instance));
    *removals = kept;
    for a in &mut held {
        a.reason
            .push_str(" (held: the service looks shared with another cluster)");
    }
    out.shared = Some(SharedService {
        unseen: unseen.len(),
        in_scope,
    });
    held
}

/// Whether the service's removals take away its last instances consumers can use: what a Nacos
/// client counts as one (the Java SDK's `ServiceInfo.validate`: healthy, weight above 0) among
/// those the server pushes (enabled ones). Foreign instances count: consumers get them too.
fn empties(service: &ServicePlan, listing: &ServiceListing) -> bool {
    let Ok(snapshot) = &listing.listing else {
        return false;
    };
    let removed: BTreeSet<&InstanceKey> = service
        .actions
        .iter()
        .filter(|a| a.kind.is_removal())
        .map(|a| &a.instance)
        .collect();
    let (taken, kept): (Vec<&Instance>, Vec<&Instance>) = snapshot
        .instances
        .iter()
        .filter(|i| i.enabled && i.healthy && i.weight > 0.0)
        .partition(|i| removed.contains(&i.key));
    !taken.is_empty() && kept.is_empty()
}

/// Keeps the first-seen-stale clock running for stale instances, and forgets the history of an
/// instance that is positively live again.
fn remember(memory: &mut Memory, instance: &Instance, evidence: &Evidence, now: DateTime<Utc>) {
    if evidence.track_stale {
        memory
            .first_seen_stale
            .entry(instance.key.clone())
            .or_insert(now);
    } else if evidence.may_enable {
        memory.forget_instance(&instance.key);
    } else {
        memory.first_seen_stale.remove(&instance.key);
    }
}

/// Sends a decision to the actions (Enable), the budget candidates (due removals) or the waiting list.
fn route(
    out: &mut ServicePlan,
    removals: &mut Vec<Action>,
    instance: &Instance,
    evidence: &Evidence,
    decision: Decision,
    now: DateTime<Utc>,
) {
    let action = Action {
        kind: decision.kind,
        instance: instance.key.clone(),
        ephemeral: instance.ephemeral,
        verdict: evidence.verdict,
        reason: evidence.reason.clone(),
        evidence_at: evidence.since.unwrap_or(now),
        confirm: evidence.confirm,
        replaces_deregister: decision.replaces_deregister,
    };
    if decision.due_at > now {
        out.waiting.push(Waiting {
            action,
            due_at: decision.due_at,
        });
    } else if decision.kind.is_removal() {
        removals.push(action);
    } else {
        out.actions.push(action);
    }
}

fn count(counts: &mut Counts, instance: &Instance, evidence: &Evidence, owner: &MarkerOwner<'_>) {
    counts.total += 1;
    match evidence.verdict {
        Verdict::Live => counts.live += 1,
        Verdict::Foreign => counts.foreign += 1,
        _ => counts.stale += 1,
    }
    if disabled_by_us(instance, owner) {
        counts.offline += 1;
    }
}

/// At most `max_removals` per service per window, oldest evidence first; the rest is held. A
/// percentage counts the instances removed in the window as part of the service.
fn apply_budget(
    input: &PlanInput<'_>,
    memory: &Memory,
    out: &mut ServicePlan,
    removals: Vec<Action>,
) {
    let window = delta(input.policy.removal_window);
    let used = memory.removals_in_window(&out.service, input.now, window);
    // A percentage is of the instances the service had before this window's removals: measured
    // against what is left, the budget would shrink with every removal and depend on how the
    // deletions happened to fall into passes. The instances we disabled are still listed but were
    // taken offline: counted in `used` (or before the window), they must not count again as
    // instances of the service, or every disable would widen the budget (issue 15).
    // Nor the instances an earlier pass is still taking offline: listed until the server shows
    // their removal, which `used` counts already.
    let leaving = out
        .instances
        .iter()
        .filter(|v| !v.offline && input.in_flight.contains(&v.instance))
        .count();
    let before_window = out
        .counts
        .total
        .saturating_sub(out.counts.offline)
        .saturating_sub(leaving)
        .saturating_add(used);
    let limit = input.policy.max_removals.limit(before_window);
    // A disable standing in for a deregistration of this window that did not hold (a 1.x client
    // registered the instance again) is the same removal, counted once already: not again, and
    // not held (5 beating clients would otherwise spend 10 of the budget).
    let (counted, mut removals): (Vec<Action>, Vec<Action>) = removals
        .into_iter()
        .partition(|a| memory.counted_already(a, input.now, window));
    out.actions.extend(counted);
    let allowed = limit.saturating_sub(used).min(removals.len());
    removals.sort_by(action_order);
    let held = removals.split_off(allowed);
    out.budget = Budget {
        used: used.saturating_add(allowed),
        limit,
        window_secs: window.num_seconds(),
    };
    out.actions.extend(removals);
    out.actions.sort_by(action_order);
    out.held = held;
    out.waiting
        .sort_by(|a, b| (a.due_at, &a.action.instance).cmp(&(b.due_at, &b.action.instance)));
}

fn action_order(a: &Action, b: &Action) -> std::cmp::Ordering {
    (a.evidence_at, &a.instance, a.kind).cmp(&(b.evidence_at, &b.instance, b.kind))
}

/// A fresh approval token releases every held removal of this pass, once. It is consumed by the first
/// pass with complete evidence (every listing succeeded, free to act), even with nothing held, so that
/// an old approval never releases a future batch, and a partial pass never wastes one.
fn release_approved(
    input: &PlanInput<'_>,
    memory: &mut Memory,
    services: &mut [ServicePlan],
) -> bool {
    let Some(token) = input.approval else {
        return false;
    };
    let fresh = memory.approval_consumed.as_deref() != Some(token);
    let complete = services.iter().all(|s| s.blocked.is_none());
    if !fresh || !complete || input.policy.dry_run || pass_blocked(input).is_some() {
        return false;
    }
    for service in services.iter_mut() {
        let held = std::mem::take(&mut service.held);
        service.actions.extend(held);
        service.actions.sort_by(action_order);
    }
    memory.approval_consumed = Some(token.to_string());
    true
}

/// Counts executed removals against the budget and dates deregistrations, so a re-appearance within
/// the window shows the delete did not take.
fn record_actions(
    memory: &mut Memory,
    service: &ServiceKey,
    actions: &[Action],
    now: DateTime<Utc>,
    window: TimeDelta,
) {
    for action in actions {
        if action.kind.is_removal() && !memory.counted_already(action, now, window) {
            memory.record_removal(service, now);
        }
        if action.kind == ActionKind::Deregister {
            memory.record_deregistration(&action.instance, now);
        }
    }
}

fn prune_memory(input: &PlanInput<'_>, memory: &mut Memory, listings: &[&ServiceListing]) {
    let governed: BTreeSet<&ServiceKey> = match input.governed {
        Some(all) => all.iter().collect(),
        None => listings.iter().map(|l| &l.service).collect(),
    };
    let listed: BTreeMap<&ServiceKey, BTreeSet<&InstanceKey>> = listings
        .iter()
        .filter_map(|l| {
            l.listing
                .as_ref()
                .ok()
                .map(|s| (&l.service, s.instances.iter().map(|i| &i.key).collect()))
        })
        .collect();
    memory.prune(
        &governed,
        &listed,
        input.now,
        delta(input.policy.removal_window),
    );
}
