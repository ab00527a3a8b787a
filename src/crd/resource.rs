//! The `NacosBinding` resource: the top-level spec, whose `#[kube]` derive generates `NacosBinding`
//! and its CRD, and the CRD as YAML.

use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{NacosSpec, PodsSpec, PolicySpec, ScopeSpec, ServiceSelector};
use super::status::NacosBindingStatus;

/// Annotation on a `NacosBinding` that releases one held batch of removals. Its value is the binding's `metadata.generation` at the time of approval; the operator records the consumed value in `status.approvedToken` so the same approval is never used twice.
pub const APPROVE_ANNOTATION: &str = "nacos-reconciler.io/approve-removals";

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
fn default_resync_seconds() -> u32 {
    60
}

/// The CRD as YAML: what `nacos-reconciler crd` prints and what `crds/nacosbinding.yaml` holds.
pub fn crd_yaml() -> String {
    // A CustomResourceDefinition is plain data with string keys; serialising it cannot fail.
    serde_yaml::to_string(&NacosBinding::crd())
        .expect("a CustomResourceDefinition always serialises to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approve_annotation_name() {
        assert_eq!(APPROVE_ANNOTATION, "nacos-reconciler.io/approve-removals");
    }
}
