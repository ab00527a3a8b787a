//! Tests over the whole resource: the generated CRD (the committed copies, names, printer columns,
//! defaults, CEL rules, descriptions) and the API example.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResourceExt;
use serde_json::{json, Value};

use super::helpers::{in_scope, MaxRemovals, PortSelector, SpecError};
use super::resource::{crd_yaml, NacosBinding, NacosBindingSpec};
use super::spec::{NacosApi, NacosApiVersion, PolicySpec, ScopeSpec, DEFAULT_GROUP};
use super::status::{
    NacosBindingStatus, MAX_PENDING, MAX_REMOVAL_RECORDS, MAX_SERVICE_STATUS, MAX_STILL_REGISTERED,
};

const API_EXAMPLE: &str = r#"
apiVersion: nacos-reconciler.io/v1alpha1
kind: NacosBinding
metadata: {name: orders, namespace: shop}
spec:
  nacos:
    serverAddr: ["http://nacos-0.nacos:8848", "http://nacos-1.nacos:8848"]
    namespace: ""
    apiVersion: Auto
    credentialsSecretRef:
      name: nacos-auth
    tls: {caSecretRef: {name: nacos-ca}, insecureSkipVerify: false}
  services:
    - name: orders
      group: DEFAULT_GROUP
      clusters: []
  pods:
    selector: {matchLabels: {app: orders}}
    namespaces: []
    port: 8080
  scope:
    cidrs: ["10.244.0.0/16"]
  policy:
    action: Deregister
    gracePeriodSeconds: 30
    onPodTerminating: Deregister
    onPodUnready: Ignore
    onNodeUnreachable: Disable
    nodeUnreachableSeconds: 60
    maxRemovals: "50%"
    removalWindowSeconds: 300
    dryRun: false
  resyncSeconds: 60
status:
  observedGeneration: 4
  conditions:
  - {type: Ready, status: "True", reason: Reconciled, message: "...", lastTransitionTime: "2025-01-02T03:04:05Z"}
  nacos: {version: "2.5.2", api: V2}
  lastSyncTime: "2025-01-02T03:04:05Z"
  instances: {total: 12, live: 10, stale: 1, offline: 1, foreign: 1}
  removedTotal: 57
  services: [{name: orders, group: DEFAULT_GROUP, total: 12, live: 10, stale: 1, held: 0}]
  pending: []
"#;

fn crd_json() -> Value {
    serde_json::to_value(NacosBinding::crd()).expect("crd serialises")
}

fn spec_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// The (rule, message) pairs at one schema node.
fn rules(node: &Value) -> Vec<(String, String)> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap_or_default().to_string(),
                        r["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn crd_file_is_current() {
    // The repository's copy and the Helm chart's copy (`crds/` of the chart) are both exactly
    // the output of `nacos-reconciler crd`.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = crd_yaml();
    for file in [
        "crds/nacosbinding.yaml",
        "deploy/helm/nacos-reconciler/crds/nacosbinding.yaml",
    ] {
        let path = root.join(file);
        if std::env::var_os("UPDATE_CRDS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("write {file}: {e}"));
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{file} is out of date; regenerate it with: UPDATE_CRDS=1 cargo test --lib crd::tests::crd_file_is_current"
        );
    }
}

#[test]
fn crd_names_and_subresources() {
    let crd = NacosBinding::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("nacosbindings.nacos-reconciler.io")
    );
    assert_eq!(crd.spec.group, "nacos-reconciler.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "NacosBinding");
    assert_eq!(crd.spec.names.plural, "nacosbindings");
    assert_eq!(crd.spec.names.short_names, Some(vec!["nb".to_string()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["nacos".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version
        .subresources
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .is_some());
}

#[test]
fn printer_columns() {
    let crd = NacosBinding::crd();
    let columns: Vec<(String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name.to_uppercase(), c.json_path))
        .collect();
    let expected = [
        ("SERVICES", ".status.serviceCount"),
        ("INSTANCES", ".status.instances.total"),
        ("LIVE", ".status.instances.live"),
        ("STALE", ".status.instances.stale"),
        ("OFFLINE", ".status.instances.offline"),
        ("REMOVED", ".status.removedTotal"),
        ("READY", r#".status.conditions[?(@.type=="Ready")].status"#),
        ("AGE", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, p)| (n.to_string(), p.to_string()))
        .collect();
    assert_eq!(columns, expected);
}

#[test]
fn schema_has_defaults() {
    let spec = spec_schema();
    let p = &spec["properties"];
    assert_eq!(p["resyncSeconds"]["default"], json!(60));
    assert_eq!(p["pods"]["properties"]["namespaces"]["default"], json!([]));
    assert_eq!(p["scope"]["properties"]["cidrs"]["default"], json!([]));
    assert_eq!(
        p["nacos"]["properties"]["apiVersion"]["default"],
        json!("Auto")
    );
    assert_eq!(p["nacos"]["properties"]["namespace"]["default"], json!(""));
    assert_eq!(
        p["services"]["items"]["properties"]["group"]["default"],
        json!("DEFAULT_GROUP")
    );
    let policy = &p["policy"];
    assert!(
        policy["default"].is_object(),
        "an omitted policy gets defaulted"
    );
    let pp = &policy["properties"];
    assert_eq!(pp["action"]["default"], json!("Deregister"));
    assert_eq!(pp["gracePeriodSeconds"]["default"], json!(30));
    assert_eq!(pp["onPodTerminating"]["default"], json!("Deregister"));
    assert_eq!(pp["onPodUnready"]["default"], json!("Ignore"));
    assert_eq!(pp["onNodeUnreachable"]["default"], json!("Disable"));
    assert_eq!(pp["nodeUnreachableSeconds"]["default"], json!(60));
    assert_eq!(pp["maxRemovals"]["default"], json!("50%"));
    assert_eq!(pp["maxRemovals"]["nullable"], json!(false));
    assert_eq!(pp["removalWindowSeconds"]["default"], json!(300));
    assert_eq!(pp["dryRun"]["default"], json!(false));
    // The schema's policy default is exactly the Rust default.
    assert_eq!(
        policy["default"],
        serde_json::to_value(PolicySpec::default()).expect("policy serialises")
    );
}

#[test]
fn schema_has_cel_rules() {
    let spec = spec_schema();
    let p = &spec["properties"];
    let nacos = &p["nacos"]["properties"];
    let policy = &p["policy"]["properties"];
    let cases: Vec<(&Value, &str)> = vec![
        (&p["services"], "size(self) >= 1"),
        (
            &p["services"]["items"],
            "has(self.name) != has(self.namePattern)",
        ),
        (&nacos["serverAddr"], "size(self) >= 1"),
        (&nacos["serverAddr"]["items"], "isURL(self)"),
        (
            &nacos["serverAddr"]["items"],
            "getScheme() in ['http', 'https']",
        ),
        (&nacos["tls"], "insecureSkipVerify"),
        (&p["scope"]["properties"]["cidrs"]["items"], "isCIDR(self)"),
        (&p["pods"]["properties"]["port"], "self <= 65535"),
        (
            &p["pods"]["properties"]["namespaces"]["items"],
            "self.matches(",
        ),
        (&nacos["serverAddr"]["items"], "://[^/?#]*@"),
        (&nacos["serverAddr"]["items"], "6553[6-9]"),
        (
            &p["pods"]["properties"]["selector"]["properties"]["matchExpressions"]["items"],
            "self.operator in ['In', 'NotIn']",
        ),
        (&policy["maxRemovals"], "(100|[1-9]?[0-9])%"),
        (&policy["maxRemovals"], "self <= 1000000"),
        (&policy["gracePeriodSeconds"], "self >= 0"),
        (&policy["nodeUnreachableSeconds"], "self >= 0"),
        (&policy["removalWindowSeconds"], "self >= 1"),
        (&p["resyncSeconds"], "self >= 5"),
    ];
    for (node, needle) in cases {
        let found = rules(node);
        assert!(
            found
                .iter()
                .any(|(rule, message)| rule.contains(needle) && !message.is_empty()),
            "no rule containing {needle:?} with a message in {found:?}"
        );
    }
    // Every integer the operator reads into 32 bits has a maximum: the API server must never
    // store a value the operator cannot deserialise (that would break the watch of every
    // binding, not just this one).
    for field in [
        "gracePeriodSeconds",
        "nodeUnreachableSeconds",
        "removalWindowSeconds",
    ] {
        assert_eq!(policy[field]["maximum"], json!(604800.0), "{field}");
    }
    assert_eq!(p["resyncSeconds"]["maximum"], json!(86400.0));
    let selector = &p["pods"]["properties"]["selector"]["properties"];
    assert_eq!(selector["matchExpressions"]["maxItems"], json!(32));
    assert_eq!(
        selector["matchExpressions"]["items"]["properties"]["operator"]["enum"],
        json!(["In", "NotIn", "Exists", "DoesNotExist"])
    );
    assert_eq!(p["services"]["minItems"], json!(1));
    assert_eq!(nacos["serverAddr"]["minItems"], json!(1));
    let status =
        &crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert_eq!(
        status["properties"]["pending"]["maxItems"],
        json!(MAX_PENDING)
    );
    assert_eq!(
        status["properties"]["removals"]["maxItems"],
        json!(MAX_REMOVAL_RECORDS)
    );
    assert_eq!(
        status["properties"]["stillRegistered"]["maxItems"],
        json!(MAX_STILL_REGISTERED)
    );
    assert_eq!(
        status["properties"]["services"]["maxItems"],
        json!(MAX_SERVICE_STATUS)
    );
    assert_eq!(
        status["properties"]["conditions"]["x-kubernetes-list-type"],
        json!("map")
    );
}

#[test]
fn every_rule_has_a_message_and_every_spec_field_a_description() {
    fn walk(node: &Value, path: &str, problems: &mut Vec<String>) {
        for (rule, message) in rules(node) {
            if message.len() < 20 {
                problems.push(format!("{path}: rule {rule:?} lacks a helpful message"));
            }
        }
        if let Some(props) = node["properties"].as_object() {
            for (name, child) in props {
                let child_path = format!("{path}.{name}");
                if child["description"].as_str().unwrap_or_default().is_empty() {
                    problems.push(format!("{child_path}: no description"));
                }
                walk(child, &child_path, problems);
            }
        }
        if node["items"].is_object() {
            walk(&node["items"], &format!("{path}[]"), problems);
        }
    }
    let mut problems = Vec::new();
    walk(&spec_schema(), "spec", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn api_example_deserialises() {
    let nb: NacosBinding = serde_yaml::from_str(API_EXAMPLE).expect("API.md example parses");
    let spec = &nb.spec;
    assert_eq!(spec.nacos.server_addr.len(), 2);
    assert_eq!(spec.nacos.api_version, NacosApiVersion::Auto);
    assert_eq!(spec.nacos.api_version.fixed(), None);
    assert_eq!(
        spec.nacos
            .credentials_secret_ref
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("nacos-auth")
    );
    assert_eq!(spec.services[0].name.as_deref(), Some("orders"));
    assert_eq!(
        spec.pods.port_selector(),
        Ok(Some(PortSelector::Number(8080)))
    );
    assert_eq!(spec.policy, PolicySpec::default());
    assert_eq!(spec.policy.max_removals(), Ok(MaxRemovals::Percent(50)));
    assert_eq!(spec.resync_seconds, 60);
    assert_eq!(spec.check(), Ok(()));
    let networks = spec.scope_networks().expect("cidrs parse");
    assert!(in_scope(&networks, "10.244.3.4".parse().expect("ip")));
    assert!(!in_scope(&networks, "192.168.1.1".parse().expect("ip")));
    assert!(spec.governing(DEFAULT_GROUP, "orders").is_some());
    assert!(spec.governing("OTHER", "orders").is_none());

    let status = nb.status.expect("status");
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!(status.conditions[0].type_, "Ready");
    assert_eq!(status.nacos.and_then(|n| n.api), Some(NacosApi::V2));
    assert_eq!(status.instances.total, 12);
    assert_eq!(status.removed_total, 57);
    assert_eq!(status.services[0].held, 0);
}

#[test]
fn minimal_spec_gets_rust_defaults() {
    let spec: NacosBindingSpec = serde_json::from_value(json!({
        "nacos": {"serverAddr": ["http://nacos:8848"]},
        "services": [{"namePattern": "orders-*"}],
        "pods": {"selector": {"matchLabels": {"app": "orders"}}}
    }))
    .expect("minimal spec parses");
    assert_eq!(spec.resync_seconds, 60);
    assert_eq!(spec.policy, PolicySpec::default());
    assert_eq!(spec.nacos.namespace, "");
    assert_eq!(spec.services[0].group, DEFAULT_GROUP);
    assert_eq!(spec.scope, None);
    assert_eq!(spec.pods.port_selector(), Ok(None));
    assert_eq!(spec.scope_networks(), Ok(vec![]));
    // An empty status deserialises too.
    let status: NacosBindingStatus = serde_json::from_value(json!({})).expect("status");
    assert_eq!(status, NacosBindingStatus::default());
}

#[test]
fn scope_parsing_and_check() {
    let scope = ScopeSpec {
        cidrs: vec!["10.244.0.0/16".into(), "fd00::/64".into()],
        ..ScopeSpec::default()
    };
    let nets = scope.networks().expect("valid cidrs");
    assert!(in_scope(&nets, "fd00::1".parse().expect("ip")));
    let bad = ScopeSpec {
        cidrs: vec!["10.244.0.0".into()],
        ..ScopeSpec::default()
    };
    assert_eq!(bad.networks(), Err(SpecError::Cidr("10.244.0.0".into())));

    let mut spec: NacosBindingSpec = serde_yaml::from_str::<NacosBinding>(API_EXAMPLE)
        .expect("example parses")
        .spec;
    spec.scope = Some(bad);
    spec.policy.max_removals = IntOrString::String("200%".into());
    assert_eq!(spec.check().map_err(|e| e.len()), Err(2));
}
