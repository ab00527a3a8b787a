//! "Something changed" notifications from the view, and the pure mapping from a change to the
//! bindings it concerns. Agnostic of the binding type: the controller passes its own reference type.

use std::collections::BTreeMap;
use std::fmt;

use futures::Stream;
use tokio::sync::mpsc;

use super::selector::PodScope;

/// A decision-relevant change in the cluster. Noise (status heartbeats, annotations, managed fields)
/// is pruned before comparison, so an unchanged pruned record produces no change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterChange {
    /// A pod was added, changed or deleted.
    Pod {
        namespace: String,
        name: String,
        labels: BTreeMap<String, String>,
        /// The labels before this change, when they differed (a pod may leave a binding's selector).
        previous_labels: Option<BTreeMap<String, String>>,
    },
    /// A node was added, changed or deleted. Any instance may sit on any node.
    Node { name: String },
    /// Sync state changed (synced, degraded) or too many changes to list one by one.
    All { reason: String },
}

impl ClusterChange {
    /// Whether a binding with this pod scope should reconcile because of the change.
    pub fn concerns(&self, scope: &PodScope) -> bool {
        match self {
            Self::Pod {
                namespace,
                labels,
                previous_labels,
                ..
            } => {
                scope.matches(namespace, labels)
                    || previous_labels
                        .as_ref()
                        .is_some_and(|old| scope.matches(namespace, old))
            }
            Self::Node { .. } | Self::All { .. } => true,
        }
    }
}

impl fmt::Display for ClusterChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pod {
                namespace, name, ..
            } => write!(f, "pod {namespace}/{name}"),
            Self::Node { name } => write!(f, "node {name}"),
            Self::All { reason } => write!(f, "all bindings: {reason}"),
        }
    }
}

/// A plain reference to a binding, for callers that have no better type at hand.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingRef {
    pub namespace: String,
    pub name: String,
}

/// The bindings (of any reference type `B`) that a change concerns, in input order.
pub fn bindings_for_change<'a, B>(
    change: &ClusterChange,
    bindings: impl IntoIterator<Item = (B, &'a PodScope)>,
) -> Vec<B> {
    bindings
        .into_iter()
        .filter(|(_, scope)| change.concerns(scope))
        .map(|(binding, _)| binding)
        .collect()
}

/// Turns the view's change channel into a stream of the bindings to reconcile. `bindings` is called
/// per change and returns the current bindings with their compiled scopes (e.g. from the controller's
/// `Store<NacosBinding>`); it suits `Controller::reconcile_on` (kube feature `unstable-runtime`).
pub fn binding_triggers<B, F>(
    changes: mpsc::Receiver<ClusterChange>,
    bindings: F,
) -> impl Stream<Item = B> + Send + 'static
where
    B: Send + 'static,
    F: Fn() -> Vec<(B, PodScope)> + Send + 'static,
{
    use futures::StreamExt;
    futures::stream::unfold(changes, |mut rx| async move {
        let change = rx.recv().await?;
        Some((change, rx))
    })
    .flat_map(move |change| {
        let affected: Vec<B> = bindings()
            .into_iter()
            .filter(|(_, scope)| change.concerns(scope))
            .map(|(binding, _)| binding)
            .collect();
        futures::stream::iter(affected)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scope(ns: &str, app: &str, namespaces: &[&str]) -> PodScope {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", app)])),
            match_expressions: None,
        };
        let namespaces: Vec<String> = namespaces.iter().map(|s| s.to_string()).collect();
        PodScope::new(ns, &selector, &namespaces).unwrap()
    }

    fn binding(ns: &str, name: &str) -> BindingRef {
        BindingRef {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn pod_change(ns: &str, app: &str, previous_app: Option<&str>) -> ClusterChange {
        ClusterChange::Pod {
            namespace: ns.into(),
            name: "p".into(),
            labels: labels(&[("app", app)]),
            previous_labels: previous_app.map(|a| labels(&[("app", a)])),
        }
    }

    fn bindings() -> Vec<(BindingRef, PodScope)> {
        vec![
            (binding("shop", "orders"), scope("shop", "orders", &[])),
            (binding("shop", "billing"), scope("shop", "billing", &[])),
            (
                binding("ops", "orders-everywhere"),
                scope("ops", "orders", &["shop", "staging"]),
            ),
        ]
    }

    fn affected(change: &ClusterChange) -> Vec<String> {
        let all = bindings();
        bindings_for_change(change, all.iter().map(|(b, s)| (b, s)))
            .into_iter()
            .map(|b| b.name.clone())
            .collect()
    }

    #[test]
    fn pod_changes_reach_bindings_whose_selector_and_namespaces_match() {
        assert_eq!(
            affected(&pod_change("shop", "orders", None)),
            vec!["orders", "orders-everywhere"]
        );
        assert_eq!(
            affected(&pod_change("staging", "orders", None)),
            vec!["orders-everywhere"]
        );
        assert_eq!(
            affected(&pod_change("shop", "billing", None)),
            vec!["billing"]
        );
        assert!(affected(&pod_change("shop", "unrelated", None)).is_empty());
        assert!(affected(&pod_change("elsewhere", "orders", None)).is_empty());
    }

    #[test]
    fn a_pod_leaving_a_selector_still_reaches_the_old_bindings() {
        assert_eq!(
            affected(&pod_change("shop", "billing", Some("orders"))),
            vec!["orders", "billing", "orders-everywhere"]
        );
    }

    #[test]
    fn node_and_all_changes_reach_every_binding() {
        assert_eq!(
            affected(&ClusterChange::Node { name: "n1".into() }).len(),
            3
        );
        assert_eq!(
            affected(&ClusterChange::All {
                reason: "synced".into()
            })
            .len(),
            3
        );
    }

    #[test]
    fn display_names_the_object() {
        assert_eq!(pod_change("shop", "x", None).to_string(), "pod shop/p");
        assert_eq!(
            ClusterChange::Node { name: "n".into() }.to_string(),
            "node n"
        );
    }

    #[tokio::test]
    async fn triggers_stream_the_affected_bindings_per_change() {
        use futures::StreamExt;
        let (tx, rx) = mpsc::channel(8);
        tx.send(pod_change("shop", "billing", None)).await.unwrap();
        tx.send(ClusterChange::Node { name: "n".into() })
            .await
            .unwrap();
        drop(tx);
        let triggered: Vec<String> = binding_triggers(rx, bindings)
            .map(|b| b.name)
            .collect()
            .await;
        assert_eq!(
            triggered,
            vec!["billing", "orders", "billing", "orders-everywhere"]
        );
    }
}
