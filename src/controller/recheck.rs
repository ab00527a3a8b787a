//! Follow-up listings of services where the registry may change again because of what the
//! operator did, with no Kubernetes event to mark the moment:
//! - after a deregistration of an ephemeral instance, a client that still beats registers it again
//!   at its next beat (5 s by default, `preserved.heart.beat.interval`): the service is listed
//!   again one beat and two beats later, and an instance that came back is disabled then;
//! - Alibaba Nacos 2.x/3.x keep `enabled=false` (and the marker) of an address for a minute after
//!   its instance is gone: an instance registered there meanwhile comes up disabled. While a
//!   Ready pod of the binding holds such an address, its service is listed again every 2 s, so the
//!   new instance is re-enabled at once instead of at the next resync.
//!
//! Plain bookkeeping, no I/O: the pass asks which services are due and when to come back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::{Instance, InstanceKey, ServiceKey};

/// The beat of a client that does not say otherwise (Nacos's default).
const DEFAULT_BEAT: Duration = Duration::from_secs(5);
/// The metadata key in which a 1.x client states its beat interval (milliseconds).
const BEAT_KEY: &str = "preserved.heart.beat.interval";
/// After the beat, how long the server takes to show the re-registration (its view refreshes
/// 500 ms after a change) and a margin for the beat's own timing.
const SHOW_SLACK: Duration = Duration::from_secs(1);
/// How long Alibaba Nacos keeps the `enabled=false` of an address whose instance is gone
/// (`nacos.naming.clean.expired-metadata.expired-time`, 60 s by default).
const OVERLAY_TTL: TimeDelta = TimeDelta::seconds(60);
/// How often a reused address's service is listed while its overlay may still apply.
const REUSED_EVERY: TimeDelta = TimeDelta::seconds(2);

/// Services to list again, and the addresses whose overlay may still disable a new instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rechecks {
    due: BTreeMap<ServiceKey, BTreeSet<DateTime<Utc>>>,
    /// Instances we disabled that left the listing, with when they were last seen gone.
    vanished: BTreeMap<InstanceKey, DateTime<Utc>>,
}

/// The beat interval `instance` states, or Nacos's default.
pub fn beat_of(instance: &Instance) -> Duration {
    instance
        .metadata
        .get(BEAT_KEY)
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|ms| (100..=600_000).contains(ms))
        .map_or(DEFAULT_BEAT, Duration::from_millis)
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Rechecks {
    /// An ephemeral `instance` was deregistered at `now`: list its service again one beat and two
    /// beats later.
    pub fn after_deregistration(&mut self, instance: &Instance, now: DateTime<Utc>) {
        if !instance.ephemeral {
            return; // nothing registers a persistent instance again by itself
        }
        let beat = beat_of(instance);
        let due = self.due.entry(instance.key.service.clone()).or_default();
        due.insert(after(now, beat + SHOW_SLACK));
        due.insert(after(now, beat * 2 + SHOW_SLACK));
    }

    /// `disabled` held instances we disabled before this pass; those a fresh listing of their
    /// service no longer holds have vanished (on a server that keeps their overlay).
    pub fn note_vanished<'a>(
        &mut self,
        disabled: impl IntoIterator<Item = &'a InstanceKey>,
        fresh: &BTreeMap<&ServiceKey, BTreeSet<&InstanceKey>>,
        now: DateTime<Utc>,
    ) {
        for key in disabled {
            if fresh
                .get(&key.service)
                .is_some_and(|keys| !keys.contains(key))
            {
                self.vanished.insert(key.clone(), now);
            }
        }
        for (service, keys) in fresh {
            self.vanished
                .retain(|k, _| &k.service != *service || !keys.contains(k));
        }
        self.vanished.retain(|_, at| now - *at < OVERLAY_TTL);
    }

    /// The addresses of vanished instances, whose pods the caller looks up.
    pub fn vanished_ips(&self) -> BTreeSet<IpAddr> {
        self.vanished.keys().map(|k| k.ip).collect()
    }

    /// Lists again soon the services of vanished instances whose address a Ready pod holds.
    pub fn watch_reused(&mut self, live: impl Fn(IpAddr) -> bool, now: DateTime<Utc>) {
        for key in self.vanished.keys().filter(|k| live(k.ip)) {
            let due = self.due.entry(key.service.clone()).or_default();
            if !due.iter().any(|t| *t <= now + REUSED_EVERY) {
                due.insert(now + REUSED_EVERY);
            }
        }
    }

    /// The services due for a listing at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> BTreeSet<ServiceKey> {
        self.due
            .iter()
            .filter(|(_, times)| times.iter().any(|t| *t <= now))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// `listed` were listed at `now`: their checks due by then are done.
    pub fn listed<'a>(
        &mut self,
        listed: impl IntoIterator<Item = &'a ServiceKey>,
        now: DateTime<Utc>,
    ) {
        for service in listed {
            if let Some(times) = self.due.get_mut(service) {
                times.retain(|t| *t > now);
            }
        }
        self.due.retain(|_, times| !times.is_empty());
    }

    /// When the next check falls due.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.due.values().flat_map(|t| t.iter().copied()).min()
    }

    /// Forgets services the binding no longer governs.
    pub fn retain_services(&mut self, governed: &BTreeSet<&ServiceKey>) {
        self.due.retain(|s, _| governed.contains(s));
        self.vanished.retain(|k, _| governed.contains(&k.service));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn inst(ip: &str, ephemeral: bool, beat_ms: Option<&str>) -> Instance {
        Instance {
            ephemeral,
            metadata: beat_ms
                .map(|v| (BEAT_KEY.to_string(), v.to_string()))
                .into_iter()
                .collect(),
            ..Instance::of_orders(ip)
        }
    }

    #[test]
    fn a_deregistered_ephemeral_instance_is_checked_one_and_two_beats_later() {
        let mut r = Rechecks::default();
        let i = inst("10.0.0.1", true, None);
        r.after_deregistration(&i, t(0));
        assert_eq!(r.next(), Some(t(6)));
        assert!(r.due(t(5)).is_empty());
        assert_eq!(r.due(t(6)), BTreeSet::from([i.key.service.clone()]));
        r.listed([&i.key.service], t(6));
        assert_eq!(r.next(), Some(t(11)));
        r.listed([&i.key.service], t(11));
        assert_eq!(r.next(), None);
    }

    #[test]
    fn the_beat_the_client_states_is_used_and_persistent_instances_need_no_check() {
        assert_eq!(
            beat_of(&inst("10.0.0.1", true, Some("2000"))),
            Duration::from_secs(2)
        );
        assert_eq!(beat_of(&inst("10.0.0.1", true, Some("junk"))), DEFAULT_BEAT);
        assert_eq!(beat_of(&inst("10.0.0.1", true, Some("0"))), DEFAULT_BEAT);
        let mut r = Rechecks::default();
        r.after_deregistration(&inst("10.0.0.1", true, Some("2000")), t(0));
        assert_eq!(r.next(), Some(t(3)));
        let mut p = Rechecks::default();
        p.after_deregistration(&inst("10.0.0.1", false, None), t(0));
        assert_eq!(p.next(), None);
    }

    #[test]
    fn a_vanished_disabled_address_is_watched_while_a_live_pod_holds_it_and_for_a_minute_at_most() {
        let i = inst("10.0.0.1", true, None);
        let other = inst("10.0.0.2", true, None);
        let svc = i.key.service.clone();
        let mut r = Rechecks::default();
        let listed = BTreeMap::from([(&svc, BTreeSet::from([&other.key]))]);
        r.note_vanished([&i.key], &listed, t(0));
        assert_eq!(r.vanished_ips(), BTreeSet::from([i.key.ip]));
        // No pod holds the address: nothing to do.
        r.watch_reused(|_| false, t(1));
        assert_eq!(r.next(), None);
        // A Ready pod holds it: its service every 2 s.
        r.watch_reused(|ip| ip == i.key.ip, t(1));
        assert_eq!(r.next(), Some(t(3)));
        r.watch_reused(|ip| ip == i.key.ip, t(2));
        assert_eq!(r.next(), Some(t(3)), "not scheduled twice");
        // Listed again with the instance back: no longer vanished.
        let back = BTreeMap::from([(&svc, BTreeSet::from([&i.key, &other.key]))]);
        r.note_vanished([], &back, t(3));
        assert!(r.vanished_ips().is_empty());
        // Past the overlay's minute it is forgotten.
        let mut old = Rechecks::default();
        old.note_vanished([&i.key], &listed, t(0));
        old.note_vanished([], &BTreeMap::new(), t(61));
        assert!(old.vanished_ips().is_empty());
    }

    #[test]
    fn services_no_longer_governed_are_forgotten() {
        let i = inst("10.0.0.1", true, None);
        let mut r = Rechecks::default();
        r.after_deregistration(&i, t(0));
        r.retain_services(&BTreeSet::new());
        assert_eq!(r.next(), None);
    }
}
