//! Who keeps an instance registered, as Alibaba Nacos 2.x and 3.x tell
//! (`GET /v2/ns/client/service/publisher/list`, `GET /v3/admin/ns/client/service/publisher/list`,
//! both admin reads). Seen on 2.5.1 and 3.0.3 (`{"code":0,"data":[{"ip","port","clientId",…}]}`):
//! - an instance a 2.x+ SDK registered over gRPC is published by its connection, whose id is
//!   `<connected at, ms since the epoch>_<client ip>_<client port>`;
//! - one registered over HTTP (a 1.x client, a persistent instance) by `ip:port#<ephemeral>`.
//!
//! A DELETE over HTTP ends only the second kind: the operator asks first, and disables an
//! instance a connection keeps straight away.

use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::Result;
use super::transport::{Operation, Req, Transport};
use super::wire::{parse_wrapped, WireError};
use super::ApiGeneration;
use crate::model::Instance;

const V2: &str = "/nacos/v2/ns/client/service/publisher/list";
const V3: &str = "/nacos/v3/admin/ns/client/service/publisher/list";
const V2_CLIENT: &str = "/nacos/v2/ns/client";
const V3_CLIENT: &str = "/nacos/v3/admin/ns/client";

/// One client that publishes an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publisher {
    /// A gRPC connection (Nacos 2.x/3.x SDK): a DELETE over HTTP leaves its instance.
    Connection(Connection),
    /// Registered over HTTP: a 1.x client's beats, or a persistent instance.
    Http(String),
}

/// A gRPC connection, as its id tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    /// Where the client connects from (the process, wherever it runs now).
    pub client: Option<SocketAddr>,
    pub since: Option<DateTime<Utc>>,
    /// What the client told the member it is connected to, where asked ([`detail`]).
    pub detail: Option<ClientDetail>,
}

/// What a connected client reports of itself (`GET /v2/ns/client`, `/v3/admin/ns/client`). Only
/// the member the client is connected to knows it (2.5.1 answers 500 elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientDetail {
    /// e.g. `Nacos-Java-Client:v2.5.1`.
    pub sdk: Option<String>,
    /// The address the client reports as its own (its pod's, usually), which the connection's
    /// may not show behind NAT.
    pub ip: Option<String>,
    pub app: Option<String>,
}

impl Publisher {
    /// Tells the kind from the client id (see the module's comment).
    pub fn from_client_id(id: &str) -> Self {
        if id.contains('#') {
            return Publisher::Http(id.to_string());
        }
        let mut parts = id.splitn(2, '_');
        let since = parts
            .next()
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis);
        let client = parts.next().and_then(|rest| {
            let (ip, port) = rest.rsplit_once('_')?;
            Some(SocketAddr::new(
                ip.parse::<IpAddr>().ok()?,
                port.parse().ok()?,
            ))
        });
        Publisher::Connection(Connection {
            id: id.to_string(),
            client,
            since,
            detail: None,
        })
    }
}

impl std::fmt::Display for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.client {
            Some(client) => write!(f, "client {client}")?,
            None => write!(f, "connection {}", self.id)?,
        }
        if let Some(d) = &self.detail {
            let said: Vec<String> = [
                d.ip.as_ref().map(|ip| format!("reports itself as {ip}")),
                d.app.as_ref().map(|app| format!("app {app}")),
                d.sdk.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !said.is_empty() {
                write!(f, " ({})", said.join(", "))?;
            }
        }
        if let Some(since) = self.since {
            write!(
                f,
                ", connected since {}",
                since.format("%Y-%m-%dT%H:%M:%SZ")
            )?;
        }
        Ok(())
    }
}

impl Connection {
    /// Why the instance it keeps is still listed, as `plan` and the Events say it.
    pub fn keeps_it(&self) -> String {
        format!("a gRPC connection keeps it registered ({self}): the process still runs")
    }
}

impl Publisher {
    /// Why the instance it publishes is still listed, as `plan` says it.
    pub fn keeps_it(&self) -> String {
        match self {
            Publisher::Connection(c) => c.keeps_it(),
            Publisher::Http(id) => format!(
                "registered over HTTP as ephemeral (client {id}): Nacos keeps it while beats for \
                 it come (a 1.x client or the open API) and drops it 30s after the last one"
            ),
        }
    }
}

/// The client that alone keeps an ephemeral instance registered, if the server names one: a gRPC
/// connection, or an HTTP registration kept by its beats. A DELETE does not end either (the next
/// beat registers the instance again).
pub fn sole_publisher(publishers: &[Publisher]) -> Option<&Publisher> {
    match publishers {
        [one] => Some(one),
        _ => None,
    }
}

/// The publishers of one ephemeral instance (Nacos 2.x/3.x only).
pub(super) async fn list(
    t: &Transport,
    api: ApiGeneration,
    instance: &Instance,
) -> Result<Vec<Publisher>> {
    let k = &instance.key;
    let path = if api == ApiGeneration::V3 { V3 } else { V2 };
    let req = Req::get(
        Operation::ListPublishers,
        path,
        t.service_query(
            &k.service,
            [
                ("ephemeral", "true".to_string()),
                // Compared as the client registered it.
                ("ip", instance.listed_ip.clone()),
                ("port", k.port.to_string()),
            ],
        ),
    );
    t.request(&req).await?.ok()?.parse(parse)
}

/// What the client of connection `id` reports of itself.
pub(super) async fn detail(t: &Transport, api: ApiGeneration, id: &str) -> Result<ClientDetail> {
    let path = if api == ApiGeneration::V3 {
        V3_CLIENT
    } else {
        V2_CLIENT
    };
    let req = Req::get(
        Operation::ClientDetail,
        path,
        vec![("clientId", id.to_string())],
    );
    t.request(&req).await?.ok()?.parse(parse_detail)
}

fn parse_detail(body: &[u8]) -> Result<ClientDetail, WireError> {
    let data = parse_wrapped(body)?;
    let text = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && *v != "unknown")
            .map(str::to_string)
    };
    Ok(ClientDetail {
        sdk: text("version"),
        ip: text("clientIp"),
        app: text("appName"),
    })
}

fn parse(body: &[u8]) -> Result<Vec<Publisher>, WireError> {
    let data = parse_wrapped(body)?;
    let items = data
        .as_array()
        .ok_or_else(|| WireError::Malformed("publisher list is not an array".into()))?;
    items
        .iter()
        .map(|item| {
            item.get("clientId")
                .and_then(Value::as_str)
                .map(Publisher::from_client_id)
                .ok_or_else(|| WireError::Malformed("publisher without a clientId".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_id_names_the_client_and_when_it_connected() {
        let Publisher::Connection(c) = Publisher::from_client_id("1796596545084_127.0.0.1_49866")
        else {
            panic!("not a connection")
        };
        assert_eq!(c.client, Some("127.0.0.1:49866".parse().unwrap()));
        assert_eq!(
            c.since.map(|t| t.timestamp_millis()),
            Some(1_796_596_545_084)
        );
        assert_eq!(
            c.to_string(),
            "client 127.0.0.1:49866, connected since 2026-12-06T22:35:45Z"
        );
        // As 2.5.1 and 3.0.3 describe a Java SDK's connection (`appName` unknown).
        let answer = br#"{"code":0,"message":"success","data":{"clientId":"1796598660718_127.0.0.1_33310","ephemeral":true,"lastUpdatedTime":1796598660826,"clientType":"connection","connectType":"GRPC","appName":"unknown","version":"Nacos-Java-Client:v2.5.1","clientIp":"192.0.2.2","clientPort":"33310"}}"#;
        let mut described = c.clone();
        described.detail = Some(parse_detail(answer).unwrap());
        assert_eq!(
            described.to_string(),
            "client 127.0.0.1:49866 (reports itself as 192.0.2.2, Nacos-Java-Client:v2.5.1), \
             connected since 2026-12-06T22:35:45Z"
        );
        let Publisher::Connection(v6) = Publisher::from_client_id("1796596545084_fd00::7_41000")
        else {
            panic!("not a connection")
        };
        assert_eq!(v6.client, Some("[fd00::7]:41000".parse().unwrap()));
    }

    #[test]
    fn an_odd_connection_id_is_still_a_connection_shown_whole() {
        let p = Publisher::from_client_id("some-proxy-conn");
        let Publisher::Connection(c) = &p else {
            panic!("not a connection")
        };
        assert_eq!((c.client, c.since), (None, None));
        assert_eq!(c.to_string(), "connection some-proxy-conn");
    }

    #[test]
    fn http_registrations_are_told_apart() {
        for id in ["10.9.9.10:8080#true", "10.9.9.11:8080#false"] {
            assert_eq!(Publisher::from_client_id(id), Publisher::Http(id.into()));
        }
        // What keeps each registered, in `plan`'s words.
        assert!(Publisher::from_client_id("10.9.9.10:8080#true")
            .keeps_it()
            .starts_with("registered over HTTP as ephemeral (client 10.9.9.10:8080#true): Nacos keeps it while beats"));
        assert!(Publisher::from_client_id("1796596545084_127.0.0.1_49866")
            .keeps_it()
            .starts_with("a gRPC connection keeps it registered (client 127.0.0.1:49866"));
    }

    #[test]
    fn only_a_lone_publisher_keeps_an_instance_from_a_delete() {
        let conn = Publisher::from_client_id("1796596545084_127.0.0.1_49866");
        let http = Publisher::from_client_id("10.9.9.10:8080#true");
        assert_eq!(sole_publisher(std::slice::from_ref(&conn)), Some(&conn));
        assert_eq!(sole_publisher(std::slice::from_ref(&http)), Some(&http));
        assert!(sole_publisher(&[]).is_none());
        assert!(sole_publisher(&[conn.clone(), http]).is_none());
        assert!(sole_publisher(&[conn.clone(), conn]).is_none());
    }

    #[test]
    fn the_answers_of_2_5_1_and_3_0_3_parse() {
        let v2 = br#"{"code":0,"message":"success","data":[{"ip":"10.9.9.9","port":8080,"cluster":"DEFAULT","clientId":"1796596545084_127.0.0.1_49866"}]}"#;
        let v3 = br#"{"code":0,"message":"success","data":[{"clientId":"10.9.9.10:8080#true","ip":"10.9.9.10","port":8080,"clusterName":"DEFAULT"}]}"#;
        assert!(matches!(
            &parse(v2).unwrap()[..],
            [Publisher::Connection(_)]
        ));
        assert!(matches!(&parse(v3).unwrap()[..], [Publisher::Http(_)]));
        assert_eq!(parse(br#"{"code":0,"data":[]}"#).unwrap(), vec![]);
        assert!(parse(br#"{"code":0,"data":[{"ip":"x"}]}"#).is_err());
        assert!(parse(br#"{"code":0,"data":{}}"#).is_err());
    }
}
