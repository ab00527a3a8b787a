//! The Nacos client's requests as Prometheus metrics: durations per operation, errors per kind.

use std::sync::Arc;

use crate::metrics::{Metrics, RequestErrorLabels, RequestLabels};
use crate::nacos::{RequestEvent, RequestObserver};

/// Feeds the Nacos client's requests into the metrics.
pub struct RequestMetrics(pub Arc<Metrics>);

impl RequestObserver for RequestMetrics {
    fn on_request(&self, ev: &RequestEvent<'_>) {
        let operation = ev.operation.as_str().to_string();
        self.0
            .nacos_request_duration
            .get_or_create(&RequestLabels {
                operation: operation.clone(),
            })
            .observe(ev.elapsed.as_secs_f64());
        let kind = match ev.status {
            None => Some("unreachable"),
            Some(401 | 403) => Some("auth"),
            // Detection asking for an endpoint of another generation: its absence is the answer.
            Some(404 | 405 | 410 | 501) if ev.probe => None,
            Some(s) if s >= 400 => Some("server"),
            _ => None,
        };
        if let Some(kind) = kind {
            self.0
                .nacos_request_errors
                .get_or_create(&RequestErrorLabels {
                    operation,
                    kind: kind.into(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_probe_for_an_endpoint_the_server_lacks_is_no_request_error() {
        use crate::nacos::Operation;
        let m = Arc::new(Metrics::new());
        let observer = RequestMetrics(m.clone());
        let event = |operation, status, probe| RequestEvent {
            operation,
            method: "GET",
            path: "/nacos/v3/admin/core/state",
            address: "http://nacos:8848",
            status: Some(status),
            elapsed: Duration::from_millis(3),
            probe,
        };
        // Nacos 2.x answers the 3.x state endpoint and login path 404/501 on every full pass.
        observer.on_request(&event(Operation::ServerInfo, 501, true));
        observer.on_request(&event(Operation::Login, 404, true));
        assert!(
            !m.encode()
                .contains("nacos_reconciler_nacos_request_errors_total{"),
            "{}",
            m.encode()
        );
        observer.on_request(&event(Operation::ListInstances, 404, false));
        observer.on_request(&event(Operation::ServerInfo, 503, true));
        let text = m.encode();
        assert!(
            text.contains(
                r#"nacos_request_errors_total{operation="list_instances",kind="server"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"nacos_request_errors_total{operation="server_info",kind="server"} 1"#),
            "{text}"
        );
    }
}
