//! Nacos 3.x admin API (`/nacos/v3/admin/ns/...`, token required). 3.x answers HTTP 410 to the
//! v1/v2 admin and console APIs unless `nacos.core.api.compatibility.*.enabled` is set.
//!
//! - Listing: `GET /v3/admin/ns/service` names the clusters (`clusterMap`); `GET
//!   /v3/admin/ns/instance/list` lists one cluster (`clusterName` defaults to DEFAULT, not to all),
//!   unpaged, disabled instances included. A service that does not exist: code 21008 (HTTP 400)
//!   on the detail, code 30000 (HTTP 404) `service G@@S is not found!` on the list; a cluster that
//!   went meanwhile: code 30000 `cluster C is not found!`.
//! - `GET /v3/admin/ns/instance` reads one instance (with `enabled`); code 20004 when missing.
//! - Writes: `DELETE /v3/admin/ns/instance` (answered `ok` for a missing one too, and for one
//!   owned by a live gRPC connection, which it leaves); `PUT /v3/admin/ns/instance/partial`
//!   changes only the fields sent, and keeps `metadata` in an overlay as 2.x does.
//! - Listings come from a view refreshed about 500 ms after a change, as on 2.x.

use std::collections::BTreeMap;

use reqwest::Method;

use super::error::Result;
use super::transport::{Operation, Req, Transport};
use super::v1::{self, instance_params, is_missing_cluster, is_missing_service};
use super::wire::{self, Listed, WireInstance};
use crate::model::{Instance, InstanceKey, ServiceKey};

const INSTANCE: &str = "/nacos/v3/admin/ns/instance";
const INSTANCE_PARTIAL: &str = "/nacos/v3/admin/ns/instance/partial";
const INSTANCE_LIST: &str = "/nacos/v3/admin/ns/instance/list";
const SERVICE: &str = "/nacos/v3/admin/ns/service";
const SERVICE_LIST: &str = "/nacos/v3/admin/ns/service/list";
pub(super) const STATE: &str = "/nacos/v3/admin/core/state";
pub(super) const NAMESPACES: &str = "/nacos/v3/admin/core/namespace/list";

/// Every service name of `group`.
pub(super) async fn list_services(t: &Transport, group: &str) -> Result<Vec<String>> {
    let req = Req::get(
        Operation::ListServices,
        SERVICE_LIST,
        vec![
            ("namespaceId", t.ns()),
            ("groupNameParam", group.to_string()),
            ("serviceNameParam", String::new()),
            ("ignoreEmptyService", "false".into()),
            ("withInstances", "false".into()),
        ],
    );
    let services = t.paged(&req, wire::parse_v3_service_list).await?;
    // groupNameParam may be a fuzzy match: keep the exact group only.
    Ok(services
        .into_iter()
        .filter(|s| s.group.as_deref().is_none_or(|g| g == group))
        .map(|s| s.name)
        .collect())
}

/// Every instance of `service` in the `wanted` clusters (all when empty).
pub(super) async fn list_instances(
    t: &Transport,
    service: &ServiceKey,
    wanted: &[String],
) -> Result<Vec<Listed>> {
    let req = Req::get(
        Operation::ListInstances,
        SERVICE,
        t.service_query(service, []),
    );
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
        let req = Req::get(
            Operation::ListInstances,
            INSTANCE_LIST,
            t.service_query(
                service,
                [
                    ("clusterName", cluster.clone()),
                    ("healthyOnly", "false".into()),
                ],
            ),
        );
        match t.request(&req).await?.ok() {
            Ok(r) => out.extend(r.parse(wire::parse_v3_instances)?.items),
            Err(e) if is_missing_cluster(&e, &cluster) || is_missing_service(&e, service) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One instance, whatever its enabled state; `None` when the server has no such instance.
pub(super) async fn get_instance(
    t: &Transport,
    key: &InstanceKey,
    ip_text: &str,
) -> Result<Option<WireInstance>> {
    let req = Req::get(
        Operation::GetInstance,
        INSTANCE,
        instance_params(t, key, ip_text),
    );
    match t.request(&req).await?.ok() {
        Ok(r) => Ok(Some(r.parse(wire::parse_instance_detail)?)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) async fn deregister(t: &Transport, instance: &Instance) -> Result<()> {
    v1::delete_at(t, INSTANCE, instance).await
}

/// `PUT .../instance/partial` with `enabled` and `metadata` only (the weight stays).
pub(super) async fn patch(
    t: &Transport,
    instance: &Instance,
    enabled: bool,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    v1::update_at(
        t,
        Method::PUT,
        INSTANCE_PARTIAL,
        instance,
        enabled,
        metadata,
    )
    .await
}
