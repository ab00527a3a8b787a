//! Leader election on a coordination.k8s.io Lease: only the leader writes to Nacos.
//!
//! Every replica runs the controller (caches warm, status and Events from its passes), but the
//! planner is told `acting_allowed = false` unless this replica holds the Lease and has held it for a
//! settle period, so a new leader first sees a full, fresh picture before it removes anything.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::time::{chrono_to_micro, micro_to_chrono};

/// Whether this replica may write to Nacos: the leader, settled, and only until its last Lease
/// renewal is too old for nobody else to have taken over. The deadline is checked on every read,
/// so a leader whose API connection hangs stops acting by itself (fencing by time), even while its
/// election loop waits on the API server.
#[derive(Debug)]
pub struct ActingGate {
    allowed: AtomicBool,
    until: Mutex<Option<Instant>>,
}

impl ActingGate {
    /// Without leader election: always allowed.
    pub fn always() -> Self {
        Self {
            allowed: AtomicBool::new(true),
            until: Mutex::new(None),
        }
    }

    /// With leader election: not allowed until the election says so.
    pub fn standby() -> Self {
        Self {
            allowed: AtomicBool::new(false),
            until: Mutex::new(None),
        }
    }

    pub fn allowed(&self) -> bool {
        self.allowed.load(Ordering::Relaxed)
            && self
                .until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|t| Instant::now() < t)
    }

    /// Allows acting until `until` (or forbids it); returns whether that changed anything.
    fn set(&self, allowed: bool, until: Option<Instant>) -> bool {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = until;
        self.allowed.swap(allowed, Ordering::Relaxed) != allowed
    }
}

/// A Lease round that has not answered within `limit` failed: the kube client has no read
/// timeout, and a half-open connection would otherwise hold the election loop forever.
async fn bounded<T>(
    limit: Duration,
    round: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, round).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from the API server within {limit:?}")),
    }
}

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

/// Runs forever, letting `gate` allow acting only while this replica leads and has settled, and
/// only until its last renewal could have expired. `leader` (the metric) follows the gate.
pub async fn run(
    client: Client,
    cfg: LeaderConfig,
    gate: Arc<ActingGate>,
    leader: prometheus_client::metrics::gauge::Gauge,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let renew_every = (cfg.lease_duration / 3).max(Duration::from_millis(500));
    let mut leading_since: Option<Instant> = None;
    let mut last_renewal: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match bounded(renew_every, round(&api, &cfg)).await {
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
        // Act only while the last renewal is fresh enough that nobody else can have taken over;
        // the gate itself stops at that moment, whatever this loop is doing then.
        let fresh_until = last_renewal.map(|t| t + cfg.lease_duration.saturating_sub(renew_every));
        let fresh = fresh_until.is_some_and(|t| Instant::now() < t);
        if !fresh {
            leading_since = None;
        }
        let settled = leading_since.is_some_and(|t| t.elapsed() >= cfg.settle);
        leader.set(i64::from(fresh && settled));
        if gate.set(fresh && settled, fresh_until) {
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

    /// Issue 15, case 3: a leader whose renewals stop answering stops acting by itself.
    #[tokio::test(start_paused = true)]
    async fn the_gate_closes_when_the_renewal_deadline_passes_and_a_hung_round_fails() {
        let gate = ActingGate::standby();
        assert!(!gate.allowed());
        assert!(gate.set(true, Some(Instant::now() + Duration::from_secs(10))));
        assert!(gate.allowed());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(gate.allowed());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!gate.allowed(), "past the deadline with no renewal");
        assert!(ActingGate::always().allowed());
        // A round that never answers (a half-open connection) fails after the limit.
        let hung = std::future::pending::<Result<bool, kube::Error>>();
        let r = bounded(Duration::from_secs(5), hung).await;
        assert!(r.unwrap_err().contains("no answer"));
    }

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
