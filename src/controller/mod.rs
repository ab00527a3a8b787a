//! The controller: watches NacosBindings and the cluster, and runs one reconcile pass per binding
//! when it or the pods it governs change (and every `resyncSeconds`).
//!
//! One pass (`reconcile.rs`), in the order data flows: take in what earlier executions ended
//! (`in_flight.rs`) → read the inputs (`dereference.rs`) → choose what to list and list it
//! (`listing.rs`, `focus.rs`) → judge (`judge.rs`, the pure planner) → launch the execution that
//! confirms, writes and verifies beside the passes that follow (`execute.rs`, `confirm.rs`) →
//! report (`report.rs` with `status.rs`, `events.rs`, `problem.rs`; written by `status_lane.rs`).
//! Shared types sit below the files that use them (`context.rs`, `outcome.rs`, `stop.rs`): no
//! file here imports one that imports it back.

mod confirm;
mod context;
mod dereference;
mod event_fold;
mod events;
mod execute;
#[cfg(test)]
mod fake_api;
mod focus;
mod in_flight;
pub mod inputs;
mod judge;
mod listing;
mod oneshot;
mod outcome;
mod overlap;
mod problem;
mod recheck;
mod reconcile;
mod report;
mod request_metrics;
mod status;
mod status_lane;
mod stop;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::Controller;

use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{predicates, watcher, Predicate, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use crate::cluster::{binding_triggers, ClusterView, ClusterViewConfig, PodScope, RetryBackoff};
use crate::crd::NacosBinding;
use crate::leader::ActingGate;
use crate::metrics::Metrics;
use crate::server::Health;

use context::Context;
pub use in_flight::WRITES_IN_FLIGHT;
pub use oneshot::plan_once;
pub use reconcile::reconcile;
pub use stop::ReconcileError;

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
    // A binding whose actions' execution has ended gets a pass that reports them.
    let (nudges, nudged) = futures::channel::mpsc::unbounded();
    let triggers = futures::stream::select(triggers, nudged);
    let ctx = Arc::new(
        Context::new(
            client,
            view,
            metrics,
            acting_allowed,
            "nacos-reconciler",
            Some(opts.instance_name.clone()),
        )
        .with_nudges(nudges),
    );
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
                    stop::contain_panic(reconcile(b, ctx)).await
                }
            },
            stop::error_policy,
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
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::cluster::{TombstoneLimits, ViewState};

    #[tokio::test]
    async fn the_state_of_a_deleted_binding_is_dropped() {
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let ctx = Context::new(
            client,
            ClusterView::from_state(ViewState::new(TombstoneLimits::default())),
            Arc::new(Metrics::new()),
            Arc::new(ActingGate::always()),
            "test",
            None,
        );
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

    /// Which files of `src/controller/` the non-test code of each one names: `super::x` in a
    /// child, `x::` in `mod.rs` (the parent, `mod`), and `super::Item` as the parent.
    fn controller_imports() -> BTreeMap<String, BTreeSet<String>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/controller");
        let files: BTreeMap<String, String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&p).unwrap();
                let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
                (name, code.to_string())
            })
            .collect();
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut graph = BTreeMap::new();
        for (file, code) in &files {
            let mut uses = BTreeSet::new();
            for other in files.keys().filter(|o| *o != file && *o != "mod") {
                let pattern = if file == "mod" {
                    format!("{other}::")
                } else {
                    format!("super::{other}")
                };
                let named = code.match_indices(&pattern).any(|(at, _)| {
                    let before = code[..at].chars().next_back();
                    let after = code[at + pattern.len()..].chars().next();
                    // A whole name: `super::report` is not `super::report_x`.
                    let partial =
                        before.is_some_and(word) || (file != "mod" && after.is_some_and(word));
                    !partial
                });
                if named {
                    uses.insert(other.clone());
                }
            }
            if file != "mod" && code.contains("super::") {
                let parent_item = code.match_indices("super::").any(|(at, m)| {
                    let rest = &code[at + m.len()..];
                    let name: String = rest.chars().take_while(|c| word(*c)).collect();
                    name.is_empty() || !files.contains_key(&name) && name != "super"
                });
                if parent_item {
                    uses.insert("mod".to_string());
                }
            }
            graph.insert(file.clone(), uses);
        }
        graph
    }

    #[test]
    fn no_file_of_the_controller_imports_one_that_imports_it_back() {
        let graph = controller_imports();
        assert!(graph["reconcile"].contains("execute"), "{graph:?}");
        // Depth-first search for a cycle, reporting its path.
        fn visit<'a>(
            graph: &'a BTreeMap<String, BTreeSet<String>>,
            node: &'a str,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if let Some(at) = path.iter().position(|n| *n == node) {
                panic!("import cycle: {} -> {node}", path[at..].join(" -> "));
            }
            if !done.insert(node) {
                return;
            }
            path.push(node);
            for next in &graph[node] {
                visit(graph, next, path, done);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            visit(&graph, node, &mut Vec::new(), &mut done);
        }
    }
}
