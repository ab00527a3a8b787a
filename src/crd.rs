//! The `NacosBinding` custom resource: spec and status types, the generated CRD, and the pure helpers
//! the controller needs to read a spec (removal budget, service matching, port, scope).
//!
//! Doc comments on spec fields become the schema descriptions users see in `kubectl explain`.
//! Validation lives in the schema itself (bounds, enums, `default:`) and in CEL rules
//! (`x-kubernetes-validations`), so the API server rejects a bad spec with a message that says what to fix.
//! Every field with a default carries it twice: in the schema (the API server fills it in) and in serde
//! (objects written before a default existed still deserialise).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotation on a `NacosBinding` that releases one held batch of removals. Its value is the binding's `metadata.generation` at the time of approval; the operator records the consumed value in `status.approvedToken` so the same approval is never used twice.
pub const APPROVE_ANNOTATION: &str = "nacos-reconciler.io/approve-removals";

/// The Nacos group used when a service entry names none.
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";

/// Upper bound of `status.pending`.
pub const MAX_PENDING: usize = 50;

/// Upper bound of `status.removals` (the removal history kept for the budget window).
pub const MAX_REMOVAL_RECORDS: usize = 1000;

/// Upper bound of `status.services`. Every status write costs the API server time in proportion to
/// the object's size (about 100 ms for 1,000 services), and a pass writes status.
pub const MAX_SERVICE_STATUS: usize = 100;

/// Binds Nacos services to the Kubernetes pods and nodes that back their instances, and takes instances offline once the pod or node behind them is gone.
// Several `printcolumn(type_ = "integer", ..)` entries trip clippy's duplicated_attributes lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "nacos-reconciler.io",
    version = "v1alpha1",
    kind = "NacosBinding",
    plural = "nacosbindings",
    shortname = "nb",
    category = "nacos",
    namespaced,
    status = "NacosBindingStatus",
    derive = "PartialEq",
    doc = "Binds Nacos services to the Kubernetes pods and nodes behind their instances; instances whose pod or node is gone are deregistered or disabled.",
    printcolumn(
        name = "Services",
        type_ = "integer",
        description = "Nacos services governed by this binding",
        json_path = ".status.serviceCount"
    ),
    printcolumn(
        name = "Instances",
        type_ = "integer",
        description = "Instances seen in Nacos for the governed services",
        json_path = ".status.instances.total"
    ),
    printcolumn(
        name = "Live",
        type_ = "integer",
        description = "Instances backed by a live pod or node",
        json_path = ".status.instances.live"
    ),
    printcolumn(
        name = "Stale",
        type_ = "integer",
        description = "Instances whose pod or node is gone, not yet acted on",
        json_path = ".status.instances.stale"
    ),
    printcolumn(
        name = "Offline",
        type_ = "integer",
        description = "Instances disabled by this operator",
        json_path = ".status.instances.offline"
    ),
    printcolumn(
        name = "Removed",
        type_ = "integer",
        description = "Instances deregistered or disabled since the binding was created",
        json_path = ".status.removedTotal"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Status of the Ready condition",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NacosBindingSpec {
    /// How to reach the Nacos cluster that holds the governed services.
    pub nacos: NacosSpec,

    /// The Nacos services this binding governs (at least one). Instances of other services are never touched.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "size(self) >= 1",
        "message": "list at least one Nacos service to govern, e.g. services: [{name: orders}]"
    }]))]
    pub services: Vec<ServiceSelector>,

    /// The pods that may back the governed instances. An instance is matched to a pod by IP (and port, when set).
    pub pods: PodsSpec,

    /// Which instance IPs the operator may act on. Omit to use every Node's spec.podCIDRs plus the Nodes' InternalIPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSpec>,

    /// What to do with instances whose pod or node is gone, and the safety limits around it.
    #[serde(default)]
    pub policy: PolicySpec,

    /// Seconds between full comparisons of Nacos with Kubernetes, even without Kubernetes events (5 to 86400).
    #[serde(default = "default_resync_seconds")]
    #[schemars(range(min = 5, max = 86400))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 5 && self <= 86400",
        "message": "resyncSeconds must be between 5 and 86400 (one day), e.g. 60"
    }]))]
    pub resync_seconds: u32,
}

/// Connection settings for one Nacos cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NacosSpec {
    /// Nacos server URLs, tried in order (failover), e.g. http://nacos-0.nacos:8848. Each must be an http:// or https:// URL with a host.
    #[schemars(schema_with = "server_addr_schema")]
    pub server_addr: Vec<String>,

    /// Nacos namespace id. Empty or "public" selects the public namespace.
    #[serde(default)]
    #[schemars(length(max = 128))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[A-Za-z0-9_.-]*$')",
        "message": "namespace must be a Nacos namespace id (letters, digits, '-', '_' or '.'), or empty or \"public\" for the public namespace"
    }]))]
    pub namespace: String,

    /// Which Nacos HTTP API generation to use: Auto probes the server (V3, then V2, then V1).
    #[serde(default)]
    pub api_version: NacosApiVersion,

    /// Secret in the binding's namespace holding Nacos credentials: keys `username` and `password`, or `accessKey` and `secretKey`. Omit when Nacos auth is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,

    /// TLS settings for https:// server addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// Which Nacos HTTP API generation to talk to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum NacosApiVersion {
    /// Probe the server and use the newest API it answers.
    #[default]
    Auto,
    /// Nacos 1.x open API (`/nacos/v1/ns/...`).
    V1,
    /// Nacos 2.x open API (`/nacos/v2/ns/...`).
    V2,
    /// Nacos 3.x admin API (`/nacos/v3/admin/ns/...`).
    V3,
}

/// A concrete Nacos HTTP API generation, as detected or configured.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum NacosApi {
    /// Nacos 1.x open API.
    V1,
    /// Nacos 2.x open API.
    V2,
    /// Nacos 3.x admin API.
    V3,
}

impl NacosApiVersion {
    /// The configured generation, or `None` for `Auto` (probe the server).
    pub fn fixed(self) -> Option<NacosApi> {
        match self {
            NacosApiVersion::Auto => None,
            NacosApiVersion::V1 => Some(NacosApi::V1),
            NacosApiVersion::V2 => Some(NacosApi::V2),
            NacosApiVersion::V3 => Some(NacosApi::V3),
        }
    }
}

/// A reference to a Secret in the binding's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the binding's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
        "message": "name must be the name of a Secret in the binding's namespace (lowercase letters, digits, '-' and '.')"
    }]))]
    pub name: String,
}

/// TLS settings for https:// Nacos servers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.caSecretRef) && has(self.insecureSkipVerify) && self.insecureSkipVerify)",
    "message": "set either caSecretRef (to verify the server) or insecureSkipVerify: true, not both"
}]))]
pub struct TlsSpec {
    /// Secret in the binding's namespace whose `ca.crt` key holds the PEM CA bundle that signs the Nacos server certificate. Omit to use the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,

    /// Skip verification of the server certificate. Only for testing.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One Nacos service (or a family of services) governed by the binding: set exactly one of `name` and `namePattern`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.name) != has(self.namePattern)",
    "message": "set exactly one of name (an exact service name) or namePattern (a glob such as orders-*) in each services entry"
}]))]
pub struct ServiceSelector {
    /// Exact Nacos service name, without the group (e.g. `orders`, not `DEFAULT_GROUP@@orders`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!self.contains('@@')",
        "message": "name must be a plain service name without '@@'; put the group in group"
    }]))]
    pub name: Option<String>,

    /// Glob over Nacos service names: `*` matches any run of characters, `?` exactly one (e.g. `orders-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!self.contains('@@')",
        "message": "namePattern must match plain service names and must not contain '@@'; put the group in group"
    }]))]
    pub name_pattern: Option<String>,

    /// Nacos group of the service(s).
    #[serde(default = "default_group")]
    #[schemars(length(min = 1, max = 128))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!self.contains('@@')",
        "message": "group must be a plain Nacos group name without '@@', e.g. DEFAULT_GROUP"
    }]))]
    pub group: String,

    /// Nacos clusters to govern. Empty means every cluster of the service.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    pub clusters: Vec<String>,
}

/// The pods that may back the governed instances.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodsSpec {
    /// Label selector of the pods that back the instances. An instance whose IP belongs to no matching pod (and to no Node) is an orphan.
    #[schemars(schema_with = "selector_schema")]
    pub selector: LabelSelector,

    /// Namespaces to look for pods in. Empty means the binding's own namespace.
    #[serde(default)]
    #[schemars(schema_with = "namespaces_schema")]
    pub namespaces: Vec<String>,

    /// Only govern instances on this port: a port number (1-65535) or the name of a container port of the matching pods. Omit to match instances on any port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "type(self) == int ? (self >= 1 && self <= 65535) : (self.size() <= 15 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.matches('[a-z]') && !self.contains('--'))",
        "message": "port must be a number from 1 to 65535 or a container port name (up to 15 lowercase letters, digits and '-', e.g. http)"
    }]))]
    pub port: Option<IntOrString>,
}

/// The instance IPs the operator may act on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSpec {
    /// CIDRs (e.g. `10.244.0.0/16`, `fd00:10:244::/56`). Instances whose IP is outside every CIDR are counted as foreign and never touched. Empty means every Node's spec.podCIDRs plus the Nodes' InternalIPs.
    #[serde(default)]
    #[schemars(schema_with = "cidrs_schema")]
    pub cidrs: Vec<String>,
}

/// What to do with instances whose pod or node is gone, and the safety limits around it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// What to do with a stale instance: Deregister removes it; Disable sets enabled=false (reversible).
    #[serde(default)]
    pub action: Action,

    /// Seconds an instance must be stale before it is acted on (0 to 604800, one week).
    #[serde(default = "default_grace_period_seconds")]
    #[schemars(range(max = 604800))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 0 && self <= 604800",
        "message": "gracePeriodSeconds must be from 0 to 604800 seconds (one week), e.g. 30"
    }]))]
    pub grace_period_seconds: u32,

    /// What to do as soon as a matching pod starts terminating (deletionTimestamp set), without grace.
    #[serde(default)]
    pub on_pod_terminating: OnPodTerminating,

    /// What to do while a matching pod is not Ready; Disable re-enables the instance once the pod is Ready.
    #[serde(default)]
    pub on_pod_unready: OnPodUnready,

    /// What to do with instances on a Node that is NotReady or Unknown for nodeUnreachableSeconds.
    #[serde(default)]
    pub on_node_unreachable: OnNodeUnreachable,

    /// Seconds a Node must be NotReady or Unknown before it counts as unreachable (0 to 604800, one week).
    #[serde(default = "default_node_unreachable_seconds")]
    #[schemars(range(max = 604800))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 0 && self <= 604800",
        "message": "nodeUnreachableSeconds must be from 0 to 604800 seconds (one week), e.g. 60"
    }]))]
    pub node_unreachable_seconds: u32,

    /// Removal budget per service per removalWindowSeconds: a count (e.g. 5) or a percentage of the service's instances (e.g. "50%", rounded down, at least 1 above 0%). Past it, removals are held until approved with the annotation nacos-reconciler.io/approve-removals.
    #[serde(default = "default_max_removals")]
    #[schemars(extend(
        "nullable" = false,
        "x-kubernetes-validations" = [{
            "rule": "type(self) == int ? (self >= 0 && self <= 1000000) : self.matches('^(100|[1-9]?[0-9])%$')",
            "message": "maxRemovals must be a count from 0 to 1000000 (e.g. 5) or a percentage from 0% to 100% (e.g. \"50%\")"
        }]
    ))]
    pub max_removals: IntOrString,

    /// Length of the removal budget window in seconds (1 to 604800, one week).
    #[serde(default = "default_removal_window_seconds")]
    #[schemars(range(min = 1, max = 604800))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 1 && self <= 604800",
        "message": "removalWindowSeconds must be from 1 to 604800 seconds (one week), e.g. 300"
    }]))]
    pub removal_window_seconds: u32,

    /// Plan and report (status.pending, WouldDeregister events) but change nothing in Nacos.
    #[serde(default)]
    pub dry_run: bool,
}

impl Default for PolicySpec {
    fn default() -> Self {
        Self {
            action: Action::default(),
            grace_period_seconds: default_grace_period_seconds(),
            on_pod_terminating: OnPodTerminating::default(),
            on_pod_unready: OnPodUnready::default(),
            on_node_unreachable: OnNodeUnreachable::default(),
            node_unreachable_seconds: default_node_unreachable_seconds(),
            max_removals: default_max_removals(),
            removal_window_seconds: default_removal_window_seconds(),
            dry_run: false,
        }
    }
}

/// What to do with a stale instance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Action {
    /// Remove the instance from Nacos.
    #[default]
    Deregister,
    /// Keep the instance but set enabled=false (reversible).
    Disable,
}

/// What to do when a matching pod starts terminating.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum OnPodTerminating {
    /// Deregister the instance at once, without grace.
    #[default]
    Deregister,
    /// Leave it until the pod is gone.
    Ignore,
}

/// What to do while a matching pod is not Ready.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum OnPodUnready {
    /// Leave the instance alone.
    #[default]
    Ignore,
    /// Disable it; re-enable it when the pod is Ready again.
    Disable,
}

/// What to do with instances on an unreachable Node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum OnNodeUnreachable {
    /// Leave the instances alone.
    Ignore,
    /// Disable them; re-enable them when the Node is Ready again.
    #[default]
    Disable,
    /// Deregister them.
    Deregister,
}

/// A list of strings whose items carry a CEL rule, so a rejection names the offending entry
/// (`spec.scope.cidrs[1]: Invalid value: "10.1.2.3": ...`). Bounds keep the rule cost within budget.
fn string_list_schema(
    min_items: u32,
    max_items: u32,
    max_length: u32,
    item_rule: &str,
    item_message: &str,
) -> schemars::Schema {
    let mut schema = schemars::json_schema!({
        "type": "array",
        "maxItems": max_items,
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "x-kubernetes-validations": [{"rule": item_rule, "message": item_message}],
        },
    });
    if min_items > 0 {
        schema.insert("minItems".into(), min_items.into());
    }
    schema
}

fn server_addr_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = string_list_schema(
        1,
        16,
        512,
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",
        "must be an http:// or https:// URL with a host, e.g. http://nacos-0.nacos:8848",
    );
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{
            "rule": "size(self) >= 1",
            "message": "serverAddr must list at least one Nacos server URL, e.g. [\"http://nacos.nacos:8848\"]"
        }]),
    );
    // Two more rules per address: the operator cannot use either, and says so only at run time.
    if let Some(rules) = schema
        .get_mut("items")
        .and_then(|items| items.get_mut("x-kubernetes-validations"))
        .and_then(serde_json::Value::as_array_mut)
    {
        rules.push(serde_json::json!({
            "rule": "!self.matches('^[A-Za-z][-A-Za-z0-9+.]*://[^/?#]*@')",
            "message": "must not carry credentials (user:password@); name a Secret in credentialsSecretRef instead"
        }));
        rules.push(serde_json::json!({
            // A regular expression, not url(): parsing the URL again for its port costs more
            // than the API server's CEL budget allows.
            "rule": "!self.matches('^[A-Za-z][-A-Za-z0-9+.]*://[^/?#]*:([0-9]{6,}|6553[6-9]|655[4-9][0-9]|65[6-9][0-9]{2}|6[6-9][0-9]{3}|[7-9][0-9]{4}|0+)([/?#]|$)')",
            "message": "the port of a server address must be from 1 to 65535, e.g. http://nacos-0.nacos:8848"
        }));
    }
    schema
}

/// The LabelSelector schema, bounded (so CEL rules stay within the cost budget) and checked the
/// way the API server checks a Deployment's selector: a known operator, and values exactly when
/// the operator needs them. The operator could not use any other selector.
fn selector_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let schema = <LabelSelector as JsonSchema>::json_schema(generator);
    let mut value = schema.clone().to_value();
    if let Some(exprs) = value.pointer_mut("/properties/matchExpressions") {
        exprs["maxItems"] = 32.into();
        let item = &mut exprs["items"];
        item["properties"]["key"]["maxLength"] = 317.into();
        item["properties"]["key"]["minLength"] = 1.into();
        item["properties"]["operator"]["enum"] =
            serde_json::json!(["In", "NotIn", "Exists", "DoesNotExist"]);
        item["properties"]["values"]["maxItems"] = 64.into();
        item["properties"]["values"]["items"]["maxLength"] = 63.into();
        item["x-kubernetes-validations"] = serde_json::json!([{
            "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
            "message": "matchExpressions with In or NotIn need at least one value; Exists and DoesNotExist take none"
        }]);
    }
    if let Some(labels) = value.pointer_mut("/properties/matchLabels") {
        labels["maxProperties"] = 64.into();
        labels["additionalProperties"]["maxLength"] = 63.into();
    }
    schemars::Schema::try_from(value).unwrap_or(schema)
}

fn namespaces_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_list_schema(
        0,
        64,
        63,
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        "must be a Kubernetes namespace name (lowercase letters, digits and '-'), e.g. shop",
    )
}

fn cidrs_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_list_schema(
        0,
        64,
        64,
        "isCIDR(self)",
        "must be a CIDR such as 10.244.0.0/16 or fd00:10:244::/56 (a single address is written 10.1.2.3/32)",
    )
}

fn default_group() -> String {
    DEFAULT_GROUP.to_string()
}
fn default_resync_seconds() -> u32 {
    60
}
fn default_grace_period_seconds() -> u32 {
    30
}
fn default_node_unreachable_seconds() -> u32 {
    60
}
fn default_max_removals() -> IntOrString {
    IntOrString::String("50%".to_string())
}
fn default_removal_window_seconds() -> u32 {
    300
}

// ---------------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------------

/// Observed state, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NacosBindingStatus {
    /// The metadata.generation of the spec this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, NacosReachable, CacheSynced, RemovalsHeld and SpecValid.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The Nacos server as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nacos: Option<NacosServerStatus>,

    /// When the last full comparison of Nacos with Kubernetes finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// Instance counts over all governed services.
    #[serde(default)]
    pub instances: InstanceCounts,

    /// Instances deregistered or disabled by this binding since it was created.
    #[serde(default)]
    pub removed_total: u64,

    /// Number of Nacos services currently governed.
    #[serde(default)]
    pub service_count: u32,

    /// Per-service instance counts (at most 100): services with stale, offline or held instances first, then by group and name; serviceCount says how many there are in all.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub services: Vec<ServiceStatus>,

    /// Planned actions not yet carried out: in grace, held by the removal budget, or dry-run (at most 50).
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub pending: Vec<PendingAction>,

    /// Recent removals, newest last, kept so that the removal budget window survives a leader change.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub removals: Vec<RemovalRecord>,

    /// The value of the nacos-reconciler.io/approve-removals annotation last consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_token: Option<String>,

    /// The last pass that found more than half of the nodes not Ready (node-based actions frozen). Nodes still down after it count as down only from then, also for a newly elected leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at: Option<Time>,
}

/// The Nacos server as last seen.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NacosServerStatus {
    /// Server version, e.g. 2.5.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The API generation in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<NacosApi>,
}

/// Instance counts by verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceCounts {
    /// All instances of the governed services.
    #[serde(default)]
    pub total: u32,
    /// Backed by a live pod or node.
    #[serde(default)]
    pub live: u32,
    /// Pod or node gone (or unready/unreachable), not yet acted on.
    #[serde(default)]
    pub stale: u32,
    /// Disabled by this operator.
    #[serde(default)]
    pub offline: u32,
    /// Outside scope: never touched.
    #[serde(default)]
    pub foreign: u32,
}

/// Instance counts of one service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Nacos group.
    #[serde(default = "default_group")]
    pub group: String,
    /// All instances.
    #[serde(default)]
    pub total: u32,
    /// Backed by a live pod or node.
    #[serde(default)]
    pub live: u32,
    /// Not yet acted on.
    #[serde(default)]
    pub stale: u32,
    /// Disabled by this operator.
    #[serde(default)]
    pub offline: u32,
    /// Removals held by the budget.
    #[serde(default)]
    pub held: u32,
}

/// A planned action on one instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingAction {
    /// Service name.
    pub service: String,
    /// Nacos group.
    #[serde(default = "default_group")]
    pub group: String,
    /// Instance IP.
    pub ip: String,
    /// Instance port.
    pub port: u16,
    /// The action that will be taken.
    pub action: PlannedAction,
    /// Why it is pending: grace, held by the budget, or dry-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PendingState>,
    /// The evidence, e.g. "pod shop/orders-7d9f deleted".
    #[serde(default)]
    pub reason: String,
    /// When the action becomes due (end of grace), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Time>,
}

/// An action the operator takes on an instance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PlannedAction {
    /// Remove the instance.
    Deregister,
    /// Set enabled=false.
    Disable,
    /// Set enabled=true again (only instances this operator disabled).
    Enable,
}

/// Why a planned action is not carried out yet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PendingState {
    /// Waiting for gracePeriodSeconds (or nodeUnreachableSeconds) to pass.
    Grace,
    /// Held by the removal budget; approve with the nacos-reconciler.io/approve-removals annotation.
    Held,
    /// policy.dryRun is set: reported, never carried out.
    DryRun,
}

/// One past removal, counted against its service's budget window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemovalRecord {
    /// Service name.
    pub service: String,
    /// Nacos group.
    #[serde(default = "default_group")]
    pub group: String,
    /// When the removal was carried out.
    pub time: Time,
}

// ---------------------------------------------------------------------------------------------------
// CRD output
// ---------------------------------------------------------------------------------------------------

/// The CRD as YAML: what `nacos-reconciler crd` prints and what `crds/nacosbinding.yaml` holds.
pub fn crd_yaml() -> String {
    // A CustomResourceDefinition is plain data with string keys; serialising it cannot fail.
    serde_yaml::to_string(&NacosBinding::crd())
        .expect("a CustomResourceDefinition always serialises to YAML")
}

// ---------------------------------------------------------------------------------------------------
// Spec helpers (pure)
// ---------------------------------------------------------------------------------------------------

/// A spec value the API server should have rejected (e.g. the CRD in the cluster is older than the
/// operator). Reported through the SpecValid condition and an InvalidSpec event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// policy.maxRemovals is neither a count nor a percentage from 0% to 100%.
    #[error(
        "policy.maxRemovals {0:?} must be a count of 0 or more or a percentage from 0% to 100%"
    )]
    MaxRemovals(String),
    /// pods.port is neither 1-65535 nor a port name.
    #[error("pods.port {0:?} must be a number from 1 to 65535 or a container port name")]
    Port(String),
    /// A scope.cidrs entry is not a CIDR.
    #[error("scope.cidrs entry {0:?} is not a CIDR such as 10.244.0.0/16")]
    Cidr(String),
}

/// The removal budget per service per window, parsed from `policy.maxRemovals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRemovals {
    /// At most this many removals.
    Count(u32),
    /// At most this percentage (0-100) of the service's instances (see [`MaxRemovals::limit`]).
    Percent(u32),
}

impl MaxRemovals {
    /// Parse an int-or-string: a non-negative integer, or a string `"N%"` with N from 0 to 100.
    pub fn parse(value: &IntOrString) -> Result<Self, SpecError> {
        match value {
            IntOrString::Int(n) => u32::try_from(*n)
                .map(MaxRemovals::Count)
                .map_err(|_| SpecError::MaxRemovals(n.to_string())),
            IntOrString::String(s) => {
                let bad = || SpecError::MaxRemovals(s.clone());
                let digits = s.strip_suffix('%').ok_or_else(bad)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                match digits.parse::<u32>() {
                    Ok(p) if p <= 100 => Ok(MaxRemovals::Percent(p)),
                    _ => Err(bad()),
                }
            }
        }
    }

    /// The number of removals allowed in one window for a service with `total` instances.
    /// Percentages round down (the cautious side) but allow at least 1 when above 0%, so a
    /// one-instance service can still lose its dead instance; 0% is always 0.
    pub fn limit(self, total: usize) -> usize {
        match self {
            MaxRemovals::Count(n) => n as usize,
            MaxRemovals::Percent(0) => 0,
            MaxRemovals::Percent(p) => (total.saturating_mul(p.min(100) as usize) / 100).max(1),
        }
    }

    /// Whether this budget can ever hold a removal back. 100% cannot: it allows every instance a
    /// service has, whatever was removed earlier in the window, so no record of the spent budget
    /// changes a decision.
    pub fn can_hold(self) -> bool {
        self != MaxRemovals::Percent(100)
    }
}

impl fmt::Display for MaxRemovals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxRemovals::Count(n) => write!(f, "{n}"),
            MaxRemovals::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl PolicySpec {
    /// The parsed removal budget.
    pub fn max_removals(&self) -> Result<MaxRemovals, SpecError> {
        MaxRemovals::parse(&self.max_removals)
    }
}

impl ServiceSelector {
    /// Whether this entry governs the Nacos service called `service_name` (group not considered: compare
    /// `self.group` separately). `name` matches exactly; `namePattern` is a glob with `*` and `?`.
    /// An entry with neither (rejected by the API server) governs nothing.
    pub fn governs(&self, service_name: &str) -> bool {
        match (&self.name, &self.name_pattern) {
            (Some(name), _) => name == service_name,
            (None, Some(pattern)) => glob_match(pattern, service_name),
            (None, None) => false,
        }
    }

    /// Whether this entry governs `service_name` in `group`.
    pub fn governs_in(&self, group: &str, service_name: &str) -> bool {
        self.group == group && self.governs(service_name)
    }
}

/// Glob matching over whole strings: `*` matches any run of characters (including none), `?` exactly
/// one character; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` seen, and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((after_star, matched_to)) => {
                    // Let the last `*` swallow one more character and retry.
                    pi = after_star;
                    ti = matched_to + 1;
                    star = Some((after_star, matched_to + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The instance port filter of `pods.port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelector {
    /// A port number.
    Number(u16),
    /// The name of a container port of the matching pods.
    Name(String),
}

impl PodsSpec {
    /// The parsed port filter, or `None` when every port matches.
    pub fn port_selector(&self) -> Result<Option<PortSelector>, SpecError> {
        match &self.port {
            None => Ok(None),
            Some(IntOrString::Int(n)) => match u16::try_from(*n) {
                Ok(p) if p >= 1 => Ok(Some(PortSelector::Number(p))),
                _ => Err(SpecError::Port(n.to_string())),
            },
            Some(IntOrString::String(s)) => {
                let valid = !s.is_empty()
                    && s.len() <= 15
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && s.bytes().any(|b| b.is_ascii_lowercase())
                    && !s.starts_with('-')
                    && !s.ends_with('-')
                    && !s.contains("--");
                if valid {
                    Ok(Some(PortSelector::Name(s.clone())))
                } else {
                    Err(SpecError::Port(s.clone()))
                }
            }
        }
    }
}

impl ScopeSpec {
    /// The parsed CIDRs (empty means: derive the scope from the Nodes).
    pub fn networks(&self) -> Result<Vec<IpNet>, SpecError> {
        self.cidrs
            .iter()
            .map(|c| c.parse::<IpNet>().map_err(|_| SpecError::Cidr(c.clone())))
            .collect()
    }
}

impl NacosBindingSpec {
    /// The first service entry that governs `service_name` in `group`, if any.
    pub fn governing(&self, group: &str, service_name: &str) -> Option<&ServiceSelector> {
        self.services
            .iter()
            .find(|s| s.governs_in(group, service_name))
    }

    /// No `scope.cidrs`: the scope is derived from the Nodes (their podCIDRs and InternalIPs).
    pub fn default_scope(&self) -> bool {
        self.scope.as_ref().is_none_or(|s| s.cidrs.is_empty())
    }

    /// The explicit scope CIDRs; empty when the scope is to be derived from the Nodes.
    pub fn scope_networks(&self) -> Result<Vec<IpNet>, SpecError> {
        match &self.scope {
            Some(scope) => scope.networks(),
            None => Ok(Vec::new()),
        }
    }

    /// Checks the values the API server validates, for bindings stored under an older CRD.
    /// Returns every problem found.
    pub fn check(&self) -> Result<(), Vec<SpecError>> {
        let mut errors = Vec::new();
        if let Err(e) = self.policy.max_removals() {
            errors.push(e);
        }
        if let Err(e) = self.pods.port_selector() {
            errors.push(e);
        }
        if let Err(e) = self.scope_networks() {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Whether `ip` falls inside any of `networks`.
pub fn in_scope(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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

    fn sel(name: Option<&str>, pattern: Option<&str>) -> ServiceSelector {
        ServiceSelector {
            name: name.map(str::to_string),
            name_pattern: pattern.map(str::to_string),
            group: DEFAULT_GROUP.to_string(),
            clusters: vec![],
        }
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
    fn max_removals_parsing() {
        let s = |v: &str| MaxRemovals::parse(&IntOrString::String(v.to_string()));
        let i = |v: i32| MaxRemovals::parse(&IntOrString::Int(v));
        assert_eq!(i(0), Ok(MaxRemovals::Count(0)));
        assert_eq!(i(5), Ok(MaxRemovals::Count(5)));
        assert!(i(-1).is_err());
        assert_eq!(s("0%"), Ok(MaxRemovals::Percent(0)));
        assert_eq!(s("50%"), Ok(MaxRemovals::Percent(50)));
        assert_eq!(s("100%"), Ok(MaxRemovals::Percent(100)));
        for bad in [
            "101%", "150%", "%", "50", "5 %", "-5%", "+5%", "50%%", "abc", "", "1e2%",
        ] {
            assert!(s(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            s("101%").map_err(|e| e.to_string()),
            Err("policy.maxRemovals \"101%\" must be a count of 0 or more or a percentage from 0% to 100%".to_string())
        );
        assert_eq!(MaxRemovals::Percent(50).to_string(), "50%");
        assert_eq!(MaxRemovals::Count(3).to_string(), "3");
    }

    #[test]
    fn max_removals_limit() {
        assert_eq!(MaxRemovals::Count(5).limit(2), 5);
        assert_eq!(MaxRemovals::Percent(50).limit(1), 1);
        assert_eq!(MaxRemovals::Percent(50).limit(4), 2);
        assert_eq!(MaxRemovals::Percent(50).limit(5), 2);
        assert_eq!(MaxRemovals::Percent(0).limit(100), 0);
        assert_eq!(MaxRemovals::Percent(100).limit(7), 7);
        assert_eq!(MaxRemovals::Percent(10).limit(0), 1);
        assert_eq!(MaxRemovals::Percent(100).limit(1_000_000), 1_000_000);
        assert!(!MaxRemovals::Percent(100).can_hold());
        assert!(MaxRemovals::Percent(99).can_hold());
        assert!(MaxRemovals::Count(1_000_000).can_hold());
    }

    #[test]
    fn glob_matching() {
        let yes = [
            ("orders", "orders"),
            ("orders-*", "orders-"),
            ("orders-*", "orders-eu-1"),
            ("*", ""),
            ("*", "anything"),
            ("o?ders", "orders"),
            ("*-api", "payments-api"),
            ("*a*b*", "xxaxxbxx"),
            ("a*b*c", "abbbc"),
            ("**", "x"),
            ("??", "日本"),
            ("a*a*a", "aaaaa"),
        ];
        let no = [
            ("orders", "orders-1"),
            ("orders-*", "orders"),
            ("o?ders", "oders"),
            ("?", ""),
            ("*-api", "payments-apis"),
            ("a*b*c", "abcx"),
            ("orders", "Orders"),
            ("a*a*a", "aa"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p, t), "{p:?} should match {t:?}");
        }
        for (p, t) in no {
            assert!(!glob_match(p, t), "{p:?} should not match {t:?}");
        }
    }

    #[test]
    fn governs_by_name_or_pattern() {
        assert!(sel(Some("orders"), None).governs("orders"));
        assert!(!sel(Some("orders"), None).governs("orders-eu"));
        // `name` is exact even when it contains glob characters.
        assert!(!sel(Some("orders-*"), None).governs("orders-eu"));
        assert!(sel(None, Some("orders-*")).governs("orders-eu"));
        assert!(!sel(None, Some("orders-*")).governs("payments"));
        assert!(!sel(None, None).governs("orders"));
        assert!(sel(Some("orders"), None).governs_in(DEFAULT_GROUP, "orders"));
        assert!(!sel(Some("orders"), None).governs_in("OTHER", "orders"));
    }

    #[test]
    fn port_selector_parsing() {
        let pods = |port: Option<IntOrString>| PodsSpec {
            selector: LabelSelector::default(),
            namespaces: vec![],
            port,
        };
        let name = |s: &str| pods(Some(IntOrString::String(s.to_string()))).port_selector();
        assert_eq!(
            pods(Some(IntOrString::Int(1))).port_selector(),
            Ok(Some(PortSelector::Number(1)))
        );
        assert_eq!(
            pods(Some(IntOrString::Int(65535))).port_selector(),
            Ok(Some(PortSelector::Number(65535)))
        );
        assert!(pods(Some(IntOrString::Int(0))).port_selector().is_err());
        assert!(pods(Some(IntOrString::Int(65536))).port_selector().is_err());
        assert_eq!(
            name("http"),
            Ok(Some(PortSelector::Name("http".to_string())))
        );
        assert_eq!(
            name("grpc-2"),
            Ok(Some(PortSelector::Name("grpc-2".to_string())))
        );
        for bad in [
            "",
            "HTTP",
            "-http",
            "http-",
            "a--b",
            "1234",
            "averyveryverylongname",
        ] {
            assert!(name(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn scope_parsing_and_check() {
        let scope = ScopeSpec {
            cidrs: vec!["10.244.0.0/16".into(), "fd00::/64".into()],
        };
        let nets = scope.networks().expect("valid cidrs");
        assert!(in_scope(&nets, "fd00::1".parse().expect("ip")));
        let bad = ScopeSpec {
            cidrs: vec!["10.244.0.0".into()],
        };
        assert_eq!(bad.networks(), Err(SpecError::Cidr("10.244.0.0".into())));

        let mut spec: NacosBindingSpec = serde_yaml::from_str::<NacosBinding>(API_EXAMPLE)
            .expect("example parses")
            .spec;
        spec.scope = Some(bad);
        spec.policy.max_removals = IntOrString::String("200%".into());
        assert_eq!(spec.check().map_err(|e| e.len()), Err(2));
    }

    #[test]
    fn approve_annotation_name() {
        assert_eq!(APPROVE_ANNOTATION, "nacos-reconciler.io/approve-removals");
    }
}
