//! One reconcile pass of a NacosBinding.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action as Requeue;
use kube::{Api, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::context::{BindingState, Context};
use super::execute::execute;
use super::focus::{self, Kept, PassKind};
use super::inputs::{self, InputError, SecretData};
use super::outcome::{key, Outcome, Written};
use super::report::{self, Problem};
use crate::cluster::Changed;
use crate::crd::{NacosBinding, APPROVE_ANNOTATION};
use crate::metrics::BindingLabels;
use crate::model::{MarkerOwner, ServiceKey};
use crate::nacos::{NacosClient, NacosError, NamespaceCheck, ServerInfo};
use crate::plan::{self, Memory, Plan, PlanInput, ServiceListing, UnreadyAction};

/// Service listings a pass keeps in flight at once.
const LISTINGS_IN_FLIGHT: usize = 8;

/// Errors that end a pass early. Each becomes a condition and an Event; none crashes the operator.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the binding has no namespace")]
    NoNamespace,
    #[error("reading Secret {0}: {1}")]
    SecretRead(String, #[source] kube::Error),
}

pub fn error_policy(b: Arc<NacosBinding>, e: &ReconcileError, ctx: Arc<Context>) -> Requeue {
    warn!(binding = %key(&b), error = %e, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&BindingLabels { binding: key(&b) })
        .inc();
    Requeue::requeue(Duration::from_secs(15))
}

/// Reads the Secrets the binding references, in its own namespace only.
async fn read_secrets(
    ctx: &Context,
    ns: &str,
    b: &NacosBinding,
) -> Result<Result<SecretData, InputError>, ReconcileError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let read = |name: String| {
        let api = api.clone();
        let namespace = ns.to_string();
        async move {
            match api.get_opt(&name).await {
                Ok(Some(s)) => Ok(Ok(s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect::<BTreeMap<_, _>>())),
                Ok(None) => Ok(Err(InputError::SecretMissing { namespace, name })),
                Err(e) => Err(ReconcileError::SecretRead(name, e)),
            }
        }
    };
    let mut data = SecretData::default();
    if let Some(r) = &b.spec.nacos.credentials_secret_ref {
        match read(r.name.clone()).await? {
            Ok(d) => data.credentials = Some(d),
            Err(e) => return Ok(Err(e)),
        }
    }
    if let Some(r) = b
        .spec
        .nacos
        .tls
        .as_ref()
        .and_then(|t| t.ca_secret_ref.as_ref())
    {
        match read(r.name.clone()).await? {
            Ok(d) => data.ca = Some(d),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(data))
}

/// The Nacos client for this configuration, reused while the configuration (Secrets included) is
/// unchanged so the login token is reused too. `true` when it was built just now.
fn nacos_client(
    state: &mut BindingState,
    cfg: crate::nacos::NacosConfig,
    secrets: &SecretData,
    ctx: &Context,
) -> Result<(Arc<NacosClient>, bool), NacosError> {
    // Debug output redacts secrets, so hash the Secret data too: a rotated password makes a new client.
    let mut h = DefaultHasher::new();
    format!("{cfg:?}").hash(&mut h);
    secrets.credentials.hash(&mut h);
    secrets.ca.hash(&mut h);
    let fp = h.finish();
    if let Some((old, c)) = &state.nacos {
        if *old == fp {
            return Ok((c.clone(), false));
        }
    }
    let c = Arc::new(NacosClient::observed(
        cfg,
        Arc::new(report::RequestMetrics(ctx.metrics.clone())),
    )?);
    state.nacos = Some((fp, c.clone()));
    Ok((c, true))
}

/// The services a binding governs on this server: exact names, plus pattern matches.
async fn governed_services(
    b: &NacosBinding,
    nacos: &NacosClient,
) -> Result<Vec<(ServiceKey, Vec<String>)>, NacosError> {
    let mut out: BTreeMap<ServiceKey, Vec<String>> = BTreeMap::new();
    let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sel in &b.spec.services {
        if let Some(name) = &sel.name {
            out.entry(ServiceKey::new(&sel.group, name))
                .or_default()
                .extend(sel.clusters.iter().cloned());
            continue;
        }
        if !listed.contains_key(&sel.group) {
            let names = nacos.list_services(&sel.group).await?;
            listed.insert(sel.group.clone(), names);
        }
        for name in listed.get(&sel.group).into_iter().flatten() {
            if sel.governs(name) {
                out.entry(ServiceKey::new(&sel.group, name))
                    .or_default()
                    .extend(sel.clusters.iter().cloned());
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(k, mut c)| {
            c.sort();
            c.dedup();
            (k, c)
        })
        .collect())
}

/// A pass that cannot go on: what to report, and when to try again.
pub struct Stop {
    pub problem: Problem,
    pub retry: Duration,
}

/// What a pass found and decided, before anything is written.
pub struct Evaluation {
    pub server: ServerInfo,
    pub nacos: Arc<NacosClient>,
    pub listings: Vec<ServiceListing>,
    pub plan: Plan,
    pub policy: crate::plan::Policy,
    /// Problems that blocked some services but not the whole pass (a failed listing, unsynced caches).
    pub problems: Vec<Problem>,
    pub now: chrono::DateTime<Utc>,
    /// When a NotReady node next crosses `nodeUnreachableSeconds`: no event marks that moment.
    pub node_deadline: Option<chrono::DateTime<Utc>>,
}

/// Dereference, list Nacos, read the cluster, and plan. Writes nothing.
pub async fn evaluate(
    ctx: &Context,
    b: &NacosBinding,
    state: &mut BindingState,
) -> Result<Result<Evaluation, Stop>, ReconcileError> {
    let ns = b.namespace().ok_or(ReconcileError::NoNamespace)?;
    let resync = Duration::from_secs(b.spec.resync_seconds.max(5).into());
    let spec_stop = |msg: String| Stop {
        problem: Problem::InvalidSpec(msg),
        retry: resync,
    };
    let nacos_stop = |e: &NacosError| Stop {
        problem: Problem::from_nacos(e),
        retry: retry_after(resync),
    };

    // Dereference and validate everything the schema cannot.
    if let Err(errors) = b.spec.check() {
        let msg = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        return Ok(Err(spec_stop(msg.join("; "))));
    }
    let pod_scope =
        match crate::cluster::PodScope::new(&ns, &b.spec.pods.selector, &b.spec.pods.namespaces) {
            Ok(s) => s,
            Err(e) => return Ok(Err(spec_stop(e.to_string()))),
        };
    let secrets = match read_secrets(ctx, &ns, b).await? {
        Ok(s) => s,
        Err(e) => {
            return Ok(Err(Stop {
                problem: secret_problem(b, &e),
                retry: retry_after(resync),
            }))
        }
    };
    let cfg = match inputs::nacos_config(&ns, &b.spec, &secrets) {
        Ok(c) => c,
        Err(e) => return Ok(Err(spec_stop(e.to_string()))),
    };
    let insecure = cfg.tls.insecure_skip_verify;
    let nacos = match nacos_client(state, cfg, &secrets, ctx) {
        Ok((c, fresh)) => {
            // Once per client (start-up, spec or Secret change), not on every pass.
            if fresh && insecure {
                warn!(
                    binding = %key(b),
                    "tls.insecureSkipVerify is set: the Nacos server's certificate is not verified"
                );
            }
            c
        }
        Err(e) => return Ok(Err(spec_stop(e.to_string()))),
    };

    let fingerprint = pass_fingerprint(b, state);
    let memory = state
        .memory
        .clone()
        .unwrap_or_else(|| report::memory_from_status(b));
    let judge_now = |listings: &[ServiceListing]| {
        judge(ctx, b, &pod_scope, listings, &memory).map_err(spec_stop)
    };
    let mut problems = Vec::new();

    let mut kind = focus::pass_kind(state.kept.as_ref(), fingerprint, Utc::now(), resync);
    let mut relist = None;
    if let (PassKind::Focused, Some(kept)) = (&kind, &state.kept) {
        // Judge the kept listings against the cluster as it is now; list again only where that
        // calls for a write, unless an instance may be missing from them.
        let since = kept.departures_since();
        let unready_counts = b.spec.policy.on_pod_unready == UnreadyAction::Disable;
        let nodes = ctx.view.nodes();
        let departure = ctx
            .view
            .unlisted_departure(&pod_scope, &kept.known, since, unready_counts)
            .or_else(|| focus::node_departure(&nodes, since));
        match departure {
            Some(why) => kind = PassKind::Full(format!("{why}: it may hold an unlisted instance")),
            None => {
                // Only listings whose judgement may have changed since the last pass.
                let changed = match ctx.view.changed_since(kept.judged_at()) {
                    Changed::Ips(mut ips) => {
                        ips.extend(ctx.view.ips_behind_nodes_not_ready());
                        Changed::Ips(ips)
                    }
                    Changed::All => Changed::All,
                };
                let suspects = kept.suspects(&changed, &memory);
                let suspects = suspects.as_deref().unwrap_or(&kept.listings);
                match judge_now(suspects) {
                    Ok(pre) => {
                        let mut services = focus::to_relist(&pre.plan);
                        services.extend(state.rechecks.due(Utc::now()));
                        relist = Some((services, suspects.len()));
                    }
                    Err(stop) => return Ok(Err(stop)),
                }
            }
        }
    }

    let (server, listings) = match (relist, &mut state.kept) {
        (Some((relist, judged)), Some(kept)) => {
            let services: Vec<_> = kept
                .services
                .iter()
                .filter(|(s, _)| relist.contains(s))
                .cloned()
                .collect();
            debug!(
                judged,
                relisted = services.len(),
                of = kept.services.len(),
                "focused pass"
            );
            let listed_at = Utc::now();
            let fresh = list(&nacos, &kept.server, &services, &memory, &mut problems).await;
            state
                .rechecks
                .listed(fresh.iter().map(|l| &l.service), listed_at);
            (kept.server.clone(), kept.update(fresh))
        }
        _ => {
            if let PassKind::Full(why) = &kind {
                debug!(%why, "full pass");
            }
            let started = Utc::now();
            let server = match nacos.server_info().await {
                Ok(s) => s,
                Err(e) => return Ok(Err(nacos_stop(&e))),
            };
            if let Some(stop) = check_namespace(b, &nacos, &nacos_stop).await {
                return Ok(Err(stop));
            }
            let services = match governed_services(b, &nacos).await {
                Ok(s) => s,
                Err(e) => return Ok(Err(nacos_stop(&e))),
            };
            // What this binding governs, renewed by every full pass (not copied on every focused
            // one); a binding gone or stopped for three resyncs no longer counts.
            let claim = super::overlap::Claim::new(b, key(b), &services);
            ctx.claims
                .set(&b.uid().unwrap_or_default(), claim, resync * 3);
            let listings = list(&nacos, &server, &services, &memory, &mut problems).await;
            state
                .rechecks
                .listed(listings.iter().map(|l| &l.service), started);
            state.kept = Some(Kept::new(
                fingerprint,
                started,
                server.clone(),
                services,
                listings.clone(),
                state.kept.take(),
            ));
            (server, listings)
        }
    };

    // Read before the facts: a change after this point is judged again by the next pass.
    let seq = ctx.view.change_seq();
    let Judged {
        plan,
        policy,
        node_deadline,
        now,
        synced,
    } = match judge_now(&listings) {
        Ok(j) => j,
        Err(stop) => return Ok(Err(stop)),
    };
    if let Some(kept) = &mut state.kept {
        kept.judged(seq, &plan);
    }
    if !synced {
        problems.push(Problem::CacheNotSynced(
            ctx.view.unsynced_reasons().join("; "),
        ));
    }
    Ok(Ok(Evaluation {
        server,
        nacos,
        listings,
        plan,
        policy,
        problems,
        now,
        node_deadline,
    }))
}

/// What a pass depends on besides the cluster and the registry: a change makes the next pass full.
/// Annotations count whole (the approval among them), so any annotation forces a full pass.
fn pass_fingerprint(b: &NacosBinding, state: &BindingState) -> u64 {
    let mut h = DefaultHasher::new();
    b.metadata.generation.hash(&mut h);
    b.annotations().hash(&mut h);
    state.nacos.as_ref().map(|(fp, _)| *fp).hash(&mut h);
    h.finish()
}

/// An unknown namespace answers every listing with nothing: that must not pass for "no instances",
/// so the namespace is looked up first.
async fn check_namespace(
    b: &NacosBinding,
    nacos: &NacosClient,
    nacos_stop: &impl Fn(&NacosError) -> Stop,
) -> Option<Stop> {
    let groups: BTreeSet<String> = b.spec.services.iter().map(|s| s.group.clone()).collect();
    let groups: Vec<String> = groups.into_iter().collect();
    let retry = retry_after(Duration::from_secs(b.spec.resync_seconds.max(5).into()));
    match nacos.check_namespace(&groups).await {
        Ok(NamespaceCheck::Missing { address, known }) => Some(Stop {
            problem: Problem::NamespaceNotFound(namespace_missing_message(
                &b.spec.nacos.namespace,
                &address,
                &known,
            )),
            retry,
        }),
        Ok(NamespaceCheck::Unverified(why)) => {
            debug!(namespace = %b.spec.nacos.namespace, %why, "Nacos namespace not verifiable");
            None
        }
        Ok(NamespaceCheck::Public | NamespaceCheck::Found) => None,
        Err(e) => Some(nacos_stop(&e)),
    }
}

/// Lists the given services, a few at a time, in their order. On a server whose listing hides
/// disabled instances, the ones we disabled are looked up one by one, so they can be re-enabled
/// (and are not forgotten as unlisted). The first failure also becomes a problem of the pass.
async fn list(
    nacos: &NacosClient,
    server: &ServerInfo,
    services: &[(ServiceKey, Vec<String>)],
    memory: &Memory,
    problems: &mut Vec<Problem>,
) -> Vec<ServiceListing> {
    // Futures built up front (they do nothing until polled): a stream of closures over borrowed
    // items is not `Send` enough for the controller's future.
    let requests: Vec<_> = services
        .iter()
        .map(|(service, clusters)| async move {
            (service, nacos.list_instances(service, clusters).await)
        })
        .collect();
    let mut listed = futures::stream::iter(requests).buffered(LISTINGS_IN_FLIGHT);
    let mut first_error = None;
    let mut listings = Vec::with_capacity(services.len());
    while let Some((service, result)) = listed.next().await {
        let listing = result.map_err(|e| {
            let text = e.to_string();
            first_error.get_or_insert(e);
            text
        });
        listings.push(ServiceListing::fresh(service.clone(), listing));
    }
    drop(listed);
    if !server.lists_disabled {
        for listing in &mut listings {
            let Ok(snap) = &mut listing.listing else {
                continue;
            };
            for key in memory
                .disabled
                .iter()
                .filter(|k| k.service == listing.service)
            {
                if snap.instances.iter().any(|i| &i.key == key) {
                    continue;
                }
                match nacos.get_instance(key).await {
                    Ok(Some(i)) => Arc::make_mut(snap).instances.push(i),
                    Ok(None) => {}
                    Err(e) => {
                        listing.listing = Err(e.to_string());
                        first_error.get_or_insert(e);
                        break;
                    }
                }
            }
        }
    }
    if let Some(e) = first_error {
        problems.push(Problem::from_nacos(&e));
    }
    listings
}

/// A plan and what it was made with.
struct Judged {
    plan: Plan,
    policy: crate::plan::Policy,
    node_deadline: Option<chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
    /// The watch caches were synced when the cluster side was read.
    synced: bool,
}

/// Reads the cluster side of the evidence for exactly the IPs the listings hold, and plans.
fn judge(
    ctx: &Context,
    b: &NacosBinding,
    pod_scope: &crate::cluster::PodScope,
    listings: &[ServiceListing],
    memory: &Memory,
) -> Result<Judged, String> {
    // Read before the facts: a view that loses its sync meanwhile is caught by the next pass.
    let synced = ctx.view.is_synced();
    let now = Utc::now();
    let ips: BTreeSet<IpAddr> = listings
        .iter()
        .filter_map(|l| l.listing.as_ref().ok())
        .flat_map(|s| s.instances.iter().map(|i| i.key.ip))
        .collect();
    let facts = ctx.view.facts_for_ips(pod_scope, ips.iter());
    let scope =
        inputs::scope(&b.spec, &facts.nodes, &facts.departed_nodes).map_err(|e| e.to_string())?;
    let policy = inputs::policy(&b.spec, scope).map_err(|e| e.to_string())?;
    let (uid, name) = (b.uid().unwrap_or_default(), key(b));
    let approval = approval_token(b);
    let plan = plan::plan(&PlanInput {
        owner: MarkerOwner {
            uid: &uid,
            binding: &name,
        },
        policy: &policy,
        caches_synced: synced,
        acting_allowed: ctx.acting_allowed(),
        pods: &facts.pods,
        nodes: &facts.nodes,
        tombstones: &facts.tombstones,
        departed_nodes: &facts.departed_nodes,
        services: listings,
        approval: approval.as_deref(),
        memory,
        now,
    });
    let node_deadline = plan::next_node_deadline(&facts.nodes, &policy, now);
    Ok(Judged {
        plan,
        policy,
        node_deadline,
        now,
        synced,
    })
}

#[instrument(skip_all, fields(binding = %key(&b)))]
pub async fn reconcile(b: Arc<NacosBinding>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let started = Instant::now();
    let uid = b.uid().unwrap_or_default();
    let resync = Duration::from_secs(b.spec.resync_seconds.max(5).into());
    let state = ctx.binding_state(&uid).await;
    let mut state = state.lock().await;
    if !ctx.acting_allowed() {
        // A standby (or a leader still settling) writes nothing: not to Nacos, and not status or
        // Events, which the leader owns. Nor does it list Nacos. It forgets what it remembered, so
        // when it leads it starts from the budget and approvals the leader recorded in status, and
        // from a full listing.
        state.memory = None;
        state.kept = None;
        state.status.forget();
        return Ok(Requeue::requeue(resync.min(Duration::from_secs(5))));
    }
    let lane = state.status.clone();
    let mut rep = report::Report::new(&b, &ctx, lane.last());

    let eval = match evaluate(&ctx, &b, &mut state).await? {
        Ok(eval) => eval,
        Err(stop) => {
            rep.problem(stop.problem).await;
            lane.submit(ctx.status_writer(), &b, rep.finish(started));
            return Ok(Requeue::requeue(stop.retry));
        }
    };
    let evaluated = started.elapsed();
    rep.server(&eval.server);
    rep.overlap(ctx.claims.overlap(&uid)).await;
    for p in eval.problems.iter().cloned() {
        rep.problem(p).await;
    }

    // Act, verify, and remember what the registry showed.
    let mut memory: Memory = eval.plan.memory.clone();
    let snapshots: BTreeMap<ServiceKey, &crate::model::ServiceSnapshot> = eval
        .listings
        .iter()
        .filter_map(|l| l.listing.as_ref().ok().map(|s| (l.service.clone(), &**s)))
        .collect();
    if eval.policy.max_removals.can_hold() && eval.plan.actions().any(|a| a.kind.is_removal()) {
        // Write the budget this pass is about to spend before spending it: a replica killed (or
        // replaced as leader) mid-pass leaves it in status, so its successor does not spend the
        // window's budget a second time. Without that record, act on nothing.
        if let Err(e) = lane.record_budget(&ctx.client, &b, &eval.plan.memory).await {
            warn!(error = %e, "could not record the removal budget; no action in this pass");
            lane.submit(ctx.status_writer(), &b, rep.finish(started));
            return Ok(Requeue::requeue(retry_after(resync)));
        }
    }
    let budgeted = started.elapsed();
    let binding = key(&b);
    let marker = MarkerOwner {
        uid: &uid,
        binding: &binding,
    }
    .marker();
    let outcomes: Vec<Outcome> = execute(
        &ctx,
        &b,
        &marker,
        &eval.nacos,
        &eval.plan,
        &snapshots,
        &mut memory,
    )
    .await;
    let executed = started.elapsed();
    follow_up(&ctx, &b, &mut state, &eval, &snapshots, &outcomes);
    state.memory = Some(memory.clone());
    if let Some(kept) = &mut state.kept {
        kept.record_writes(&outcomes, &marker);
    }
    rep.outcomes(&outcomes);
    rep.plan(&eval.plan, &memory, eval.policy.removal_window)
        .await;
    if eval.plan.approval_consumed {
        info!("approval annotation consumed");
    }
    // Come back when the next grace period ends, a node turns unreachable or a follow-up listing
    // is due, or at the resync.
    let next = eval
        .plan
        .services
        .iter()
        .flat_map(|s| s.waiting.iter().map(|w| w.due_at))
        .chain(eval.node_deadline)
        .chain(state.rechecks.next())
        .min()
        // Something already due (a check not made yet) comes back at once.
        .map(|due| (due - eval.now).to_std().unwrap_or_default() + Duration::from_millis(200))
        .unwrap_or(resync)
        .min(resync);
    lane.submit(ctx.status_writer(), &b, rep.finish(started));
    // Where a pass spends its time (cumulative from its start).
    debug!(
        ?evaluated,
        ?budgeted,
        ?executed,
        total = ?started.elapsed(),
        actions = outcomes.len(),
        "pass done"
    );
    Ok(Requeue::requeue(next.max(Duration::from_millis(500))))
}

/// Notes what may change again in the registry because of this pass (see [`super::recheck`]):
/// the deregistrations that took, and the instances we disabled that left their listing while a
/// Ready pod of the binding holds their address (where the server keeps their `enabled=false`).
fn follow_up(
    ctx: &Context,
    b: &NacosBinding,
    state: &mut BindingState,
    eval: &Evaluation,
    snapshots: &BTreeMap<ServiceKey, &crate::model::ServiceSnapshot>,
    outcomes: &[Outcome],
) {
    let now = Utc::now();
    for o in outcomes {
        if o.action.kind != crate::plan::ActionKind::Deregister || o.result != Written::Done {
            continue;
        }
        let instance = snapshots
            .get(&o.action.instance.service)
            .and_then(|s| s.instances.iter().find(|i| i.key == o.action.instance));
        if let Some(instance) = instance {
            state.rechecks.after_deregistration(instance, now);
        }
    }
    let governed: BTreeSet<&ServiceKey> = eval.listings.iter().map(|l| &l.service).collect();
    state.rechecks.retain_services(&governed);
    if !eval.server.metadata_overlay {
        return;
    }
    let fresh: BTreeMap<&ServiceKey, BTreeSet<&crate::model::InstanceKey>> = eval
        .listings
        .iter()
        .filter(|l| l.fresh)
        .filter_map(|l| {
            let snap = l.listing.as_ref().ok()?;
            Some((&l.service, snap.instances.iter().map(|i| &i.key).collect()))
        })
        .collect();
    let disabled_before = state
        .memory
        .as_ref()
        .map(|m| m.disabled.clone())
        .unwrap_or_default();
    state.rechecks.note_vanished(&disabled_before, &fresh, now);
    let ips = state.rechecks.vanished_ips();
    if ips.is_empty() {
        return;
    }
    let Some(ns) = b.namespace() else { return };
    let Ok(scope) =
        crate::cluster::PodScope::new(&ns, &b.spec.pods.selector, &b.spec.pods.namespaces)
    else {
        return;
    };
    let facts = ctx.view.facts_for_ips(&scope, ips.iter());
    let live: BTreeSet<std::net::IpAddr> = facts
        .pods
        .iter()
        .filter(|p| p.matches && p.ready && p.deletion_timestamp.is_none())
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    state.rechecks.watch_reused(|ip| live.contains(&ip), now);
}

/// What a NamespaceNotFound condition and Event say: the id, the server, and the ids it has.
fn namespace_missing_message(namespace: &str, address: &str, known: &[String]) -> String {
    let mut ids: Vec<&str> = known
        .iter()
        .map(|k| if k.is_empty() { "public" } else { k.as_str() })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let more = ids.len().saturating_sub(20);
    ids.truncate(20);
    let mut list = ids.join(", ");
    if more > 0 {
        list.push_str(&format!(" and {more} more"));
    }
    format!(
        "Nacos namespace {namespace:?} does not exist at {address} (it has: {list}); every \
         listing there would be empty, so nothing is compared: create the namespace in Nacos or \
         correct spec.nacos.namespace"
    )
}

/// What a Secret that cannot be used means: without its credentials Secret the operator cannot log
/// in, which users look for under `AuthFailed`; another missing Secret (the CA) is `SecretNotFound`;
/// anything else (missing keys) is a spec problem.
fn secret_problem(b: &NacosBinding, e: &InputError) -> Problem {
    match (e, &b.spec.nacos.credentials_secret_ref) {
        (InputError::SecretMissing { name, .. }, Some(r)) if *name == r.name => {
            Problem::AuthFailed(format!("{e}: no credentials to log in to Nacos with"))
        }
        (InputError::SecretMissing { .. }, _) => Problem::SecretNotFound(format!(
            "{e}: create it, or correct the Secret name in spec.nacos"
        )),
        _ => Problem::InvalidSpec(e.to_string()),
    }
}

/// Sooner than a full resync after a Nacos failure, but not hot.
fn retry_after(resync: Duration) -> Duration {
    resync.min(Duration::from_secs(10))
}

/// The approval annotation's value when it names the binding's current generation.
fn approval_token(b: &NacosBinding) -> Option<String> {
    let value = b.annotations().get(APPROVE_ANNOTATION)?;
    let generation = b.metadata.generation?;
    (value.trim() == generation.to_string()).then(|| value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_message_names_the_id_the_server_and_what_it_has() {
        let known = vec!["".to_string(), "dev".to_string(), "dev".to_string()];
        let m = namespace_missing_message("prod", "http://127.0.0.1:8848", &known);
        assert!(m.starts_with("Nacos namespace \"prod\" does not exist at http://127.0.0.1:8848"));
        assert!(m.contains("(it has: dev, public)"), "{m}");
        assert!(m.contains("spec.nacos.namespace"), "{m}");
        let many: Vec<String> = (0..25).map(|i| format!("ns{i:02}")).collect();
        let m = namespace_missing_message("x", "http://n:8848", &many);
        assert!(m.contains("ns19 and 5 more"), "{m}");
        assert!(!m.contains("ns20"), "{m}");
    }

    fn binding(credentials: Option<&str>) -> NacosBinding {
        let mut spec = serde_json::json!({
            "nacos": {"serverAddr": ["http://127.0.0.1:8848"]},
            "services": [{"name": "orders"}],
            "pods": {"selector": {"matchLabels": {"app": "orders"}}}
        });
        if let Some(name) = credentials {
            spec["nacos"]["credentialsSecretRef"] = serde_json::json!({"name": name});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": spec
        }))
        .unwrap()
    }

    fn missing(name: &str) -> InputError {
        InputError::SecretMissing {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_missing_credentials_secret_is_an_auth_failure() {
        let b = binding(Some("nacos-auth"));
        match secret_problem(&b, &missing("nacos-auth")) {
            Problem::AuthFailed(m) => assert!(m.contains("shop/nacos-auth"), "{m}"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn other_secret_problems_name_the_secret_or_the_spec() {
        let b = binding(Some("nacos-auth"));
        assert!(matches!(
            secret_problem(&b, &missing("nacos-ca")),
            Problem::SecretNotFound(_)
        ));
        let keys = InputError::SecretKeys {
            namespace: "shop".into(),
            name: "nacos-auth".into(),
            need: "username and password",
        };
        assert!(matches!(secret_problem(&b, &keys), Problem::InvalidSpec(_)));
        assert!(matches!(
            secret_problem(&binding(None), &missing("nacos-auth")),
            Problem::SecretNotFound(_)
        ));
    }
}
