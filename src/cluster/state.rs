//! The view's data and the pure rules that apply pruned watch updates to it.
//! No I/O here: the watch loops feed [`Update`]s, tests feed them by hand.

use std::collections::HashSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::change::ClusterChange;
use super::index::{Indexed, IpIndex, TombstoneLimits, Tombstones};
use super::journal::{ChangeJournal, Changed};
use super::prune::{EndpointFacts, PodInfo, SliceInfo, TombstoneInfo, TIMESTAMP_RESOLUTION};
use super::selector::PodScope;
use super::sync::{RelistDecision, StreamId, StreamState, SyncTracker};
use crate::model::{NodeDeparture, NodeFacts, NodeReadiness, PodFacts, PodPhase, PodTombstone};

/// Beyond this many per-object changes from one relist, send a single [`ClusterChange::All`].
const MAX_LISTED_CHANGES: usize = 256;
/// How long the addresses of a node that went are remembered (as long as pod tombstones).
const NODE_DEPARTURE_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// At most this many of them (the oldest go first).
const MAX_NODE_DEPARTURES: usize = 1024;

/// A watch event after pruning. `Relist` carries a complete list (Init..InitDone).
#[derive(Debug, Clone, PartialEq)]
pub enum Update<T> {
    Apply(T),
    Delete(T),
    Relist(Vec<T>),
    Error(String),
}

impl<T> Update<T> {
    fn map(self, mut f: impl FnMut(T) -> T) -> Self {
        match self {
            Update::Apply(t) => Update::Apply(f(t)),
            Update::Delete(t) => Update::Delete(f(t)),
            Update::Relist(ts) => Update::Relist(ts.into_iter().map(f).collect()),
            Update::Error(e) => Update::Error(e),
        }
    }
}

/// What applying an update produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub changes: Vec<ClusterChange>,
    /// The watch loop must drop its watcher and list again (after an error, or to confirm an empty list).
    pub restart: bool,
}

/// Everything the planner needs from the cluster for one binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFacts {
    pub pods: Vec<PodFacts>,
    pub nodes: Vec<NodeFacts>,
    pub tombstones: Vec<PodTombstone>,
    /// Nodes deleted, and addresses nodes no longer have, of the last hour.
    pub departed_nodes: Vec<NodeDeparture>,
}

/// Pods, nodes and EndpointSlices indexed by IP, deletion tombstones, and sync state.
#[derive(Debug, Default)]
pub struct ViewState {
    pods: IpIndex<PodInfo>,
    nodes: IpIndex<NodeFacts>,
    node_departures: Vec<NodeDeparture>,
    slices: IpIndex<SliceInfo>,
    tombstones: Tombstones,
    sync: SyncTracker,
    journal: ChangeJournal,
}

impl ViewState {
    pub fn new(limits: TombstoneLimits) -> Self {
        Self {
            tombstones: Tombstones::new(limits),
            ..Self::default()
        }
    }

    /// Declares a stream so the view is unsynced until it has listed.
    pub fn register(&mut self, id: StreamId) {
        self.sync.register(id);
    }

    pub fn is_synced(&self) -> bool {
        self.sync.is_synced()
    }

    pub fn unsynced(&self) -> Vec<String> {
        self.sync.unsynced().into_iter().map(|(_, r)| r).collect()
    }

    pub fn apply_pods(
        &mut self,
        id: &StreamId,
        update: Update<PodInfo>,
        now: DateTime<Utc>,
    ) -> Applied {
        // The IPs the pod had and has: its facts there change.
        let touched: Option<Vec<IpAddr>> = match &update {
            Update::Apply(pod) | Update::Delete(pod) => Some(
                self.pods
                    .get(&pod.key())
                    .into_iter()
                    .flat_map(|old| old.ips.iter())
                    .chain(&pod.ips)
                    .copied()
                    .collect(),
            ),
            Update::Relist(_) | Update::Error(_) => None,
        };
        let live = !matches!(update, Update::Relist(_));
        let update = update.map(|pod| self.dated_pod(pod, live, now));
        let (applied, removed) =
            apply_update(&mut self.pods, &mut self.sync, id, update, pod_change);
        let anything = applied
            .changes
            .iter()
            .any(|c| matches!(c, ClusterChange::All { .. }));
        match touched {
            _ if applied.changes.is_empty() => {}
            Some(ips) if !anything => self.journal.touch(ips),
            _ => self.journal.touch_all(),
        }
        for pod in &removed {
            self.tombstones
                .record(TombstoneInfo::from_pod(pod, now, live), now);
        }
        self.tombstones.evict(now);
        applied
    }

    pub fn apply_nodes(
        &mut self,
        id: &StreamId,
        update: Update<NodeFacts>,
        now: DateTime<Utc>,
    ) -> Applied {
        let live = !matches!(update, Update::Relist(_));
        let update = update.map(|node| self.dated_node(node, live, now));
        let before = match &update {
            Update::Apply(node) => self.nodes.get(&node.name).cloned(),
            _ => None,
        };
        let (applied, removed) =
            apply_update(&mut self.nodes, &mut self.sync, id, update, |_, node| {
                Some(ClusterChange::Node {
                    name: node.name.clone(),
                })
            });
        // What no node holds any more: deleted nodes, and addresses a node lost.
        for node in removed {
            self.node_departures.push(NodeDeparture {
                name: node.name,
                internal_ips: node.internal_ips,
                pod_cidrs: node.pod_cidrs,
                at: now,
                deleted: true,
            });
        }
        if let Some(old) = before {
            let current = self.nodes.get(&old.name);
            let kept = |ip: &IpAddr| current.is_some_and(|n| n.internal_ips.contains(ip));
            let lost: Vec<IpAddr> = old
                .internal_ips
                .iter()
                .filter(|ip| !kept(ip))
                .copied()
                .collect();
            let cidr_kept = |c: &ipnet::IpNet| current.is_some_and(|n| n.pod_cidrs.contains(c));
            let lost_cidrs: Vec<ipnet::IpNet> = old
                .pod_cidrs
                .iter()
                .filter(|c| !cidr_kept(c))
                .copied()
                .collect();
            if !lost.is_empty() || !lost_cidrs.is_empty() {
                self.node_departures.push(NodeDeparture {
                    name: old.name,
                    internal_ips: lost,
                    pod_cidrs: lost_cidrs,
                    at: now,
                    deleted: false,
                });
            }
        }
        self.forget_node_departures(now);
        // Any instance may sit on any node.
        if !applied.changes.is_empty() {
            self.journal.touch_all();
        }
        applied
    }

    /// `pod` with its readiness dated as this operator saw it (see [`observed_since`]). Its deletion
    /// is dated where it ends, in its tombstone ([`TombstoneInfo::from_pod`]).
    fn dated_pod(&self, mut pod: PodInfo, live: bool, now: DateTime<Utc>) -> PodInfo {
        let before = self.pods.get(&pod.key()).filter(|old| old.uid == pod.uid);
        pod.ready_since = observed_since(
            before.map(|old| (old.ready == pod.ready, old.ready_since)),
            pod.ready_since,
            live,
            now,
        );
        pod
    }

    /// `node` with its readiness dated as this operator saw it (see [`observed_since`]), and the
    /// moment it saw the readiness change where it saw it happen.
    fn dated_node(&self, mut node: NodeFacts, live: bool, now: DateTime<Utc>) -> NodeFacts {
        let before = self
            .nodes
            .get(&node.name)
            .map(|old| (old.readiness == node.readiness, old));
        node.readiness_since = observed_since(
            before.map(|(same, old)| (same, old.readiness_since)),
            node.readiness_since,
            live,
            now,
        );
        node.readiness_seen = match before {
            Some((true, old)) => old.readiness_seen,
            _ if live => Some(now),
            _ => None,
        };
        node
    }

    /// Drops departures past their time, and addresses a node holds again.
    fn forget_node_departures(&mut self, now: DateTime<Utc>) {
        let held: HashSet<IpAddr> = self
            .nodes
            .values()
            .flat_map(|n| n.internal_ips.iter().copied())
            .collect();
        let cidrs: HashSet<ipnet::IpNet> = self
            .nodes
            .values()
            .flat_map(|n| n.pod_cidrs.iter().copied())
            .collect();
        for d in &mut self.node_departures {
            d.internal_ips.retain(|ip| !held.contains(ip));
            d.pod_cidrs.retain(|c| !cidrs.contains(c));
        }
        self.node_departures.retain(|d| {
            now - d.at < NODE_DEPARTURE_TTL
                && !(d.internal_ips.is_empty() && d.pod_cidrs.is_empty())
        });
        let excess = self
            .node_departures
            .len()
            .saturating_sub(MAX_NODE_DEPARTURES);
        self.node_departures.drain(..excess);
    }

    /// The journal's current point, for [`Self::changed_since`].
    pub fn change_seq(&self) -> u64 {
        self.journal.seq()
    }

    /// What changed in the pod and node facts after point `seq`.
    pub fn changed_since(&self, seq: u64) -> Changed {
        self.journal.since(seq)
    }

    /// The IPs whose verdict a node that is not Ready decides, and so may change by time alone (its
    /// `nodeUnreachableSeconds` running out): the node's own InternalIPs and its pods' IPs.
    pub fn ips_behind_nodes_not_ready(&self) -> HashSet<IpAddr> {
        let down: Vec<&NodeFacts> = self
            .nodes
            .values()
            .filter(|n| n.readiness != NodeReadiness::Ready)
            .collect();
        if down.is_empty() {
            return HashSet::new();
        }
        let names: HashSet<&str> = down.iter().map(|n| n.name.as_str()).collect();
        let on_down = |p: &&PodInfo| p.node_name.as_deref().is_some_and(|n| names.contains(n));
        down.iter()
            .flat_map(|n| n.internal_ips.iter())
            .chain(
                self.pods
                    .values()
                    .filter(on_down)
                    .flat_map(|p| p.ips.iter()),
            )
            .copied()
            .collect()
    }

    /// EndpointSlices only inform queries; they trigger nothing beyond sync transitions.
    pub fn apply_slices(&mut self, id: &StreamId, update: Update<SliceInfo>) -> Applied {
        let applied = apply_update(&mut self.slices, &mut self.sync, id, update, |_, _| None).0;
        // Only a sync transition shows here, and whether the view is synced changes every verdict.
        if !applied.changes.is_empty() {
            self.journal.touch_all();
        }
        applied
    }

    pub fn pods_with_ip(&self, ip: &IpAddr) -> Vec<PodInfo> {
        self.pods.with_ip(ip).into_iter().cloned().collect()
    }

    /// The node whose InternalIP this is (first by name if misconfigured nodes share one).
    pub fn node_with_ip(&self, ip: &IpAddr) -> Option<NodeFacts> {
        self.nodes.with_ip(ip).first().map(|n| (*n).clone())
    }

    /// All nodes, by name.
    pub fn nodes(&self) -> Vec<NodeFacts> {
        let mut nodes: Vec<NodeFacts> = self.nodes.values().cloned().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes
    }

    pub fn tombstones_for_ip(&self, ip: &IpAddr, now: DateTime<Utc>) -> Vec<TombstoneInfo> {
        self.tombstones
            .for_ip(ip, now)
            .into_iter()
            .cloned()
            .collect()
    }

    pub fn endpoints_for_ip(&self, ip: &IpAddr) -> Vec<EndpointFacts> {
        self.slices
            .with_ip(ip)
            .into_iter()
            .flat_map(|slice| {
                slice
                    .endpoints
                    .iter()
                    .filter(|ep| ep.ips.contains(ip))
                    .map(|ep| EndpointFacts {
                        namespace: slice.namespace.clone(),
                        slice: slice.name.clone(),
                        service_name: slice.service_name.clone(),
                        endpoint: ep.clone(),
                    })
            })
            .collect()
    }

    /// Whether pods may have an address of a second family: a pod or a node of the cache has both.
    /// The API server's `status.podIP` field selector matches a pod's first address only.
    pub fn is_dual_stack(&self) -> bool {
        fn both(mut ips: impl Iterator<Item = IpAddr>) -> bool {
            let Some(first) = ips.next() else {
                return false;
            };
            ips.any(|ip| ip.is_ipv6() != first.is_ipv6())
        }
        self.pods.values().any(|p| both(p.ips.iter().copied()))
            || self
                .nodes
                .values()
                .any(|n| both(n.pod_cidrs.iter().map(|c| c.addr())))
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Tombstones held, expired ones included until the next eviction (for metrics).
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    /// Facts about the given IPs (typically every instance IP of the binding's services): every pod
    /// and tombstone on them, matching or not, so the planner can tell IP reuse from a live pod.
    /// Plus all nodes (needed for node IPs, default scope CIDRs and the partition freeze).
    pub fn facts_for_ips<'a>(
        &self,
        scope: &PodScope,
        ips: impl IntoIterator<Item = &'a IpAddr>,
        now: DateTime<Utc>,
    ) -> ClusterFacts {
        let mut ips: Vec<&IpAddr> = ips.into_iter().collect();
        ips.sort_unstable();
        ips.dedup();
        let mut facts = ClusterFacts {
            nodes: self.nodes(),
            departed_nodes: self.node_departures.clone(),
            ..ClusterFacts::default()
        };
        // A dual-stack pod is reached through each of its IPs; list it once.
        let mut seen_pods = HashSet::new();
        let mut seen_tombs = HashSet::new();
        // (The IPs are distinct, so only an object with several can be met twice.)
        for ip in ips {
            for pod in self.pods.with_ip(ip) {
                if pod.ips.len() < 2 || seen_pods.insert((&pod.namespace, &pod.name)) {
                    facts
                        .pods
                        .push(pod.facts(scope.matches(&pod.namespace, &pod.labels)));
                }
            }
            for tomb in self.tombstones.for_ip(ip, now) {
                if tomb.ips.len() < 2 || seen_tombs.insert((&tomb.uid, tomb.deleted_at)) {
                    facts
                        .tombstones
                        .push(tomb.facts(scope.matches(&tomb.namespace, &tomb.labels)));
                }
            }
        }
        facts
    }

    /// Every pod and tombstone that matches the scope (all with `matches == true`), plus all nodes.
    /// Pods of other apps are not included: use [`Self::facts_for_ips`] to see IP reuse.
    pub fn facts_for(&self, scope: &PodScope, now: DateTime<Utc>) -> ClusterFacts {
        let mut pods: Vec<PodFacts> = self
            .pods
            .values()
            .filter(|p| scope.matches(&p.namespace, &p.labels))
            .map(|p| p.facts(true))
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        ClusterFacts {
            pods,
            nodes: self.nodes(),
            departed_nodes: self.node_departures.clone(),
            tombstones: self
                .tombstones
                .all(now)
                .filter(|t| scope.matches(&t.namespace, &t.labels))
                .map(|t| t.facts(true))
                .collect(),
        }
    }

    /// A pod of `scope` that stopped serving at or after `since` (deleted, being deleted, finished, or
    /// not Ready when `unready_counts`) on an IP outside `known`, named for the log. An instance of
    /// such a pod was registered after the listings `known` comes from, so only a full listing
    /// finds it.
    pub fn unlisted_departure(
        &self,
        scope: &PodScope,
        known: &HashSet<IpAddr>,
        since: DateTime<Utc>,
        unready_counts: bool,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let unknown = |ips: &[IpAddr]| !ips.is_empty() && ips.iter().all(|ip| !known.contains(ip));
        if let Some(t) = self.tombstones.all(now).find(|t| {
            t.deleted_at >= since && unknown(&t.ips) && scope.matches(&t.namespace, &t.labels)
        }) {
            return Some(format!("pod {}/{} deleted", t.namespace, t.name));
        }
        self.pods
            .values()
            .find(|p| {
                // deletionTimestamp is when the pod will be killed: at or after the request.
                let departed = p.deletion_timestamp.is_some_and(|at| at >= since)
                    || (matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed)
                        || (unready_counts && !p.ready))
                        && p.ready_since.is_none_or(|at| at >= since);
                departed && unknown(&p.ips) && scope.matches(&p.namespace, &p.labels)
            })
            .map(|p| format!("pod {}/{} stopped serving", p.namespace, p.name))
    }

    /// Drops expired tombstones; the watch loops call it on every pod event, a timer may too.
    pub fn evict_tombstones(&mut self, now: DateTime<Utc>) {
        self.tombstones.evict(now);
    }
}

fn pod_change(previous: Option<&PodInfo>, pod: &PodInfo) -> Option<ClusterChange> {
    Some(ClusterChange::Pod {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        labels: pod.labels.clone(),
        previous_labels: previous
            .filter(|p| p.labels != pod.labels)
            .map(|p| p.labels.clone()),
    })
}

/// Applies one update to one index. `describe(previous, current)` names the change for an object that
/// actually changed (for a deletion, `current` is the deleted object). Returns the removed objects.
/// When a state began, as this operator dates it. The times the API server, the kubelets and the
/// controller-manager write (a Ready transition, a deletionTimestamp) are on their clocks: one behind
/// ours would shorten a grace period or `nodeUnreachableSeconds` second for second. A change a watch
/// delivers as it happens is dated no earlier than its arrival here, less the second those times
/// are truncated to (closer than that, the written time is as good as ours); a state unchanged keeps
/// the date it was given; a state first seen in a listing (at start-up, after a watch gap) has only
/// the reported time to go by. `before`: whether the state is the one held before, and its date then.
fn observed_since(
    before: Option<(bool, Option<DateTime<Utc>>)>,
    reported: Option<DateTime<Utc>>,
    live: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match before {
        Some((true, kept)) => kept.max(reported),
        Some((false, _)) if live => Some(
            reported
                .filter(|r| now - *r <= TIMESTAMP_RESOLUTION)
                .unwrap_or(now),
        ),
        _ => reported,
    }
}

fn apply_update<T>(
    index: &mut IpIndex<T>,
    sync: &mut SyncTracker,
    id: &StreamId,
    update: Update<T>,
    describe: impl Fn(Option<&T>, &T) -> Option<ClusterChange>,
) -> (Applied, Vec<T>)
where
    T: Indexed + PartialEq,
{
    match update {
        Update::Apply(object) => {
            let key = object.key();
            let previous = index.upsert(object);
            let change = index
                .get(&key)
                .filter(|current| previous.as_ref() != Some(*current))
                .and_then(|current| describe(previous.as_ref(), current));
            let replaced = previous.filter(|p| index.get(&key).is_some_and(|c| c.uid() != p.uid()));
            (
                changes(change.into_iter().collect()),
                replaced.into_iter().collect(),
            )
        }
        Update::Delete(object) => {
            // The event carries the final state (e.g. a late deletionTimestamp): prefer it over ours.
            let removed = index.remove(&object.key()).map(|_| object);
            let change = removed.as_ref().and_then(|o| describe(None, o));
            (
                changes(change.into_iter().collect()),
                removed.into_iter().collect(),
            )
        }
        Update::Relist(objects) => apply_relist(index, sync, id, objects, describe),
        Update::Error(reason) => {
            let changed = sync.on_error(id, format!("{id}: {reason}"));
            let mut applied = all_if(changed, format!("{id} degraded"));
            applied.restart = true;
            (applied, Vec::new())
        }
    }
}

fn apply_relist<T>(
    index: &mut IpIndex<T>,
    sync: &mut SyncTracker,
    id: &StreamId,
    objects: Vec<T>,
    describe: impl Fn(Option<&T>, &T) -> Option<ClusterChange>,
) -> (Applied, Vec<T>)
where
    T: Indexed + PartialEq,
{
    let scope = id.namespace.as_deref();
    let was_synced = sync.state(id) == Some(StreamState::Synced);
    let held = index.count_in_scope(scope);
    if sync.on_relist(id, objects.len(), held) == RelistDecision::ConfirmEmpty {
        let mut applied = all_if(was_synced, format!("{id}: empty relist unconfirmed"));
        applied.restart = true;
        return (applied, Vec::new());
    }
    let mut relisted = index.replace_scope(scope, objects);
    // Same key, new UID: the old object was deleted and recreated while we were not watching.
    for (previous, key) in &mut relisted.updated {
        let current_uid = index.get(key).and_then(|c| c.uid().map(str::to_owned));
        if let Some(old) = previous.take_if(|p| p.uid().map(str::to_owned) != current_uid) {
            relisted.removed.push(old);
        }
    }
    if !was_synced {
        // First list, or recovery from degraded: every binding re-evaluates anyway.
        return (all_if(true, format!("{id} synced")), relisted.removed);
    }
    let mut listed: Vec<ClusterChange> = relisted
        .removed
        .iter()
        .filter_map(|o| describe(None, o))
        .collect();
    for (previous, key) in &relisted.updated {
        if let Some(current) = index.get(key) {
            if previous.as_ref() != Some(current) {
                listed.extend(describe(previous.as_ref(), current));
            }
        }
    }
    if listed.len() > MAX_LISTED_CHANGES {
        listed = vec![ClusterChange::All {
            reason: format!("{id}: {} changes in relist", listed.len()),
        }];
    }
    (changes(listed), relisted.removed)
}

fn changes(changes: Vec<ClusterChange>) -> Applied {
    Applied {
        changes,
        restart: false,
    }
}

fn all_if(condition: bool, reason: String) -> Applied {
    let changes = if condition {
        vec![ClusterChange::All { reason }]
    } else {
        Vec::new()
    };
    Applied {
        changes,
        restart: false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::prune::tests::{node, pod, slice, utc};
    use super::super::prune::{node_facts, pod_info, slice_info};
    use super::super::sync::WatchedKind;
    use super::*;
    use crate::model::NodeReadiness;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::BTreeMap;

    fn pods_id(ns: Option<&str>) -> StreamId {
        StreamId::new(WatchedKind::Pod, ns)
    }

    fn nodes_id() -> StreamId {
        StreamId::new(WatchedKind::Node, None)
    }

    fn t0() -> DateTime<Utc> {
        utc(0)
    }

    fn slices_id() -> StreamId {
        StreamId::new(WatchedKind::EndpointSlice, None)
    }

    fn p(ns: &str, name: &str, ip: &str, app: &str) -> PodInfo {
        pod_info(&pod(ns, name, &[ip], &[("app", app)])).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn orders_scope() -> PodScope {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "orders".into())])),
            match_expressions: None,
        };
        PodScope::new("shop", &selector, &[]).unwrap()
    }

    /// A view with all three streams registered and listed.
    fn synced_view() -> ViewState {
        let mut v = ViewState::new(TombstoneLimits::default());
        for id in [pods_id(None), nodes_id(), slices_id()] {
            v.register(id);
        }
        let pods = vec![
            p("shop", "orders-1", "10.244.1.7", "orders"),
            p("shop", "billing-1", "10.244.1.8", "billing"),
        ];
        v.apply_pods(&pods_id(None), Update::Relist(pods), utc(0));
        let n = node_facts(&node("node-a", "192.168.1.10", "True")).unwrap();
        v.apply_nodes(&nodes_id(), Update::Relist(vec![n]), t0());
        let s = slice_info(&slice(
            "shop",
            "orders-x",
            vec![("10.244.1.7", Some(true), "orders-1")],
        ))
        .unwrap();
        v.apply_slices(&slices_id(), Update::Relist(vec![s]));
        v
    }

    /// Issue 15, case 11: clocks of the kubelets, the controller-manager or the API server behind
    /// ours (here by 120 s) do not shorten `nodeUnreachableSeconds` or a grace period where the
    /// operator saw the change happen; a state first seen in a listing keeps the reported time.
    #[test]
    fn case_11_a_change_seen_as_it_happens_is_dated_no_earlier_than_its_arrival() {
        let mut v = synced_view();
        let behind = |at: DateTime<Utc>| at - chrono::TimeDelta::seconds(120);
        let at = utc(1_000);
        // The node goes Unknown; the controller-manager's clock says two minutes ago.
        let mut n = v.nodes()[0].clone();
        n.readiness = NodeReadiness::Unknown;
        n.readiness_since = Some(behind(at));
        v.apply_nodes(&nodes_id(), Update::Apply(n.clone()), at);
        assert_eq!(v.nodes()[0].readiness_since, Some(at));
        // Later updates in the same state keep that date; a relist too.
        v.apply_nodes(&nodes_id(), Update::Apply(n.clone()), utc(1_050));
        v.apply_nodes(&nodes_id(), Update::Relist(vec![n.clone()]), utc(1_060));
        assert_eq!(v.nodes()[0].readiness_since, Some(at));
        // A clock ahead of ours: the later, reported time stands.
        let mut ahead = n.clone();
        ahead.name = "node-z".into();
        ahead.readiness = NodeReadiness::Ready;
        v.apply_nodes(&nodes_id(), Update::Apply(ahead.clone()), at);
        ahead.readiness = NodeReadiness::NotReady;
        ahead.readiness_since = Some(utc(1_030));
        v.apply_nodes(&nodes_id(), Update::Apply(ahead), utc(1_010));
        let z = v.nodes().into_iter().find(|n| n.name == "node-z").unwrap();
        assert_eq!(z.readiness_since, Some(utc(1_030)));
        // Within the second Kubernetes truncates its times to, the written time stands.
        let mut near = n.clone();
        near.name = "node-y".into();
        near.readiness = NodeReadiness::Ready;
        v.apply_nodes(&nodes_id(), Update::Apply(near.clone()), at);
        near.readiness = NodeReadiness::NotReady;
        near.readiness_since = Some(utc(1_020));
        v.apply_nodes(
            &nodes_id(),
            Update::Apply(near),
            utc(1_020) + chrono::TimeDelta::milliseconds(900),
        );
        let y = v.nodes().into_iter().find(|n| n.name == "node-y").unwrap();
        assert_eq!(y.readiness_since, Some(utc(1_020)));
        // First seen in a listing (a restarted operator): only the reported time to go by.
        let mut fresh = synced_view();
        fresh.apply_nodes(&nodes_id(), Update::Relist(vec![n]), at);
        assert_eq!(fresh.nodes()[0].readiness_since, Some(behind(at)));

        // A pod goes not Ready, then is deleted at once, both with the API server's clock behind.
        let mut pod = p("shop", "orders-1", "10.244.1.7", "orders");
        pod.ready = false;
        pod.ready_since = Some(behind(at));
        v.apply_pods(&pods_id(None), Update::Apply(pod.clone()), at);
        assert_eq!(v.pods_with_ip(&ip("10.244.1.7"))[0].ready_since, Some(at));
        pod.deletion_timestamp = Some(behind(utc(1_100)));
        v.apply_pods(&pods_id(None), Update::Delete(pod.clone()), utc(1_100));
        let tomb = &v.tombstones_for_ip(&ip("10.244.1.7"), utc(1_100))[0];
        assert_eq!(tomb.deleted_at, utc(1_100));
        // The same deletion found by a relist after a watch gap: the deletionTimestamp, when earlier,
        // stands for it (the grace must not restart because the watch was late).
        let mut gap = synced_view();
        let mut terminating = p("shop", "orders-1", "10.244.1.7", "orders");
        terminating.deletion_timestamp = Some(utc(900));
        gap.apply_pods(&pods_id(None), Update::Relist(vec![terminating]), utc(900));
        gap.apply_pods(&pods_id(None), Update::Relist(vec![]), utc(1_100));
        gap.apply_pods(&pods_id(None), Update::Relist(vec![]), utc(1_101));
        let tomb = &gap.tombstones_for_ip(&ip("10.244.1.7"), utc(1_101))[0];
        assert_eq!(tomb.deleted_at, utc(900));
    }

    /// A node's readiness change is also dated by our own clock where it was seen happening, for
    /// comparing with when a pass listed (see `focus::node_departure`): kept while the readiness
    /// stays, unknown where it was first seen in a listing.
    #[test]
    fn a_readiness_change_seen_happening_is_noted_at_our_time() {
        let mut v = synced_view();
        assert_eq!(
            v.nodes()[0].readiness_seen,
            None,
            "listed, not seen changing"
        );
        let mut n = v.nodes()[0].clone();
        n.readiness = NodeReadiness::Unknown;
        n.readiness_since = Some(utc(995));
        let at = utc(1_000) + chrono::TimeDelta::milliseconds(250);
        v.apply_nodes(&nodes_id(), Update::Apply(n.clone()), at);
        assert_eq!(v.nodes()[0].readiness_seen, Some(at));
        v.apply_nodes(&nodes_id(), Update::Apply(n.clone()), utc(1_010));
        v.apply_nodes(&nodes_id(), Update::Relist(vec![n.clone()]), utc(1_020));
        assert_eq!(v.nodes()[0].readiness_seen, Some(at), "same readiness");
        n.readiness = NodeReadiness::Ready;
        v.apply_nodes(&nodes_id(), Update::Relist(vec![n]), utc(1_030));
        assert_eq!(v.nodes()[0].readiness_seen, None, "changed out of sight");
    }

    #[test]
    fn dual_stack_is_seen_on_a_pod_or_a_node_with_addresses_of_both_families() {
        let mut v = synced_view();
        assert!(!v.is_dual_stack());
        let dual = pod_info(&pod("shop", "d", &["10.244.1.9", "fd00::9"], &[])).unwrap();
        v.apply_pods(&pods_id(None), Update::Apply(dual), t0());
        assert!(v.is_dual_stack());
        let mut v = synced_view();
        let mut n = node_facts(&node("node-b", "192.168.1.11", "True")).unwrap();
        n.pod_cidrs = vec![
            "10.244.2.0/24".parse().unwrap(),
            "fd00:2::/64".parse().unwrap(),
        ];
        v.apply_nodes(&nodes_id(), Update::Apply(n), t0());
        assert!(v.is_dual_stack());
    }

    #[test]
    fn synced_after_every_stream_listed_and_first_list_sends_one_all() {
        let mut v = ViewState::new(TombstoneLimits::default());
        v.register(pods_id(None));
        v.register(nodes_id());
        let applied = v.apply_pods(
            &pods_id(None),
            Update::Relist(vec![
                p("shop", "a", "10.0.0.1", "x"),
                p("shop", "b", "10.0.0.2", "x"),
            ]),
            utc(0),
        );
        assert!(matches!(
            applied.changes.as_slice(),
            [ClusterChange::All { .. }]
        ));
        assert!(!v.is_synced());
        assert_eq!(v.unsynced().len(), 1);
        v.apply_nodes(&nodes_id(), Update::Relist(vec![]), t0());
        assert!(v.is_synced());
    }

    #[test]
    fn the_journal_names_the_ips_of_changed_pods_and_everything_for_a_node() {
        let mut v = synced_view();
        let start = v.change_seq();
        assert_eq!(v.changed_since(start), Changed::Ips(HashSet::new()));
        // Same pod, new IP: both addresses' facts changed.
        let moved = p("shop", "orders-1", "10.244.1.9", "orders");
        v.apply_pods(&pods_id(None), Update::Apply(moved.clone()), utc(1));
        assert_eq!(
            v.changed_since(start),
            Changed::Ips(HashSet::from([ip("10.244.1.7"), ip("10.244.1.9")]))
        );
        let mid = v.change_seq();
        v.apply_pods(&pods_id(None), Update::Apply(moved), utc(2));
        assert_eq!(
            v.changed_since(mid),
            Changed::Ips(HashSet::new()),
            "no change"
        );
        v.apply_pods(
            &pods_id(None),
            Update::Delete(p("shop", "billing-1", "10.244.1.8", "billing")),
            utc(3),
        );
        assert_eq!(
            v.changed_since(mid),
            Changed::Ips(HashSet::from([ip("10.244.1.8")]))
        );
        let before_node = v.change_seq();
        let n = node_facts(&node("node-a", "192.168.1.10", "Unknown")).unwrap();
        v.apply_nodes(&nodes_id(), Update::Apply(n), t0());
        assert_eq!(v.changed_since(before_node), Changed::All);
    }

    #[test]
    fn a_deleted_node_and_an_address_a_node_lost_are_remembered_until_held_again() {
        let mut v = synced_view();
        let departed = |v: &ViewState| v.facts_for(&orders_scope(), utc(10)).departed_nodes;
        let a = node_facts(&node("node-a", "192.168.1.10", "True")).unwrap();
        v.apply_nodes(&nodes_id(), Update::Apply(a.clone()), utc(1));
        assert!(departed(&v).is_empty());
        // The address changes: the old one departs, the node's podCIDR stays.
        let moved = node_facts(&node("node-a", "192.168.1.11", "True")).unwrap();
        v.apply_nodes(&nodes_id(), Update::Apply(moved.clone()), utc(2));
        let d = departed(&v);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].internal_ips.clone(), d[0].deleted, d[0].at),
            (vec![ip("192.168.1.10")], false, utc(2))
        );
        assert!(d[0].pod_cidrs.is_empty());
        // The node goes: all it had departs.
        v.apply_nodes(&nodes_id(), Update::Delete(moved), utc(3));
        let d = departed(&v);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[1].deleted
                && d[1].internal_ips == vec![ip("192.168.1.11")]
                && !d[1].pod_cidrs.is_empty()
        );
        // A node holding the first address again takes it back.
        v.apply_nodes(&nodes_id(), Update::Apply(a), utc(4));
        let d = departed(&v);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].internal_ips, vec![ip("192.168.1.11")]);
        // Past an hour it is forgotten.
        let b = node_facts(&node("node-b", "192.168.1.20", "True")).unwrap();
        v.apply_nodes(&nodes_id(), Update::Apply(b), utc(3 + 3600));
        assert!(departed(&v).is_empty());
    }

    #[test]
    fn a_node_not_ready_answers_for_its_own_ips_and_its_pods() {
        let mut v = synced_view();
        assert!(v.ips_behind_nodes_not_ready().is_empty());
        let n = node_facts(&node("node-a", "192.168.1.10", "Unknown")).unwrap();
        v.apply_nodes(&nodes_id(), Update::Apply(n), t0());
        assert_eq!(
            v.ips_behind_nodes_not_ready(),
            HashSet::from([ip("192.168.1.10"), ip("10.244.1.7"), ip("10.244.1.8")])
        );
    }

    #[test]
    fn unlisted_departures_are_pods_of_the_scope_gone_since_on_unknown_ips() {
        let mut v = synced_view();
        let scope = orders_scope();
        let known: HashSet<IpAddr> = HashSet::new();
        let none = |v: &ViewState, known: &HashSet<IpAddr>, since: i64| {
            v.unlisted_departure(&scope, known, utc(since), false, utc(100))
        };
        assert_eq!(none(&v, &known, 0), None, "a serving pod has not departed");
        // billing-1 is outside the scope: its deletion never calls for a full listing.
        let billing = p("shop", "billing-1", "10.244.1.8", "billing");
        v.apply_pods(&pods_id(None), Update::Delete(billing), utc(10));
        assert_eq!(none(&v, &known, 0), None);
        let orders = p("shop", "orders-1", "10.244.1.7", "orders");
        v.apply_pods(&pods_id(None), Update::Delete(orders), utc(10));
        assert_eq!(
            none(&v, &known, 0).as_deref(),
            Some("pod shop/orders-1 deleted")
        );
        assert_eq!(none(&v, &known, 20), None, "deleted before the listing");
        let listed = HashSet::from([ip("10.244.1.7")]);
        assert_eq!(none(&v, &listed, 0), None, "its IP was listed");

        // Not Ready counts only when the policy acts on it.
        let mut unready = p("shop", "orders-2", "10.244.1.9", "orders");
        unready.ready = false;
        unready.ready_since = Some(utc(30));
        v.apply_pods(&pods_id(None), Update::Apply(unready), utc(30));
        assert_eq!(none(&v, &listed, 0), None);
        assert_eq!(
            v.unlisted_departure(&scope, &listed, utc(0), true, utc(100))
                .as_deref(),
            Some("pod shop/orders-2 stopped serving")
        );
        let mut terminating = p("shop", "orders-3", "10.244.1.10", "orders");
        terminating.deletion_timestamp = Some(utc(60));
        v.apply_pods(&pods_id(None), Update::Apply(terminating), utc(40));
        assert_eq!(
            none(&v, &listed, 50).as_deref(),
            Some("pod shop/orders-3 stopped serving")
        );
    }

    #[test]
    fn queries_find_objects_by_ip() {
        let v = synced_view();
        assert_eq!(v.pods_with_ip(&ip("10.244.1.7"))[0].name, "orders-1");
        assert!(v.pods_with_ip(&ip("10.9.9.9")).is_empty());
        assert_eq!(
            v.node_with_ip(&ip("192.168.1.10")).map(|n| n.name),
            Some("node-a".to_string())
        );
        assert_eq!(v.nodes().len(), 1);
        let eps = v.endpoints_for_ip(&ip("10.244.1.7"));
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].endpoint.ready, Some(true));
        assert_eq!(eps[0].endpoint.pod_name.as_deref(), Some("orders-1"));
    }

    #[test]
    fn unchanged_pod_update_sends_nothing_changed_one_sends_a_pod_change() {
        let mut v = synced_view();
        let same = p("shop", "orders-1", "10.244.1.7", "orders");
        assert!(v
            .apply_pods(&pods_id(None), Update::Apply(same.clone()), utc(1))
            .changes
            .is_empty());

        let mut unready = same;
        unready.ready = false;
        let applied = v.apply_pods(&pods_id(None), Update::Apply(unready), utc(2));
        assert!(matches!(
            applied.changes.as_slice(),
            [ClusterChange::Pod { name, previous_labels: None, .. }] if name == "orders-1"
        ));
        assert!(!v.pods_with_ip(&ip("10.244.1.7"))[0].ready);
    }

    #[test]
    fn relabelled_pod_carries_its_previous_labels() {
        let mut v = synced_view();
        let applied = v.apply_pods(
            &pods_id(None),
            Update::Apply(p("shop", "orders-1", "10.244.1.7", "quarantine")),
            utc(1),
        );
        let [change] = applied.changes.as_slice() else {
            panic!("one change expected: {applied:?}")
        };
        assert!(
            change.concerns(&orders_scope()),
            "the old binding must hear about it"
        );
    }

    #[test]
    fn deleted_pod_becomes_a_tombstone() {
        let mut v = synced_view();
        let mut gone = p("shop", "orders-1", "10.244.1.7", "orders");
        // Seen terminating (its deletionTimestamp 10 s ahead: the termination grace), then gone.
        gone.deletion_timestamp = Some(utc(100));
        v.apply_pods(&pods_id(None), Update::Apply(gone.clone()), utc(90));
        let applied = v.apply_pods(&pods_id(None), Update::Delete(gone), utc(95));
        assert_eq!(applied.changes.len(), 1);
        assert!(v.pods_with_ip(&ip("10.244.1.7")).is_empty());
        let tombs = v.tombstones_for_ip(&ip("10.244.1.7"), utc(100));
        assert_eq!(tombs.len(), 1);
        assert_eq!(tombs[0].deleted_at, utc(95));
        // A delete for an unknown pod changes nothing and records nothing.
        let applied = v.apply_pods(
            &pods_id(None),
            Update::Delete(p("shop", "never-seen", "10.0.0.99", "x")),
            utc(100),
        );
        assert!(applied.changes.is_empty());
        assert!(v.tombstones_for_ip(&ip("10.0.0.99"), utc(100)).is_empty());
    }

    #[test]
    fn pods_missing_from_a_relist_become_tombstones_and_changes() {
        let mut v = synced_view();
        let applied = v.apply_pods(
            &pods_id(None),
            Update::Relist(vec![p("shop", "billing-1", "10.244.1.8", "billing")]),
            utc(200),
        );
        assert_eq!(applied.changes.len(), 1);
        assert!(applied.changes[0].concerns(&orders_scope()));
        assert_eq!(
            v.tombstones_for_ip(&ip("10.244.1.7"), utc(200))[0].deleted_at,
            utc(200)
        );
    }

    #[test]
    fn recreated_pod_with_the_same_name_tombstones_the_old_uid() {
        let mut v = synced_view();
        let mut reborn = p("shop", "orders-1", "10.244.1.50", "orders");
        reborn.uid = "new-uid".into();
        v.apply_pods(&pods_id(None), Update::Apply(reborn), utc(300));
        let tombs = v.tombstones_for_ip(&ip("10.244.1.7"), utc(300));
        assert_eq!(tombs.len(), 1);
        assert_eq!(tombs[0].uid, "uid-shop-orders-1");
    }

    #[test]
    fn an_error_degrades_and_restarts_until_the_next_relist() {
        let mut v = synced_view();
        let applied = v.apply_nodes(&nodes_id(), Update::Error("connection reset".into()), t0());
        assert!(applied.restart);
        assert!(matches!(
            applied.changes.as_slice(),
            [ClusterChange::All { .. }]
        ));
        assert!(!v.is_synced());
        assert!(v.unsynced()[0].contains("connection reset"));
        // Data is kept while degraded: queries still answer, the planner just must not remove.
        assert!(v.node_with_ip(&ip("192.168.1.10")).is_some());
        let n = node_facts(&node("node-a", "192.168.1.10", "True")).unwrap();
        let applied = v.apply_nodes(&nodes_id(), Update::Relist(vec![n]), t0());
        assert!(!applied.restart);
        assert!(matches!(
            applied.changes.as_slice(),
            [ClusterChange::All { .. }]
        ));
        assert!(v.is_synced());
    }

    #[test]
    fn an_empty_relist_is_confirmed_before_it_empties_the_view() {
        let mut v = synced_view();
        let applied = v.apply_pods(&pods_id(None), Update::Relist(vec![]), utc(10));
        assert!(applied.restart);
        assert!(!v.is_synced());
        assert_eq!(v.pod_count(), 2, "first empty list is not believed");
        let applied = v.apply_pods(&pods_id(None), Update::Relist(vec![]), utc(20));
        assert!(!applied.restart);
        assert!(v.is_synced());
        assert_eq!(v.pod_count(), 0);
        assert_eq!(v.tombstones_for_ip(&ip("10.244.1.7"), utc(20)).len(), 1);
    }

    #[test]
    fn namespaced_relists_leave_other_namespaces_alone() {
        let mut v = ViewState::new(TombstoneLimits::default());
        v.register(pods_id(Some("a")));
        v.register(pods_id(Some("b")));
        v.apply_pods(
            &pods_id(Some("a")),
            Update::Relist(vec![p("a", "x", "10.0.0.1", "o")]),
            utc(0),
        );
        v.apply_pods(
            &pods_id(Some("b")),
            Update::Relist(vec![p("b", "y", "10.0.0.2", "o")]),
            utc(0),
        );
        assert!(v.is_synced());
        v.apply_pods(
            &pods_id(Some("b")),
            Update::Relist(vec![p("b", "z", "10.0.0.3", "o")]),
            utc(1),
        );
        assert_eq!(v.pod_count(), 2);
        assert_eq!(v.pods_with_ip(&ip("10.0.0.1")).len(), 1);
        assert!(v.pods_with_ip(&ip("10.0.0.2")).is_empty());
    }

    #[test]
    fn large_relist_diffs_collapse_into_one_all() {
        let mut v = ViewState::new(TombstoneLimits::default());
        v.register(pods_id(None));
        let many = |n: usize| -> Vec<PodInfo> {
            (0..n)
                .map(|i| {
                    p(
                        "shop",
                        &format!("p{i}"),
                        &format!("10.1.{}.{}", i / 250, i % 250),
                        "x",
                    )
                })
                .collect()
        };
        v.apply_pods(&pods_id(None), Update::Relist(many(600)), utc(0));
        let applied = v.apply_pods(&pods_id(None), Update::Relist(many(10)), utc(1));
        assert!(matches!(
            applied.changes.as_slice(),
            [ClusterChange::All { .. }]
        ));
        assert_eq!(v.pod_count(), 10);
    }

    #[test]
    fn node_changes_and_slices_trigger_as_documented() {
        let mut v = synced_view();
        let n = node_facts(&node("node-a", "192.168.1.10", "False")).unwrap();
        let applied = v.apply_nodes(&nodes_id(), Update::Apply(n), t0());
        assert_eq!(
            applied.changes,
            vec![ClusterChange::Node {
                name: "node-a".into()
            }]
        );
        assert_eq!(v.nodes()[0].readiness, NodeReadiness::NotReady);
        let s = slice_info(&slice(
            "shop",
            "orders-x",
            vec![("10.244.1.7", Some(false), "orders-1")],
        ))
        .unwrap();
        assert!(v
            .apply_slices(&slices_id(), Update::Apply(s))
            .changes
            .is_empty());
        assert_eq!(
            v.endpoints_for_ip(&ip("10.244.1.7"))[0].endpoint.ready,
            Some(false)
        );
    }

    #[test]
    fn facts_for_ips_reports_reuse_with_matches_per_binding() {
        let mut v = synced_view();
        // orders-1 is deleted, and its IP is reused by a billing pod.
        v.apply_pods(
            &pods_id(None),
            Update::Delete(p("shop", "orders-1", "10.244.1.7", "orders")),
            utc(50),
        );
        v.apply_pods(
            &pods_id(None),
            Update::Apply(p("shop", "billing-2", "10.244.1.7", "billing")),
            utc(60),
        );
        let ips = [ip("10.244.1.7"), ip("10.244.1.7")];
        let facts = v.facts_for_ips(&orders_scope(), &ips, utc(70));
        assert_eq!(facts.pods.len(), 1);
        assert_eq!(
            (facts.pods[0].name.as_str(), facts.pods[0].matches),
            ("billing-2", false)
        );
        assert_eq!(facts.tombstones.len(), 1);
        assert!(facts.tombstones[0].matches);
        assert_eq!(facts.nodes.len(), 1);
    }

    #[test]
    fn facts_for_lists_matching_pods_and_tombstones() {
        let mut v = synced_view();
        v.apply_pods(
            &pods_id(None),
            Update::Apply(p("shop", "orders-2", "10.244.1.9", "orders")),
            utc(1),
        );
        v.apply_pods(
            &pods_id(None),
            Update::Apply(p("other", "orders-3", "10.244.1.10", "orders")),
            utc(1),
        );
        v.apply_pods(
            &pods_id(None),
            Update::Delete(p("shop", "orders-1", "10.244.1.7", "orders")),
            utc(2),
        );
        let facts = v.facts_for(&orders_scope(), utc(3));
        let names: Vec<&str> = facts.pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["orders-2"]);
        assert!(facts.pods.iter().all(|p| p.matches));
        assert_eq!(facts.tombstones.len(), 1);
        assert_eq!(facts.tombstones[0].name, "orders-1");
    }

    #[test]
    fn dual_stack_pods_are_listed_once() {
        let mut v = synced_view();
        let dual = pod_info(&pod(
            "shop",
            "dual",
            &["10.244.1.20", "fd00::20"],
            &[("app", "orders")],
        ))
        .unwrap();
        v.apply_pods(&pods_id(None), Update::Apply(dual), utc(1));
        let ips = [ip("10.244.1.20"), ip("fd00::20")];
        let facts = v.facts_for_ips(&orders_scope(), &ips, utc(2));
        assert_eq!(facts.pods.len(), 1);
        assert!(facts.pods[0].matches);
    }

    #[test]
    fn ten_thousand_pods_are_indexed_incrementally() {
        let mut v = ViewState::new(TombstoneLimits::default());
        v.register(pods_id(None));
        let template = p("shop", "t", "10.0.0.1", "orders");
        let pods: Vec<PodInfo> = (0..10_000u32)
            .map(|i| PodInfo {
                name: format!("p{i}"),
                uid: format!("u{i}"),
                ips: vec![IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8])],
                ..template.clone()
            })
            .collect();
        v.apply_pods(&pods_id(None), Update::Relist(pods), utc(0));
        assert_eq!(v.pod_count(), 10_000);
        let target = IpAddr::from([10, 1, 39, 15]);
        assert_eq!(
            v.pods_with_ip(&target)[0].name,
            format!("p{}", 39 * 256 + 15)
        );
        let mut moved = v.pods_with_ip(&target)[0].clone();
        moved.ips = vec![ip("10.2.0.1")];
        v.apply_pods(&pods_id(None), Update::Apply(moved), utc(1));
        assert!(v.pods_with_ip(&target).is_empty());
        assert_eq!(v.pods_with_ip(&ip("10.2.0.1")).len(), 1);
    }
}
