//! The parts of the `NacosBinding` spec (nacos, services, pods, scope, policy) and the serde
//! defaults that the schema's `default:` values are taken from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{
    cidrs_schema, instance_metadata_schema, namespaces_schema, selector_schema, server_addr_schema,
};

/// The Nacos group used when a service entry names none.
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";

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

/// The instances the operator may act on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSpec {
    /// CIDRs (e.g. `10.244.0.0/16`, `fd00:10:244::/56`). Instances whose IP is outside every CIDR are counted as foreign and never touched. Empty means every Node's spec.podCIDRs plus the Nodes' InternalIPs.
    #[serde(default)]
    #[schemars(schema_with = "cidrs_schema")]
    pub cidrs: Vec<String>,

    /// This cluster's instances, by their Nacos metadata: a label selector (matchLabels, matchExpressions) applied to each instance's metadata, e.g. {matchLabels: {k8s-cluster: prod-a}}. Instances it does not match are foreign and never touched. Set it where several Kubernetes clusters register into the same Nacos services. Unset, a service whose in-scope instances are mostly orphans at addresses this cluster has not shown on a pod or node has those removals held, with an AnotherClusterSuspected Warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "instance_metadata_schema")]
    pub instance_metadata: Option<LabelSelector>,
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
pub(super) fn default_group() -> String {
    DEFAULT_GROUP.to_string()
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
