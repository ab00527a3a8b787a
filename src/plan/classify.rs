//! Verdicts: what the cluster says about one instance's address, per the table in API.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::{
    Instance, NodeDeparture, NodeFacts, NodeReadiness, PodFacts, PodPhase, PodTombstone,
};

use super::policy::{delta, Policy, PortFilter};

/// The fate of one instance, exactly the rows of the API.md table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Live,
    Unready,
    Terminating,
    Gone,
    Orphan,
    Unreachable,
    Foreign,
}

impl Verdict {
    /// Governed and not live: a candidate for taking offline.
    pub fn is_stale(self) -> bool {
        !matches!(self, Verdict::Live | Verdict::Foreign)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A second signal the executor must check with a direct API call before acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    None,
    /// The cache says no live matching pod has this IP: confirm with a direct GET (two signals).
    NoLivePodWithIp(IpAddr),
}

/// The classification of one instance with what the planner needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evidence {
    pub verdict: Verdict,
    pub reason: String,
    /// When the evidence appeared (for Live: when it became Ready, if known); `None` for Foreign.
    pub since: Option<DateTime<Utc>>,
    pub confirm: Confirm,
    /// Live by positive evidence (a Ready pod or node): we may re-enable what we disabled.
    pub may_enable: bool,
    /// Tracked in Memory's first-seen-stale (stale, or a node not yet past its threshold).
    pub track_stale: bool,
    /// Based on node state (Unreachable, or a pod not Ready on a node that is not Ready): frozen
    /// while the cluster looks partitioned.
    pub node_based: bool,
    /// Foreign because the address is outside the scope, though this pod of the binding
    /// (namespace/name) holds it: the scope misses the pod network.
    pub pod_outside_scope: Option<String>,
    /// An Orphan at an address this cluster has not shown on any pod or node (as far as the
    /// operator's caches reach back): perhaps another cluster's instance.
    pub unseen_address: bool,
}

impl Evidence {
    fn foreign(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Foreign,
            reason: reason.into(),
            since: None,
            confirm: Confirm::None,
            may_enable: false,
            track_stale: false,
            node_based: false,
            pod_outside_scope: None,
            unseen_address: false,
        }
    }

    fn live(reason: String, since: Option<DateTime<Utc>>) -> Self {
        Self {
            verdict: Verdict::Live,
            reason,
            since,
            confirm: Confirm::None,
            may_enable: true,
            track_stale: false,
            node_based: false,
            pod_outside_scope: None,
            unseen_address: false,
        }
    }

    fn stale(verdict: Verdict, reason: String, since: DateTime<Utc>, confirm: Confirm) -> Self {
        Self {
            verdict,
            reason,
            since: Some(since),
            confirm,
            may_enable: false,
            track_stale: true,
            node_based: false,
            pod_outside_scope: None,
            unseen_address: false,
        }
    }
}

/// The cluster facts indexed by IP, built once per pass.
pub(crate) struct ClusterIndex<'a> {
    pods_by_ip: BTreeMap<IpAddr, Vec<&'a PodFacts>>,
    nodes_by_ip: BTreeMap<IpAddr, &'a NodeFacts>,
    nodes_by_name: BTreeMap<&'a str, &'a NodeFacts>,
    /// The latest deletion of a matching pod per IP.
    tombstones_by_ip: BTreeMap<IpAddr, &'a PodTombstone>,
    /// The latest departure of a node address per IP (the node deleted, or the address changed).
    departures_by_ip: BTreeMap<IpAddr, &'a NodeDeparture>,
    /// Numbers declared under each container port name by matching pods and remembered deleted ones
    /// (for orphans, whose pod is gone, also once the app is scaled to zero).
    named_ports: BTreeMap<&'a str, BTreeSet<u16>>,
}

impl<'a> ClusterIndex<'a> {
    /// Indexes the facts. Input order never matters: ties are broken by name, so plans are deterministic.
    pub fn new(
        pods: &'a [PodFacts],
        nodes: &'a [NodeFacts],
        tombstones: &'a [PodTombstone],
        departed: &'a [NodeDeparture],
    ) -> Self {
        let mut pods_by_ip: BTreeMap<IpAddr, Vec<&PodFacts>> = BTreeMap::new();
        for pod in pods {
            for ip in &pod.ips {
                pods_by_ip.entry(*ip).or_default().push(pod);
            }
        }
        for holders in pods_by_ip.values_mut() {
            holders.sort_by(|a, b| {
                (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid))
            });
        }
        let mut sorted_nodes: Vec<&NodeFacts> = nodes.iter().collect();
        sorted_nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut nodes_by_ip = BTreeMap::new();
        let mut nodes_by_name = BTreeMap::new();
        for node in sorted_nodes {
            nodes_by_name.entry(node.name.as_str()).or_insert(node);
            for ip in &node.internal_ips {
                nodes_by_ip.entry(*ip).or_insert(node);
            }
        }
        Self {
            pods_by_ip,
            nodes_by_ip,
            nodes_by_name,
            tombstones_by_ip: latest_tombstones(tombstones),
            departures_by_ip: latest_departures(departed),
            named_ports: named_ports(pods, tombstones),
        }
    }

    fn matching_pods(&self, ip: &IpAddr) -> impl Iterator<Item = &'a PodFacts> + '_ {
        self.pods_by_ip
            .get(ip)
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| p.matches)
    }

    /// Whether the port filter lets this instance be governed.
    fn port_governed(&self, filter: &Option<PortFilter>, ip: &IpAddr, port: u16) -> bool {
        match filter {
            None => true,
            Some(PortFilter::Number(n)) => *n == port,
            Some(PortFilter::Name(name)) => {
                let declares = |p: &PodFacts| {
                    p.container_ports
                        .iter()
                        .any(|(n, num)| n.as_deref() == Some(name.as_str()) && *num == port)
                };
                let mut holders = self.matching_pods(ip).peekable();
                if holders.peek().is_some() {
                    holders.any(declares)
                } else {
                    // The pod is gone: the name means what the binding's other pods declare.
                    self.named_ports
                        .get(name.as_str())
                        .is_some_and(|ports| ports.contains(&port))
                }
            }
        }
    }

    /// The readiness of the node a pod runs on, when the node is known.
    fn node_of(&self, pod: &PodFacts) -> Option<&'a NodeFacts> {
        pod.node_name
            .as_deref()
            .and_then(|n| self.nodes_by_name.get(n).copied())
    }

    /// Classifies one instance. `first_seen` is Memory's first-seen-stale time for it, the fallback
    /// evidence time; `now` is the pass time.
    pub fn classify(
        &self,
        instance: &Instance,
        policy: &Policy,
        first_seen: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Evidence {
        let ip = instance.key.ip;
        if !policy.scope.iter().any(|net| net.contains(&ip)) {
            // A pod of the binding there means the scope misses the pod network (e.g. the default
            // scope where nodes have no podCIDR): the operator would never act on this app.
            let holder = self
                .matching_pods(&ip)
                .find(|p| !p.host_network && !is_finished(p))
                .map(|p| format!("{}/{}", p.namespace, p.name));
            let Some(pod) = holder else {
                return Evidence::foreign("IP outside scope");
            };
            return Evidence {
                pod_outside_scope: Some(pod.clone()),
                ..Evidence::foreign(format!(
                    "IP outside scope, though pod {pod} of this binding holds it"
                ))
            };
        }
        if let Some(claim) = &policy.instance_claim {
            if !claim.matches(&instance.metadata) {
                return Evidence::foreign(
                    "metadata does not match scope.instanceMetadata: not this cluster's instance",
                );
            }
        }
        if !self.port_governed(&policy.port, &ip, instance.key.port) {
            return Evidence::foreign(match &policy.port {
                Some(PortFilter::Name(name)) if !self.named_ports.contains_key(name.as_str()) => {
                    format!(
                        "port name '{name}' unknown: no pod of the binding, present or recently \
                         deleted, declares it (pods.port as a number governs these instances)"
                    )
                }
                _ => "port not governed".to_string(),
            });
        }
        let fallback = first_seen.unwrap_or(now);
        if let Some(node) = self.nodes_by_ip.get(&ip) {
            return node_evidence(node, delta(policy.node_unreachable_after), fallback, now);
        }
        let best = self
            .matching_pods(&ip)
            .min_by_key(|p| (pod_rank(p), p.namespace.as_str(), p.name.as_str()));
        if best.is_none_or(|p| !is_ready(p)) {
            let ours_seen = best.is_some() || self.tombstones_by_ip.contains_key(&ip);
            if let Some(alive) = self.held_by_another_selector(&ip, instance.key.port, ours_seen) {
                return alive;
            }
        }
        match best {
            Some(pod) => {
                let mut evidence = pod_evidence(pod, ip, first_seen, now);
                let down = self
                    .node_of(pod)
                    .filter(|n| n.readiness != NodeReadiness::Ready);
                if let Some(node) = down {
                    // A pod's last reported status says nothing once its node stops reporting: the
                    // node's evidence, on the node's clock, decides. Past the threshold the pod is as
                    // unreachable as the node; before it, a pod the node controller marked not Ready
                    // waits, or the pods of a partition's first nodes would be acted on before the
                    // freeze engages. A pod already terminating or finished keeps that verdict.
                    if matches!(evidence.verdict, Verdict::Live | Verdict::Unready) {
                        let threshold = delta(policy.node_unreachable_after);
                        let by_node = node_evidence(node, threshold, fallback, now);
                        match by_node.verdict {
                            Verdict::Unreachable => {
                                return Evidence {
                                    reason: format!(
                                        "pod {}/{} on {}",
                                        pod.namespace, pod.name, by_node.reason
                                    ),
                                    ..by_node
                                }
                            }
                            Verdict::Live if evidence.verdict == Verdict::Unready => {
                                return Evidence {
                                    reason: format!("{}; {}", evidence.reason, by_node.reason),
                                    ..by_node
                                }
                            }
                            _ => {}
                        }
                    }
                }
                evidence.node_based = evidence.verdict == Verdict::Unready && down.is_some();
                evidence
            }
            None => match self.departures_by_ip.get(&ip) {
                Some(gone) => departed_node_evidence(gone, ip, now),
                None => self.orphan_evidence(&ip, fallback, now),
            },
        }
    }

    /// No Ready pod of the binding has the IP, but a live pod the selector does not match does. It
    /// may be the instance's own (canary labels, a second namespace, another team's binding on the
    /// same service): when it declares the instance's port, or declares no ports and no pod of this
    /// binding was seen on the address (`ours_seen`), it is evidence of life, not of reuse, and
    /// the instance is not this binding's to judge (issue 15, case 2).
    fn held_by_another_selector(
        &self,
        ip: &IpAddr,
        port: u16,
        ours_seen: bool,
    ) -> Option<Evidence> {
        let other = self.pods_by_ip.get(ip).into_iter().flatten().find(|o| {
            !o.matches
                && o.deletion_timestamp.is_none()
                && !is_finished(o)
                && (o.container_ports.iter().any(|(_, n)| *n == port)
                    || (o.container_ports.is_empty() && !ours_seen))
        })?;
        let declares = if other.container_ports.is_empty() {
            "declaring no ports".to_string()
        } else {
            format!("declaring port {port}")
        };
        Some(Evidence::foreign(format!(
            "IP held by pod {}/{}, which this binding's selector does not match, {declares}: \
             evidence of life, not of reuse",
            other.namespace, other.name
        )))
    }

    /// No matching pod has the IP: deleted, or reused by a pod of another app.
    fn orphan_evidence(
        &self,
        ip: &IpAddr,
        fallback: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Evidence {
        let tomb = self.tombstones_by_ip.get(ip);
        let since = tomb.map_or(fallback, |t| t.deleted_at);
        let other = self
            .pods_by_ip
            .get(ip)
            .into_iter()
            .flatten()
            .find(|p| !matches!(p.phase, PodPhase::Failed | PodPhase::Succeeded));
        let reason = match (tomb, other) {
            (Some(t), Some(o)) => format!(
                "pod {}/{} deleted {} ago; IP now held by pod {}/{} of another app",
                t.namespace,
                t.name,
                age(now, t.deleted_at),
                o.namespace,
                o.name
            ),
            (Some(t), None) => format!(
                "pod {}/{} deleted {} ago",
                t.namespace,
                t.name,
                age(now, t.deleted_at)
            ),
            (None, Some(o)) => format!(
                "IP now held by pod {}/{} of another app",
                o.namespace, o.name
            ),
            (None, None) => format!(
                "no matching pod has this IP (stale for {})",
                age(now, since)
            ),
        };
        Evidence {
            unseen_address: tomb.is_none() && other.is_none(),
            ..Evidence::stale(
                Verdict::Orphan,
                reason,
                since,
                Confirm::NoLivePodWithIp(*ip),
            )
        }
    }
}

/// The latest deletion of a matching pod per IP (ties: the greatest namespace/name, for determinism).
/// An instance on an address a node had: a node process (or a hostNetwork pod) whose node went.
fn departed_node_evidence(gone: &NodeDeparture, ip: IpAddr, now: DateTime<Utc>) -> Evidence {
    let reason = if gone.deleted {
        format!("node {} deleted {} ago", gone.name, age(now, gone.at))
    } else {
        format!(
            "no longer an InternalIP of node {} (since {} ago)",
            gone.name,
            age(now, gone.at)
        )
    };
    Evidence::stale(Verdict::Gone, reason, gone.at, Confirm::NoLivePodWithIp(ip))
}

fn latest_departures(departed: &[NodeDeparture]) -> BTreeMap<IpAddr, &NodeDeparture> {
    let mut out: BTreeMap<IpAddr, &NodeDeparture> = BTreeMap::new();
    for d in departed {
        for ip in &d.internal_ips {
            let slot = out.entry(*ip).or_insert(d);
            if d.at > slot.at {
                *slot = d;
            }
        }
    }
    out
}

fn latest_tombstones(tombstones: &[PodTombstone]) -> BTreeMap<IpAddr, &PodTombstone> {
    let mut by_ip: BTreeMap<IpAddr, &PodTombstone> = BTreeMap::new();
    for tomb in tombstones.iter().filter(|t| t.matches) {
        for ip in &tomb.ips {
            if by_ip
                .get(ip)
                .is_none_or(|t| tomb_order(t) < tomb_order(tomb))
            {
                by_ip.insert(*ip, tomb);
            }
        }
    }
    by_ip
}

fn tomb_order(t: &PodTombstone) -> (DateTime<Utc>, &str, &str, &str) {
    (t.deleted_at, &t.namespace, &t.name, &t.uid)
}

/// The numbers each container port name stands for among the binding's pods.
fn named_ports<'a>(
    pods: &'a [PodFacts],
    tombstones: &'a [PodTombstone],
) -> BTreeMap<&'a str, BTreeSet<u16>> {
    let live = pods
        .iter()
        .filter(|p| p.matches)
        .flat_map(|p| &p.container_ports);
    let gone = tombstones
        .iter()
        .filter(|t| t.matches)
        .flat_map(|t| &t.container_ports);
    let mut named: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    for (name, number) in live.chain(gone) {
        if let Some(name) = name {
            named.entry(name.as_str()).or_default().insert(*number);
        }
    }
    named
}

/// Prefers the liveliest of several matching pods with one IP: a Failed pod keeps its IP in its status
/// while a new pod may already use it.
fn pod_rank(pod: &PodFacts) -> u8 {
    if is_ready(pod) {
        0
    } else if pod.deletion_timestamp.is_none() && !is_finished(pod) {
        1
    } else if pod.deletion_timestamp.is_some() {
        2
    } else {
        3
    }
}

fn is_finished(pod: &PodFacts) -> bool {
    matches!(pod.phase, PodPhase::Failed | PodPhase::Succeeded)
}

fn is_ready(pod: &PodFacts) -> bool {
    pod.phase == PodPhase::Running && pod.ready && pod.deletion_timestamp.is_none()
}

fn pod_evidence(
    pod: &PodFacts,
    ip: IpAddr,
    first_seen: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Evidence {
    let name = format!("{}/{}", pod.namespace, pod.name);
    let fallback = first_seen.unwrap_or(now);
    if let Some(deleted) = pod.deletion_timestamp {
        // deletionTimestamp lies in the future by the termination grace; we knew no later than first sight.
        let since = deleted.min(fallback);
        return Evidence::stale(
            Verdict::Terminating,
            format!("pod {name} terminating"),
            since,
            Confirm::None,
        );
    }
    if is_finished(pod) {
        let since = pod.ready_since.filter(|_| !pod.ready).unwrap_or(fallback);
        let phase = if pod.phase == PodPhase::Failed {
            "failed"
        } else {
            "succeeded"
        };
        return Evidence::stale(
            Verdict::Gone,
            format!("pod {name} {phase}"),
            since,
            Confirm::NoLivePodWithIp(ip),
        );
    }
    if is_ready(pod) {
        return Evidence::live(format!("pod {name} ready"), pod.ready_since);
    }
    let since = pod.ready_since.filter(|_| !pod.ready).unwrap_or(fallback);
    Evidence::stale(
        Verdict::Unready,
        format!("pod {name} not ready for {}", age(now, since)),
        since,
        Confirm::None,
    )
}

/// The IP is a node's InternalIP: the node's readiness decides.
fn node_evidence(
    node: &NodeFacts,
    threshold: TimeDelta,
    fallback: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Evidence {
    if node.readiness == NodeReadiness::Ready {
        return Evidence::live(format!("node {} ready", node.name), node.readiness_since);
    }
    let since = node.readiness_since.unwrap_or(fallback);
    let down_for = now.signed_duration_since(since);
    if down_for >= threshold {
        let mut e = Evidence::stale(
            Verdict::Unreachable,
            format!("node {} unreachable for {}", node.name, age(now, since)),
            since,
            Confirm::None,
        );
        e.node_based = true;
        return e;
    }
    // Not yet past the threshold, which is this verdict's grace: Live, but nothing to re-enable.
    let mut e = Evidence::live(
        format!(
            "node {} not ready for {} (unreachable after {})",
            node.name,
            age(now, since),
            secs(threshold)
        ),
        None,
    );
    e.may_enable = false;
    e.track_stale = true;
    e
}

/// How long ago `t` was, as the user reads it ("31s").
pub(crate) fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    secs(now.signed_duration_since(t))
}

fn secs(d: TimeDelta) -> String {
    format!("{}s", d.num_seconds().max(0))
}
