//! rnacos (0.8.8), an independent server that answers the v1 API, with differences found by
//! reading its source and checking a live server:
//! - No `/nacos/v1/console/server/state`, no v2 naming, no v3 admin: detected as "V1, version
//!   unknown" ([`super::ServerFlavor::V1Compatible`]) when `/nacos/v1/ns/service/list` answers.
//! - **Every open-API listing hides disabled instances** (`/v1/ns/instance/list` and
//!   `/v1/ns/catalog/instances` both filter `enabled=false`). The only listing that shows them is the
//!   console's `/rnacos/api/console/v2/instance/list`, served on the main HTTP port only when
//!   `RNACOS_ENABLE_NO_AUTH_CONSOLE=true` (otherwise that path answers an HTML hint page with 200).
//!   The client probes it and uses it when available ([`super::ServerInfo::lists_disabled`]);
//!   otherwise it lists with `catalog/instances` (enabled only) and a disabled instance can be seen
//!   only one at a time through `GET /v1/ns/instance`, which shows it whatever its state.
//! - Cluster filters are ignored by every listing (instances are keyed by ip:port within a service,
//!   the cluster is an attribute): the client lists once and filters clusters itself.
//! - POST, PUT and PATCH `/v1/ns/instance` are one upsert: a PATCH of a missing instance *creates*
//!   it (Alibaba answers 404), so existence is checked with `GET /v1/ns/instance` first. A PATCH
//!   also marks the instance healthy, and resets `clusterName` to DEFAULT when it is not sent.
//! - PATCH replaces the metadata with what it is sent, but ignores an empty map (`{}`): removing
//!   the last key (the disabled-by marker) is done by sending the marker empty.
//! - Errors are HTTP 500 with a plain-text body (missing instance on `GET /v1/ns/instance`: 500
//!   `error`); auth failures are 403. With open-API auth off, login answers
//!   `accessToken:"AUTH_DISABLED"` for any credentials. Logins are rate-limited per user and minute.
//! - An HTTP DELETE does remove a gRPC-registered instance (unlike Alibaba Nacos).
//! - An unknown namespace id is not an error: listings answer empty, and queries do not create it.
//!   `GET /nacos/v1/console/namespaces` lists the public namespace as `""` plus every namespace
//!   created or used by a registration.

use std::collections::BTreeMap;

use super::error::{NacosError, Result};
use super::transport::{Operation, Req, Transport};
use super::v1::{self, instance_params};
use super::wire::{self, Listed, WireInstance};
use crate::model::{Instance, InstanceKey, ServiceKey, DISABLED_BY_KEY};

const CONSOLE_INSTANCES: &str = "/rnacos/api/console/v2/instance/list";
const PROBE_SERVICE: &str = "nacos-reconciler-probe";

/// rnacos's answer to `GET /v1/ns/instance` for an instance that does not exist: an answer, not
/// a failure to retry.
pub(super) fn missing(status: u16, body: &[u8]) -> bool {
    status == 500 && String::from_utf8_lossy(body).trim() == "error"
}

/// What rnacos's console path says about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Console {
    /// rnacos, its console listing reachable (it shows disabled instances).
    Open,
    /// rnacos, its console off (the path answers a hint page naming R-NACOS).
    Off,
    /// Not rnacos, as far as that path tells.
    Absent,
}

pub(super) async fn console(t: &Transport) -> Console {
    let req = Req::get(
        Operation::ServerInfo,
        CONSOLE_INSTANCES,
        vec![
            ("namespaceId", t.ns()),
            ("groupName", "DEFAULT_GROUP".into()),
            ("serviceName", PROBE_SERVICE.into()),
        ],
    )
    .probing();
    match t.request(&req).await {
        Ok(r) if r.is_success() && wire::parse_rnacos_console_instances(&r.body).is_ok() => {
            Console::Open
        }
        Ok(r) if String::from_utf8_lossy(&r.body).contains("R-NACOS") => Console::Off,
        _ => Console::Absent,
    }
}

/// Every instance of `service` (all clusters: rnacos ignores the filter; the caller keeps the
/// wanted ones). The console listing when reachable, else the catalog (enabled instances only).
pub(super) async fn list_instances(
    t: &Transport,
    service: &ServiceKey,
    console: bool,
) -> Result<Vec<Listed>> {
    if !console {
        return v1::catalog_instances(t, service, None).await;
    }
    let req = Req::get(
        Operation::ListInstances,
        CONSOLE_INSTANCES,
        t.service_query(service, []),
    );
    let r = t.request(&req).await?.ok()?;
    let page = r.parse(wire::parse_rnacos_console_instances)?;
    if page.items.len() as u64 != page.total {
        return Err(r.protocol(format!(
            "console listing count {} but {} items",
            page.total,
            page.items.len()
        )));
    }
    Ok(page.items)
}

/// One instance by key, whatever its enabled state; `None` when it does not exist.
pub(super) async fn get_instance(
    t: &Transport,
    key: &InstanceKey,
    ip_text: &str,
) -> Result<Option<WireInstance>> {
    let req = Req::get(
        Operation::GetInstance,
        v1::INSTANCE,
        instance_params(t, key, ip_text),
    )
    .signed(&key.service);
    let r = t.request_with(&req, missing).await?;
    if !r.is_success() {
        if missing(r.status, &r.body) {
            return Ok(None);
        }
        return match r.error() {
            NacosError::NotFound { .. } => Ok(None),
            e => Err(e),
        };
    }
    let w = r.parse(wire::parse_instance_detail)?;
    Ok((w.ip == key.ip && w.port == key.port && w.cluster == key.cluster).then_some(w))
}

/// `enabled` with the instance's metadata, our marker set (`by`) or cleared (`None`). rnacos
/// replaces the metadata with what it is sent and would create a missing instance.
pub(super) async fn set_enabled(
    t: &Transport,
    instance: &Instance,
    enabled: bool,
    by: Option<&str>,
) -> Result<()> {
    if get_instance(t, &instance.key, &instance.listed_ip)
        .await?
        .is_none()
    {
        // rnacos would create the instance: refuse instead, like Alibaba's 404.
        return Err(NacosError::NotFound {
            address: t.current_address().to_string(),
            path: v1::INSTANCE.to_string(),
            what: format!("instance {}", instance.key),
        });
    }
    let mut metadata: BTreeMap<String, String> = instance.metadata.clone();
    match by {
        Some(uid) => {
            metadata.insert(DISABLED_BY_KEY.to_string(), uid.to_string());
        }
        None => {
            metadata.remove(DISABLED_BY_KEY);
            if metadata.is_empty() {
                // rnacos ignores an empty map and would keep our marker; an empty one names no binding.
                metadata.insert(DISABLED_BY_KEY.to_string(), String::new());
            }
        }
    }
    v1::patch(t, instance, enabled, &metadata).await
}
