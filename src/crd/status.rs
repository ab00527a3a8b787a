//! The `NacosBinding` status types, and the bounds of its lists.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{default_group, NacosApi};

/// Upper bound of `status.pending`.
pub const MAX_PENDING: usize = 50;

/// Upper bound of `status.stillRegistered`.
pub const MAX_STILL_REGISTERED: usize = 20;

/// Upper bound of `status.removals` (the removal history kept for the budget window).
pub const MAX_REMOVAL_RECORDS: usize = 1000;

/// Upper bound of `status.services`. Every status write costs the API server time in proportion to
/// the object's size (about 100 ms for 1,000 services), and a pass writes status.
pub const MAX_SERVICE_STATUS: usize = 100;

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

    /// Instances this binding took offline with enabled=false that Nacos still lists, newest first (at most 20), each with what keeps it registered as the operator saw it when it disabled it (the words of that Event). Kept by the leader in memory: a new leader starts it afresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub still_registered: Vec<StillRegistered>,

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

/// An instance taken offline (enabled=false) that Nacos still lists, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StillRegistered {
    /// Service name.
    pub service: String,
    /// Nacos group.
    #[serde(default = "default_group")]
    pub group: String,
    /// Instance IP.
    pub ip: String,
    /// Instance port.
    pub port: u16,
    /// When this binding disabled it.
    pub since: Time,
    /// What keeps it registered, e.g. "a gRPC connection keeps it registered (client 10.244.1.7:50412 (Nacos-Java-Client:v2.5.1), connected since …)".
    pub reason: String,
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
