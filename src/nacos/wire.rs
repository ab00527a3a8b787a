//! Wire formats of the Nacos HTTP APIs (1.x/2.x v1 endpoints, 2.x/3.x wrapped answers, rnacos).
//!
//! Every parser here is a pure function over the raw body so it can be unit-tested, fuzzed and
//! property-tested without a server. They are lenient about what servers disagree on (numbers sent
//! as strings, missing optional fields, metadata values that are not strings) and strict about what
//! matters for safety: an instance without a parseable ip/port fails the whole page rather than
//! being dropped, because a listing with holes must never look complete.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

pub use crate::model::Unaddressable;

/// Why a body could not be turned into data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Not the JSON shape we expect.
    #[error("unparseable body: {0}")]
    Malformed(String),
    /// A wrapped (`{"code":..,"message":..,"data":..}`) answer with a non-zero code.
    #[error("server code {code}: {message}")]
    Code { code: i64, message: String },
}

impl WireError {
    fn malformed(e: impl std::fmt::Display) -> Self {
        WireError::Malformed(truncate(&e.to_string(), 200))
    }
}

/// Nacos error codes that the client maps to distinct errors.
pub mod codes {
    pub const PARAMETER_MISSING: i64 = 10000;
    pub const ACCESS_DENIED: i64 = 10001;
    pub const RESOURCE_NOT_FOUND: i64 = 20004;
    pub const INSTANCE_NOT_FOUND: i64 = 21003;
    pub const SERVICE_NOT_EXIST: i64 = 21008;
    /// 3.x: the v1/v2 admin and console APIs are switched off (HTTP 410).
    pub const API_DEPRECATED: i64 = 40000;
}

/// One instance as any listing reports it, before conversion to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct WireInstance {
    pub ip: IpAddr,
    /// `ip` as the server wrote it.
    pub ip_text: String,
    pub port: u16,
    pub cluster: String,
    pub weight: f64,
    pub healthy: bool,
    pub enabled: bool,
    pub ephemeral: bool,
    pub metadata: BTreeMap<String, String>,
}

/// One page of a paginated listing, with the server's total count.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub total: u64,
    pub items: Vec<T>,
}

/// A login answer. `Debug` hides the token.
#[derive(Clone, PartialEq)]
pub struct LoginToken {
    pub access_token: String,
    pub ttl_seconds: u64,
}

impl std::fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginToken")
            .field("access_token", &"<redacted>")
            .field("ttl_seconds", &self.ttl_seconds)
            .finish()
    }
}

/// A service name together with its group, as service listings report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireService {
    pub group: Option<String>,
    pub name: String,
}

// ---------------------------------------------------------------------------------------------
// Generic helpers

fn to_value(body: &[u8]) -> Result<Value, WireError> {
    serde_json::from_slice(body).map_err(WireError::malformed)
}

/// Unwrap a 2.x/3.x `{"code":0,"message":"success","data":…}` answer.
/// A body without `code` is returned as is (1.x and rnacos answer bare JSON).
pub fn unwrap_result(v: Value) -> Result<Value, WireError> {
    match v {
        Value::Object(mut map) if map.contains_key("code") && !map.contains_key("list") => {
            let code = map.get("code").and_then(lenient_i64).unwrap_or(-1);
            if code == 0 || code == 200 {
                Ok(map.remove("data").unwrap_or(Value::Null))
            } else {
                let mut message = map
                    .get("message")
                    .or_else(|| map.get("msg"))
                    .map(value_to_string)
                    .unwrap_or_default();
                // 3.x puts the useful part in `data` ("server error" / "cluster C is not found!").
                if let Some(Value::String(detail)) = map.get("data") {
                    if !detail.is_empty() && *detail != message {
                        message = if message.is_empty() {
                            detail.clone()
                        } else {
                            format!("{message}: {detail}")
                        };
                    }
                }
                Err(WireError::Code {
                    code,
                    message: truncate(&message, 200),
                })
            }
        }
        other => Ok(other),
    }
}

/// Parse a wrapped answer (`{"code":..,"data":..}`) and return `data`.
pub fn parse_wrapped(body: &[u8]) -> Result<Value, WireError> {
    unwrap_result(to_value(body)?)
}

/// If `body` is a wrapped error answer, its code and message.
pub fn parse_error_code(body: &[u8]) -> Option<(i64, String)> {
    match parse_wrapped(body) {
        Err(WireError::Code { code, message }) => Some((code, message)),
        _ => None,
    }
}

fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_u64(v: &Value) -> Option<u64> {
    lenient_i64(v).and_then(|i| u64::try_from(i).ok())
}

fn lenient_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Cut `s` to at most `max` bytes on a char boundary (error messages carry short bodies only).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

// ---------------------------------------------------------------------------------------------
// Instances

/// One instance of a listing: one the operator can address, or one it cannot (a hostname, a
/// zoned IPv6 address, port 0 — Nacos accepts them), which is Foreign and must not fail the page.
pub type Listed = Result<WireInstance, Unaddressable>;

/// Convert one JSON instance object that must be addressable (a lookup by key).
pub fn instance_from_value(v: &Value) -> Result<WireInstance, WireError> {
    listed_from_value(v)?
        .map_err(|u| WireError::Malformed(format!("instance {} {}", u.address, u.why)))
}

/// Convert one JSON instance object of a listing. Fields: `ip`, `port`, `clusterName`, `weight`,
/// `healthy`, `enabled`, `ephemeral`, `metadata` (1.x/2.x/3.x and rnacos all use these names). An
/// answer that is not an instance at all (no object, no `ip`) fails the page: a listing with holes
/// must never look complete.
pub fn listed_from_value(v: &Value) -> Result<Listed, WireError> {
    let obj = v
        .as_object()
        .ok_or_else(|| WireError::Malformed("instance is not an object".into()))?;
    let ip_str = obj
        .get("ip")
        .and_then(Value::as_str)
        .ok_or_else(|| WireError::Malformed("instance without ip".into()))?;
    let cluster = obj
        .get("clusterName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("DEFAULT")
        .to_string();
    let port_value = obj.get("port").map(value_to_string).unwrap_or_default();
    let unaddressable = |why: &str| Unaddressable {
        cluster: cluster.clone(),
        address: format!("{}:{}", truncate(ip_str, 64), truncate(&port_value, 16)),
        why: why.to_string(),
    };
    // IPv6 may come bracketed from some clients.
    let Ok(ip) = ip_str
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(Err(unaddressable(
            "is not an IP address (a hostname or a zoned IPv6 address)",
        )));
    };
    let Some(port) = obj
        .get("port")
        .and_then(lenient_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
    else {
        return Ok(Err(unaddressable("has no usable port")));
    };
    let weight = obj.get("weight").and_then(lenient_f64).unwrap_or(1.0);
    let healthy = obj.get("healthy").and_then(lenient_bool).unwrap_or(true);
    // Absent `enabled`/`ephemeral` mean the Nacos defaults (true).
    let enabled = obj.get("enabled").and_then(lenient_bool).unwrap_or(true);
    let ephemeral = obj.get("ephemeral").and_then(lenient_bool).unwrap_or(true);
    let metadata = match obj.get("metadata") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), value_to_string(v)))
            .collect(),
        // Some servers send metadata as a JSON string.
        Some(Value::String(s)) if !s.trim().is_empty() => {
            match serde_json::from_str::<BTreeMap<String, Value>>(s) {
                Ok(m) => m
                    .into_iter()
                    .map(|(k, v)| (k, value_to_string(&v)))
                    .collect(),
                Err(_) => BTreeMap::new(),
            }
        }
        _ => BTreeMap::new(),
    };
    Ok(Ok(WireInstance {
        ip,
        ip_text: ip_str.to_string(),
        port,
        cluster,
        weight,
        healthy,
        enabled,
        ephemeral,
        metadata,
    }))
}

fn instances_from_array(v: &Value) -> Result<Vec<Listed>, WireError> {
    v.as_array()
        .ok_or_else(|| WireError::Malformed("instance list is not an array".into()))?
        .iter()
        .map(listed_from_value)
        .collect()
}

/// `GET /nacos/v1/ns/catalog/instances` (1.x, 2.x, rnacos): `{"list":[…],"count":N}`.
/// A 2.x server behind a compatibility layer may wrap it; both are accepted.
pub fn parse_catalog_instances(body: &[u8]) -> Result<Page<Listed>, WireError> {
    let v = parse_wrapped(body)?;
    let list = v
        .get("list")
        .ok_or_else(|| WireError::Malformed("catalog answer without list".into()))?;
    let items = instances_from_array(list)?;
    let total = v
        .get("count")
        .and_then(lenient_u64)
        .ok_or_else(|| WireError::Malformed("catalog answer without count".into()))?;
    Ok(Page { total, items })
}

/// `GET /nacos/v2/ns/catalog/instances` (2.2 on): `{"code":0,"data":{"instances":[…],"count":N}}`,
/// `{"count":0}` without `instances` for an empty or missing service, and past the last page.
pub fn parse_v2_catalog_instances(body: &[u8]) -> Result<Page<Listed>, WireError> {
    let data = parse_wrapped(body)?;
    let total = data
        .get("count")
        .and_then(lenient_u64)
        .ok_or_else(|| WireError::Malformed("v2 catalog answer without count".into()))?;
    // No `instances` on a page past the end (the paging restarts when the count changed).
    let items = match data.get("instances") {
        Some(list) => instances_from_array(list)?,
        None => Vec::new(),
    };
    Ok(Page { total, items })
}

/// `GET /nacos/v3/admin/ns/instance/list`: `{"code":0,"data":[…]}`. Also accepts a page
/// (`pageItems`/`totalCount`) or a service info (`hosts`) as data, which other 3.x builds return.
pub fn parse_v3_instances(body: &[u8]) -> Result<Page<Listed>, WireError> {
    let data = parse_wrapped(body)?;
    let (list, total) = match &data {
        Value::Array(_) => (&data, None),
        Value::Object(o) => {
            if let Some(items) = o.get("pageItems").or_else(|| o.get("list")) {
                let total = o
                    .get("totalCount")
                    .or_else(|| o.get("count"))
                    .and_then(lenient_u64);
                (items, total)
            } else if let Some(hosts) = o.get("hosts") {
                (hosts, None)
            } else {
                return Err(WireError::Malformed(
                    "v3 instance list: unknown data".into(),
                ));
            }
        }
        _ => return Err(WireError::Malformed("v3 instance list: no data".into())),
    };
    let items = instances_from_array(list)?;
    let total = total.unwrap_or(items.len() as u64);
    Ok(Page { total, items })
}

/// rnacos console `GET /rnacos/api/console/v2/instance/list` (only on the main port when
/// `RNACOS_ENABLE_NO_AUTH_CONSOLE=true`): `{"success":true,"data":{"totalCount":N,"list":[…]}}`.
/// It is the only rnacos listing that includes disabled instances.
pub fn parse_rnacos_console_instances(body: &[u8]) -> Result<Page<Listed>, WireError> {
    let v = to_value(body)?;
    let success = v.get("success").and_then(lenient_bool).unwrap_or(false);
    if !success {
        let message = v.get("msg").map(value_to_string).unwrap_or_default();
        let code = v.get("code").and_then(lenient_i64).unwrap_or(-1);
        return Err(WireError::Code {
            code,
            message: truncate(&message, 200),
        });
    }
    let data = v
        .get("data")
        .ok_or_else(|| WireError::Malformed("console answer without data".into()))?;
    let list = data
        .get("list")
        .ok_or_else(|| WireError::Malformed("console answer without list".into()))?;
    let items = instances_from_array(list)?;
    let total = data
        .get("totalCount")
        .and_then(lenient_u64)
        .unwrap_or(items.len() as u64);
    Ok(Page { total, items })
}

/// `GET /nacos/v1/ns/instance` on rnacos: one instance object (with `enabled`).
pub fn parse_instance_detail(body: &[u8]) -> Result<WireInstance, WireError> {
    instance_from_value(&parse_wrapped(body)?)
}

// ---------------------------------------------------------------------------------------------
// Services and clusters

/// `GET /nacos/v1/ns/service/list`: `{"count":N,"doms":["a","b"]}`.
pub fn parse_v1_service_list(body: &[u8]) -> Result<Page<String>, WireError> {
    let v = parse_wrapped(body)?;
    let total = v
        .get("count")
        .and_then(lenient_u64)
        .ok_or_else(|| WireError::Malformed("service list without count".into()))?;
    let items = match v.get("doms") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|d| {
                d.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| WireError::Malformed("service name is not a string".into()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        // Nacos answers `"doms":null` or omits it for an empty page.
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(WireError::Malformed("doms is not an array".into())),
    };
    Ok(Page { total, items })
}

/// `GET /nacos/v3/admin/ns/service/list`: `data.pageItems` of objects with `name`/`groupName`
/// (or plain strings), `data.totalCount`.
pub fn parse_v3_service_list(body: &[u8]) -> Result<Page<WireService>, WireError> {
    let data = parse_wrapped(body)?;
    let items_v = data
        .get("pageItems")
        .or_else(|| data.get("serviceList"))
        .ok_or_else(|| WireError::Malformed("service list without pageItems".into()))?;
    let items = match items_v {
        Value::Array(a) => a
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(split_grouped_name(s)),
                Value::Object(o) => {
                    let name = o
                        .get("name")
                        .or_else(|| o.get("serviceName"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| WireError::Malformed("service without name".into()))?;
                    let group = o.get("groupName").and_then(Value::as_str);
                    let mut s = split_grouped_name(name);
                    if let Some(g) = group {
                        s.group = Some(g.to_string());
                    }
                    Ok(s)
                }
                _ => Err(WireError::Malformed("service item".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Null => Vec::new(),
        _ => return Err(WireError::Malformed("pageItems is not an array".into())),
    };
    let total = data
        .get("totalCount")
        .or_else(|| data.get("count"))
        .and_then(lenient_u64)
        .unwrap_or(items.len() as u64);
    Ok(Page { total, items })
}

/// "group@@name" → (Some(group), name); "name" → (None, name).
fn split_grouped_name(s: &str) -> WireService {
    match s.split_once("@@") {
        Some((g, n)) => WireService {
            group: Some(g.to_string()),
            name: n.to_string(),
        },
        None => WireService {
            group: None,
            name: s.to_string(),
        },
    }
}

/// Cluster names of a service from a service-detail answer:
/// 1.x/2.x `GET /nacos/v1/ns/catalog/service` → `{"service":{…},"clusters":[{"name":"DEFAULT",…}]}`;
/// 2.x/3.x `ServiceDetailInfo` (`/v3/admin/ns/service`, wrapped) → `{"clusterMap":{"DEFAULT":{…}}}`;
/// `GET /nacos/v1/ns/service` → `{"clusters":[{"name":…}]}`.
pub fn parse_service_clusters(body: &[u8]) -> Result<Vec<String>, WireError> {
    let data = parse_wrapped(body)?;
    let mut out = Vec::new();
    if let Some(map) = data.get("clusterMap").and_then(Value::as_object) {
        out.extend(map.keys().cloned());
    } else if let Some(list) = data.get("clusters").and_then(Value::as_array) {
        for c in list {
            let name = match c {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("name")
                    .or_else(|| o.get("clusterName"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| WireError::Malformed("cluster without name".into()))?
                    .to_string(),
                _ => return Err(WireError::Malformed("cluster item".into())),
            };
            out.push(name);
        }
    } else if data.get("clusters").is_some_and(Value::is_null) || data.get("service").is_some() {
        // A service with no cluster yet.
    } else {
        return Err(WireError::Malformed(
            "service detail without clusters".into(),
        ));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Server state and auth

/// `GET /nacos/v1/console/server/state` (bare) or `GET /nacos/v3/admin/core/state` (wrapped or
/// bare, depending on build): the `version` field.
pub fn parse_server_version(body: &[u8]) -> Result<String, WireError> {
    let data = parse_wrapped(body)?;
    data.get("version")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| WireError::Malformed("server state without version".into()))
}

/// Login answer: `{"accessToken":"…","tokenTtl":18000,"globalAdmin":true,"username":"nacos"}`
/// (1.x/2.x/3.x bare; wrapped accepted). rnacos with open-API auth off answers
/// `accessToken:"AUTH_DISABLED"` whatever the credentials.
pub fn parse_login(body: &[u8]) -> Result<LoginToken, WireError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        access_token: Option<String>,
        token_ttl: Option<Value>,
    }
    let data = parse_wrapped(body)?;
    let raw: Raw = serde_json::from_value(data).map_err(WireError::malformed)?;
    let access_token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| WireError::Malformed("login answer without accessToken".into()))?;
    // Nacos default TTL is 18000 s.
    let ttl_seconds = raw
        .token_ttl
        .as_ref()
        .and_then(lenient_u64)
        .unwrap_or(18000);
    Ok(LoginToken {
        access_token,
        ttl_seconds,
    })
}

/// Namespace ids from a namespace listing: 1.x/2.x `GET /nacos/v1/console/namespaces` and rnacos
/// (`{"code":200,"message":null,"data":[{"namespace":"","namespaceShowName":"public",…}]}`), 2.x
/// `GET /nacos/v2/console/namespace/list` and 3.x `GET /nacos/v3/admin/core/namespace/list`
/// (`{"code":0,"data":[…]}`). The public namespace comes as `""` (v1) or `"public"`, returned as
/// given. An entry without an id fails the whole answer: a list with holes cannot prove that a
/// namespace is absent.
pub fn parse_namespace_list(body: &[u8]) -> Result<Vec<String>, WireError> {
    let data = parse_wrapped(body)?;
    let list = data
        .as_array()
        .ok_or_else(|| WireError::Malformed("namespace list is not an array".into()))?;
    list.iter()
        .map(|item| {
            item.get("namespace")
                .or_else(|| item.get("namespaceId"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| WireError::Malformed("namespace entry without an id".into()))
        })
        .collect()
}

/// Answer of a write (DELETE/PATCH/PUT): v1 answers plain `ok`, v2/v3 `{"code":0,"data":"ok"}`.
pub fn parse_write_ack(body: &[u8]) -> Result<(), WireError> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("ok") || trimmed.is_empty() {
        return Ok(());
    }
    match parse_wrapped(body) {
        Ok(_) => Ok(()),
        Err(e @ WireError::Code { .. }) => Err(e),
        Err(WireError::Malformed(_)) => Err(WireError::Malformed(format!(
            "unexpected write answer {:?}",
            truncate(trimmed, 100)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The addressable instances of a page (panics on an unaddressable one).
    fn items(page: Page<Listed>) -> Vec<WireInstance> {
        page.items
            .into_iter()
            .map(|l| l.expect("addressable"))
            .collect()
    }

    #[test]
    fn catalog_instances_v1() {
        // 1.4 / 2.x catalog answer, with a disabled persistent instance.
        let body = br#"{"list":[
          {"instanceId":"10.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@orders","ip":"10.0.0.1","port":8080,
           "weight":2.0,"healthy":true,"enabled":true,"ephemeral":true,"clusterName":"DEFAULT",
           "serviceName":"DEFAULT_GROUP@@orders","metadata":{"app":"orders"},
           "instanceHeartBeatInterval":5000,"instanceHeartBeatTimeOut":15000,"ipDeleteTimeout":30000},
          {"ip":"10.0.0.2","port":"8081","weight":1,"healthy":false,"enabled":false,"ephemeral":false,
           "clusterName":"c1","metadata":{"nacos-reconciler.io/disabled-by":"uid-1","n":3}}
        ],"count":2}"#;
        let page = parse_catalog_instances(body).unwrap();
        assert_eq!(page.total, 2);
        let page = items(page);
        assert_eq!(page.len(), 2);
        let a = &page[0];
        assert_eq!(a.ip.to_string(), "10.0.0.1");
        assert_eq!(a.port, 8080);
        assert_eq!(a.weight, 2.0);
        assert!(a.enabled && a.ephemeral && a.healthy);
        assert_eq!(a.metadata["app"], "orders");
        let b = &page[1];
        assert_eq!(b.port, 8081);
        assert_eq!(b.cluster, "c1");
        assert!(!b.enabled && !b.ephemeral && !b.healthy);
        assert_eq!(b.metadata["n"], "3");
    }

    #[test]
    fn catalog_instances_rnacos() {
        // rnacos InstanceVO: `service`, `instanceId`, `marked`, optional booleans; weight as f32.
        let body = br#"{"count":1,"list":[{"service":"DEFAULT_GROUP@@s","ip":"10.1.1.1","port":80,
          "clusterName":"DEFAULT","weight":1.0,"healthy":true,"instanceId":"10.1.1.1#80",
          "metadata":{},"marked":true,"enabled":true,"serviceName":"DEFAULT_GROUP@@s","ephemeral":false}]}"#;
        let page = parse_catalog_instances(body).unwrap();
        assert_eq!(page.total, 1);
        assert!(!items(page)[0].ephemeral);
    }

    #[test]
    fn catalog_instances_rejects_holes() {
        assert!(parse_catalog_instances(br#"{"list":[{"port":1}],"count":1}"#).is_err());
        assert!(parse_catalog_instances(br#"{"list":["10.0.0.1"],"count":1}"#).is_err());
        assert!(parse_catalog_instances(br#"{"list":[]}"#).is_err());
        assert!(parse_catalog_instances(b"caused: service not found").is_err());
        assert!(parse_catalog_instances(b"").is_err());
    }

    /// Issue 15 (8): Nacos accepts a hostname, a zoned IPv6 address or port 0 as an instance's
    /// address; such an instance is listed as unaddressable (Foreign), the rest of the page stands.
    #[test]
    fn odd_addresses_are_unaddressable_instances_not_a_failed_page() {
        let body = br#"{"list":[{"ip":"orders.shop.svc","port":8080,"clusterName":"c1"},
          {"ip":"fe80::1%eth0","port":8080},{"ip":"10.0.0.3","port":0},{"ip":"10.0.0.4"},
          {"ip":"10.0.0.5","port":70000},{"ip":"10.0.0.6","port":8080}],"count":6}"#;
        let page = parse_catalog_instances(body).unwrap();
        assert_eq!((page.total, page.items.len()), (6, 6));
        let odd: Vec<&Unaddressable> = page.items.iter().filter_map(|l| l.as_ref().err()).collect();
        assert_eq!(odd.len(), 5);
        assert_eq!(odd[0].address, "orders.shop.svc:8080");
        assert_eq!(odd[0].cluster, "c1");
        assert!(odd[0].why.contains("not an IP address"), "{}", odd[0].why);
        assert!(odd[2].why.contains("port"), "{}", odd[2].why);
        let ok: Vec<&WireInstance> = page.items.iter().filter_map(|l| l.as_ref().ok()).collect();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].ip.to_string(), "10.0.0.6");
        // Looked up by key, an odd instance is an error: it cannot be the one asked for.
        assert!(parse_instance_detail(br#"{"ip":"orders.shop.svc","port":8080}"#).is_err());
    }

    #[test]
    fn ipv6_instance() {
        let body = br#"{"list":[{"ip":"[fd00::1]","port":80}],"count":1}"#;
        let page = items(parse_catalog_instances(body).unwrap());
        assert_eq!(page[0].ip.to_string(), "fd00::1");
        assert_eq!(page[0].cluster, "DEFAULT");
        assert!(page[0].enabled);
    }

    #[test]
    fn v3_instance_list() {
        let body = br#"{"code":0,"message":"success","data":[
          {"ip":"10.0.0.9","port":9090,"weight":1.0,"healthy":true,"enabled":false,"ephemeral":true,
           "clusterName":"DEFAULT","serviceName":"orders","metadata":{}}]}"#;
        let page = parse_v3_instances(body).unwrap();
        assert_eq!(page.total, 1);
        assert!(!items(page)[0].enabled);

        let paged = br#"{"code":0,"message":"success","data":{"totalCount":3,"pageNumber":1,
          "pagesAvailable":1,"pageItems":[{"ip":"10.0.0.9","port":9090}]}}"#;
        assert_eq!(parse_v3_instances(paged).unwrap().total, 3);
    }

    #[test]
    fn wrapped_error_codes() {
        for (code, msg) in [
            (
                10000,
                "Required parameter 'serviceName' type String is not present",
            ),
            (10001, "access denied"),
            (20004, "resource not found"),
            (21003, "instance not found, ip=10.0.0.1, port=80"),
            (21008, "service not exist"),
        ] {
            let body = format!(r#"{{"code":{code},"message":"{msg}","data":null}}"#);
            match parse_v3_instances(body.as_bytes()) {
                Err(WireError::Code { code: c, message }) => {
                    assert_eq!(c, code);
                    assert_eq!(message, msg);
                }
                other => panic!("{code}: {other:?}"),
            }
            assert_eq!(parse_error_code(body.as_bytes()).unwrap().0, code);
        }
        assert_eq!(parse_error_code(b"ok"), None);
        assert_eq!(
            parse_error_code(br#"{"code":"21008","message":"x"}"#)
                .unwrap()
                .0,
            21008
        );
    }

    #[test]
    fn rnacos_console_listing() {
        let body = br#"{"data":{"totalCount":1,"list":[{"id":"10.1.1.1#80","ip":"10.1.1.1","port":80,
          "weight":1.0,"enabled":false,"healthy":true,"ephemeral":false,"clusterName":"DEFAULT",
          "serviceName":"s","groupName":"DEFAULT_GROUP","groupService":"DEFAULT_GROUP@@s",
          "metadata":{},"lastModifiedMillis":1,"registerTime":1,"namespaceId":"public","appName":"",
          "fromGrpc":false,"fromCluster":0,"clientId":""}]},"success":true,"code":null,"msg":null}"#;
        let page = parse_rnacos_console_instances(body).unwrap();
        assert!(!items(page)[0].enabled);
        assert!(
            parse_rnacos_console_instances(br#"{"success":false,"code":"SYSTEM_ERROR"}"#).is_err()
        );
        // With the no-auth console off, rnacos answers its HTML hint page with 200.
        assert!(parse_rnacos_console_instances(b"<!DOCTYPE html><html></html>").is_err());
    }

    #[test]
    fn service_lists() {
        let page = parse_v1_service_list(br#"{"count":3,"doms":["a","b"]}"#).unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(page.items, vec!["a", "b"]);
        assert!(parse_v1_service_list(br#"{"count":0,"doms":null}"#)
            .unwrap()
            .items
            .is_empty());
        assert!(parse_v1_service_list(br#"{"doms":[]}"#).is_err());

        let v3 = br#"{"code":0,"message":"success","data":{"totalCount":2,"pageNumber":1,"pagesAvailable":1,
          "pageItems":[{"name":"orders","groupName":"DEFAULT_GROUP","clusterCount":1,"ipCount":2,
          "healthyInstanceCount":2,"triggerFlag":false},"G@@pay"]}}"#;
        let page = parse_v3_service_list(v3).unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(page.items[0].group.as_deref(), Some("DEFAULT_GROUP"));
        assert_eq!(page.items[1].group.as_deref(), Some("G"));
        assert_eq!(page.items[1].name, "pay");
    }

    #[test]
    fn service_clusters() {
        let v1 = br#"{"service":{"name":"orders","protectThreshold":0.0,"groupName":"DEFAULT_GROUP"},
          "clusters":[{"name":"DEFAULT","healthChecker":{"type":"TCP"},"metadata":{}},{"name":"c2"}]}"#;
        assert_eq!(parse_service_clusters(v1).unwrap(), vec!["DEFAULT", "c2"]);
        let v3 = br#"{"code":0,"message":"success","data":{"namespaceId":"public","serviceName":"orders",
          "groupName":"DEFAULT_GROUP","clusterMap":{"z":{},"DEFAULT":{"clusterName":"DEFAULT"}},
          "metadata":{},"protectThreshold":0.0,"ephemeral":false}}"#;
        assert_eq!(parse_service_clusters(v3).unwrap(), vec!["DEFAULT", "z"]);
        let empty = br#"{"service":{"name":"orders"},"clusters":[]}"#;
        assert!(parse_service_clusters(empty).unwrap().is_empty());
        assert!(parse_service_clusters(br#"{"foo":1}"#).is_err());
        match parse_service_clusters(br#"{"code":21008,"message":"service not exist","data":null}"#)
        {
            Err(WireError::Code { code: 21008, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_version() {
        let v1 = br#"{"version":"2.5.2","standalone_mode":"standalone","function_mode":null,
          "login_page_enabled":"true","auth_enabled":"false","console_ui_enabled":"true"}"#;
        assert_eq!(parse_server_version(v1).unwrap(), "2.5.2");
        let v3 = br#"{"code":0,"message":"success","data":{"version":"3.1.0","standalone_mode":"standalone"}}"#;
        assert_eq!(parse_server_version(v3).unwrap(), "3.1.0");
        assert!(parse_server_version(b"<html>").is_err());
    }

    #[test]
    fn login() {
        let t = parse_login(br#"{"accessToken":"eyJhbGci.secret","tokenTtl":18000,"globalAdmin":true,"username":"nacos"}"#).unwrap();
        assert_eq!(t.ttl_seconds, 18000);
        assert!(!format!("{t:?}").contains("secret"));
        let rn =
            parse_login(br#"{"accessToken":"AUTH_DISABLED","tokenTtl":3600,"globalAdmin":true}"#)
                .unwrap();
        assert_eq!(rn.access_token, "AUTH_DISABLED");
        assert!(parse_login(b"unknown user!").is_err());
        assert!(parse_login(br#"{"accessToken":""}"#).is_err());
    }

    #[test]
    fn write_ack() {
        assert!(parse_write_ack(b"ok").is_ok());
        assert!(parse_write_ack(br#"{"code":0,"message":"success","data":"ok"}"#).is_ok());
        assert!(matches!(
            parse_write_ack(br#"{"code":21003,"message":"instance not found","data":null}"#),
            Err(WireError::Code { code: 21003, .. })
        ));
        assert!(parse_write_ack(b"instance check is invalid").is_err());
    }

    #[test]
    fn namespace_lists() {
        // 2.x / rnacos v1 console answer: the public namespace has the id "".
        let v1 = br#"{"code":200,"message":null,"data":[
          {"namespace":"","namespaceShowName":"public","namespaceDesc":null,"quota":200,"configCount":0,"type":0},
          {"namespace":"dev","namespaceShowName":"dev","quota":200,"configCount":1,"type":2}]}"#;
        assert_eq!(parse_namespace_list(v1).unwrap(), vec!["", "dev"]);
        let v3 = br#"{"code":0,"message":"success","data":[{"namespace":"public","namespaceShowName":"public"}]}"#;
        assert_eq!(parse_namespace_list(v3).unwrap(), vec!["public"]);
        assert!(
            parse_namespace_list(br#"{"code":200,"data":[{"namespaceShowName":"x"}]}"#).is_err()
        );
        assert!(parse_namespace_list(br#"{"code":200,"data":{}}"#).is_err());
        assert!(matches!(
            parse_namespace_list(br#"{"code":10001,"message":"denied"}"#),
            Err(WireError::Code { code: 10001, .. })
        ));
        assert!(parse_namespace_list(b"<html>").is_err());
    }

    #[test]
    fn truncate_is_char_safe() {
        assert_eq!(truncate("ab", 5), "ab");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
