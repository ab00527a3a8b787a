//! The NacosBinding CRD against the testbed's real API server: a table of invalid specs, each a
//! mistake a user could make, must be rejected with a message naming the field and saying what to
//! fix; a table of valid edge cases must be accepted. Every case is a server-side dry-run create
//! with `fieldValidation=Strict` (what kubectl sends), so nothing is stored.

mod common;

use common::*;
use kube::core::{params::PostParams, Request};
use serde_json::{json, Value};

/// A spec the API server accepts; each case changes it.
fn base_spec() -> Value {
    json!({
        "nacos": {"serverAddr": ["http://nacos.nacos:8848"]},
        "services": [{"name": "orders"}],
        "pods": {"selector": {"matchLabels": {"app": "orders"}}}
    })
}

/// One change to the base spec: set the value at a JSON pointer below `spec` (creating objects on
/// the way), or remove it.
enum Edit {
    Set(&'static str, Value),
    Remove(&'static str),
}
use Edit::{Remove, Set};

fn apply(spec: &mut Value, edit: &Edit) {
    let (pointer, value) = match edit {
        Set(p, v) => (*p, Some(v.clone())),
        Remove(p) => (*p, None),
    };
    let (parent, last) = pointer.rsplit_once('/').expect("pointer starts with /");
    let mut node = &mut *spec;
    for part in parent.split('/').skip(1) {
        node = match node {
            Value::Array(a) => &mut a[part.parse::<usize>().expect("array index")],
            other => {
                if other.get(part).is_none() {
                    other[part] = json!({});
                }
                &mut other[part]
            }
        };
    }
    match (node, value) {
        (Value::Array(a), Some(v)) => a[last.parse::<usize>().expect("array index")] = v,
        (Value::Object(o), Some(v)) => drop(o.insert(last.to_string(), v)),
        (Value::Object(o), None) => drop(o.remove(last)),
        (other, _) => panic!("cannot edit {pointer} in {other}"),
    }
}

struct Case {
    name: &'static str,
    edits: Vec<Edit>,
    /// Substrings the API server's message must contain (field path, then what to fix).
    expect: &'static [&'static str],
}

fn case(name: &'static str, edits: Vec<Edit>, expect: &'static [&'static str]) -> Case {
    Case {
        name,
        edits,
        expect,
    }
}

fn invalid_cases() -> Vec<Case> {
    const SERVICE_ONE_OF: &str = "set exactly one of name (an exact service name) or namePattern";
    const PORT: &str =
        "port must be a number from 1 to 65535 or a container port name (up to 15 lowercase";
    const MAX_REMOVALS: &str =
        "maxRemovals must be a count from 0 to 1000000 (e.g. 5) or a percentage from 0% to 100%";
    const URL: &str = "must be an http:// or https:// URL with a host";
    const CIDR: &str = "must be a CIDR such as 10.244.0.0/16";
    vec![
        // What the binding is about.
        case("services missing", vec![Remove("/services")], &["spec.services: Required value"]),
        case("services empty", vec![Set("/services", json!([]))], &["spec.services", "should have at least 1 items"]),
        case("services not a list", vec![Set("/services", json!("orders"))], &["spec.services", "must be of type array"]),
        case("service with name and namePattern", vec![Set("/services/0/namePattern", json!("orders-*"))], &["spec.services[0]", SERVICE_ONE_OF]),
        case("service with neither name nor namePattern", vec![Set("/services", json!([{"group": "DEFAULT_GROUP"}]))], &["spec.services[0]", SERVICE_ONE_OF]),
        case("service name with @@", vec![Set("/services/0/name", json!("DEFAULT_GROUP@@orders"))], &["spec.services[0].name", "name must be a plain service name without '@@'; put the group in group"]),
        case("namePattern with @@", vec![Set("/services/0", json!({"namePattern": "G@@orders-*"}))], &["spec.services[0].namePattern", "must not contain '@@'"]),
        case("group with @@", vec![Set("/services/0/group", json!("A@@B"))], &["spec.services[0].group", "group must be a plain Nacos group name without '@@'"]),
        case("service name empty", vec![Set("/services/0/name", json!(""))], &["spec.services[0].name", "should be at least 1 chars long"]),
        case("group empty", vec![Set("/services/0/group", json!(""))], &["spec.services[0].group", "should be at least 1 chars long"]),
        case("cluster name empty", vec![Set("/services/0/clusters", json!([""]))], &["spec.services[0].clusters[0]", "should be at least 1 chars long"]),
        // Pods.
        case("pods missing", vec![Remove("/pods")], &["spec.pods: Required value"]),
        case("pod selector missing", vec![Set("/pods", json!({"namespaces": ["shop"]}))], &["spec.pods.selector: Required value"]),
        case("selector operator unknown", vec![Set("/pods/selector", json!({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["orders"]}]}))], &["spec.pods.selector.matchExpressions[0].operator", "Unsupported value: \"Equals\""]),
        case("selector In without values", vec![Set("/pods/selector", json!({"matchExpressions": [{"key": "app", "operator": "In"}]}))], &["spec.pods.selector.matchExpressions[0]", "In or NotIn need at least one value"]),
        case("selector Exists with values", vec![Set("/pods/selector", json!({"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}))], &["spec.pods.selector.matchExpressions[0]", "Exists and DoesNotExist take none"]),
        case("pod namespace not a name", vec![Set("/pods/namespaces", json!(["Shop_1"]))], &["spec.pods.namespaces[0]", "must be a Kubernetes namespace name"]),
        case("port 0", vec![Set("/pods/port", json!(0))], &["spec.pods.port", PORT]),
        case("port 65536", vec![Set("/pods/port", json!(65536))], &["spec.pods.port", PORT]),
        case("port name upper case", vec![Set("/pods/port", json!("HTTP"))], &["spec.pods.port", PORT]),
        case("port name too long", vec![Set("/pods/port", json!("averyveryverylongname"))], &["spec.pods.port", PORT]),
        case("port name only digits", vec![Set("/pods/port", json!("8080"))], &["spec.pods.port", PORT]),
        case("port name with --", vec![Set("/pods/port", json!("a--b"))], &["spec.pods.port", PORT]),
        case("port a list", vec![Set("/pods/port", json!([8080]))], &["spec.pods.port"]),
        // Policy.
        case("grace negative", vec![Set("/policy/gracePeriodSeconds", json!(-1))], &["spec.policy.gracePeriodSeconds", "should be greater than or equal to 0"]),
        case("grace over a week", vec![Set("/policy/gracePeriodSeconds", json!(604801))], &["spec.policy.gracePeriodSeconds", "should be less than or equal to 604800"]),
        case("grace beyond 32 bits", vec![Set("/policy/gracePeriodSeconds", json!(4294967296u64))], &["spec.policy.gracePeriodSeconds", "should be less than or equal to 604800"]),
        case("grace a string", vec![Set("/policy/gracePeriodSeconds", json!("30s"))], &["spec.policy.gracePeriodSeconds", "must be of type integer"]),
        case("nodeUnreachableSeconds negative", vec![Set("/policy/nodeUnreachableSeconds", json!(-5))], &["spec.policy.nodeUnreachableSeconds", "should be greater than or equal to 0"]),
        case("maxRemovals 150%", vec![Set("/policy/maxRemovals", json!("150%"))], &["spec.policy.maxRemovals", MAX_REMOVALS]),
        case("maxRemovals abc", vec![Set("/policy/maxRemovals", json!("abc"))], &["spec.policy.maxRemovals", MAX_REMOVALS]),
        case("maxRemovals -1", vec![Set("/policy/maxRemovals", json!(-1))], &["spec.policy.maxRemovals", MAX_REMOVALS]),
        case("maxRemovals percent without %", vec![Set("/policy/maxRemovals", json!("50"))], &["spec.policy.maxRemovals", MAX_REMOVALS]),
        case("maxRemovals beyond 32 bits", vec![Set("/policy/maxRemovals", json!(3000000000u64))], &["spec.policy.maxRemovals", MAX_REMOVALS]),
        case("removalWindowSeconds 0", vec![Set("/policy/removalWindowSeconds", json!(0))], &["spec.policy.removalWindowSeconds", "should be greater than or equal to 1"]),
        case("removalWindowSeconds over a week", vec![Set("/policy/removalWindowSeconds", json!(604801))], &["spec.policy.removalWindowSeconds", "should be less than or equal to 604800"]),
        case("action unknown", vec![Set("/policy/action", json!("Delete"))], &["spec.policy.action", "Unsupported value: \"Delete\""]),
        case("onNodeUnreachable unknown", vec![Set("/policy/onNodeUnreachable", json!("Remove"))], &["spec.policy.onNodeUnreachable", "Unsupported value: \"Remove\""]),
        case("dryRun a string", vec![Set("/policy/dryRun", json!("yes"))], &["spec.policy.dryRun", "must be of type boolean"]),
        case("resyncSeconds 4", vec![Set("/resyncSeconds", json!(4))], &["spec.resyncSeconds", "should be greater than or equal to 5"]),
        case("resyncSeconds over a day", vec![Set("/resyncSeconds", json!(86401))], &["spec.resyncSeconds", "should be less than or equal to 86400"]),
        case("resyncSeconds a string", vec![Set("/resyncSeconds", json!("60"))], &["spec.resyncSeconds", "must be of type integer"]),
        // Scope.
        case("CIDR without prefix length", vec![Set("/scope/cidrs", json!(["10.244.0.0"]))], &["spec.scope.cidrs[0]", CIDR]),
        case("CIDR with a bad address", vec![Set("/scope/cidrs", json!(["10.244.0.0/16", "300.1.2.3/8"]))], &["spec.scope.cidrs[1]", CIDR]),
        case("instanceMetadata empty", vec![Set("/scope/instanceMetadata", json!({}))], &["spec.scope.instanceMetadata", "at least one matchLabels entry or matchExpressions requirement"]),
        case("instanceMetadata empty matchLabels", vec![Set("/scope/instanceMetadata", json!({"matchLabels": {}}))], &["spec.scope.instanceMetadata", "at least one matchLabels entry"]),
        case("instanceMetadata unknown operator", vec![Set("/scope/instanceMetadata", json!({"matchExpressions": [{"key": "k8s-cluster", "operator": "Equals", "values": ["a"]}]}))], &["spec.scope.instanceMetadata.matchExpressions[0].operator", "Unsupported value"]),
        case("instanceMetadata In without values", vec![Set("/scope/instanceMetadata", json!({"matchExpressions": [{"key": "k8s-cluster", "operator": "In"}]}))], &["spec.scope.instanceMetadata.matchExpressions[0]", "In or NotIn need at least one value"]),
        // Nacos.
        case("nacos missing", vec![Remove("/nacos")], &["spec.nacos: Required value"]),
        case("serverAddr missing", vec![Remove("/nacos/serverAddr")], &["spec.nacos.serverAddr: Required value"]),
        case("serverAddr empty", vec![Set("/nacos/serverAddr", json!([]))], &["spec.nacos.serverAddr", "should have at least 1 items"]),
        case("serverAddr empty string", vec![Set("/nacos/serverAddr", json!([""]))], &["spec.nacos.serverAddr[0]", "should be at least 1 chars long"]),
        case("serverAddr without scheme", vec![Set("/nacos/serverAddr", json!(["nacos.nacos:8848"]))], &["spec.nacos.serverAddr[0]", URL]),
        case("serverAddr host only", vec![Set("/nacos/serverAddr", json!(["nacos"]))], &["spec.nacos.serverAddr[0]", URL]),
        case("serverAddr ftp", vec![Set("/nacos/serverAddr", json!(["ftp://nacos:8848"]))], &["spec.nacos.serverAddr[0]", URL]),
        case("serverAddr second one bad", vec![Set("/nacos/serverAddr", json!(["http://a:8848", "http://"]))], &["spec.nacos.serverAddr[1]", URL]),
        case("serverAddr with credentials", vec![Set("/nacos/serverAddr", json!(["http://nacos:secret@nacos:8848"]))], &["spec.nacos.serverAddr[0]", "must not carry credentials"]),
        case("serverAddr port 0", vec![Set("/nacos/serverAddr", json!(["http://nacos:0/nacos"]))], &["spec.nacos.serverAddr[0]", "the port of a server address must be from 1 to 65535"]),
        case("serverAddr IPv6 port 65536", vec![Set("/nacos/serverAddr", json!(["http://[fd00::1]:65536"]))], &["spec.nacos.serverAddr[0]", "the port of a server address must be from 1 to 65535"]),
        case("serverAddr port out of range", vec![Set("/nacos/serverAddr", json!(["http://nacos:99999"]))], &["spec.nacos.serverAddr[0]", "the port of a server address must be from 1 to 65535"]),
        case("namespace with a space", vec![Set("/nacos/namespace", json!("dev ns"))], &["spec.nacos.namespace", "namespace must be a Nacos namespace id"]),
        case("apiVersion unknown", vec![Set("/nacos/apiVersion", json!("V4"))], &["spec.nacos.apiVersion", "Unsupported value: \"V4\""]),
        case("secret name not a name", vec![Set("/nacos/credentialsSecretRef", json!({"name": "Nacos_Auth"}))], &["spec.nacos.credentialsSecretRef.name", "name must be the name of a Secret"]),
        case("secret name empty", vec![Set("/nacos/credentialsSecretRef", json!({"name": ""}))], &["spec.nacos.credentialsSecretRef.name", "should be at least 1 chars long"]),
        case("secret ref without name", vec![Set("/nacos/credentialsSecretRef", json!({}))], &["spec.nacos.credentialsSecretRef.name: Required value"]),
        case("caSecretRef with insecureSkipVerify", vec![Set("/nacos/tls", json!({"caSecretRef": {"name": "nacos-ca"}, "insecureSkipVerify": true}))], &["spec.nacos.tls", "set either caSecretRef (to verify the server) or insecureSkipVerify: true, not both"]),
        // Fields that do not exist (kubectl's default field validation, Strict, rejects them).
        case("unknown field", vec![Set("/serverAddr", json!(["http://nacos:8848"]))], &["unknown field \"spec.serverAddr\""]),
        case("misspelt policy field", vec![Set("/policy/gracePeriod", json!(30))], &["unknown field \"spec.policy.gracePeriod\""]),
    ]
}

fn valid_cases() -> Vec<Case> {
    vec![
        case("minimal", vec![], &[]),
        case(
            "bounds at their minimum",
            vec![
                Set("/resyncSeconds", json!(5)),
                Set(
                    "/policy",
                    json!({"gracePeriodSeconds": 0, "nodeUnreachableSeconds": 0, "removalWindowSeconds": 1, "maxRemovals": 0}),
                ),
                Set("/pods/port", json!(1)),
            ],
            &[],
        ),
        case(
            "bounds at their maximum",
            vec![
                Set("/resyncSeconds", json!(86400)),
                Set(
                    "/policy",
                    json!({"gracePeriodSeconds": 604800, "nodeUnreachableSeconds": 604800, "removalWindowSeconds": 604800, "maxRemovals": 1000000}),
                ),
                Set("/pods/port", json!(65535)),
            ],
            &[],
        ),
        case(
            "maxRemovals 0%",
            vec![Set("/policy/maxRemovals", json!("0%"))],
            &[],
        ),
        case(
            "maxRemovals 100%",
            vec![Set("/policy/maxRemovals", json!("100%"))],
            &[],
        ),
        case("named port", vec![Set("/pods/port", json!("http"))], &[]),
        case(
            "named port of 15 characters",
            vec![Set("/pods/port", json!("grpc-metrics-01"))],
            &[],
        ),
        case(
            "namespace empty",
            vec![Set("/nacos/namespace", json!(""))],
            &[],
        ),
        case(
            "namespace public",
            vec![Set("/nacos/namespace", json!("public"))],
            &[],
        ),
        case(
            "namespace uuid",
            vec![Set(
                "/nacos/namespace",
                json!("3f2c9a1e-7b4d-4e8a-9c1f-2d6b8e0a5f17"),
            )],
            &[],
        ),
        case(
            "namePattern and clusters",
            vec![Set(
                "/services",
                json!([{"namePattern": "*", "group": "G", "clusters": ["DEFAULT", "c2"]}, {"name": "a"}]),
            )],
            &[],
        ),
        case(
            "server addresses of every shape",
            vec![Set(
                "/nacos/serverAddr",
                json!([
                    "http://nacos-0.nacos:8848",
                    "https://nacos.example.com/nacos",
                    "http://10.0.0.1:8848",
                    "http://[fd00::1]:8848",
                    "http://[fd00::1]/nacos",
                    "http://nacos:1",
                    "http://nacos:65535/nacos",
                    "https://nacos.example.com"
                ]),
            )],
            &[],
        ),
        case(
            "TLS with a CA",
            vec![Set(
                "/nacos/tls",
                json!({"caSecretRef": {"name": "nacos-ca"}}),
            )],
            &[],
        ),
        case(
            "TLS without verification",
            vec![Set("/nacos/tls", json!({"insecureSkipVerify": true}))],
            &[],
        ),
        case(
            "credentials secret",
            vec![Set(
                "/nacos/credentialsSecretRef",
                json!({"name": "nacos-auth.v2"}),
            )],
            &[],
        ),
        case(
            "instanceMetadata by labels and expressions",
            vec![Set(
                "/scope/instanceMetadata",
                json!({"matchLabels": {"k8s-cluster": "prod-a"},
                       "matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}),
            )],
            &[],
        ),
        case(
            "CIDRs v4 and v6, a single address",
            vec![Set(
                "/scope/cidrs",
                json!(["10.244.0.0/16", "fd00:10:244::/56", "192.168.1.7/32"]),
            )],
            &[],
        ),
        case(
            "selector expressions",
            vec![Set(
                "/pods/selector",
                json!({"matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["orders"]},
                    {"key": "canary", "operator": "DoesNotExist"}
                ]}),
            )],
            &[],
        ),
        case(
            "empty selector, other namespaces",
            vec![Set(
                "/pods",
                json!({"selector": {}, "namespaces": ["shop", "shop-2"]}),
            )],
            &[],
        ),
    ]
}

/// POSTs a binding with `spec` as a server-side dry run with strict field validation; returns the
/// API server's (code, message) when it refuses.
async fn dry_run_create(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: &Value,
) -> Result<(), (u16, String)> {
    let body = json!({
        "apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    });
    let url = format!("/apis/nacos-reconciler.io/v1alpha1/namespaces/{ns}/nacosbindings");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut req = Request::new(url)
        .create(&pp, serde_json::to_vec(&body).expect("JSON"))
        .expect("a create request");
    // kube's PostParams has no fieldValidation; kubectl sends Strict.
    *req.uri_mut() = format!("{}&fieldValidation=Strict", req.uri())
        .parse()
        .expect("a URI");
    match client.request::<Value>(req).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err((status.code, status.message)),
        Err(e) => panic!("dry-run create of {name}: {e}"),
    }
}

#[tokio::test]
async fn invalid_specs_are_rejected_with_a_message_saying_what_to_fix() {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = unique("crd-valid");
    create_namespace(&client, &ns).await;

    let invalid = invalid_cases();
    let names: std::collections::BTreeSet<&str> = invalid.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), invalid.len(), "case names are distinct");
    assert!(invalid.len() >= 25, "{} invalid cases", invalid.len());

    let mut failures = Vec::new();
    println!("{:<45} VERDICT", "INVALID SPEC");
    for (i, c) in invalid.iter().enumerate() {
        let mut spec = base_spec();
        for e in &c.edits {
            apply(&mut spec, e);
        }
        let verdict = match dry_run_create(&client, &ns, &format!("bad-{i}"), &spec).await {
            Ok(()) => Err("ACCEPTED".to_string()),
            Err((code, msg)) if code != 422 && code != 400 => Err(format!("HTTP {code}: {msg}")),
            Err((code, msg)) => match c.expect.iter().find(|s| !msg.contains(**s)) {
                Some(missing) => Err(format!("HTTP {code} without {missing:?}: {msg}")),
                None => Ok(format!("rejected ({code}): {msg}")),
            },
        };
        match verdict {
            Ok(v) => println!("{:<45} {v}", c.name),
            Err(v) => {
                println!("{:<45} WRONG: {v}", c.name);
                failures.push(format!("{}: {v}\n  spec: {spec}", c.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        invalid.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn valid_edge_cases_are_accepted() {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = unique("crd-edge");
    create_namespace(&client, &ns).await;

    let valid = valid_cases();
    assert!(valid.len() >= 5);
    let mut failures = Vec::new();
    println!("{:<45} VERDICT", "VALID SPEC");
    for (i, c) in valid.iter().enumerate() {
        let mut spec = base_spec();
        for e in &c.edits {
            apply(&mut spec, e);
        }
        match dry_run_create(&client, &ns, &format!("good-{i}"), &spec).await {
            Ok(()) => println!("{:<45} accepted", c.name),
            Err((code, msg)) => {
                println!("{:<45} WRONG: rejected ({code}): {msg}", c.name);
                failures.push(format!("{}: {code} {msg}\n  spec: {spec}", c.name));
            }
        }
        // What the API server accepts, the operator can read (a spec it cannot deserialise
        // would break its watch of every binding).
        let typed: Result<nacos_reconciler::crd::NacosBindingSpec, _> =
            serde_json::from_value(spec.clone());
        match typed {
            Ok(s) => assert_eq!(
                s.check(),
                Ok(()),
                "{}: the operator rejects an accepted spec",
                c.name
            ),
            Err(e) => failures.push(format!("{}: the operator cannot read it: {e}", c.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
