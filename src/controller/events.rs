//! Events (events.k8s.io/v1) about a binding: one series per subject, the actions' Events folded
//! into a combined Event past the first few of a kind (see `event_fold.rs`), and published in the
//! background within a bounded backlog. Below the report, which decides what to tell.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::Api;
use tokio::sync::Semaphore;
use tracing::warn;

use super::event_fold::{Admit, EventFolds, FOLD_WINDOW, OWN_EVENTS_PER_WINDOW};
use super::outcome::{Outcome, Written};
use crate::model::InstanceKey;

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

    /// Publishes the actions' Events (each with its subject) in the background. Past the first few
    /// of a kind, Events fold into the kind's combined Event; past the backlog's room, they are
    /// dropped with a warning.
    pub fn publish_in_background(
        self: &Arc<Self>,
        mut events: Vec<(Event, String)>,
        regarding: ObjectReference,
    ) {
        let recorder = self.clone();
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
}

pub(super) fn action_event(type_: EventType, reason: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

pub(super) fn describe(k: &InstanceKey) -> String {
    k.to_string()
}

/// Why an instance this outcome left disabled is still registered: its Event's words, without the
/// instance's name (the status entry names it).
pub(super) fn offline_note(o: &Outcome) -> Option<String> {
    if !o.left_disabled() {
        return None;
    }
    let (event, target) = outcome_event(o);
    let note = event.note.unwrap_or_default();
    Some(match note.strip_prefix(&target) {
        Some(rest) => rest.trim_start_matches(':').trim_start().to_string(),
        None => note,
    })
}

/// One action's outcome as an Event, with the subject (the instance) its series is about.
pub(super) fn outcome_event(o: &Outcome) -> (Event, String) {
    let a = &o.action;
    let target = describe(&a.instance);
    let (type_, reason, note) = match &o.result {
        Written::Done if a.replaces_deregister => (
            EventType::Warning,
            "DeregisterIneffective",
            // The reason says why (registered again after the deregistration, or kept by a
            // client a deregistration does not end).
            format!(
                "{target}: a deregistration does not take it away; disabled instead \
                 (enabled=false): {}",
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
        Written::Ineffective { disabled, owner } => {
            let then = if *disabled {
                "disabled it instead (enabled=false)"
            } else {
                "disabling it failed too"
            };
            let why = match owner {
                Some(c) => format!("{}; a deregistration does not end it", c.keeps_it()),
                None => "Nacos answered ok to the deregistration but still lists it (a live \
                         client owns it)"
                    .to_string(),
            };
            (
                EventType::Warning,
                "DeregisterIneffective",
                format!("{target}: {why}; {then}: {}", a.reason),
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
    (action_event(type_, reason, &note), target)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `status.stillRegistered` gets the Event's words of what left an instance disabled.
    #[test]
    fn an_offline_note_is_the_disabling_events_words_without_the_instance() {
        use crate::model::{InstanceKey, ServiceKey};
        use crate::nacos::{Connection, Publisher};
        use crate::plan::{ActionKind, Confirm, Verdict};
        let outcome = |kind, result| Outcome {
            action: crate::plan::Action {
                kind,
                instance: InstanceKey {
                    service: ServiceKey::new("DEFAULT_GROUP", "orders"),
                    cluster: "DEFAULT".into(),
                    ip: "10.1.0.7".parse().unwrap(),
                    port: 8080,
                },
                ephemeral: true,
                verdict: Verdict::Orphan,
                reason: "pod shop/orders-1 deleted 3s ago".into(),
                evidence_at: chrono::Utc::now(),
                confirm: Confirm::None,
                replaces_deregister: false,
            },
            result,
        };
        let owned = Written::Ineffective {
            disabled: true,
            owner: Some(Publisher::Connection(Connection {
                id: "1765000000000_127.0.0.1_58722".into(),
                client: Some("127.0.0.1:58722".parse().unwrap()),
                since: None,
                detail: None,
            })),
        };
        assert_eq!(
            offline_note(&outcome(ActionKind::Deregister, owned)).as_deref(),
            Some(
                "a gRPC connection keeps it registered (client 127.0.0.1:58722): the process \
                 still runs; a deregistration does not end it; disabled it instead \
                 (enabled=false): pod shop/orders-1 deleted 3s ago"
            )
        );
        assert_eq!(
            offline_note(&outcome(ActionKind::Disable, Written::Done)).as_deref(),
            Some("disabled: pod shop/orders-1 deleted 3s ago")
        );
        for (kind, result) in [
            (ActionKind::Deregister, Written::Done),
            (
                ActionKind::Deregister,
                Written::Ineffective {
                    disabled: false,
                    owner: None,
                },
            ),
            (ActionKind::Enable, Written::Done),
        ] {
            assert_eq!(
                offline_note(&outcome(kind, result.clone())),
                None,
                "{result:?}"
            );
        }
    }
}
