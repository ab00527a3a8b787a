//! Logs for machines: with `--log-format json` every line is one JSON object, and the line that
//! reports an action carries `binding`, `service` and `instance` as top-level fields (what log
//! pipelines index), not only inside the message or the span.

mod common;

/// The testbed's own KWOK node the pods run on. Other tests create nodes of their own (OwnKwokNode)
/// and stop or delete them; a pod the scheduler put there would go Pending, be evicted and come back
/// elsewhere with another IP, which is not what this test is about.
const SHARED_NODE: &str = "kwok-node-1";

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn json_logs_parse_line_by_line_and_name_binding_service_and_instance(server: Server) {
    let scene = Scene::on(server, "jsonlog")
        .pods(2)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    let (_operator, log) = Operator::start_custom(
        &format!("operator-json-{}", scene.ns),
        &[
            "--kubeconfig",
            &testbed_env("KUBECONFIG"),
            "--namespaces",
            &scene.ns,
            "--log-format",
            "json",
            "--log-level",
            "info,nacos_reconciler=debug",
        ],
    );
    scene.wait_ready_live(2).await;
    let (_, gone) = scene.scale_to(1).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let binding = scene.binding_key();
    let instance = format!("{}:{}", gone[0], scene.port);
    let line = wait_for(
        "the deregistration's log line",
        Duration::from_secs(40),
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| {
                    v["message"] == "applied"
                        && v["binding"] == binding.as_str()
                        && v["service"] == scene.svc.as_str()
                        && v["instance"] == instance.as_str()
                })
        },
    )
    .await;
    // Persistent instances: a DELETE removes them on every server.
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
per_server!(json_logs_parse_line_by_line_and_name_binding_service_and_instance: nacos_2_5_1, rnacos);
