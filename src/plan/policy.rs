//! The binding's policy as the planner reads it: already validated and defaulted by the caller.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ipnet::IpNet;

/// What to do with an instance whose pod is gone (Gone, Orphan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalAction {
    Deregister,
    /// `enabled=false` plus our marker: reversible.
    Disable,
}

/// What to do as soon as the pod behind an instance starts terminating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminatingAction {
    Deregister,
    Ignore,
}

/// What to do while the pod behind an instance is not Ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreadyAction {
    Ignore,
    Disable,
}

/// What to do with an instance on a node's InternalIP once the node is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    Ignore,
    Disable,
    Deregister,
}

/// Removal budget per service per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRemovals {
    Count(u32),
    /// Percent of the service's listed instances, rounded down, at least 1 when the percent is above 0.
    Percent(u32),
}

impl MaxRemovals {
    /// The number of removals allowed per window for a service that lists `total` instances.
    pub fn limit(self, total: usize) -> usize {
        match self {
            MaxRemovals::Count(n) => n as usize,
            MaxRemovals::Percent(0) => 0,
            MaxRemovals::Percent(p) => {
                let scaled = total.saturating_mul(p.min(100) as usize) / 100;
                scaled.max(1)
            }
        }
    }
}

/// Restricts the governed instances to one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortFilter {
    Number(u16),
    /// A container port name: matches an instance when the pod holding its IP declares a port with
    /// this name and the instance's number.
    Name(String),
}

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
