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
    /// success | ineffective | not_confirmed | failed
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BindingLabels {
    pub binding: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// list_instances | get_instance | list_services | list_namespaces | deregister | set_enabled | login | server_info
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
    pub services_emptied: Family<BindingLabels, Counter>,
    pub nacos_request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub nacos_request_errors: Family<RequestErrorLabels, Counter>,
    pub reconcile_duration: Family<BindingLabels, Histogram, fn() -> Histogram>,
    pub reconcile_errors: Family<BindingLabels, Counter>,
    /// 1 while this replica may write (leads and has settled, or runs without leader election).
    pub leader: Gauge,
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
        let services_emptied = Family::<BindingLabels, Counter>::default();
        registry.register(
            "services_emptied",
            "Passes that took a service's last usable instances offline (consumers with push-empty protection keep their old list)",
            services_emptied.clone(),
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
            "Reconcile passes that ended in an error, and status writes that failed",
            reconcile_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica may write to Nacos: it holds the Lease and has settled, or runs without leader election",
            leader.clone(),
        );
        Self {
            instances,
            actions,
            removal_latency,
            held_removals,
            services_emptied,
            nacos_request_duration,
            nacos_request_errors,
            reconcile_duration,
            reconcile_errors,
            leader,
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

    /// Every metric family touched once, so the exposition shows each sample name with its labels.
    fn every_family_touched() -> Metrics {
        let m = Metrics::new();
        let b = BindingLabels {
            binding: "ns/b".into(),
        };
        m.instances
            .get_or_create(&VerdictLabels {
                binding: "ns/b".into(),
                verdict: "live".into(),
            })
            .set(1);
        m.count_action("ns/b", "deregister", "success");
        m.removal_latency.get_or_create(&b).observe(1.0);
        m.held_removals.get_or_create(&b).set(0);
        let op = RequestLabels {
            operation: "list_instances".into(),
        };
        m.nacos_request_duration.get_or_create(&op).observe(0.1);
        m.nacos_request_errors
            .get_or_create(&RequestErrorLabels {
                operation: "list_instances".into(),
                kind: "unreachable".into(),
            })
            .inc();
        m.reconcile_duration.get_or_create(&b).observe(0.1);
        m.reconcile_errors.get_or_create(&b).inc();
        m.leader.set(1);
        m
    }

    /// Sample name -> label names, read from the text exposition.
    fn exposed() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
        let text = every_family_touched().encode();
        let mut out = std::collections::BTreeMap::new();
        let mut families = 0;
        for line in text.lines() {
            if line.starts_with("# TYPE ") {
                families += 1;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels: &mut std::collections::BTreeSet<String> =
                out.entry(line[..name_end].to_string()).or_default();
            if let (Some(open), Some(close)) = (line.find('{'), line.find('}')) {
                for pair in line[open + 1..close].split(',') {
                    if let Some((k, _)) = pair.split_once('=') {
                        labels.insert(k.to_string());
                    }
                }
            }
        }
        // Every registered family shows samples: a family added without touching it here fails.
        let sampled: std::collections::BTreeSet<&str> = out
            .keys()
            .map(|n| {
                ["_bucket", "_sum", "_count", "_total"]
                    .iter()
                    .find_map(|s| n.strip_suffix(s))
                    .unwrap_or(n)
            })
            .collect();
        assert_eq!(sampled.len(), families, "touch every family:\n{text}");
        out
    }

    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }

    /// (metric, labels in its selector) for every `nacos_reconciler_*` name in a PromQL expression.
    fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
        let mut out = vec![];
        let mut rest = expr;
        while let Some(i) = rest.find("nacos_reconciler_") {
            let name = ident(&rest[i..]).to_string();
            rest = &rest[i + name.len()..];
            let mut labels = vec![];
            if let Some(body) = rest.strip_prefix('{') {
                let close = body.find('}').expect("closed selector");
                for m in body[..close].split(',').filter(|m| !m.trim().is_empty()) {
                    labels.push(ident(m.trim()).to_string());
                }
            }
            out.push((name, labels));
        }
        out
    }

    /// Labels named in `by (...)` clauses.
    fn grouping(expr: &str) -> Vec<String> {
        let mut out = vec![];
        let mut rest = expr;
        while let Some(i) = rest.find("by (") {
            rest = &rest[i + 4..];
            let close = rest.find(')').expect("closed by()");
            out.extend(rest[..close].split(',').map(|l| l.trim().to_string()));
        }
        out
    }

    fn dashboard(path: &str) -> (String, serde_json::Value) {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let text =
            std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
        (text, v)
    }

    #[test]
    fn grafana_dashboard_is_a_dashboard_of_metrics_the_operator_exports() {
        let (text, d) = dashboard("deploy/grafana/nacos-reconciler.json");
        let (chart_copy, _) =
            dashboard("deploy/helm/nacos-reconciler/dashboards/nacos-reconciler.json");
        assert_eq!(
            text, chart_copy,
            "the chart ships the same dashboard: copy deploy/grafana/nacos-reconciler.json"
        );
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(d["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40));
        assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        assert!(vars.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"));

        let exposed = exposed();
        let mut exprs: Vec<String> = vars
            .iter()
            .filter_map(|v| v["query"]["query"].as_str().map(str::to_string))
            .collect();
        let panels = d["panels"].as_array().expect("panels");
        let mut ids = std::collections::BTreeSet::new();
        let mut graphs = 0;
        for p in panels {
            let title = p["title"].as_str().expect("panel title");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "duplicate id: {title}"
            );
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
            assert!(
                g["y"].is_u64() && g["h"].is_u64() && w > 0 && x + w <= 24,
                "{title}: {g}"
            );
            let kind = p["type"].as_str().expect("panel type");
            assert!(
                ["row", "stat", "timeseries", "gauge", "table", "bargauge"].contains(&kind),
                "{title}: {kind}"
            );
            if kind == "row" {
                continue;
            }
            graphs += 1;
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{title} has no query");
            let mut refs = std::collections::BTreeSet::new();
            for t in targets {
                assert!(refs.insert(t["refId"].as_str().expect("refId")), "{title}");
                exprs.push(t["expr"].as_str().expect("expr").to_string());
            }
        }
        assert!(graphs >= 10, "{graphs} panels");

        let mut used = std::collections::BTreeSet::new();
        for expr in &exprs {
            let sel = selectors(expr);
            assert!(!sel.is_empty(), "no operator metric in {expr}");
            let balanced = expr.matches('(').count() == expr.matches(')').count()
                && expr.matches('{').count() == expr.matches('}').count();
            assert!(balanced, "unbalanced: {expr}");
            for (name, labels) in &sel {
                let known = exposed.get(name).unwrap_or_else(|| {
                    panic!(
                        "{name} is not exported (in {expr}); exported: {:?}",
                        exposed.keys()
                    )
                });
                for l in labels.iter().chain(grouping(expr).iter()) {
                    let target = ["job", "instance", "pod", "namespace"].contains(&l.as_str());
                    assert!(
                        known.contains(l) || target,
                        "{name} has no label {l:?} (in {expr})"
                    );
                }
                used.insert(name.clone());
            }
        }
        // Every family is on the dashboard.
        for family in exposed.keys() {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| family.strip_suffix(s));
            let shown = used.contains(family)
                || base.is_some_and(|b| used.iter().any(|u| u.starts_with(b)));
            assert!(shown, "{family} is not on the dashboard");
        }
    }
}
