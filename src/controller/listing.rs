//! Stages 2 and 3 of a pass: choose what to list, and list it. A full pass lists every governed
//! service; a focused pass (between full ones) lists only the kept services whose verdicts the
//! cluster's changes may have turned into a write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use kube::ResourceExt;
use tracing::debug;

use super::context::{BindingState, Context};
use super::dereference::Inputs;
use super::focus::{self, Kept, PassKind};
use super::judge::judge;
use super::outcome::key;
use super::overlap::Claim;
use super::problem::Problem;
use super::stop::Stop;
use crate::cluster::Changed;
use crate::crd::NacosBinding;
use crate::model::{InstanceKey, MarkerOwner, ServiceKey};
use crate::nacos::{NacosClient, NamespaceCheck, ServerInfo};
use crate::plan::{Memory, ServiceListing, UnreadyAction};

/// Service listings a pass keeps in flight at once.
const LISTINGS_IN_FLIGHT: usize = 8;

/// What a pass lists.
pub enum ToList {
    /// Everything the binding governs, found anew; and why.
    Full(String),
    /// These of the kept services; `judged` kept listings were judged to choose them.
    Focused {
        services: BTreeSet<ServiceKey>,
        judged: usize,
    },
}

/// A focused pass judges the kept listings whose verdicts may have changed against the cluster as
/// it is now, and lists again only where that calls for a write (or a follow-up is due). A pod or
/// node that left since the last full listing may hold an instance the kept listings lack: then
/// the pass is full.
pub fn choose(
    ctx: &Context,
    b: &NacosBinding,
    owner: MarkerOwner<'_>,
    inputs: &Inputs,
    state: &BindingState,
    in_flight: &BTreeSet<InstanceKey>,
) -> Result<ToList, Stop> {
    let kind = focus::pass_kind(
        state.kept.as_ref(),
        inputs.fingerprint,
        Utc::now(),
        inputs.resync,
    );
    let kept = match (kind, &state.kept) {
        (PassKind::Focused, Some(kept)) => kept,
        (PassKind::Full(why), _) => return Ok(ToList::Full(why)),
        (PassKind::Focused, None) => return Ok(ToList::Full("first pass".into())),
    };
    let since = kept.departures_since();
    let unready_counts = b.spec.policy.on_pod_unready == UnreadyAction::Disable;
    let departure = ctx
        .view
        .unlisted_departure(&inputs.pod_scope, &kept.known, since, unready_counts)
        .or_else(|| focus::node_departure(&ctx.view.nodes(), kept.full_at));
    if let Some(why) = departure {
        return Ok(ToList::Full(format!(
            "{why}: it may hold an unlisted instance"
        )));
    }
    let changed = changed_since(ctx, kept.judged_at());
    let suspects = kept.suspects(&changed, &inputs.memory);
    let suspects = suspects.as_deref().unwrap_or(&kept.listings);
    let pre = judge(ctx, b, owner, inputs, suspects, None, in_flight)?;
    let mut services = focus::to_relist(&pre.plan);
    services.extend(state.rechecks.due(Utc::now()));
    Ok(ToList::Focused {
        services,
        judged: suspects.len(),
    })
}

/// What may judge differently since change point `seq`: the IPs whose facts changed, and those a
/// node that is not Ready decides (they turn stale by time alone).
pub fn changed_since(ctx: &Context, seq: u64) -> Changed {
    match ctx.view.changed_since(seq) {
        Changed::Ips(mut ips) => {
            ips.extend(ctx.view.ips_behind_nodes_not_ready());
            Changed::Ips(ips)
        }
        Changed::All => Changed::All,
    }
}

/// Lists what [`choose`] picked and keeps the listings for the passes to come. A listing that
/// failed stays in the result as failed (its service is left alone) and becomes a problem.
pub async fn list(
    ctx: &Context,
    b: &NacosBinding,
    inputs: &Inputs,
    state: &mut BindingState,
    to_list: ToList,
    problems: &mut Vec<Problem>,
) -> Result<(ServerInfo, Vec<ServiceListing>), Stop> {
    let nacos = &inputs.nacos;
    if let (ToList::Focused { services, judged }, Some(kept)) = (&to_list, &mut state.kept) {
        let services: Vec<_> = kept
            .services
            .iter()
            .filter(|(s, _)| services.contains(s))
            .cloned()
            .collect();
        debug!(
            judged,
            relisted = services.len(),
            of = kept.services.len(),
            "focused pass"
        );
        let listed_at = Utc::now();
        let fresh = list_services(nacos, &kept.server, &services, &inputs.memory, problems).await;
        state
            .rechecks
            .listed(fresh.iter().map(|l| &l.service), listed_at);
        return Ok((kept.server.clone(), kept.update(fresh)));
    }
    if let ToList::Full(why) = &to_list {
        debug!(%why, "full pass");
    }
    let started = Utc::now();
    let server = nacos.server_info().await?;
    check_namespace(b, nacos).await?;
    let services = governed_services(b, nacos).await?;
    // What this binding governs, renewed by every full pass (not copied on every focused one); a
    // binding gone or stopped for three resyncs no longer counts.
    ctx.claims.set(
        &b.uid().unwrap_or_default(),
        Claim::new(b, key(b), &services),
        inputs.resync * 3,
    );
    let listings = list_services(nacos, &server, &services, &inputs.memory, problems).await;
    state
        .rechecks
        .listed(listings.iter().map(|l| &l.service), started);
    state.kept = Some(Kept::new(
        inputs.fingerprint,
        started,
        server.clone(),
        services,
        listings.clone(),
        state.kept.take(),
    ));
    Ok((server, listings))
}

/// The services a binding governs on this server: exact names, plus pattern matches.
async fn governed_services(
    b: &NacosBinding,
    nacos: &NacosClient,
) -> Result<Vec<(ServiceKey, Vec<String>)>, Stop> {
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

/// An unknown namespace answers every listing with nothing: that must not pass for "no instances",
/// so the namespace is looked up first.
async fn check_namespace(b: &NacosBinding, nacos: &NacosClient) -> Result<(), Stop> {
    let groups: BTreeSet<String> = b.spec.services.iter().map(|s| s.group.clone()).collect();
    let groups: Vec<String> = groups.into_iter().collect();
    match nacos.check_namespace(&groups).await? {
        NamespaceCheck::Missing { address, known } => Err(Stop::soon(Problem::NamespaceNotFound(
            namespace_missing_message(&b.spec.nacos.namespace, &address, &known),
        ))),
        NamespaceCheck::Unverified(why) => {
            debug!(namespace = %b.spec.nacos.namespace, %why, "Nacos namespace not verifiable");
            Ok(())
        }
        NamespaceCheck::Public | NamespaceCheck::Found => Ok(()),
    }
}

/// Lists the given services, a few at a time, in their order. On a server whose listing hides
/// disabled instances, the ones we disabled are looked up one by one, so they can be re-enabled
/// (and are not forgotten as unlisted). The first failure also becomes a problem of the pass.
async fn list_services(
    nacos: &NacosClient,
    server: &ServerInfo,
    services: &[(ServiceKey, Vec<String>)],
    memory: &Memory,
    problems: &mut Vec<Problem>,
) -> Vec<ServiceListing> {
    // Each listing's future is made when its turn comes (made up front, 3,000 services held
    // megabytes of them), from an index: a closure over borrowed items is not `Send` enough for
    // the controller's future.
    let mut listed = futures::stream::iter(0..services.len())
        .map(|i| async move {
            let (service, clusters) = &services[i];
            (service, nacos.list_instances(service, clusters).await)
        })
        .buffered(LISTINGS_IN_FLIGHT);
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
                .keys()
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
}
