//! What users see of a pass: status (server-side apply), conditions, Events and metrics. The
//! report gathers what the pass found and did; `status.rs` builds the status from it and
//! `events.rs` publishes its Events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::context::Context;
use super::events::{action_event, describe, outcome_event};
use super::in_flight::Finished;
use super::outcome::{key, Outcome, Written};
use super::problem::Problem;
use super::status::{
    conditions, plan_status, server_status, set_memory, to_time, Findings, Taken, OVERLAP_REASON,
    SCOPE_GAP_REASON, SHARED_REASON,
};
use crate::crd::{NacosBinding, NacosBindingStatus, NacosServerStatus};
use crate::metrics::{BindingLabels, VerdictLabels};
use crate::model::ServiceKey;
use crate::nacos::ServerInfo;
use crate::plan::{emptied_message, ActionKind, Memory, Plan, SharedService};

/// The Warning of a pass that took a service's last usable instances offline.
const EMPTIED_REASON: &str = "ServiceEmptied";

/// Collects what a pass found and did, then writes it once.
pub struct Report<'a> {
    b: &'a NacosBinding,
    ctx: &'a Context,
    problems: Vec<Problem>,
    server: Option<NacosServerStatus>,
    status: NacosBindingStatus,
    planned: bool,
    held: usize,
    /// Instances taken offline after the pass's listings were made, per service.
    taken: BTreeMap<ServiceKey, Taken>,
    /// Whether pods of the binding hold instances outside the scope (`Some(message)`); `None`
    /// while this pass has not judged it.
    scope_gap: Option<Option<String>>,
    /// Whether other bindings govern some of this one's services, judged as `scope_gap` is.
    overlap: Option<Option<String>>,
    /// Whether services look shared with another cluster, judged as `scope_gap` is.
    shared: Option<Option<String>>,
    /// Removals held as another cluster's.
    held_shared: usize,
}

impl<'a> Report<'a> {
    /// `last` is the status this process last handed over for the binding, newer than the one in
    /// `b` (from the watch cache) when that write has not come back through the watch yet.
    pub fn new(b: &'a NacosBinding, ctx: &'a Context, last: Option<NacosBindingStatus>) -> Self {
        // Start from the last status so a pass that stops early keeps the counters it cannot refresh.
        let status = last.or_else(|| b.status.clone()).unwrap_or_default();
        Self {
            b,
            ctx,
            problems: Vec::new(),
            server: None,
            status,
            planned: false,
            held: 0,
            taken: BTreeMap::new(),
            scope_gap: None,
            overlap: None,
            shared: None,
            held_shared: 0,
        }
    }

    pub fn server(&mut self, s: &ServerInfo) {
        self.server = Some(server_status(s));
    }

    /// Other bindings sharing services with this one (a message naming them), or none.
    pub async fn overlap(&mut self, overlap: Option<String>) {
        if let Some(msg) = &overlap {
            self.event(EventType::Warning, OVERLAP_REASON, msg).await;
        }
        self.overlap = Some(overlap);
    }

    pub async fn problem(&mut self, p: Problem) {
        self.event(
            EventType::Warning,
            p.event_reason(),
            &format!("{}; nothing removed", p.message()),
        )
        .await;
        self.problems.push(p);
    }

    /// Takes in actions that ended: counts them into the status, publishes their Events in the
    /// background (with hundreds of actions, waiting for them held the next pass back by seconds),
    /// and warns of the services they left empty. `after_listing`: they ended after the pass's
    /// listings were made, so the counts move them to where they are now.
    pub async fn ended(&mut self, finished: &[Finished], after_listing: bool) {
        let mut emptied = BTreeSet::new();
        let events: Vec<_> = finished
            .iter()
            .map(|f| {
                let o = &f.outcome;
                if o.took_offline() {
                    self.count_offline(o, after_listing);
                }
                if let Some(service) = f.newly_emptied() {
                    emptied.insert(service);
                }
                outcome_event(o)
            })
            .collect();
        if !events.is_empty() {
            self.ctx
                .recorder
                .publish_in_background(events, self.b.object_ref(&()));
        }
        for service in emptied {
            // Counted before the Event goes out: whoever saw the Event finds it counted.
            self.ctx
                .metrics
                .services_emptied
                .get_or_create(&BindingLabels {
                    binding: key(self.b),
                })
                .inc();
            self.event(
                EventType::Warning,
                EMPTIED_REASON,
                &emptied_message(service, true),
            )
            .await;
        }
    }

    /// Counts an action that took its instance offline into the status; `after_listing`: moves
    /// it to where it is now in the counts, which come from listings made before.
    fn count_offline(&mut self, o: &Outcome, after_listing: bool) {
        self.status.removed_total += 1;
        if !after_listing {
            return;
        }
        let taken = self
            .taken
            .entry(o.action.instance.service.clone())
            .or_default();
        match (o.action.kind, &o.result) {
            (ActionKind::Deregister, Written::Done) => taken.deregistered += 1,
            _ => taken.disabled += 1,
        }
    }

    /// Counts, pending work, held removals, dry-run reports and the remembered budget.
    pub async fn plan(&mut self, plan: &Plan, memory: &Memory, window: Duration) {
        self.planned = true;
        let binding = key(self.b);
        let fields = plan_status(plan, &self.taken);
        let mut first_shared = None;
        for sp in &plan.services {
            for a in &sp.would_act {
                let target = describe(&a.instance);
                let (reason, verb) = (a.kind.would_reason(), format!("would be {}", a.kind.done()));
                self.event_about(
                    EventType::Normal,
                    reason,
                    &target,
                    &format!("{target} {verb} (dryRun): {}", a.reason),
                )
                .await;
            }
            let (budget_held, shared_held): (Vec<_>, Vec<_>) = sp
                .held_with_budget()
                .partition(|(_, budget)| budget.is_some());
            if let Some(shared) = &sp.shared {
                let msg = self.shared_message(&sp.service, shared, shared_held.len());
                self.event(EventType::Warning, SHARED_REASON, &msg).await;
                first_shared.get_or_insert(msg);
                self.held_shared += shared_held.len();
            }
            let budget_held: Vec<_> = budget_held.into_iter().map(|(a, _)| a).collect();
            if !budget_held.is_empty() {
                self.event(
                    EventType::Warning,
                    "RemovalsHeld",
                    &format!(
                        "{}: {} removal(s) held by maxRemovals {} per {}s ({}); approve one batch with: {}",
                        sp.service,
                        budget_held.len(),
                        self.b.spec.policy.max_removals().map(|m| m.to_string()).unwrap_or_default(),
                        window.as_secs(),
                        budget_held.iter().map(|a| describe(&a.instance)).collect::<Vec<_>>().join(", "),
                        self.approve_command(),
                    ),
                )
                .await;
            }
            if let Some(why) = &sp.blocked {
                warn!(service = %sp.service, %why, "no action for this service");
            }
        }
        // Judged only on complete evidence (a blocked service: unsynced caches, a failed listing);
        // otherwise the condition stays as the last judgement left it.
        if plan.services.iter().all(|s| s.blocked.is_none()) {
            self.shared = Some(first_shared);
        }
        let gap = plan.scope_gap(self.b.spec.default_scope());
        if let Some(msg) = &gap {
            self.event(EventType::Warning, SCOPE_GAP_REASON, msg).await;
        }
        self.scope_gap = Some(gap);
        if plan.frozen {
            self.event(
                EventType::Warning,
                "NodeActionsFrozen",
                "more than half of the nodes are not Ready: node-based actions are frozen",
            )
            .await;
        }
        for (verdict, n) in fields.by_verdict {
            self.ctx
                .metrics
                .instances
                .get_or_create(&VerdictLabels {
                    binding: binding.clone(),
                    verdict: verdict.to_string().to_lowercase(),
                })
                .set(n);
        }
        self.ctx
            .metrics
            .held_removals
            .get_or_create(&BindingLabels { binding })
            .set(fields.held as i64);
        self.status.instances = fields.instances;
        self.status.service_count = fields.service_count;
        self.status.services = fields.services;
        self.status.pending = fields.pending;
        set_memory(&mut self.status, memory);
        self.held = fields.held;
    }

    /// What the AnotherClusterSuspected Warning and the SharedService condition say of a service.
    fn shared_message(&self, service: &ServiceKey, s: &SharedService, held: usize) -> String {
        format!(
            "{service}: {} of its {} instances in scope are orphans at addresses this cluster has \
             not shown on a pod or node since the operator started: another Kubernetes cluster may \
             register into this service. Their removals are held ({} now). Claim this cluster's \
             instances with spec.scope.instanceMetadata (a metadata selector, e.g. {{matchLabels: \
             {{k8s-cluster: <name>}}}}, that this cluster's applications register) or \
             services[].clusters; or, if they are stale, release one batch with: {}",
            s.unseen,
            s.in_scope,
            held,
            self.approve_command(),
        )
    }

    /// The command that releases one batch of held removals.
    fn approve_command(&self) -> String {
        format!(
            "kubectl annotate nb -n {} {} {}={} --overwrite",
            self.b.namespace().unwrap_or_default(),
            self.b.name_any(),
            crate::crd::APPROVE_ANNOTATION,
            self.b.metadata.generation.unwrap_or_default(),
        )
    }

    /// An Event about the binding as a whole; repeats of the same message fold into one series.
    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        self.event_about(type_, reason, note, note).await;
    }

    /// An Event about one subject (an instance); repeats about the same subject fold into one
    /// series, and different subjects get Events of their own.
    async fn event_about(&self, type_: EventType, reason: &str, subject: &str, note: &str) {
        let ev = action_event(type_, reason, note);
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&ev, subject, &self.b.object_ref(&()))
            .await
        {
            warn!(error = %e, reason, "could not publish event");
        }
    }

    /// The status to write, with its conditions; records the pass duration.
    pub fn finish(mut self, started: Instant) -> NacosBindingStatus {
        let now = Utc::now();
        let gen = self.b.metadata.generation;
        let old = std::mem::take(&mut self.status.conditions);
        let findings = Findings {
            problems: &self.problems,
            cache_synced: self.ctx.view.is_synced(),
            planned: self.planned,
            held: self.held,
            scope_gap: &self.scope_gap,
            overlap: &self.overlap,
            shared: &self.shared,
            held_shared: self.held_shared,
        };
        self.status.conditions = conditions(&old, &findings, gen, now);
        self.status.observed_generation = gen;
        if self.server.is_some() {
            self.status.nacos = self.server.take();
        }
        if self.planned {
            self.status.last_sync_time = to_time(now);
        }
        self.ctx
            .metrics
            .reconcile_duration
            .get_or_create(&BindingLabels {
                binding: key(self.b),
            })
            .observe(started.elapsed().as_secs_f64());
        self.status
    }
}
