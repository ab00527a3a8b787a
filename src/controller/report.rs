//! What users see of a pass: status (server-side apply), conditions, Events and metrics.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::Semaphore;
use tracing::warn;

use super::context::Context;
use super::event_fold::{Admit, EventFolds, FOLD_WINDOW, OWN_EVENTS_PER_WINDOW};
use super::outcome::{key, Outcome, Written};
use crate::crd::{
    InstanceCounts, NacosApi, NacosBinding, NacosBindingStatus, NacosServerStatus, PendingAction,
    PendingState, PlannedAction, RemovalRecord, ServiceStatus, MAX_PENDING, MAX_REMOVAL_RECORDS,
    MAX_SERVICE_STATUS,
};
use crate::metrics::{BindingLabels, Metrics, RequestErrorLabels, RequestLabels, VerdictLabels};
use crate::model::{InstanceKey, ServiceKey};
use crate::nacos::{ApiGeneration, NacosError, RequestEvent, RequestObserver, ServerInfo};
use crate::plan::{Action, ActionKind, Memory, Plan, Verdict};

/// The condition reason and Warning Event reason of pods outside the scope.
const SCOPE_GAP_REASON: &str = "PodsOutsideScope";
/// The condition reason and Warning Event reason of bindings sharing services.
const OVERLAP_REASON: &str = "BindingsOverlap";

/// Why a pass could not do its whole job.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    InvalidSpec(String),
    /// A Secret the spec names does not exist (SpecValid=False).
    SecretNotFound(String),
    NacosUnavailable(String),
    AuthFailed(String),
    /// The server lists its namespaces and `spec.nacos.namespace` is not among them.
    NamespaceNotFound(String),
    CacheNotSynced(String),
}

impl Problem {
    pub fn from_nacos(e: &NacosError) -> Self {
        match e.kind() {
            "auth" => Problem::AuthFailed(e.to_string()),
            "config" => Problem::InvalidSpec(e.to_string()),
            _ => Problem::NacosUnavailable(e.to_string()),
        }
    }

    /// The condition it turns False, and the reason used there and in its Warning Event.
    pub fn condition_and_reason(&self) -> (&'static str, &'static str) {
        match self {
            Problem::InvalidSpec(_) => ("SpecValid", "InvalidSpec"),
            Problem::SecretNotFound(_) => ("SpecValid", "SecretNotFound"),
            Problem::NacosUnavailable(_) => ("NacosReachable", "NacosUnavailable"),
            Problem::AuthFailed(_) => ("NacosReachable", "AuthFailed"),
            Problem::NamespaceNotFound(_) => ("NacosReachable", "NamespaceNotFound"),
            Problem::CacheNotSynced(_) => ("CacheSynced", "NotSynced"),
        }
    }

    /// The reason of its Warning Event (the condition's reason, except for the cache).
    pub fn event_reason(&self) -> &'static str {
        match self {
            Problem::CacheNotSynced(_) => "CacheNotSynced",
            other => other.condition_and_reason().1,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Problem::InvalidSpec(m)
            | Problem::SecretNotFound(m)
            | Problem::NacosUnavailable(m)
            | Problem::AuthFailed(m)
            | Problem::NamespaceNotFound(m)
            | Problem::CacheNotSynced(m) => m,
        }
    }
}

/// The (reason, message) of condition `type_` among `problems`: the most telling problem of that
/// condition wins (credentials over reachability over a missing namespace).
fn failing(problems: &[Problem], type_: &str) -> Option<(&'static str, String)> {
    let rank = |p: &Problem| match p {
        Problem::AuthFailed(_) => 0,
        Problem::NacosUnavailable(_) => 1,
        _ => 2,
    };
    problems
        .iter()
        .filter(|p| p.condition_and_reason().0 == type_)
        .min_by_key(|p| rank(p))
        .map(|p| (p.condition_and_reason().1, p.message().to_string()))
}

pub use crate::time::chrono_to_time as to_time;

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

/// Feeds the Nacos client's requests into the metrics.
pub struct RequestMetrics(pub Arc<Metrics>);

impl RequestObserver for RequestMetrics {
    fn on_request(&self, ev: &RequestEvent<'_>) {
        let operation = ev.operation.as_str().to_string();
        self.0
            .nacos_request_duration
            .get_or_create(&RequestLabels {
                operation: operation.clone(),
            })
            .observe(ev.elapsed.as_secs_f64());
        let kind = match ev.status {
            None => Some("unreachable"),
            Some(401 | 403) => Some("auth"),
            // Detection asking for an endpoint of another generation: its absence is the answer.
            Some(404 | 405 | 410 | 501) if ev.probe => None,
            Some(s) if s >= 400 => Some("server"),
            _ => None,
        };
        if let Some(kind) = kind {
            self.0
                .nacos_request_errors
                .get_or_create(&RequestErrorLabels {
                    operation,
                    kind: kind.into(),
                })
                .inc();
        }
    }
}

/// Events of one pass's actions published at once.
const EVENTS_IN_FLIGHT: usize = 16;
/// Actions' Events waiting to be published; past this many (a mass removal on a slow API server)
/// further ones are dropped with a warning, as Kubernetes' own recorders do under load.
const MAX_QUEUED_EVENTS: usize = 4096;

/// How long a subject's Event keeps counting repeats into its series (as kube's Recorder does).
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// Publishes Events (events.k8s.io/v1), one series per subject.
///
/// kube's [`kube::runtime::events::Recorder`] folds every Event with the same type, reason and
/// object into one series that keeps the first note: a `Deregistered` for a second instance of a
/// binding would only bump the count of the first one and show the first instance's message. Here
/// each subject (the instance an Event is about, or its message) gets an Event of its own, and
/// repeats about the same subject count into its series instead of piling up. Only the Event's name
/// is kept per subject: a Recorder per subject (with its cache of whole Events) took 4 KiB each,
/// 9 MiB in a mass removal of 2,000 instances.
pub struct EventRecorder {
    client: kube::Client,
    reporter: Reporter,
    series: std::sync::Mutex<HashMap<u64, Series>>,
    /// Room for the actions' Events that are still being published in the background.
    backlog: Arc<Semaphore>,
    /// Which actions' Events fold into a combined Event (a mass removal).
    folds: std::sync::Mutex<EventFolds>,
    /// One combined-Event write at a time: one Event per window, counts written in order.
    combined_writes: tokio::sync::Mutex<()>,
}

/// The Event a subject's repeats count into.
struct Series {
    name: String,
    count: i32,
    used: Instant,
}

impl EventRecorder {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            series: Default::default(),
            backlog: Arc::new(Semaphore::new(MAX_QUEUED_EVENTS)),
            folds: Default::default(),
            combined_writes: Default::default(),
        }
    }

    fn folds(&self) -> std::sync::MutexGuard<'_, EventFolds> {
        self.folds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What a combined Event gathers: Events of one type and reason about one object.
    fn kind_key(ev: &Event, regarding: &ObjectReference) -> u64 {
        let mut h = DefaultHasher::new();
        (ev.type_, &ev.reason).hash(&mut h);
        (&regarding.namespace, &regarding.name, &regarding.uid).hash(&mut h);
        h.finish()
    }

    fn hash_of(subject: &str) -> u64 {
        let mut h = DefaultHasher::new();
        subject.hash(&mut h);
        h.finish()
    }

    /// Writes the kind's combined Event as the folds have it now: creates it with the note of
    /// `first` (the first Event folded into it), or brings its series count up to date.
    async fn publish_combined(
        &self,
        kind: u64,
        first: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let _in_order = self.combined_writes.lock().await;
        let Some(combined) = self.folds().combined(kind, Instant::now()) else {
            return Ok(());
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let series = (combined.count >= 2).then(|| EventSeries {
            count: combined.count,
            last_observed_time: MicroTime(Timestamp::now()),
        });
        if let (Some(name), Some(series)) = (&combined.name, &series) {
            let patch = serde_json::json!({ "series": series });
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        } else if combined.name.is_some() {
            return Ok(());
        }
        let note = format!(
            "(combined from similar events): more than {OWN_EVENTS_PER_WINDOW} {} Events within \
             {} minutes; this one counts the further ones (the operator's log names each, \
             status.removals each removal); the first of them: {}",
            first.reason,
            FOLD_WINDOW.as_secs() / 60,
            first.note.as_deref().unwrap_or_default()
        );
        let mut event = self.new_event(&action_event(first.type_, &first.reason, &note), regarding);
        event.series = series;
        api.create(&PostParams::default(), &event).await?;
        if let Some(name) = event.metadata.name {
            self.folds().named(kind, combined.window, name);
        }
        Ok(())
    }

    fn series(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Series>> {
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn subject_key(ev: &Event, subject: &str, regarding: &ObjectReference) -> u64 {
        let mut h = DefaultHasher::new();
        (ev.type_, &ev.reason, subject).hash(&mut h);
        (&regarding.namespace, &regarding.name, &regarding.uid).hash(&mut h);
        h.finish()
    }

    /// The Event this one repeats and its new count, if the subject had one recently; forgets the
    /// series unused for a while.
    fn repeat_of(&self, key: u64) -> Option<(String, i32)> {
        let now = Instant::now();
        let mut series = self.series();
        series.retain(|_, s| now.duration_since(s.used) < SERIES_TTL);
        series.get_mut(&key).map(|s| {
            s.count += 1;
            s.used = now;
            (s.name.clone(), s.count)
        })
    }

    fn new_event(&self, ev: &Event, regarding: &ObjectReference) -> K8sEvent {
        let now = Timestamp::now();
        let controller = &self.reporter.controller;
        K8sEvent {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_ref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(match ev.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..K8sEvent::default()
        }
    }

    pub async fn publish(
        &self,
        ev: &Event,
        subject: &str,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = Self::subject_key(ev, subject, regarding);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Some((name, count)) = self.repeat_of(key) {
            let series = serde_json::json!({"series": {
                "count": count,
                "lastObservedTime": MicroTime(Timestamp::now()),
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => return Ok(()),
                // Expired on the server (Events live an hour): start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.new_event(ev, regarding);
        api.create(&PostParams::default(), &event).await?;
        self.series().insert(
            key,
            Series {
                name: event.metadata.name.unwrap_or_default(),
                count: 1,
                used: Instant::now(),
            },
        );
        Ok(())
    }
}

fn action_event(type_: EventType, reason: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// Collects what a pass found and did, then writes it once.
pub struct Report<'a> {
    b: &'a NacosBinding,
    ctx: &'a Context,
    problems: Vec<Problem>,
    server: Option<NacosServerStatus>,
    status: NacosBindingStatus,
    planned: bool,
    held: usize,
    /// Instances this pass took offline, per service.
    taken: BTreeMap<ServiceKey, Taken>,
    /// Whether pods of the binding hold instances outside the scope (`Some(message)`); `None`
    /// while this pass has not judged it.
    scope_gap: Option<Option<String>>,
    /// Whether other bindings govern some of this one's services, judged as `scope_gap` is.
    overlap: Option<Option<String>>,
}

#[derive(Default)]
struct Taken {
    deregistered: usize,
    disabled: usize,
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
        }
    }

    pub fn server(&mut self, s: &ServerInfo) {
        self.server = Some(NacosServerStatus {
            version: Some(s.version_text()),
            api: match s.api {
                ApiGeneration::V3 => Some(NacosApi::V3),
                ApiGeneration::V2 => Some(NacosApi::V2),
                ApiGeneration::V1 => Some(NacosApi::V1),
                ApiGeneration::Auto => None,
            },
        });
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

    /// Counts the actions into the status and publishes their Events in the background: with
    /// hundreds of actions, waiting for their Events held the next pass back by seconds.
    pub fn outcomes(&mut self, outcomes: &[Outcome]) {
        let mut events: Vec<(Event, String)> = outcomes
            .iter()
            .map(|o| {
                let (type_, reason, subject, note) = self.outcome(o);
                (action_event(type_, reason, &note), subject)
            })
            .collect();
        if events.is_empty() {
            return;
        }
        let recorder = self.ctx.recorder.clone();
        let regarding = self.b.object_ref(&());
        // Past the first few of a kind, Events fold into the kind's combined Event.
        let mut combined: Vec<(u64, Event)> = Vec::new();
        {
            let now = Instant::now();
            let mut folds = recorder.folds();
            events.retain(|(ev, subject)| {
                let kind = EventRecorder::kind_key(ev, &regarding);
                match folds.admit(kind, EventRecorder::hash_of(subject), now) {
                    Admit::Own => true,
                    Admit::Counted => false,
                    Admit::Fold => {
                        if !combined.iter().any(|(k, _)| *k == kind) {
                            let note = ev.note.as_deref().unwrap_or_default();
                            combined.push((kind, action_event(ev.type_, &ev.reason, note)));
                        }
                        false
                    }
                }
            });
        }
        let backlog = recorder.backlog.clone();
        let room = events.len().min(backlog.available_permits());
        if room < events.len() {
            warn!(
                dropped = events.len() - room,
                "too many Events waiting to be published; dropping some"
            );
            events.truncate(room);
        }
        let Ok(permits) = backlog.try_acquire_many_owned(room as u32) else {
            return;
        };
        // The task owns what it needs, so it outlives this pass; each Event's future is made only
        // when its turn comes (2,000 of them made at once held 4.6 MiB in a mass removal).
        tokio::spawn(async move {
            let (recorder, regarding) = (&recorder, &regarding);
            futures::stream::iter(events)
                .for_each_concurrent(EVENTS_IN_FLIGHT, |(ev, subject)| async move {
                    if let Err(e) = recorder.publish(&ev, &subject, regarding).await {
                        warn!(error = %e, reason = %ev.reason, "could not publish event");
                    }
                })
                .await;
            drop(permits);
            for (kind, first) in &combined {
                if let Err(e) = recorder.publish_combined(*kind, first, regarding).await {
                    warn!(error = %e, reason = %first.reason, "could not publish combined event");
                }
            }
        });
    }

    /// Counts one action's outcome into the status; returns its Event (type, reason, subject, note).
    fn outcome(&mut self, o: &Outcome) -> (EventType, &'static str, String, String) {
        let a = &o.action;
        let target = describe(&a.instance);
        let event = match &o.result {
            Written::Done if a.replaces_deregister => (
                EventType::Warning,
                "DeregisterIneffective",
                format!(
                    "{target}: registered again after its deregistration (a live client keeps \
                     it); disabled instead (enabled=false): {}",
                    a.reason
                ),
            ),
            Written::Done => {
                let (reason, verb) = (a.kind.done_reason(), a.kind.done());
                (
                    EventType::Normal,
                    reason,
                    format!("{target} {verb}: {}", a.reason),
                )
            }
            Written::Ineffective { disabled } => {
                let then = if *disabled {
                    "disabled it instead (enabled=false)"
                } else {
                    "disabling it failed too"
                };
                (
                    EventType::Warning,
                    "DeregisterIneffective",
                    format!(
                        "{target}: Nacos answered ok to the deregistration but still lists it \
                         (a live client owns it); {then}: {}",
                        a.reason
                    ),
                )
            }
            Written::NotConfirmed(why) => (
                EventType::Normal,
                "NotConfirmed",
                format!("{target} left alone: {why}"),
            ),
            Written::Failed(why) => (
                EventType::Warning,
                "ActionFailed",
                format!("{target}: {} failed: {why}", a.kind.noun()),
            ),
        };
        if o.took_offline() {
            self.status.removed_total += 1;
            // The counts come from the listing made before the action: move the instance to
            // where it is now, so the status describes the registry after this pass.
            let entry = self.taken.entry(a.instance.service.clone()).or_default();
            match (a.kind, &o.result) {
                (ActionKind::Deregister, Written::Done) => entry.deregistered += 1,
                _ => entry.disabled += 1,
            }
        }
        (event.0, event.1, target, event.2)
    }

    /// Counts, pending work, held removals, dry-run reports and the remembered budget.
    pub async fn plan(&mut self, plan: &Plan, memory: &Memory, window: Duration) {
        self.planned = true;
        let binding = key(self.b);
        let mut totals = InstanceCounts::default();
        let mut by_verdict: BTreeMap<Verdict, i64> = BTreeMap::new();
        let mut services = Vec::new();
        let mut pending = Vec::new();
        let mut held = 0usize;
        for sp in &plan.services {
            let mut c = sp.counts;
            if let Some(t) = self.taken.get(&sp.service) {
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
            for a in &sp.held {
                pending.push(pending_of(a, PendingState::Held, None));
            }
            for a in &sp.would_act {
                pending.push(pending_of(a, PendingState::DryRun, None));
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
            if !sp.held.is_empty() {
                held += sp.held.len();
                self.event(
                    EventType::Warning,
                    "RemovalsHeld",
                    &format!(
                        "{}: {} removal(s) held by maxRemovals {} per {}s ({}); approve one batch with: \
                         kubectl annotate nb -n {} {} {}={} --overwrite",
                        sp.service,
                        sp.held.len(),
                        self.b.spec.policy.max_removals().map(|m| m.to_string()).unwrap_or_default(),
                        window.as_secs(),
                        sp.held.iter().map(|a| describe(&a.instance)).collect::<Vec<_>>().join(", "),
                        self.b.namespace().unwrap_or_default(),
                        self.b.name_any(),
                        crate::crd::APPROVE_ANNOTATION,
                        self.b.metadata.generation.unwrap_or_default(),
                    ),
                )
                .await;
            }
            if let Some(why) = &sp.blocked {
                warn!(service = %sp.service, %why, "no action for this service");
            }
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
        pending.truncate(MAX_PENDING);
        for (verdict, n) in by_verdict {
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
            .set(held as i64);
        self.status.instances = totals;
        self.status.service_count = services.len() as u32;
        self.status.services = bounded_services(services);
        self.status.pending = pending;
        self.status.removals = removal_records(memory);
        self.status.approved_token = memory.approval_consumed.clone();
        self.status.frozen_at = memory.frozen_at.and_then(to_time);
        self.held = held;
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
        let mut conds = Vec::new();
        let spec_bad = failing(&self.problems, "SpecValid");
        let nacos_bad = failing(&self.problems, "NacosReachable");
        let cache_bad = failing(&self.problems, "CacheSynced");
        conds.push(cond(
            &old,
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
            &old,
            "NacosReachable",
            nacos_state.0,
            (nacos_state.1, nacos_state.2),
            gen,
            now,
        ));
        let cache_ok = cache_bad.is_none() && self.ctx.view.is_synced();
        conds.push(cond(
            &old,
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
        let held_msg = format!("{} removal(s) held by the removal budget", self.held);
        conds.push(cond(
            &old,
            "RemovalsHeld",
            self.held > 0,
            if self.held > 0 {
                ("BudgetExceeded", held_msg.as_str())
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
                Some(Some(msg)) => Some(cond(&old, type_, bad, (reasons[0], msg), gen, now)),
                Some(None) => Some(cond(&old, type_, !bad, (reasons[1], fine), gen, now)),
                None => old.iter().find(|c| c.type_ == type_).cloned(),
            }
        };
        conds.extend(finding(
            "ScopeCoversPods",
            &self.scope_gap,
            false,
            [SCOPE_GAP_REASON, "PodsInScope"],
            "every instance a pod of the binding holds is in scope",
        ));
        conds.extend(finding(
            "Overlapping",
            &self.overlap,
            true,
            [OVERLAP_REASON, "Exclusive"],
            "no other binding governs these services",
        ));
        let ready = self.problems.is_empty() && self.planned;
        let ready_msg = "every governed service was compared with the cluster";
        conds.push(cond(
            &old,
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
        self.status.conditions = conds;
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

/// The removal history and the consumed approval of `memory`, as status fields.
pub(super) fn budget_fields(memory: &Memory) -> serde_json::Value {
    let mut status = serde_json::json!({"removals": removal_records(memory)});
    if let Some(token) = &memory.approval_consumed {
        status["approvedToken"] = serde_json::json!(token);
    }
    status
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

fn describe(k: &InstanceKey) -> String {
    k.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_for_an_endpoint_the_server_lacks_is_no_request_error() {
        use crate::nacos::{Operation, RequestEvent, RequestObserver};
        let m = Arc::new(Metrics::new());
        let observer = RequestMetrics(m.clone());
        let event = |operation, status, probe| RequestEvent {
            operation,
            method: "GET",
            path: "/nacos/v3/admin/core/state",
            address: "http://nacos:8848",
            status: Some(status),
            elapsed: Duration::from_millis(3),
            probe,
        };
        // Nacos 2.x answers the 3.x state endpoint and login path 404/501 on every full pass.
        observer.on_request(&event(Operation::ServerInfo, 501, true));
        observer.on_request(&event(Operation::Login, 404, true));
        assert!(
            !m.encode()
                .contains("nacos_reconciler_nacos_request_errors_total{"),
            "{}",
            m.encode()
        );
        observer.on_request(&event(Operation::ListInstances, 404, false));
        observer.on_request(&event(Operation::ServerInfo, 503, true));
        let text = m.encode();
        assert!(
            text.contains(
                r#"nacos_request_errors_total{operation="list_instances",kind="server"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"nacos_request_errors_total{operation="server_info",kind="server"} 1"#),
            "{text}"
        );
    }

    fn event(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    fn binding(name: &str) -> ObjectReference {
        ObjectReference {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
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
    fn each_problem_names_its_condition_and_reason() {
        let secret = Problem::SecretNotFound("Secret shop/nacos-auth not found".into());
        let ns = Problem::NamespaceNotFound("Nacos namespace \"x\" does not exist".into());
        let down = Problem::NacosUnavailable("Nacos unreachable".into());
        let auth = Problem::AuthFailed("denied".into());
        let cache = Problem::CacheNotSynced("pods".into());
        assert_eq!(
            secret.condition_and_reason(),
            ("SpecValid", "SecretNotFound")
        );
        assert_eq!(secret.event_reason(), "SecretNotFound");
        assert_eq!(
            ns.condition_and_reason(),
            ("NacosReachable", "NamespaceNotFound")
        );
        assert_eq!(ns.event_reason(), "NamespaceNotFound");
        assert_eq!(cache.condition_and_reason(), ("CacheSynced", "NotSynced"));
        assert_eq!(cache.event_reason(), "CacheNotSynced");

        assert_eq!(
            failing(std::slice::from_ref(&secret), "SpecValid"),
            Some((
                "SecretNotFound",
                "Secret shop/nacos-auth not found".to_string()
            ))
        );
        assert_eq!(
            failing(std::slice::from_ref(&secret), "NacosReachable"),
            None
        );
        // Credentials explain more than reachability, which explains more than a namespace.
        let all = vec![ns.clone(), down.clone(), auth.clone()];
        assert_eq!(
            failing(&all, "NacosReachable").map(|f| f.0),
            Some("AuthFailed")
        );
        let two = vec![ns.clone(), down];
        assert_eq!(
            failing(&two, "NacosReachable").map(|f| f.0),
            Some("NacosUnavailable")
        );
        assert_eq!(
            failing(&[ns], "NacosReachable").map(|f| f.0),
            Some("NamespaceNotFound")
        );
        assert_eq!(
            failing(&[cache], "CacheSynced").map(|f| f.0),
            Some("NotSynced")
        );
    }

    #[tokio::test]
    async fn each_subject_gets_a_series_of_its_own_and_repeats_count_into_it() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let r = EventRecorder::new(client, "nacos-reconciler".into());
        let orders = binding("orders");
        let key = EventRecorder::subject_key;
        let a1 = key(&event("Deregistered", "a 1"), "orders 10.0.0.1:80", &orders);
        r.series().insert(
            a1,
            Series {
                name: "orders.1".into(),
                count: 1,
                used: Instant::now(),
            },
        );
        // The same instance again (its note says a different age): a repeat of its series.
        let a2 = key(&event("Deregistered", "a 2"), "orders 10.0.0.1:80", &orders);
        assert_eq!(a2, a1);
        assert_eq!(r.repeat_of(a2), Some(("orders.1".into(), 2)));
        assert_eq!(r.repeat_of(a2), Some(("orders.1".into(), 3)));
        // Another instance, another reason, or another binding: an Event of its own.
        for other in [
            key(&event("Deregistered", "b 1"), "orders 10.0.0.2:80", &orders),
            key(&event("Disabled", "a"), "orders 10.0.0.1:80", &orders),
            key(
                &event("Deregistered", "a"),
                "orders 10.0.0.1:80",
                &binding("pay"),
            ),
        ] {
            assert_eq!(r.repeat_of(other), None);
        }
    }
}
