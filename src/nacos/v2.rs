//! Nacos 2.x: the v2 catalog for listings, the v1 API for writes (every 2.x answers it).
//!
//! - `GET /v2/ns/catalog/instances?serviceName=G@@S` (2.2 on) lists every cluster of a service in
//!   one paged answer, disabled instances included: `{"code":0,"data":{"instances":[…],"count":N}}`,
//!   `{"count":0}` for a service that does not exist. The v1 catalog needs a cluster list first,
//!   which 2.x takes from its refreshed view: right after a registration it can name no cluster.
//!   Servers without the v2 catalog (2.0, 2.1: HTTP 501 `no such api`) are listed through v1.
//! - Writes: `DELETE /v1/ns/instance` and `PATCH /v1/ns/instance`. A DELETE of an ephemeral
//!   instance owned by a live gRPC connection is answered `ok` and does nothing.
//! - 2.x keeps what a PATCH sends as `metadata` in an overlay of its own, merged over what the
//!   client registered and replaced by the next PATCH (the console writes it too), and refuses a
//!   write's metadata over 1,024 characters (HTTP 400 "Param 'Metadata' is illegal").
//! - Every listing comes from a view the server refreshes about 500 ms after a change
//!   (`nacos.naming.push.pushTaskDelay`): a write shows only after that.

use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{NacosError, Result};
use super::transport::{grouped, Operation, Req, Transport};
use super::v1;
use super::wire::{self, Listed};
use crate::model::ServiceKey;

const CATALOG_INSTANCES: &str = "/nacos/v2/ns/catalog/instances";

/// Whether the server turned out to lack the v2 catalog (then v1 is used from there on).
#[derive(Debug, Default)]
pub(super) struct Catalog {
    missing: AtomicBool,
}

/// Every instance of `service` in the `wanted` clusters (all when empty).
pub(super) async fn list_instances(
    t: &Transport,
    catalog: &Catalog,
    service: &ServiceKey,
    wanted: &[String],
) -> Result<Vec<Listed>> {
    if catalog.missing.load(Ordering::Relaxed) {
        return v1::list_instances(t, service, wanted).await;
    }
    let req = Req::get(
        Operation::ListInstances,
        CATALOG_INSTANCES,
        vec![("namespaceId", t.ns()), ("serviceName", grouped(service))],
    )
    .signed(service);
    match t.paged(&req, wire::parse_v2_catalog_instances).await {
        // Every cluster at once: the caller keeps the wanted ones.
        Ok(items) => Ok(items),
        // A server before 2.2 answers 501 `no such api` (or 404): it never says this about a
        // service, which the v2 catalog lists as empty when missing.
        Err(NacosError::Server { status: 501, .. } | NacosError::NotFound { .. }) => {
            catalog.missing.store(true, Ordering::Relaxed);
            v1::list_instances(t, service, wanted).await
        }
        Err(e) => Err(e),
    }
}
