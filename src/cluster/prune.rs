//! Pure conversions from Kubernetes objects to the pruned records the view keeps.
//! Everything a decision does not need is dropped here, right after deserialisation.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{NodeFacts, NodeReadiness, PodFacts, PodPhase, PodTombstone};

/// Kubernetes writes its timestamps in whole seconds: closer than that, a written time is as good
/// as the moment this operator saw the change.
pub(super) const TIMESTAMP_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// A pod as the view stores it: the planner's [`PodFacts`] minus `matches`, plus the labels needed to
/// compute `matches` per binding.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
    pub phase: PodPhase,
    pub ready: bool,
    pub ready_since: Option<DateTime<Utc>>,
    pub deletion_timestamp: Option<DateTime<Utc>>,
    pub node_name: Option<String>,
    pub host_network: bool,
    pub container_ports: Vec<(Option<String>, u16)>,
}

impl PodInfo {
    pub fn facts(&self, matches: bool) -> PodFacts {
        PodFacts {
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            ips: self.ips.clone(),
            matches,
            phase: self.phase,
            ready: self.ready,
            ready_since: self.ready_since,
            deletion_timestamp: self.deletion_timestamp,
            node_name: self.node_name.clone(),
            host_network: self.host_network,
            container_ports: self.container_ports.clone(),
        }
    }
}

/// A deleted pod as the view remembers it; labels kept so `matches` can be computed per binding.
#[derive(Debug, Clone, PartialEq)]
pub struct TombstoneInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
    pub deleted_at: DateTime<Utc>,
    pub container_ports: Vec<(Option<String>, u16)>,
}

impl TombstoneInfo {
    /// deleted_at is when the view learned of the deletion, or the pod's deletionTimestamp when that is
    /// earlier: from a listing, the grace clock should not restart because the watch was late. A
    /// deletion a watch delivered as it happened (`live`) is dated by its arrival, less the second
    /// Kubernetes truncates its times to: a deletionTimestamp further back than that is a clock of
    /// the API server's behind ours, which would shorten the grace (issue 15, case 11).
    pub fn from_pod(pod: &PodInfo, observed_at: DateTime<Utc>, live: bool) -> Self {
        let deleted_at = match pod.deletion_timestamp {
            Some(ts) if !live || observed_at - ts <= TIMESTAMP_RESOLUTION => ts.min(observed_at),
            _ => observed_at,
        };
        Self {
            uid: pod.uid.clone(),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            labels: pod.labels.clone(),
            ips: pod.ips.clone(),
            deleted_at,
            container_ports: pod.container_ports.clone(),
        }
    }

    pub fn facts(&self, matches: bool) -> PodTombstone {
        PodTombstone {
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            ips: self.ips.clone(),
            matches,
            deleted_at: self.deleted_at,
            container_ports: self.container_ports.clone(),
        }
    }
}

/// One endpoint address of an EndpointSlice with its conditions (None = not reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub ips: Vec<IpAddr>,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    /// targetRef name when it refers to a Pod.
    pub pod_name: Option<String>,
}

/// An EndpointSlice reduced to its addresses and conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    pub namespace: String,
    pub name: String,
    /// The `kubernetes.io/service-name` label.
    pub service_name: Option<String>,
    pub endpoints: Vec<EndpointInfo>,
}

/// What the view knows about one IP from EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFacts {
    pub namespace: String,
    pub slice: String,
    pub service_name: Option<String>,
    pub endpoint: EndpointInfo,
}

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub use crate::time::time_to_chrono as to_chrono;

/// Parses IPs, dropping malformed ones and duplicates while keeping order.
fn parse_ips<'a>(raw: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for ip in raw
        .into_iter()
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
    {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

fn parse_phase(phase: Option<&str>) -> PodPhase {
    match phase {
        Some("Pending") => PodPhase::Pending,
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    }
}

/// Prunes a Pod. None when it lacks the identity the view keys on (name, namespace).
pub fn pod_info(pod: &Pod) -> Option<PodInfo> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    // status.podIPs is authoritative; podIP is kept for objects written by old or minimal clients.
    let listed = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|p| p.ip.as_str());
    let single = status.and_then(|s| s.pod_ip.as_deref());
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready");
    let container_ports = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| Some((p.name.clone(), u16::try_from(p.container_port).ok()?)))
        .collect();
    Some(PodInfo {
        uid: meta.uid.clone().unwrap_or_default(),
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        labels: meta.labels.clone().unwrap_or_default(),
        ips: parse_ips(listed.chain(single)),
        phase: parse_phase(status.and_then(|s| s.phase.as_deref())),
        ready: ready_condition.is_some_and(|c| c.status == "True"),
        ready_since: ready_condition
            .and_then(|c| c.last_transition_time.as_ref())
            .and_then(to_chrono),
        deletion_timestamp: meta.deletion_timestamp.as_ref().and_then(to_chrono),
        node_name: spec.and_then(|s| s.node_name.clone()),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        container_ports,
    })
}

/// Prunes a Node. None without a name.
pub fn node_facts(node: &Node) -> Option<NodeFacts> {
    let status = node.status.as_ref();
    let internal = status
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.as_str());
    let spec = node.spec.as_ref();
    let cidrs = spec
        .and_then(|s| s.pod_cidrs.as_ref())
        .filter(|c| !c.is_empty())
        .map(|c| c.iter().map(String::as_str).collect::<Vec<_>>())
        .or_else(|| spec.and_then(|s| s.pod_cidr.as_deref()).map(|c| vec![c]))
        .unwrap_or_default();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready");
    Some(NodeFacts {
        name: node.metadata.name.clone()?,
        internal_ips: parse_ips(internal),
        pod_cidrs: cidrs
            .into_iter()
            .filter_map(|c| c.trim().parse::<ipnet::IpNet>().ok())
            .collect(),
        readiness: match ready.map(|c| c.status.as_str()) {
            Some("True") => NodeReadiness::Ready,
            Some("False") => NodeReadiness::NotReady,
            _ => NodeReadiness::Unknown,
        },
        readiness_since: ready
            .and_then(|c| c.last_transition_time.as_ref())
            .and_then(to_chrono),
        readiness_seen: None,
    })
}

/// Prunes an EndpointSlice. None without name or namespace.
pub fn slice_info(slice: &EndpointSlice) -> Option<SliceInfo> {
    let meta = &slice.metadata;
    let endpoints = slice
        .endpoints
        .iter()
        .map(|ep| {
            let conditions = ep.conditions.as_ref();
            EndpointInfo {
                ips: parse_ips(ep.addresses.iter().map(String::as_str)),
                ready: conditions.and_then(|c| c.ready),
                serving: conditions.and_then(|c| c.serving),
                terminating: conditions.and_then(|c| c.terminating),
                pod_name: ep
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone()),
            }
        })
        .filter(|ep| !ep.ips.is_empty())
        .collect();
    Some(SliceInfo {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        service_name: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL).cloned()),
        endpoints,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, NodeAddress, NodeCondition, NodeSpec, NodeStatus,
        ObjectReference, PodCondition, PodIP, PodSpec, PodStatus,
    };
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn time(secs: i64) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
        )
    }

    pub(crate) fn utc(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// A Running, Ready pod with the given IPs and labels.
    pub(crate) fn pod(ns: &str, name: &str, ips: &[&str], labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{ns}-{name}")),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                annotations: Some(BTreeMap::from([("big".into(), "x".repeat(1000))])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                containers: vec![Container {
                    name: "app".into(),
                    ports: Some(vec![
                        ContainerPort {
                            name: Some("http".into()),
                            container_port: 8080,
                            ..ContainerPort::default()
                        },
                        ContainerPort {
                            container_port: 9090,
                            ..ContainerPort::default()
                        },
                    ]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: ips.first().map(|s| s.to_string()),
                pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
                conditions: Some(vec![
                    PodCondition {
                        type_: "PodScheduled".into(),
                        status: "True".into(),
                        ..PodCondition::default()
                    },
                    PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(time(1_000)),
                        ..PodCondition::default()
                    },
                ]),
                ..PodStatus::default()
            }),
        }
    }

    pub(crate) fn node(name: &str, ip: &str, ready: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidrs: Some(vec!["10.244.1.0/24".into(), "not-a-cidr".into()]),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                    NodeAddress {
                        type_: "ExternalIP".into(),
                        address: "203.0.113.9".into(),
                    },
                ]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_transition_time: Some(time(2_000)),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    #[test]
    fn pod_keeps_only_decision_fields() {
        let info = pod_info(&pod(
            "shop",
            "orders-1",
            &["10.244.1.7", "fd00::7"],
            &[("app", "orders")],
        ))
        .unwrap();
        assert_eq!(info.uid, "uid-shop-orders-1");
        assert_eq!(info.namespace, "shop");
        assert_eq!(info.labels.get("app").map(String::as_str), Some("orders"));
        assert_eq!(
            info.ips,
            vec![
                "10.244.1.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
        assert_eq!(info.phase, PodPhase::Running);
        assert!(info.ready);
        assert_eq!(info.ready_since, Some(utc(1_000)));
        assert_eq!(info.deletion_timestamp, None);
        assert_eq!(info.node_name.as_deref(), Some("node-a"));
        assert!(!info.host_network);
        assert_eq!(
            info.container_ports,
            vec![(Some("http".into()), 8080), (None, 9090)]
        );
        let facts = info.facts(true);
        assert!(facts.matches);
        assert_eq!(facts.ips, info.ips);
    }

    #[test]
    fn pod_without_status_is_pending_unknown_and_unready() {
        let mut p = pod("shop", "p", &[], &[]);
        p.status = None;
        let info = pod_info(&p).unwrap();
        assert_eq!(info.phase, PodPhase::Unknown);
        assert!(!info.ready);
        assert!(info.ips.is_empty());
    }

    #[test]
    fn pod_ip_fallback_bad_ips_and_phases() {
        let mut p = pod("shop", "p", &[], &[]);
        let status = p.status.as_mut().unwrap();
        status.pod_ips = None;
        status.pod_ip = Some("10.0.0.1".into());
        status.phase = Some("Failed".into());
        status.conditions.as_mut().unwrap()[1].status = "False".into();
        p.metadata.deletion_timestamp = Some(time(5_000));
        p.spec.as_mut().unwrap().host_network = Some(true);
        let info = pod_info(&p).unwrap();
        assert_eq!(info.ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.phase, PodPhase::Failed);
        assert!(!info.ready);
        assert_eq!(info.deletion_timestamp, Some(utc(5_000)));
        assert!(info.host_network);

        let status = p.status.as_mut().unwrap();
        status.pod_ips = Some(vec![PodIP {
            ip: "garbage".into(),
        }]);
        status.pod_ip = Some("10.0.0.1".into());
        status.phase = Some("Weird".into());
        let info = pod_info(&p).unwrap();
        assert_eq!(info.ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.phase, PodPhase::Unknown);
    }

    #[test]
    fn pod_without_identity_is_dropped() {
        let mut p = pod("shop", "p", &[], &[]);
        p.metadata.namespace = None;
        assert_eq!(pod_info(&p), None);
    }

    #[test]
    fn node_keeps_internal_ips_cidrs_and_readiness() {
        let facts = node_facts(&node("node-a", "192.168.1.10", "True")).unwrap();
        assert_eq!(facts.name, "node-a");
        assert_eq!(
            facts.internal_ips,
            vec!["192.168.1.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            facts.pod_cidrs,
            vec!["10.244.1.0/24".parse::<ipnet::IpNet>().unwrap()]
        );
        assert_eq!(facts.readiness, NodeReadiness::Ready);
        assert_eq!(facts.readiness_since, Some(utc(2_000)));

        assert_eq!(
            node_facts(&node("n", "1.1.1.1", "False"))
                .unwrap()
                .readiness,
            NodeReadiness::NotReady
        );
        assert_eq!(
            node_facts(&node("n", "1.1.1.1", "Unknown"))
                .unwrap()
                .readiness,
            NodeReadiness::Unknown
        );
    }

    #[test]
    fn node_falls_back_to_single_pod_cidr_and_tolerates_missing_status() {
        let mut n = node("n", "1.1.1.1", "True");
        n.spec = Some(NodeSpec {
            pod_cidr: Some("10.244.2.0/24".into()),
            pod_cidrs: Some(vec![]),
            ..NodeSpec::default()
        });
        n.status = None;
        let facts = node_facts(&n).unwrap();
        assert_eq!(
            facts.pod_cidrs,
            vec!["10.244.2.0/24".parse::<ipnet::IpNet>().unwrap()]
        );
        assert_eq!(facts.readiness, NodeReadiness::Unknown);
        assert!(facts.internal_ips.is_empty());
    }

    pub(crate) fn slice(
        ns: &str,
        name: &str,
        endpoints: Vec<(&str, Option<bool>, &str)>,
    ) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.into(),
                    "orders".into(),
                )])),
                ..ObjectMeta::default()
            },
            endpoints: endpoints
                .into_iter()
                .map(|(ip, ready, pod)| Endpoint {
                    addresses: vec![ip.into()],
                    conditions: Some(EndpointConditions {
                        ready,
                        serving: ready,
                        terminating: Some(false),
                    }),
                    target_ref: Some(ObjectReference {
                        kind: Some("Pod".into()),
                        name: Some(pod.into()),
                        ..ObjectReference::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ports: None,
        }
    }

    #[test]
    fn slice_keeps_addresses_conditions_and_pod_names() {
        let info = slice_info(&slice(
            "shop",
            "orders-abc",
            vec![
                ("10.244.1.7", Some(true), "orders-1"),
                ("bad", Some(true), "x"),
                ("10.244.1.8", None, "orders-2"),
            ],
        ))
        .unwrap();
        assert_eq!(info.service_name.as_deref(), Some("orders"));
        assert_eq!(info.endpoints.len(), 2, "unparseable addresses are dropped");
        assert_eq!(info.endpoints[0].ready, Some(true));
        assert_eq!(info.endpoints[0].pod_name.as_deref(), Some("orders-1"));
        assert_eq!(info.endpoints[1].ready, None);
        assert_eq!(info.endpoints[1].terminating, Some(false));
    }

    #[test]
    fn tombstone_uses_the_earlier_of_deletion_timestamp_and_observation() {
        let mut info = pod_info(&pod("shop", "p", &["10.0.0.1"], &[])).unwrap();
        for live in [false, true] {
            let tomb = TombstoneInfo::from_pod(&info, utc(100), live);
            assert_eq!(tomb.deleted_at, utc(100));
        }
        // Found in a listing after a watch gap: the deletionTimestamp stands for the deletion.
        info.deletion_timestamp = Some(utc(40));
        let tomb = TombstoneInfo::from_pod(&info, utc(100), false);
        assert_eq!(tomb.deleted_at, utc(40));
        // Delivered as it happened: a deletionTimestamp a minute back is the API server's clock
        // behind ours (case 11); within the second timestamps are truncated to, it stands.
        assert_eq!(
            TombstoneInfo::from_pod(&info, utc(100), true).deleted_at,
            utc(100)
        );
        let just = utc(40) + chrono::TimeDelta::milliseconds(800);
        assert_eq!(
            TombstoneInfo::from_pod(&info, just, true).deleted_at,
            utc(40)
        );
        info.deletion_timestamp = Some(utc(400));
        let tomb = TombstoneInfo::from_pod(&info, utc(100), true);
        assert_eq!(tomb.deleted_at, utc(100));
        let facts = tomb.facts(false);
        assert_eq!((facts.name.as_str(), facts.matches), ("p", false));
    }
}
