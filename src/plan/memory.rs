//! What the operator remembers between passes. The caller owns it; the planner returns it updated.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::{InstanceKey, ServiceKey};

use super::policy::before;
use super::Action;

/// Small and prunable: entries of instances that are no longer listed are dropped on every pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Memory {
    /// When each instance was first seen stale: the grace clock when no better evidence time exists.
    pub first_seen_stale: BTreeMap<InstanceKey, DateTime<Utc>>,
    /// Times of the removals (Deregister or Disable) per service, for the budget window.
    pub removals: BTreeMap<ServiceKey, Vec<DateTime<Utc>>>,
    /// Deregistrations we issued, with their time: a re-appearance within the window means the
    /// delete did not take (a 1.x client re-registers within seconds).
    pub deregistered: BTreeMap<InstanceKey, DateTime<Utc>>,
    /// Instances whose deregistration did not take: the next action for them is Disable.
    pub ineffective: BTreeSet<InstanceKey>,
    /// The last approval token that released held removals.
    pub approval_consumed: Option<String>,
    /// Instances we disabled (and have not seen enabled since). Where the server's listing hides
    /// disabled instances (rnacos without its console), these keys are how the caller finds them
    /// again, one by one, to re-enable them. With each, once noted, what kept it registered when
    /// we disabled it (an Event's words): `status.stillRegistered` shows it while Nacos lists it.
    pub disabled: BTreeMap<InstanceKey, Option<OfflineNote>>,
    /// The last pass that saw the cluster partitioned (frozen). Node evidence from before it is not
    /// trusted: as a partition heals, the last nodes to report again must not look unreachable
    /// since the partition began.
    pub frozen_at: Option<DateTime<Utc>>,
}

/// What an action's execution learnt that the memory must keep. Executions run beside the passes
/// that follow them, so they note these and the next pass applies them ([`Memory::apply`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A deregistration that was never sent, or not as planned ([`Memory::forget_deregistration`]).
    DeregistrationNotSent(InstanceKey),
    /// A deregistration that cannot take ([`Memory::mark_ineffective`]).
    Ineffective(InstanceKey),
    /// Disabled by us ([`Memory::record_disabled`]).
    Disabled(InstanceKey),
    /// Enabled again by us ([`Memory::forget_disabled`]).
    Enabled(InstanceKey),
}

/// Why an instance we disabled is still registered, as seen when we disabled it.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineNote {
    pub at: DateTime<Utc>,
    pub why: String,
}

impl Memory {
    /// Takes in what an execution learnt.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::DeregistrationNotSent(key) => self.forget_deregistration(key),
            Change::Ineffective(key) => self.mark_ineffective(key),
            Change::Disabled(key) => self.record_disabled(key),
            Change::Enabled(key) => self.forget_disabled(key),
        }
    }

    /// Records that a deregistration was seen not to take (the executor's verification calls this).
    pub fn mark_ineffective(&mut self, key: &InstanceKey) {
        self.ineffective.insert(key.clone());
    }

    /// Forgets a deregistration that was never carried out (the call itself failed), so the
    /// instance's next listing is not mistaken for a re-appearance.
    pub fn forget_deregistration(&mut self, key: &InstanceKey) {
        self.deregistered.remove(key);
    }

    /// Whether a Deregister of this instance should be replaced by Disable: marked ineffective, or
    /// listed again less than `window` after we deregistered it.
    pub fn deregister_ineffective(
        &self,
        key: &InstanceKey,
        now: DateTime<Utc>,
        window: TimeDelta,
    ) -> bool {
        self.ineffective.contains(key)
            || self
                .deregistered
                .get(key)
                .is_some_and(|at| *at > before(now, window))
    }

    /// Whether `action` is a disable standing in for a deregistration of this window (that did not
    /// hold): that removal is counted against the budget already.
    pub fn counted_already(&self, action: &Action, now: DateTime<Utc>, window: TimeDelta) -> bool {
        action.replaces_deregister
            && self
                .deregistered
                .get(&action.instance)
                .is_some_and(|at| *at > before(now, window))
    }

    /// Removals of `service` that still count against the budget at `now`.
    pub fn removals_in_window(
        &self,
        service: &ServiceKey,
        now: DateTime<Utc>,
        window: TimeDelta,
    ) -> usize {
        let start = before(now, window);
        self.removals
            .get(service)
            .map_or(0, |times| times.iter().filter(|t| **t > start).count())
    }

    pub(crate) fn record_removal(&mut self, service: &ServiceKey, now: DateTime<Utc>) {
        self.removals.entry(service.clone()).or_default().push(now);
    }

    pub(crate) fn record_deregistration(&mut self, key: &InstanceKey, now: DateTime<Utc>) {
        self.deregistered.insert(key.clone(), now);
    }

    /// Records an instance we took offline with `enabled=false` (the executor calls this).
    pub fn record_disabled(&mut self, key: &InstanceKey) {
        self.disabled.entry(key.clone()).or_default();
    }

    /// Forgets an instance we disabled once it is enabled again (the executor calls this).
    pub fn forget_disabled(&mut self, key: &InstanceKey) {
        self.disabled.remove(key);
    }

    /// Notes why an instance we have just disabled is still registered.
    pub fn note_offline(&mut self, key: &InstanceKey, at: DateTime<Utc>, why: String) {
        if let Some(note) = self.disabled.get_mut(key) {
            *note = Some(OfflineNote { at, why });
        }
    }

    /// Forgets the staleness history of an instance that is live again (a new life for its address).
    pub(crate) fn forget_instance(&mut self, key: &InstanceKey) {
        self.first_seen_stale.remove(key);
        self.ineffective.remove(key);
        self.deregistered.remove(key);
    }

    /// Drops what can no longer matter: services no longer governed, instances no longer listed in a
    /// service whose listing succeeded, and times older than the window. Deregistrations are kept
    /// for the whole window even when unlisted: their re-appearance is what they are kept for.
    pub(crate) fn prune(
        &mut self,
        governed: &BTreeSet<&ServiceKey>,
        listed: &BTreeMap<&ServiceKey, BTreeSet<&InstanceKey>>,
        now: DateTime<Utc>,
        window: TimeDelta,
    ) {
        let start = before(now, window);
        let keep = |key: &InstanceKey| match listed.get(&key.service) {
            Some(keys) => keys.contains(key),
            None => governed.contains(&key.service),
        };
        self.first_seen_stale.retain(|k, _| keep(k));
        self.ineffective.retain(|k| keep(k));
        self.disabled.retain(|k, _| keep(k));
        self.deregistered
            .retain(|k, at| governed.contains(&k.service) && *at > start);
        self.removals.retain(|s, times| {
            times.retain(|t| *t > start);
            governed.contains(s) && !times.is_empty()
        });
    }
}
