//! Client behaviour against a scripted in-process HTTP server: detection, pagination, failover,
//! retries, login and re-login, write parameters.

use super::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    form: BTreeMap<String, String>,
    auth: Option<String>,
}

type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

struct Mock {
    addr: SocketAddr,
    seen: Arc<StdMutex<Vec<Seen>>>,
}

impl Mock {
    async fn start(handler: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    let (head_end, content_len) = loop {
                        let n = sock.read(&mut tmp).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + content_len {
                        let n = sock.read(&mut tmp).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_string();
                    let target = first.next().unwrap_or("").to_string();
                    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
                    let auth = lines
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                        .map(|(_, v)| v.trim().to_string());
                    let s = Seen {
                        method,
                        path: path.to_string(),
                        query: url::form_urlencoded::parse(q.as_bytes())
                            .into_owned()
                            .collect(),
                        form: url::form_urlencoded::parse(body.as_bytes())
                            .into_owned()
                            .collect(),
                        auth,
                    };
                    let (status, out) = handler(&s);
                    seen.lock().unwrap().push(s);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                        out.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Mock { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

fn fast_config(addrs: Vec<String>) -> NacosConfig {
    let mut c = NacosConfig::new(addrs);
    c.request_timeout = Duration::from_secs(2);
    c.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    };
    c.page_size = 2;
    c
}

/// An address on which nothing listens.
async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    format!("http://{a}")
}

fn inst_json(ip: &str, port: u16, cluster: &str, enabled: bool) -> String {
    format!(
        r#"{{"ip":"{ip}","port":{port},"clusterName":"{cluster}","weight":1.0,"healthy":true,"enabled":{enabled},"ephemeral":true,"metadata":{{}}}}"#
    )
}

/// Instances of the scripted 2.x service `orders`: three in DEFAULT (one disabled), one in c2.
fn orders_instances() -> Vec<String> {
    vec![
        inst_json("10.0.0.1", 80, "DEFAULT", true),
        inst_json("10.0.0.2", 80, "DEFAULT", false),
        inst_json("10.0.0.3", 80, "DEFAULT", true),
        inst_json("10.0.1.1", 81, "c2", true),
    ]
}

fn page_of(all: &[String], s: &Seen) -> (Vec<String>, usize) {
    let page: usize = s.query["pageNo"].parse().unwrap();
    let size: usize = s.query["pageSize"].parse().unwrap();
    let items = all
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    (items, all.len())
}

/// A 2.5.1 server as seen on the testbed: v3 paths answer 501, the v2 catalog lists every cluster
/// (paged, wrapped, `{"count":0}` for a missing service), the v1 catalog one cluster at a time.
fn nacos2(s: &Seen) -> (u16, String) {
    match s.path.as_str() {
        p if p.starts_with("/nacos/v3/") => (
            501,
            format!(r#"{{"status":501,"error":"Not Implemented","message":"no such api:{p}"}}"#),
        ),
        "/nacos/v1/console/server/state" => (200, r#"{"version":"2.5.1"}"#.into()),
        "/nacos/v2/ns/catalog/instances" => {
            if s.query["serviceName"] != "DEFAULT_GROUP@@orders" {
                return (
                    200,
                    r#"{"code":0,"message":"success","data":{"count":0}}"#.into(),
                );
            }
            let (items, count) = page_of(&orders_instances(), s);
            (
                200,
                format!(
                    r#"{{"code":0,"message":"success","data":{{"instances":[{}],"count":{count}}}}}"#,
                    items.join(",")
                ),
            )
        }
        "/nacos/v1/ns/catalog/service" => (
            200,
            r#"{"service":{"name":"orders"},"clusters":[{"name":"DEFAULT"},{"name":"c2"}]}"#.into(),
        ),
        "/nacos/v1/ns/catalog/instances" => {
            let cluster = s.query["clusterName"].clone();
            let all: Vec<String> = orders_instances()
                .into_iter()
                .filter(|i| i.contains(&format!(r#""clusterName":"{cluster}""#)))
                .collect();
            let (items, count) = page_of(&all, s);
            (
                200,
                format!(r#"{{"list":[{}],"count":{count}}}"#, items.join(",")),
            )
        }
        "/nacos/v1/ns/service/list" => {
            let page: usize = s.query["pageNo"].parse().unwrap();
            let doms = if page == 1 {
                r#"["a","b"]"#
            } else {
                r#"["c"]"#
            };
            (200, format!(r#"{{"count":3,"doms":{doms}}}"#))
        }
        "/nacos/v1/ns/instance" => (200, "ok".into()),
        _ => (404, "no".into()),
    }
}

#[tokio::test]
async fn detects_2x_and_lists_every_cluster_and_page_through_the_v2_catalog() {
    let m = Mock::start(nacos2).await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let info = c.server_info().await.unwrap();
    assert_eq!(info.version, "2.5.1");
    assert_eq!(info.api, ApiGeneration::V2);
    assert_eq!(info.flavor, ServerFlavor::Nacos);
    assert_eq!(info.settle, Duration::from_millis(500));
    assert!(info.metadata_overlay);

    let svc = ServiceKey::new("DEFAULT_GROUP", "orders");
    let snap = c.list_instances(&svc, &[]).await.unwrap();
    assert_eq!(snap.instances.len(), 4);
    assert!(snap.instances.iter().any(|i| !i.enabled));
    // Four instances, two a page; the v1 catalog is not needed.
    assert_eq!(m.count("/nacos/v2/ns/catalog/instances"), 2);
    assert_eq!(m.count("/nacos/v1/ns/catalog/service"), 0);

    let only_c2 = c.list_instances(&svc, &["c2".to_string()]).await.unwrap();
    assert_eq!(only_c2.instances.len(), 1);
    assert_eq!(only_c2.instances[0].key.cluster, "c2");
    let none = c.list_instances(&svc, &["zz".to_string()]).await.unwrap();
    assert!(none.instances.is_empty());
    // A service the server does not have is empty, not an error.
    let missing = c
        .list_instances(&ServiceKey::new("DEFAULT_GROUP", "nope"), &[])
        .await
        .unwrap();
    assert!(missing.instances.is_empty());

    assert_eq!(
        c.list_services("DEFAULT_GROUP").await.unwrap(),
        vec!["a", "b", "c"]
    );
    let q = &m
        .seen()
        .into_iter()
        .find(|s| s.path == "/nacos/v1/ns/service/list")
        .unwrap()
        .query;
    assert_eq!(q["namespaceId"], "public");
}

#[tokio::test]
async fn a_2x_server_without_the_v2_catalog_is_listed_through_v1_from_then_on() {
    // 2.0/2.1 answer 501 `no such api` to the v2 catalog.
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v2/ns/catalog/instances" => (
            501,
            r#"{"status":501,"error":"Not Implemented","message":"no such api"}"#.into(),
        ),
        _ => nacos2(s),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let svc = ServiceKey::new("DEFAULT_GROUP", "orders");
    for _ in 0..2 {
        assert_eq!(
            c.list_instances(&svc, &[]).await.unwrap().instances.len(),
            4
        );
    }
    assert_eq!(m.count("/nacos/v2/ns/catalog/instances"), 1);
    assert_eq!(m.count("/nacos/v1/ns/catalog/service"), 2);
}

#[tokio::test]
async fn v1_on_2x_skips_a_cluster_that_went_between_the_two_calls() {
    // catalog/service still names c2; by the time it is listed, its last instance is gone.
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v1/ns/catalog/instances" if s.query["clusterName"] == "c2" => {
            (404, "cluster c2 is not found!".into())
        }
        _ => nacos2(s),
    })
    .await;
    let mut cfg = fast_config(vec![m.url()]);
    cfg.api = ApiGeneration::V1;
    let c = NacosClient::new(cfg).unwrap();
    let info = c.server_info().await.unwrap();
    assert_eq!(
        (info.api, info.version.as_str()),
        (ApiGeneration::V1, "2.5.1")
    );
    let snap = c
        .list_instances(&ServiceKey::new("DEFAULT_GROUP", "orders"), &[])
        .await
        .unwrap();
    assert_eq!(snap.instances.len(), 3);
    assert!(snap.instances.iter().all(|i| i.key.cluster == "DEFAULT"));
}

#[tokio::test]
async fn missing_service_is_empty_and_bad_page_is_error() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v1/console/server/state" => (200, r#"{"version":"1.4.8"}"#.into()),
        "/nacos/v1/ns/catalog/service" if s.query["serviceName"] == "gone" => (
            404,
            "caused: service DEFAULT_GROUP@@gone is not found!".into(),
        ),
        "/nacos/v1/ns/catalog/service" => (
            200,
            r#"{"service":{},"clusters":[{"name":"DEFAULT"}]}"#.into(),
        ),
        // Says 3 but the second page is empty: the listing is incomplete.
        "/nacos/v1/ns/catalog/instances" if s.query["pageNo"] == "1" => (
            200,
            format!(
                r#"{{"list":[{},{}],"count":3}}"#,
                inst_json("10.0.0.1", 80, "DEFAULT", true),
                inst_json("10.0.0.2", 80, "DEFAULT", true)
            ),
        ),
        "/nacos/v1/ns/catalog/instances" => (200, r#"{"list":[],"count":3}"#.into()),
        _ => (404, String::new()),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let info = c.server_info().await.unwrap();
    assert_eq!(info.api, ApiGeneration::V1);
    assert_eq!(info.settle, Duration::ZERO);
    let gone = c
        .list_instances(&ServiceKey::new("DEFAULT_GROUP", "gone"), &[])
        .await
        .unwrap();
    assert!(gone.instances.is_empty());
    // A 404 that does not name the service is no proof of absence.
    let e = c
        .list_instances(&ServiceKey::new("OTHER", "orders"), &[])
        .await;
    assert!(e.is_err() || e.as_ref().is_ok_and(|s| s.instances.is_empty()));
    let e = c
        .list_instances(&ServiceKey::new("DEFAULT_GROUP", "orders"), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, NacosError::Protocol { .. }), "{e}");
}

#[tokio::test]
async fn server_error_is_error_not_empty() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v1/console/server/state" => (200, r#"{"version":"2.4.3"}"#.into()),
        p if p.starts_with("/nacos/v3/") => (501, "no such api".into()),
        _ => (500, "java.lang.NullPointerException".into()),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let e = c
        .list_instances(&ServiceKey::new("DEFAULT_GROUP", "orders"), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, NacosError::Server { status: 500, .. }), "{e}");
    // Reads are retried: 3 attempts.
    assert_eq!(m.count("/nacos/v2/ns/catalog/instances"), 3);
}

#[tokio::test]
async fn fails_over_and_remembers_the_good_address() {
    let dead = dead_addr().await;
    let m = Mock::start(nacos2).await;
    let c = NacosClient::new(fast_config(vec![dead.clone(), m.url()])).unwrap();
    c.server_info().await.unwrap();
    assert_eq!(c.current_address(), m.url());

    let all_dead = NacosClient::new(fast_config(vec![dead.clone()])).unwrap();
    let e = all_dead.server_info().await.unwrap_err();
    match &e {
        NacosError::Unreachable {
            addresses, path, ..
        } => {
            assert!(addresses.contains(&dead[7..]));
            assert!(path.starts_with("/nacos/"));
        }
        other => panic!("{other:?}"),
    }
}

fn orders_instance(metadata: &[(&str, &str)]) -> Instance {
    Instance {
        key: InstanceKey {
            service: ServiceKey::new("G", "orders"),
            cluster: "c2".into(),
            ip: "10.0.1.1".parse().unwrap(),
            port: 81,
        },
        listed_ip: "10.0.1.1".into(),
        ephemeral: false,
        enabled: true,
        healthy: true,
        weight: 3.0,
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test]
async fn writes_send_only_the_needed_fields_and_on_2x_only_the_marker() {
    let m = Mock::start(nacos2).await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    // Metadata near Nacos's 1,024-character limit, as a Dubbo provider registers it.
    let big = "x".repeat(1000);
    let inst = orders_instance(&[("dubbo.metadata", &big)]);
    c.deregister(&inst).await.unwrap();
    c.disable(&inst, "uid-1").await.unwrap();
    c.enable(&inst).await.unwrap();
    let seen = m.seen();
    let del = seen.iter().find(|s| s.method == "DELETE").unwrap();
    assert_eq!(del.path, "/nacos/v1/ns/instance");
    assert_eq!(del.query["ephemeral"], "false");
    assert_eq!(del.query["groupName"], "G");
    assert_eq!(del.query["clusterName"], "c2");
    let patches: Vec<_> = seen.iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(patches[0].form["enabled"], "false");
    assert_eq!(patches[0].form["ip"], "10.0.1.1");
    // 2.x keeps a write's metadata in an overlay: the marker alone goes, the rest stays.
    assert_eq!(
        patches[0].form["metadata"],
        r#"{"nacos-reconciler.io/disabled-by":"uid-1"}"#
    );
    // PATCH keeps whatever is not sent: no weight, no healthy.
    assert!(!patches[0].form.contains_key("weight"));
    assert!(!patches[0].form.contains_key("healthy"));
    // Enabling: without the marker the metadata fits, so it goes whole and the marker is gone.
    assert_eq!(patches[1].form["enabled"], "true");
    assert!(!patches[1].form["metadata"].contains("disabled-by"));
    assert!(patches[1].form["metadata"].contains(&big));
    // One that does not fit even without the marker: an empty overlay.
    let huge = orders_instance(&[("dubbo.metadata", &"y".repeat(1100))]);
    c.enable(&huge).await.unwrap();
    let last = m.seen().into_iter().rfind(|s| s.method == "PATCH").unwrap();
    assert_eq!(last.form["metadata"], "{}");
}

#[tokio::test]
async fn on_2x_metadata_that_fits_goes_whole_so_an_administrators_edits_survive() {
    // The overlay a write replaces may hold what an administrator set in the console: sent whole
    // (it fits in 1,024 characters), it keeps that.
    let m = Mock::start(nacos2).await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let inst = orders_instance(&[("app", "orders"), ("team", "shipping")]);
    c.disable(&inst, "uid-1").await.unwrap();
    let mut marked = inst.clone();
    marked
        .metadata
        .insert(crate::model::DISABLED_BY_KEY.into(), "uid-1".into());
    c.enable(&marked).await.unwrap();
    let patches: Vec<_> = m
        .seen()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .collect();
    assert_eq!(
        patches[0].form["metadata"],
        r#"{"app":"orders","nacos-reconciler.io/disabled-by":"uid-1","team":"shipping"}"#
    );
    assert_eq!(
        patches[1].form["metadata"],
        r#"{"app":"orders","team":"shipping"}"#
    );
}

#[test]
fn metadata_is_counted_as_nacos_counts_it() {
    let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(metadata_len(&m(&[("ab", "cd"), ("e", " ")])), 5);
    // Java counts UTF-16 units: an emoji is two.
    assert_eq!(metadata_len(&m(&[("k", "😀")])), 3);
}

#[tokio::test]
async fn on_1x_a_write_replaces_the_metadata_so_all_of_it_goes_with_the_marker() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v1/console/server/state" => (200, r#"{"version":"1.4.8"}"#.into()),
        "/nacos/v1/ns/instance" => (200, "ok".into()),
        _ => (404, String::new()),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let inst = orders_instance(&[("app", "orders")]);
    c.disable(&inst, "uid-1").await.unwrap();
    let mut marked = inst.clone();
    marked
        .metadata
        .insert(crate::model::DISABLED_BY_KEY.into(), "uid-1".into());
    c.enable(&marked).await.unwrap();
    let patches: Vec<_> = m
        .seen()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .collect();
    assert_eq!(
        patches[0].form["metadata"],
        r#"{"app":"orders","nacos-reconciler.io/disabled-by":"uid-1"}"#
    );
    assert_eq!(patches[1].form["metadata"], r#"{"app":"orders"}"#);
}

#[tokio::test]
async fn read_back_waits_for_the_refreshed_view() {
    // A DELETE that took: the listing shows the instance for 500 ms more, as 2.x does.
    let deleted: Arc<StdMutex<Option<std::time::Instant>>> = Arc::new(StdMutex::new(None));
    let d = deleted.clone();
    let m = Mock::start(move |s| match (s.method.as_str(), s.path.as_str()) {
        ("DELETE", "/nacos/v1/ns/instance") => {
            *d.lock().unwrap() = Some(std::time::Instant::now());
            (200, "ok".into())
        }
        (_, "/nacos/v2/ns/catalog/instances") => {
            let refreshed = d
                .lock()
                .unwrap()
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(500));
            let list = if refreshed {
                String::new()
            } else {
                inst_json("10.0.1.1", 81, "c2", true)
            };
            let count = usize::from(!refreshed);
            (
                200,
                format!(r#"{{"code":0,"data":{{"instances":[{list}],"count":{count}}}}}"#),
            )
        }
        _ => nacos2(s),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let mut inst = orders_instance(&[]);
    inst.key.service = ServiceKey::new("DEFAULT_GROUP", "orders");
    c.deregister(&inst).await.unwrap();
    let started = std::time::Instant::now();
    let seen = c.read_back(&inst, |i| i.is_none()).await.unwrap();
    assert!(seen.is_none(), "the DELETE took: {seen:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));

    // An instance that stays (a live gRPC owner) is given up on after three settle times.
    let started = std::time::Instant::now();
    *deleted.lock().unwrap() = None;
    let seen = c.read_back(&inst, |i| i.is_none()).await.unwrap();
    assert!(seen.is_some());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn v3_uses_the_admin_api_and_partial_updates_send_no_weight() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v3/admin/core/state" => (
            200,
            r#"{"code":0,"message":"success","data":{"version":"3.0.3"}}"#.into(),
        ),
        "/nacos/v3/admin/ns/service" => (
            200,
            r#"{"code":0,"message":"success","data":{"clusterMap":{"DEFAULT":{},"b":{},"gone":{}}}}"#.into(),
        ),
        "/nacos/v3/admin/ns/instance/list" => {
            let c = s.query["clusterName"].clone();
            if c == "gone" {
                return (
                    404,
                    r#"{"code":30000,"message":"server error","data":"cluster gone is not found!"}"#.into(),
                );
            }
            (
                200,
                format!(
                    r#"{{"code":0,"message":"success","data":[{}]}}"#,
                    inst_json(if c == "b" { "10.0.0.2" } else { "10.0.0.1" }, 80, &c, false)
                ),
            )
        }
        "/nacos/v3/admin/ns/instance" if s.method == "GET" => (
            200,
            format!(
                r#"{{"code":0,"message":"success","data":{}}}"#,
                inst_json("10.0.0.1", 80, "DEFAULT", false)
            ),
        ),
        "/nacos/v3/admin/ns/instance/partial" | "/nacos/v3/admin/ns/instance" => (
            200,
            r#"{"code":0,"message":"success","data":"ok"}"#.into(),
        ),
        "/nacos/v3/admin/ns/service/list" => (
            200,
            r#"{"code":0,"message":"success","data":{"totalCount":2,"pageItems":[{"name":"x","groupName":"G"},{"name":"y","groupName":"G2"}]}}"#.into(),
        ),
        _ => (404, String::new()),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let info = c.server_info().await.unwrap();
    assert_eq!(
        (info.api, info.version.as_str()),
        (ApiGeneration::V3, "3.0.3")
    );
    let snap = c
        .list_instances(&ServiceKey::new("G", "s"), &[])
        .await
        .unwrap();
    assert_eq!(snap.instances.len(), 2);
    let inst = snap.instances[0].clone();
    let got = c.get_instance(&inst.key).await.unwrap().unwrap();
    assert!(!got.enabled);
    c.disable(&inst, "uid-1").await.unwrap();
    c.deregister(&inst).await.unwrap();
    let seen = m.seen();
    let put = seen.iter().find(|s| s.method == "PUT").unwrap();
    assert_eq!(put.path, "/nacos/v3/admin/ns/instance/partial");
    // partial changes only what is sent: the weight stays as it is.
    assert!(!put.form.contains_key("weight"));
    assert_eq!(put.form["enabled"], "false");
    assert_eq!(
        put.form["metadata"],
        r#"{"nacos-reconciler.io/disabled-by":"uid-1"}"#
    );
    assert!(seen
        .iter()
        .any(|s| s.method == "DELETE" && s.path == "/nacos/v3/admin/ns/instance"));
    assert_eq!(c.list_services("G").await.unwrap(), vec!["x"]);
}

#[tokio::test]
async fn v3_error_codes_map_to_variants() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v3/admin/core/state" => (200, r#"{"code":0,"data":{"version":"3.0.3"}}"#.into()),
        "/nacos/v3/admin/ns/service" => (
            400,
            r#"{"code":21008,"message":"service not exist","data":"service not found, namespace: public, serviceName: G@@s"}"#.into(),
        ),
        "/nacos/v3/admin/ns/instance" if s.method == "GET" => (
            404,
            r#"{"code":20004,"message":"resource not found","data":"no matched ip found!"}"#.into(),
        ),
        "/nacos/v3/admin/ns/instance" => (
            403,
            r#"{"code":10001,"message":"access denied","data":null}"#.into(),
        ),
        _ => (404, String::new()),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    // A service the server does not have is empty, not "Nacos unavailable".
    let snap = c
        .list_instances(&ServiceKey::new("G", "s"), &[])
        .await
        .unwrap();
    assert!(snap.instances.is_empty());
    let inst = Instance {
        key: InstanceKey {
            service: ServiceKey::new("G", "s"),
            cluster: "DEFAULT".into(),
            ip: "10.0.0.1".parse().unwrap(),
            port: 80,
        },
        listed_ip: "10.0.0.1".into(),
        ephemeral: true,
        enabled: true,
        healthy: true,
        weight: 1.0,
        metadata: BTreeMap::new(),
    };
    assert!(c.get_instance(&inst.key).await.unwrap().is_none());
    let e = c.deregister(&inst).await.unwrap_err();
    assert!(matches!(e, NacosError::Auth { .. }), "{e}");
}

#[tokio::test]
async fn v1_forced_on_3x_says_the_api_is_switched_off() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v3/admin/core/state" => (200, r#"{"code":0,"data":{"version":"3.0.3"}}"#.into()),
        p if p.starts_with("/nacos/v1/ns/catalog") => (
            410,
            r#"{"status":410,"error":"Gone","message":"{\"code\":40000}"}"#.into(),
        ),
        _ => (404, String::new()),
    })
    .await;
    let mut cfg = fast_config(vec![m.url()]);
    cfg.api = ApiGeneration::V1;
    let c = NacosClient::new(cfg).unwrap();
    let info = c.server_info().await.unwrap();
    assert_eq!(
        (info.api, info.version.as_str()),
        (ApiGeneration::V1, "3.0.3")
    );
    let e = c
        .list_instances(&ServiceKey::new("G", "s"), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, NacosError::ApiOff { .. }), "{e}");
    assert!(
        e.to_string().contains("set nacos.apiVersion to V3 or Auto"),
        "{e}"
    );
}

#[tokio::test]
async fn login_is_cached_and_renewed_once_on_403() {
    let logins = Arc::new(AtomicU64::new(0));
    let l2 = logins.clone();
    let m = Mock::start(move |s| match s.path.as_str() {
        // 1.x/2.x have no v3 login.
        "/nacos/v3/auth/user/login" => (404, String::new()),
        "/nacos/v1/auth/login" => {
            if s.form.get("password").map(String::as_str) != Some("pw") {
                return (403, "unknown user!".into());
            }
            let n = l2.fetch_add(1, Ordering::SeqCst) + 1;
            (
                200,
                format!(r#"{{"accessToken":"tok{n}","tokenTtl":18000,"globalAdmin":true}}"#),
            )
        }
        _ => {
            // The first token is "expired" server-side.
            if s.auth.as_deref() != Some("Bearer tok2") {
                return (403, r#"{"code":403,"message":"token expired!"}"#.into());
            }
            nacos2(s)
        }
    })
    .await;
    let mut cfg = fast_config(vec![m.url()]);
    cfg.credentials = Credentials::UserPassword {
        username: "nacos".into(),
        password: "pw".into(),
    };
    let c = NacosClient::new(cfg.clone()).unwrap();
    c.server_info().await.unwrap();
    c.list_services("DEFAULT_GROUP").await.unwrap();
    assert_eq!(logins.load(Ordering::SeqCst), 2);
    // Credentials went in the body, never the query.
    assert!(m.seen().iter().all(|s| !s.query.contains_key("password")));

    cfg.credentials = Credentials::UserPassword {
        username: "nacos".into(),
        password: "wrong-secret".into(),
    };
    let bad = NacosClient::new(cfg).unwrap();
    let e = bad.server_info().await.unwrap_err();
    assert!(matches!(e, NacosError::Auth { .. }), "{e}");
    assert!(!e.to_string().contains("wrong-secret"));
    assert!(!format!("{e:?}").contains("wrong-secret"));
    assert!(!format!("{bad:?}").contains("wrong-secret"));
}

#[tokio::test]
async fn denied_twice_is_auth_error() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v3/auth/user/login" => (200, r#"{"accessToken":"t","tokenTtl":100}"#.into()),
        _ => (403, "no permission".into()),
    })
    .await;
    let mut cfg = fast_config(vec![m.url()]);
    cfg.api = ApiGeneration::V1;
    cfg.credentials = Credentials::UserPassword {
        username: "u".into(),
        password: "p".into(),
    };
    // V1 logs in at the v1 path only; it answers 403 here.
    let c = NacosClient::new(cfg).unwrap();
    assert!(matches!(
        c.server_info().await.unwrap_err(),
        NacosError::Auth { .. }
    ));
}

#[tokio::test]
async fn access_key_signs_requests() {
    let m = Mock::start(nacos2).await;
    let mut cfg = fast_config(vec![m.url()]);
    cfg.credentials = Credentials::AccessKey {
        access_key: "AK".into(),
        secret_key: "SK-secret".into(),
    };
    let c = NacosClient::new(cfg).unwrap();
    c.list_instances(&ServiceKey::new("DEFAULT_GROUP", "orders"), &[])
        .await
        .unwrap();
    let s = m
        .seen()
        .into_iter()
        .find(|s| s.path == "/nacos/v2/ns/catalog/instances")
        .unwrap();
    assert_eq!(s.query["ak"], "AK");
    assert!(s.query["data"].ends_with("@@DEFAULT_GROUP@@orders"));
    assert!(!s.query["signature"].is_empty());
    assert!(m
        .seen()
        .iter()
        .all(|s| !s.query.values().any(|v| v.contains("SK-secret"))));
}

/// rnacos: no state endpoints, console off (HTML hint page), catalog ignores clusters,
/// PATCH would upsert.
fn rnacos(s: &Seen) -> (u16, String) {
    match s.path.as_str() {
        "/nacos/v1/ns/service/list" => (200, r#"{"count":1,"doms":["s"]}"#.into()),
        // As rnacos 0.8.8 answers with its no-auth console off.
        "/rnacos/api/console/v2/instance/list" => (
            200,
            "<!DOCTYPE html><html><head><title>R-NACOS</title></head><body><p>R-NACOS \u{672a}</p></body></html>".into(),
        ),
        "/nacos/v1/ns/catalog/instances" => {
            assert!(!s.query.contains_key("clusterName"));
            (
                200,
                format!(
                    r#"{{"count":2,"list":[{},{}]}}"#,
                    inst_json("10.1.1.1", 80, "DEFAULT", true),
                    inst_json("10.1.1.2", 80, "other", true)
                ),
            )
        }
        "/nacos/v1/ns/instance" if s.method == "GET" => {
            if s.query["ip"] == "10.1.1.1" {
                (200, inst_json("10.1.1.1", 80, "DEFAULT", false))
            } else {
                (500, "error".into())
            }
        }
        "/nacos/v1/ns/instance" => (200, "ok".into()),
        _ => (404, String::new()),
    }
}

#[tokio::test]
async fn rnacos_fallbacks() {
    let m = Mock::start(rnacos).await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let info = c.server_info().await.unwrap();
    assert_eq!(info.version, "unknown");
    assert_eq!(info.api, ApiGeneration::V1);
    assert_eq!(info.flavor, ServerFlavor::Rnacos);
    assert_eq!(info.describe(), "rnacos (version not reported, api V1)");
    assert_eq!(info.version_text(), "rnacos (version not reported)");
    assert!(!info.lists_disabled);

    let svc = ServiceKey::new("DEFAULT_GROUP", "s");
    let snap = c.list_instances(&svc, &["DEFAULT".into()]).await.unwrap();
    assert_eq!(snap.instances.len(), 1);
    assert_eq!(
        c.list_instances(&svc, &[]).await.unwrap().instances.len(),
        2
    );

    let mut inst = snap.instances[0].clone();
    let got = c.get_instance(&inst.key).await.unwrap().unwrap();
    assert!(!got.enabled);
    c.enable(&inst).await.unwrap();
    assert_eq!(m.seen().iter().filter(|s| s.method == "PATCH").count(), 1);

    // A missing instance is not PATCHed (rnacos would create it).
    inst.key.ip = "10.9.9.9".parse().unwrap();
    assert!(c.get_instance(&inst.key).await.unwrap().is_none());
    let e = c.disable(&inst, "uid-1").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(m.seen().iter().filter(|s| s.method == "PATCH").count(), 1);
}

#[tokio::test]
async fn rnacos_console_listing_when_available() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/rnacos/api/console/v2/instance/list" => (
            200,
            format!(
                r#"{{"success":true,"data":{{"totalCount":1,"list":[{}]}}}}"#,
                inst_json("10.1.1.1", 80, "DEFAULT", false)
            ),
        ),
        p => rnacos(&Seen {
            path: p.to_string(),
            ..s.clone()
        }),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    assert!(c.server_info().await.unwrap().lists_disabled);
    let snap = c
        .list_instances(&ServiceKey::new("DEFAULT_GROUP", "s"), &[])
        .await
        .unwrap();
    assert_eq!(snap.instances.len(), 1);
    assert!(!snap.instances[0].enabled);
}

#[test]
fn addresses_are_normalised() {
    assert_eq!(
        normalize_base_url("127.0.0.1:8848").unwrap(),
        "http://127.0.0.1:8848"
    );
    assert_eq!(
        normalize_base_url("https://nacos:8848/nacos/").unwrap(),
        "https://nacos:8848"
    );
    assert!(normalize_base_url("").is_err());
    assert!(normalize_base_url("ftp://x").is_err());
    assert!(normalize_base_url("http://u:p@x:1").is_err());
    assert!(NacosClient::new(NacosConfig::new(vec![])).is_err());
    let mut cfg = NacosConfig::new(vec!["http://x".into()]);
    cfg.tls.ca_pem = Some(b"not a pem".to_vec());
    assert!(NacosClient::new(cfg).is_err());
}

#[test]
fn namespace_id_defaults_to_public() {
    let mut c = NacosConfig::new(vec!["http://x".into()]);
    assert_eq!(c.namespace_id(), "public");
    c.namespace = "dev".into();
    assert_eq!(c.namespace_id(), "dev");
}

#[test]
fn classify_error_statuses() {
    let e = classify_error(
        "http://a",
        "/p",
        400,
        b"caused: Param 'serviceName' is required.;",
    );
    assert!(matches!(
        e,
        NacosError::Server {
            status: 400,
            code: None,
            ..
        }
    ));
    assert!(
        classify_error("http://a", "/p", 200, br#"{"code":20004,"message":"x"}"#).is_not_found()
    );
    assert!(matches!(
        classify_error(
            "http://a",
            "/p",
            410,
            br#"{"code":40000,"message":"API deprecated"}"#
        ),
        NacosError::ApiOff { .. }
    ));
    assert!(matches!(
        classify_error("http://a", "/p", 401, b""),
        NacosError::Auth { .. }
    ));
}

#[test]
fn retry_backoff_is_bounded() {
    let r = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(300),
    };
    assert_eq!(r.backoff(1), Duration::from_millis(100));
    assert_eq!(r.backoff(2), Duration::from_millis(200));
    assert_eq!(r.backoff(3), Duration::from_millis(300));
    assert_eq!(r.backoff(40), Duration::from_millis(300));
}

#[tokio::test]
async fn observer_counts_requests() {
    let m = Mock::start(nacos2).await;
    let counters = Arc::new(RequestCounters::default());
    let c = NacosClient::observed(fast_config(vec![m.url()]), counters.clone()).unwrap();
    c.server_info().await.unwrap();
    assert_eq!(counters.requests.load(Ordering::Relaxed), 2);
    assert_eq!(counters.error_answers.load(Ordering::Relaxed), 1);
}

#[test]
fn namespace_listed_treats_empty_and_public_alike() {
    let listed = vec!["".to_string(), "dev".to_string()];
    assert!(namespace_listed("", &[]));
    assert!(namespace_listed("public", &[]));
    assert!(namespace_listed("dev", &listed));
    assert!(!namespace_listed("prod", &listed));
    assert!(!namespace_listed("Dev", &listed));
}

/// A 2.x server whose namespace listing has public and `dev`; namespace `adhoc` is not listed
/// but holds services (clients registered into it), `prod` is empty.
fn with_namespaces(s: &Seen) -> (u16, String) {
    match s.path.as_str() {
        "/nacos/v1/console/namespaces" => (
            200,
            r#"{"code":200,"message":null,"data":[{"namespace":"","namespaceShowName":"public"},{"namespace":"dev","namespaceShowName":"dev"}]}"#
                .into(),
        ),
        "/nacos/v1/ns/service/list" if s.query["namespaceId"] == "prod" => {
            (200, r#"{"count":0,"doms":[]}"#.into())
        }
        _ => nacos2(s),
    }
}

#[tokio::test]
async fn namespace_check_finds_known_ids_and_reports_unknown_ones() {
    let m = Mock::start(with_namespaces).await;
    let check = |ns: &str| {
        let mut cfg = fast_config(vec![m.url()]);
        cfg.namespace = ns.to_string();
        let c = NacosClient::new(cfg).unwrap();
        async move { c.check_namespace(&["DEFAULT_GROUP".into()]).await.unwrap() }
    };
    assert_eq!(check("").await, NamespaceCheck::Public);
    assert_eq!(check("public").await, NamespaceCheck::Public);
    assert_eq!(m.count("/nacos/v1/console/namespaces"), 0);
    assert_eq!(check("dev").await, NamespaceCheck::Found);
    // Not listed, but clients registered services into it: in use.
    assert_eq!(check("adhoc").await, NamespaceCheck::Found);
    assert_eq!(
        check("prod").await,
        NamespaceCheck::Missing {
            address: m.url(),
            known: vec!["".into(), "dev".into()]
        }
    );
}

#[tokio::test]
async fn namespace_check_falls_back_and_never_guesses() {
    // No v1 listing, a v2 one: used.
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v2/console/namespace/list" => (
            200,
            r#"{"code":0,"message":"success","data":[{"namespace":"public"}]}"#.into(),
        ),
        _ => nacos2(s),
    })
    .await;
    let mut cfg = fast_config(vec![m.url()]);
    cfg.namespace = "prod".into();
    let c = NacosClient::new(cfg).unwrap();
    assert!(matches!(
        c.check_namespace(&[]).await.unwrap(),
        NamespaceCheck::Missing { .. }
    ));

    // No listing at all, or an unreadable one: not verified (and not "missing").
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v1/console/namespaces" => (403, "forbidden".into()),
        "/nacos/v2/console/namespace/list" => (200, "<html></html>".into()),
        _ => nacos2(s),
    })
    .await;
    let mut cfg = fast_config(vec![m.url()]);
    cfg.namespace = "prod".into();
    let c = NacosClient::new(cfg).unwrap();
    match c.check_namespace(&[]).await.unwrap() {
        NamespaceCheck::Unverified(why) => {
            assert!(why.contains("/nacos/v1/console/namespaces"), "{why}");
            assert!(why.contains("/nacos/v2/console/namespace/list"), "{why}");
        }
        other => panic!("{other:?}"),
    }

    // An unreachable server is an error, never a verdict.
    let mut cfg = fast_config(vec![dead_addr().await]);
    cfg.namespace = "prod".into();
    let c = NacosClient::new(cfg).unwrap();
    assert_eq!(
        c.check_namespace(&[]).await.unwrap_err().kind(),
        "unreachable"
    );
}

#[tokio::test]
async fn an_unknown_v1_server_is_named_as_such() {
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v1/ns/service/list" => (200, r#"{"count":0,"doms":[]}"#.into()),
        _ => (404, String::new()),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let info = c.server_info().await.unwrap();
    assert_eq!(info.flavor, ServerFlavor::V1Compatible);
    assert_eq!(
        info.describe(),
        "v1-compatible server (version not reported, api V1)"
    );
    assert!(!info.lists_disabled);
}

#[tokio::test]
async fn a_nacos_whose_state_cannot_be_read_is_unavailable_not_a_v1_server() {
    // A 2.x coming back (or behind a failing proxy): its state endpoints answer 503 while the naming
    // API answers. Taking it for a v1-compatible server would read its listings wrongly.
    let m = Mock::start(|s| match s.path.as_str() {
        p if p.ends_with("/state") => (503, "starting".into()),
        _ => nacos2(s),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let e = c.server_info().await.unwrap_err();
    assert!(matches!(e, NacosError::Server { status: 503, .. }), "{e}");
    assert_eq!(m.count("/nacos/v1/ns/service/list"), 0);
}

#[tokio::test]
async fn writes_send_the_ip_as_the_server_lists_it() {
    // Java registers IPv6 in its long form; Nacos compares the string, so `fd00::1` would miss it.
    let m = Mock::start(|s| match s.path.as_str() {
        "/nacos/v2/ns/catalog/instances" => (
            200,
            format!(
                r#"{{"code":0,"data":{{"instances":[{}],"count":1}}}}"#,
                inst_json("fd00:0:0:0:0:0:0:1", 8080, "DEFAULT", true)
            ),
        ),
        _ => nacos2(s),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let snap = c
        .list_instances(&ServiceKey::new("DEFAULT_GROUP", "orders"), &[])
        .await
        .unwrap();
    let inst = &snap.instances[0];
    assert_eq!(inst.key.ip.to_string(), "fd00::1");
    c.deregister(inst).await.unwrap();
    c.disable(inst, "uid-1").await.unwrap();
    for s in m.seen().iter().filter(|s| s.method != "GET") {
        let ip = s.query.get("ip").or_else(|| s.form.get("ip")).unwrap();
        assert_eq!(ip, "fd00:0:0:0:0:0:0:1", "{} {}", s.method, s.path);
    }
}

/// The publisher list is asked with the instance's ip as listed, for ephemeral instances only;
/// once refused (a user without admin reads), not asked again.
#[tokio::test]
async fn publishers_are_asked_for_ephemeral_instances_until_refused() {
    const PATH: &str = "/nacos/v2/ns/client/service/publisher/list";
    let refuse = Arc::new(AtomicU64::new(0));
    let refusing = refuse.clone();
    let m = Mock::start(move |s| match s.path.as_str() {
        PATH if refusing.load(Ordering::Relaxed) == 1 => {
            (403, "authorization failed!".into())
        }
        PATH => (
            200,
            r#"{"code":0,"data":[{"ip":"10.0.1.1","port":81,"clientId":"1796596545084_127.0.0.1_49866"}]}"#
                .into(),
        ),
        _ => nacos2(s),
    })
    .await;
    let c = NacosClient::new(fast_config(vec![m.url()])).unwrap();
    let mut inst = orders_instance(&[]);
    assert_eq!(c.publishers(&inst).await.unwrap(), vec![], "persistent");
    assert_eq!(m.count(PATH), 0);
    inst.ephemeral = true;
    let owners = c.publishers(&inst).await.unwrap();
    assert!(
        matches!(sole_publisher(&owners), Some(Publisher::Connection(_))),
        "{owners:?}"
    );
    let asked = m.seen().into_iter().find(|s| s.path == PATH).unwrap();
    for (k, v) in [
        ("groupName", "G"),
        ("serviceName", "orders"),
        ("ip", "10.0.1.1"),
        ("port", "81"),
        ("ephemeral", "true"),
    ] {
        assert_eq!(asked.query.get(k).map(String::as_str), Some(v), "{k}");
    }
    refuse.store(1, Ordering::Relaxed);
    assert!(c.publishers(&inst).await.is_err());
    let after_refusal = m.count(PATH);
    assert_eq!(c.publishers(&inst).await.unwrap(), vec![]);
    assert_eq!(m.count(PATH), after_refusal, "asked again after a refusal");
}
