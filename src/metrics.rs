//! Prometheus metrics (text format on `/metrics`). One registry, created at start-up and shared.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `namespace/name` of the NacosBinding.
    pub binding: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub binding: String,
    /// deregister | disable | enable
    pub action: String,
    /// success | ineffective | failed | dry_run | skipped
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BindingLabels {
    pub binding: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// list_instances | list_services | deregister | set_enabled | login | server_info
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestErrorLabels {
    pub operation: String,
    /// unreachable | auth | server | protocol | not_found
    pub kind: String,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~82 s
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every metric the operator exports.
pub struct Metrics {
    pub instances: Family<VerdictLabels, Gauge>,
    pub actions: Family<ActionLabels, Counter>,
    pub removal_latency: Family<BindingLabels, Histogram, fn() -> Histogram>,
    pub held_removals: Family<BindingLabels, Gauge>,
    pub nacos_request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub nacos_request_errors: Family<RequestErrorLabels, Counter>,
    pub reconcile_duration: Family<BindingLabels, Histogram, fn() -> Histogram>,
    pub reconcile_errors: Family<BindingLabels, Counter>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nacos_reconciler");
        let instances = Family::<VerdictLabels, Gauge>::default();
        registry.register(
            "instances",
            "Instances of governed Nacos services by verdict",
            instances.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "actions",
            "Actions taken on Nacos instances, by kind and result",
            actions.clone(),
        );
        let removal_latency =
            Family::<BindingLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "removal_latency_seconds",
            "From the moment the evidence appeared to the moment Nacos confirmed the instance offline",
            removal_latency.clone(),
        );
        let held_removals = Family::<BindingLabels, Gauge>::default();
        registry.register(
            "held_removals",
            "Removals held back by the removal budget",
            held_removals.clone(),
        );
        let nacos_request_duration =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "nacos_request_duration_seconds",
            "Nacos API request latency",
            nacos_request_duration.clone(),
        );
        let nacos_request_errors = Family::<RequestErrorLabels, Counter>::default();
        registry.register(
            "nacos_request_errors",
            "Failed Nacos API requests",
            nacos_request_errors.clone(),
        );
        let reconcile_duration =
            Family::<BindingLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile pass of a binding",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<BindingLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile passes that ended in an error",
            reconcile_errors.clone(),
        );
        Self {
            instances,
            actions,
            removal_latency,
            held_removals,
            nacos_request_duration,
            nacos_request_errors,
            reconcile_duration,
            reconcile_errors,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn count_action(&self, binding: &str, action: &str, result: &str) {
        self.actions
            .get_or_create(&ActionLabels {
                binding: binding.to_string(),
                action: action.to_string(),
                result: result.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let m = Metrics::new();
        m.count_action("shop/orders", "deregister", "success");
        m.removal_latency
            .get_or_create(&BindingLabels {
                binding: "shop/orders".into(),
            })
            .observe(0.2);
        let b = BindingLabels {
            binding: "shop/orders".into(),
        };
        m.instances
            .get_or_create(&VerdictLabels {
                binding: "shop/orders".into(),
                verdict: "live".into(),
            })
            .set(3);
        m.held_removals.get_or_create(&b).set(0);
        m.reconcile_duration.get_or_create(&b).observe(0.01);
        m.nacos_request_duration
            .get_or_create(&RequestLabels {
                operation: "list_instances".into(),
            })
            .observe(0.01);
        let text = m.encode();
        for name in [
            "nacos_reconciler_actions_total{binding=\"shop/orders\",action=\"deregister\",result=\"success\"} 1",
            "nacos_reconciler_removal_latency_seconds_count{binding=\"shop/orders\"} 1",
            "# TYPE nacos_reconciler_instances gauge",
            "# TYPE nacos_reconciler_nacos_request_duration_seconds histogram",
            "# TYPE nacos_reconciler_reconcile_duration_seconds histogram",
            "# TYPE nacos_reconciler_held_removals gauge",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
