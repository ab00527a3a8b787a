//! Registry types shared by the Nacos client (which produces them) and the planner (which reads them).
//! Plain data: no I/O, no Kubernetes types.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// The metadata key that marks an instance as disabled by this operator; its value is the binding's UID.
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
    pub ephemeral: bool,
    pub enabled: bool,
    /// As reported by the server; informational only (client list APIs lie about it).
    pub healthy: bool,
    pub weight: f64,
    pub metadata: BTreeMap<String, String>,
}

impl Instance {
    /// The binding UID recorded when this operator disabled the instance, if any.
    pub fn disabled_by(&self) -> Option<&str> {
        self.metadata.get(DISABLED_BY_KEY).map(String::as_str)
    }
}

/// A complete listing of one service. Only a listing that succeeded in full becomes a snapshot:
/// a failed or partial listing is an error, never an empty snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSnapshot {
    pub service: ServiceKey,
    pub instances: Vec<Instance>,
}
