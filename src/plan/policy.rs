//! The binding's policy as the planner reads it: already validated and defaulted by the caller.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ipnet::IpNet;

use crate::cluster::LabelMatcher;

// The policy enums are the CRD's own (plain data, no Kubernetes types), named here for what the
// planner does with them.
pub use crate::crd::{
    Action as RemovalAction, MaxRemovals, OnNodeUnreachable as NodeAction,
    OnPodTerminating as TerminatingAction, OnPodUnready as UnreadyAction,
    PortSelector as PortFilter,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub action: RemovalAction,
    pub grace_period: Duration,
    pub on_pod_terminating: TerminatingAction,
    pub on_pod_unready: UnreadyAction,
    pub on_node_unreachable: NodeAction,
    pub node_unreachable_after: Duration,
    pub max_removals: MaxRemovals,
    pub removal_window: Duration,
    pub dry_run: bool,
    /// `None`: every port is governed.
    pub port: Option<PortFilter>,
    /// Resolved by the caller (default included). Empty means nothing is in scope: every instance is
    /// Foreign, which is the safe failure.
    pub scope: Vec<IpNet>,
    /// Only instances whose metadata it matches are this cluster's; the others are Foreign. `None`:
    /// every instance in scope is, guarded against another cluster's (see `plan_service`).
    pub instance_claim: Option<LabelMatcher>,
}

impl Default for Policy {
    /// The defaults of the NacosBinding CRD, with an empty (touch-nothing) scope.
    fn default() -> Self {
        Self {
            action: RemovalAction::Deregister,
            grace_period: Duration::from_secs(30),
            on_pod_terminating: TerminatingAction::Deregister,
            on_pod_unready: UnreadyAction::Ignore,
            on_node_unreachable: NodeAction::Disable,
            node_unreachable_after: Duration::from_secs(60),
            max_removals: MaxRemovals::Percent(50),
            removal_window: Duration::from_secs(300),
            dry_run: false,
            port: None,
            scope: Vec::new(),
            instance_claim: None,
        }
    }
}

/// Converts a policy duration to chrono, capped at a century so date arithmetic can never overflow:
/// an absurdly long grace simply never expires.
pub(crate) fn delta(d: Duration) -> TimeDelta {
    let cap = TimeDelta::days(36_500);
    TimeDelta::from_std(d).map_or(cap, |d| d.min(cap))
}

/// `t + d`, saturating at the end of chrono's range.
pub(crate) fn after(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating at the start of chrono's range.
pub(crate) fn before(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
