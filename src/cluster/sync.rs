//! Sync bookkeeping for the view's watch streams, as a pure state machine.
//!
//! A stream is synced once a full list has been applied. Any watch error makes it degraded, and
//! degraded counts as unsynced until the next complete relist: the watch loop restarts its watcher
//! after an error so that relist always follows. A relist that comes back empty where the view held
//! objects is not believed at once: it is confirmed by a second list (two signals before a mass "gone").

use std::collections::BTreeMap;
use std::fmt;

/// The kinds the view watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchedKind {
    Pod,
    Node,
    EndpointSlice,
}

/// One watch stream: a kind, cluster-wide (None) or in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub kind: WatchedKind,
    pub namespace: Option<String>,
}

impl StreamId {
    pub fn new(kind: WatchedKind, namespace: Option<&str>) -> Self {
        Self {
            kind,
            namespace: namespace.map(str::to_owned),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} in {ns}", self.kind),
            None => write!(f, "{:?}", self.kind),
        }
    }
}

/// Where one stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// The first list has not completed yet.
    Listing,
    Synced,
    /// An error (or an unconfirmed empty relist) since the last good list; the reason is for status.
    Degraded(String),
}

#[derive(Debug, Clone, Default)]
struct Stream {
    listed_once: bool,
    degraded: Option<String>,
    empty_relist_pending: bool,
}

impl Stream {
    fn state(&self) -> StreamState {
        match (&self.degraded, self.listed_once) {
            (Some(reason), _) => StreamState::Degraded(reason.clone()),
            (None, true) => StreamState::Synced,
            (None, false) => StreamState::Listing,
        }
    }
}

/// What to do with a completed relist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelistDecision {
    /// Replace the stream's objects with the list.
    Accept,
    /// Keep the current objects and list again before believing that everything is gone.
    ConfirmEmpty,
}

#[derive(Debug, Clone, Default)]
pub struct SyncTracker {
    streams: BTreeMap<StreamId, Stream>,
}

impl SyncTracker {
    pub fn register(&mut self, id: StreamId) {
        self.streams.entry(id).or_default();
    }

    /// Returns true when the stream's state changed.
    pub fn on_error(&mut self, id: &StreamId, reason: String) -> bool {
        let stream = self.streams.entry(id.clone()).or_default();
        let before = stream.state();
        stream.degraded = Some(reason);
        // Only a synced -> degraded (or listing -> degraded) transition matters to callers;
        // a repeated error with a new message does not.
        std::mem::discriminant(&before) != std::mem::discriminant(&stream.state())
    }

    /// `listed` objects came back; the view held `held` in this stream's scope.
    pub fn on_relist(&mut self, id: &StreamId, listed: usize, held: usize) -> RelistDecision {
        let stream = self.streams.entry(id.clone()).or_default();
        if listed == 0 && held > 0 && !stream.empty_relist_pending {
            stream.empty_relist_pending = true;
            stream.degraded = Some(format!(
                "{id}: relist returned no objects where {held} were known; confirming"
            ));
            return RelistDecision::ConfirmEmpty;
        }
        stream.empty_relist_pending = false;
        stream.listed_once = true;
        stream.degraded = None;
        RelistDecision::Accept
    }

    pub fn state(&self, id: &StreamId) -> Option<StreamState> {
        self.streams.get(id).map(Stream::state)
    }

    /// True when at least one stream is registered and every stream is synced.
    pub fn is_synced(&self) -> bool {
        !self.streams.is_empty()
            && self
                .streams
                .values()
                .all(|s| s.state() == StreamState::Synced)
    }

    /// Streams that are not synced, with a human-readable reason (for the CacheSynced condition).
    pub fn unsynced(&self) -> Vec<(StreamId, String)> {
        self.streams
            .iter()
            .filter_map(|(id, s)| match s.state() {
                StreamState::Synced => None,
                StreamState::Listing => Some((id.clone(), format!("{id}: initial list pending"))),
                StreamState::Degraded(reason) => Some((id.clone(), reason)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(ns: &str) -> StreamId {
        StreamId::new(WatchedKind::Pod, Some(ns))
    }

    fn nodes() -> StreamId {
        StreamId::new(WatchedKind::Node, None)
    }

    #[test]
    fn nothing_registered_is_not_synced() {
        assert!(!SyncTracker::default().is_synced());
    }

    #[test]
    fn synced_only_after_every_initial_list() {
        let mut t = SyncTracker::default();
        t.register(pods("a"));
        t.register(nodes());
        assert!(!t.is_synced());
        assert_eq!(t.state(&nodes()), Some(StreamState::Listing));
        assert_eq!(t.on_relist(&pods("a"), 5, 0), RelistDecision::Accept);
        assert!(!t.is_synced());
        assert_eq!(t.unsynced().len(), 1);
        // An empty initial list is fine: there was nothing to lose.
        assert_eq!(t.on_relist(&nodes(), 0, 0), RelistDecision::Accept);
        assert!(t.is_synced());
        assert!(t.unsynced().is_empty());
    }

    #[test]
    fn an_error_degrades_until_the_next_relist() {
        let mut t = SyncTracker::default();
        t.register(nodes());
        t.on_relist(&nodes(), 3, 0);
        assert!(t.on_error(&nodes(), "watch failed".into()));
        assert!(
            !t.on_error(&nodes(), "watch failed again".into()),
            "no new transition"
        );
        assert!(!t.is_synced());
        assert_eq!(
            t.state(&nodes()),
            Some(StreamState::Degraded("watch failed again".into()))
        );
        t.on_relist(&nodes(), 3, 3);
        assert!(t.is_synced());
    }

    #[test]
    fn an_error_before_the_first_list_stays_unsynced_after_recovery_only_with_a_list() {
        let mut t = SyncTracker::default();
        t.register(nodes());
        assert!(t.on_error(&nodes(), "forbidden".into()));
        assert!(!t.is_synced());
        t.on_relist(&nodes(), 1, 0);
        assert!(t.is_synced());
    }

    #[test]
    fn an_empty_relist_after_a_full_one_needs_confirmation() {
        let mut t = SyncTracker::default();
        t.register(pods("a"));
        t.on_relist(&pods("a"), 10, 0);
        assert_eq!(t.on_relist(&pods("a"), 0, 10), RelistDecision::ConfirmEmpty);
        assert!(!t.is_synced());
        // The second empty list is believed.
        assert_eq!(t.on_relist(&pods("a"), 0, 10), RelistDecision::Accept);
        assert!(t.is_synced());
        // And the confirmation is not sticky: a later empty relist is questioned again.
        t.on_relist(&pods("a"), 2, 0);
        assert_eq!(t.on_relist(&pods("a"), 0, 2), RelistDecision::ConfirmEmpty);
        // A non-empty confirmation list clears the suspicion.
        assert_eq!(t.on_relist(&pods("a"), 1, 2), RelistDecision::Accept);
        assert!(t.is_synced());
    }
}
