//! Carries out a pass's plan in an execution that outlives the pass (see [`super::in_flight`]):
//! confirm (second signal), write, verify by reading back, and fall back from an ineffective
//! DELETE to `enabled=false`. Touches nothing the plan did not name.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use kube::ResourceExt;
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{debug, info, info_span, warn, Instrument};

use super::confirm::PodCheck;
use super::context::Context;
use super::in_flight::{EmptiedWarning, Execution, Finished, InFlight, Pending, WriteMark};
use super::outcome::{key, Outcome, Unconfirmed, WriteFailed, Written};
use super::stop::contain_panic;
use crate::cluster::PodScope;
use crate::crd::NacosBinding;
use crate::leader::ActingGate;
use crate::metrics::BindingLabels;
use crate::model::{Instance, MarkerOwner, ServiceKey, ServiceSnapshot};
use crate::nacos::{sole_publisher, NacosClient, Publisher, Registry};
use crate::plan::{Action, ActionKind, Change, Confirm, Plan};

/// Actions of an execution in flight at once. Each holds its place until its write is read back
/// (on Alibaba Nacos at least 600 ms, the server's settle time): with 64, 2,000 removals went 64 a
/// second whatever the write slots allowed (scale benchmark, 10,000 pods). The API server is not
/// asked more for it: its lookups by address are bounded in `confirm` (16 in flight, and one
/// listing answers for all when there are many to confirm); the watch cache is asked again right
/// before each write. Owner lookups and write requests have slots of their own, per binding
/// ([`InFlight`]).
const ACTIONS_IN_FLIGHT: usize = 512;

/// What an action's execution learnt for the memory, noted as it goes.
type Changes = std::sync::Mutex<Vec<Change>>;

fn remember(changes: &Changes, change: Change) {
    changes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(change);
}

/// One action with what its execution needs of the pass that planned it.
struct Work {
    action: Action,
    instance: Instance,
    /// Set when the plan found that its service's removals leave no usable instance.
    empties: Option<EmptiedWarning>,
}

/// What an execution takes from the pass that launched it.
struct Launched {
    binding: String,
    marker: String,
    scope: Option<PodScope>,
    work: Vec<Work>,
    writing: Arc<Semaphore>,
    asking: Arc<Semaphore>,
    execution: Execution,
    /// The server shows a write only after a settle time.
    settles: bool,
}

/// Hands the plan's actions to an execution that runs beside the passes that follow (see
/// [`super::in_flight`]); `None` when there are none. Their instances are in flight in `flight`
/// until each has ended. `settles`: the server shows a write only after a settle time.
pub fn launch(
    ctx: &Arc<Context>,
    b: &NacosBinding,
    nacos: Arc<NacosClient>,
    settles: bool,
    plan: &Plan,
    snapshots: &BTreeMap<ServiceKey, &ServiceSnapshot>,
    flight: &InFlight,
) -> Option<Pending> {
    let work: Vec<Work> = plan
        .services
        .iter()
        .flat_map(|s| {
            let empties = s.empties.then(EmptiedWarning::default);
            s.actions.iter().map(move |a| (a, empties.clone()))
        })
        .filter_map(|(action, empties)| {
            let instance = snapshots
                .get(&action.instance.service)
                .and_then(|s| s.instances.iter().find(|i| i.key == action.instance))?;
            Some(Work {
                action: action.clone(),
                instance: instance.clone(), // the planner only plans listed instances
                empties,
            })
        })
        .collect();
    if work.is_empty() {
        return None;
    }
    let (execution, pending) = flight.start(
        work.iter().map(|w| w.action.instance.clone()),
        ctx.nudge_for(b),
    );
    let binding = key(b);
    let uid = b.uid().unwrap_or_default();
    let launched = Launched {
        marker: MarkerOwner {
            uid: &uid,
            binding: &binding,
        }
        .marker(),
        binding,
        scope: PodScope::new(
            &b.namespace().unwrap_or_default(),
            &b.spec.pods.selector,
            &b.spec.pods.namespaces,
        )
        .ok(),
        execution,
        settles,
        work,
        writing: flight.writing.clone(),
        asking: flight.asking.clone(),
    };
    let span = info_span!("execution", binding = %launched.binding, actions = launched.work.len());
    let ctx = ctx.clone();
    tokio::spawn(
        async move {
            // A panic is logged; the execution dropped lets its instances go.
            let _ = contain_panic(async {
                execute(&ctx, &nacos, &launched).await;
                Ok(())
            })
            .await;
        }
        .instrument(span),
    );
    Some(pending)
}

/// Runs every action of `launched`, [`ACTIONS_IN_FLIGHT`] at once, each reported to the binding's
/// next pass as it ends.
async fn execute(ctx: &Context, nacos: &NacosClient, launched: &Launched) {
    // The API server checks (read-only, and with 10,000 pods the slow part) overlap; the writes
    // queue for a slot, first come first served.
    let to_confirm = launched.work.iter().filter_map(|w| match w.action.confirm {
        Confirm::NoLivePodWithIp(ip) => Some(ip),
        Confirm::None => None,
    });
    let check = PodCheck::new(
        ctx.client.clone(),
        &ctx.view,
        launched.scope.as_ref(),
        to_confirm,
    );
    let pass = Pass {
        check: &check,
        gate: &ctx.acting_allowed,
        writing: &launched.writing,
        asking: &launched.asking,
    };
    let pass = &pass;
    // Each action's future is made when its turn comes (one is kilobytes: made up front, 2,000
    // removals held megabytes), from an index: a closure over borrowed items is not `Send` enough
    // for a spawned future.
    futures::stream::iter(0..launched.work.len())
        .for_each_concurrent(ACTIONS_IN_FLIGHT, |i| async move {
            let Work {
                action,
                instance,
                empties,
            } = &launched.work[i];
            let changes = Changes::default();
            let mark = launched.execution.write_mark(launched.settles);
            let marker = &launched.marker;
            let result = act(pass, nacos, marker, action, instance, &changes, Some(&mark)).await;
            let outcome = record(ctx, &launched.binding, action, result);
            launched.execution.finish(Finished {
                outcome,
                instance: instance.clone(),
                changes: changes.into_inner().unwrap_or_else(|p| p.into_inner()),
                empties: empties.clone(),
            });
            // After `finish`: a pass waiting for it finds the action ended.
            drop(mark);
        })
        .await;
}

/// What the actions of one execution share.
struct Pass<'a> {
    check: &'a PodCheck<'a>,
    gate: &'a ActingGate,
    /// The binding's write request slots.
    writing: &'a Semaphore,
    /// The binding's owner lookup slots.
    asking: &'a Semaphore,
}

/// One action: the second signal, then the write, each write request in a slot with the
/// leadership and the watch cache asked again right before it; then the verification.
async fn act(
    pass: &Pass<'_>,
    nacos: &impl Registry,
    marker: &str,
    action: &Action,
    instance: &Instance,
    changes: &Changes,
    mark: Option<&WriteMark<'_>>,
) -> Written {
    let ip = match action.confirm {
        Confirm::NoLivePodWithIp(ip) => Some(ip),
        Confirm::None => None,
    };
    let confirmed = match ip {
        Some(ip) => pass.check.api_server(ip).await,
        None => Ok(()),
    };
    let result = match confirmed {
        Err(why) => Written::NotConfirmed(why),
        Ok(()) => {
            let writes = Writes {
                writing: pass.writing,
                mark,
                asking: pass.asking,
                gate: pass.gate,
                cache: ip.map(|ip| (pass.check, ip)),
            };
            let written = apply(nacos, marker, action, instance, changes, &writes).await;
            // Only the Event waits on it.
            described(nacos, written).await
        }
    };
    if action.kind == ActionKind::Deregister && matches!(result, Written::NotConfirmed(_)) {
        // Nothing was sent: the instance listed again next time is no re-appearance (which
        // would turn the next attempt into a Disable).
        remember(changes, Change::DeregistrationNotSent(instance.key.clone()));
    }
    result
}

/// A write request's slot; dropped once the request is answered, which `mark` learns.
struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
    mark: Option<&'a WriteMark<'a>>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(mark) = self.mark {
            mark.answered();
        }
    }
}

/// Where an action's write requests get their slot, and what is asked again right before each.
struct Writes<'a> {
    /// The binding's write request slots.
    writing: &'a Semaphore,
    /// Told when a write request is answered (the launching pass waits for that).
    mark: Option<&'a WriteMark<'a>>,
    /// The binding's owner lookup slots: the one before a deregistration gets its slot there.
    asking: &'a Semaphore,
    gate: &'a ActingGate,
    /// The address the second signal confirmed free, asked of the watch cache again.
    cache: Option<(&'a PodCheck<'a>, IpAddr)>,
}

impl Writes<'_> {
    /// A slot for one write request, once the leadership (a leader whose Lease renewals stopped
    /// answering must not go on writing) and the watch cache allow it. Dropped once the request is
    /// answered: a read-back waits without one.
    async fn slot(&self) -> Result<Slot<'_>, Unconfirmed> {
        // Never closed: a slot always comes.
        let permit = self
            .writing
            .acquire()
            .await
            .map_err(|_| Unconfirmed::NotLeading)?;
        if !self.gate.allowed() {
            return Err(Unconfirmed::NotLeading);
        }
        if let Some((check, ip)) = self.cache {
            check.cache(ip)?;
        }
        Ok(Slot {
            _permit: permit,
            mark: self.mark,
        })
    }
}

/// Counts, times and logs one action's result.
fn record(ctx: &Context, binding: &str, action: &Action, result: Written) -> Outcome {
    let label = action.kind.verb();
    let result_label = match &result {
        Written::Done => "success",
        Written::Ineffective { .. } => "ineffective",
        Written::NotConfirmed(_) => "not_confirmed",
        Written::Failed(_) => "failed",
    };
    ctx.metrics.count_action(binding, label, result_label);
    let outcome = Outcome {
        action: action.clone(),
        result,
    };
    if outcome.took_offline() {
        let latency = (Utc::now() - action.evidence_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        ctx.metrics
            .removal_latency
            .get_or_create(&BindingLabels {
                binding: binding.to_string(),
            })
            .observe(latency);
    }
    // binding, service and instance are fields of the event itself (not only of the span):
    // log pipelines index top-level JSON fields, and one line must say what was done to what.
    let key = &action.instance;
    let address = instance_address(key);
    let why = match &outcome.result {
        Written::Done | Written::Ineffective { .. } => None,
        Written::NotConfirmed(why) => Some(why.to_string()),
        Written::Failed(why) => Some(why.to_string()),
    };
    match why {
        None => info!(
            binding = %binding,
            service = %key.service,
            instance = %address,
            cluster = %key.cluster,
            action = label,
            result = result_label,
            reason = %action.reason,
            "applied"
        ),
        Some(why) => warn!(
            binding = %binding,
            service = %key.service,
            instance = %address,
            cluster = %key.cluster,
            action = label,
            result = result_label,
            %why,
            "not applied"
        ),
    }
    outcome
}

/// `ip:port` (`[ip]:port` for IPv6), the form Events and status use.
fn instance_address(key: &crate::model::InstanceKey) -> String {
    std::net::SocketAddr::new(key.ip, key.port).to_string()
}

async fn apply(
    nacos: &impl Registry,
    marker: &str,
    action: &Action,
    instance: &Instance,
    changes: &Changes,
    writes: &Writes<'_>,
) -> Written {
    // Who keeps the instance is asked before the slot, which is for the write request alone.
    let owner = match action.kind {
        ActionKind::Deregister => {
            // Never closed: a slot always comes.
            let _asking = writes.asking.acquire().await.ok();
            keeper(nacos, instance).await
        }
        ActionKind::Disable | ActionKind::Enable => None,
    };
    let slot = match writes.slot().await {
        Ok(slot) => slot,
        Err(why) => return Written::NotConfirmed(why),
    };
    match action.kind {
        ActionKind::Deregister => {
            if let Some(owner) = owner {
                // Nacos ends what a gRPC connection keeps only with the connection: a DELETE
                // would be answered ok and change nothing; what beats keep, the next beat
                // registers again. Not sent; disabling is what works.
                remember(changes, Change::DeregistrationNotSent(instance.key.clone()));
                return disable_instead(nacos, marker, instance, changes, Some(owner), Ok(slot))
                    .await;
            }
            let sent = nacos.deregister(instance).await;
            drop(slot);
            if let Err(e) = sent {
                remember(changes, Change::DeregistrationNotSent(instance.key.clone()));
                return Written::Failed(WriteFailed::request(e));
            }
            // Decided on a listing the server refreshed after the DELETE: right after it, Nacos
            // 2.x/3.x still list an instance they did remove.
            match nacos.read_back(instance, |seen| seen.is_none()).await {
                Ok(None) => Written::Done,
                // Answered `ok`, still listed: a live gRPC owner the server did not name, or a
                // 1.x client re-registering. Disabling is what takes it away from consumers.
                Ok(Some(still)) => {
                    let slot = writes.slot().await;
                    disable_instead(nacos, marker, &still, changes, None, slot).await
                }
                Err(e) => Written::Failed(WriteFailed::read_back("deregistration", e)),
            }
        }
        ActionKind::Disable => match disable(nacos, marker, instance, slot).await {
            Ok(()) => {
                remember(changes, Change::Disabled(instance.key.clone()));
                Written::Done
            }
            Err(e) => Written::Failed(e),
        },
        ActionKind::Enable => {
            let sent = nacos.enable(instance).await;
            drop(slot);
            if let Err(e) = sent {
                return Written::Failed(WriteFailed::request(e));
            }
            match nacos
                .read_back(instance, |seen| seen.is_some_and(|i| i.enabled))
                .await
            {
                Ok(Some(i)) if i.enabled => {
                    remember(changes, Change::Enabled(instance.key.clone()));
                    Written::Done
                }
                Ok(_) => Written::Failed(WriteFailed::NotAsWritten("not enabled")),
                Err(e) => Written::Failed(WriteFailed::read_back("enable", e)),
            }
        }
    }
}

/// The client that alone keeps `instance` registered (a gRPC connection, or beats over HTTP),
/// where the server names it. Asking is only an optimisation: whatever goes wrong, the DELETE and
/// its read-back (and, for beats, the re-registration) find out the slow way.
async fn keeper(nacos: &impl Registry, instance: &Instance) -> Option<Publisher> {
    match nacos.publishers(instance).await {
        Ok(publishers) => sole_publisher(&publishers).cloned(),
        Err(e) => {
            debug!(instance = %instance.key, error = %e, "publishers not known");
            None
        }
    }
}

/// The owner a result names, with what its client reports of itself (its SDK, its own address),
/// for the Event: asked once the instance is offline and its write slot free, as only the Event
/// waits on it (and only the member the client is connected to answers).
async fn described(nacos: &impl Registry, mut written: Written) -> Written {
    if let Written::Ineffective {
        owner: Some(Publisher::Connection(owner)),
        ..
    } = &mut written
    {
        owner.detail = nacos.client_detail(owner).await.ok();
    }
    written
}

/// A deregistration that cannot (or did not) take: the instance is disabled instead, in `slot`
/// (refused: not disabled).
async fn disable_instead(
    nacos: &impl Registry,
    marker: &str,
    instance: &Instance,
    changes: &Changes,
    owner: Option<Publisher>,
    slot: Result<Slot<'_>, Unconfirmed>,
) -> Written {
    remember(changes, Change::Ineffective(instance.key.clone()));
    let disabled = match slot {
        Ok(slot) => disable(nacos, marker, instance, slot).await.is_ok(),
        Err(why) => {
            warn!(instance = %instance.key, %why, "not disabled");
            false
        }
    };
    if disabled {
        remember(changes, Change::Disabled(instance.key.clone()));
    }
    Written::Ineffective { disabled, owner }
}

/// `enabled=false` with our marker, sent in `slot`, verified by reading the instance back.
async fn disable(
    nacos: &impl Registry,
    marker: &str,
    instance: &Instance,
    slot: Slot<'_>,
) -> Result<(), WriteFailed> {
    let sent = nacos.disable(instance, marker).await;
    drop(slot);
    sent.map_err(WriteFailed::request)?;
    match nacos
        .read_back(instance, |seen| seen.is_none_or(|i| !i.enabled))
        .await
    {
        Ok(Some(i)) if !i.enabled => Ok(()),
        Ok(Some(_)) => Err(WriteFailed::NotAsWritten("still enabled")),
        // Gone by itself in the meantime: offline all the same.
        Ok(None) => Ok(()),
        Err(e) => Err(WriteFailed::read_back("disable", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake_api::{api_pod, scope, view, FakeApiServer};
    use super::*;
    use crate::model::{InstanceKey, DISABLED_BY_KEY};
    use crate::nacos::fake::{Behaviour, FakeRegistry};
    use crate::plan::{Memory, Verdict};
    use k8s_openapi::api::core::v1::Pod;

    const MARKER: &str = "uid-1 shop/orders";

    fn instance(enabled: bool) -> Instance {
        let mut metadata = BTreeMap::from([("app".to_string(), "orders".to_string())]);
        if !enabled {
            metadata.insert(DISABLED_BY_KEY.into(), MARKER.into());
        }
        Instance {
            enabled,
            metadata,
            ..Instance::of_orders("10.0.0.1")
        }
    }

    fn action(kind: ActionKind) -> Action {
        Action {
            kind,
            instance: instance(true).key,
            ephemeral: true,
            verdict: Verdict::Orphan,
            reason: "pod shop/orders-1 deleted 3s ago".into(),
            evidence_at: Utc::now(),
            confirm: Confirm::None,
            replaces_deregister: false,
        }
    }

    /// Runs `apply` of a `kind` on the instance held by a registry behaving so; the memory as
    /// the planner leaves it for that action (a Deregister is recorded when planned).
    async fn run(kind: ActionKind, behaviour: Behaviour, held: Option<Instance>) -> Run {
        let target = held.clone().unwrap_or_else(|| instance(true));
        let nacos = FakeRegistry::with(behaviour, held);
        let mut memory = Memory::default();
        if kind == ActionKind::Deregister {
            memory.record_deregistration(&target.key, Utc::now());
        }
        let changes = Changes::default();
        // As `act` does, past the second signal: the write, then the owner's detail.
        let written = applied(&nacos, &action(kind), &target, &changes).await;
        let result = described(&nacos, written).await;
        taken_in(&mut memory, changes);
        Run {
            result,
            after: nacos.get(&target.key),
            writes: nacos.writes(),
            memory,
        }
    }

    /// `apply` with write slots that are always granted (leading, no address to ask the cache).
    async fn applied(
        nacos: &FakeRegistry,
        action: &Action,
        instance: &Instance,
        memory: &Changes,
    ) -> Written {
        let (writing, asking) = (Semaphore::new(4), Semaphore::new(1));
        let gate = ActingGate::always();
        let writes = Writes {
            writing: &writing,
            mark: None,
            asking: &asking,
            gate: &gate,
            cache: None,
        };
        apply(nacos, MARKER, action, instance, memory, &writes).await
    }

    /// The memory as the next pass leaves it, having taken in what an execution noted.
    fn taken_in(memory: &mut Memory, changes: Changes) {
        for change in changes.into_inner().unwrap() {
            memory.apply(&change);
        }
    }

    struct Run {
        result: Written,
        after: Option<Instance>,
        writes: Vec<String>,
        memory: Memory,
    }

    fn key() -> InstanceKey {
        instance(true).key
    }

    /// An Orphan's Deregister: its pod gone, to be confirmed by address before the write.
    fn orphan_removal() -> Action {
        let mut a = action(ActionKind::Deregister);
        a.confirm = Confirm::NoLivePodWithIp(key().ip);
        a
    }

    struct Acted {
        result: Written,
        writes: Vec<String>,
        memory: Memory,
    }

    /// One step of `orphan_removal` with the API server holding `api_pods`, the watch cache
    /// `cache_pods` at write time, and the leadership `gate`.
    async fn act(api_pods: Vec<Pod>, cache_pods: &[Pod], gate: ActingGate) -> Acted {
        let (client, _) = FakeApiServer::with(api_pods).start().await;
        let view = view(&[], cache_pods);
        let scope = scope();
        let check = PodCheck::new(client, &view, Some(&scope), [key().ip]);
        let nacos = FakeRegistry::with(Behaviour::default(), [instance(true)]);
        let mut memory = Memory::default();
        memory.record_deregistration(&key(), Utc::now());
        let (writing, asking) = (Semaphore::new(1), Semaphore::new(1));
        let pass = Pass {
            check: &check,
            gate: &gate,
            writing: &writing,
            asking: &asking,
        };
        let changes = Changes::default();
        let result = super::act(
            &pass,
            &nacos,
            MARKER,
            &orphan_removal(),
            &instance(true),
            &changes,
            None,
        )
        .await;
        taken_in(&mut memory, changes);
        Acted {
            result,
            writes: nacos.writes(),
            memory,
        }
    }

    fn not_sent(a: &Acted, why: &str) {
        assert!(
            matches!(&a.result, Written::NotConfirmed(w) if w.to_string().contains(why)),
            "{:?}",
            a.result
        );
        assert!(a.writes.is_empty(), "{:?}", a.writes);
        // Nothing sent: the instance listed next time is no re-appearance.
        assert!(!a.memory.deregistered.contains_key(&key()));
    }

    #[tokio::test]
    async fn a_removal_the_api_server_contradicts_sends_nothing() {
        let live = api_pod("orders-2", "orders", &["10.0.0.1"]);
        let a = act(vec![live], &[], ActingGate::always()).await;
        not_sent(&a, "the API server still has pod shop/orders-2 on 10.0.0.1");
    }

    #[tokio::test]
    async fn a_removal_the_watch_cache_contradicts_at_write_time_sends_nothing() {
        let live = api_pod("orders-2", "orders", &["10.0.0.1"]);
        let a = act(vec![], &[live], ActingGate::always()).await;
        not_sent(&a, "pod shop/orders-2 has 10.0.0.1 now");
    }

    #[tokio::test]
    async fn a_replica_that_may_not_act_sends_nothing() {
        let a = act(vec![], &[], ActingGate::standby()).await;
        not_sent(&a, "no longer the settled leader");
    }

    #[tokio::test]
    async fn a_removal_nothing_contradicts_is_written() {
        // A pod of another app on the address is no evidence of life for this binding.
        let other = api_pod("billing-1", "billing", &["10.0.0.1"]);
        let a = act(vec![other], &[], ActingGate::always()).await;
        assert!(matches!(a.result, Written::Done), "{:?}", a.result);
        assert_eq!(a.writes, ["deregister 10.0.0.1:8080"]);
    }

    #[tokio::test]
    async fn a_deregistration_that_took_is_done_and_stays_remembered_for_a_re_registration() {
        let r = run(
            ActionKind::Deregister,
            Behaviour::default(),
            Some(instance(true)),
        )
        .await;
        assert!(matches!(r.result, Written::Done), "{:?}", r.result);
        assert_eq!(r.writes, ["deregister 10.0.0.1:8080"]);
        assert_eq!(r.after, None);
        // A 1.x client that registers it again seconds later is caught by the next pass: the
        // deregistration is still on record, so its re-appearance turns into a Disable.
        let window = chrono::TimeDelta::seconds(300);
        assert!(r.memory.deregister_ineffective(&key(), Utc::now(), window));
        assert!(!r.memory.ineffective.contains(&key()));
    }

    /// The gRPC owner's case (Nacos 2.x/3.x), or a client that registered it again before the
    /// read-back: the DELETE is answered `ok` and the instance is still listed.
    #[tokio::test]
    async fn a_delete_answered_ok_that_did_nothing_falls_back_to_disabling() {
        let ignored = Behaviour {
            deletes_ignored: true,
            ..Behaviour::default()
        };
        let r = run(ActionKind::Deregister, ignored, Some(instance(true))).await;
        assert!(
            matches!(r.result, Written::Ineffective { disabled: true, .. }),
            "{:?}",
            r.result
        );
        assert_eq!(
            r.writes,
            [
                "deregister 10.0.0.1:8080",
                &format!("disable 10.0.0.1:8080 by {MARKER}")
            ]
        );
        let after = r.after.expect("still listed");
        assert!(!after.enabled);
        assert_eq!(after.disabled_by(), Some("uid-1"));
        assert!(r.memory.ineffective.contains(&key()));
        assert!(r.memory.disabled.contains_key(&key()));
    }

    /// Where the server names the gRPC connection that keeps the instance, the DELETE it would
    /// ignore is not sent: disabled at once, and the owner goes on to the Event.
    #[tokio::test]
    async fn an_instance_a_named_connection_keeps_is_disabled_without_a_delete() {
        let owned = Behaviour {
            deletes_ignored: true,
            connection_owned: true,
            ..Behaviour::default()
        };
        let r = run(ActionKind::Deregister, owned, Some(instance(true))).await;
        let Written::Ineffective {
            disabled: true,
            owner: Some(Publisher::Connection(owner)),
        } = &r.result
        else {
            panic!("{:?}", r.result)
        };
        assert_eq!(owner.id, crate::nacos::fake::OWNER_ID);
        assert_eq!(r.writes, [format!("disable 10.0.0.1:8080 by {MARKER}")]);
        assert!(!r.after.expect("still listed").enabled);
        assert!(r.memory.ineffective.contains(&key()));
        assert!(r.memory.disabled.contains_key(&key()));
        // No DELETE went out: none is on record as one that may come back.
        assert!(!r.memory.deregistered.contains_key(&key()));
        // The Event says who keeps it, and where that process connects from.
        let note = |result: Written| {
            let o = Outcome {
                action: action(ActionKind::Deregister),
                result,
            };
            super::super::events::outcome_event(&o)
                .0
                .note
                .unwrap_or_default()
        };
        let named = note(r.result.clone());
        assert!(
            named.contains(
                "a gRPC connection keeps it registered (client 10.1.0.99:49866 (reports itself \
                 as 10.1.0.99, Nacos-Java-Client:v2.5.1), connected since 2026-12-06T"
            ) && named.contains("disabled it instead (enabled=false)"),
            "{named}"
        );
        let unnamed = note(Written::Ineffective {
            disabled: true,
            owner: None,
        });
        assert!(
            unnamed.contains("Nacos answered ok to the deregistration"),
            "{unnamed}"
        );
    }

    /// An instance the server says an HTTP registration keeps (a 1.x client's beats): a DELETE
    /// would take until the next beat registered it again; disabled at once instead, and the Event
    /// says what keeps it.
    #[tokio::test]
    async fn an_instance_beats_keep_is_disabled_without_a_delete() {
        let beating = Behaviour {
            beats_owned: true,
            ..Behaviour::default()
        };
        let r = run(ActionKind::Deregister, beating, Some(instance(true))).await;
        let Written::Ineffective {
            disabled: true,
            owner: Some(Publisher::Http(id)),
        } = &r.result
        else {
            panic!("{:?}", r.result)
        };
        assert_eq!(id, "10.0.0.1:8080#true");
        assert_eq!(r.writes, [format!("disable 10.0.0.1:8080 by {MARKER}")]);
        assert!(r.memory.disabled.contains_key(&key()));
        assert!(!r.memory.deregistered.contains_key(&key()));
        let o = Outcome {
            action: action(ActionKind::Deregister),
            result: r.result.clone(),
        };
        let note = super::super::events::outcome_event(&o)
            .0
            .note
            .unwrap_or_default();
        assert!(
            note.contains("registered over HTTP as ephemeral (client 10.0.0.1:8080#true)")
                && note.contains("disabled it instead (enabled=false)"),
            "{note}"
        );
    }

    /// A user the server does not let read the publisher list: the DELETE and its read-back find
    /// the owner out, as on servers that do not tell.
    #[tokio::test]
    async fn a_refused_publisher_list_falls_back_to_the_delete_and_its_read_back() {
        let refused = Behaviour {
            deletes_ignored: true,
            connection_owned: true,
            publishers_refused: true,
            ..Behaviour::default()
        };
        let r = run(ActionKind::Deregister, refused, Some(instance(true))).await;
        assert!(
            matches!(
                r.result,
                Written::Ineffective {
                    disabled: true,
                    owner: None
                }
            ),
            "{:?}",
            r.result
        );
        assert_eq!(
            r.writes,
            [
                "deregister 10.0.0.1:8080",
                &format!("disable 10.0.0.1:8080 by {MARKER}")
            ]
        );
    }

    #[tokio::test]
    async fn a_fallback_that_fails_is_reported_as_not_disabled() {
        let refused = Behaviour {
            deletes_ignored: true,
            disables_refused: true,
            ..Behaviour::default()
        };
        let r = run(ActionKind::Deregister, refused, Some(instance(true))).await;
        assert!(
            matches!(
                r.result,
                Written::Ineffective {
                    disabled: false,
                    ..
                }
            ),
            "{:?}",
            r.result
        );
        assert!(r.after.expect("still listed").enabled);
        // Next time it is a Disable straight away.
        assert!(r.memory.ineffective.contains(&key()));
        assert!(!r.memory.disabled.contains_key(&key()));
    }

    /// A timeout after the DELETE was sent: nothing is assumed (no fallback), and the
    /// deregistration is forgotten, so its instance listed next time is no re-appearance.
    #[tokio::test]
    async fn a_delete_whose_answer_is_lost_assumes_nothing() {
        let lost = Behaviour {
            answers_lost: true,
            ..Behaviour::default()
        };
        let r = run(ActionKind::Deregister, lost, Some(instance(true))).await;
        assert!(
            matches!(&r.result, Written::Failed(why) if why.to_string().contains("timed out")),
            "{:?}",
            r.result
        );
        assert_eq!(r.writes, ["deregister 10.0.0.1:8080"]);
        assert!(!r.memory.deregistered.contains_key(&key()));
        assert!(!r.memory.ineffective.contains(&key()));
    }

    #[tokio::test]
    async fn a_failed_read_back_assumes_nothing() {
        let blind = Behaviour {
            reads_fail: true,
            ..Behaviour::default()
        };
        let r = run(ActionKind::Deregister, blind, Some(instance(true))).await;
        assert!(
            matches!(&r.result, Written::Failed(why) if why.to_string().starts_with("verifying the deregistration")),
            "{:?}",
            r.result
        );
        assert!(!r.memory.ineffective.contains(&key()));
        assert!(!r.memory.disabled.contains_key(&key()));
        // A Disable whose read-back fails is not counted as done either.
        let r = run(ActionKind::Disable, blind, Some(instance(true))).await;
        assert!(
            matches!(&r.result, Written::Failed(why) if why.to_string().starts_with("verifying the disable")),
            "{:?}",
            r.result
        );
        assert!(!r.memory.disabled.contains_key(&key()));
    }

    #[tokio::test]
    async fn a_disable_is_marked_verified_and_remembered() {
        let r = run(
            ActionKind::Disable,
            Behaviour::default(),
            Some(instance(true)),
        )
        .await;
        assert!(matches!(r.result, Written::Done), "{:?}", r.result);
        assert_eq!(r.writes, [format!("disable 10.0.0.1:8080 by {MARKER}")]);
        let after = r.after.expect("still listed");
        assert!(!after.enabled && after.disabled_by() == Some("uid-1"));
        assert_eq!(
            after.metadata.get("app").map(String::as_str),
            Some("orders")
        );
        assert!(r.memory.disabled.contains_key(&key()));
    }

    #[tokio::test]
    async fn a_write_to_an_instance_gone_before_it_fails_and_records_nothing() {
        let r = run(ActionKind::Disable, Behaviour::default(), None).await;
        assert!(
            matches!(&r.result, Written::Failed(why) if why.to_string().contains("not found")),
            "{:?}",
            r.result
        );
        assert!(r.memory.disabled.is_empty());
        let r = run(ActionKind::Enable, Behaviour::default(), None).await;
        assert!(matches!(&r.result, Written::Failed(_)), "{:?}", r.result);
    }

    #[tokio::test]
    async fn an_enable_is_verified_and_forgets_the_instance_was_ours() {
        let r = run(
            ActionKind::Enable,
            Behaviour::default(),
            Some(instance(false)),
        )
        .await;
        assert!(matches!(r.result, Written::Done), "{:?}", r.result);
        let after = r.after.expect("listed");
        assert!(after.enabled && after.disabled_by().is_none());
        assert!(!r.memory.disabled.contains_key(&key()));
        // Answered `ok` and still disabled: a failure, nothing forgotten.
        let ignored = Behaviour {
            enables_ignored: true,
            ..Behaviour::default()
        };
        let nacos = FakeRegistry::with(ignored, [instance(false)]);
        let mut memory = Memory::default();
        memory.record_disabled(&key());
        let changes = Changes::default();
        let result = applied(
            &nacos,
            &action(ActionKind::Enable),
            &instance(false),
            &changes,
        )
        .await;
        taken_in(&mut memory, changes);
        assert!(
            matches!(
                &result,
                Written::Failed(WriteFailed::NotAsWritten("not enabled"))
            ),
            "{result:?}"
        );
        assert!(memory.disabled.contains_key(&key()));
    }
}
