//! The `NacosBinding` custom resource: spec and status types, the generated CRD, and the pure helpers
//! the controller needs to read a spec (removal budget, service matching, port, scope).
//!
//! Doc comments on spec fields become the schema descriptions users see in `kubectl explain`.
//! Validation lives in the schema itself (bounds, enums, `default:`) and in CEL rules
//! (`x-kubernetes-validations`), so the API server rejects a bad spec with a message that says what to fix.
//! Every field with a default carries it twice: in the schema (the API server fills it in) and in serde
//! (objects written before a default existed still deserialise).

// One file per job; each uses only the files listed above it, so no file imports one that imports it:
//   schema.rs   `schema_with` functions: bounded lists and the LabelSelector, with their CEL rules
//   spec.rs     the parts of the spec (nacos, services, pods, scope, policy) and their serde defaults
//   status.rs   the status types and the bounds of its lists
//   resource.rs NacosBindingSpec, whose `#[kube]` derive generates `NacosBinding` and its CRD; `crd_yaml`
//   helpers.rs  the pure helpers that read a spec: removal budget, service matching, port, scope, `check`
//   tests.rs    tests over the whole generated CRD and the API example

mod helpers;
mod resource;
mod schema;
mod spec;
mod status;
#[cfg(test)]
mod tests;

pub use helpers::{glob_match, in_scope, MaxRemovals, PortSelector, SpecError};
pub use resource::{crd_yaml, NacosBinding, NacosBindingSpec, APPROVE_ANNOTATION};
pub use spec::{
    Action, NacosApi, NacosApiVersion, NacosSpec, OnNodeUnreachable, OnPodTerminating,
    OnPodUnready, PodsSpec, PolicySpec, ScopeSpec, SecretRef, ServiceSelector, TlsSpec,
    DEFAULT_GROUP,
};
pub use status::{
    InstanceCounts, NacosBindingStatus, NacosServerStatus, PendingAction, PendingState,
    PlannedAction, RemovalRecord, ServiceStatus, StillRegistered, MAX_PENDING, MAX_REMOVAL_RECORDS,
    MAX_SERVICE_STATUS, MAX_STILL_REGISTERED,
};
