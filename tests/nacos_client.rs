//! The Nacos client against every server of the testbed (Alibaba Nacos 2.5.1 and 3.0.3 with auth,
//! rnacos open and with auth), with instances registered the way applications do (the official
//! Java SDK over gRPC, and persistent ones over HTTP). Each test runs once per server; what the
//! servers do differently is asserted where it shows.

mod common;

use std::time::Duration;

use common::*;
use nacos_reconciler::model::{Instance, ServiceKey, DISABLED_BY_KEY};
use nacos_reconciler::nacos::{
    sole_publisher, ApiGeneration, Credentials, NacosClient, NacosConfig, NacosError,
    NamespaceCheck, Publisher,
};

fn client_for(server: Server, api: ApiGeneration, namespace: &str) -> NacosClient {
    let mut cfg = NacosConfig::new(vec![server.addr()]);
    cfg.api = api;
    cfg.namespace = namespace.to_string();
    if let Some((username, password)) = server.credentials() {
        cfg.credentials = Credentials::UserPassword { username, password };
    }
    NacosClient::new(cfg).expect("a client")
}

fn client(server: Server) -> NacosClient {
    client_for(server, ApiGeneration::Auto, "")
}

async fn find(c: &NacosClient, service: &ServiceKey, ip: &str) -> Option<Instance> {
    c.list_instances(service, &[])
        .await
        .expect("a listing")
        .instances
        .into_iter()
        .find(|i| i.key.ip.to_string() == ip)
}

async fn detects_the_server_and_its_api(server: Server) {
    let info = client(server).server_info().await.expect("server info");
    assert_eq!(info.version, server.version(), "{server}");
    assert_eq!(info.api.to_string(), server.api(), "{server}");
    assert_eq!(
        info.lists_disabled,
        server != Server::RnacosAuth,
        "{server}"
    );
}
per_server!(detects_the_server_and_its_api: nacos_2_5_1, nacos_3_0_3, rnacos, rnacos_auth);

#[tokio::test]
async fn v1_forced_on_nacos_2_5_1_works_and_on_3_0_3_says_to_use_v3() {
    let service = unique("v1forced");
    Server::Nacos2
        .register_persistent(&Registration::new(&service, "10.70.0.1", 8080))
        .await;
    let v1 = client_for(Server::Nacos2, ApiGeneration::V1, "");
    let info = v1.server_info().await.unwrap();
    assert_eq!(
        (info.api, info.version.as_str()),
        (ApiGeneration::V1, "2.5.1")
    );
    let key = ServiceKey::new("DEFAULT_GROUP", &service);
    common::wait_for(
        "the v1 catalog to list it",
        Duration::from_secs(10),
        || async { find(&v1, &key, "10.70.0.1").await },
    )
    .await;

    let on3 = client_for(Server::Nacos3, ApiGeneration::V1, "");
    assert_eq!(on3.server_info().await.unwrap().version, "3.0.3");
    let e = on3.list_instances(&key, &[]).await.unwrap_err();
    assert!(matches!(e, NacosError::ApiOff { .. }), "{e}");
}

/// Disable and enable, with metadata at Nacos's limit as a Dubbo provider registers it: the
/// registered metadata is the same afterwards, and consumers lose and regain the instance.
async fn disables_and_enables_an_instance_with_large_metadata(server: Server) {
    let service = unique("bigmeta");
    let addr = "10.71.0.1:8080".to_string();
    let _app = JavaApp::provider(
        Sdk::V2,
        server,
        &service,
        std::slice::from_ref(&addr),
        &Provider {
            metadata_chars: 1005,
            ..Default::default()
        },
    );
    let c = client(server);
    let key = ServiceKey::new("DEFAULT_GROUP", &service);
    let before = find(&c, &key, "10.71.0.1").await.expect("registered");
    let registered = before.metadata.clone();
    assert!(registered.values().map(String::len).sum::<usize>() > 900);

    c.disable(&before, "uid-test").await.expect("disable");
    let seen = c
        .read_back(&before, |i| i.is_some_and(|i| !i.enabled))
        .await
        .unwrap()
        .expect("still registered");
    assert!(!seen.enabled, "{server}: {seen:?}");
    assert_eq!(seen.disabled_by(), Some("uid-test"));
    let mut without_marker = seen.metadata.clone();
    without_marker.remove(DISABLED_BY_KEY);
    assert_eq!(
        without_marker, registered,
        "{server}: the disable changed the metadata"
    );
    assert!(!server.consumer_view(&service).await.contains(&addr));

    c.enable(&seen).await.expect("enable");
    let back = c
        .read_back(&before, |i| i.is_some_and(|i| i.enabled))
        .await
        .unwrap()
        .expect("still registered");
    assert!(back.enabled);
    match server {
        // rnacos ignores an empty metadata map: the marker stays, empty, naming no binding.
        Server::Rnacos | Server::RnacosAuth => {
            assert!(back.disabled_by().is_none_or(str::is_empty), "{back:?}")
        }
        _ => assert_eq!(back.metadata, registered, "{server}: a trace is left"),
    }
    common::wait_for(
        "consumers to get it back",
        Duration::from_secs(5),
        || async {
            server
                .consumer_view(&service)
                .await
                .contains(&addr)
                .then_some(())
        },
    )
    .await;
}
per_server!(disables_and_enables_an_instance_with_large_metadata: nacos_2_5_1, nacos_3_0_3, rnacos, rnacos_auth);

/// The mission's own case at the client's level: the DELETE of an instance whose gRPC connection
/// is alive is answered `ok`; Alibaba Nacos keeps the instance, rnacos removes it.
async fn a_delete_of_a_grpc_owned_instance(server: Server) {
    let service = unique("grpcdel");
    let _app = JavaApp::provider(
        Sdk::V2,
        server,
        &service,
        &["10.72.0.1:8080".to_string()],
        &Provider::default(),
    );
    let c = client(server);
    let key = ServiceKey::new("DEFAULT_GROUP", &service);
    let inst = find(&c, &key, "10.72.0.1").await.expect("registered");
    assert!(inst.ephemeral);
    c.deregister(&inst)
        .await
        .expect("the DELETE is answered ok");
    let seen = c.read_back(&inst, |i| i.is_none()).await.unwrap();
    if server.is_alibaba() {
        assert!(
            seen.is_some(),
            "{server} removed a gRPC-owned instance on DELETE"
        );
    } else {
        assert!(
            seen.is_none(),
            "{server} kept a gRPC-owned instance after DELETE"
        );
    }
}
per_server!(a_delete_of_a_grpc_owned_instance: nacos_2_5_1, nacos_3_0_3, rnacos);

/// Who keeps an instance: Alibaba Nacos names the gRPC connection of a 2.x SDK (the address the
/// process connects from, and since when) and the HTTP registration of a 1.x SDK that beats; a
/// persistent instance is not asked about; rnacos does not tell.
async fn publishers_name_the_connection_or_the_http_registration(server: Server) {
    let service = unique("owners");
    let (grpc_ip, http_ip) = ("10.74.0.1", "10.74.0.2");
    let asked = chrono::Utc::now();
    let _grpc = JavaApp::provider(
        Sdk::V2,
        server,
        &service,
        &[format!("{grpc_ip}:8080")],
        &Provider::default(),
    );
    let _beats = JavaApp::provider(
        Sdk::V1,
        server,
        &service,
        &[format!("{http_ip}:8080")],
        &Provider::default(),
    );
    // A service is ephemeral or persistent on Alibaba Nacos: the persistent one has its own.
    let stored_service = unique("owners-p");
    let persistent = Registration::new(&stored_service, "10.74.0.3", 8080);
    server.register_persistent(&persistent).await;
    let c = client(server);
    let key = ServiceKey::new("DEFAULT_GROUP", &service);
    let listed = |ip: &'static str| {
        let (c, key) = (c.clone(), key.clone());
        async move {
            common::wait_for(&format!("{ip} listed"), Duration::from_secs(10), || async {
                find(&c, &key, ip).await
            })
            .await
        }
    };
    let (grpc, http) = (listed(grpc_ip).await, listed(http_ip).await);
    let stored_key = ServiceKey::new("DEFAULT_GROUP", &stored_service);
    let stored = common::wait_for("the persistent one", Duration::from_secs(10), || async {
        find(&c, &stored_key, "10.74.0.3").await
    })
    .await;
    let of = |i: Instance| {
        let c = c.clone();
        async move { c.publishers(&i).await.expect("the publisher list") }
    };
    assert_eq!(of(stored).await, vec![], "{server}: a persistent instance");
    let (grpc_owners, http_owners) = (of(grpc).await, of(http).await);
    eprintln!("{server}: gRPC {grpc_owners:?}; 1.x {http_owners:?}");
    if !server.is_alibaba() {
        assert_eq!((grpc_owners, http_owners), (vec![], vec![]), "{server}");
        return;
    }
    let Some(Publisher::Connection(owner)) = sole_publisher(&grpc_owners) else {
        panic!("{server}: the gRPC instance's connection: {grpc_owners:?}")
    };
    assert_eq!(
        owner.client.map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.0.1"),
        "{server}: the Java app connects from loopback: {owner:?}"
    );
    let since = owner.since.expect("when it connected");
    assert!(
        since > asked - chrono::TimeDelta::seconds(5) && since < chrono::Utc::now(),
        "{server}: connected at {since}, the app started at {asked}"
    );
    assert_eq!(
        http_owners,
        vec![Publisher::Http(format!("{http_ip}:8080#true"))],
        "{server}"
    );
    let detail = c.client_detail(owner).await.expect("the client's detail");
    assert_eq!(
        detail.sdk.as_deref(),
        Some("Nacos-Java-Client:v2.5.1"),
        "{server}: {detail:?}"
    );
}
per_server!(publishers_name_the_connection_or_the_http_registration: nacos_2_5_1, nacos_3_0_3, rnacos);

/// A persistent instance's DELETE takes; the read-back sees it once the server refreshed its view.
async fn deletes_a_persistent_instance(server: Server) {
    let service = unique("persist");
    let reg = Registration::new(&service, "10.73.0.1", 8080);
    server.register_persistent(&reg).await;
    let c = client(server);
    let key = ServiceKey::new("DEFAULT_GROUP", &service);
    let inst = common::wait_for("it to be listed", Duration::from_secs(10), || async {
        find(&c, &key, "10.73.0.1").await
    })
    .await;
    assert!(!inst.ephemeral);
    c.deregister(&inst).await.unwrap();
    assert!(c.read_back(&inst, |i| i.is_none()).await.unwrap().is_none());
    assert!(server.held_at(&reg).await.is_none());
}
per_server!(deletes_a_persistent_instance: nacos_2_5_1, nacos_3_0_3, rnacos, rnacos_auth);

/// A non-public namespace, a non-default group, two clusters, pages of two; a service the server
/// lacks lists empty; an unknown namespace is reported missing.
async fn namespaces_groups_clusters_and_pages(server: Server) {
    let ns = unique("ns");
    server.create_namespace(&ns).await;
    let service = unique("paged");
    for (i, cluster) in ["c1", "c1", "c1", "c2", "c2"].iter().enumerate() {
        let reg = Registration::new(&service, &format!("10.74.0.{}", i + 1), 8080)
            .group("ORDERS")
            .cluster(cluster)
            .namespace(&ns);
        server.register_persistent(&reg).await;
    }
    let mut cfg = NacosConfig::new(vec![server.addr()]);
    cfg.namespace = ns.clone();
    cfg.page_size = 2;
    if let Some((username, password)) = server.credentials() {
        cfg.credentials = Credentials::UserPassword { username, password };
    }
    let c = NacosClient::new(cfg).unwrap();
    let key = ServiceKey::new("ORDERS", &service);
    let all = common::wait_for("five instances", Duration::from_secs(10), || async {
        let l = c.list_instances(&key, &[]).await.ok()?;
        (l.instances.len() == 5).then_some(l)
    })
    .await;
    assert_eq!(
        all.instances
            .iter()
            .filter(|i| i.key.cluster == "c2")
            .count(),
        2
    );
    let c2 = c.list_instances(&key, &["c2".to_string()]).await.unwrap();
    assert_eq!(c2.instances.len(), 2);
    assert!(c.list_services("ORDERS").await.unwrap().contains(&service));
    assert_eq!(
        c.check_namespace(&["ORDERS".to_string()]).await.unwrap(),
        NamespaceCheck::Found
    );
    let missing = c
        .list_instances(&ServiceKey::new("ORDERS", "no-such-service"), &[])
        .await
        .unwrap();
    assert!(missing.instances.is_empty());
    // The same instances are not in the public namespace.
    let public = client(server);
    assert!(public
        .list_instances(&key, &[])
        .await
        .unwrap()
        .instances
        .is_empty());
    let unknown = client_for(server, ApiGeneration::Auto, "no-such-namespace");
    assert!(matches!(
        unknown
            .check_namespace(&["ORDERS".to_string()])
            .await
            .unwrap(),
        NamespaceCheck::Missing { .. }
    ));
}
per_server!(namespaces_groups_clusters_and_pages: nacos_2_5_1, nacos_3_0_3, rnacos);

/// `http://host:port/nacos`, a common way to write the address, is the same server.
async fn an_address_ending_in_nacos(server: Server) {
    let service = unique("suffix");
    server
        .register_persistent(&Registration::new(&service, "10.75.0.1", 8080))
        .await;
    let mut cfg = NacosConfig::new(vec![format!("{}/nacos/", server.addr())]);
    if let Some((username, password)) = server.credentials() {
        cfg.credentials = Credentials::UserPassword { username, password };
    }
    let c = NacosClient::new(cfg).unwrap();
    assert_eq!(c.server_info().await.unwrap().version, server.version());
    let key = ServiceKey::new("DEFAULT_GROUP", &service);
    common::wait_for("the instance", Duration::from_secs(10), || async {
        find(&c, &key, "10.75.0.1").await
    })
    .await;
}
per_server!(an_address_ending_in_nacos: nacos_2_5_1, nacos_3_0_3, rnacos);

async fn a_wrong_password_is_an_auth_error(server: Server) {
    let mut cfg = NacosConfig::new(vec![server.addr()]);
    cfg.credentials = Credentials::UserPassword {
        username: "nacos".into(),
        password: "not-the-password".into(),
    };
    let c = NacosClient::new(cfg).unwrap();
    let e = async {
        c.server_info().await?;
        c.list_instances(&ServiceKey::new("DEFAULT_GROUP", "x"), &[])
            .await
    }
    .await
    .unwrap_err();
    assert!(matches!(e, NacosError::Auth { .. }), "{server}: {e}");
}
per_server!(a_wrong_password_is_an_auth_error: nacos_2_5_1, nacos_3_0_3, rnacos_auth);

/// An IPv6 instance registered in Java's long form (`fd00:0:0:0:0:0:0:1`, as the SDK writes an
/// address): Nacos keeps the string and matches writes by it, so the client sends it as listed.
async fn an_ipv6_instance_in_long_form_is_written_as_listed(server: Server) {
    let service = unique("ipv6");
    let reg = Registration::new(&service, "fd00:0:0:0:0:0:0:76", 8080);
    server.register_persistent(&reg).await;
    let c = client(server);
    let key = ServiceKey::new("DEFAULT_GROUP", &service);
    let inst = common::wait_for("it to be listed", Duration::from_secs(10), || async {
        find(&c, &key, "fd00::76").await
    })
    .await;
    c.disable(&inst, "uid-v6").await.unwrap();
    let seen = c
        .read_back(&inst, |i| i.is_some_and(|i| !i.enabled))
        .await
        .unwrap()
        .expect("still registered");
    assert!(!seen.enabled, "{server}: the disable missed the instance");
    c.deregister(&seen).await.unwrap();
    assert!(
        c.read_back(&inst, |i| i.is_none()).await.unwrap().is_none(),
        "{server}: the DELETE missed it"
    );
}
per_server!(an_ipv6_instance_in_long_form_is_written_as_listed: nacos_2_5_1, nacos_3_0_3);
