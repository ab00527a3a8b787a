//! Per-instance decision: which action an instance's evidence calls for, and from when.

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::{Instance, MarkerOwner};

use super::classify::{Evidence, Verdict};
use super::memory::Memory;
use super::policy::{
    after, delta, NodeAction, Policy, RemovalAction, TerminatingAction, UnreadyAction,
};

/// The three writes the operator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    Deregister,
    Disable,
    Enable,
}

impl ActionKind {
    /// Deregister and Disable take an instance offline and count against the budget; Enable does not.
    pub fn is_removal(self) -> bool {
        !matches!(self, ActionKind::Enable)
    }

    /// The words for it, one table: (verb as metrics and the plan table name it, past participle,
    /// noun, Event reason when done, Event reason in a dry run).
    fn words(self) -> [&'static str; 5] {
        match self {
            ActionKind::Deregister => [
                "deregister",
                "deregistered",
                "deregistration",
                "Deregistered",
                "WouldDeregister",
            ],
            ActionKind::Disable => [
                "disable",
                "disabled",
                "disabling",
                "Disabled",
                "WouldDisable",
            ],
            ActionKind::Enable => ["enable", "enabled", "enabling", "Enabled", "WouldEnable"],
        }
    }

    /// `deregister`, `disable`, `enable`: the metrics label and the plan table's verb.
    pub fn verb(self) -> &'static str {
        self.words()[0]
    }

    /// `deregistered`, `disabled`, `enabled`.
    pub fn done(self) -> &'static str {
        self.words()[1]
    }

    /// `deregistration`, `disabling`, `enabling`.
    pub fn noun(self) -> &'static str {
        self.words()[2]
    }

    /// The reason of the Event that says it was done: `Deregistered`, `Disabled`, `Enabled`.
    pub fn done_reason(self) -> &'static str {
        self.words()[3]
    }

    /// The reason of the Event a dry run emits instead: `WouldDeregister`, ...
    pub fn would_reason(self) -> &'static str {
        self.words()[4]
    }
}

/// What an instance needs, before budget and blocking are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub kind: ActionKind,
    /// When the action becomes due: the evidence time plus any grace.
    pub due_at: DateTime<Utc>,
    /// Disable chosen because a deregistration of this instance did not take.
    pub replaces_deregister: bool,
}

/// Everything the decision reads besides the instance and its evidence.
pub(crate) struct DecideCtx<'a> {
    pub policy: &'a Policy,
    pub owner: &'a MarkerOwner<'a>,
    pub memory: &'a Memory,
    pub frozen: bool,
    pub now: DateTime<Utc>,
}

/// Disabled by this binding: ours to re-enable, and needing nothing more while stale.
pub(crate) fn disabled_by_us(instance: &Instance, owner: &MarkerOwner<'_>) -> bool {
    !instance.enabled && owner.owns(instance)
}

/// The action an instance calls for, if any.
pub(crate) fn decide(
    instance: &Instance,
    evidence: &Evidence,
    ctx: &DecideCtx<'_>,
) -> Option<Decision> {
    let ours = disabled_by_us(instance, ctx.owner);
    if evidence.verdict == Verdict::Live {
        return (evidence.may_enable && ours).then_some(Decision {
            kind: ActionKind::Enable,
            due_at: ctx.now,
            replaces_deregister: false,
        });
    }
    if !evidence.verdict.is_stale() || ours || (evidence.node_based && ctx.frozen) {
        return None;
    }
    let since = evidence.since.unwrap_or(ctx.now);
    let (wanted, grace) = wanted_action(evidence.verdict, ctx.policy)?;
    let window = delta(ctx.policy.removal_window);
    let kind = match wanted {
        ActionKind::Deregister
            if ctx
                .memory
                .deregister_ineffective(&instance.key, ctx.now, window) =>
        {
            ActionKind::Disable
        }
        other => other,
    };
    // Disabling what someone else disabled would plant our marker and later let us re-enable it.
    if kind == ActionKind::Disable && !instance.enabled {
        return None;
    }
    Some(Decision {
        kind,
        due_at: after(since, grace),
        replaces_deregister: kind != wanted,
    })
}

/// The policy's action for a stale verdict, with the grace that applies to it.
fn wanted_action(verdict: Verdict, policy: &Policy) -> Option<(ActionKind, TimeDelta)> {
    let grace = delta(policy.grace_period);
    let removal = match policy.action {
        RemovalAction::Deregister => ActionKind::Deregister,
        RemovalAction::Disable => ActionKind::Disable,
    };
    match verdict {
        Verdict::Live | Verdict::Foreign => None,
        Verdict::Unready => match policy.on_pod_unready {
            UnreadyAction::Ignore => None,
            UnreadyAction::Disable => Some((ActionKind::Disable, grace)),
        },
        Verdict::Terminating => match policy.on_pod_terminating {
            TerminatingAction::Ignore => None,
            TerminatingAction::Deregister => Some((ActionKind::Deregister, TimeDelta::zero())),
        },
        Verdict::Gone | Verdict::Orphan => Some((removal, grace)),
        // The node threshold already was this verdict's grace.
        Verdict::Unreachable => match policy.on_node_unreachable {
            NodeAction::Ignore => None,
            NodeAction::Disable => Some((ActionKind::Disable, TimeDelta::zero())),
            NodeAction::Deregister => Some((ActionKind::Deregister, TimeDelta::zero())),
        },
    }
}
