//! The second signal. Before an instance is taken offline because the watch cache has no live pod of
//! the binding on its IP, the API server is asked directly who holds the IP now (by address, not
//! only about the pod the cache saw go: a new pod may have taken the address before the watch
//! delivered it); and right before the write the cache is asked once more, since a new pod may
//! have taken the IP while earlier writes of the pass went out.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::ListParams;
use kube::Client;
use serde::Deserialize;
use tokio::sync::{Mutex, Semaphore};

use super::outcome::Unconfirmed;
use crate::cluster::{ClusterView, PodInfo, PodScope};
use crate::model::PodPhase;

/// From this many instances to confirm in one pass, one paged listing of the scope's pods answers
/// for all of them: a listing filtered by `status.podIP` makes the API server scan every pod of the
/// namespace, once per instance (after an operator restart, every orphan is asked so).
const LIST_FROM: usize = 16;
/// ... but no sooner than at one instance per this many watched pods: the listing's own cost grows
/// with the pods, which it sends whole. At 30,000 pods it took about 8 s (60 pages of 500, the API
/// server busy), and every pass confirming 16 or more waited for it: removals queued behind passes
/// of 8-13 s (scale benchmark, Alibaba Nacos 2.5.1; single-deletion p99 20.5 s). A lookup by
/// address sends back the pods that hold the address alone.
const PODS_PER_LOOKUP: usize = 200;
/// Lookups by address in flight at once (the pass's actions ask theirs together).
const LOOKUPS_IN_FLIGHT: usize = 16;
/// How long such a listing stands for the API server's word after it ended; older, it is listed
/// again. From its end, not its start: a listing that takes longer (10,000 pods on a busy API
/// server) would be stale at once, and every confirmation of the pass would list again, one at a
/// time (the case benchmark saw a pass of 16 removals take 72 s). A pod that appears after the
/// listing is the watch cache's to see, asked right before each write.
const LISTING_TTL: Duration = Duration::from_secs(2);
const PAGE: u32 = 500;

/// The scope's live pods by IP (`namespace/name`), and when they were listed.
type Listing = (Instant, HashMap<IpAddr, String>);

pub(super) struct PodCheck<'a> {
    client: Client,
    view: &'a ClusterView,
    scope: Option<&'a PodScope>,
    /// Set when the addresses are asked about through one listing instead of one by one.
    listing: Option<Mutex<Option<Listing>>>,
    /// Slots for the lookups by address ([`LOOKUPS_IN_FLIGHT`]).
    lookups: Semaphore,
}

impl<'a> PodCheck<'a> {
    /// `ips`: the addresses this pass will ask about.
    pub fn new(
        client: Client,
        view: &'a ClusterView,
        scope: Option<&'a PodScope>,
        ips: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        // The `status.podIP` field selector sees a pod's first address only: where pods have
        // addresses of two families, only the listing (all of `status.podIPs`) can answer.
        // (Asked only when there is something to confirm: it looks at every pod of the cache.)
        let asked = ips.into_iter().count();
        let list_from = LIST_FROM.max(view.pod_count() / PODS_PER_LOOKUP);
        let listed = asked >= list_from || (asked > 0 && view.is_dual_stack());
        Self {
            client,
            view,
            scope,
            listing: listed.then(|| Mutex::new(None)),
            lookups: Semaphore::new(LOOKUPS_IN_FLIGHT),
        }
    }

    /// `Err(why)` when the API server has a live pod of the scope on `ip`, or cannot say.
    pub async fn api_server(&self, ip: IpAddr) -> Result<(), Unconfirmed> {
        let scope = self.scope()?;
        let holder = match &self.listing {
            Some(listing) => {
                let mut guard = listing.lock().await;
                let stale = guard
                    .as_ref()
                    .is_none_or(|(at, _)| at.elapsed() > LISTING_TTL);
                if stale {
                    let live = self.list_live(scope).await?;
                    *guard = Some((Instant::now(), live));
                }
                guard
                    .as_ref()
                    .and_then(|(_, by_ip)| by_ip.get(&ip).cloned())
            }
            None => self.find_live(scope, ip).await?,
        };
        match holder {
            Some(pod) => Err(Unconfirmed::ApiServerHasPod { pod, ip }),
            None => Ok(()),
        }
    }

    /// `Err(why)` when the watch cache now has a live pod of the scope on `ip`, or has lost its sync
    /// since the pass read it (then it can vouch for nothing).
    pub fn cache(&self, ip: IpAddr) -> Result<(), Unconfirmed> {
        let scope = self.scope()?;
        if !self.view.is_synced() {
            return Err(Unconfirmed::CacheLostSync);
        }
        match self
            .view
            .pods_with_ip(&ip)
            .into_iter()
            .find(|p| info_holds_ip(p, scope))
        {
            Some(p) => Err(Unconfirmed::CacheHasPod {
                pod: format!("{}/{}", p.namespace, p.name),
                ip,
            }),
            None => Ok(()),
        }
    }

    fn scope(&self) -> Result<&'a PodScope, Unconfirmed> {
        self.scope.ok_or(Unconfirmed::NoPodScope)
    }

    /// One pod of the scope holding `ip`, asked namespace by namespace: only pods of the scope can
    /// make the instance Live, and RBAC may grant pods per namespace.
    async fn find_live(&self, scope: &PodScope, ip: IpAddr) -> Result<Option<String>, Unconfirmed> {
        let params = ListParams::default().fields(&format!("status.podIP={ip}"));
        // Never closed: a slot always comes.
        let _lookup = self.lookups.acquire().await.ok();
        for ns in scope.namespaces() {
            let listed = self.list(ns, &params).await?;
            if let Some(p) = listed.items.iter().find(|p| holds_ip(p, scope)) {
                return Ok(Some(format!("{ns}/{}", p.metadata.name)));
            }
        }
        Ok(None)
    }

    /// Every live pod of the scope by IP, in pages (no resourceVersion: a consistent read). Finished
    /// pods are left out by the API server, which also makes this a request of another form than
    /// the watch's own list, not the same one asked twice.
    async fn list_live(&self, scope: &PodScope) -> Result<HashMap<IpAddr, String>, Unconfirmed> {
        let mut by_ip = HashMap::new();
        for ns in scope.namespaces() {
            let mut params = ListParams::default()
                .fields("status.phase!=Succeeded,status.phase!=Failed")
                .limit(PAGE);
            loop {
                let page = self.list(ns, &params).await?;
                for p in page.items.iter().filter(|p| holds_ip(p, scope)) {
                    for ip in pod_ips(p) {
                        by_ip.insert(ip, format!("{ns}/{}", p.metadata.name));
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

    /// One page of a namespace's pods, decoded into the few fields judged: a page of full pods
    /// (their specs and managed fields) cost megabytes while 10,000 pods were listed.
    async fn list(&self, ns: &str, params: &ListParams) -> Result<LivePodList, Unconfirmed> {
        let failed = |e: kube::Error| Unconfirmed::ApiServerFailed(e.into());
        let request = kube::core::Request::new(format!("/api/v1/namespaces/{ns}/pods"))
            .list(params)
            .map_err(|e| failed(kube::Error::BuildRequest(e)))?;
        self.client.request(request).await.map_err(failed)
    }
}

/// What a pod listing is read for.
#[derive(Deserialize)]
struct LivePodList {
    metadata: ListMeta,
    items: Vec<LivePod>,
}

#[derive(Deserialize)]
struct LivePod {
    metadata: LivePodMeta,
    status: Option<LivePodStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LivePodMeta {
    name: String,
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LivePodStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs", default)]
    pod_ips: Vec<LivePodIp>,
}

#[derive(Deserialize)]
struct LivePodIp {
    ip: String,
}

/// A pod that may serve on its IP now or soon: of the scope, not being deleted, not finished.
fn holds_ip(p: &LivePod, scope: &PodScope) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    p.metadata.deletion_timestamp.is_none()
        && matches!(phase, Some("Running") | Some("Pending"))
        && scope.matches(&p.metadata.namespace, &p.metadata.labels)
}

/// The same judgement on the watch cache's record of a pod.
fn info_holds_ip(p: &PodInfo, scope: &PodScope) -> bool {
    p.deletion_timestamp.is_none()
        && matches!(p.phase, PodPhase::Running | PodPhase::Pending)
        && scope.matches(&p.namespace, &p.labels)
}

fn pod_ips(p: &LivePod) -> Vec<IpAddr> {
    let Some(status) = &p.status else {
        return Vec::new();
    };
    let listed = status.pod_ips.iter().map(|i| i.ip.as_str());
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
    use super::super::fake_api::{api_pod, ip, scope, view, FakeApiServer};
    use super::*;
    use serde_json::json;

    /// A pod as the API server sends it, decoded as the watch (`Pod`) or this check (`LivePod`) does.
    fn pod<T: serde::de::DeserializeOwned>(ns: &str, app: &str, phase: &str, deleting: bool) -> T {
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
        let pod = pod::<LivePod>;
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

    /// Issue 15, case 5: the cache saw orders-1 leave 10.0.0.1; orders-2 took the address and
    /// registered before the watch delivered it. The pod that left is gone for good, but the API
    /// server has a pod of the binding on the address now: no removal.
    #[tokio::test]
    async fn case_5_a_new_pod_on_the_address_the_watch_has_not_delivered_stops_the_removal() {
        let old = api_pod("orders-1", "orders", &["10.0.0.1"]);
        let (client, _) = FakeApiServer::with(vec![api_pod("orders-2", "orders", &["10.0.0.1"])])
            .start()
            .await;
        let view = view(&[old], &[]);
        assert_eq!(view.tombstones_for_ip(&ip("10.0.0.1")).len(), 1);
        assert!(view.pods_with_ip(&ip("10.0.0.1")).is_empty());
        let s = scope();
        let check = PodCheck::new(client, &view, Some(&s), [ip("10.0.0.1")]);
        let why = check.api_server(ip("10.0.0.1")).await.unwrap_err();
        assert!(
            matches!(&why, Unconfirmed::ApiServerHasPod { pod, .. } if pod == "shop/orders-2"),
            "{why}"
        );
    }

    /// Enough addresses to confirm for one listing to answer for all.
    fn listed_addresses() -> Vec<IpAddr> {
        (1..=LIST_FROM as u8)
            .map(|i| IpAddr::from([10, 0, 0, i]))
            .collect()
    }

    #[tokio::test]
    async fn an_address_no_pod_of_the_scope_holds_is_confirmed_free_one_by_one_or_in_one_listing() {
        let (client, api) =
            FakeApiServer::with(vec![api_pod("billing-1", "billing", &["10.0.0.1"])])
                .start()
                .await;
        let view = view(&[], &[]);
        let s = scope();
        let check = PodCheck::new(client.clone(), &view, Some(&s), [ip("10.0.0.1")]);
        assert!(check.api_server(ip("10.0.0.1")).await.is_ok());
        assert_eq!(
            api.asked.lock().unwrap().as_slice(),
            ["status.podIP=10.0.0.1"]
        );
        // Many addresses: one listing answers for all of them.
        let many = listed_addresses();
        let check = PodCheck::new(client, &view, Some(&s), many.clone());
        for ip in many {
            assert!(check.api_server(ip).await.is_ok());
        }
        let asked = api.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert!(asked[1].starts_with("status.phase!="), "{asked:?}");
    }

    /// With many pods watched, a listing costs more than a few lookups: addresses are asked one by
    /// one up to one per `PODS_PER_LOOKUP` pods (at 30,000 pods, listings of 8 s held passes up).
    #[tokio::test]
    async fn with_many_pods_watched_addresses_are_asked_one_by_one_up_to_a_share_of_them() {
        let (client, api) = FakeApiServer::with(vec![]).start().await;
        let pods = (LIST_FROM + 1) * PODS_PER_LOOKUP;
        let live: Vec<_> = (0..pods)
            .map(|i| {
                let ip = format!("10.1.{}.{}", i / 250, i % 250);
                api_pod(&format!("orders-{i}"), "orders", &[ip.as_str()])
            })
            .collect();
        let view = view(&[], &live);
        let s = scope();
        let many = listed_addresses();
        let check = PodCheck::new(client.clone(), &view, Some(&s), many.clone());
        for ip in &many {
            assert!(check.api_server(*ip).await.is_ok());
        }
        let asked = api.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), LIST_FROM, "{asked:?}");
        assert!(
            asked.iter().all(|q| q.starts_with("status.podIP=")),
            "{asked:?}"
        );
        // One more than the share: one listing.
        let more: Vec<IpAddr> = (1..=LIST_FROM as u8 + 1)
            .map(|i| IpAddr::from([10, 0, 1, i]))
            .collect();
        let check = PodCheck::new(client, &view, Some(&s), more.clone());
        for ip in more {
            assert!(check.api_server(ip).await.is_ok());
        }
        let asked = api.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), LIST_FROM + 1, "{asked:?}");
        assert!(asked[LIST_FROM].starts_with("status.phase!="), "{asked:?}");
    }

    /// A listing that takes longer than the TTL stands for the pass's confirmations all the same:
    /// counted from its start, each confirmation listed every pod again (benchmark, 10,000 pods).
    #[tokio::test]
    async fn a_slow_listing_answers_for_the_pass_and_is_not_listed_again_per_address() {
        let mut api = FakeApiServer::with(vec![]);
        api.delay = LISTING_TTL + Duration::from_millis(200);
        let (client, api) = api.start().await;
        let view = view(&[], &[]);
        let s = scope();
        let many = listed_addresses();
        let check = PodCheck::new(client, &view, Some(&s), many.clone());
        for ip in many {
            assert!(check.api_server(ip).await.is_ok());
        }
        assert_eq!(api.asked.lock().unwrap().len(), 1);
    }

    /// Issue 15, case 10: on a dual-stack cluster the API server's `status.podIP` selector does
    /// not find a pod by its second address; the check lists the scope's pods instead.
    #[tokio::test]
    async fn case_10_a_pod_holding_the_address_as_its_second_family_stops_the_removal() {
        let dual = api_pod("orders-2", "orders", &["10.0.0.2", "fd00::2"]);
        let (client, _) = FakeApiServer::with(vec![dual.clone()]).start().await;
        let s = scope();
        // Where the cache shows no dual-stack pod, the field selector alone misses it.
        let single = view(&[], &[api_pod("orders-9", "orders", &["10.0.0.9"])]);
        let blind = PodCheck::new(client.clone(), &single, Some(&s), [ip("fd00::2")]);
        assert!(blind.api_server(ip("fd00::2")).await.is_ok());
        // A dual-stack pod in the cache (any pod, here one of another app): the listing finds it.
        let dual_view = view(
            &[],
            &[api_pod("billing-1", "billing", &["10.0.0.3", "fd00::3"])],
        );
        let check = PodCheck::new(client, &dual_view, Some(&s), [ip("fd00::2")]);
        let why = check.api_server(ip("fd00::2")).await.unwrap_err();
        assert!(
            matches!(&why, Unconfirmed::ApiServerHasPod { pod, .. } if pod == "shop/orders-2"),
            "{why}"
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
            let listed: LivePod =
                serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
            assert_eq!(holds_ip(&listed, &s), want, "{p:?}");
        }
    }
}
