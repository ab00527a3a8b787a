//! Registry types shared by the Nacos client (which produces them) and the planner (which reads them).
//! Plain data: no I/O, no Kubernetes types.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// The metadata key that marks an instance as disabled by this operator; its value is the binding's
/// UID, a space and the binding's `namespace/name` (markers of earlier versions hold the UID alone).
pub const DISABLED_BY_KEY: &str = "nacos-reconciler.io/disabled-by";

/// A Nacos service inside one Nacos namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub group: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(group: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group == "DEFAULT_GROUP" {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}@@{}", self.group, self.name)
        }
    }
}

/// Identifies one instance within a service: Nacos keys instances by ip, port and cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub service: ServiceKey,
    pub cluster: String,
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{} {}:{}", self.service, ip, self.port),
            IpAddr::V6(ip) => write!(f, "{} [{}]:{}", self.service, ip, self.port),
        }
    }
}

/// One instance as the registry lists it, disabled ones included.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub key: InstanceKey,
    /// The ip exactly as the server lists it: writes must send it so (Nacos compares the string,
    /// and Java registers IPv6 in its long form, `fd00:0:0:0:0:0:0:1`).
    pub listed_ip: String,
    pub ephemeral: bool,
    pub enabled: bool,
    /// As reported by the server; informational only (client list APIs lie about it).
    pub healthy: bool,
    pub weight: f64,
    pub metadata: BTreeMap<String, String>,
}

#[cfg(test)]
impl Instance {
    /// Tests' instance: `ip:8080` of `DEFAULT_GROUP/orders`, cluster `DEFAULT`, ephemeral,
    /// enabled, healthy, no metadata.
    pub fn of_orders(ip: &str) -> Self {
        Self {
            key: InstanceKey {
                service: ServiceKey::new("DEFAULT_GROUP", "orders"),
                cluster: "DEFAULT".into(),
                ip: ip.parse().expect("an IP"),
                port: 8080,
            },
            listed_ip: ip.into(),
            ephemeral: true,
            enabled: true,
            healthy: true,
            weight: 1.0,
            metadata: BTreeMap::new(),
        }
    }
}

impl Instance {
    /// The binding UID recorded when this operator disabled the instance, if any.
    pub fn disabled_by(&self) -> Option<&str> {
        self.marker().map(|(uid, _)| uid)
    }

    /// The marker's UID and, where it names one, the binding's `namespace/name`.
    fn marker(&self) -> Option<(&str, Option<&str>)> {
        let value = self.metadata.get(DISABLED_BY_KEY)?;
        Some(match value.split_once(' ') {
            Some((uid, binding)) => (uid, Some(binding)),
            None => (value.as_str(), None),
        })
    }
}

/// A binding as the disabled-by markers name it, and which markers it takes as its own.
#[derive(Debug, Clone, Copy)]
pub struct MarkerOwner<'a> {
    pub uid: &'a str,
    /// `namespace/name`
    pub binding: &'a str,
}

impl MarkerOwner<'_> {
    /// The marker's value this binding writes.
    pub fn marker(&self) -> String {
        format!("{} {}", self.uid, self.binding)
    }

    /// Disabled under this binding's UID, or under its `namespace/name`: names are unique in a
    /// cluster, so a marker of that name and another UID is its predecessor's, deleted and created
    /// again (a GitOps replace, a restore), whose instances it takes over.
    pub fn owns(&self, instance: &Instance) -> bool {
        instance
            .marker()
            .is_some_and(|(uid, binding)| uid == self.uid || binding == Some(self.binding))
    }
}

/// A complete listing of one service. Only a listing that succeeded in full becomes a snapshot:
/// a failed or partial listing is an error, never an empty snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSnapshot {
    pub service: ServiceKey,
    pub instances: Vec<Instance>,
    /// Listed at addresses the operator cannot act on: Foreign, counted, never touched.
    pub unaddressable: Vec<Unaddressable>,
}

/// An instance Nacos lists at an address that is no IP and port the operator could match or write
/// to (a hostname, a zoned IPv6 address, port 0): Nacos accepts them, so one must not fail the
/// listing of the whole service.
#[derive(Debug, Clone, PartialEq)]
pub struct Unaddressable {
    pub cluster: String,
    /// `ip:port` as listed.
    pub address: String,
    pub why: String,
}

/// What the planner needs to know about a pod; the cluster view prunes everything else away.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
    /// Whether the pod matches the binding's `pods` selector and namespaces.
    /// The cluster view computes it per binding; pods of other apps are kept to recognise IP reuse.
    pub matches: bool,
    pub phase: PodPhase,
    pub ready: bool,
    /// lastTransitionTime of the Ready condition, when known.
    pub ready_since: Option<chrono::DateTime<chrono::Utc>>,
    pub deletion_timestamp: Option<chrono::DateTime<chrono::Utc>>,
    pub node_name: Option<String>,
    pub host_network: bool,
    /// Declared container ports: (name, port).
    pub container_ports: Vec<(Option<String>, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// A pod the cluster view saw deleted, kept for a while so the planner can name it and date the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTombstone {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub matches: bool,
    pub deleted_at: chrono::DateTime<chrono::Utc>,
    /// The deleted pod's container ports (name, number): a named `pods.port` still resolves once
    /// the binding's last pod is gone.
    pub container_ports: Vec<(Option<String>, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeReadiness {
    Ready,
    NotReady,
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub internal_ips: Vec<IpAddr>,
    pub pod_cidrs: Vec<ipnet::IpNet>,
    pub readiness: NodeReadiness,
    /// lastTransitionTime of the Ready condition, when known.
    pub readiness_since: Option<chrono::DateTime<chrono::Utc>>,
    /// When this operator saw the readiness change, by its own clock (whole seconds do not blur
    /// it); `None` when it did not see the change happen (first seen in a listing).
    pub readiness_seen: Option<chrono::DateTime<chrono::Utc>>,
}

/// A node that was deleted, or addresses a node no longer has. Nothing else tells that an address
/// was a node's: an instance on it is Gone (not Orphan: no pod held it), and the addresses stay in
/// the default scope for a while so that it is not mistaken for a Foreign one.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDeparture {
    pub name: String,
    pub internal_ips: Vec<IpAddr>,
    pub pod_cidrs: Vec<ipnet::IpNet>,
    /// When the view saw it go.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The node object was deleted (else it only lost these addresses).
    pub deleted: bool,
}
