//! Table-driven unit tests: one table per rule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::model::{MarkerOwner, PodPhase, DISABLED_BY_KEY};

pub(super) const UID: &str = "binding-uid";
/// The binding's `namespace/name`.
pub(super) const BINDING: &str = "shop/orders";

pub(super) fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .unwrap_or_default()
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn svc(name: &str) -> ServiceKey {
    ServiceKey::new("DEFAULT_GROUP", name)
}

pub(super) fn inst_in(service: &str, addr: &str, port: u16) -> Instance {
    Instance {
        key: InstanceKey {
            service: svc(service),
            cluster: "DEFAULT".into(),
            ip: ip(addr),
            port,
        },
        listed_ip: addr.to_string(),
        ephemeral: true,
        enabled: true,
        healthy: true,
        weight: 1.0,
        metadata: BTreeMap::new(),
    }
}

pub(super) fn inst(addr: &str) -> Instance {
    inst_in("orders", addr, 8080)
}

/// An instance disabled with the marker of `by` (None: disabled without marker).
fn disabled(mut i: Instance, by: Option<&str>) -> Instance {
    i.enabled = false;
    if let Some(by) = by {
        i.metadata.insert(DISABLED_BY_KEY.into(), by.into());
    }
    i
}

pub(super) fn pod(name: &str, addr: &str) -> PodFacts {
    PodFacts {
        uid: format!("uid-{name}"),
        namespace: "shop".into(),
        name: name.into(),
        ips: vec![ip(addr)],
        matches: true,
        phase: PodPhase::Running,
        ready: true,
        ready_since: Some(t(-600)),
        deletion_timestamp: None,
        node_name: Some("node-a".into()),
        host_network: false,
        container_ports: vec![(Some("http".into()), 8080)],
    }
}

fn on_node(mut p: PodFacts, node: &str) -> PodFacts {
    p.node_name = Some(node.into());
    p
}

fn unready(mut p: PodFacts, since: Option<DateTime<Utc>>) -> PodFacts {
    p.ready = false;
    p.ready_since = since;
    p
}

pub(super) fn node(name: &str, addr: &str, readiness: NodeReadiness, since: i64) -> NodeFacts {
    NodeFacts {
        name: name.into(),
        internal_ips: vec![ip(addr)],
        pod_cidrs: vec![],
        readiness,
        readiness_since: Some(t(since)),
        readiness_seen: None,
    }
}

fn tomb(name: &str, addr: &str, deleted_at: i64) -> PodTombstone {
    PodTombstone {
        uid: format!("uid-{name}"),
        namespace: "shop".into(),
        name: name.into(),
        ips: vec![ip(addr)],
        matches: true,
        deleted_at: t(deleted_at),
        container_ports: vec![(Some("http".into()), 8080)],
    }
}

pub(super) fn policy() -> Policy {
    Policy {
        max_removals: MaxRemovals::Count(100),
        scope: vec!["10.0.0.0/8".parse().unwrap()],
        ..Policy::default()
    }
}

/// One pass's inputs, owned, with sensible defaults: synced, acting, a few Ready nodes outside the pod range.
#[derive(Debug, Clone)]
pub(super) struct Fx {
    pub policy: Policy,
    pub synced: bool,
    pub acting: bool,
    pub pods: Vec<PodFacts>,
    pub nodes: Vec<NodeFacts>,
    pub tombs: Vec<PodTombstone>,
    pub departed: Vec<crate::model::NodeDeparture>,
    pub services: Vec<ServiceListing>,
    pub governed: Option<BTreeSet<ServiceKey>>,
    pub approval: Option<String>,
    pub memory: Memory,
    pub in_flight: BTreeSet<InstanceKey>,
    pub now: DateTime<Utc>,
}

impl Fx {
    pub fn new(instances: Vec<Instance>) -> Self {
        Self {
            policy: policy(),
            synced: true,
            acting: true,
            pods: vec![],
            nodes: vec![
                node("node-a", "10.250.0.1", NodeReadiness::Ready, -3600),
                node("node-b", "10.250.0.2", NodeReadiness::Ready, -3600),
                node("node-c", "10.250.0.3", NodeReadiness::Ready, -3600),
            ],
            tombs: vec![],
            departed: vec![],
            services: vec![ServiceListing {
                service: svc("orders"),
                listing: Ok(Arc::new(ServiceSnapshot {
                    service: svc("orders"),
                    instances,
                    unaddressable: vec![],
                })),
                fresh: true,
            }],
            governed: None,
            approval: None,
            memory: Memory::default(),
            in_flight: BTreeSet::new(),
            now: t(0),
        }
    }

    pub fn run(&self) -> Plan {
        plan(&PlanInput {
            owner: MarkerOwner {
                uid: UID,
                binding: BINDING,
            },
            policy: &self.policy,
            caches_synced: self.synced,
            acting_allowed: self.acting,
            pods: &self.pods,
            nodes: &self.nodes,
            tombstones: &self.tombs,
            departed_nodes: &self.departed,
            services: &self.services,
            governed: self.governed.as_ref(),
            approval: self.approval.as_deref(),
            memory: &self.memory,
            in_flight: &self.in_flight,
            now: self.now,
        })
    }
}

/// Where the single instance's action landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Nothing,
    Act(ActionKind),
    Wait(ActionKind, i64),
    Held(ActionKind),
}

fn outcome(p: &Plan) -> (Verdict, Got) {
    let s = &p.services[0];
    let verdict = s.instances[0].verdict;
    let got = if let Some(a) = s.actions.first() {
        Got::Act(a.kind)
    } else if let Some(w) = s.waiting.first() {
        Got::Wait(w.action.kind, (w.due_at - t(0)).num_seconds())
    } else if let Some(h) = s.held.first() {
        Got::Held(h.kind)
    } else {
        Got::Nothing
    };
    (verdict, got)
}

struct Case {
    name: &'static str,
    instance: Instance,
    pods: Vec<PodFacts>,
    nodes: Vec<NodeFacts>,
    tombs: Vec<PodTombstone>,
    policy: fn(&mut Policy),
    memory: Memory,
    want: (Verdict, Got),
}

impl Default for Case {
    fn default() -> Self {
        Self {
            name: "",
            instance: inst("10.1.0.7"),
            pods: vec![],
            nodes: vec![],
            tombs: vec![],
            policy: |_| {},
            memory: Memory::default(),
            want: (Verdict::Live, Got::Nothing),
        }
    }
}

fn run_cases(cases: Vec<Case>) {
    for case in cases {
        let mut fx = Fx::new(vec![case.instance]);
        fx.pods = case.pods;
        if !case.nodes.is_empty() {
            fx.nodes = case.nodes;
        }
        fx.tombs = case.tombs;
        (case.policy)(&mut fx.policy);
        fx.memory = case.memory;
        let got = outcome(&fx.run());
        assert_eq!(got, case.want, "case {}", case.name);
    }
}

/// Issue 15, case 9: a binding deleted and created again under the same namespace/name (a GitOps
/// replace, a restore) has a new UID; it takes over what its predecessor disabled, and nothing else.
#[test]
fn case_9_a_re_created_binding_re_enables_what_its_predecessor_disabled() {
    let marked = |marker: &str| disabled(inst("10.1.0.7"), Some(marker));
    for (name, instance, want) in [
        (
            "our name under another UID (our predecessor's): ours, re-enabled",
            marked("old-uid shop/orders"),
            Got::Act(ActionKind::Enable),
        ),
        (
            "our UID, with our name",
            marked(&format!("{UID} {BINDING}")),
            Got::Act(ActionKind::Enable),
        ),
        (
            "our UID alone (a marker of an earlier version)",
            marked(UID),
            Got::Act(ActionKind::Enable),
        ),
        (
            "another binding's name: not ours",
            marked("old-uid shop/billing"),
            Got::Nothing,
        ),
        (
            "a name in another namespace: not ours",
            marked("old-uid staging/orders"),
            Got::Nothing,
        ),
        (
            "another UID alone (an earlier version's marker, no name to go by): not ours",
            marked("old-uid"),
            Got::Nothing,
        ),
    ] {
        let mut fx = Fx::new(vec![instance]);
        fx.pods = vec![pod("orders-1", "10.1.0.7")];
        assert_eq!(outcome(&fx.run()), (Verdict::Live, want), "{name}");
    }
    // Stale, disabled by the predecessor: already offline, counted so, nothing more to do.
    let mut fx = Fx::new(vec![marked("old-uid shop/orders")]);
    fx.tombs = vec![tomb("orders-1", "10.1.0.7", -60)];
    let plan = fx.run();
    assert_eq!(outcome(&plan).1, Got::Nothing);
    assert!(plan.services[0].instances[0].offline, "{plan:?}");
    assert_eq!(plan.services[0].counts.offline, 1);
}

fn ready_nodes_plus(extra: NodeFacts) -> Vec<NodeFacts> {
    vec![
        node("node-a", "10.250.0.1", NodeReadiness::Ready, -3600),
        node("node-b", "10.250.0.2", NodeReadiness::Ready, -3600),
        node("node-c", "10.250.0.3", NodeReadiness::Ready, -3600),
        node("node-d", "10.250.0.4", NodeReadiness::Ready, -3600),
        extra,
    ]
}

#[test]
fn verdict_table_rows() {
    use ActionKind::*;
    let terminating = {
        let mut p = pod("orders-1", "10.1.0.7");
        p.deletion_timestamp = Some(t(20));
        p
    };
    let failed = {
        let mut p = unready(pod("orders-1", "10.1.0.7"), Some(t(-40)));
        p.phase = PodPhase::Failed;
        p
    };
    let succeeded = {
        let mut p = unready(pod("orders-1", "10.1.0.7"), Some(t(-10)));
        p.phase = PodPhase::Succeeded;
        p
    };
    // A pod the selector does not match, serving on another port than the instance's.
    let other_app_on = |ports: Vec<(Option<String>, u16)>| {
        let mut p = pod("billing-1", "10.1.0.7");
        p.matches = false;
        p.container_ports = ports;
        p
    };
    let other_app = other_app_on(vec![(Some("http".into()), 9090)]);
    run_cases(vec![
        Case {
            name: "ready matching pod is Live",
            pods: vec![pod("orders-1", "10.1.0.7")],
            want: (Verdict::Live, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "unready pod, onPodUnready=Ignore",
            pods: vec![unready(pod("orders-1", "10.1.0.7"), Some(t(-100)))],
            want: (Verdict::Unready, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "unready pod, onPodUnready=Disable, past grace",
            pods: vec![unready(pod("orders-1", "10.1.0.7"), Some(t(-100)))],
            policy: |p| p.on_pod_unready = UnreadyAction::Disable,
            want: (Verdict::Unready, Got::Act(Disable)),
            ..Case::default()
        },
        Case {
            name: "pending pod is Unready",
            pods: vec![{
                let mut p = unready(pod("orders-1", "10.1.0.7"), None);
                p.phase = PodPhase::Pending;
                p
            }],
            policy: |p| p.on_pod_unready = UnreadyAction::Disable,
            want: (Verdict::Unready, Got::Wait(Disable, 30)),
            ..Case::default()
        },
        Case {
            name: "terminating pod, no grace",
            pods: vec![terminating.clone()],
            want: (Verdict::Terminating, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "terminating pod, onPodTerminating=Ignore",
            pods: vec![terminating],
            policy: |p| p.on_pod_terminating = TerminatingAction::Ignore,
            want: (Verdict::Terminating, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "failed pod is Gone, grace from the Ready transition",
            pods: vec![failed],
            want: (Verdict::Gone, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "succeeded pod is Gone, still in grace",
            pods: vec![succeeded],
            want: (Verdict::Gone, Got::Wait(Deregister, 20)),
            ..Case::default()
        },
        Case {
            name: "deleted pod is Orphan, grace from the tombstone",
            tombs: vec![tomb("orders-1", "10.1.0.7", -31)],
            want: (Verdict::Orphan, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "IP reused by another app is Orphan",
            pods: vec![other_app],
            tombs: vec![tomb("orders-1", "10.1.0.7", -5)],
            want: (Verdict::Orphan, Got::Wait(Deregister, 25)),
            ..Case::default()
        },
        Case {
            name: "another selector's pod declaring the instance's port is life, not reuse",
            pods: vec![other_app_on(vec![(None, 8080)])],
            tombs: vec![tomb("orders-1", "10.1.0.7", -60)],
            want: (Verdict::Foreign, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "another selector's pod declaring no ports, never a pod of ours there: life",
            pods: vec![other_app_on(vec![])],
            want: (Verdict::Foreign, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "another app's pod declaring no ports where our pod was deleted: reuse",
            pods: vec![other_app_on(vec![])],
            tombs: vec![tomb("orders-1", "10.1.0.7", -60)],
            want: (Verdict::Orphan, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "our pod terminating where another selector's pod declares the port: life",
            pods: vec![
                {
                    let mut p = pod("orders-1", "10.1.0.7");
                    p.deletion_timestamp = Some(t(-5));
                    p
                },
                other_app_on(vec![(None, 8080)]),
            ],
            want: (Verdict::Foreign, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "another app's pod being deleted is no evidence of life",
            pods: vec![{
                let mut p = other_app_on(vec![(None, 8080)]);
                p.deletion_timestamp = Some(t(-1));
                p
            }],
            tombs: vec![tomb("orders-1", "10.1.0.7", -60)],
            want: (Verdict::Orphan, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "no pod at all: Orphan, grace from first sight",
            want: (Verdict::Orphan, Got::Wait(Deregister, 30)),
            ..Case::default()
        },
        Case {
            name: "orphan with action=Disable",
            tombs: vec![tomb("orders-1", "10.1.0.7", -60)],
            policy: |p| p.action = RemovalAction::Disable,
            want: (Verdict::Orphan, Got::Act(Disable)),
            ..Case::default()
        },
        Case {
            name: "node IP, node Ready",
            instance: inst("10.250.0.9"),
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Ready, -10)),
            want: (Verdict::Live, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "node IP, NotReady under the threshold: Live, no action",
            instance: inst("10.250.0.9"),
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::NotReady, -59)),
            want: (Verdict::Live, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "node IP, Unknown past the threshold: Unreachable, no grace",
            instance: inst("10.250.0.9"),
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Unknown, -75)),
            want: (Verdict::Unreachable, Got::Act(Disable)),
            ..Case::default()
        },
        Case {
            name: "unreachable with onNodeUnreachable=Deregister",
            instance: inst("10.250.0.9"),
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::NotReady, -75)),
            policy: |p| p.on_node_unreachable = NodeAction::Deregister,
            want: (Verdict::Unreachable, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "unreachable with onNodeUnreachable=Ignore",
            instance: inst("10.250.0.9"),
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::NotReady, -75)),
            policy: |p| p.on_node_unreachable = NodeAction::Ignore,
            want: (Verdict::Unreachable, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "ready pod on a node Unknown past the threshold: Unreachable, no grace",
            pods: vec![on_node(pod("orders-1", "10.1.0.7"), "node-e")],
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Unknown, -75)),
            want: (Verdict::Unreachable, Got::Act(Disable)),
            ..Case::default()
        },
        Case {
            name: "pod marked not ready on a node NotReady past the threshold: Unreachable",
            pods: vec![on_node(
                unready(pod("orders-1", "10.1.0.7"), Some(t(-70))),
                "node-e",
            )],
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::NotReady, -75)),
            policy: |p| p.on_node_unreachable = NodeAction::Deregister,
            want: (Verdict::Unreachable, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "pod on a node Unknown under the threshold: the pod's own verdict",
            pods: vec![on_node(pod("orders-1", "10.1.0.7"), "node-e")],
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Unknown, -59)),
            want: (Verdict::Live, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "pod on an unreachable node, onNodeUnreachable=Ignore",
            pods: vec![on_node(pod("orders-1", "10.1.0.7"), "node-e")],
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Unknown, -75)),
            policy: |p| p.on_node_unreachable = NodeAction::Ignore,
            want: (Verdict::Unreachable, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "terminating pod on an unreachable node stays Terminating",
            pods: vec![on_node(
                {
                    let mut p = pod("orders-1", "10.1.0.7");
                    p.deletion_timestamp = Some(t(-5));
                    p
                },
                "node-e",
            )],
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Unknown, -75)),
            want: (Verdict::Terminating, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "outside scope is Foreign",
            instance: inst("192.168.1.7"),
            want: (Verdict::Foreign, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "empty scope: everything Foreign",
            policy: |p| p.scope.clear(),
            want: (Verdict::Foreign, Got::Nothing),
            ..Case::default()
        },
    ]);
}

#[test]
fn rule1_live_reenable_only_our_marker() {
    use ActionKind::*;
    let live = || vec![pod("orders-1", "10.1.0.7")];
    run_cases(vec![
        Case {
            name: "disabled by us, Live again: Enable",
            instance: disabled(inst("10.1.0.7"), Some(UID)),
            pods: live(),
            want: (Verdict::Live, Got::Act(Enable)),
            ..Case::default()
        },
        Case {
            name: "disabled by someone else without marker: untouched",
            instance: disabled(inst("10.1.0.7"), None),
            pods: live(),
            want: (Verdict::Live, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "disabled by another binding: untouched",
            instance: disabled(inst("10.1.0.7"), Some("other-uid")),
            pods: live(),
            want: (Verdict::Live, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "enabled, stale marker left: nothing",
            instance: {
                let mut i = inst("10.1.0.7");
                i.metadata.insert(DISABLED_BY_KEY.into(), UID.into());
                i
            },
            pods: live(),
            want: (Verdict::Live, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "node IP not yet unreachable: no Enable while the node is not Ready",
            instance: disabled(inst("10.250.0.9"), Some(UID)),
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::NotReady, -10)),
            want: (Verdict::Live, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "node Ready again: Enable",
            instance: disabled(inst("10.250.0.9"), Some(UID)),
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Ready, -10)),
            want: (Verdict::Live, Got::Act(Enable)),
            ..Case::default()
        },
        Case {
            name: "Foreign disabled by us: never touched",
            instance: disabled(inst("192.168.0.7"), Some(UID)),
            want: (Verdict::Foreign, Got::Nothing),
            ..Case::default()
        },
    ]);
}

#[test]
fn rule2_3_grace_and_evidence_time() {
    use ActionKind::*;
    let first_seen = |secs: i64| {
        let mut m = Memory::default();
        m.first_seen_stale.insert(inst("10.1.0.7").key, t(secs));
        m
    };
    run_cases(vec![
        Case {
            name: "tombstone 29s old: due in 1s",
            tombs: vec![tomb("orders-1", "10.1.0.7", -29)],
            want: (Verdict::Orphan, Got::Wait(Deregister, 1)),
            ..Case::default()
        },
        Case {
            name: "tombstone exactly at grace: due now",
            tombs: vec![tomb("orders-1", "10.1.0.7", -30)],
            want: (Verdict::Orphan, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "the newest tombstone for the IP dates the evidence",
            tombs: vec![
                tomb("orders-0", "10.1.0.7", -500),
                tomb("orders-1", "10.1.0.7", -10),
            ],
            want: (Verdict::Orphan, Got::Wait(Deregister, 20)),
            ..Case::default()
        },
        Case {
            name: "tombstones of other apps do not date the evidence",
            tombs: vec![{
                let mut tb = tomb("billing-1", "10.1.0.7", -500);
                tb.matches = false;
                tb
            }],
            want: (Verdict::Orphan, Got::Wait(Deregister, 30)),
            ..Case::default()
        },
        Case {
            name: "no evidence time: Memory's first sight",
            memory: first_seen(-45),
            want: (Verdict::Orphan, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "first sight 10s ago: 20s to go",
            memory: first_seen(-10),
            want: (Verdict::Orphan, Got::Wait(Deregister, 20)),
            ..Case::default()
        },
        Case {
            name: "unready: grace from the Ready transition",
            pods: vec![unready(pod("orders-1", "10.1.0.7"), Some(t(-12)))],
            policy: |p| p.on_pod_unready = UnreadyAction::Disable,
            want: (Verdict::Unready, Got::Wait(Disable, 18)),
            ..Case::default()
        },
        Case {
            name: "terminating: no grace even when the deletion is in the future",
            pods: vec![{
                let mut p = pod("orders-1", "10.1.0.7");
                p.deletion_timestamp = Some(t(30));
                p
            }],
            policy: |p| p.grace_period = Duration::from_secs(600),
            want: (Verdict::Terminating, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "unreachable: the node threshold is the grace",
            instance: inst("10.250.0.9"),
            nodes: ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::NotReady, -60)),
            policy: |p| p.grace_period = Duration::from_secs(600),
            want: (Verdict::Unreachable, Got::Act(Disable)),
            ..Case::default()
        },
        Case {
            name: "node readiness time unknown: first sight counts",
            instance: inst("10.250.0.9"),
            nodes: ready_nodes_plus({
                let mut n = node("node-e", "10.250.0.9", NodeReadiness::NotReady, 0);
                n.readiness_since = None;
                n
            }),
            memory: {
                let mut m = Memory::default();
                m.first_seen_stale.insert(inst("10.250.0.9").key, t(-61));
                m
            },
            want: (Verdict::Unreachable, Got::Act(Disable)),
            ..Case::default()
        },
    ]);
}

#[test]
fn rule4_offline_and_ineffective_deregistration() {
    use ActionKind::*;
    let gone = || vec![tomb("orders-1", "10.1.0.7", -100)];
    let ineffective = || {
        let mut m = Memory::default();
        m.mark_ineffective(&inst("10.1.0.7").key);
        m
    };
    run_cases(vec![
        Case {
            name: "disabled by us and still stale: offline, nothing to do",
            instance: disabled(inst("10.1.0.7"), Some(UID)),
            tombs: gone(),
            want: (Verdict::Orphan, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "persistent instance: Deregister is fine",
            instance: {
                let mut i = inst("10.1.0.7");
                i.ephemeral = false;
                i
            },
            tombs: gone(),
            want: (Verdict::Orphan, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "marked ineffective: Disable instead",
            tombs: gone(),
            memory: ineffective(),
            want: (Verdict::Orphan, Got::Act(Disable)),
            ..Case::default()
        },
        Case {
            name: "re-appeared within the window after our deregistration: Disable",
            tombs: gone(),
            memory: {
                let mut m = Memory::default();
                m.deregistered.insert(inst("10.1.0.7").key, t(-20));
                m
            },
            want: (Verdict::Orphan, Got::Act(Disable)),
            ..Case::default()
        },
        Case {
            name: "deregistered long before the window: Deregister again",
            tombs: gone(),
            memory: {
                let mut m = Memory::default();
                m.deregistered.insert(inst("10.1.0.7").key, t(-301));
                m
            },
            want: (Verdict::Orphan, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "terminating, ineffective: Disable",
            pods: vec![{
                let mut p = pod("orders-1", "10.1.0.7");
                p.deletion_timestamp = Some(t(0));
                p
            }],
            memory: ineffective(),
            want: (Verdict::Terminating, Got::Act(Disable)),
            ..Case::default()
        },
        Case {
            name: "disabled by someone else, action Deregister: deregistered",
            instance: disabled(inst("10.1.0.7"), None),
            tombs: gone(),
            want: (Verdict::Orphan, Got::Act(Deregister)),
            ..Case::default()
        },
        Case {
            name: "disabled by someone else, action Disable: never re-marked as ours",
            instance: disabled(inst("10.1.0.7"), Some("other-uid")),
            tombs: gone(),
            policy: |p| p.action = RemovalAction::Disable,
            want: (Verdict::Orphan, Got::Nothing),
            ..Case::default()
        },
        Case {
            name: "disabled by someone else, ineffective: left alone",
            instance: disabled(inst("10.1.0.7"), None),
            tombs: gone(),
            memory: ineffective(),
            want: (Verdict::Orphan, Got::Nothing),
            ..Case::default()
        },
    ]);
}

#[test]
fn rule4_memory_records_and_detects_reappearance() {
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.tombs = vec![tomb("orders-1", "10.1.0.7", -100)];
    let first = fx.run();
    assert_eq!(first.services[0].actions[0].kind, ActionKind::Deregister);
    assert_eq!(
        first.memory.deregistered.get(&inst("10.1.0.7").key),
        Some(&t(0))
    );
    // The deregistration took; the listing no longer has it; the record survives for the window.
    fx.memory = first.memory;
    fx.services[0].listing = Ok(Arc::new(ServiceSnapshot {
        service: svc("orders"),
        instances: vec![],
        unaddressable: vec![],
    }));
    fx.now = t(5);
    let second = fx.run();
    assert!(second
        .memory
        .deregistered
        .contains_key(&inst("10.1.0.7").key));
    // A 1.x client re-registers: next time we disable instead.
    fx.memory = second.memory;
    fx.services[0].listing = Ok(Arc::new(ServiceSnapshot {
        service: svc("orders"),
        instances: vec![inst("10.1.0.7")],
        unaddressable: vec![],
    }));
    fx.now = t(10);
    let third = fx.run();
    assert_eq!(third.services[0].actions[0].kind, ActionKind::Disable);
}

/// An execution outlives its pass: while its deregistration settles the registry still lists the
/// instance, which must not look like a re-registration (a Disable) or be deregistered twice.
#[test]
fn an_instance_whose_action_is_still_being_carried_out_is_judged_but_not_acted_on() {
    let mut fx = Fx::new(vec![inst("10.1.0.7"), inst("10.1.0.8")]);
    fx.tombs = vec![
        tomb("orders-1", "10.1.0.7", -100),
        tomb("orders-2", "10.1.0.8", -100),
    ];
    fx.memory
        .record_deregistration(&inst("10.1.0.7").key, t(-1));
    fx.memory.record_removal(&svc("orders"), t(-1));
    fx.in_flight = BTreeSet::from([inst("10.1.0.7").key]);
    let p = fx.run();
    assert_eq!(acted_ips(&p), ["10.1.0.8"]);
    let s = &p.services[0];
    assert!(s.waiting.is_empty() && s.held.is_empty(), "{s:?}");
    assert_eq!(s.counts.stale, 2, "still counted as it is listed");
    assert!(s.instances[0].reason.contains("still being carried out"));
    // The removal in flight was counted when it was planned, and only then.
    assert_eq!(p.memory.removals[&svc("orders")].len(), 2);
    // Once its execution has ended, it is judged as usual: listed again, it is disabled.
    fx.in_flight.clear();
    fx.memory = p.memory;
    assert_eq!(fx.run().services[0].actions[0].kind, ActionKind::Disable);
}

/// 8 of 10 pods gone, `maxRemovals: 50%`: a pass removes 5; while the server still lists them
/// (their removals in flight), the next pass must not count them both as instances of the service
/// and as the window's removals (a limit of 7, and 2 more removed: seen on Alibaba Nacos 2.5.1).
#[test]
fn instances_still_being_removed_do_not_widen_a_percentage_budget() {
    let ips: Vec<String> = (1..=10).map(|i| format!("10.1.0.{i}")).collect();
    let mut fx = Fx::new(ips.iter().map(|ip| inst(ip)).collect());
    fx.policy.max_removals = MaxRemovals::Percent(50);
    fx.tombs = ips[..8]
        .iter()
        .enumerate()
        .map(|(i, ip)| tomb(&format!("orders-{i}"), ip, -100))
        .collect();
    let first = fx.run();
    assert_eq!(acted_ips(&first).len(), 5);
    assert_eq!(first.services[0].held.len(), 3);
    fx.in_flight = first.actions().map(|a| a.instance.clone()).collect();
    fx.memory = first.memory;
    fx.now = t(1);
    let second = fx.run();
    assert!(acted_ips(&second).is_empty(), "{:?}", acted_ips(&second));
    assert_eq!(second.services[0].held.len(), 3);
    assert_eq!(second.services[0].budget.limit, 5);
}

#[test]
fn a_disable_standing_in_for_an_ineffective_deregistration_says_so() {
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.tombs = vec![tomb("orders-1", "10.1.0.7", -100)];
    fx.memory.deregistered.insert(inst("10.1.0.7").key, t(-20));
    let p = fx.run();
    let a: Vec<_> = p.actions().collect();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].kind, ActionKind::Disable);
    assert!(a[0].replaces_deregister);

    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.tombs = vec![tomb("orders-1", "10.1.0.7", -100)];
    fx.policy.action = RemovalAction::Disable;
    let p = fx.run();
    let a: Vec<_> = p.actions().collect();
    assert_eq!(a[0].kind, ActionKind::Disable);
    assert!(!a[0].replaces_deregister, "Disable is the policy here");
}

#[test]
fn memory_is_pruned_and_reset_by_a_new_life() {
    let key = inst("10.1.0.7").key;
    let gone_key = inst("10.1.0.99").key;
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.pods = vec![pod("orders-2", "10.1.0.7")];
    fx.memory.first_seen_stale.insert(key.clone(), t(-50));
    fx.memory.mark_ineffective(&key);
    fx.memory.first_seen_stale.insert(gone_key.clone(), t(-50));
    fx.memory
        .removals
        .insert(svc("orders"), vec![t(-400), t(-10)]);
    fx.memory.removals.insert(svc("retired"), vec![t(-10)]);
    let p = fx.run();
    assert!(p.memory.first_seen_stale.is_empty(), "{:?}", p.memory);
    assert!(p.memory.ineffective.is_empty());
    assert_eq!(
        p.memory.removals,
        BTreeMap::from([(svc("orders"), vec![t(-10)])])
    );
}

#[test]
fn a_plan_of_some_services_keeps_the_memory_of_the_other_governed_ones() {
    let other = InstanceKey {
        service: svc("payments"),
        ..inst("10.1.0.9").key
    };
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.pods = vec![pod("orders-2", "10.1.0.7")];
    fx.memory.first_seen_stale.insert(other.clone(), t(-50));
    fx.memory.record_disabled(&other);
    fx.memory.removals.insert(svc("payments"), vec![t(-10)]);
    fx.memory.removals.insert(svc("retired"), vec![t(-10)]);
    fx.governed = Some(BTreeSet::from([svc("orders"), svc("payments")]));
    let p = fx.run();
    assert_eq!(p.memory.first_seen_stale.get(&other), Some(&t(-50)));
    assert!(p.memory.disabled.contains_key(&other));
    assert_eq!(
        p.memory.removals,
        BTreeMap::from([(svc("payments"), vec![t(-10)])]),
        "no longer governed: forgotten"
    );
    fx.governed = None;
    assert_eq!(
        fx.run().memory,
        Memory::default(),
        "judged whole: not listed"
    );
}

#[test]
fn memory_survives_a_failed_listing_and_unsynced_caches() {
    let key = inst("10.1.0.7").key;
    let mut fx = Fx::new(vec![]);
    fx.services[0].listing = Err("timeout".into());
    fx.memory.first_seen_stale.insert(key.clone(), t(-50));
    assert_eq!(fx.run().memory, fx.memory);
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.synced = false;
    assert_eq!(
        fx.run().memory,
        Memory::default(),
        "no first sight recorded from an unsynced cache"
    );
}

#[test]
fn rule5_no_evidence_no_action() {
    let stale = || {
        let mut fx = Fx::new(vec![
            inst("10.1.0.7"),
            disabled(inst("10.1.0.8"), Some(UID)),
        ]);
        fx.tombs = vec![tomb("orders-1", "10.1.0.7", -100)];
        fx.pods = vec![pod("orders-2", "10.1.0.8")];
        fx
    };
    assert_eq!(
        stale().run().services[0].actions.len(),
        2,
        "the control case acts"
    );
    type BlockCase = (&'static str, fn(&mut Fx), &'static str);
    let cases: Vec<BlockCase> = vec![
        (
            "unsynced caches",
            |fx| fx.synced = false,
            "watch caches not synced",
        ),
        (
            "settle period",
            |fx| fx.acting = false,
            "leader settle period",
        ),
        (
            "listing failed",
            |fx| fx.services[0].listing = Err("connection refused".into()),
            "listing failed: connection refused",
        ),
    ];
    for (name, mutate, reason) in cases {
        let mut fx = stale();
        mutate(&mut fx);
        let p = fx.run();
        let s = &p.services[0];
        assert!(
            s.actions.is_empty() && s.held.is_empty() && s.would_act.is_empty(),
            "{name}"
        );
        assert!(
            s.blocked.as_deref().is_some_and(|b| b.contains(reason)),
            "{name}: {:?}",
            s.blocked
        );
        assert!(p.memory.removals.is_empty(), "{name}");
    }
}

#[test]
fn rule5_failed_listing_blocks_only_its_service() {
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.tombs = vec![tomb("orders-1", "10.1.0.7", -100)];
    fx.services.push(ServiceListing {
        service: svc("billing"),
        listing: Err("HTTP 500".into()),
        fresh: true,
    });
    let p = fx.run();
    let names: Vec<_> = p.services.iter().map(|s| s.service.name.as_str()).collect();
    assert_eq!(names, ["billing", "orders"]);
    assert!(p.services[0].blocked.is_some() && p.services[0].actions.is_empty());
    assert!(p.services[1].blocked.is_none() && p.services[1].actions.len() == 1);
}

#[test]
fn rule1_a_listing_from_an_earlier_pass_gives_verdicts_but_no_action() {
    let mut fx = orphans(3);
    fx.policy.max_removals = MaxRemovals::Count(1);
    let fresh = fx.run();
    assert_eq!(fresh.services[0].actions.len(), 1);
    assert_eq!(fresh.services[0].held.len(), 2);
    fx.services[0].fresh = false;
    let reused = fx.run();
    let s = &reused.services[0];
    assert!(s.actions.is_empty() && s.held.is_empty(), "{s:#?}");
    assert_eq!(s.counts.stale, 3, "still judged: {s:#?}");
    assert!(s.blocked.is_none());
    assert!(
        reused.memory.removals.is_empty(),
        "no budget spent on what was not listed now"
    );
}

fn orphans(n: usize) -> Fx {
    let instances = (0..n)
        .map(|i| inst(&format!("10.1.0.{}", 10 + i)))
        .collect();
    let mut fx = Fx::new(instances);
    // Evidence ages differ so the oldest-first order is visible: .10 is the youngest.
    fx.tombs = (0..n)
        .map(|i| {
            tomb(
                &format!("orders-{i}"),
                &format!("10.1.0.{}", 10 + i),
                -100 - i as i64,
            )
        })
        .collect();
    fx
}

fn acted_ips(p: &Plan) -> Vec<String> {
    p.services[0]
        .actions
        .iter()
        .map(|a| a.instance.ip.to_string())
        .collect()
}

#[test]
fn rule6_budget_limits() {
    /// (name, limit, instances, removals already in memory, expected actions)
    type BudgetCase = (&'static str, MaxRemovals, usize, Vec<DateTime<Utc>>, usize);
    let cases: Vec<BudgetCase> = vec![
        ("count 2 of 5", MaxRemovals::Count(2), 5, vec![], 2),
        ("count 0 holds all", MaxRemovals::Count(0), 5, vec![], 0),
        (
            "50% of 5 rounds down",
            MaxRemovals::Percent(50),
            5,
            vec![],
            2,
        ),
        (
            "10% of 5 is at least 1",
            MaxRemovals::Percent(10),
            5,
            vec![],
            1,
        ),
        ("0% holds all", MaxRemovals::Percent(0), 5, vec![], 0),
        ("100% of 5", MaxRemovals::Percent(100), 5, vec![], 5),
        (
            // Why a 100% budget needs no record before the writes (MaxRemovals::can_hold).
            "100% whatever the window spent",
            MaxRemovals::Percent(100),
            5,
            vec![t(-1); 40],
            5,
        ),
        (
            "removals in the window count",
            MaxRemovals::Count(3),
            5,
            vec![t(-10), t(-299)],
            1,
        ),
        (
            "removals before the window do not",
            MaxRemovals::Count(3),
            5,
            vec![t(-300), t(-1000)],
            3,
        ),
        (
            "window already spent",
            MaxRemovals::Count(2),
            5,
            vec![t(-1), t(-2), t(-3)],
            0,
        ),
    ];
    for (name, max, n, past, want) in cases {
        let mut fx = orphans(n);
        fx.policy.max_removals = max;
        fx.memory.removals.insert(svc("orders"), past);
        let p = fx.run();
        let s = &p.services[0];
        assert_eq!(s.actions.len(), want, "{name}");
        assert_eq!(s.held.len(), n - want, "{name}");
        assert_eq!(s.counts.held, n - want, "{name}");
    }
}

#[test]
fn rule6_oldest_evidence_first_and_enable_is_free() {
    let mut fx = orphans(4);
    fx.policy.max_removals = MaxRemovals::Count(2);
    let p = fx.run();
    assert_eq!(acted_ips(&p), ["10.1.0.13", "10.1.0.12"]);
    let held: Vec<_> = p.services[0]
        .held
        .iter()
        .map(|a| a.instance.ip.to_string())
        .collect();
    assert_eq!(held, ["10.1.0.11", "10.1.0.10"]);

    let mut fx = Fx::new(vec![
        disabled(inst("10.1.0.7"), Some(UID)),
        inst("10.1.0.8"),
    ]);
    fx.pods = vec![pod("orders-1", "10.1.0.7")];
    fx.tombs = vec![tomb("orders-2", "10.1.0.8", -100)];
    fx.policy.max_removals = MaxRemovals::Count(0);
    let p = fx.run();
    let kinds: Vec<_> = p.services[0].actions.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [ActionKind::Enable]);
    assert_eq!(p.services[0].held.len(), 1);
}

#[test]
fn rule6_budget_is_recorded_across_passes() {
    let mut fx = orphans(4);
    fx.policy.max_removals = MaxRemovals::Count(2);
    let first = fx.run();
    assert_eq!(first.memory.removals[&svc("orders")], vec![t(0), t(0)]);
    let removed: Vec<InstanceKey> = first.services[0]
        .actions
        .iter()
        .map(|a| a.instance.clone())
        .collect();
    fx.memory = first.memory;
    fx.now = t(100);
    // The window's budget is spent: the other two are held. The two deregistered are listed
    // again (something re-registered them): disabled, each the removal counted already.
    let second = fx.run();
    let s = &second.services[0];
    assert_eq!(s.held.len(), 2, "window still spent");
    let disabled: Vec<&InstanceKey> = s
        .actions
        .iter()
        .inspect(|a| assert!(a.kind == ActionKind::Disable && a.replaces_deregister))
        .map(|a| &a.instance)
        .collect();
    assert_eq!(disabled, removed.iter().collect::<Vec<_>>());
    assert_eq!(
        second.memory.removals[&svc("orders")],
        vec![t(0), t(0)],
        "not counted again"
    );
    fx.now = t(300);
    assert_eq!(fx.run().services[0].actions.len(), 2, "window passed");
}

/// 10 instances, 8 of them gone, 50%: 5 removals in the window however the deletions fall into
/// passes (the percentage is of the instances before the window's removals, not of what is left).
#[test]
fn rule6_percent_budget_is_of_the_service_before_the_windows_removals() {
    fn listed(fx: &mut Fx) -> &mut Vec<Instance> {
        match &mut fx.services[0].listing {
            Ok(s) => &mut Arc::make_mut(s).instances,
            Err(e) => panic!("{e}"),
        }
    }
    for first_batch in 1..=8 {
        let mut fx = orphans(8);
        fx.policy.max_removals = MaxRemovals::Percent(50);
        for i in 0..2 {
            let addr = format!("10.1.0.{}", 50 + i);
            listed(&mut fx).push(inst(&addr));
            fx.pods.push(pod(&format!("live-{i}"), &addr));
        }
        // The first pass sees `first_batch` of the eight deletions: the other pods still run.
        let all_tombs = std::mem::take(&mut fx.tombs);
        let live = fx.pods.clone();
        fx.tombs = all_tombs[..first_batch].to_vec();
        fx.pods.extend(
            all_tombs[first_batch..]
                .iter()
                .map(|t| pod(&t.name, &t.ips[0].to_string())),
        );
        let mut removed = 0;
        for pass in 0..4 {
            if pass == 1 {
                fx.tombs = all_tombs.clone();
                fx.pods = live.clone();
            }
            let p = fx.run();
            let acted: Vec<InstanceKey> = p.actions().map(|a| a.instance.clone()).collect();
            removed += acted.len();
            listed(&mut fx).retain(|i| !acted.contains(&i.key));
            fx.memory = p.memory;
            fx.now += chrono::TimeDelta::seconds(1);
        }
        assert_eq!(removed, 5, "first pass saw {first_batch} deletions");
        assert_eq!(fx.run().held().count(), 3, "first pass saw {first_batch}");
    }
}

#[test]
fn rule6_approval_releases_held_once() {
    let mut fx = orphans(4);
    fx.policy.max_removals = MaxRemovals::Count(1);
    /// (name, token, already consumed, consumed now, expected actions)
    type ApprovalCase = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        bool,
        usize,
    );
    let cases: Vec<ApprovalCase> = vec![
        ("no token", None, None, false, 1),
        ("fresh token releases all", Some("4"), None, true, 4),
        (
            "consumed token does nothing",
            Some("4"),
            Some("4"),
            false,
            1,
        ),
        ("a new token releases again", Some("5"), Some("4"), true, 4),
    ];
    for (name, token, consumed, want_consumed, want_actions) in cases {
        fx.approval = token.map(str::to_string);
        fx.memory.approval_consumed = consumed.map(str::to_string);
        let p = fx.run();
        assert_eq!(p.approval_consumed, want_consumed, "{name}");
        assert_eq!(p.services[0].actions.len(), want_actions, "{name}");
        assert_eq!(p.services[0].held.len(), 4 - want_actions, "{name}");
        assert_eq!(p.memory.approval_consumed.as_deref(), token, "{name}");
    }
    // Not consumed while nothing may act, nor in dry-run.
    fx.approval = Some("6".into());
    fx.memory.approval_consumed = None;
    fx.acting = false;
    assert!(!fx.run().approval_consumed);
    fx.acting = true;
    fx.services.push(ServiceListing {
        service: svc("billing"),
        listing: Err("timeout".into()),
        fresh: true,
    });
    assert!(
        !fx.run().approval_consumed,
        "a partial pass does not spend the approval"
    );
    fx.services.pop();
    fx.policy.dry_run = true;
    let p = fx.run();
    assert!(!p.approval_consumed && p.memory.approval_consumed.is_none());
}

#[test]
fn rule7_freeze_suspends_node_based_actions() {
    use NodeReadiness::*;
    let cases: Vec<(&str, Vec<NodeReadiness>, bool)> = vec![
        ("all ready", vec![Ready, Ready, Ready, Ready], false),
        ("one of one down is not a partition", vec![NotReady], false),
        (
            "half down is not more than half",
            vec![NotReady, Unknown, Ready, Ready],
            false,
        ),
        ("two of three down", vec![NotReady, Unknown, Ready], true),
        (
            "all down",
            vec![Unknown, Unknown, Unknown, Unknown, Unknown],
            true,
        ),
    ];
    for (name, states, frozen) in cases {
        let mut fx = Fx::new(vec![inst("10.250.0.1"), inst("10.1.0.7"), inst("10.1.0.8")]);
        fx.nodes = states
            .iter()
            .enumerate()
            .map(|(i, r)| {
                node(
                    &format!("node-{i}"),
                    &format!("10.250.0.{}", i + 1),
                    *r,
                    -600,
                )
            })
            .collect();
        fx.pods = vec![unready(pod("orders-1", "10.1.0.7"), Some(t(-600)))];
        fx.pods[0].node_name = Some("node-0".into());
        fx.tombs = vec![tomb("orders-2", "10.1.0.8", -600)];
        fx.policy.on_pod_unready = UnreadyAction::Disable;
        let p = fx.run();
        assert_eq!(p.frozen, frozen, "{name}");
        let s = &p.services[0];
        let node_down = states[0] != Ready;
        // The unready pod sits on node-0: when that node is down past the threshold, the pod is
        // Unreachable like the node itself (and frozen with it).
        let pod_verdict = if node_down {
            Verdict::Unreachable
        } else {
            Verdict::Unready
        };
        let want: Vec<(Verdict, ActionKind)> = [
            (node_down && !frozen).then_some((Verdict::Unreachable, ActionKind::Disable)),
            (!(node_down && frozen)).then_some((pod_verdict, ActionKind::Disable)),
            Some((Verdict::Orphan, ActionKind::Deregister)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut got: Vec<_> = s.actions.iter().map(|a| (a.verdict, a.kind)).collect();
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "{name}");
        if frozen {
            assert!(
                s.instances.iter().any(|i| i.reason.contains("frozen")),
                "{name}"
            );
        }
    }
}

#[test]
fn a_pod_unready_because_its_node_is_waits_for_the_node_threshold() {
    // One node of five just stopped reporting (not a partition yet): its pod, marked not Ready by
    // the node controller long past the grace period, is judged on the node's clock.
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.nodes = ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Unknown, -5));
    let mut p = unready(pod("orders-1", "10.1.0.7"), Some(t(-100)));
    p.node_name = Some("node-e".into());
    fx.pods = vec![p];
    fx.policy.on_pod_unready = UnreadyAction::Disable;
    fx.policy.grace_period = Duration::from_secs(1);
    let plan = fx.run();
    assert!(!plan.frozen);
    let s = &plan.services[0];
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    assert_eq!(s.instances[0].verdict, Verdict::Live);
    assert!(
        s.instances[0].reason.contains("unreachable after 60s"),
        "{}",
        s.instances[0].reason
    );
    // Past the node's threshold (and not a partition): the pod is as unreachable as its node, and
    // onNodeUnreachable applies.
    fx.nodes = ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Unknown, -61));
    let plan = fx.run();
    let got: Vec<_> = plan.services[0]
        .actions
        .iter()
        .map(|a| (a.verdict, a.kind))
        .collect();
    assert_eq!(got, [(Verdict::Unreachable, ActionKind::Disable)]);
    // A pod not Ready on a Ready node keeps its own grace period.
    fx.nodes = ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Ready, -5));
    assert_eq!(fx.run().services[0].actions.len(), 1);
}

#[test]
fn a_healing_partition_does_not_act_on_the_last_nodes_to_report() {
    use NodeReadiness::*;
    let mut fx = Fx::new(vec![inst("10.250.0.1")]);
    fx.policy.on_node_unreachable = NodeAction::Deregister;
    fx.nodes = vec![
        node("node-0", "10.250.0.1", Unknown, -300),
        node("node-1", "10.250.0.2", Unknown, -300),
        node("node-2", "10.250.0.3", Unknown, -300),
    ];
    // Partitioned: frozen, nothing acted on, and the freeze is remembered.
    let p = fx.run();
    assert!(p.frozen && p.services[0].actions.is_empty());
    assert_eq!(p.memory.frozen_at, Some(t(0)));
    // 5 s later two nodes are back, node-0 not yet (down 305 s, past the 60 s threshold).
    fx.memory = p.memory;
    fx.now = t(5);
    fx.nodes[1] = node("node-1", "10.250.0.2", Ready, 4);
    fx.nodes[2] = node("node-2", "10.250.0.3", Ready, 4);
    let p = fx.run();
    assert!(!p.frozen);
    assert!(
        p.services[0].actions.is_empty(),
        "{:?}",
        p.services[0].actions
    );
    assert_eq!(p.services[0].instances[0].verdict, Verdict::Live);
    // Still down a full threshold after the freeze ended: now it is unreachable.
    fx.memory = p.memory;
    fx.now = t(61);
    let p = fx.run();
    let got: Vec<_> = p.services[0]
        .actions
        .iter()
        .map(|a| (a.verdict, a.kind))
        .collect();
    assert_eq!(got, [(Verdict::Unreachable, ActionKind::Deregister)]);
}

#[test]
fn rule8_scope_and_port_filter_make_foreign() {
    let mk_pod = || {
        let mut p = pod("orders-1", "10.1.0.7");
        p.deletion_timestamp = Some(t(0));
        p.container_ports = vec![(Some("http".into()), 8080), (Some("metrics".into()), 9090)];
        p
    };
    /// (name, filter, instance ip, instance port, pods, expected verdict)
    type ScopeCase = (
        &'static str,
        Option<PortFilter>,
        &'static str,
        u16,
        Vec<PodFacts>,
        Verdict,
    );
    let cases: Vec<ScopeCase> = vec![
        (
            "no filter",
            None,
            "10.1.0.7",
            9999,
            vec![mk_pod()],
            Verdict::Terminating,
        ),
        (
            "number matches",
            Some(PortFilter::Number(8080)),
            "10.1.0.7",
            8080,
            vec![mk_pod()],
            Verdict::Terminating,
        ),
        (
            "number differs",
            Some(PortFilter::Number(8080)),
            "10.1.0.7",
            9090,
            vec![mk_pod()],
            Verdict::Foreign,
        ),
        (
            "name and number match",
            Some(PortFilter::Name("http".into())),
            "10.1.0.7",
            8080,
            vec![mk_pod()],
            Verdict::Terminating,
        ),
        (
            "name on another number",
            Some(PortFilter::Name("http".into())),
            "10.1.0.7",
            9090,
            vec![mk_pod()],
            Verdict::Foreign,
        ),
        (
            "unknown name",
            Some(PortFilter::Name("grpc".into())),
            "10.1.0.7",
            8080,
            vec![mk_pod()],
            Verdict::Foreign,
        ),
        (
            "orphan: the name resolves through the binding's other pods",
            Some(PortFilter::Name("http".into())),
            "10.1.0.50",
            8080,
            vec![mk_pod()],
            Verdict::Orphan,
        ),
        (
            "orphan with no pod declaring the name",
            Some(PortFilter::Name("http".into())),
            "10.1.0.50",
            8080,
            vec![],
            Verdict::Foreign,
        ),
        (
            "orphan with no pod declaring the name on this number",
            Some(PortFilter::Name("http".into())),
            "10.1.0.50",
            9090,
            vec![mk_pod()],
            Verdict::Foreign,
        ),
        (
            "outside scope",
            None,
            "172.16.0.1",
            8080,
            vec![],
            Verdict::Foreign,
        ),
        (
            "IPv6 outside an IPv4 scope",
            None,
            "fd00::7",
            8080,
            vec![],
            Verdict::Foreign,
        ),
    ];
    for (name, filter, addr, port, pods, want) in cases {
        let mut fx = Fx::new(vec![inst_in("orders", addr, port)]);
        fx.pods = pods;
        fx.policy.port = filter;
        let p = fx.run();
        let s = &p.services[0];
        assert_eq!(s.instances[0].verdict, want, "{name}");
        if want == Verdict::Foreign {
            assert!(s.actions.is_empty() && s.waiting.is_empty(), "{name}");
            assert_eq!(s.counts.foreign, 1, "{name}");
        }
    }
}

/// Issue 15, case 7: where the scope misses the pod network (nodes without podCIDR under the
/// default scope), the binding's own pods' instances are Foreign; the plan says so instead of
/// staying silent, and names nothing for addresses no pod of the binding holds.
#[test]
fn pods_outside_the_default_scope_are_reported_not_silently_ignored() {
    let mut fx = Fx::new(vec![
        inst_in("orders", "172.20.3.4", 8080),
        inst_in("orders", "172.20.3.5", 8080),
        inst_in("orders", "10.1.0.7", 8080),
    ]);
    fx.pods = vec![pod("orders-1", "172.20.3.4"), pod("orders-2", "10.1.0.7")];
    let mut other = pod("billing-1", "172.20.3.5");
    other.matches = false;
    fx.pods.push(other);
    let p = fx.run();
    let s = &p.services[0];
    assert_eq!(s.counts.foreign, 2);
    assert!(s.actions.is_empty() && s.waiting.is_empty());
    let flagged: Vec<_> = s
        .instances
        .iter()
        .map(|v| v.pod_outside_scope.as_deref())
        .collect();
    assert_eq!(flagged, [None, Some("shop/orders-1"), None]);
    let reason = &s.instances[1].reason;
    assert!(
        reason.contains("pod shop/orders-1 of this binding"),
        "{reason}"
    );
    let msg = p.scope_gap(true).expect("a scope gap");
    assert!(msg.starts_with("1 instance(s)"), "{msg}");
    assert!(
        msg.contains("172.20.3.4:8080 of orders (pod shop/orders-1)"),
        "{msg}"
    );
    assert!(msg.contains("spec.scope.cidrs"), "{msg}");
    assert!(p.scope_gap(false).unwrap().contains("does not cover"));
    // Every pod in scope: nothing to say.
    fx.pods.remove(0);
    assert_eq!(fx.run().scope_gap(true), None);
}

/// Issue 15, case 6: with `pods.port: <name>` and the app scaled to zero, the name still resolves
/// through the deleted pods the view remembers, so their instances go instead of turning Foreign.
#[test]
fn named_port_with_no_pod_left_resolves_through_the_deleted_pods() {
    let scaled_to_zero = |port: u16| {
        let mut fx = Fx::new(vec![
            inst_in("orders", "10.1.0.7", port),
            inst_in("orders", "10.1.0.50", port),
        ]);
        fx.policy.port = Some(PortFilter::Name("http".into()));
        fx.tombs = vec![tomb("orders-1", "10.1.0.7", -60)];
        fx.run()
    };
    let p = scaled_to_zero(8080);
    let verdicts: Vec<_> = p.services[0].instances.iter().map(|i| i.verdict).collect();
    assert_eq!(verdicts, [Verdict::Orphan, Verdict::Orphan]);
    // The deleted pod's own instance is past grace; the other was first seen now.
    assert_eq!(p.services[0].actions.len(), 1);
    assert_eq!(p.services[0].actions[0].instance.ip, ip("10.1.0.7"));
    assert_eq!(p.services[0].waiting.len(), 1);
    // Another number under that name is still not governed.
    let p = scaled_to_zero(9090);
    assert!(p.services[0].actions.is_empty());
    assert_eq!(p.services[0].counts.foreign, 2);
    // Nothing remembers the name (an operator restarted after the scale-down): Foreign, and the
    // reason says what to do.
    let mut fx = Fx::new(vec![inst_in("orders", "10.1.0.50", 8080)]);
    fx.policy.port = Some(PortFilter::Name("http".into()));
    let p = fx.run();
    let i = &p.services[0].instances[0];
    assert_eq!(i.verdict, Verdict::Foreign);
    assert!(
        i.reason.contains("port name 'http' unknown"),
        "{}",
        i.reason
    );
}

#[test]
fn rule9_dry_run_lists_would_be_actions_only() {
    let mut fx = orphans(3);
    fx.policy.dry_run = true;
    fx.policy.max_removals = MaxRemovals::Count(2);
    let p = fx.run();
    let s = &p.services[0];
    assert!(p.dry_run);
    assert!(s.actions.is_empty() && p.actions().next().is_none());
    assert_eq!(s.would_act.len(), 2);
    assert_eq!(s.held.len(), 1);
    assert!(p.memory.removals.is_empty() && p.memory.deregistered.is_empty());
}

#[test]
fn rule10_output_is_ordered_and_deterministic() {
    let mut fx = orphans(5);
    fx.services.push(ServiceListing {
        service: svc("billing"),
        listing: Ok(Arc::new(ServiceSnapshot {
            service: svc("billing"),
            instances: vec![
                inst_in("billing", "10.1.0.99", 80),
                inst_in("billing", "10.1.0.98", 80),
            ],
            unaddressable: vec![],
        })),
        fresh: true,
    });
    let a = fx.run();
    let mut shuffled = fx.clone();
    shuffled.services.reverse();
    if let Ok(s) = &mut shuffled.services[1].listing {
        Arc::make_mut(s).instances.reverse();
    }
    shuffled.tombs.reverse();
    let b = shuffled.run();
    assert_eq!(a, b);
    assert_eq!(a.services[0].service.name, "billing");
    let keys: Vec<_> = a.services[1]
        .instances
        .iter()
        .map(|i| i.instance.ip.to_string())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by_key(|s| s.parse::<IpAddr>().ok());
    assert_eq!(keys, sorted);
    let waiting: Vec<_> = a.services[0].waiting.iter().map(|w| w.due_at).collect();
    assert!(waiting.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn counts_and_reasons() {
    let mut fx = Fx::new(vec![
        inst("10.1.0.1"),
        inst("10.1.0.2"),
        disabled(inst("10.1.0.3"), Some(UID)),
        inst("192.168.0.1"),
    ]);
    fx.pods = vec![pod("orders-1", "10.1.0.1")];
    fx.tombs = vec![
        tomb("orders-7d9f", "10.1.0.2", -31),
        tomb("orders-3", "10.1.0.3", -600),
    ];
    let p = fx.run();
    let s = &p.services[0];
    assert_eq!(
        s.counts,
        Counts {
            total: 4,
            live: 1,
            stale: 2,
            offline: 1,
            foreign: 1,
            held: 0
        }
    );
    let a = &s.actions[0];
    assert_eq!(
        a.reason,
        format!(
            "pod shop/orders-7d9f deleted 31s ago; {}",
            super::cause::EPHEMERAL
        )
    );
    // Disabled, it is not served, and still listed: the same cause says why.
    let offline = s
        .instances
        .iter()
        .find(|v| v.instance.ip.to_string() == "10.1.0.3")
        .expect("the disabled instance");
    assert_eq!(
        offline.reason,
        format!(
            "pod shop/orders-3 deleted 600s ago; {}",
            super::cause::EPHEMERAL
        )
    );
    assert_eq!(a.evidence_at, t(-31));
    assert_eq!(a.confirm, Confirm::NoLivePodWithIp(ip("10.1.0.2")));

    let mut fx = Fx::new(vec![inst("10.250.0.9")]);
    fx.nodes = ready_nodes_plus(node(
        "kwok-node-1",
        "10.250.0.9",
        NodeReadiness::Unknown,
        -75,
    ));
    let a = &fx.run().services[0].actions[0];
    assert_eq!(
        a.reason,
        format!(
            "node kwok-node-1 unreachable for 75s; {}",
            super::cause::EPHEMERAL
        )
    );
    assert_eq!(a.confirm, Confirm::None);

    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    let mut other = pod("billing-1", "10.1.0.7");
    other.matches = false;
    other.namespace = "pay".into();
    other.container_ports = vec![(Some("http".into()), 9090)];
    fx.pods = vec![other];
    let v = &fx.run().services[0].instances[0];
    assert_eq!(
        v.reason,
        format!(
            "IP now held by pod pay/billing-1 of another app; {}",
            super::cause::EPHEMERAL
        )
    );
}

#[test]
fn liveliest_pod_wins_when_an_ip_is_reused() {
    let mut old = unready(pod("orders-old", "10.1.0.7"), Some(t(-900)));
    old.phase = PodPhase::Failed;
    let new = pod("orders-new", "10.1.0.7");
    let mut fx = Fx::new(vec![disabled(inst("10.1.0.7"), Some(UID))]);
    fx.pods = vec![old, new];
    let s = &fx.run().services[0];
    assert_eq!(s.instances[0].verdict, Verdict::Live);
    assert_eq!(s.actions[0].kind, ActionKind::Enable);
}

#[test]
fn settle_period_keeps_waiting_but_holds_nothing() {
    let mut fx = Fx::new(vec![inst("10.1.0.7"), inst("10.1.0.8")]);
    fx.tombs = vec![
        tomb("orders-1", "10.1.0.7", -100),
        tomb("orders-2", "10.1.0.8", -5),
    ];
    fx.policy.max_removals = MaxRemovals::Count(0);
    fx.acting = false;
    let p = fx.run();
    let s = &p.services[0];
    assert!(s.actions.is_empty() && s.held.is_empty());
    assert_eq!(s.waiting.len(), 1, "the grace clock is still shown");
    assert_eq!(
        p.memory.first_seen_stale.len(),
        2,
        "evidence is still remembered"
    );
}

#[test]
fn executor_feedback_on_memory() {
    let key = inst("10.1.0.7").key;
    let mut m = Memory::default();
    m.deregistered.insert(key.clone(), t(-5));
    assert!(m.deregister_ineffective(&key, t(0), chrono::TimeDelta::seconds(300)));
    m.forget_deregistration(&key);
    assert!(!m.deregister_ineffective(&key, t(0), chrono::TimeDelta::seconds(300)));
    m.mark_ineffective(&key);
    assert!(m.deregister_ineffective(&key, t(0), chrono::TimeDelta::seconds(300)));
}

#[test]
fn unready_reason_and_extreme_durations_do_not_overflow() {
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.pods = vec![unready(pod("orders-1", "10.1.0.7"), Some(t(-12)))];
    fx.policy.on_pod_unready = UnreadyAction::Disable;
    fx.policy.grace_period = Duration::MAX;
    fx.policy.removal_window = Duration::MAX;
    let p = fx.run();
    let s = &p.services[0];
    assert_eq!(
        s.instances[0].reason,
        format!(
            "pod shop/orders-1 not ready for 12s; {}",
            super::cause::EPHEMERAL
        )
    );
    assert!(s.actions.is_empty() && s.waiting.len() == 1);
}

#[test]
fn next_node_deadline_is_the_earliest_threshold_crossing_still_ahead() {
    let policy = Policy {
        node_unreachable_after: Duration::from_secs(60),
        ..Policy::default()
    };
    let mut nodes = ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Unknown, -10));
    nodes.push(node("node-f", "10.250.0.10", NodeReadiness::NotReady, -30));
    // Already past the threshold: acted on in this pass, no wake-up needed for it.
    nodes.push(node("node-g", "10.250.0.11", NodeReadiness::NotReady, -90));
    assert_eq!(next_node_deadline(&nodes, &policy, t(0)), Some(t(30)));
    assert_eq!(
        next_node_deadline(
            &ready_nodes_plus(node("node-e", "10.250.0.9", NodeReadiness::Ready, -10)),
            &policy,
            t(0)
        ),
        None
    );
    let mut unknown_since = node("node-h", "10.250.0.12", NodeReadiness::Unknown, 0);
    unknown_since.readiness_since = None;
    assert_eq!(next_node_deadline(&[unknown_since], &policy, t(0)), None);
}

#[test]
fn disabled_instances_are_remembered_while_listed() {
    let listed = inst("10.1.0.7").key;
    let unlisted = inst("10.1.0.8").key;
    let mut m = Memory::default();
    for k in [&listed, &unlisted] {
        m.record_disabled(k);
        m.note_offline(k, t(0), "kept by a gRPC connection".into());
    }
    let service = listed.service.clone();
    let governed: BTreeSet<&ServiceKey> = [&service].into_iter().collect();
    let keys: BTreeSet<&InstanceKey> = [&listed].into_iter().collect();
    let by_service: BTreeMap<&ServiceKey, BTreeSet<&InstanceKey>> = [(&service, keys)].into();
    m.prune(
        &governed,
        &by_service,
        t(0),
        chrono::TimeDelta::seconds(300),
    );
    assert_eq!(m.disabled.keys().collect::<Vec<_>>(), [&listed]);
    assert!(m.disabled[&listed].is_some(), "the note goes with the key");
    m.forget_disabled(&listed);
    assert!(m.disabled.is_empty());
    // A note comes only for an instance we disabled.
    m.note_offline(&unlisted, t(0), "kept".into());
    assert!(m.disabled.is_empty());
}

fn departure(name: &str, addr: &str, at: i64, deleted: bool) -> crate::model::NodeDeparture {
    crate::model::NodeDeparture {
        name: name.into(),
        internal_ips: vec![ip(addr)],
        pod_cidrs: vec![],
        at: t(at),
        deleted,
    }
}

/// Verdict table: "that node no longer exists | Gone | action after grace", from the moment the
/// view saw it go; and an InternalIP a node no longer has likewise.
#[test]
fn an_instance_on_a_departed_nodes_address_is_gone_after_grace_from_the_departure() {
    for deleted in [true, false] {
        let mut fx = Fx::new(vec![inst("10.250.0.9")]);
        fx.policy.grace_period = std::time::Duration::from_secs(30);
        fx.departed = vec![departure("node-z", "10.250.0.9", -10, deleted)];
        let p = fx.run();
        let s = &p.services[0];
        assert!(s.actions.is_empty(), "{s:?}");
        assert_eq!(s.waiting.len(), 1, "{s:?}");
        assert_eq!(s.waiting[0].due_at, t(20));
        assert_eq!(s.instances[0].verdict, Verdict::Gone);
        let reason = &s.instances[0].reason;
        let said = if deleted {
            "node node-z deleted 10s ago"
        } else {
            "no longer an InternalIP of node node-z"
        };
        assert!(reason.contains(said), "{reason}");
        fx.now = t(21);
        let p = fx.run();
        let a = p.actions().next().expect("due after grace");
        assert_eq!((a.kind, a.verdict), (ActionKind::Deregister, Verdict::Gone));
        assert_eq!(a.confirm, Confirm::NoLivePodWithIp(ip("10.250.0.9")));
    }
}

/// A departed node's address that a matching Ready pod holds now is Live, and one a node holds
/// again is that node's.
#[test]
fn a_departed_nodes_address_held_again_is_judged_by_its_holder() {
    let mut fx = Fx::new(vec![inst("10.250.0.9")]);
    fx.departed = vec![departure("node-z", "10.250.0.9", -100, true)];
    fx.pods = vec![pod("orders-1", "10.250.0.9")];
    assert_eq!(fx.run().services[0].instances[0].verdict, Verdict::Live);
    fx.pods.clear();
    fx.nodes
        .push(node("node-z2", "10.250.0.9", NodeReadiness::Ready, -5));
    assert_eq!(fx.run().services[0].instances[0].verdict, Verdict::Live);
}

/// Issue 15 (8): instances at addresses the operator cannot act on are Foreign, counted, and the
/// rest of the service is reconciled.
#[test]
fn unaddressable_instances_are_foreign_and_the_rest_of_the_service_is_reconciled() {
    let mut fx = Fx::new(vec![inst("10.1.0.7")]);
    fx.policy.grace_period = std::time::Duration::ZERO;
    if let Ok(snap) = &mut fx.services[0].listing {
        Arc::make_mut(snap).unaddressable = vec![crate::model::Unaddressable {
            cluster: "DEFAULT".into(),
            address: "orders.shop.svc:8080".into(),
            why: "is not an IP address".into(),
        }];
    }
    let p = fx.run();
    let s = &p.services[0];
    assert_eq!(
        (s.counts.total, s.counts.foreign, s.counts.stale),
        (2, 1, 1)
    );
    assert_eq!(s.unaddressable.len(), 1);
    assert!(s.blocked.is_none());
    assert_eq!(p.actions().count(), 1, "the orphan beside it is acted on");
}

/// Issue 17 B: `live` Ready pods, `unseen` instances at addresses no pod or node of this cluster
/// has shown (another cluster's, or stale from before the operator started), `seen` instances of
/// pods this cluster deleted (tombstones). Grace 0: every stale instance is due now.
fn shared_fx(live: usize, unseen: usize, seen: usize) -> Fx {
    let mut instances = Vec::new();
    let mut fx = Fx::new(vec![]);
    for i in 0..live {
        let addr = format!("10.1.0.{}", 10 + i);
        instances.push(inst(&addr));
        fx.pods.push(pod(&format!("orders-{i}"), &addr));
    }
    for i in 0..unseen {
        instances.push(inst(&format!("10.9.0.{}", 10 + i)));
    }
    for i in 0..seen {
        let addr = format!("10.1.1.{}", 10 + i);
        instances.push(inst(&addr));
        fx.tombs.push(tomb(&format!("orders-gone-{i}"), &addr, -60));
    }
    fx.services = Fx::new(instances).services;
    fx.policy.grace_period = Duration::ZERO;
    fx
}

fn ips_of<'a>(actions: impl Iterator<Item = &'a Action>) -> Vec<String> {
    actions.map(|a| a.instance.ip.to_string()).collect()
}

#[test]
fn issue17_most_instances_at_unseen_addresses_have_their_removals_held() {
    // (name, live, unseen, seen, removals acted on, removals held as another cluster's)
    let cases: [(&str, usize, usize, usize, usize, usize); 6] = [
        ("another cluster's two beside one of ours", 1, 2, 0, 0, 2),
        ("no pod of ours, three unseen", 0, 3, 0, 0, 3),
        (
            "a single stale instance after a restart still goes",
            1,
            1,
            0,
            1,
            0,
        ),
        ("addresses this cluster showed go", 1, 0, 3, 3, 0),
        (
            "unseen but a minority: not taken for another cluster",
            3,
            2,
            0,
            2,
            0,
        ),
        ("held unseen ones, the seen one goes", 0, 3, 1, 1, 3),
    ];
    for (name, live, unseen, seen, want_acted, want_held) in cases {
        let p = shared_fx(live, unseen, seen).run();
        let s = &p.services[0];
        assert_eq!(
            s.actions.len(),
            want_acted,
            "{name}: {:?}",
            ips_of(s.actions.iter())
        );
        assert_eq!(
            s.held.len(),
            want_held,
            "{name}: {:?}",
            ips_of(s.held.iter())
        );
        assert!(
            s.actions.iter().all(|a| a.kind == ActionKind::Deregister),
            "{name}"
        );
        match &s.shared {
            Some(shared) => {
                assert!(want_held > 0, "{name}: {shared:?}");
                assert_eq!(shared.unseen, unseen, "{name}");
                assert_eq!(shared.in_scope, live + unseen + seen, "{name}");
                assert_eq!(s.held_as_shared().count(), want_held, "{name}");
                assert!(s
                    .held
                    .iter()
                    .all(|a| a.instance.ip.to_string().starts_with("10.9.")));
                assert!(
                    s.held[0].reason.contains("shared with another cluster"),
                    "{name}"
                );
            }
            None => assert_eq!(want_held, 0, "{name}"),
        }
        assert_eq!(s.counts.held, want_held, "{name}");
    }
}

#[test]
fn issue17_an_approval_releases_the_removals_held_as_another_clusters() {
    let mut fx = shared_fx(0, 3, 0);
    fx.approval = Some("1".into());
    let p = fx.run();
    assert!(p.approval_consumed);
    assert_eq!(p.services[0].actions.len(), 3);
    assert!(p.services[0].held.is_empty());
    // Released: none is named held any more (the status counted them held once: a crash, found by
    // e2e_bad_refs on rnacos).
    assert!(p.services[0].shared.is_some(), "still looks shared");
    assert_eq!(p.services[0].held_as_shared().count(), 0);
}

#[test]
fn issue17_a_blocked_pass_holds_nothing_and_unsynced_caches_judge_nothing_shared() {
    for (name, synced, acting) in [
        ("caches not synced", false, true),
        ("settling", true, false),
    ] {
        let mut fx = shared_fx(0, 3, 0);
        fx.synced = synced;
        fx.acting = acting;
        let p = fx.run();
        let s = &p.services[0];
        assert!(s.held.is_empty() && s.actions.is_empty(), "{name}");
        assert_eq!(s.held_as_shared().count(), 0, "{name}: {:?}", s.shared);
    }
    // Before the caches synced every address looks unseen: nothing is judged shared (at every
    // start, each service of two instances or more was taken for another cluster's).
    let mut fx = shared_fx(2, 0, 0);
    fx.pods.clear();
    fx.synced = false;
    assert_eq!(fx.run().services[0].shared, None);
    fx.synced = true;
    assert!(
        fx.run().services[0].shared.is_some(),
        "the pods gone, synced: judged shared"
    );
}

#[test]
fn issue17_instance_metadata_claims_this_clusters_instances_only() {
    let selector = serde_json::from_value(serde_json::json!({
        "matchLabels": {"k8s-cluster": "prod-a"}
    }))
    .unwrap();
    let labelled = |addr: &str, cluster: Option<&str>| {
        let mut i = inst(addr);
        if let Some(c) = cluster {
            i.metadata.insert("k8s-cluster".into(), c.into());
        }
        i
    };
    let mut fx = Fx::new(vec![
        labelled("10.9.0.1", Some("prod-a")),
        labelled("10.9.0.2", Some("prod-b")),
        labelled("10.9.0.3", None),
        labelled("10.9.0.4", Some("prod-a")),
    ]);
    fx.policy.grace_period = Duration::ZERO;
    fx.policy.instance_claim = Some(crate::cluster::LabelMatcher::new(&selector).unwrap());
    let p = fx.run();
    let s = &p.services[0];
    let verdicts: Vec<(String, Verdict)> = s
        .instances
        .iter()
        .map(|v| (v.instance.ip.to_string(), v.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("10.9.0.1".to_string(), Verdict::Orphan),
            ("10.9.0.2".to_string(), Verdict::Foreign),
            ("10.9.0.3".to_string(), Verdict::Foreign),
            ("10.9.0.4".to_string(), Verdict::Orphan),
        ]
    );
    assert!(s.instances[1].reason.contains("scope.instanceMetadata"));
    // Claimed: the guard against another cluster's instances has nothing left to guard.
    assert!(s.shared.is_none());
    assert_eq!(ips_of(s.actions.iter()), ["10.9.0.1", "10.9.0.4"]);
    assert_eq!(s.counts.foreign, 2);
}

/// Issue 19: a pass whose removals take away a service's last usable instances (enabled, healthy,
/// weight above 0) says so; consumers with push-empty protection ignore that push.
#[test]
fn issue19_removals_that_take_away_the_last_usable_instances_empty_the_service() {
    let unhealthy = |mut i: Instance| {
        i.healthy = false;
        i
    };
    let weightless = |mut i: Instance| {
        i.weight = 0.0;
        i
    };
    let foreign = {
        let mut i = inst("192.168.0.9");
        i.key.port = 8080;
        i
    };
    let gone = "10.1.0.7";
    for (name, others, dry_run, budget, want) in [
        ("the last instance goes", vec![], false, 100, true),
        (
            "a live one stays",
            vec![inst("10.1.0.8")],
            false,
            100,
            false,
        ),
        (
            "the one left is unhealthy",
            vec![unhealthy(inst("10.1.0.8"))],
            false,
            100,
            true,
        ),
        (
            "the one left weighs 0",
            vec![weightless(inst("10.1.0.8"))],
            false,
            100,
            true,
        ),
        (
            "a foreign instance stays",
            vec![foreign.clone()],
            false,
            100,
            false,
        ),
        ("dry run: would empty it", vec![], true, 100, true),
        ("held by the budget: nothing goes", vec![], false, 0, false),
    ] {
        let mut all = vec![inst(gone)];
        let live_pods: Vec<PodFacts> = others
            .iter()
            .filter(|i| i.key.ip.to_string().starts_with("10.1."))
            .map(|i| pod("orders-live", &i.key.ip.to_string()))
            .collect();
        all.extend(others);
        let mut fx = Fx::new(all);
        fx.pods = live_pods;
        fx.tombs = vec![tomb("orders-1", gone, -100)];
        fx.policy.dry_run = dry_run;
        fx.policy.max_removals = MaxRemovals::Count(budget);
        let p = fx.run();
        let s = &p.services[0];
        assert_eq!(s.empties, want, "{name}: {s:#?}");
    }
    // An instance already unusable that goes changes nothing consumers see.
    let mut fx = Fx::new(vec![unhealthy(inst(gone))]);
    fx.tombs = vec![tomb("orders-1", gone, -100)];
    let p = fx.run();
    assert_eq!(p.services[0].actions.len(), 1);
    assert!(!p.services[0].empties);
}

/// Issue 19: a removal the budget holds says so, with the budget's state; a stale instance says why
/// Nacos still serves it.
#[test]
fn issue19_held_removals_name_the_budget_and_stale_instances_their_cause() {
    let mut persistent = inst("10.1.0.8");
    persistent.ephemeral = false;
    let mut fx = Fx::new(vec![inst("10.1.0.7"), persistent]);
    fx.tombs = vec![
        tomb("orders-1", "10.1.0.7", -100),
        tomb("orders-2", "10.1.0.8", -100),
    ];
    fx.policy.max_removals = MaxRemovals::Count(1);
    let p = fx.run();
    let s = &p.services[0];
    assert_eq!((s.actions.len(), s.held.len()), (1, 1));
    let window = fx.policy.removal_window.as_secs();
    assert_eq!(
        s.held_with_budget()
            .next()
            .and_then(|(_, budget)| budget)
            .map(|b| b.to_string())
            .as_deref(),
        Some(format!("held by the removal budget (1 of 1 removals per {window}s used)").as_str())
    );
    let reason = |ip: &str| {
        s.instances
            .iter()
            .find(|v| v.instance.ip.to_string() == ip)
            .map(|v| v.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("10.1.0.7").ends_with(super::cause::EPHEMERAL),
        "{s:#?}"
    );
    assert!(
        reason("10.1.0.8").ends_with("; persistent: Nacos never removes these by itself"),
        "{s:#?}"
    );
    // In grace, the same two: the budget's one removal goes to the first to fall due, the
    // second would be held then.
    fx.policy.grace_period = Duration::from_secs(300);
    let p = fx.run();
    let s = &p.services[0];
    assert_eq!((s.actions.len(), s.held.len(), s.waiting.len()), (0, 0, 2));
    let held: Vec<_> = s.held_when_due().map(|w| &w.action.instance).collect();
    assert_eq!(held, [&s.waiting[1].action.instance]);
    fx.policy.max_removals = MaxRemovals::Count(2);
    assert_eq!(fx.run().services[0].held_when_due().count(), 0);
}
