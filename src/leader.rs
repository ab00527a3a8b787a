//! Leader election on a coordination.k8s.io Lease: only the leader writes to Nacos.
//!
//! Every replica runs the controller (caches warm, status and Events from its passes), but the
//! planner is told `acting_allowed = false` unless this replica holds the Lease and has held it for a
//! settle period, so a new leader first sees a full, fresh picture before it removes anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::time::{chrono_to_micro, micro_to_chrono};

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// How long a new leader waits before acting.
    pub settle: Duration,
}

/// What to do with the Lease as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseDecision {
    Create,
    Renew,
    TakeOver,
    Follow,
}

/// Pure: the holder keeps it by renewing; anyone may take it once it expired.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    now: DateTime<Utc>,
    duration: Duration,
) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Create;
    };
    if spec.holder_identity.as_deref() == Some(me) {
        return LeaseDecision::Renew;
    }
    let lease_for = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(duration);
    let renewed = spec.renew_time.as_ref().and_then(micro_to_chrono);
    match renewed {
        Some(t) if now < t + chrono::TimeDelta::from_std(lease_for).unwrap_or_default() => {
            LeaseDecision::Follow
        }
        _ => LeaseDecision::TakeOver,
    }
}

fn spec_for(
    cfg: &LeaderConfig,
    now: DateTime<Utc>,
    old: Option<&LeaseSpec>,
    transition: bool,
) -> LeaseSpec {
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs().max(1) as i32),
        acquire_time: if transition {
            chrono_to_micro(now)
        } else {
            old.and_then(|s| s.acquire_time.clone())
        },
        renew_time: chrono_to_micro(now),
        lease_transitions: Some(if transition {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}

/// One round: returns whether this replica holds the Lease now.
async fn round(api: &Api<Lease>, cfg: &LeaderConfig) -> Result<bool, kube::Error> {
    let now = Utc::now();
    let current = api.get_opt(&cfg.lease_name).await?;
    let decision = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
        cfg.lease_duration,
    );
    match (decision, current) {
        (LeaseDecision::Follow, _) => Ok(false),
        (LeaseDecision::Create, _) | (_, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.lease_name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec_for(cfg, now, None, true)),
            };
            api.create(&PostParams::default(), &lease).await?;
            Ok(true)
        }
        (d, Some(mut lease)) => {
            // resourceVersion is kept: a concurrent writer makes this a 409, and we follow.
            lease.spec = Some(spec_for(
                cfg,
                now,
                lease.spec.as_ref(),
                d == LeaseDecision::TakeOver,
            ));
            api.replace(&cfg.lease_name, &PostParams::default(), &lease)
                .await?;
            Ok(true)
        }
    }
}

/// Runs forever, keeping `acting_allowed` true only while this replica leads and has settled.
/// `leader` (the metric) follows `acting_allowed`.
pub async fn run(
    client: Client,
    cfg: LeaderConfig,
    acting_allowed: Arc<AtomicBool>,
    leader: prometheus_client::metrics::gauge::Gauge,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let renew_every = (cfg.lease_duration / 3).max(Duration::from_millis(500));
    let mut leading_since: Option<tokio::time::Instant> = None;
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        match round(&api, &cfg).await {
            Ok(true) => {
                if leading_since.is_none() {
                    info!(identity = %cfg.identity, settle = ?cfg.settle, "became leader; settling before acting");
                    leading_since = Some(now);
                }
                last_renewal = Some(now);
            }
            Ok(false) => {
                if leading_since.take().is_some() {
                    warn!("lost leadership");
                }
            }
            Err(e) => warn!(error = %e, "leader election round failed"),
        }
        // Act only while the last renewal is fresh enough that nobody else can have taken over.
        let fresh = last_renewal.is_some_and(|t| t.elapsed() + renew_every < cfg.lease_duration);
        if !fresh {
            leading_since = None;
        }
        let settled = leading_since.is_some_and(|t| t.elapsed() >= cfg.settle);
        leader.set(i64::from(fresh && settled));
        if acting_allowed.swap(fresh && settled, Ordering::Relaxed) != (fresh && settled) {
            info!(
                acting = fresh && settled,
                "leadership changed what this replica may do"
            );
        }
        tokio::time::sleep(renew_every.min(Duration::from_secs(2))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn lease(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: chrono_to_micro(at(renewed)),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(
            decide(None, "a", at(0), Duration::from_secs(15)),
            LeaseDecision::Create
        );
    }

    #[test]
    fn the_holder_renews() {
        let l = lease("a", -100, 15);
        assert_eq!(
            decide(Some(&l), "a", at(0), Duration::from_secs(15)),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn others_follow_a_fresh_lease_and_take_an_expired_one() {
        let l = lease("a", -10, 15);
        assert_eq!(
            decide(Some(&l), "b", at(0), Duration::from_secs(15)),
            LeaseDecision::Follow
        );
        assert_eq!(
            decide(Some(&l), "b", at(6), Duration::from_secs(15)),
            LeaseDecision::TakeOver
        );
        let never_renewed = LeaseSpec {
            holder_identity: Some("a".into()),
            ..LeaseSpec::default()
        };
        assert_eq!(
            decide(Some(&never_renewed), "b", at(0), Duration::from_secs(15)),
            LeaseDecision::TakeOver
        );
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_does_not() {
        let cfg = LeaderConfig {
            lease_name: "l".into(),
            namespace: "ns".into(),
            identity: "b".into(),
            lease_duration: Duration::from_secs(15),
            settle: Duration::from_secs(5),
        };
        let old = LeaseSpec {
            lease_transitions: Some(3),
            ..lease("a", -100, 15)
        };
        let s = spec_for(&cfg, at(0), Some(&old), true);
        assert_eq!(s.lease_transitions, Some(4));
        assert_eq!(s.holder_identity.as_deref(), Some("b"));
        let s = spec_for(&cfg, at(0), Some(&old), false);
        assert_eq!(s.lease_transitions, Some(3));
    }
}
