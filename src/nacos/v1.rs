//! The v1 HTTP API: Nacos 1.x, and what `apiVersion: V1` speaks to a 2.x server (which still
//! answers it; 3.x answers 410 unless its compatibility switch is on).
//!
//! - Listing: `GET /v1/ns/catalog/service` names the clusters, `GET /v1/ns/catalog/instances`
//!   (clusterName required, paged) lists one cluster, disabled instances included.
//! - A service that does not exist: 404 `service G@@S is not found!` (an empty listing). A cluster
//!   that went between the two calls: 404 `cluster C is not found!` (it has no instance left).
//! - Writes: `DELETE /v1/ns/instance`, `PATCH /v1/ns/instance` (only the fields sent change; 404
//!   `no matched ip found!` when the instance is missing).
//! - Services: `GET /v1/ns/service/list` (paged, over an unordered set: a service created or
//!   removed while paging may be missed until the next pass).

use std::collections::BTreeMap;

use reqwest::Method;

use super::error::{NacosError, Result};
use super::transport::{grouped, Operation, Params, Req, Transport};
use super::wire::{self, Listed};
use crate::model::{Instance, InstanceKey, ServiceKey};

pub(super) const INSTANCE: &str = "/nacos/v1/ns/instance";
const CATALOG_INSTANCES: &str = "/nacos/v1/ns/catalog/instances";
const CATALOG_SERVICE: &str = "/nacos/v1/ns/catalog/service";
pub(super) const SERVICE_LIST: &str = "/nacos/v1/ns/service/list";
pub(super) const SERVER_STATE: &str = "/nacos/v1/console/server/state";
pub(super) const NAMESPACES: &str = "/nacos/v1/console/namespaces";
/// 2.x's namespace listing, tried after the v1 one.
pub(super) const V2_NAMESPACES: &str = "/nacos/v2/console/namespace/list";

/// Every service name of `group` (the `group@@` prefix some servers add is cut).
pub(super) async fn list_services(t: &Transport, group: &str) -> Result<Vec<String>> {
    let req = Req::get(
        Operation::ListServices,
        SERVICE_LIST,
        vec![("namespaceId", t.ns()), ("groupName", group.to_string())],
    );
    let names = t.paged(&req, wire::parse_v1_service_list).await?;
    let prefix = format!("{group}@@");
    Ok(names
        .into_iter()
        .map(|n| n.strip_prefix(&prefix).map(str::to_string).unwrap_or(n))
        .collect())
}

/// Whether `e` is the server saying that `service` does not exist (its answer names the service).
pub(super) fn is_missing_service(e: &NacosError, service: &ServiceKey) -> bool {
    matches!(e, NacosError::NotFound { what, .. } if what.contains(&grouped(service)))
}

/// Whether `e` is the server saying that `cluster` has no instance (any more).
pub(super) fn is_missing_cluster(e: &NacosError, cluster: &str) -> bool {
    let said = format!("cluster {cluster} is not found");
    match e {
        NacosError::NotFound { what, .. } => what.contains(&said),
        NacosError::Server { body, .. } => body.contains(&said),
        _ => false,
    }
}

/// Every instance of `service` in the `wanted` clusters (all when empty).
pub(super) async fn list_instances(
    t: &Transport,
    service: &ServiceKey,
    wanted: &[String],
) -> Result<Vec<Listed>> {
    let req = Req::get(
        Operation::ListInstances,
        CATALOG_SERVICE,
        t.service_query(service, []),
    )
    .signed(service);
    let clusters = match t.request(&req).await?.ok() {
        Ok(r) => r.parse(wire::parse_service_clusters)?,
        Err(e) if is_missing_service(&e, service) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for cluster in clusters
        .into_iter()
        .filter(|c| wanted.is_empty() || wanted.contains(c))
    {
        match catalog_instances(t, service, Some(&cluster)).await {
            Ok(items) => out.extend(items),
            Err(e) if is_missing_cluster(&e, &cluster) || is_missing_service(&e, service) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every page of the catalog listing of `service`: one cluster, or (rnacos, which ignores the
/// cluster) all of them.
pub(super) async fn catalog_instances(
    t: &Transport,
    service: &ServiceKey,
    cluster: Option<&str>,
) -> Result<Vec<Listed>> {
    let cluster = cluster.map(|c| ("clusterName", c.to_string()));
    let req = Req::get(
        Operation::ListInstances,
        CATALOG_INSTANCES,
        t.service_query(service, cluster),
    )
    .signed(service);
    t.paged(&req, wire::parse_catalog_instances).await
}

/// The parameters that name one instance, its ip written as `ip_text`: for a write, as the server
/// listed it (Nacos compares the string: `fd00::1` is not `fd00:0:0:0:0:0:0:1`).
pub(super) fn instance_params(t: &Transport, key: &InstanceKey, ip_text: &str) -> Params {
    vec![
        ("namespaceId", t.ns()),
        ("groupName", key.service.group.clone()),
        ("serviceName", key.service.name.clone()),
        ("clusterName", key.cluster.clone()),
        ("ip", ip_text.to_string()),
        ("port", key.port.to_string()),
    ]
}

/// `DELETE /v1/ns/instance`; persistent instances need `ephemeral=false`.
pub(super) async fn deregister(t: &Transport, instance: &Instance) -> Result<()> {
    delete_at(t, INSTANCE, instance).await
}

/// `PATCH /v1/ns/instance` with `enabled` and `metadata`, nothing else: the weight and the rest
/// stay as they are.
pub(super) async fn patch(
    t: &Transport,
    instance: &Instance,
    enabled: bool,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    update_at(t, Method::PATCH, INSTANCE, instance, enabled, metadata).await
}

/// `DELETE path` of `instance` (every generation names it the same way).
pub(super) async fn delete_at(
    t: &Transport,
    path: &'static str,
    instance: &Instance,
) -> Result<()> {
    let mut params = instance_params(t, &instance.key, &instance.listed_ip);
    params.push(("ephemeral", instance.ephemeral.to_string()));
    let req = Req::write(
        Operation::Deregister,
        Method::DELETE,
        path,
        &instance.key.service,
        params,
    );
    t.request(&req).await?.ok()?.parse(wire::parse_write_ack)
}

/// `method path` of `instance` with `enabled` and `metadata` only: an update that changes just
/// the fields sent (v1 PATCH, v3 partial PUT).
pub(super) async fn update_at(
    t: &Transport,
    method: Method,
    path: &'static str,
    instance: &Instance,
    enabled: bool,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut params = instance_params(t, &instance.key, &instance.listed_ip);
    params.push(("enabled", enabled.to_string()));
    params.push(("metadata", metadata_json(metadata)));
    let req = Req::write(
        Operation::SetEnabled,
        method,
        path,
        &instance.key.service,
        params,
    );
    t.request(&req).await?.ok()?.parse(wire::parse_write_ack)
}

pub(super) fn metadata_json(metadata: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises.
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".into())
}
