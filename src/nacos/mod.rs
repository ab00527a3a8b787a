//! The Nacos client: lists instances (disabled ones included), lists services, deregisters and
//! disables/enables instances, over the HTTP APIs of Nacos 1.x, 2.x, 3.x and rnacos.
//!
//! One module per API generation, behind [`NacosClient`] (and the [`Registry`] trait the
//! reconciler uses); what each server does differently is written at the top of its module:
//!
//! | module | servers | listing (disabled included) | take offline / back | remove |
//! |---|---|---|---|---|
//! | [`v1`] | Nacos 1.x; `apiVersion: V1` | `catalog/service` + `catalog/instances` per cluster | `PATCH /v1/ns/instance` | `DELETE /v1/ns/instance` |
//! | [`v2`] | Nacos 2.x | `/v2/ns/catalog/instances`, every cluster at once | `PATCH /v1/ns/instance` | `DELETE /v1/ns/instance` |
//! | [`v3`] | Nacos 3.x | `/v3/admin/ns/service` + `instance/list` per cluster | `PUT /v3/admin/ns/instance/partial` | `DELETE /v3/admin/ns/instance` |
//! | [`rnacos`] | rnacos | its console listing, else the catalog (enabled only) | `PATCH /v1/ns/instance` after a read | `DELETE /v1/ns/instance` |
//!
//! [`transport`] carries every request (failover, login, retries, metrics); [`detect`] tells which
//! server answers; [`wire`] parses the answers. Two facts hold for Alibaba Nacos 2.x and 3.x alike
//! and shape the writes: a listing shows a write only after the server refreshes its view (500 ms
//! after a change, [`ServerInfo::settle`]), and the `metadata` a write sends goes into an overlay
//! of the server's own, merged over what the client registered ([`ServerInfo::metadata_overlay`],
//! see `write_metadata`).

pub mod auth;
mod config;
mod detect;
mod error;
#[cfg(test)]
pub mod fake;
mod publishers;
mod rnacos;
mod transport;
mod v1;
mod v2;
mod v3;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use tracing::debug;

pub use auth::Credentials;
pub use config::{
    namespace_listed, normalize_base_url, ApiGeneration, NacosConfig, NamespaceCheck, RetryPolicy,
    TlsConfig,
};
pub use error::{classify_error, NacosError, Result};
pub use publishers::{sole_publisher, ClientDetail, Connection, Publisher};
pub use transport::{Operation, RequestCounters, RequestEvent, RequestObserver};

use transport::{Operation as Op, Req, Transport};
use wire::WireInstance;

use crate::model::{Instance, InstanceKey, ServiceKey, ServiceSnapshot, DISABLED_BY_KEY};

/// Implementation behind the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFlavor {
    /// Alibaba Nacos: it reports its version.
    Nacos,
    /// rnacos, recognised by its console path; it reports no version.
    Rnacos,
    /// Answers the v1 naming API but reports no version and is not known otherwise.
    V1Compatible,
}

/// What the server is and how the client talks to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// e.g. "2.5.1"; "unknown" for servers without a state endpoint (rnacos).
    pub version: String,
    /// The generation in use, never `Auto`.
    pub api: ApiGeneration,
    pub flavor: ServerFlavor,
    /// Whether `list_instances` includes disabled instances on this server.
    pub lists_disabled: bool,
    /// How long after a write the server's listings may still show the state before it.
    pub settle: Duration,
    /// Whether the server keeps a write's `metadata` apart from the registered one (Nacos 2.x and
    /// 3.x), in an overlay that each write replaces.
    pub metadata_overlay: bool,
    /// Whether the server names who publishes an instance (Alibaba Nacos 2.x and 3.x, see
    /// [`publishers`]).
    pub names_publishers: bool,
}

impl ServerInfo {
    /// The version as status shows it: `2.5.1`, or what the server is when it reports none.
    pub fn version_text(&self) -> String {
        match (self.flavor, self.version.as_str()) {
            (ServerFlavor::Nacos, "unknown") => "not reported".into(),
            (ServerFlavor::Nacos, v) => v.to_string(),
            (ServerFlavor::Rnacos, _) => "rnacos (version not reported)".into(),
            (ServerFlavor::V1Compatible, _) => "v1-compatible server (version not reported)".into(),
        }
    }

    /// One line naming the server and the API spoken: `Nacos 2.5.1 (api V2)`,
    /// `rnacos (version not reported, api V1)`.
    pub fn describe(&self) -> String {
        match (self.flavor, self.version.as_str()) {
            (ServerFlavor::Nacos, "unknown") => {
                format!("Nacos (version not reported, api {})", self.api)
            }
            (ServerFlavor::Nacos, v) => format!("Nacos {v} (api {})", self.api),
            (ServerFlavor::Rnacos, _) => format!("rnacos (version not reported, api {})", self.api),
            (ServerFlavor::V1Compatible, _) => format!(
                "v1-compatible server (version not reported, api {})",
                self.api
            ),
        }
    }

    fn dialect(&self) -> Dialect {
        match (self.flavor, self.api) {
            (ServerFlavor::Rnacos | ServerFlavor::V1Compatible, _) => Dialect::Rnacos {
                console: self.lists_disabled,
            },
            (_, ApiGeneration::V3) => Dialect::V3,
            (_, ApiGeneration::V2) => Dialect::V2,
            _ => Dialect::V1,
        }
    }
}

/// The module that speaks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    V1,
    V2,
    V3,
    Rnacos { console: bool },
}

// ---------------------------------------------------------------------------------------------
// The registry interface the reconciler uses (mockable in tests).

/// What the reconciler needs from a service registry.
pub trait Registry: Send + Sync {
    fn server_info(&self) -> impl Future<Output = Result<ServerInfo>> + Send;
    fn list_services(&self, group: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn list_instances(
        &self,
        service: &ServiceKey,
        clusters: &[String],
    ) -> impl Future<Output = Result<ServiceSnapshot>> + Send;
    fn deregister(&self, instance: &Instance) -> impl Future<Output = Result<()>> + Send;
    /// `enabled=false`, marked as disabled by binding `by`.
    fn disable(&self, instance: &Instance, by: &str) -> impl Future<Output = Result<()>> + Send;
    /// `enabled=true`, the marker removed.
    fn enable(&self, instance: &Instance) -> impl Future<Output = Result<()>> + Send;
    /// Who keeps the instance registered, where the server tells (empty otherwise).
    fn publishers(
        &self,
        instance: &Instance,
    ) -> impl Future<Output = Result<Vec<Publisher>>> + Send;
    /// What the client of a connection `publishers` named reports of itself.
    fn client_detail(&self, c: &Connection) -> impl Future<Output = Result<ClientDetail>> + Send;
    /// The instance once a write had time to show: read until `settled` accepts what the server
    /// lists (`None`: not listed) or the server's settle time is over; the last reading.
    fn read_back(
        &self,
        instance: &Instance,
        settled: fn(Option<&Instance>) -> bool,
    ) -> impl Future<Output = Result<Option<Instance>>> + Send;
}

// ---------------------------------------------------------------------------------------------
// The client

/// A Nacos client for one cluster (one [`NacosConfig`]). Cheap to clone; clones share the token
/// cache, the remembered good address and the detected server info.
#[derive(Clone)]
pub struct NacosClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    info: RwLock<Option<ServerInfo>>,
    v2_catalog: v2::Catalog,
    /// Set once the server refused the publisher list (a user without admin reads): not asked again.
    publishers_refused: AtomicBool,
}

impl std::fmt::Debug for NacosClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.inner.transport.config;
        f.debug_struct("NacosClient")
            .field("servers", &self.inner.transport.bases())
            .field("namespace", &c.namespace)
            .field("api", &c.api)
            .field("credentials", &c.credentials)
            .finish()
    }
}

/// Polls of a read-back after the first one. Alibaba Nacos 2.5.1 showed a DELETE in its listing
/// 582-617 ms after answering it (scale benchmark, 40 probes), around the first read: a miss
/// costs one interval more on every removal of the pass (it was 250 ms).
const READ_BACK_INTERVAL: Duration = Duration::from_millis(100);
/// Slack on top of the server's settle time before the first read-back.
const READ_BACK_SLACK: Duration = Duration::from_millis(100);

impl NacosClient {
    pub fn new(config: NacosConfig) -> Result<Self> {
        Self::build(config, None)
    }

    /// A client that tells `observer` about every request (metrics).
    pub fn observed(config: NacosConfig, observer: Arc<dyn RequestObserver>) -> Result<Self> {
        Self::build(config, Some(observer))
    }

    fn build(config: NacosConfig, observer: Option<Arc<dyn RequestObserver>>) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport::new(config, observer)?,
                info: RwLock::new(None),
                v2_catalog: v2::Catalog::default(),
                publishers_refused: AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &NacosConfig {
        &self.inner.transport.config
    }

    /// The base URL that answered last (where requests start).
    pub fn current_address(&self) -> &str {
        self.inner.transport.current_address()
    }

    fn t(&self) -> &Transport {
        &self.inner.transport
    }

    /// Probe the server (version and API generation) and remember the answer.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let info = detect::probe(self.t()).await?;
        *self.inner.info.write().await = Some(info.clone());
        Ok(info)
    }

    /// The remembered server info, probing once if needed.
    async fn resolved(&self) -> Result<ServerInfo> {
        if let Some(info) = self.inner.info.read().await.clone() {
            return Ok(info);
        }
        self.server_info().await
    }

    /// Looks the configured namespace up in the server's namespace listing. Nacos (and rnacos)
    /// answer every naming call in an unknown namespace with empty lists, which would pass for
    /// "no instances". A namespace the listing lacks but that holds services in one of `groups`
    /// is in use (Nacos 2.x lets clients register into an id nobody created): `Found`.
    /// Servers without a readable listing (an old or trimmed API, or a user not allowed to read
    /// it) give `Unverified`; an unreachable server is an error.
    pub async fn check_namespace(&self, groups: &[String]) -> Result<NamespaceCheck> {
        let configured = self.config().namespace.as_str();
        if namespace_listed(configured, &[]) {
            return Ok(NamespaceCheck::Public);
        }
        let info = self.resolved().await?;
        let candidates = if info.api == ApiGeneration::V3 {
            [v3::NAMESPACES, v1::NAMESPACES]
        } else {
            [v1::NAMESPACES, v1::V2_NAMESPACES]
        };
        let mut why = Vec::new();
        for path in candidates {
            let req = Req::get(Op::ListNamespaces, path, Vec::new());
            let reply = match self.t().request(&req).await {
                Ok(r) => r,
                Err(e @ NacosError::Unreachable { .. }) => return Err(e),
                Err(e) => {
                    why.push(e.to_string());
                    continue;
                }
            };
            if !reply.is_success() {
                why.push(reply.error().to_string());
                continue;
            }
            match reply.parse(wire::parse_namespace_list) {
                Ok(listed) if namespace_listed(configured, &listed) => {
                    return Ok(NamespaceCheck::Found)
                }
                Ok(listed) => {
                    for group in groups {
                        if !self.list_services(group).await?.is_empty() {
                            debug!(group, "namespace not listed, but it holds services");
                            return Ok(NamespaceCheck::Found);
                        }
                    }
                    return Ok(NamespaceCheck::Missing {
                        address: reply.address,
                        known: listed,
                    });
                }
                Err(e) => why.push(e.to_string()),
            }
        }
        Ok(NamespaceCheck::Unverified(why.join("; ")))
    }

    /// Every service name of `group` in the configured namespace (paginated, sorted, unique).
    pub async fn list_services(&self, group: &str) -> Result<Vec<String>> {
        let names = match self.resolved().await?.dialect() {
            Dialect::V3 => v3::list_services(self.t(), group).await?,
            _ => v1::list_services(self.t(), group).await?,
        };
        let unique: BTreeSet<String> = names.into_iter().collect();
        Ok(unique.into_iter().collect())
    }

    /// A complete listing of `service`, disabled instances included where the server allows it
    /// (see [`ServerInfo::lists_disabled`]). `clusters` empty = every cluster of the service.
    /// A failed or partial listing is an error, never an empty snapshot; a service the server
    /// does not have is listed empty.
    pub async fn list_instances(
        &self,
        service: &ServiceKey,
        clusters: &[String],
    ) -> Result<ServiceSnapshot> {
        let t = self.t();
        let raw = match self.resolved().await?.dialect() {
            Dialect::V1 => v1::list_instances(t, service, clusters).await?,
            Dialect::V2 => v2::list_instances(t, &self.inner.v2_catalog, service, clusters).await?,
            Dialect::V3 => v3::list_instances(t, service, clusters).await?,
            Dialect::Rnacos { console } => rnacos::list_instances(t, service, console).await?,
        };
        Ok(to_snapshot(service, raw, clusters))
    }

    /// One instance by key, whatever its enabled state; `None` when it does not exist.
    /// On rnacos this is the only way to see a disabled instance when the console listing is off.
    pub async fn get_instance(&self, key: &InstanceKey) -> Result<Option<Instance>> {
        self.lookup(key, &key.ip.to_string()).await
    }

    /// One instance by key, asked for with its ip written as `ip_text`.
    async fn lookup(&self, key: &InstanceKey, ip_text: &str) -> Result<Option<Instance>> {
        let found = match self.resolved().await?.dialect() {
            Dialect::V3 => v3::get_instance(self.t(), key, ip_text).await?,
            Dialect::Rnacos { .. } => rnacos::get_instance(self.t(), key, ip_text).await?,
            Dialect::V1 | Dialect::V2 => {
                let listed = self
                    .list_instances(&key.service, std::slice::from_ref(&key.cluster))
                    .await?;
                return Ok(listed.instances.into_iter().find(|i| i.key == *key));
            }
        };
        Ok(found
            .map(|w| wire_to_instance(&key.service, w))
            .filter(|i| i.key == *key))
    }

    /// Remove the instance. Persistent instances are sent `ephemeral=false`. Nacos answers `ok`
    /// even when nothing was removed: verify with [`Self::read_back`].
    pub async fn deregister(&self, instance: &Instance) -> Result<()> {
        match self.resolved().await?.dialect() {
            Dialect::V3 => v3::deregister(self.t(), instance).await?,
            _ => v1::deregister(self.t(), instance).await?,
        }
        debug!(instance = %instance.key, "deregistered");
        Ok(())
    }

    /// `enabled=false` with the marker naming binding `by`; the weight and the rest stay.
    pub async fn disable(&self, instance: &Instance, by: &str) -> Result<()> {
        self.set_enabled(instance, false, Some(by)).await
    }

    /// `enabled=true`, the marker removed.
    pub async fn enable(&self, instance: &Instance) -> Result<()> {
        self.set_enabled(instance, true, None).await
    }

    async fn set_enabled(
        &self,
        instance: &Instance,
        enabled: bool,
        by: Option<&str>,
    ) -> Result<()> {
        let info = self.resolved().await?;
        let metadata = write_metadata(&info, instance, by);
        match info.dialect() {
            Dialect::V3 => v3::patch(self.t(), instance, enabled, &metadata).await?,
            Dialect::Rnacos { .. } => rnacos::set_enabled(self.t(), instance, enabled, by).await?,
            Dialect::V1 | Dialect::V2 => v1::patch(self.t(), instance, enabled, &metadata).await?,
        }
        debug!(instance = %instance.key, enabled, "set enabled");
        Ok(())
    }

    /// Who keeps the ephemeral `instance` registered, as Nacos 2.x/3.x tell (see [`publishers`]);
    /// empty for a persistent instance and on servers that do not tell (1.x, rnacos). The list is
    /// an admin read: once refused, it is not asked again.
    pub async fn publishers(&self, instance: &Instance) -> Result<Vec<Publisher>> {
        let info = self.resolved().await?;
        let refused = self.inner.publishers_refused.load(Ordering::Relaxed);
        if !instance.ephemeral || !info.names_publishers || refused {
            return Ok(Vec::new());
        }
        let listed = publishers::list(self.t(), info.api, instance).await;
        if let Err(
            NacosError::Auth { .. }
            | NacosError::ApiOff { .. }
            | NacosError::NotFound { .. }
            | NacosError::Server {
                status: 404 | 405 | 501,
                ..
            },
        ) = &listed
        {
            self.inner.publishers_refused.store(true, Ordering::Relaxed);
        }
        listed
    }

    /// What the client of a connection [`Self::publishers`] named reports of itself (its SDK,
    /// its own address). Only the member it is connected to can tell.
    pub async fn client_detail(&self, c: &Connection) -> Result<ClientDetail> {
        let info = self.resolved().await?;
        publishers::detail(self.t(), info.api, &c.id).await
    }

    /// The instance as the server lists it once a write had time to show: reads after the
    /// server's settle time, again every [`READ_BACK_INTERVAL`] while `settled` rejects the
    /// reading, and gives up at three settle times (the server refreshes its view once per
    /// change). The last reading.
    pub async fn read_back(
        &self,
        instance: &Instance,
        settled: fn(Option<&Instance>) -> bool,
    ) -> Result<Option<Instance>> {
        let settle = self.resolved().await?.settle;
        let read = || self.lookup(&instance.key, &instance.listed_ip);
        if settle.is_zero() {
            return read().await;
        }
        let started = Instant::now();
        let give_up = settle * 3 + READ_BACK_SLACK;
        tokio::time::sleep(settle + READ_BACK_SLACK).await;
        loop {
            let seen = read().await?;
            if settled(seen.as_ref()) || started.elapsed() + READ_BACK_INTERVAL > give_up {
                return Ok(seen);
            }
            tokio::time::sleep(READ_BACK_INTERVAL).await;
        }
    }
}

/// What Alibaba Nacos accepts as a write's metadata (its param check, `maxMetadataLength`): keys and
/// values together, counted as Java counts a string's length.
const METADATA_LIMIT: usize = 1024;

fn metadata_len(metadata: &BTreeMap<String, String>) -> usize {
    let len = |s: &str| {
        if s.trim().is_empty() {
            0
        } else {
            s.encode_utf16().count()
        }
    };
    metadata.iter().map(|(k, v)| len(k) + len(v)).sum()
}

/// The metadata a write sends: the instance's, with our marker set (`by`) or removed. 1.x replaces
/// the instance's metadata with it. Nacos 2.x/3.x keep it in an overlay of their own, merged over
/// what the client registered and replaced by each write: sent whole, it keeps what an
/// administrator set there (the console writes that overlay too). Where the whole would exceed the
/// 1,024 characters Nacos allows a write, only the marker goes (and enabling sends an empty overlay):
/// the registered metadata stays as it is, an administrator's edits in the overlay do not.
fn write_metadata(
    info: &ServerInfo,
    instance: &Instance,
    by: Option<&str>,
) -> BTreeMap<String, String> {
    let mut whole = instance.metadata.clone();
    match by {
        Some(uid) => {
            whole.insert(DISABLED_BY_KEY.to_string(), uid.to_string());
        }
        None => {
            whole.remove(DISABLED_BY_KEY);
        }
    }
    if !info.metadata_overlay || metadata_len(&whole) <= METADATA_LIMIT {
        return whole;
    }
    by.map(|uid| BTreeMap::from([(DISABLED_BY_KEY.to_string(), uid.to_string())]))
        .unwrap_or_default()
}

impl Registry for NacosClient {
    fn server_info(&self) -> impl Future<Output = Result<ServerInfo>> + Send {
        NacosClient::server_info(self)
    }
    fn list_services(&self, group: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        NacosClient::list_services(self, group)
    }
    fn list_instances(
        &self,
        service: &ServiceKey,
        clusters: &[String],
    ) -> impl Future<Output = Result<ServiceSnapshot>> + Send {
        NacosClient::list_instances(self, service, clusters)
    }
    fn deregister(&self, instance: &Instance) -> impl Future<Output = Result<()>> + Send {
        NacosClient::deregister(self, instance)
    }
    fn disable(&self, instance: &Instance, by: &str) -> impl Future<Output = Result<()>> + Send {
        NacosClient::disable(self, instance, by)
    }
    fn enable(&self, instance: &Instance) -> impl Future<Output = Result<()>> + Send {
        NacosClient::enable(self, instance)
    }
    fn read_back(
        &self,
        instance: &Instance,
        settled: fn(Option<&Instance>) -> bool,
    ) -> impl Future<Output = Result<Option<Instance>>> + Send {
        NacosClient::read_back(self, instance, settled)
    }

    fn publishers(
        &self,
        instance: &Instance,
    ) -> impl Future<Output = Result<Vec<Publisher>>> + Send {
        NacosClient::publishers(self, instance)
    }

    fn client_detail(&self, c: &Connection) -> impl Future<Output = Result<ClientDetail>> + Send {
        NacosClient::client_detail(self, c)
    }
}

fn wire_to_instance(service: &ServiceKey, w: WireInstance) -> Instance {
    Instance {
        key: InstanceKey {
            service: service.clone(),
            cluster: w.cluster,
            ip: w.ip,
            port: w.port,
        },
        listed_ip: w.ip_text,
        ephemeral: w.ephemeral,
        enabled: w.enabled,
        healthy: w.healthy,
        weight: w.weight,
        metadata: w.metadata,
    }
}

/// Convert, keep the wanted clusters (all when empty), de-duplicate (pages may overlap) and sort.
fn to_snapshot(service: &ServiceKey, raw: Vec<wire::Listed>, wanted: &[String]) -> ServiceSnapshot {
    let mut by_key: BTreeMap<InstanceKey, Instance> = BTreeMap::new();
    let mut unaddressable = Vec::new();
    let keep = |cluster: &String| wanted.is_empty() || wanted.contains(cluster);
    for listed in raw {
        match listed {
            Ok(w) if keep(&w.cluster) => {
                let inst = wire_to_instance(service, w);
                by_key.insert(inst.key.clone(), inst);
            }
            Err(u) if keep(&u.cluster) && !unaddressable.contains(&u) => unaddressable.push(u),
            _ => {}
        }
    }
    ServiceSnapshot {
        service: service.clone(),
        instances: by_key.into_values().collect(),
        unaddressable,
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
