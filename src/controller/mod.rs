//! The controller: watches NacosBindings and the cluster, and runs one reconcile pass per binding
//! when it or the pods it governs change (and every `resyncSeconds`).
//!
//! One pass: dereference (Secrets) → list Nacos → plan (pure) → execute and verify → report.

mod confirm;
mod event_fold;
mod execute;
#[cfg(test)]
mod fake_api;
mod focus;
pub mod inputs;
mod oneshot;
mod outcome;
mod overlap;
mod recheck;
mod reconcile;
mod report;
mod status_lane;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{predicates, watcher, Predicate, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;

use crate::cluster::{binding_triggers, ClusterView, ClusterViewConfig, PodScope, RetryBackoff};
use crate::crd::NacosBinding;
use crate::leader::ActingGate;
use crate::metrics::Metrics;
use crate::nacos::NacosClient;
use crate::plan::Memory;
use crate::server::Health;

pub use oneshot::plan_once;
pub use reconcile::{reconcile, ReconcileError};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "nacos-reconciler";

/// What a binding's passes share: remembered decisions and the Nacos client.
#[derive(Default)]
pub struct BindingState {
    pub memory: Option<Memory>,
    /// The client and the fingerprint of the configuration it was built from.
    pub nacos: Option<(u64, Arc<NacosClient>)>,
    /// The registry as the last passes listed it, for focused passes between full ones.
    pub kept: Option<focus::Kept>,
    /// Services to list again because of what the operator did (see [`recheck`]).
    pub rechecks: recheck::Rechecks,
    /// The binding's status writes.
    pub status: Arc<status_lane::StatusLane>,
}

/// Shared by every reconcile pass.
pub struct Context {
    pub client: Client,
    pub view: ClusterView,
    pub metrics: Arc<Metrics>,
    pub recorder: Arc<report::EventRecorder>,
    /// Per binding UID.
    pub bindings: Mutex<HashMap<String, Arc<Mutex<BindingState>>>>,
    /// What each binding governs, to find bindings that share services.
    pub claims: overlap::Claims,
    /// Closed while this process is not the leader, during the settle period after winning, and
    /// once its last Lease renewal is too old.
    pub acting_allowed: Arc<ActingGate>,
}

impl Context {
    pub fn acting_allowed(&self) -> bool {
        self.acting_allowed.allowed()
    }

    async fn binding_state(&self, uid: &str) -> Arc<Mutex<BindingState>> {
        let mut map = self.bindings.lock().await;
        map.entry(uid.to_string()).or_default().clone()
    }

    /// Drops what the passes of bindings that no longer exist left behind: their memory, Nacos
    /// client, kept listings and claims (a deleted binding no longer overlaps anyone's).
    async fn forget_bindings_except(&self, existing: &HashSet<String>) {
        self.bindings
            .lock()
            .await
            .retain(|uid, _| existing.contains(uid));
        self.claims.retain(|uid| existing.contains(uid));
    }
}

/// How often the state of deleted bindings is dropped.
const FORGET_EVERY: Duration = Duration::from_secs(30);

/// Options of `nacos-reconciler run` that the controller needs.
pub struct RunOptions {
    pub cluster: ClusterViewConfig,
    /// Namespaces whose NacosBindings are watched; empty = all.
    pub binding_namespaces: Vec<String>,
    pub concurrency: u16,
    pub instance_name: String,
}

/// Runs the controller until a termination signal.
/// `client` makes requests (with a timeout), `watches` watches.
pub async fn run(
    client: Client,
    watches: Client,
    opts: RunOptions,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    acting_allowed: Arc<ActingGate>,
) {
    let (view, changes) = ClusterView::start(watches.clone(), &opts.cluster);
    {
        // /readyz follows the cluster view's sync state.
        let (view, health) = (view.clone(), health.clone());
        tokio::spawn(async move {
            loop {
                health
                    .caches_synced
                    .store(view.is_synced(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    let api: Api<NacosBinding> = match opts.binding_namespaces.as_slice() {
        [ns] => Api::namespaced(watches, ns),
        _ => Api::all(watches),
    };
    let watched = opts.binding_namespaces.clone();
    // Reconcile on spec (generation) and annotation (approval) changes only: our own status writes
    // must not trigger passes. Cluster changes and requeues trigger the rest.
    let (store, writer) = reflector::store();
    let bindings = watcher(api, watcher::Config::default().any_semantic())
        // The view's retry policy: a binding watch that fails is back within seconds of the fault.
        .backoff(RetryBackoff::default())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );
    let controller = Controller::for_stream(bindings, store.clone());
    let known = store.clone();
    let triggers = binding_triggers(changes, move || {
        store
            .state()
            .iter()
            .filter_map(|b| {
                let ns = b.namespace()?;
                let scope =
                    PodScope::new(&ns, &b.spec.pods.selector, &b.spec.pods.namespaces).ok()?;
                Some((ObjectRef::from_obj(&**b), scope))
            })
            .collect()
    });
    let recorder = Arc::new(report::EventRecorder::new(
        client.clone(),
        Reporter {
            controller: "nacos-reconciler".into(),
            instance: Some(opts.instance_name.clone()),
        },
    ));
    let ctx = Arc::new(Context {
        client,
        view,
        metrics,
        recorder,
        bindings: Mutex::new(HashMap::new()),
        claims: Default::default(),
        acting_allowed,
    });
    {
        // Nothing is dropped before the binding cache has listed: until then, absence means nothing.
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if known.wait_until_ready().await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(FORGET_EVERY).await;
                let existing: HashSet<String> =
                    known.state().iter().filter_map(|b| b.uid()).collect();
                ctx.forget_bindings_except(&existing).await;
            }
        });
    }
    controller
        .reconcile_on(triggers)
        .with_config(kube::runtime::controller::Config::default().concurrency(opts.concurrency))
        .shutdown_on_signal()
        .run(
            move |b, ctx| {
                let watched = watched.clone();
                async move {
                    // With several watched namespaces the API watches all; skip the others here.
                    if !watched.is_empty()
                        && !watched.iter().any(|n| Some(n) == b.namespace().as_ref())
                    {
                        return Ok(kube::runtime::controller::Action::await_change());
                    }
                    reconcile(b, ctx).await
                }
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile ended in error");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{TombstoneLimits, ViewState};

    #[tokio::test]
    async fn the_state_of_a_deleted_binding_is_dropped() {
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let ctx = Context {
            recorder: Arc::new(report::EventRecorder::new(
                client.clone(),
                Reporter {
                    controller: "test".into(),
                    instance: None,
                },
            )),
            client,
            view: ClusterView::from_state(ViewState::new(TombstoneLimits::default())),
            metrics: Arc::new(Metrics::new()),
            bindings: Mutex::new(HashMap::new()),
            claims: Default::default(),
            acting_allowed: Arc::new(ActingGate::always()),
        };
        let b: NacosBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
            "metadata": {"name": "orders", "namespace": "shop", "uid": "uid-gone"},
            "spec": {"nacos": {"serverAddr": ["http://127.0.0.1:8848"]},
                     "services": [{"name": "orders"}],
                     "pods": {"selector": {"matchLabels": {"app": "orders"}}}}
        }))
        .unwrap();
        for uid in ["uid-kept", "uid-gone"] {
            ctx.binding_state(uid).await;
            let claim = overlap::Claim::new(&b, format!("shop/{uid}"), &[]);
            ctx.claims.set(uid, claim, Duration::from_secs(600));
        }
        ctx.forget_bindings_except(&HashSet::from(["uid-kept".to_string()]))
            .await;
        let left: Vec<String> = ctx.bindings.lock().await.keys().cloned().collect();
        assert_eq!(left, ["uid-kept"]);
        let mut claims = Vec::new();
        ctx.claims.retain(|uid| {
            claims.push(uid.to_string());
            true
        });
        assert_eq!(claims, ["uid-kept"]);
    }
}
