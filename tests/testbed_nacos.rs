//! Pins down the Nacos behaviours the operator is built on, against the testbed's real servers:
//! Alibaba Nacos 2.5.1 and 3.0.3 (built from their release sources, auth on) and rnacos. What the
//! client does with each is tested in `nacos_client.rs`; here, the servers as the testbed runs them.

mod common;

use std::time::Duration;

use common::{start_nacos_client, testbed_env, unique, wait_for, ClientMode, Server};
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get_json(url: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let r = http().get(url).query(query).send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

async fn send(method: reqwest::Method, url: &str, query: &[(&str, &str)]) -> (u16, String) {
    let r = http()
        .request(method, url)
        .query(query)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// ip:port pairs the client list API returns (it hides disabled instances).
async fn client_list(base: &str, service: &str) -> Vec<String> {
    let (_, v) = get_json(
        &format!("{base}/nacos/v1/ns/instance/list"),
        &[("serviceName", service), ("healthyOnly", "false")],
    )
    .await;
    hosts(&v["hosts"])
}

/// ip:port pairs the catalog API returns.
async fn catalog(base: &str, service: &str) -> Vec<String> {
    let (status, v) = get_json(
        &format!("{base}/nacos/v1/ns/catalog/instances"),
        &[
            ("serviceName", service),
            ("clusterName", "DEFAULT"),
            ("pageNo", "1"),
            ("pageSize", "100"),
        ],
    )
    .await;
    assert_eq!(status, 200, "catalog answered {v}");
    hosts(&v["list"])
}

fn hosts(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| format!("{}:{}", h["ip"].as_str().unwrap_or(""), h["port"]))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn rnacos_registers_lists_and_deletes_over_the_v1_api() {
    let base = testbed_env("RNACOS_ADDR");
    let svc = unique("v1-svc");
    let inst = [
        ("serviceName", svc.as_str()),
        ("ip", "10.244.60.1"),
        ("port", "8080"),
        ("ephemeral", "false"),
    ];
    let url = format!("{base}/nacos/v1/ns/instance");
    assert_eq!(
        send(reqwest::Method::POST, &url, &inst).await,
        (200, "ok".into())
    );
    assert_eq!(client_list(&base, &svc).await, ["10.244.60.1:8080"]);
    assert_eq!(catalog(&base, &svc).await, ["10.244.60.1:8080"]);
    assert_eq!(
        send(reqwest::Method::DELETE, &url, &inst).await,
        (200, "ok".into())
    );
    assert!(client_list(&base, &svc).await.is_empty());
}

#[tokio::test]
async fn rnacos_lists_a_grpc_instance_of_a_live_client_and_its_http_delete_removes_it() {
    let base = testbed_env("RNACOS_ADDR");
    let svc = unique("grpc-svc");
    let _client = start_nacos_client(
        &base,
        &svc,
        &[("10.244.61.1".into(), 8080)],
        ClientMode::Grpc,
        &[],
    );
    let listed = wait_for(
        "the gRPC instance in the catalog",
        Duration::from_secs(10),
        || {
            let (base, svc) = (base.clone(), svc.clone());
            async move {
                let l = catalog(&base, &svc).await;
                (!l.is_empty()).then_some(l)
            }
        },
    )
    .await;
    assert_eq!(listed, ["10.244.61.1:8080"]);

    // Alibaba Nacos 2.x answers `ok` here and keeps the instance while its gRPC connection lives;
    // rnacos really removes it, and the live client does not put it back.
    let (status, body) = send(
        reqwest::Method::DELETE,
        &format!("{base}/nacos/v1/ns/instance"),
        &[
            ("serviceName", &svc),
            ("ip", "10.244.61.1"),
            ("port", "8080"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(catalog(&base, &svc).await.is_empty());
    assert!(client_list(&base, &svc).await.is_empty());
}

#[tokio::test]
async fn rnacos_patch_enabled_false_hides_an_instance_from_consumers_but_keeps_it() {
    let base = testbed_env("RNACOS_ADDR");
    let svc = unique("patch-svc");
    let url = format!("{base}/nacos/v1/ns/instance");
    let inst = [
        ("serviceName", svc.as_str()),
        ("ip", "10.244.62.1"),
        ("port", "8080"),
        ("ephemeral", "false"),
    ];
    assert_eq!(send(reqwest::Method::POST, &url, &inst).await.0, 200);
    let mut patch = inst.to_vec();
    patch.push(("enabled", "false"));
    assert_eq!(
        send(reqwest::Method::PATCH, &url, &patch).await,
        (200, "ok".into())
    );

    // Consumers no longer get it (within a few seconds: the write of a persistent instance goes
    // through rnacos's Raft log, and once, in the suite of 2026-12-07, the first list right after
    // the answer still had it)...
    wait_for(
        "the disabled instance gone from the client list",
        Duration::from_secs(5),
        || {
            let (base, svc) = (base.clone(), svc.clone());
            async move { client_list(&base, &svc).await.is_empty().then_some(()) }
        },
    )
    .await;
    // ...rnacos's catalog hides it too (Alibaba's catalog shows it disabled)...
    assert!(catalog(&base, &svc).await.is_empty());
    // ...but it still exists, disabled: the instance detail API shows it.
    let (status, v) = get_json(
        &url,
        &[
            ("serviceName", svc.as_str()),
            ("ip", "10.244.62.1"),
            ("port", "8080"),
            ("clusterName", "DEFAULT"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], Value::Bool(false), "{v}");
}

#[tokio::test]
async fn rnacos_with_auth_gives_a_token_and_refuses_requests_without_it() {
    let base = testbed_env("RNACOS_AUTH_ADDR");
    let (user, pass) = (testbed_env("NACOS_USERNAME"), testbed_env("NACOS_PASSWORD"));
    let r = http()
        .post(format!("{base}/nacos/v1/auth/login"))
        .form(&[("username", user.as_str()), ("password", pass.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let login: Value = r.json().await.unwrap();
    let token = login["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_string();
    assert!(login["tokenTtl"].as_u64().unwrap_or(0) > 0, "{login}");

    let list = format!("{base}/nacos/v1/ns/instance/list");
    let (without, _) = get_json(&list, &[("serviceName", "any")]).await;
    assert_eq!(without, 403);
    let (with, _) = get_json(&list, &[("serviceName", "any"), ("accessToken", &token)]).await;
    assert_eq!(with, 200);

    let r = http()
        .post(format!("{base}/nacos/v1/auth/login"))
        .form(&[("username", user.as_str()), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 200, "a wrong password must not log in");
}

/// Both Alibaba servers run standalone with auth on: a naming call without a token is refused,
/// login works, and each reports its version where its generation does (2.5.1: the v1 console
/// state; 3.0.3: the v3 admin state, while its v1 console API answers 410).
#[tokio::test]
async fn alibaba_nacos_runs_with_auth_on_and_reports_its_version() {
    for (server, state) in [
        (Server::Nacos2, "/nacos/v1/console/server/state"),
        (Server::Nacos3, "/nacos/v3/admin/core/state"),
    ] {
        let base = server.addr();
        let (status, body) = send(
            reqwest::Method::GET,
            &format!("{base}/nacos/v1/ns/instance/list"),
            &[("serviceName", "anything")],
        )
        .await;
        assert_eq!(
            status, 403,
            "{server} answered a call without a token: {body}"
        );
        assert!(
            server.token().await.is_some_and(|t| !t.is_empty()),
            "{server}: no token"
        );
        let (status, v) = get_json(&format!("{base}{state}"), &[]).await;
        assert_eq!(status, 200, "{server} {state}: {v}");
        let version = v["version"]
            .as_str()
            .or_else(|| v["data"]["version"].as_str());
        assert_eq!(version, Some(server.version()), "{server}: {v}");
        assert_eq!(
            v["auth_enabled"]
                .as_str()
                .or_else(|| v["data"]["auth_enabled"].as_str()),
            Some("true")
        );
    }
    let (status, _) = get_json(
        &format!("{}/nacos/v1/console/server/state", Server::Nacos3.addr()),
        &[],
    )
    .await;
    assert_eq!(status, 410, "3.0.3 with its v1 console API on");
}
