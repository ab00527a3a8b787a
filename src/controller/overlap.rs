//! Bindings that govern the same Nacos services. Each binding judges an instance by its own pod
//! selector, so where two bindings share a service, one of them sees the other's live pods as
//! "another app" at best; and the marker of one binding's disable is never lifted by the other.
//! The pass only reports an overlap (a condition and a Warning on every binding involved); the
//! planner's own rule keeps a pod of another selector serving the instance's port from being taken
//! for IP reuse (issue 15, case 2).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::crd::NacosBinding;
use crate::model::ServiceKey;
use crate::nacos::normalize_base_url;

/// What one binding governs, as its last full listing found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// `namespace/name` of the binding.
    pub binding: String,
    /// The server addresses, normalised as the Nacos client does (no trailing `/` or `/nacos`).
    servers: BTreeSet<String>,
    /// The Nacos namespace id (`public` for the public one).
    namespace: String,
    /// Governed services with the clusters the binding limits them to (empty: every cluster).
    services: BTreeMap<ServiceKey, Vec<String>>,
}

impl Claim {
    pub fn new(b: &NacosBinding, binding: String, services: &[(ServiceKey, Vec<String>)]) -> Self {
        let nacos = &b.spec.nacos;
        let namespace = match nacos.namespace.as_str() {
            "" => "public".to_string(),
            ns => ns.to_string(),
        };
        Self {
            binding,
            // As the client will call them (an address the client rejects stands for itself).
            servers: nacos
                .server_addr
                .iter()
                .map(|a| normalize_base_url(a).unwrap_or_else(|_| a.clone()))
                .collect(),
            namespace,
            services: services.iter().cloned().collect(),
        }
    }

    /// The services both claims govern on the same server and namespace, where their clusters meet.
    pub fn shared_with(&self, other: &Claim) -> Vec<ServiceKey> {
        if self.namespace != other.namespace || self.servers.is_disjoint(&other.servers) {
            return Vec::new();
        }
        self.services
            .iter()
            .filter(|(service, clusters)| {
                other.services.get(*service).is_some_and(|theirs| {
                    clusters.is_empty()
                        || theirs.is_empty()
                        || clusters.iter().any(|c| theirs.contains(c))
                })
            })
            .map(|(service, _)| service.clone())
            .collect()
    }
}

/// The claims of every binding this process serves, each forgotten when not renewed in time (a
/// deleted binding stops renewing).
#[derive(Default)]
pub struct Claims(Mutex<HashMap<String, (Claim, Instant, Duration)>>);

impl Claims {
    /// Records `claim` for binding `uid`, standing for `ttl` unless renewed.
    pub fn set(&self, uid: &str, claim: Claim, ttl: Duration) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(uid.to_string(), (claim, Instant::now(), ttl));
    }

    /// Keeps the claims of the bindings `exists` accepts (the others were deleted).
    pub fn retain(&self, mut exists: impl FnMut(&str) -> bool) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|uid, _| exists(uid));
    }

    /// A message naming each other binding that shares services with `uid`'s, or `None`.
    pub fn overlap(&self, uid: &str) -> Option<String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at, ttl)| at.elapsed() <= *ttl);
        let (mine, _, _) = map.get(uid)?;
        let mut others: Vec<(&str, Vec<ServiceKey>)> = map
            .iter()
            .filter(|(other, _)| other.as_str() != uid)
            .map(|(_, (theirs, _, _))| (theirs.binding.as_str(), mine.shared_with(theirs)))
            .filter(|(_, shared)| !shared.is_empty())
            .collect();
        if others.is_empty() {
            return None;
        }
        others.sort();
        let named: Vec<String> = others
            .iter()
            .map(|(binding, shared)| {
                let list: Vec<String> = shared.iter().take(5).map(ToString::to_string).collect();
                let more = shared.len().saturating_sub(5);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{} with binding {binding}{more}", list.join(", "))
            })
            .collect();
        Some(format!(
            "services governed by another binding on the same Nacos namespace: {}; each binding \
             judges the instances by its own pod selector, so a pod only the other selects is no \
             evidence of life for this one: give each service one binding, or one selector that \
             matches every backend",
            named.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(addr: &str, namespace: &str) -> NacosBinding {
        serde_json::from_value(json!({
            "apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
            "metadata": {"name": "b", "namespace": "shop"},
            "spec": {
                "nacos": {"serverAddr": [addr], "namespace": namespace},
                "services": [{"name": "orders"}],
                "pods": {"selector": {"matchLabels": {"app": "orders"}}}
            }
        }))
        .unwrap()
    }

    fn claim(name: &str, addr: &str, ns: &str, services: &[(&str, &[&str])]) -> Claim {
        let services: Vec<(ServiceKey, Vec<String>)> = services
            .iter()
            .map(|(s, c)| {
                (
                    ServiceKey::new("DEFAULT_GROUP", *s),
                    c.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        Claim::new(&binding(addr, ns), name.to_string(), &services)
    }

    #[test]
    fn services_are_shared_on_one_server_and_namespace_where_clusters_meet() {
        let a = claim(
            "shop/a",
            "http://Nacos:8848/nacos/",
            "",
            &[("orders", &[]), ("pay", &["A"])],
        );
        let same = claim(
            "team/b",
            "http://nacos:8848",
            "public",
            &[("orders", &["X"]), ("pay", &["A", "B"])],
        );
        let names = |v: Vec<ServiceKey>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(names(a.shared_with(&same)), ["orders", "pay"]);
        let other_cluster = claim("team/c", "http://nacos:8848", "", &[("pay", &["B"])]);
        assert!(a.shared_with(&other_cluster).is_empty());
        let other_ns = claim("team/d", "http://nacos:8848", "dev", &[("orders", &[])]);
        assert!(a.shared_with(&other_ns).is_empty());
        let other_server = claim("team/e", "http://nacos-2:8848", "", &[("orders", &[])]);
        assert!(a.shared_with(&other_server).is_empty());
        // Written without a scheme, the same server as the client sees it.
        let bare = claim("team/f", "nacos:8848", "", &[("orders", &[])]);
        assert_eq!(names(a.shared_with(&bare)), ["orders"]);
    }

    #[test]
    fn each_binding_of_an_overlap_is_told_and_a_claim_not_renewed_is_forgotten() {
        let claims = Claims::default();
        let ttl = Duration::from_secs(60);
        claims.set(
            "uid-a",
            claim("shop/a", "http://nacos:8848", "", &[("orders", &[])]),
            ttl,
        );
        assert_eq!(claims.overlap("uid-a"), None);
        claims.set(
            "uid-b",
            claim("team/b", "http://nacos:8848", "", &[("orders", &[])]),
            ttl,
        );
        let msg = claims.overlap("uid-a").expect("an overlap");
        assert!(msg.contains("orders with binding team/b"), "{msg}");
        let msg = claims.overlap("uid-b").expect("an overlap");
        assert!(msg.contains("orders with binding shop/a"), "{msg}");
        // A deleted binding stops renewing its claim.
        claims.set(
            "uid-b",
            claim("team/b", "http://nacos:8848", "", &[("orders", &[])]),
            Duration::ZERO,
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(claims.overlap("uid-a"), None);
    }
}
