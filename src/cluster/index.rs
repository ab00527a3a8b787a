//! Incrementally maintained stores: objects by key plus a secondary index by IP, and the bounded,
//! time-limited tombstone list. Updated per watch event; queries never rebuild anything.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::prune::{PodInfo, SliceInfo, TombstoneInfo};
use crate::model::NodeFacts;

/// Something the view stores and finds by IP.
pub trait Indexed {
    type Key: Clone + Eq + Hash + Ord;
    fn key(&self) -> Self::Key;
    fn ips(&self) -> Vec<IpAddr>;
    /// The namespace for namespaced kinds; relists are scoped by it.
    fn namespace(&self) -> Option<&str>;
    /// Identity beyond the key: a different UID under the same key is a new object.
    fn uid(&self) -> Option<&str> {
        None
    }
}

/// Key of a namespaced object.
pub type NamespacedName = (String, String);

impl Indexed for PodInfo {
    type Key = NamespacedName;
    fn key(&self) -> Self::Key {
        (self.namespace.clone(), self.name.clone())
    }
    fn ips(&self) -> Vec<IpAddr> {
        self.ips.clone()
    }
    fn namespace(&self) -> Option<&str> {
        Some(&self.namespace)
    }
    fn uid(&self) -> Option<&str> {
        Some(&self.uid)
    }
}

impl Indexed for NodeFacts {
    type Key = String;
    fn key(&self) -> Self::Key {
        self.name.clone()
    }
    fn ips(&self) -> Vec<IpAddr> {
        self.internal_ips.clone()
    }
    fn namespace(&self) -> Option<&str> {
        None
    }
}

impl Indexed for SliceInfo {
    type Key = NamespacedName;
    fn key(&self) -> Self::Key {
        (self.namespace.clone(), self.name.clone())
    }
    fn ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .endpoints
            .iter()
            .flat_map(|e| e.ips.iter().copied())
            .collect();
        ips.sort_unstable();
        ips.dedup();
        ips
    }
    fn namespace(&self) -> Option<&str> {
        Some(&self.namespace)
    }
}

/// Objects by key, and keys by IP. Several objects may share an IP (hostNetwork pods, a finished pod
/// whose IP was reused), so the IP index holds a short list.
#[derive(Debug)]
pub struct IpIndex<T: Indexed> {
    objects: HashMap<T::Key, T>,
    by_ip: HashMap<IpAddr, Vec<T::Key>>,
}

impl<T: Indexed> Default for IpIndex<T> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            by_ip: HashMap::new(),
        }
    }
}

impl<T: Indexed> IpIndex<T> {
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn get(&self, key: &T::Key) -> Option<&T> {
        self.objects.get(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.objects.values()
    }

    /// Objects carrying this IP, in key order (deterministic for callers and tests).
    pub fn with_ip(&self, ip: &IpAddr) -> Vec<&T> {
        let mut keys: Vec<&T::Key> = self.by_ip.get(ip).into_iter().flatten().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|k| self.objects.get(k))
            .collect()
    }

    /// Inserts or replaces; returns the previous version.
    pub fn upsert(&mut self, object: T) -> Option<T> {
        let key = object.key();
        let previous = self.remove(&key);
        for ip in object.ips() {
            self.by_ip.entry(ip).or_default().push(key.clone());
        }
        self.objects.insert(key, object);
        previous
    }

    pub fn remove(&mut self, key: &T::Key) -> Option<T> {
        let previous = self.objects.remove(key)?;
        for ip in previous.ips() {
            if let Some(keys) = self.by_ip.get_mut(&ip) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_ip.remove(&ip);
                }
            }
        }
        Some(previous)
    }

    /// Number of objects a relist with this namespace scope (None = all) would replace.
    pub fn count_in_scope(&self, scope: Option<&str>) -> usize {
        match scope {
            None => self.objects.len(),
            Some(ns) => self
                .objects
                .values()
                .filter(|o| o.namespace() == Some(ns))
                .count(),
        }
    }

    /// Replaces every object in scope with `fresh`. Returns (removed objects, (previous, new) for upserts).
    pub fn replace_scope(&mut self, scope: Option<&str>, fresh: Vec<T>) -> Relisted<T> {
        let fresh_keys: std::collections::HashSet<T::Key> = fresh.iter().map(T::key).collect();
        let stale: Vec<T::Key> = self
            .objects
            .values()
            .filter(|o| scope.is_none() || o.namespace() == scope)
            .map(T::key)
            .filter(|k| !fresh_keys.contains(k))
            .collect();
        let removed = stale.iter().filter_map(|k| self.remove(k)).collect();
        let mut updated = Vec::new();
        for object in fresh {
            let key = object.key();
            let previous = self.upsert(object);
            updated.push((previous, key));
        }
        Relisted { removed, updated }
    }

    #[cfg(test)]
    pub fn ip_index_len(&self) -> usize {
        self.by_ip.len()
    }
}

/// Outcome of [`IpIndex::replace_scope`].
#[derive(Debug)]
pub struct Relisted<T: Indexed> {
    pub removed: Vec<T>,
    /// (previous version if any, key of the stored new version)
    pub updated: Vec<(Option<T>, T::Key)>,
}

/// Limits for remembered deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TombstoneLimits {
    pub ttl: chrono::Duration,
    pub max_entries: usize,
}

impl Default for TombstoneLimits {
    fn default() -> Self {
        Self {
            ttl: chrono::Duration::hours(1),
            max_entries: 20_000,
        }
    }
}

/// Recently deleted pods, oldest first; bounded by age and count.
#[derive(Debug, Default)]
pub struct Tombstones {
    limits: TombstoneLimits,
    next_seq: u64,
    /// seq -> (recorded_at, tombstone); seq order is recording order, so eviction pops the front.
    entries: BTreeMap<u64, (DateTime<Utc>, TombstoneInfo)>,
    by_ip: HashMap<IpAddr, Vec<u64>>,
}

impl Tombstones {
    pub fn new(limits: TombstoneLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn record(&mut self, tombstone: TombstoneInfo, now: DateTime<Utc>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        for ip in &tombstone.ips {
            self.by_ip.entry(*ip).or_default().push(seq);
        }
        self.entries.insert(seq, (now, tombstone));
        self.evict(now);
    }

    /// Drops entries older than the TTL and the oldest beyond the count bound.
    pub fn evict(&mut self, now: DateTime<Utc>) {
        while let Some((&seq, (recorded_at, _))) = self.entries.first_key_value() {
            let expired = now - *recorded_at > self.limits.ttl;
            if !expired && self.entries.len() <= self.limits.max_entries {
                break;
            }
            self.remove(seq);
        }
    }

    fn remove(&mut self, seq: u64) {
        let Some((_, tombstone)) = self.entries.remove(&seq) else {
            return;
        };
        for ip in &tombstone.ips {
            if let Some(seqs) = self.by_ip.get_mut(ip) {
                seqs.retain(|s| *s != seq);
                if seqs.is_empty() {
                    self.by_ip.remove(ip);
                }
            }
        }
    }

    fn is_live(&self, recorded_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - recorded_at <= self.limits.ttl
    }

    /// Unexpired tombstones for this IP, newest first (the most recent deletion is the best evidence).
    pub fn for_ip(&self, ip: &IpAddr, now: DateTime<Utc>) -> Vec<&TombstoneInfo> {
        self.by_ip
            .get(ip)
            .into_iter()
            .flatten()
            .rev()
            .filter_map(|seq| self.entries.get(seq))
            .filter(|(recorded_at, _)| self.is_live(*recorded_at, now))
            .map(|(_, t)| t)
            .collect()
    }

    /// All unexpired tombstones, newest first.
    pub fn all(&self, now: DateTime<Utc>) -> impl Iterator<Item = &TombstoneInfo> {
        self.entries
            .values()
            .rev()
            .filter(move |(recorded_at, _)| self.is_live(*recorded_at, now))
            .map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::super::prune::pod_info;
    use super::super::prune::tests::{pod, utc};
    use super::*;

    fn info(ns: &str, name: &str, ips: &[&str]) -> PodInfo {
        pod_info(&pod(ns, name, ips, &[])).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn names(pods: Vec<&PodInfo>) -> Vec<&str> {
        pods.into_iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn ip_index_follows_upserts_and_removals() {
        let mut idx = IpIndex::default();
        assert!(idx.upsert(info("a", "p1", &["10.0.0.1"])).is_none());
        idx.upsert(info("a", "p2", &["10.0.0.1", "10.0.0.2"]));
        assert_eq!(names(idx.with_ip(&ip("10.0.0.1"))), vec!["p1", "p2"]);

        // IP change: the old IP no longer finds the pod.
        let previous = idx.upsert(info("a", "p2", &["10.0.0.3"]));
        assert_eq!(previous.map(|p| p.ips.len()), Some(2));
        assert_eq!(names(idx.with_ip(&ip("10.0.0.1"))), vec!["p1"]);
        assert!(idx.with_ip(&ip("10.0.0.2")).is_empty());
        assert_eq!(names(idx.with_ip(&ip("10.0.0.3"))), vec!["p2"]);

        assert!(idx.remove(&("a".into(), "p1".into())).is_some());
        assert!(idx.with_ip(&ip("10.0.0.1")).is_empty());
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.ip_index_len(), 1, "no empty IP buckets linger");
    }

    #[test]
    fn replace_scope_only_touches_its_namespace() {
        let mut idx = IpIndex::default();
        idx.upsert(info("a", "keep-other-ns", &["10.0.0.1"]));
        idx.upsert(info("b", "gone", &["10.0.0.2"]));
        idx.upsert(info("b", "stays", &["10.0.0.3"]));
        assert_eq!(idx.count_in_scope(Some("b")), 2);

        let out = idx.replace_scope(
            Some("b"),
            vec![
                info("b", "stays", &["10.0.0.3"]),
                info("b", "new", &["10.0.0.4"]),
            ],
        );
        assert_eq!(out.removed.len(), 1);
        assert_eq!(out.removed[0].name, "gone");
        assert_eq!(out.updated.len(), 2);
        assert!(out
            .updated
            .iter()
            .any(|(prev, key)| prev.is_some() && key.1 == "stays"));
        assert_eq!(idx.len(), 3);
        assert!(idx.with_ip(&ip("10.0.0.2")).is_empty());

        let out = idx.replace_scope(None, vec![]);
        assert_eq!(out.removed.len(), 3);
        assert_eq!(idx.len(), 0);
        assert_eq!(idx.ip_index_len(), 0);
    }

    fn tomb(name: &str, ip_s: &str) -> TombstoneInfo {
        TombstoneInfo::from_pod(&info("a", name, &[ip_s]), utc(0), true)
    }

    #[test]
    fn tombstones_expire_after_ttl() {
        let mut t = Tombstones::new(TombstoneLimits {
            ttl: chrono::Duration::seconds(100),
            max_entries: 10,
        });
        t.record(tomb("old", "10.0.0.1"), utc(0));
        t.record(tomb("new", "10.0.0.1"), utc(50));
        let found: Vec<_> = t
            .for_ip(&ip("10.0.0.1"), utc(60))
            .iter()
            .map(|x| x.name.clone())
            .collect();
        assert_eq!(found, vec!["new", "old"], "newest first");
        // Expired entries are hidden from queries even before the next write evicts them.
        let found: Vec<_> = t
            .for_ip(&ip("10.0.0.1"), utc(120))
            .iter()
            .map(|x| x.name.clone())
            .collect();
        assert_eq!(found, vec!["new"]);
        assert_eq!(t.all(utc(120)).count(), 1);
        t.evict(utc(120));
        assert_eq!(t.len(), 1);
        t.evict(utc(151));
        assert_eq!(t.len(), 0);
        assert!(t.by_ip.is_empty());
    }

    #[test]
    fn tombstones_are_bounded_in_count() {
        let mut t = Tombstones::new(TombstoneLimits {
            ttl: chrono::Duration::hours(1),
            max_entries: 3,
        });
        for i in 0..5 {
            t.record(tomb(&format!("p{i}"), &format!("10.0.0.{i}")), utc(i));
        }
        assert_eq!(t.len(), 3);
        assert!(t.for_ip(&ip("10.0.0.0"), utc(10)).is_empty());
        assert!(t.for_ip(&ip("10.0.0.1"), utc(10)).is_empty());
        assert_eq!(t.for_ip(&ip("10.0.0.4"), utc(10)).len(), 1);
        assert_eq!(t.by_ip.len(), 3);
    }
}
