//! The second signal. Before an instance is taken offline because the watch cache has no live pod of
//! the binding on its IP, the API server is asked directly (a GET of the pod the cache saw go, or a
//! list by address); and right before the write the cache is asked once more, since a new pod may
//! have taken the IP while earlier writes of the pass went out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tokio::sync::Mutex;

use super::Context;
use crate::cluster::{PodInfo, PodScope, TombstoneInfo};
use crate::model::PodPhase;

/// From this many instances to confirm in one pass, one paged listing of the scope's pods answers
/// for all of those asked by address: a listing filtered by `status.podIP` makes the API server scan
/// every pod of the namespace, once per instance (after an operator restart, every orphan is asked so).
const LIST_FROM: usize = 16;
/// How long such a listing stands for the API server's word; older, it is listed again.
const LISTING_TTL: Duration = Duration::from_secs(2);
const PAGE: u32 = 500;

/// The scope's live pods by IP (`namespace/name`), and when they were listed.
type Listing = (Instant, HashMap<IpAddr, String>);

pub(super) struct PodCheck<'a> {
    ctx: &'a Context,
    scope: Option<&'a PodScope>,
    listing: Option<Mutex<Option<Listing>>>,
}

impl<'a> PodCheck<'a> {
    /// `ips`: the addresses this pass will ask about.
    pub fn new(
        ctx: &'a Context,
        scope: Option<&'a PodScope>,
        ips: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        let mut me = Self {
            ctx,
            scope,
            listing: None,
        };
        // Only the addresses no pod was seen leaving are asked about by address.
        let by_address = ips
            .into_iter()
            .filter(|ip| me.seen_leaving(*ip).is_empty())
            .count();
        me.listing = (by_address >= LIST_FROM).then(|| Mutex::new(None));
        me
    }

    /// The pods of the scope the cache saw leave `ip` (none without a valid scope).
    fn seen_leaving(&self, ip: IpAddr) -> Vec<TombstoneInfo> {
        let Some(scope) = self.scope else {
            return Vec::new();
        };
        self.ctx
            .view
            .tombstones_for_ip(&ip)
            .into_iter()
            .filter(|t| scope.matches(&t.namespace, &t.labels))
            .collect()
    }

    /// `Err(why)` when the API server has a live pod of the scope on `ip`, or cannot say. The
    /// pods the cache saw leave this address are fetched one by one (cheap at any cluster size);
    /// when it saw none (the pod went while nobody watched), the API server is asked by address.
    pub async fn api_server(&self, ip: IpAddr) -> Result<(), String> {
        let scope = self.scope()?;
        let gone = self.seen_leaving(ip);
        if !gone.is_empty() {
            for t in gone {
                let pod = Api::<Pod>::namespaced(self.ctx.client.clone(), &t.namespace)
                    .get_opt(&t.name)
                    .await
                    .map_err(|e| format!("confirming with the API server failed: {e}"))?;
                // A pod of that name may be back (a StatefulSet's), on this address or another.
                if pod.is_some_and(|p| holds_ip(&p, scope) && pod_ips(&p).contains(&ip)) {
                    return Err(format!(
                        "the API server still has pod {}/{} on {ip}",
                        t.namespace, t.name
                    ));
                }
            }
            return Ok(());
        }
        let holder = match &self.listing {
            Some(listing) => {
                let mut guard = listing.lock().await;
                let stale = guard
                    .as_ref()
                    .is_none_or(|(at, _)| at.elapsed() > LISTING_TTL);
                if stale {
                    *guard = Some((Instant::now(), self.list_live(scope).await?));
                }
                guard
                    .as_ref()
                    .and_then(|(_, by_ip)| by_ip.get(&ip).cloned())
            }
            None => self.find_live(scope, ip).await?,
        };
        match holder {
            Some(pod) => Err(format!("the API server still has pod {pod} on {ip}")),
            None => Ok(()),
        }
    }

    /// `Err(why)` when the watch cache now has a live pod of the scope on `ip`, or has lost its sync
    /// since the pass read it (then it can vouch for nothing).
    pub fn cache(&self, ip: IpAddr) -> Result<(), String> {
        let scope = self.scope()?;
        if !self.ctx.view.is_synced() {
            return Err("the watch caches lost their sync while the pass was writing".into());
        }
        match self
            .ctx
            .view
            .pods_with_ip(&ip)
            .into_iter()
            .find(|p| info_holds_ip(p, scope))
        {
            Some(p) => Err(format!(
                "pod {}/{} has {ip} now (seen while the pass was writing)",
                p.namespace, p.name
            )),
            None => Ok(()),
        }
    }

    fn scope(&self) -> Result<&'a PodScope, String> {
        self.scope
            .ok_or_else(|| "the binding's pod selector is invalid".to_string())
    }

    /// One pod of the scope holding `ip`, asked namespace by namespace: only pods of the scope can
    /// make the instance Live, and RBAC may grant pods per namespace.
    async fn find_live(&self, scope: &PodScope, ip: IpAddr) -> Result<Option<String>, String> {
        let params = ListParams::default().fields(&format!("status.podIP={ip}"));
        for ns in scope.namespaces() {
            let listed = Api::<Pod>::namespaced(self.ctx.client.clone(), ns)
                .list(&params)
                .await
                .map_err(|e| format!("confirming with the API server failed: {e}"))?;
            if let Some(p) = listed.items.iter().find(|p| holds_ip(p, scope)) {
                return Ok(Some(format!("{ns}/{}", p.name_any())));
            }
        }
        Ok(None)
    }

    /// Every live pod of the scope by IP, in pages (no resourceVersion: a consistent read). Finished
    /// pods are left out by the API server, which also makes this a request of another form than
    /// the watch's own list, not the same one asked twice.
    async fn list_live(&self, scope: &PodScope) -> Result<HashMap<IpAddr, String>, String> {
        let mut by_ip = HashMap::new();
        for ns in scope.namespaces() {
            let api = Api::<Pod>::namespaced(self.ctx.client.clone(), ns);
            let mut params = ListParams::default()
                .fields("status.phase!=Succeeded,status.phase!=Failed")
                .limit(PAGE);
            loop {
                let page = api
                    .list(&params)
                    .await
                    .map_err(|e| format!("confirming with the API server failed: {e}"))?;
                for p in page.items.iter().filter(|p| holds_ip(p, scope)) {
                    for ip in pod_ips(p) {
                        by_ip.insert(ip, format!("{ns}/{}", p.name_any()));
                    }
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        Ok(by_ip)
    }
}

/// A pod that may serve on its IP now or soon: of the scope, not being deleted, not finished.
fn holds_ip(p: &Pod, scope: &PodScope) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    p.metadata.deletion_timestamp.is_none()
        && matches!(phase, Some("Running") | Some("Pending"))
        && scope.matches(&p.namespace().unwrap_or_default(), p.labels())
}

/// The same judgement on the watch cache's record of a pod.
fn info_holds_ip(p: &PodInfo, scope: &PodScope) -> bool {
    p.deletion_timestamp.is_none()
        && matches!(p.phase, PodPhase::Running | PodPhase::Pending)
        && scope.matches(&p.namespace, &p.labels)
}

fn pod_ips(p: &Pod) -> Vec<IpAddr> {
    let Some(status) = &p.status else {
        return Vec::new();
    };
    let listed = status.pod_ips.iter().flatten().map(|i| i.ip.as_str());
    let mut ips: Vec<IpAddr> = listed
        .chain(status.pod_ip.as_deref())
        .filter_map(|s| s.parse().ok())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn scope() -> PodScope {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "orders".into())])),
            match_expressions: None,
        };
        PodScope::new("shop", &selector, &[]).unwrap()
    }

    fn pod(ns: &str, app: &str, phase: &str, deleting: bool) -> Pod {
        let mut p = json!({
            "metadata": {"name": "p", "namespace": ns, "labels": {"app": app}},
            "status": {"phase": phase, "podIP": "10.0.0.1",
                       "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
        });
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn a_pod_of_the_scope_that_is_not_deleted_or_finished_holds_its_ips() {
        let s = scope();
        assert!(holds_ip(&pod("shop", "orders", "Running", false), &s));
        assert!(holds_ip(&pod("shop", "orders", "Pending", false), &s));
        assert!(!holds_ip(&pod("shop", "orders", "Running", true), &s));
        assert!(!holds_ip(&pod("shop", "orders", "Succeeded", false), &s));
        assert!(!holds_ip(&pod("shop", "orders", "Failed", false), &s));
        assert!(!holds_ip(&pod("shop", "billing", "Running", false), &s));
        assert!(!holds_ip(&pod("other", "orders", "Running", false), &s));
        let ips = pod_ips(&pod("shop", "orders", "Running", false));
        assert_eq!(
            ips,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn the_cache_record_is_judged_alike() {
        let s = scope();
        for (p, want) in [
            (pod("shop", "orders", "Running", false), true),
            (pod("shop", "orders", "Running", true), false),
            (pod("shop", "orders", "Failed", false), false),
            (pod("shop", "billing", "Pending", false), false),
        ] {
            let info = crate::cluster::pod_info(&p).unwrap();
            assert_eq!(info_holds_ip(&info, &s), want, "{p:?}");
            assert_eq!(holds_ip(&p, &s), want, "{p:?}");
        }
    }
}
