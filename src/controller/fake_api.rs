//! For unit tests of the code that asks the API server: a fake API server over HTTP that answers
//! pod listings of namespace `shop` as a real one does, and the matching pods, scope and views.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use serde_json::json;

use crate::cluster::{ClusterView, PodScope};

/// The pods of app `orders` in namespace `shop`.
pub fn scope() -> PodScope {
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), "orders".into())])),
        match_expressions: None,
    };
    PodScope::new("shop", &selector, &[]).unwrap()
}

/// Pods as the API server has them; the cache (the view) may not have seen them yet.
pub struct FakeApiServer {
    pub pods: Vec<Pod>,
    /// The field selector of every pod listing asked.
    pub asked: std::sync::Mutex<Vec<String>>,
    /// How long each answer takes (a busy API server).
    pub delay: std::time::Duration,
}

impl FakeApiServer {
    pub fn with(pods: Vec<Pod>) -> Self {
        Self {
            pods,
            asked: Default::default(),
            delay: std::time::Duration::ZERO,
        }
    }

    /// Answers pod listings of namespace `shop` as an API server does: the `status.podIP`
    /// field selector matches a pod's first address only; other selectors list every pod.
    fn list(&self, query: &str) -> serde_json::Value {
        let selector = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "fieldSelector")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        self.asked.lock().unwrap().push(selector.clone());
        let wanted = selector.strip_prefix("status.podIP=").map(str::to_string);
        let items: Vec<&Pod> = self
            .pods
            .iter()
            .filter(|p| {
                let primary = p.status.as_ref().and_then(|s| s.pod_ip.clone());
                wanted.is_none() || primary == wanted
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "PodList",
               "metadata": {"resourceVersion": "7"}, "items": items})
    }

    pub async fn start(self) -> (Client, Arc<FakeApiServer>) {
        let me = Arc::new(self);
        let served = me.clone();
        let app = axum::Router::new().route(
            "/api/v1/namespaces/shop/pods",
            axum::routing::get(move |req: axum::extract::Request| {
                let served = served.clone();
                async move {
                    tokio::time::sleep(served.delay).await;
                    let list = served.list(req.uri().query().unwrap_or_default());
                    ([("content-type", "application/json")], list.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(url.parse().unwrap());
        (Client::try_from(config).unwrap(), me)
    }
}

pub fn api_pod(name: &str, app: &str, ips: &[&str]) -> Pod {
    let pod_ips: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
        "status": {"phase": "Running", "podIP": ips[0], "podIPs": pod_ips}
    }))
    .unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A synced view that saw `gone` deleted and holds `live`.
pub fn view(gone: &[Pod], live: &[Pod]) -> ClusterView {
    use crate::cluster::{StreamId, Update, ViewState, WatchedKind};
    let id = StreamId::new(WatchedKind::Pod, None);
    let mut state = ViewState::new(Default::default());
    state.register(id.clone());
    let info = |p: &Pod| crate::cluster::pod_info(p).unwrap();
    let all = gone.iter().chain(live).map(info).collect();
    state.apply_pods(&id, Update::Relist(all), chrono::Utc::now());
    for p in gone {
        state.apply_pods(&id, Update::Delete(info(p)), chrono::Utc::now());
    }
    ClusterView::from_state(state)
}
