//! Property tests for the safety invariants, over random clusters, registries and policies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::tests::{inst, node, pod, policy, svc, t, Fx, UID};
use super::*;
use crate::model::{PodPhase, DISABLED_BY_KEY};

/// A small address space so pods, nodes, tombstones and instances collide often.
fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u8..8).prop_map(|i| format!("10.1.0.{i}")),
        2 => (1u8..4).prop_map(|i| format!("10.250.0.{i}")),
        1 => Just("192.168.0.1".to_string()),
    ]
}

fn instance() -> impl Strategy<Value = Instance> {
    (
        addr(),
        prop_oneof![Just(8080u16), Just(9090)],
        any::<bool>(),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(a, port, enabled, marker, ephemeral)| {
            let mut i = inst(&a);
            i.key.port = port;
            i.enabled = enabled;
            i.ephemeral = ephemeral;
            match marker {
                1 => drop(i.metadata.insert(DISABLED_BY_KEY.into(), UID.into())),
                2 => drop(i.metadata.insert(DISABLED_BY_KEY.into(), "other".into())),
                _ => {}
            }
            i
        })
}

fn pod_facts() -> impl Strategy<Value = PodFacts> {
    (
        (0u8..8).prop_map(|i| format!("10.1.0.{i}")),
        any::<bool>(),
        prop_oneof![
            Just(PodPhase::Running),
            Just(PodPhase::Pending),
            Just(PodPhase::Failed)
        ],
        any::<bool>(),
        proptest::option::of(-400i64..400),
        proptest::option::of(-400i64..0),
        0u8..3,
    )
        .prop_map(|(a, matches, phase, ready, deleted, since, ports)| {
            let mut p = pod(&format!("p-{a}"), &a);
            p.matches = matches;
            p.phase = phase;
            p.ready = ready;
            p.deletion_timestamp = deleted.map(t);
            p.ready_since = since.map(t);
            p.container_ports = match ports {
                0 => vec![(Some("http".into()), 8080)],
                1 => vec![(Some("grpc".into()), 9090)],
                _ => vec![],
            };
            p
        })
}

fn tombstone() -> impl Strategy<Value = PodTombstone> {
    ((0u8..8), any::<bool>(), -400i64..0).prop_map(|(i, matches, at)| PodTombstone {
        uid: format!("t-{i}"),
        namespace: "shop".into(),
        name: format!("gone-{i}"),
        ips: vec![format!("10.1.0.{i}").parse().unwrap()],
        matches,
        deleted_at: t(at),
        container_ports: vec![(Some("http".into()), 8080)],
    })
}

fn nodes() -> impl Strategy<Value = Vec<NodeFacts>> {
    proptest::collection::vec((0u8..3, -400i64..0), 3).prop_map(|states| {
        states
            .into_iter()
            .enumerate()
            .map(|(i, (r, since))| {
                let readiness = [
                    NodeReadiness::Ready,
                    NodeReadiness::NotReady,
                    NodeReadiness::Unknown,
                ][r as usize];
                node(
                    &format!("node-{i}"),
                    &format!("10.250.0.{}", i + 1),
                    readiness,
                    since,
                )
            })
            .collect()
    })
}

fn any_policy() -> impl Strategy<Value = Policy> {
    (
        any::<bool>(),
        0u64..120,
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        prop_oneof![
            (0u32..4).prop_map(MaxRemovals::Count),
            (0u32..=100).prop_map(MaxRemovals::Percent)
        ],
        proptest::option::of(prop_oneof![
            Just(PortFilter::Number(8080)),
            Just(PortFilter::Name("http".into()))
        ]),
        any::<bool>(),
    )
        .prop_map(
            |(deregister, grace, term, unready, node_action, max, port, dry_run)| Policy {
                action: if deregister {
                    RemovalAction::Deregister
                } else {
                    RemovalAction::Disable
                },
                grace_period: Duration::from_secs(grace),
                on_pod_terminating: if term {
                    TerminatingAction::Deregister
                } else {
                    TerminatingAction::Ignore
                },
                on_pod_unready: if unready {
                    UnreadyAction::Disable
                } else {
                    UnreadyAction::Ignore
                },
                on_node_unreachable: [
                    NodeAction::Ignore,
                    NodeAction::Disable,
                    NodeAction::Deregister,
                ][node_action as usize],
                max_removals: max,
                port,
                dry_run,
                ..policy()
            },
        )
}

prop_compose! {
    fn fixture()(
        instances in proptest::collection::vec(instance(), 0..10),
        pods in proptest::collection::vec(pod_facts(), 0..8),
        tombs in proptest::collection::vec(tombstone(), 0..4),
        nodes in nodes(),
        policy in any_policy(),
        approval in proptest::option::of(Just("1".to_string())),
    ) -> Fx {
        let mut fx = Fx::new(dedup(instances));
        fx.pods = pods;
        // Kubernetes gives every pod its own UID and name.
        for (i, p) in fx.pods.iter_mut().enumerate() {
            p.uid = format!("pod-{i}");
            p.name = format!("p-{i}");
        }
        fx.tombs = tombs;
        fx.nodes = nodes;
        fx.policy = policy;
        fx.approval = approval;
        fx
    }
}

/// Nacos lists each ip:port:cluster once.
fn dedup(instances: Vec<Instance>) -> Vec<Instance> {
    let by_key: BTreeMap<_, _> = instances.into_iter().map(|i| (i.key.clone(), i)).collect();
    by_key.into_values().collect()
}

/// Every action the plan mentions, wherever it sits.
fn all_actions(s: &ServicePlan) -> impl Iterator<Item = &Action> {
    s.actions
        .iter()
        .chain(&s.held)
        .chain(&s.would_act)
        .chain(s.waiting.iter().map(|w| &w.action))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_removes_live_never_touches_foreign(fx in fixture()) {
        let p = fx.run();
        for s in &p.services {
            let verdicts: BTreeMap<_, _> = s.instances.iter().map(|v| (&v.instance, v.verdict)).collect();
            for a in all_actions(s) {
                let v = verdicts[&a.instance];
                prop_assert_ne!(v, Verdict::Foreign);
                prop_assert_eq!(v, a.verdict);
                if a.kind.is_removal() {
                    prop_assert!(v.is_stale(), "{:?} on a {:?} instance", a.kind, v);
                } else {
                    prop_assert_eq!(v, Verdict::Live);
                }
            }
            // The shared-service guard holds only orphans at unseen addresses, and only while it
            // judges the service shared.
            for a in s.held_as_shared() {
                prop_assert!(s.shared.is_some());
                prop_assert_eq!(a.verdict, Verdict::Orphan, "{}", a.instance);
            }
            // A service is said to be emptied only by removals this pass makes (or would make).
            if s.empties {
                prop_assert!(s.actions.iter().chain(&s.would_act).any(|a| a.kind.is_removal()));
            }
        }
    }

    /// Issue 15, case 2: a Ready pod holding the address and declaring the instance's port is
    /// evidence of life whichever selector matches it (unless its node is down, which makes the
    /// Ready status stale).
    #[test]
    fn no_removal_of_an_address_a_ready_pod_holds_on_a_matching_port(fx in fixture()) {
        let p = fx.run();
        let node_ok = |name: &Option<String>| {
            !fx.nodes.iter().any(|n| {
                Some(&n.name) == name.as_ref() && n.readiness != NodeReadiness::Ready
            })
        };
        for s in &p.services {
            for a in all_actions(s).filter(|a| a.kind.is_removal()) {
                let alive = fx.pods.iter().find(|pod| {
                    pod.ips.contains(&a.instance.ip)
                        && pod.phase == PodPhase::Running
                        && pod.ready
                        && pod.deletion_timestamp.is_none()
                        && node_ok(&pod.node_name)
                        && pod.container_ports.iter().any(|(_, n)| *n == a.instance.port)
                });
                prop_assert!(alive.is_none(), "{:?} of {} while {:?} serves it", a.kind, a.instance, alive);
            }
        }
    }

    #[test]
    fn enable_only_with_our_marker(fx in fixture()) {
        let p = fx.run();
        let listed: BTreeMap<_, _> = match &fx.services[0].listing {
            Ok(s) => s.instances.iter().map(|i| (&i.key, i)).collect(),
            Err(_) => BTreeMap::new(),
        };
        for a in all_actions(&p.services[0]).filter(|a| a.kind == ActionKind::Enable) {
            let i = listed[&a.instance];
            prop_assert!(!i.enabled && i.disabled_by() == Some(UID));
        }
        for a in all_actions(&p.services[0]).filter(|a| a.kind == ActionKind::Disable) {
            prop_assert!(listed[&a.instance].enabled, "disabling what is already disabled");
        }
    }

    #[test]
    fn no_action_without_evidence(fx in fixture(), which in 0u8..3) {
        let mut fx = fx;
        match which {
            0 => fx.synced = false,
            1 => fx.acting = false,
            _ => fx.services[0].listing = Err("boom".into()),
        }
        let p = fx.run();
        for s in &p.services {
            prop_assert!(s.actions.is_empty() && s.held.is_empty() && s.would_act.is_empty());
            prop_assert!(s.blocked.is_some());
        }
        prop_assert!(!p.approval_consumed);
        prop_assert_eq!(&p.memory.removals, &fx.memory.removals);
    }

    #[test]
    fn input_order_does_not_matter(fx in fixture()) {
        let mut reversed = fx.clone();
        reversed.pods.reverse();
        reversed.nodes.reverse();
        reversed.tombs.reverse();
        if let Ok(s) = &mut reversed.services[0].listing {
            Arc::make_mut(s).instances.reverse();
        }
        prop_assert_eq!(fx.run(), reversed.run());
    }

    /// Runs passes at random intervals, feeding memory back and letting the removed instances vanish,
    /// and checks every window of the run.
    #[test]
    fn budget_holds_in_every_window(
        fx in fixture(),
        limit in 0u32..4,
        steps in proptest::collection::vec(1i64..200, 1..12),
    ) {
        let mut fx = fx;
        fx.policy.max_removals = MaxRemovals::Count(limit);
        fx.policy.dry_run = false;
        fx.approval = None;
        let window = 300;
        let mut removal_times = Vec::new();
        for step in steps {
            let p = fx.run();
            let removed: Vec<_> = p.actions().filter(|a| a.kind.is_removal()).cloned().collect();
            removal_times.extend(removed.iter().map(|_| fx.now));
            if let Ok(snapshot) = &mut fx.services[0].listing {
                for a in &removed {
                    apply(Arc::make_mut(snapshot), a);
                }
            }
            fx.memory = p.memory;
            fx.now += chrono::TimeDelta::seconds(step);
        }
        for start in &removal_times {
            let end = *start + chrono::TimeDelta::seconds(window);
            let n = removal_times.iter().filter(|r| *r >= start && *r < &end).count();
            prop_assert!(n <= limit as usize, "{} removals in the window from {}", n, start);
        }
    }
}

/// How a removal went, as the executor reports it to memory and Nacos shows it afterwards.
#[derive(Debug, Clone, Copy)]
enum Took {
    /// Deleted, or disabled, as planned.
    AsPlanned,
    /// A DELETE answered `ok` that did not take: the executor disabled the instance instead.
    DisabledInstead,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 15 (1): a percentage budget holds exactly over passes of one window, whatever mix of
    /// deletes, disables and fallbacks: the instances taken offline never exceed the percentage of
    /// the service's size at the window's start. (Disabled instances stay listed; they must not
    /// count as instances still to take from.)
    #[test]
    fn a_percentage_budget_holds_whatever_mix_of_deletes_disables_and_fallbacks(
        n in 1usize..16,
        percent in 1u32..100,
        disable in any::<bool>(),
        outcomes in proptest::collection::vec(any::<bool>(), 16),
        passes in 1usize..8,
    ) {
        let instances: Vec<Instance> = (0..n).map(|i| inst(&format!("10.1.1.{i}"))).collect();
        let mut fx = Fx::new(instances);
        fx.policy.max_removals = MaxRemovals::Percent(percent);
        fx.policy.grace_period = Duration::ZERO;
        fx.policy.removal_window = Duration::from_secs(3600);
        fx.policy.action = if disable { RemovalAction::Disable } else { RemovalAction::Deregister };
        let limit = fx.policy.max_removals.limit(n);
        let mut offline = std::collections::BTreeSet::new();
        let mut turn = 0;
        for _ in 0..passes {
            let p = fx.run();
            let removed: Vec<Action> =
                p.actions().filter(|a| a.kind.is_removal()).cloned().collect();
            let mut memory = p.memory;
            if let Ok(snapshot) = &mut fx.services[0].listing {
                let snapshot = Arc::make_mut(snapshot);
                for a in &removed {
                    let took = if outcomes[turn % outcomes.len()] { Took::AsPlanned } else { Took::DisabledInstead };
                    turn += 1;
                    offline.insert(a.instance.clone());
                    match (a.kind, took) {
                        (ActionKind::Deregister, Took::DisabledInstead) => {
                            memory.mark_ineffective(&a.instance);
                            memory.record_disabled(&a.instance);
                            let disable = Action { kind: ActionKind::Disable, ..a.clone() };
                            apply(snapshot, &disable);
                        }
                        _ => apply(snapshot, a),
                    }
                }
            }
            fx.memory = memory;
            fx.now += chrono::TimeDelta::seconds(10);
        }
        prop_assert!(
            offline.len() <= limit,
            "{} of {} instances taken offline with a budget of {}% ({})",
            offline.len(), n, percent, limit
        );
    }
}

/// What a successful write does to the registry.
fn apply(snapshot: &mut ServiceSnapshot, action: &Action) {
    match action.kind {
        ActionKind::Deregister => snapshot.instances.retain(|i| i.key != action.instance),
        ActionKind::Disable | ActionKind::Enable => {
            for i in snapshot
                .instances
                .iter_mut()
                .filter(|i| i.key == action.instance)
            {
                i.enabled = action.kind == ActionKind::Enable;
                i.metadata.insert(DISABLED_BY_KEY.into(), UID.into());
            }
        }
    }
}

/// What a focused pass carries instead of judging again (the controller's `Kept::judged` keeps
/// the others in its attention): a service the last plan left with plainly live instances.
fn plainly_live(s: &ServicePlan) -> bool {
    let c = &s.counts;
    c.stale == 0
        && c.offline == 0
        && c.held == 0
        && s.blocked.is_none()
        && s.actions.is_empty()
        && s.waiting.is_empty()
        && s.would_act.is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With the facts unchanged since the last pass, judging only the services it did not leave
    /// plainly live or that the memory names (and any others), and carrying its plan of the rest,
    /// gives the plan and the memory that judging everything gives.
    #[test]
    fn carrying_plainly_live_services_changes_nothing(
        fx in fixture(),
        spread in proptest::collection::vec(0u8..4, 10),
        extra in proptest::collection::vec(any::<bool>(), 4),
        later in 0i64..120,
    ) {
        let mut fx = fx;
        let instances = match &fx.services[0].listing {
            Ok(s) => s.instances.clone(),
            Err(_) => vec![],
        };
        let name = |n: u8| svc(&format!("s{n}"));
        fx.services = (0..4u8)
            .map(|n| {
                let instances: Vec<Instance> = instances
                    .iter()
                    .zip(&spread)
                    .filter(|(_, s)| **s == n)
                    .map(|(i, _)| Instance {
                        key: InstanceKey { service: name(n), ..i.key.clone() },
                        ..i.clone()
                    })
                    .collect();
                ServiceListing::fresh(
                    name(n),
                    Ok(ServiceSnapshot { service: name(n), instances, unaddressable: vec![] }),
                )
            })
            .collect();
        // The last pass judged everything; this one comes `later` seconds after, its memory the
        // last pass's, the facts unchanged.
        let last = fx.run();
        fx.memory = last.memory.clone();
        fx.now += chrono::TimeDelta::seconds(later);
        let whole = fx.run();
        let remembered: BTreeSet<ServiceKey> = fx
            .memory
            .first_seen_stale
            .keys()
            .chain(fx.memory.disabled.keys())
            .chain(&fx.memory.ineffective)
            .map(|k| k.service.clone())
            .collect();
        let judged: BTreeSet<ServiceKey> = last
            .services
            .iter()
            .zip(&extra)
            .filter(|(s, extra)| !plainly_live(s) || remembered.contains(&s.service) || **extra)
            .map(|(s, _)| s.service.clone())
            .collect();
        let mut some = fx.clone();
        some.governed = Some(fx.services.iter().map(|l| l.service.clone()).collect());
        some.services.retain(|l| judged.contains(&l.service));
        let mut partial = some.run();
        partial.services.extend(
            last.services.iter().filter(|s| !judged.contains(&s.service)).cloned(),
        );
        partial.services.sort_by(|a, b| a.service.cmp(&b.service));
        prop_assert_eq!(partial, whole);
    }
}
