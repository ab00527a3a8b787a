//! Stage 4 of a pass: the cluster side of the evidence for exactly the addresses the listings
//! hold, read from the watch caches, and the pure planner's verdicts on it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::context::Context;
use super::dereference::Inputs;
use super::inputs;
use super::stop::Stop;
use crate::crd::{NacosBinding, APPROVE_ANNOTATION};
use crate::model::{InstanceKey, MarkerOwner, ServiceKey};
use crate::plan::{self, Plan, PlanInput, Policy, ServiceListing};

/// A plan and what it was made with.
pub struct Judged {
    pub plan: Plan,
    pub policy: Policy,
    /// When a NotReady node next crosses `nodeUnreachableSeconds`: no event marks that moment.
    pub node_deadline: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    /// The watch caches were synced when the cluster side was read.
    pub synced: bool,
}

/// Judges `listings`; `governed`: every governed service, when the listings are only some of them
/// (see [`plan::PlanInput::governed`]).
pub fn judge(
    ctx: &Context,
    b: &NacosBinding,
    owner: MarkerOwner<'_>,
    inputs: &Inputs,
    listings: &[ServiceListing],
    governed: Option<&BTreeSet<ServiceKey>>,
    in_flight: &BTreeSet<InstanceKey>,
) -> Result<Judged, Stop> {
    // Read before the facts: a view that loses its sync meanwhile is caught by the next pass.
    let synced = ctx.view.is_synced();
    let now = Utc::now();
    let ips: BTreeSet<IpAddr> = listings
        .iter()
        .filter_map(|l| l.listing.as_ref().ok())
        .flat_map(|s| s.instances.iter().map(|i| i.key.ip))
        .collect();
    let facts = ctx.view.facts_for_ips(&inputs.pod_scope, ips.iter());
    let scope = inputs::scope(&b.spec, &facts.nodes, &facts.departed_nodes).map_err(Stop::spec)?;
    let policy = inputs::policy(&b.spec, scope).map_err(Stop::spec)?;
    let approval = approval_token(b);
    let plan = plan::plan(&PlanInput {
        owner,
        policy: &policy,
        caches_synced: synced,
        acting_allowed: ctx.acting_allowed(),
        pods: &facts.pods,
        nodes: &facts.nodes,
        tombstones: &facts.tombstones,
        departed_nodes: &facts.departed_nodes,
        services: listings,
        governed,
        approval: approval.as_deref(),
        memory: &inputs.memory,
        in_flight,
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

/// The approval annotation's value when it names the binding's current generation.
fn approval_token(b: &NacosBinding) -> Option<String> {
    let value = b.annotations().get(APPROVE_ANNOTATION)?;
    let generation = b.metadata.generation?;
    (value.trim() == generation.to_string()).then(|| value.trim().to_string())
}
