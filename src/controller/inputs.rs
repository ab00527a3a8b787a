//! Turning a NacosBinding (plus the Secrets it references) into what one pass needs: the Nacos client
//! configuration and the planner's policy. Pure functions; the Secret reads happen in `reconcile`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::cluster::LabelMatcher;
use crate::crd::{NacosApiVersion, NacosBindingSpec};
use crate::model::{NodeDeparture, NodeFacts};
use crate::nacos::{ApiGeneration, Credentials, NacosConfig, TlsConfig};
use crate::plan::Policy;

/// Why a binding cannot be acted on as written. Shown in the SpecValid condition and an Event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    #[error("invalid spec: {0}")]
    Spec(String),
    #[error("Secret {namespace}/{name} not found")]
    SecretMissing { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no usable keys: need {need}")]
    SecretKeys {
        namespace: String,
        name: String,
        need: &'static str,
    },
}

/// The Secret data a binding references, already read.
#[derive(Default)]
pub struct SecretData {
    pub credentials: Option<BTreeMap<String, Vec<u8>>>,
    pub ca: Option<BTreeMap<String, Vec<u8>>>,
}

fn text(map: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(|v| String::from_utf8(v.clone()).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The Nacos client configuration of a binding.
pub fn nacos_config(
    namespace: &str,
    spec: &NacosBindingSpec,
    secrets: &SecretData,
) -> Result<NacosConfig, InputError> {
    let mut cfg = NacosConfig::new(spec.nacos.server_addr.clone());
    cfg.namespace = if spec.nacos.namespace == "public" {
        String::new()
    } else {
        spec.nacos.namespace.clone()
    };
    cfg.api = match spec.nacos.api_version {
        NacosApiVersion::Auto => ApiGeneration::Auto,
        NacosApiVersion::V1 => ApiGeneration::V1,
        NacosApiVersion::V2 => ApiGeneration::V2,
        NacosApiVersion::V3 => ApiGeneration::V3,
    };
    if let (Some(r), Some(data)) = (&spec.nacos.credentials_secret_ref, &secrets.credentials) {
        cfg.credentials = match (
            text(data, "username"),
            text(data, "password"),
            text(data, "accessKey"),
            text(data, "secretKey"),
        ) {
            (Some(username), Some(password), _, _) => {
                Credentials::UserPassword { username, password }
            }
            (_, _, Some(access_key), Some(secret_key)) => Credentials::AccessKey {
                access_key,
                secret_key,
            },
            _ => {
                return Err(InputError::SecretKeys {
                    namespace: namespace.to_string(),
                    name: r.name.clone(),
                    need: "username and password, or accessKey and secretKey",
                })
            }
        };
    }
    if let Some(tls) = &spec.nacos.tls {
        let ca_pem = match (&tls.ca_secret_ref, &secrets.ca) {
            (Some(r), Some(data)) => Some(
                ["ca.crt", "ca.pem", "tls.crt"]
                    .iter()
                    .find_map(|k| data.get(*k).cloned())
                    .ok_or_else(|| InputError::SecretKeys {
                        namespace: namespace.to_string(),
                        name: r.name.clone(),
                        need: "ca.crt (PEM)",
                    })?,
            ),
            _ => None,
        };
        cfg.tls = TlsConfig {
            ca_pem,
            insecure_skip_verify: tls.insecure_skip_verify,
        };
    }
    Ok(cfg)
}

/// The binding's scope: its CIDRs, or every node's podCIDRs and InternalIPs, with those of nodes
/// that went in the last hour (their instances are Gone, not Foreign).
pub fn scope(
    spec: &NacosBindingSpec,
    nodes: &[NodeFacts],
    departed: &[NodeDeparture],
) -> Result<Vec<IpNet>, InputError> {
    let explicit = spec
        .scope_networks()
        .map_err(|e| InputError::Spec(e.to_string()))?;
    if !spec.default_scope() {
        return Ok(IpNet::aggregate(&explicit));
    }
    let mut nets: Vec<IpNet> = Vec::new();
    for node in nodes {
        nets.extend(node.pod_cidrs.iter().copied());
        nets.extend(node.internal_ips.iter().map(|ip| host_net(*ip)));
    }
    for gone in departed {
        nets.extend(gone.pod_cidrs.iter().copied());
        nets.extend(gone.internal_ips.iter().map(|ip| host_net(*ip)));
    }
    // The same addresses in as few networks as possible: every instance is checked against them.
    Ok(IpNet::aggregate(&nets))
}

fn host_net(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(v4) => IpNet::V4(ipnet::Ipv4Net::from(v4)),
        IpAddr::V6(v6) => IpNet::V6(ipnet::Ipv6Net::from(v6)),
    }
}

/// The planner's policy for a binding, with its resolved scope.
pub fn policy(spec: &NacosBindingSpec, scope: Vec<IpNet>) -> Result<Policy, InputError> {
    let p = &spec.policy;
    let bad = |e: crate::crd::SpecError| InputError::Spec(e.to_string());
    Ok(Policy {
        action: p.action,
        grace_period: Duration::from_secs(p.grace_period_seconds.into()),
        on_pod_terminating: p.on_pod_terminating,
        on_pod_unready: p.on_pod_unready,
        on_node_unreachable: p.on_node_unreachable,
        node_unreachable_after: Duration::from_secs(p.node_unreachable_seconds.into()),
        max_removals: p.max_removals().map_err(bad)?,
        removal_window: Duration::from_secs(p.removal_window_seconds.into()),
        dry_run: p.dry_run,
        port: spec.pods.port_selector().map_err(bad)?,
        scope,
        instance_claim: instance_claim(spec)?,
    })
}

/// `scope.instanceMetadata` compiled: the instances this cluster claims; `None` claims every one.
fn instance_claim(spec: &NacosBindingSpec) -> Result<Option<LabelMatcher>, InputError> {
    let selector = spec
        .scope
        .as_ref()
        .and_then(|s| s.instance_metadata.as_ref());
    selector
        .map(LabelMatcher::new)
        .transpose()
        .map_err(|e| InputError::Spec(format!("scope.instanceMetadata: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeReadiness;

    #[test]
    fn the_default_scope_is_the_nodes_networks_merged() {
        let node = |i: u8| NodeFacts {
            name: format!("n{i}"),
            internal_ips: vec![format!("10.245.0.{i}").parse().unwrap()],
            pod_cidrs: vec![format!("10.244.{i}.0/24").parse().unwrap()],
            readiness: NodeReadiness::Ready,
            readiness_since: None,
            readiness_seen: None,
        };
        let nodes: Vec<NodeFacts> = (0..4).map(node).collect();
        let spec: NacosBindingSpec = serde_json::from_value(serde_json::json!({
            "nacos": {"serverAddr": ["http://127.0.0.1:8848"]},
            "services": [{"name": "orders"}],
            "pods": {"selector": {"matchLabels": {"app": "orders"}}}
        }))
        .unwrap();
        let departed = [NodeDeparture {
            name: "gone".into(),
            internal_ips: vec!["10.245.0.9".parse().unwrap()],
            pod_cidrs: vec![],
            at: chrono::Utc::now(),
            deleted: true,
        }];
        let nets: Vec<String> = scope(&spec, &nodes, &departed)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.244.0.0/22", "10.245.0.0/30", "10.245.0.9/32"]);
    }
}
