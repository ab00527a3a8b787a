//! The fields of a NacosBindingStatus, built from what a pass found: counts, pending work, the
//! remembered budget, the Nacos server and the conditions. Pure functions: the report decides when,
//! the status lane writes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::problem::{failing, Problem};
use crate::crd::{
    InstanceCounts, NacosApi, NacosBinding, NacosBindingStatus, NacosServerStatus, PendingAction,
    PendingState, PlannedAction, RemovalRecord, ServiceStatus, StillRegistered, MAX_PENDING,
    MAX_REMOVAL_RECORDS, MAX_SERVICE_STATUS, MAX_STILL_REGISTERED,
};
use crate::model::ServiceKey;
use crate::nacos::{ApiGeneration, ServerInfo};
use crate::plan::{Action, ActionKind, Memory, Plan, Verdict};

pub(super) use crate::time::chrono_to_time as to_time;

/// The condition reason and Warning Event reason of pods outside the scope.
pub(super) const SCOPE_GAP_REASON: &str = "PodsOutsideScope";
/// The condition reason and Warning Event reason of bindings sharing services.
pub(super) const OVERLAP_REASON: &str = "BindingsOverlap";
/// The condition reason and Warning Event reason of services that look shared with another cluster.
pub(super) const SHARED_REASON: &str = "AnotherClusterSuspected";

fn from_time(t: &Time) -> Option<DateTime<Utc>> {
    crate::cluster::to_chrono(t)
}

/// The budget already spent and the approval already used, as the status recorded them: a new
/// leader (or a restarted operator) starts from there, not from zero.
pub fn memory_from_status(b: &NacosBinding) -> Memory {
    let mut m = Memory::default();
    if let Some(s) = &b.status {
        for r in &s.removals {
            if let Some(t) = from_time(&r.time) {
                m.removals
                    .entry(ServiceKey::new(&r.group, &r.service))
                    .or_default()
                    .push(t);
            }
        }
        m.approval_consumed = s.approved_token.clone();
        // Status keeps whole seconds: the next second, so that node evidence is never trusted
        // from before the freeze ended.
        m.frozen_at = s
            .frozen_at
            .as_ref()
            .and_then(from_time)
            .map(|t| t + chrono::TimeDelta::seconds(1));
    }
    m
}

/// Records `memory` (removals, consumed approval, freeze) into `status`, as
/// [`memory_from_status`] reads them back.
pub(super) fn set_memory(status: &mut NacosBindingStatus, memory: &Memory) {
    status.removals = removal_records(memory);
    status.still_registered = still_registered(memory);
    status.approved_token = memory.approval_consumed.clone();
    status.frozen_at = memory.frozen_at.and_then(to_time);
}

/// The removal history and the consumed approval of `memory`, as status fields.
pub(super) fn budget_fields(memory: &Memory) -> serde_json::Value {
    let mut status = serde_json::json!({"removals": removal_records(memory)});
    if let Some(token) = &memory.approval_consumed {
        status["approvedToken"] = serde_json::json!(token);
    }
    status
}

/// The instances we disabled that Nacos still lists, newest first, as `status.stillRegistered`.
fn still_registered(memory: &Memory) -> Vec<StillRegistered> {
    let mut out: Vec<(DateTime<Utc>, StillRegistered)> = memory
        .disabled
        .iter()
        .filter_map(|(k, n)| {
            let n = n.as_ref()?;
            Some((
                n.at,
                StillRegistered {
                    service: k.service.name.clone(),
                    group: k.service.group.clone(),
                    ip: k.ip.to_string(),
                    port: k.port,
                    since: to_time(n.at)?,
                    reason: n.why.clone(),
                },
            ))
        })
        .collect();
    out.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    out.into_iter()
        .take(MAX_STILL_REGISTERED)
        .map(|(_, s)| s)
        .collect()
}

pub(super) fn removal_records(memory: &Memory) -> Vec<RemovalRecord> {
    let mut out: Vec<RemovalRecord> = memory
        .removals
        .iter()
        .flat_map(|(svc, times)| {
            times.iter().filter_map(move |t| {
                Some(RemovalRecord {
                    service: svc.name.clone(),
                    group: svc.group.clone(),
                    time: to_time(*t)?,
                })
            })
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.time.0));
    out.truncate(MAX_REMOVAL_RECORDS);
    out
}

/// The Nacos server as `status.nacos` shows it.
pub(super) fn server_status(s: &ServerInfo) -> NacosServerStatus {
    NacosServerStatus {
        version: Some(s.version_text()),
        api: match s.api {
            ApiGeneration::V3 => Some(NacosApi::V3),
            ApiGeneration::V2 => Some(NacosApi::V2),
            ApiGeneration::V1 => Some(NacosApi::V1),
            ApiGeneration::Auto => None,
        },
    }
}

/// Instances taken offline in one service by actions the pass's own listing predates.
#[derive(Default)]
pub(super) struct Taken {
    pub deregistered: usize,
    pub disabled: usize,
}

/// What a plan shows in the status, and its instances per verdict for the metrics.
pub(super) struct PlanStatus {
    pub instances: InstanceCounts,
    /// Every governed service, including those `services` leaves out.
    pub service_count: u32,
    pub services: Vec<ServiceStatus>,
    pub pending: Vec<PendingAction>,
    /// Removals held (by the budget, or as another cluster's).
    pub held: usize,
    pub by_verdict: BTreeMap<Verdict, i64>,
}

/// The status of `plan`, with the instances `taken` offline since its listings moved to where they
/// are now. (The listings show the writes of actions that ended before the pass, see
/// [`super::focus::Kept::record_writes`]; those still in flight show in a later pass's.)
pub(super) fn plan_status(plan: &Plan, taken: &BTreeMap<ServiceKey, Taken>) -> PlanStatus {
    let mut totals = InstanceCounts::default();
    let mut by_verdict: BTreeMap<Verdict, i64> = BTreeMap::new();
    let mut services = Vec::new();
    let mut pending = Vec::new();
    let mut held = 0usize;
    for sp in &plan.services {
        let mut c = sp.counts;
        if let Some(t) = taken.get(&sp.service) {
            // A disabled instance stays listed and stale; `offline` overlaps the others.
            c.total = c.total.saturating_sub(t.deregistered);
            c.stale = c.stale.saturating_sub(t.deregistered);
            c.offline += t.disabled;
        }
        let c = &c;
        totals.total += c.total as u32;
        totals.live += c.live as u32;
        totals.stale += c.stale as u32;
        totals.offline += c.offline as u32;
        totals.foreign += c.foreign as u32;
        for v in &sp.instances {
            *by_verdict.entry(v.verdict).or_default() += 1;
        }
        services.push(ServiceStatus {
            name: sp.service.name.clone(),
            group: sp.service.group.clone(),
            total: c.total as u32,
            live: c.live as u32,
            stale: c.stale as u32,
            offline: c.offline as u32,
            held: c.held as u32,
        });
        for w in &sp.waiting {
            pending.push(pending_of(&w.action, PendingState::Grace, Some(w.due_at)));
        }
        for (a, budget) in sp.held_with_budget() {
            let mut p = pending_of(a, PendingState::Held, None);
            if let Some(budget) = budget {
                p.reason = format!("{}; {budget}", p.reason);
            }
            pending.push(p);
        }
        for a in &sp.would_act {
            pending.push(pending_of(a, PendingState::DryRun, None));
        }
        held += sp.held.len();
    }
    pending.truncate(MAX_PENDING);
    PlanStatus {
        instances: totals,
        service_count: services.len() as u32,
        services: bounded_services(services),
        pending,
        held,
        by_verdict,
    }
}

fn pending_of(a: &Action, state: PendingState, due: Option<DateTime<Utc>>) -> PendingAction {
    PendingAction {
        service: a.instance.service.name.clone(),
        group: a.instance.service.group.clone(),
        ip: a.instance.ip.to_string(),
        port: a.instance.port,
        action: match a.kind {
            ActionKind::Deregister => PlannedAction::Deregister,
            ActionKind::Disable => PlannedAction::Disable,
            ActionKind::Enable => PlannedAction::Enable,
        },
        state: Some(state),
        reason: a.reason.clone(),
        due: due.and_then(to_time),
    }
}

/// The services `status.services` shows: those with stale, offline or held instances first (what a
/// user looks for), then the rest, each part in the plan's order (group, name), at most
/// [`MAX_SERVICE_STATUS`].
fn bounded_services(mut services: Vec<ServiceStatus>) -> Vec<ServiceStatus> {
    services.sort_by_key(|s| s.stale == 0 && s.offline == 0 && s.held == 0);
    services.truncate(MAX_SERVICE_STATUS);
    services
}

/// What a pass found, as the conditions show it.
pub(super) struct Findings<'a> {
    pub problems: &'a [Problem],
    /// Whether every watch cache has synced.
    pub cache_synced: bool,
    /// Whether the pass got as far as a plan.
    pub planned: bool,
    /// Removals held, by the budget or as another cluster's.
    pub held: usize,
    /// Of them, held as another cluster's.
    pub held_shared: usize,
    /// Whether pods of the binding hold instances outside the scope (`Some(message)`); `None`
    /// while the pass has not judged it.
    pub scope_gap: &'a Option<Option<String>>,
    /// Whether other bindings govern some of this one's services, judged as `scope_gap` is.
    pub overlap: &'a Option<Option<String>>,
    /// Whether services look shared with another cluster, judged as `scope_gap` is.
    pub shared: &'a Option<Option<String>>,
}

/// The binding's conditions after a pass; `old` are those it had before, whose transition times
/// stay while their status does not change.
pub(super) fn conditions(
    old: &[Condition],
    f: &Findings<'_>,
    gen: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut conds = Vec::new();
    let spec_bad = failing(f.problems, "SpecValid");
    let nacos_bad = failing(f.problems, "NacosReachable");
    let cache_bad = failing(f.problems, "CacheSynced");
    conds.push(cond(
        old,
        "SpecValid",
        spec_bad.is_none(),
        spec_bad
            .as_ref()
            .map_or(("Valid", "the spec is valid"), |(r, m)| (*r, m.as_str())),
        gen,
        now,
    ));
    let nacos_state = match (&nacos_bad, &spec_bad) {
        (Some((r, m)), _) => (false, *r, m.as_str()),
        (None, Some(_)) => (false, "NotChecked", "the spec is invalid"),
        (None, None) => (true, "Reachable", "every listing succeeded"),
    };
    conds.push(cond(
        old,
        "NacosReachable",
        nacos_state.0,
        (nacos_state.1, nacos_state.2),
        gen,
        now,
    ));
    let cache_ok = cache_bad.is_none() && f.cache_synced;
    conds.push(cond(
        old,
        "CacheSynced",
        cache_ok,
        cache_bad
            .as_ref()
            .map_or(("Synced", "every watch cache has synced"), |(r, m)| {
                (*r, m.as_str())
            }),
        gen,
        now,
    ));
    let held_msg = match f.held_shared {
        0 => format!("{} removal(s) held by the removal budget", f.held),
        n if n >= f.held => format!("{n} removal(s) held as another cluster's (see SharedService)"),
        n => format!(
            "{} removal(s) held: {} by the removal budget, {n} as another cluster's (see SharedService)",
            f.held,
            f.held.saturating_sub(n)
        ),
    };
    let held_reason = if f.held > f.held_shared {
        "BudgetExceeded"
    } else {
        SHARED_REASON
    };
    conds.push(cond(
        old,
        "RemovalsHeld",
        f.held > 0,
        if f.held > 0 {
            (held_reason, held_msg.as_str())
        } else {
            ("WithinBudget", "no removal is held")
        },
        gen,
        now,
    ));
    // Findings that do not stop a pass; one not judged in this pass stays as the last found it.
    let finding = |type_: &str,
                   judged: &Option<Option<String>>,
                   bad: bool,
                   reasons: [&str; 2],
                   fine: &str| {
        match judged {
            Some(Some(msg)) => Some(cond(old, type_, bad, (reasons[0], msg), gen, now)),
            Some(None) => Some(cond(old, type_, !bad, (reasons[1], fine), gen, now)),
            None => old.iter().find(|c| c.type_ == type_).cloned(),
        }
    };
    conds.extend(finding(
        "ScopeCoversPods",
        f.scope_gap,
        false,
        [SCOPE_GAP_REASON, "PodsInScope"],
        "every instance a pod of the binding holds is in scope",
    ));
    conds.extend(finding(
        "Overlapping",
        f.overlap,
        true,
        [OVERLAP_REASON, "Exclusive"],
        "no other binding governs these services",
    ));
    conds.extend(finding(
        "SharedService",
        f.shared,
        true,
        [SHARED_REASON, "NotShared"],
        "no service looks shared with another Kubernetes cluster",
    ));
    let ready = f.problems.is_empty() && f.planned;
    let ready_msg = "every governed service was compared with the cluster";
    conds.push(cond(
        old,
        "Ready",
        ready,
        if ready {
            ("Reconciled", ready_msg)
        } else {
            ("Degraded", "see the other conditions")
        },
        gen,
        now,
    ));
    conds
}

fn cond(
    old: &[Condition],
    type_: &str,
    ok: bool,
    (reason, message): (&str, &str),
    gen: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status does.
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .or(to_time(now))
        .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.chars().take(1000).collect(),
        last_transition_time: since,
        observed_generation: gen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InstanceKey;

    /// Issue 17 B: a service that looks shared with another cluster sets SharedService, and the
    /// RemovalsHeld condition says why its removals are held.
    #[test]
    fn a_service_shared_with_another_cluster_is_a_condition_and_explains_the_held_removals() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let judged = |shared: Option<&str>, held, held_shared| {
            let (none, shared) = (None, Some(shared.map(str::to_string)));
            let f = Findings {
                problems: &[],
                cache_synced: true,
                planned: true,
                held,
                held_shared,
                scope_gap: &none,
                overlap: &none,
                shared: &shared,
            };
            conditions(&[], &f, Some(1), now)
        };
        let get = |conds: &[Condition], type_: &str| {
            let c = conds.iter().find(|c| c.type_ == type_).unwrap();
            (c.status.clone(), c.reason.clone(), c.message.clone())
        };
        let conds = judged(Some("orders: 4 of its 6 instances ..."), 4, 4);
        assert_eq!(
            get(&conds, "SharedService"),
            (
                "True".into(),
                SHARED_REASON.into(),
                "orders: 4 of its 6 instances ...".into()
            )
        );
        let (status, reason, message) = get(&conds, "RemovalsHeld");
        assert_eq!((status.as_str(), reason.as_str()), ("True", SHARED_REASON));
        assert!(
            message.contains("4 removal(s) held as another cluster's"),
            "{message}"
        );
        let (_, reason, message) = get(&judged(Some("x"), 5, 4), "RemovalsHeld");
        assert_eq!(reason, "BudgetExceeded");
        assert!(
            message.contains("1 by the removal budget, 4 as another cluster's"),
            "{message}"
        );
        let conds = judged(None, 0, 0);
        assert_eq!(get(&conds, "SharedService").0, "False");
        assert_eq!(get(&conds, "SharedService").1, "NotShared");
        assert_eq!(get(&conds, "RemovalsHeld").0, "False");
    }

    /// Issue 15, case 4: a leader elected during a partition starts from the freeze its
    /// predecessor saw, as from the budget and the approval.
    #[test]
    fn a_new_leader_restores_the_freeze_the_budget_and_the_approval_from_status() {
        let at = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let mut memory = Memory::default();
        memory
            .removals
            .insert(ServiceKey::new("DEFAULT_GROUP", "orders"), vec![at(0)]);
        memory.approval_consumed = Some("7".into());
        memory.frozen_at = Some(at(30));
        let mut status = NacosBindingStatus {
            removals: removal_records(&memory),
            approved_token: memory.approval_consumed.clone(),
            frozen_at: memory.frozen_at.and_then(to_time),
            ..Default::default()
        };
        let mut b: NacosBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {
                "nacos": {"serverAddr": ["http://127.0.0.1:8848"]},
                "services": [{"name": "orders"}],
                "pods": {"selector": {"matchLabels": {"app": "orders"}}}
            }
        }))
        .unwrap();
        b.status = Some(status.clone());
        let restored = memory_from_status(&b);
        assert_eq!(restored.removals, memory.removals);
        assert_eq!(restored.approval_consumed, memory.approval_consumed);
        assert_eq!(
            restored.frozen_at,
            Some(at(31)),
            "never earlier than the freeze"
        );
        status.frozen_at = None;
        b.status = Some(status);
        assert_eq!(memory_from_status(&b).frozen_at, None);
    }

    #[test]
    fn status_lists_services_needing_attention_first_and_at_most_the_bound() {
        let svc = |i: usize, stale: u32, offline: u32, held: u32| ServiceStatus {
            name: format!("s{i:04}"),
            group: "DEFAULT_GROUP".into(),
            total: 3,
            live: 3 - stale,
            stale,
            offline,
            held,
        };
        let mut all: Vec<ServiceStatus> = (0..250).map(|i| svc(i, 0, 0, 0)).collect();
        all[7] = svc(7, 1, 0, 0);
        all[180] = svc(180, 0, 1, 0);
        all[249] = svc(249, 1, 0, 1);
        let shown = bounded_services(all);
        assert_eq!(shown.len(), MAX_SERVICE_STATUS);
        let names: Vec<&str> = shown.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(&names[..5], ["s0007", "s0180", "s0249", "s0000", "s0001"]);
        assert_eq!(names[MAX_SERVICE_STATUS - 1], "s0097");
        let few: Vec<ServiceStatus> = (0..3).map(|i| svc(i, 0, 0, 0)).collect();
        assert_eq!(bounded_services(few.clone()), few);
    }

    #[test]
    fn still_registered_lists_what_we_disabled_newest_first_and_at_most_the_bound() {
        let key = |i: usize| InstanceKey {
            service: ServiceKey::new("DEFAULT_GROUP", "orders"),
            cluster: "DEFAULT".into(),
            ip: format!("10.1.{}.{}", i / 250, i % 250).parse().unwrap(),
            port: 8080,
        };
        let at = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let mut m = Memory::default();
        for i in 0..30 {
            m.record_disabled(&key(i));
            m.note_offline(&key(i), at(i as i64), format!("kept {i}"));
        }
        // Enabled again since: not listed as kept offline.
        m.disabled.remove(&key(29));
        let shown = still_registered(&m);
        assert_eq!(shown.len(), MAX_STILL_REGISTERED);
        assert_eq!(
            (
                shown[0].ip.as_str(),
                shown[0].port,
                shown[0].reason.as_str()
            ),
            ("10.1.0.28", 8080, "kept 28")
        );
        assert_eq!(shown[0].since, to_time(at(28)).unwrap());
        assert_eq!(shown[MAX_STILL_REGISTERED - 1].reason, "kept 9");
        let mut status = NacosBindingStatus::default();
        set_memory(&mut status, &m);
        assert_eq!(status.still_registered, shown);
    }
}
