//! Applies a plan to Nacos: confirm (second signal), write, verify by reading back, and fall back
//! from an ineffective DELETE to `enabled=false`. Touches nothing the plan did not name.

use std::collections::BTreeMap;

use chrono::Utc;
use futures::StreamExt;
use kube::ResourceExt;
use tracing::{info, warn};

use super::confirm::PodCheck;
use super::Context;
use crate::cluster::PodScope;
use crate::crd::NacosBinding;
use crate::metrics::BindingLabels;
use crate::model::{Instance, ServiceKey, ServiceSnapshot};
use crate::nacos::NacosClient;
use crate::plan::{Action, ActionKind, Confirm, Memory, Plan};

/// What became of one planned action.
#[derive(Debug, Clone, PartialEq)]
pub enum Result {
    /// Written and seen to take.
    Done,
    /// A DELETE Nacos answered but did not apply; `disabled` says whether the fallback took.
    Ineffective { disabled: bool },
    /// The second signal contradicted the cache: nothing was written.
    NotConfirmed(String),
    /// The write or its verification failed: nothing is assumed.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    pub result: Result,
}

impl Outcome {
    /// Taken offline, by the planned action or by the fallback.
    pub fn took_offline(&self) -> bool {
        self.action.kind.is_removal()
            && matches!(
                self.result,
                Result::Done | Result::Ineffective { disabled: true }
            )
    }
}

/// Actions whose second-signal check may run at once, ahead of the writes. A check is one GET to
/// the API server, which answers slowly while it is busy (a mass deletion): with 16, the checks held
/// 2,000 removals back by seconds. A check a few writes old is fine: the watch cache is asked again
/// right before each write.
const CHECKS_AHEAD: usize = 64;

/// Writes (each with its read-back) in flight at once. A pass cut short (operator killed, Nacos gone,
/// leadership lost) leaves at most this many writes whose outcome nobody read back; each was
/// confirmed and counted against the budget before it went out, and the next pass lists the service
/// again, so a write in doubt is done at most once more, never wrongly (tests/e2e_faults.rs).
/// One at a time, 2,000 removals took 8 s of DELETE and read-back.
const WRITES_IN_FLIGHT: usize = 4;

/// The pass's memory, shared by the actions in flight; locked only for short, synchronous updates.
type SharedMemory<'a> = std::sync::Mutex<&'a mut Memory>;

fn remember(memory: &SharedMemory<'_>, update: impl FnOnce(&mut Memory)) {
    let mut guard = memory
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    update(&mut guard);
}

pub async fn execute(
    ctx: &Context,
    b: &NacosBinding,
    marker: &str,
    nacos: &NacosClient,
    plan: &Plan,
    snapshots: &BTreeMap<ServiceKey, &ServiceSnapshot>,
    memory: &mut Memory,
) -> Vec<Outcome> {
    let binding = super::reconcile::key(b);
    let scope = PodScope::new(
        &b.namespace().unwrap_or_default(),
        &b.spec.pods.selector,
        &b.spec.pods.namespaces,
    )
    .ok();
    let memory: SharedMemory<'_> = std::sync::Mutex::new(memory);
    // The planner plans at most one action per instance, so actions in flight never touch the same
    // instance; `buffered` keeps the outcomes in the plan's order.
    let work: Vec<(&Action, &Instance)> = plan
        .actions()
        .filter_map(|action| {
            let instance = snapshots
                .get(&action.instance.service)
                .and_then(|s| s.instances.iter().find(|i| i.key == action.instance))?;
            Some((action, instance)) // the planner only plans listed instances
        })
        .collect();
    // Futures built up front (they do nothing until polled): a stream of closures over borrowed
    // items is not `Send` enough for the controller's future.
    // The API server checks (read-only, and with 10,000 pods the slow part) overlap; the writes
    // queue for a slot, first come first served.
    let writing = tokio::sync::Semaphore::new(WRITES_IN_FLIGHT);
    let to_confirm = work.iter().filter_map(|(a, _)| match a.confirm {
        Confirm::NoLivePodWithIp(ip) => Some(ip),
        Confirm::None => None,
    });
    let check = PodCheck::new(ctx.client.clone(), &ctx.view, scope.as_ref(), to_confirm);
    let (check, memory, binding, writing) = (&check, &memory, &binding, &writing);
    let actions: Vec<_> = work
        .into_iter()
        .map(|(action, instance)| async move {
            let ip = match action.confirm {
                Confirm::NoLivePodWithIp(ip) => Some(ip),
                Confirm::None => None,
            };
            let confirmed = match ip {
                Some(ip) => check.api_server(ip).await,
                None => Ok(()),
            };
            let result = match confirmed {
                Err(why) => Result::NotConfirmed(why),
                Ok(()) => {
                    // Never closed, so a slot always comes.
                    let _slot = writing.acquire().await;
                    // The leadership, checked again right before the write: a leader whose
                    // Lease renewals stopped answering must not go on writing.
                    let leading = if ctx.acting_allowed() {
                        Ok(())
                    } else {
                        Err("no longer the settled leader with a fresh Lease".to_string())
                    };
                    match leading.and_then(|()| ip.map_or(Ok(()), |ip| check.cache(ip))) {
                        Err(why) => Result::NotConfirmed(why),
                        Ok(()) => apply(nacos, marker, action, instance, memory).await,
                    }
                }
            };
            if action.kind == ActionKind::Deregister && matches!(result, Result::NotConfirmed(_)) {
                // Nothing was sent: the instance listed again next time is no re-appearance
                // (which would turn the next attempt into a Disable).
                remember(memory, |m| m.forget_deregistration(&instance.key));
            }
            record(ctx, binding, action, result)
        })
        .collect();
    futures::stream::iter(actions)
        .buffered(CHECKS_AHEAD)
        .collect()
        .await
}

/// Counts, times and logs one action's result.
fn record(ctx: &Context, binding: &str, action: &Action, result: Result) -> Outcome {
    let label = match action.kind {
        ActionKind::Deregister => "deregister",
        ActionKind::Disable => "disable",
        ActionKind::Enable => "enable",
    };
    let result_label = match &result {
        Result::Done => "success",
        Result::Ineffective { .. } => "ineffective",
        Result::NotConfirmed(_) => "not_confirmed",
        Result::Failed(_) => "failed",
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
    match &outcome.result {
        Result::Done | Result::Ineffective { .. } => info!(
            binding = %binding,
            service = %key.service,
            instance = %address,
            cluster = %key.cluster,
            action = label,
            result = result_label,
            reason = %action.reason,
            "applied"
        ),
        Result::NotConfirmed(why) | Result::Failed(why) => warn!(
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
    nacos: &NacosClient,
    marker: &str,
    action: &Action,
    instance: &Instance,
    memory: &SharedMemory<'_>,
) -> Result {
    match action.kind {
        ActionKind::Deregister => {
            if let Err(e) = nacos.deregister(instance).await {
                remember(memory, |m| m.forget_deregistration(&instance.key));
                return Result::Failed(e.to_string());
            }
            // Decided on a listing the server refreshed after the DELETE: right after it, Nacos
            // 2.x/3.x still list an instance they did remove.
            match nacos.read_back(instance, |seen| seen.is_none()).await {
                Ok(None) => Result::Done,
                Ok(Some(still)) => {
                    // Answered `ok`, still listed: a live gRPC owner (Nacos 2.x/3.x) or a 1.x
                    // client re-registering. Disabling is what takes it away from consumers.
                    remember(memory, |m| m.mark_ineffective(&instance.key));
                    let disabled = disable(nacos, marker, &still).await.is_ok();
                    if disabled {
                        remember(memory, |m| m.record_disabled(&instance.key));
                    }
                    Result::Ineffective { disabled }
                }
                Err(e) => Result::Failed(format!("verifying the deregistration: {e}")),
            }
        }
        ActionKind::Disable => match disable(nacos, marker, instance).await {
            Ok(()) => {
                remember(memory, |m| m.record_disabled(&instance.key));
                Result::Done
            }
            Err(e) => Result::Failed(e),
        },
        ActionKind::Enable => {
            if let Err(e) = nacos.enable(instance).await {
                return Result::Failed(e.to_string());
            }
            match nacos
                .read_back(instance, |seen| seen.is_some_and(|i| i.enabled))
                .await
            {
                Ok(Some(i)) if i.enabled => {
                    remember(memory, |m| m.forget_disabled(&instance.key));
                    Result::Done
                }
                Ok(_) => Result::Failed("the instance is not enabled after the write".into()),
                Err(e) => Result::Failed(format!("verifying the enable: {e}")),
            }
        }
    }
}

/// `enabled=false` with our marker, verified by reading the instance back.
async fn disable(
    nacos: &NacosClient,
    marker: &str,
    instance: &Instance,
) -> std::result::Result<(), String> {
    nacos
        .disable(instance, marker)
        .await
        .map_err(|e| e.to_string())?;
    match nacos
        .read_back(instance, |seen| seen.is_none_or(|i| !i.enabled))
        .await
    {
        Ok(Some(i)) if !i.enabled => Ok(()),
        Ok(Some(_)) => Err("the instance is still enabled after the write".into()),
        // Gone by itself in the meantime: offline all the same.
        Ok(None) => Ok(()),
        Err(e) => Err(format!("verifying the disable: {e}")),
    }
}
