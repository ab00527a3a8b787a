//! The cluster view: Pods, Nodes and EndpointSlices from kube-runtime watchers, pruned to what
//! decisions need, indexed by IP, plus tombstones of recently deleted pods, and notifications of
//! decision-relevant changes.
//!
//! ```text
//! watcher() ──prune──► Update<T> ──ViewState::apply_*──► indexes + tombstones + sync state
//!                                              └──────► ClusterChange ──► mpsc::Receiver
//! ```
//! Everything but `watch.rs` is pure and unit-tested without a server.
//!
//! How the controller uses it:
//! ```ignore
//! let (view, changes) = ClusterView::start(client.clone(), &ClusterViewConfig::default());
//! let bindings = binding_store.clone(); // reflector::Store<NacosBinding>
//! let controller = Controller::new(api, cfg).reconcile_on(binding_triggers(changes, move || {
//!     bindings.state().iter().filter_map(|b| {
//!         let scope = PodScope::new(&b.namespace()?, &b.spec.pods.selector, &b.spec.pods.namespaces).ok()?;
//!         Some((ObjectRef::from_obj(&**b), scope))
//!     }).collect()
//! }));
//! // in reconcile: no removals unless view.is_synced(); CacheSynced reason from view.unsynced_reasons();
//! let facts = view.facts_for_ips(&scope, instance_ips.iter());
//! ```

mod backoff;
mod change;
mod index;
mod journal;
mod prune;
mod selector;
mod state;
mod sync;
mod watch;

use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use change::{binding_triggers, bindings_for_change, BindingRef, ClusterChange};
pub use index::TombstoneLimits;
pub use journal::Changed;
pub use prune::{
    node_facts, pod_info, slice_info, to_chrono, EndpointFacts, EndpointInfo, PodInfo, SliceInfo,
    TombstoneInfo,
};
pub use selector::{selector_matches, LabelMatcher, PodScope, SelectorError};
pub use state::{Applied, ClusterFacts, Update, ViewState};
pub use sync::{StreamId, StreamState, WatchedKind};

pub(crate) use backoff::RetryBackoff;

use crate::model::NodeFacts;
use watch::{run_stream, ChangeSink, Shared, StreamSpec};

/// Errors of the cluster view.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster view stopped before it synced")]
    Stopped,
}

/// Which namespaces pods and EndpointSlices are watched in. Nodes are always watched cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WatchNamespaces {
    #[default]
    All,
    /// One watch per namespace (for RBAC limited to those namespaces).
    Only(Vec<String>),
}

impl WatchNamespaces {
    fn scopes(&self) -> Vec<Option<String>> {
        match self {
            Self::All => vec![None],
            Self::Only(list) => list.iter().cloned().map(Some).collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterViewConfig {
    pub namespaces: WatchNamespaces,
    pub tombstones: TombstoneLimits,
    /// Capacity of the change channel; on overflow changes collapse into one `ClusterChange::All`.
    pub change_buffer: usize,
    pub watch_endpoint_slices: bool,
}

impl Default for ClusterViewConfig {
    fn default() -> Self {
        Self {
            namespaces: WatchNamespaces::All,
            tombstones: TombstoneLimits::default(),
            change_buffer: 1024,
            watch_endpoint_slices: true,
        }
    }
}

/// Aborts the watch tasks when the last view handle goes away.
#[derive(Debug, Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A cheap-to-clone handle on the cluster view. Queries take a short read lock and return owned data.
#[derive(Debug, Clone)]
pub struct ClusterView {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl ClusterView {
    /// Starts the watchers on the current tokio runtime. Needs list+watch on pods, nodes and
    /// (if enabled) endpointslices.discovery.k8s.io in the configured namespaces.
    pub fn start(
        client: Client,
        config: &ClusterViewConfig,
    ) -> (Self, mpsc::Receiver<ClusterChange>) {
        let (tx, rx) = mpsc::channel(config.change_buffer.max(1));
        let mut state = ViewState::new(config.tombstones);
        let mut tasks = Vec::new();
        let node_id = StreamId::new(WatchedKind::Node, None);
        state.register(node_id.clone());
        let mut pod_specs = Vec::new();
        let mut slice_specs = Vec::new();
        for scope in config.namespaces.scopes() {
            let ns = scope.as_deref();
            let pod_id = StreamId::new(WatchedKind::Pod, ns);
            state.register(pod_id.clone());
            pod_specs.push(StreamSpec {
                id: pod_id,
                api: scoped_api::<Pod>(&client, ns),
                prune: pod_info,
                apply: ViewState::apply_pods,
            });
            if config.watch_endpoint_slices {
                let slice_id = StreamId::new(WatchedKind::EndpointSlice, ns);
                state.register(slice_id.clone());
                slice_specs.push(StreamSpec {
                    id: slice_id,
                    api: scoped_api::<EndpointSlice>(&client, ns),
                    prune: slice_info,
                    apply: |s, id, u, _| s.apply_slices(id, u),
                });
            }
        }
        let shared = Arc::new(Shared::new(state));
        let node_spec = StreamSpec {
            id: node_id,
            api: Api::<Node>::all(client.clone()),
            prune: node_facts,
            apply: |s, id, u, now| s.apply_nodes(id, u, now),
        };
        let sink = || ChangeSink::new(tx.clone());
        tasks.push(tokio::spawn(run_stream(node_spec, shared.clone(), sink())));
        for spec in pod_specs {
            tasks.push(tokio::spawn(run_stream(spec, shared.clone(), sink())));
        }
        for spec in slice_specs {
            tasks.push(tokio::spawn(run_stream(spec, shared.clone(), sink())));
        }
        let view = Self {
            shared,
            _tasks: Arc::new(Tasks(tasks)),
        };
        (view, rx)
    }

    /// A view over a hand-fed state, without watchers: for tests of code that consumes the view.
    pub fn from_state(state: ViewState) -> Self {
        Self {
            shared: Arc::new(Shared::new(state)),
            _tasks: Arc::new(Tasks::default()),
        }
    }

    /// Every stream has listed and none is degraded. Unsynced means "no evidence": remove nothing.
    pub fn is_synced(&self) -> bool {
        self.shared.read(ViewState::is_synced)
    }

    /// Why the view is not synced, one line per stream (empty when synced): for the CacheSynced condition.
    pub fn unsynced_reasons(&self) -> Vec<String> {
        self.shared.read(ViewState::unsynced)
    }

    /// Resolves once the view is synced (again).
    pub async fn wait_until_synced(&self) -> Result<(), ClusterError> {
        let mut synced = self.shared.subscribe_synced();
        synced
            .wait_for(|s| *s)
            .await
            .map(|_| ())
            .map_err(|_| ClusterError::Stopped)
    }

    pub fn pods_with_ip(&self, ip: &IpAddr) -> Vec<PodInfo> {
        self.shared.read(|s| s.pods_with_ip(ip))
    }

    /// Pods watched (every namespace the operator watches).
    pub fn pod_count(&self) -> usize {
        self.shared.read(ViewState::pod_count)
    }

    /// See [`ViewState::is_dual_stack`].
    pub fn is_dual_stack(&self) -> bool {
        self.shared.read(ViewState::is_dual_stack)
    }

    pub fn node_with_ip(&self, ip: &IpAddr) -> Option<NodeFacts> {
        self.shared.read(|s| s.node_with_ip(ip))
    }

    pub fn nodes(&self) -> Vec<NodeFacts> {
        self.shared.read(ViewState::nodes)
    }

    pub fn tombstones_for_ip(&self, ip: &IpAddr) -> Vec<TombstoneInfo> {
        self.shared.read(|s| s.tombstones_for_ip(ip, Utc::now()))
    }

    pub fn endpoints_for_ip(&self, ip: &IpAddr) -> Vec<EndpointFacts> {
        self.shared.read(|s| s.endpoints_for_ip(ip))
    }

    /// Facts for the planner about these IPs (pods of any app on them, with `matches` per `scope`).
    pub fn facts_for_ips<'a>(
        &self,
        scope: &PodScope,
        ips: impl IntoIterator<Item = &'a IpAddr>,
    ) -> ClusterFacts {
        self.shared
            .read(|s| s.facts_for_ips(scope, ips, Utc::now()))
    }

    /// See [`ViewState::change_seq`].
    pub fn change_seq(&self) -> u64 {
        self.shared.read(ViewState::change_seq)
    }

    /// See [`ViewState::changed_since`].
    pub fn changed_since(&self, seq: u64) -> Changed {
        self.shared.read(|s| s.changed_since(seq))
    }

    /// See [`ViewState::ips_behind_nodes_not_ready`].
    pub fn ips_behind_nodes_not_ready(&self) -> std::collections::HashSet<IpAddr> {
        self.shared.read(ViewState::ips_behind_nodes_not_ready)
    }

    /// See [`ViewState::unlisted_departure`].
    pub fn unlisted_departure(
        &self,
        scope: &PodScope,
        known: &std::collections::HashSet<IpAddr>,
        since: chrono::DateTime<Utc>,
        unready_counts: bool,
    ) -> Option<String> {
        self.shared
            .read(|s| s.unlisted_departure(scope, known, since, unready_counts, Utc::now()))
    }

    /// Every pod and tombstone matching `scope`, plus all nodes.
    pub fn facts_for(&self, scope: &PodScope) -> ClusterFacts {
        self.shared.read(|s| s.facts_for(scope, Utc::now()))
    }
}

fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[tokio::test]
    async fn view_from_state_answers_queries_and_waits_for_sync() {
        let mut state = ViewState::default();
        let id = StreamId::new(WatchedKind::Pod, None);
        state.register(id.clone());
        let pod = prune::tests::pod("shop", "orders-1", &["10.244.1.7"], &[("app", "orders")]);
        state.apply_pods(
            &id,
            Update::Relist(pod_info(&pod).into_iter().collect()),
            Utc::now(),
        );
        let view = ClusterView::from_state(state);
        assert!(view.is_synced());
        assert!(view.unsynced_reasons().is_empty());
        view.wait_until_synced().await.unwrap();
        let ip: IpAddr = "10.244.1.7".parse().unwrap();
        assert_eq!(view.pods_with_ip(&ip).len(), 1);
        assert!(view.tombstones_for_ip(&ip).is_empty());
        assert!(view.node_with_ip(&ip).is_none());
        let scope = PodScope::new("shop", &LabelSelector::default(), &[]).unwrap();
        assert_eq!(view.facts_for_ips(&scope, [&ip]).pods.len(), 1);
        assert_eq!(view.facts_for(&scope).pods.len(), 1);
    }

    #[test]
    fn namespaces_map_to_watch_scopes() {
        assert_eq!(WatchNamespaces::All.scopes(), vec![None]);
        assert_eq!(
            WatchNamespaces::Only(vec!["a".into(), "b".into()]).scopes(),
            vec![Some("a".to_string()), Some("b".to_string())]
        );
    }
}
