//! Logs for machines: with `--log-format json` every line is one JSON object, and the line that
//! reports an action carries `binding`, `service` and `instance` as top-level fields (what log
//! pipelines index), not only inside the message or the span.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn json_logs_parse_line_by_line_and_name_binding_service_and_instance() {
    let client = kube_client().await;
    install_crd(&client).await;
    let nacos = testbed_env("RNACOS_ADDR");
    let ns = unique("jsonlog");
    create_namespace(&client, &ns).await;
    let pods = deploy(&client, &ns, "web", 2, None).await;
    let svc = format!("{ns}-web");
    for (_, ip) in &pods {
        register_http(&nacos, &svc, ip, 8080).await;
    }
    create_binding(
        &client,
        &ns,
        "web",
        json!({
            "nacos": {"serverAddr": [nacos]},
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "web"}}},
            "policy": {"gracePeriodSeconds": 0, "maxRemovals": "100%"},
            "resyncSeconds": 5
        }),
    )
    .await;
    let (_operator, log) = Operator::start_custom(
        &format!("operator-json-{ns}"),
        &[
            "--kubeconfig",
            &testbed_env("KUBECONFIG"),
            "--namespaces",
            &ns,
            "--log-format",
            "json",
            "--log-level",
            "info,nacos_reconciler=debug",
        ],
    );
    wait_binding(&client, &ns, "web", "Ready with 2 live", |s| {
        condition_is(s, "Ready", "True") && s.instances.live == 2
    })
    .await;
    let victim = scale_down(&client, &ns, "web", 1).await;
    let binding = format!("{ns}/web");
    let instance = format!("{victim}:8080");
    let log2 = log.clone();
    let line = wait_for(
        "the deregistration's log line",
        Duration::from_secs(40),
        || {
            let log = log2.clone();
            let (binding, svc, instance) = (binding.clone(), svc.clone(), instance.clone());
            async move {
                let text = std::fs::read_to_string(&log).ok()?;
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| {
                        v["message"] == "applied"
                            && v["binding"] == binding.as_str()
                            && v["service"] == svc.as_str()
                            && v["instance"] == instance.as_str()
                    })
            }
        },
    )
    .await;
    assert_eq!(line["action"], "deregister", "{line}");
    assert_eq!(line["result"], "success", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    assert!(
        line["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{line}"
    );

    // Every line of the whole run is a JSON object with a level and a message.
    let text = std::fs::read_to_string(&log).expect("operator log");
    let mut n = 0;
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(
            v.is_object() && v["level"].is_string() && v["timestamp"].is_string(),
            "{l}"
        );
        n += 1;
    }
    assert!(n >= 5, "only {n} log lines");
}
