//! Which services a pass lists. A full pass lists every governed service. Between full passes (at
//! least every `resyncSeconds`, and whenever the spec, the Secrets or the annotations change) a pass
//! first judges the listings it kept against the cluster as it is now, and lists again only the
//! services where that calls for a write: with 1,000 services, a deleted pod costs one listing
//! instead of 1,000. Nothing is written from a kept listing (see [`crate::plan::ServiceListing`]).
//! Both judgements, of what to list and of what was listed, take only the listings that may judge
//! differently since the last one ([`Kept::suspects`], [`Kept::to_judge`]); the others keep their
//! last verdicts ([`carry`]).
//!
//! Instances registered after the last full listing are unknown to the kept listings, so a pod that
//! stops serving on an IP none of them holds makes the pass full (see
//! [`crate::cluster::ClusterView::unlisted_departure`]); so does a node that stops being Ready.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::outcome::{Outcome, Written};
use crate::cluster::Changed;
use crate::model::{NodeFacts, NodeReadiness, ServiceKey, DISABLED_BY_KEY};
use crate::nacos::ServerInfo;
use crate::plan::{ActionKind, Memory, Plan, ServiceListing, ServicePlan};

/// Timestamps from the API server have whole seconds: look back a little further than the listing.
const CLOCK_MARGIN: TimeDelta = TimeDelta::seconds(2);

/// What a binding's passes keep of the registry between full passes.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Of the spec generation, the annotations and the Nacos client configuration: a change means full.
    pub fingerprint: u64,
    /// When the last full pass started listing.
    pub full_at: DateTime<Utc>,
    pub server: ServerInfo,
    /// Every governed service with its cluster filter, as the last full pass found them.
    pub services: Vec<(ServiceKey, Vec<String>)>,
    /// The latest listing of each governed service.
    pub listings: Vec<ServiceListing>,
    /// Every IP a listing held since the full pass, those of instances we removed included.
    listed: HashSet<IpAddr>,
    /// Those and the ones of the full pass before: a departure on one of these is no sign of an
    /// unlisted instance. (The previous generation matters: a pod deleted just before a full pass
    /// whose instance was already removed is missing from that pass's listing, and within the clock
    /// margin; without it every deletion near a full pass would make the next pass full too.)
    pub known: HashSet<IpAddr>,
    /// The cluster view's change point read just before the last pass judged every listing.
    judged_at: u64,
    /// The services that pass left with anything but plainly live instances.
    attention: BTreeSet<ServiceKey>,
    /// That pass's judgement of every service, for the next focused pass to carry where it need
    /// not judge again ([`Self::to_judge`]). Taken by the pass that judges next and kept again
    /// only when it completes: `None` means the next pass judges everything.
    plans: Option<Vec<ServicePlan>>,
}

impl Kept {
    /// After a full pass; `previous` is what the passes before it kept.
    pub fn new(
        fingerprint: u64,
        full_at: DateTime<Utc>,
        server: ServerInfo,
        services: Vec<(ServiceKey, Vec<String>)>,
        listings: Vec<ServiceListing>,
        previous: Option<Kept>,
    ) -> Self {
        let listed = ips_of(&listings);
        let mut known = previous.map(|p| p.listed).unwrap_or_default();
        known.extend(listed.iter().copied());
        Self {
            fingerprint,
            full_at,
            server,
            services,
            listings,
            listed,
            known,
            judged_at: 0,
            attention: BTreeSet::new(),
            plans: None,
        }
    }

    /// Notes a plan made from every listing, with the view as it was at change point `seq` or later.
    pub fn judged(&mut self, seq: u64, plan: &Plan) {
        self.judged_at = seq;
        self.plans = None;
        self.attention = plan
            .services
            .iter()
            .filter(|s| {
                let c = &s.counts;
                c.stale > 0
                    || c.offline > 0
                    || c.held > 0
                    || s.blocked.is_some()
                    || !s.actions.is_empty()
                    || !s.waiting.is_empty()
                    || !s.would_act.is_empty()
            })
            .map(|s| s.service.clone())
            .collect();
    }

    /// The change point [`Self::suspects`] needs the changes since.
    pub fn judged_at(&self) -> u64 {
        self.judged_at
    }

    /// The kept listings whose judgement may differ from the last one's: of services that were left
    /// with anything but plainly live instances, that `memory` holds instances of, or with an
    /// instance on an IP in `changed` (whose facts changed, or which a node that is not Ready
    /// decides: that turns stale by time alone). `None`: all of them (anything may have changed).
    pub fn suspects(&self, changed: &Changed, memory: &Memory) -> Option<Vec<ServiceListing>> {
        let suspect = self.suspicion(changed, memory)?;
        Some(
            self.listings
                .iter()
                .filter(|l| suspect(l))
                .cloned()
                .collect(),
        )
    }

    /// Of a focused pass's `listings`, those its plan must judge: the fresh ones, the
    /// [`Self::suspects`], and any the last judgement (`carried`, from [`Self::take_plans`]) lacks.
    /// The others' judgement is carried ([`carry`]): with 10,000 instances, a deleted pod is judged
    /// with its service's instances, not with all of them. `None`: all of them.
    pub fn to_judge(
        &self,
        listings: &[ServiceListing],
        carried: &[ServicePlan],
        changed: &Changed,
        memory: &Memory,
    ) -> Option<Vec<ServiceListing>> {
        let suspect = self.suspicion(changed, memory)?;
        let carried: BTreeSet<&ServiceKey> = carried.iter().map(|p| &p.service).collect();
        Some(
            listings
                .iter()
                .filter(|l| l.fresh || !carried.contains(&l.service) || suspect(l))
                .cloned()
                .collect(),
        )
    }

    fn suspicion<'s>(
        &'s self,
        changed: &'s Changed,
        memory: &'s Memory,
    ) -> Option<impl Fn(&ServiceListing) -> bool + 's> {
        let Changed::Ips(ips) = changed else {
            return None;
        };
        let remembered: BTreeSet<&ServiceKey> = memory
            .first_seen_stale
            .keys()
            .chain(memory.disabled.keys())
            .chain(&memory.ineffective)
            .map(|k| &k.service)
            .collect();
        Some(move |l: &ServiceListing| {
            self.attention.contains(&l.service)
                || remembered.contains(&l.service)
                || l.listing
                    .as_ref()
                    .is_ok_and(|s| s.instances.iter().any(|i| ips.contains(&i.key.ip)))
        })
    }

    /// The last judgement of every service, if the pass that made it completed. Until
    /// [`Self::keep_plans`], the next pass judges everything.
    pub fn take_plans(&mut self) -> Option<Vec<ServicePlan>> {
        self.plans.take()
    }

    /// Keeps a completed pass's judgement of every service, made at [`Self::judged_at`].
    pub fn keep_plans(&mut self, services: Vec<ServicePlan>) {
        self.plans = Some(services);
    }

    /// Since when a pod's departure must be looked for: the last full listing, less the clock
    /// margin.
    pub fn departures_since(&self) -> DateTime<Utc> {
        self.full_at - CLOCK_MARGIN
    }

    /// Takes in the listings made in this pass and returns this pass's listings: those fresh, the
    /// other kept ones marked as not listed in this pass.
    pub fn update(&mut self, fresh: Vec<ServiceListing>) -> Vec<ServiceListing> {
        let relisted: BTreeSet<ServiceKey> = fresh.iter().map(|l| l.service.clone()).collect();
        let ips = ips_of(&fresh);
        self.known.extend(ips.iter().copied());
        self.listed.extend(ips);
        for listing in fresh {
            match self
                .listings
                .iter_mut()
                .find(|l| l.service == listing.service)
            {
                Some(slot) => *slot = listing,
                None => self.listings.push(listing),
            }
        }
        self.listings
            .iter()
            .map(|l| ServiceListing {
                fresh: relisted.contains(&l.service),
                ..l.clone()
            })
            .collect()
    }

    /// Brings the kept listings up to what this pass's writes did, so the next pass judges the
    /// registry as it is (an instance we disabled must look disabled, or a pod taking its address
    /// again would not call for re-enabling it). A write that failed or was not confirmed changed
    /// nothing.
    pub fn record_writes<'o>(
        &mut self,
        outcomes: impl IntoIterator<Item = &'o Outcome>,
        marker: &str,
    ) {
        for o in outcomes {
            let key = &o.action.instance;
            let Some(snap) = self
                .listings
                .iter_mut()
                .find(|l| l.service == key.service)
                .and_then(|l| l.listing.as_mut().ok())
            else {
                continue;
            };
            let snap = std::sync::Arc::make_mut(snap);
            let disabled = match (&o.result, o.action.kind) {
                (Written::Done, ActionKind::Deregister) => {
                    snap.instances.retain(|i| &i.key != key);
                    continue;
                }
                (Written::Done, ActionKind::Disable)
                | (Written::Ineffective { disabled: true, .. }, _) => true,
                (Written::Done, ActionKind::Enable) => false,
                _ => continue,
            };
            if let Some(i) = snap.instances.iter_mut().find(|i| &i.key == key) {
                i.enabled = !disabled;
                if disabled {
                    i.metadata
                        .insert(DISABLED_BY_KEY.to_string(), marker.to_string());
                } else {
                    i.metadata.remove(DISABLED_BY_KEY);
                }
            }
        }
    }
}

fn ips_of(listings: &[ServiceListing]) -> HashSet<IpAddr> {
    listings
        .iter()
        .filter_map(|l| l.listing.as_ref().ok())
        .flat_map(|s| s.instances.iter().map(|i| i.key.ip))
        .collect()
}

/// Whether this pass lists everything, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassKind {
    Full(String),
    Focused,
}

/// Full unless the kept listings are complete, recent and from the same configuration.
pub fn pass_kind(
    kept: Option<&Kept>,
    fingerprint: u64,
    now: DateTime<Utc>,
    resync: Duration,
) -> PassKind {
    let Some(kept) = kept else {
        return PassKind::Full("first pass".into());
    };
    if kept.fingerprint != fingerprint {
        return PassKind::Full("spec, Secrets or annotations changed".into());
    }
    let resync = TimeDelta::from_std(resync).unwrap_or(TimeDelta::MAX);
    if now - kept.full_at >= resync {
        return PassKind::Full("resync".into());
    }
    if kept.listings.iter().any(|l| l.listing.is_err()) {
        return PassKind::Full("a listing failed earlier".into());
    }
    PassKind::Focused
}

/// A node that stopped being Ready since the last full pass started listing at `full_at`:
/// instances on it may be unknown to kept listings. Dated by when this operator saw it, on the
/// same clock as `full_at`; else by the API server's whole-second time, looked for since a
/// little before (which makes every pass within that margin full too).
pub fn node_departure(nodes: &[NodeFacts], full_at: DateTime<Utc>) -> Option<String> {
    nodes
        .iter()
        .find(|n| {
            n.readiness != NodeReadiness::Ready
                && match n.readiness_seen {
                    Some(seen) => seen >= full_at,
                    None => n
                        .readiness_since
                        .is_none_or(|at| at >= full_at - CLOCK_MARGIN),
                }
        })
        .map(|n| format!("node {} not Ready", n.name))
}

/// The services a plan made from kept listings would write to (or hold writes for): they are the
/// ones to list again.
pub fn to_relist(plan: &Plan) -> BTreeSet<ServiceKey> {
    plan.services
        .iter()
        .filter(|s| !s.actions.is_empty() || !s.held.is_empty() || !s.would_act.is_empty())
        .map(|s| s.service.clone())
        .collect()
}

/// Completes a plan of some of `listings` (see [`Kept::to_judge`]) with the `carried` judgement of
/// the others. Those were plainly live, and nothing that decides them changed since: judged again,
/// they would come out the same. (Never with an action: none of them is fresh.)
pub fn carry(plan: &mut Plan, carried: Vec<ServicePlan>, listings: &[ServiceListing]) {
    let judged: BTreeSet<ServiceKey> = plan.services.iter().map(|s| s.service.clone()).collect();
    let governed: BTreeSet<&ServiceKey> = listings.iter().map(|l| &l.service).collect();
    plan.services.extend(
        carried
            .into_iter()
            .filter(|s| governed.contains(&s.service) && !judged.contains(&s.service)),
    );
    plan.services.sort_by(|a, b| a.service.cmp(&b.service));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::outcome::WriteFailed;
    use crate::model::{Instance, InstanceKey, ServiceSnapshot};
    use crate::nacos::{ApiGeneration, ServerFlavor};
    use crate::plan::{Action, ActionKind, Confirm, ServicePlan, Verdict};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn svc(name: &str) -> ServiceKey {
        ServiceKey::new("DEFAULT_GROUP", name)
    }

    fn listing(name: &str, ips: &[&str]) -> ServiceListing {
        let instances = ips
            .iter()
            .map(|ip| Instance {
                key: InstanceKey {
                    service: svc(name),
                    cluster: "DEFAULT".into(),
                    ip: ip.parse().unwrap(),
                    port: 8080,
                },
                listed_ip: ip.to_string(),
                ephemeral: true,
                enabled: true,
                healthy: true,
                weight: 1.0,
                metadata: Default::default(),
            })
            .collect();
        ServiceListing::fresh(
            svc(name),
            Ok(ServiceSnapshot {
                service: svc(name),
                instances,
                unaddressable: vec![],
            }),
        )
    }

    fn kept(listings: Vec<ServiceListing>) -> Kept {
        let server = ServerInfo {
            version: "unknown".into(),
            api: ApiGeneration::V1,
            flavor: ServerFlavor::V1Compatible,
            lists_disabled: true,
            settle: std::time::Duration::ZERO,
            metadata_overlay: false,
            names_publishers: false,
        };
        let services = listings
            .iter()
            .map(|l| (l.service.clone(), Vec::new()))
            .collect();
        Kept::new(7, t(0), server, services, listings, None)
    }

    #[test]
    fn full_unless_kept_listings_are_complete_recent_and_of_this_configuration() {
        let resync = Duration::from_secs(60);
        let k = kept(vec![listing("a", &["10.0.0.1"])]);
        assert_eq!(
            pass_kind(None, 7, t(1), resync),
            PassKind::Full("first pass".into())
        );
        assert_eq!(pass_kind(Some(&k), 7, t(59), resync), PassKind::Focused);
        assert!(matches!(
            pass_kind(Some(&k), 8, t(1), resync),
            PassKind::Full(_)
        ));
        assert_eq!(
            pass_kind(Some(&k), 7, t(60), resync),
            PassKind::Full("resync".into())
        );
        let mut failed = k.clone();
        failed
            .listings
            .push(ServiceListing::fresh(svc("b"), Err("HTTP 500".into())));
        assert!(matches!(
            pass_kind(Some(&failed), 7, t(1), resync),
            PassKind::Full(_)
        ));
    }

    #[test]
    fn writes_that_took_are_recorded_in_the_kept_listings() {
        let mut k = kept(vec![listing(
            "a",
            &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
        )]);
        let keys: Vec<InstanceKey> = k.listings[0]
            .listing
            .as_ref()
            .unwrap()
            .instances
            .iter()
            .map(|i| i.key.clone())
            .collect();
        let outcome = |i: usize, kind: ActionKind, result: Written| Outcome {
            action: Action {
                kind,
                instance: keys[i].clone(),
                ephemeral: true,
                verdict: Verdict::Orphan,
                reason: String::new(),
                evidence_at: t(0),
                confirm: Confirm::None,
                replaces_deregister: false,
            },
            result,
        };
        k.record_writes(
            &[
                outcome(0, ActionKind::Deregister, Written::Done),
                outcome(
                    1,
                    ActionKind::Deregister,
                    Written::Ineffective {
                        disabled: true,
                        owner: None,
                    },
                ),
                outcome(
                    2,
                    ActionKind::Disable,
                    Written::Failed(WriteFailed::NotAsWritten("still enabled")),
                ),
                outcome(3, ActionKind::Disable, Written::Done),
            ],
            "uid-1",
        );
        let left = &k.listings[0].listing.as_ref().unwrap().instances;
        let state: Vec<(String, bool, Option<&str>)> = left
            .iter()
            .map(|i| (i.key.ip.to_string(), i.enabled, i.disabled_by()))
            .collect();
        assert_eq!(
            state,
            [
                ("10.0.0.2".into(), false, Some("uid-1")),
                ("10.0.0.3".into(), true, None),
                ("10.0.0.4".into(), false, Some("uid-1")),
            ]
        );
        assert!(
            k.known.contains(&"10.0.0.1".parse().unwrap()),
            "a removed instance's address stays known"
        );
        k.record_writes(&[outcome(3, ActionKind::Enable, Written::Done)], "uid-1");
        let i = &k.listings[0].listing.as_ref().unwrap().instances[2];
        assert!(i.enabled && i.disabled_by().is_none());
    }

    #[test]
    fn addresses_of_the_previous_full_pass_stay_known_for_one_more() {
        let first = kept(vec![listing("a", &["10.0.0.1", "10.0.0.2"])]);
        // The next full pass no longer lists .1 (removed meanwhile); .3 is new.
        let second = Kept::new(
            7,
            t(60),
            first.server.clone(),
            first.services.clone(),
            vec![listing("a", &["10.0.0.2", "10.0.0.3"])],
            Some(first),
        );
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert!(second.known.contains(&ip("10.0.0.1")));
        let third = Kept::new(
            7,
            t(120),
            second.server.clone(),
            second.services.clone(),
            vec![listing("a", &["10.0.0.3"])],
            Some(second),
        );
        assert!(
            !third.known.contains(&ip("10.0.0.1")),
            "one generation only"
        );
        assert!(third.known.contains(&ip("10.0.0.2")));
    }

    #[test]
    fn a_node_not_ready_since_the_listing_means_full() {
        let node = |ready: NodeReadiness, since: i64, seen: Option<i64>| NodeFacts {
            name: "n1".into(),
            readiness: ready,
            readiness_since: Some(t(since)),
            readiness_seen: seen.map(t),
            internal_ips: Vec::new(),
            pod_cidrs: Vec::new(),
        };
        let departure = |n: NodeFacts| node_departure(&[n], t(0));
        assert_eq!(departure(node(NodeReadiness::Ready, 10, Some(10))), None);
        assert_eq!(departure(node(NodeReadiness::Unknown, -10, None)), None);
        assert_eq!(
            departure(node(NodeReadiness::Unknown, 10, None)).as_deref(),
            Some("node n1 not Ready")
        );
        // Only the API server's whole-second time: looked for a little before the listing.
        assert!(departure(node(NodeReadiness::NotReady, -1, None)).is_some());
        // Seen going: by our clock, which the listing's start is on too.
        assert!(departure(node(NodeReadiness::NotReady, 0, Some(0))).is_some());
        assert!(departure(node(NodeReadiness::NotReady, 1, Some(1))).is_some());
        // Seen before the full pass started listing: that listing came after, and holds its
        // instances; the passes after it need not be full.
        assert_eq!(departure(node(NodeReadiness::NotReady, -1, Some(-1))), None);
        assert_eq!(departure(node(NodeReadiness::NotReady, 0, Some(-1))), None);
    }

    #[test]
    fn relists_what_a_write_is_planned_or_held_for_and_takes_the_new_listings_in() {
        let k = kept(vec![
            listing("a", &["10.0.0.1"]),
            listing("b", &["10.0.0.2"]),
            listing("c", &["10.0.0.3"]),
        ]);
        assert_eq!(
            k.known,
            HashSet::from([
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                "10.0.0.3".parse().unwrap()
            ])
        );
        let action = Action {
            kind: ActionKind::Deregister,
            instance: listing("b", &["10.0.0.2"]).listing.unwrap().instances[0]
                .key
                .clone(),
            ephemeral: true,
            verdict: Verdict::Orphan,
            reason: "pod gone".into(),
            evidence_at: t(0),
            confirm: Confirm::None,
            replaces_deregister: false,
        };
        let service = |name: &str| ServicePlan::empty(svc(name));
        let mut plan = Plan {
            services: vec![service("a"), service("b"), service("c")],
            frozen: false,
            dry_run: false,
            approval_consumed: false,
            memory: Default::default(),
        };
        plan.services[1].actions.push(action.clone());
        plan.services[2].held.push(action);
        assert_eq!(to_relist(&plan), BTreeSet::from([svc("b"), svc("c")]));

        let mut k = k;
        let merged = k.update(vec![listing("b", &[])]);
        let fresh: Vec<(String, bool)> = merged
            .iter()
            .map(|l| (l.service.name.clone(), l.fresh))
            .collect();
        assert_eq!(
            fresh,
            [("a".into(), false), ("b".into(), true), ("c".into(), false)]
        );
        assert_eq!(merged[1].listing.as_ref().unwrap().instances.len(), 0);
        assert_eq!(k.listings[1], merged[1], "kept up to date");
        assert!(k.listings.iter().all(|l| l.fresh), "kept as listed");
    }

    #[test]
    fn judges_again_only_what_may_have_changed_since_the_last_full_judgement() {
        let mut k = kept(vec![
            listing("a", &["10.0.0.1"]),
            listing("b", &["10.0.0.2"]),
            listing("c", &["10.0.0.3"]),
            listing("d", &["10.0.0.4"]),
        ]);
        let mut plan = Plan {
            services: ["a", "b", "c", "d"]
                .iter()
                .map(|n| ServicePlan::empty(svc(n)))
                .collect(),
            frozen: false,
            dry_run: false,
            approval_consumed: false,
            memory: Default::default(),
        };
        plan.services[1].counts.stale = 1;
        k.judged(5, &plan);
        assert_eq!(k.judged_at(), 5);
        let names = |v: Option<Vec<ServiceListing>>| {
            v.map(|v| v.iter().map(|l| l.service.name.clone()).collect::<Vec<_>>())
        };
        let mut memory = Memory::default();
        let d = k.listings[3].listing.as_ref().unwrap().instances[0]
            .key
            .clone();
        memory.record_disabled(&d);
        let changed = Changed::Ips(HashSet::from(["10.0.0.3".parse().unwrap()]));
        assert_eq!(
            names(k.suspects(&changed, &memory)),
            Some(vec!["b".into(), "c".into(), "d".into()]),
            "left stale, changed IP, remembered"
        );
        let nothing = Changed::Ips(HashSet::new());
        assert_eq!(
            names(k.suspects(&nothing, &Memory::default())),
            Some(vec!["b".into()])
        );
        assert_eq!(k.suspects(&Changed::All, &memory), None);
    }

    #[test]
    fn judges_what_is_fresh_suspect_or_not_carried_and_carries_the_rest() {
        let mut k = kept(vec![
            listing("a", &["10.0.0.1"]),
            listing("b", &["10.0.0.2"]),
            listing("c", &["10.0.0.3"]),
            listing("d", &["10.0.0.4"]),
        ]);
        let judged_whole = |live: usize| {
            let mut s = ServicePlan::empty(svc("x"));
            s.counts.total = live;
            s.counts.live = live;
            s
        };
        let plan_of = |names: &[&str]| Plan {
            services: names
                .iter()
                .map(|n| ServicePlan {
                    service: svc(n),
                    ..judged_whole(1)
                })
                .collect(),
            frozen: false,
            dry_run: false,
            approval_consumed: false,
            memory: Default::default(),
        };
        let mut whole = plan_of(&["a", "b", "c", "d"]);
        whole.services[1].counts.stale = 1;
        k.judged(5, &whole);
        assert_eq!(k.take_plans(), None, "not kept until the pass completes");
        k.keep_plans(whole.services.clone());
        let carried = k.take_plans().unwrap();
        assert_eq!(
            k.take_plans(),
            None,
            "taken: a pass cut short leaves nothing to carry"
        );

        // This pass relisted c; b was left stale; d is no longer carried (a new service).
        let listings = k.update(vec![listing("c", &["10.0.0.3"])]);
        let carried: Vec<ServicePlan> = carried
            .into_iter()
            .filter(|p| p.service != svc("d"))
            .collect();
        let nothing = Changed::Ips(HashSet::new());
        let names =
            |v: &[ServiceListing]| v.iter().map(|l| l.service.name.clone()).collect::<Vec<_>>();
        let some = k
            .to_judge(&listings, &carried, &nothing, &Memory::default())
            .unwrap();
        assert_eq!(names(&some), ["b", "c", "d"]);
        let changed = Changed::Ips(HashSet::from(["10.0.0.1".parse().unwrap()]));
        let all = k.to_judge(&listings, &carried, &changed, &Memory::default());
        assert_eq!(names(&all.unwrap()), ["a", "b", "c", "d"], "a's IP changed");
        assert_eq!(
            k.to_judge(&listings, &carried, &Changed::All, &Memory::default()),
            None
        );

        // The plan of b, c and d, completed with a's carried judgement, in key order.
        let mut plan = plan_of(&["d", "b", "c"]);
        plan.services[0].counts.live = 7;
        let mut carried = carried;
        carried.push(plan_of(&["e"]).services.remove(0));
        carry(&mut plan, carried, &listings);
        let got: Vec<(String, usize)> = plan
            .services
            .iter()
            .map(|s| (s.service.name.clone(), s.counts.live))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), 1),
                ("b".into(), 1),
                ("c".into(), 1),
                ("d".into(), 7)
            ],
            "judged anew where judged; a service no longer listed is not carried"
        );
    }
}
