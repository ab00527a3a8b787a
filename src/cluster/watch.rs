//! The I/O edge: kube-runtime watchers feeding the pure [`ViewState`] rules.
//!
//! Each stream runs `watcher()` and prunes every object as soon as it arrives, so full objects never
//! reach the store (a `reflector::Store` would keep whole `K`s and offers no IP index). Init..InitDone
//! is buffered and applied as one relist, like the reflector does. On any error the watcher is dropped
//! and recreated after a short backoff ([`RetryBackoff`]), which forces a fresh list: "degraded until
//! the next relist".

use std::fmt::Debug;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::backoff::{jitter_unit, RetryBackoff};
use super::change::ClusterChange;
use super::state::{Applied, Update, ViewState};
use super::sync::StreamId;

/// The state shared by the watch tasks and every [`super::ClusterView`] clone.
#[derive(Debug)]
pub(crate) struct Shared {
    state: RwLock<ViewState>,
    synced: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(state: ViewState) -> Self {
        let synced = state.is_synced();
        Self {
            state: RwLock::new(state),
            synced: watch::Sender::new(synced),
        }
    }

    /// Read access. A poisoned lock only means a panic elsewhere mid-update of plain data;
    /// every update leaves the maps consistent per call, so reading on is acceptable.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&ViewState) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ViewState) -> R) -> R {
        let (result, synced) = {
            let mut guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut guard);
            (result, guard.is_synced())
        };
        self.synced.send_if_modified(|current| {
            let changed = *current != synced;
            *current = synced;
            changed
        });
        result
    }

    pub(crate) fn subscribe_synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }
}

/// Forwards changes without ever blocking the watch loop: when the consumer lags and the buffer is
/// full, changes are dropped and one `All` is sent as soon as there is room again.
#[derive(Debug)]
pub(crate) struct ChangeSink {
    tx: mpsc::Sender<ClusterChange>,
    overflowed: bool,
}

impl ChangeSink {
    pub(crate) fn new(tx: mpsc::Sender<ClusterChange>) -> Self {
        Self {
            tx,
            overflowed: false,
        }
    }

    pub(crate) fn publish(&mut self, changes: Vec<ClusterChange>) {
        if self.overflowed {
            let all = ClusterChange::All {
                reason: "change buffer overflowed".into(),
            };
            if self.tx.try_send(all).is_err() {
                return;
            }
            self.overflowed = false;
        }
        for change in changes {
            match self.tx.try_send(change) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!("cluster change buffer full; bindings will be reconciled in bulk");
                    self.overflowed = true;
                    return;
                }
                // Nobody listens (e.g. the `plan` command): the view itself stays up to date.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// How one kind is pruned and applied.
pub(crate) struct StreamSpec<K, T> {
    pub id: StreamId,
    pub api: Api<K>,
    pub prune: fn(&K) -> Option<T>,
    pub apply: fn(&mut ViewState, &StreamId, Update<T>, DateTime<Utc>) -> Applied,
}

/// Runs one stream forever: watch, apply, and on error back off and start over with a fresh list.
pub(crate) async fn run_stream<K, T>(
    spec: StreamSpec<K, T>,
    shared: Arc<Shared>,
    mut sink: ChangeSink,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Send,
{
    let mut backoff = RetryBackoff::default();
    loop {
        watch_until_restart(&spec, &shared, &mut sink).await;
        // Starts over only after a quiet run, so a flapping watch keeps backing off (up to 5 s).
        let delay = backoff.next_delay(Instant::now(), jitter_unit());
        debug!(stream = %spec.id, ?delay, "restarting watch with a fresh list");
        tokio::time::sleep(delay).await;
    }
}

async fn watch_until_restart<K, T>(spec: &StreamSpec<K, T>, shared: &Shared, sink: &mut ChangeSink)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Send,
{
    let mut events = watcher::watcher(spec.api.clone(), watcher::Config::default()).boxed();
    let mut listing: Vec<T> = Vec::new();
    while let Some(event) = events.next().await {
        let update = match event {
            Ok(Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(Event::InitApply(object)) => {
                listing.extend((spec.prune)(&object));
                continue;
            }
            Ok(Event::InitDone) => Update::Relist(std::mem::take(&mut listing)),
            Ok(Event::Apply(object)) => match (spec.prune)(&object) {
                Some(pruned) => Update::Apply(pruned),
                None => continue,
            },
            Ok(Event::Delete(object)) => match (spec.prune)(&object) {
                Some(pruned) => Update::Delete(pruned),
                None => continue,
            },
            Err(err) => {
                warn!(stream = %spec.id, error = %err, "watch error; cluster view degraded until relisted");
                Update::Error(err.to_string())
            }
        };
        let applied = shared.update(|state| (spec.apply)(state, &spec.id, update, Utc::now()));
        sink.publish(applied.changes);
        if applied.restart {
            return;
        }
    }
    // The watcher stream never ends by design; treat an end like an error.
    let applied = shared.update(|state| {
        (spec.apply)(
            state,
            &spec.id,
            Update::Error("watch stream ended".into()),
            Utc::now(),
        )
    });
    sink.publish(applied.changes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_change(name: &str) -> ClusterChange {
        ClusterChange::Node { name: name.into() }
    }

    #[test]
    fn sink_collapses_overflow_into_one_all() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut sink = ChangeSink::new(tx);
        sink.publish(vec![node_change("a"), node_change("b"), node_change("c")]);
        assert_eq!(rx.try_recv().ok(), Some(node_change("a")));
        assert_eq!(rx.try_recv().ok(), Some(node_change("b")));
        assert!(rx.try_recv().is_err(), "c was dropped");
        sink.publish(vec![node_change("d")]);
        assert!(matches!(rx.try_recv(), Ok(ClusterChange::All { .. })));
        assert_eq!(rx.try_recv().ok(), Some(node_change("d")));
    }

    #[test]
    fn sink_without_listener_is_harmless() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        ChangeSink::new(tx).publish(vec![node_change("a")]);
    }

    #[tokio::test]
    async fn shared_publishes_sync_transitions() {
        use super::super::sync::WatchedKind;
        let mut state = ViewState::default();
        let id = StreamId::new(WatchedKind::Node, None);
        state.register(id.clone());
        let shared = Shared::new(state);
        let mut synced = shared.subscribe_synced();
        assert!(!*synced.borrow());
        shared.update(|s| s.apply_nodes(&id, Update::Relist(vec![]), chrono::Utc::now()));
        synced.changed().await.unwrap();
        assert!(*synced.borrow());
        shared.update(|s| s.apply_nodes(&id, Update::Error("boom".into()), chrono::Utc::now()));
        assert!(!*synced.borrow_and_update());
    }
}
