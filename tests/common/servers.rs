//! The Nacos servers of the testbed, and what a test does to them besides running the operator:
//! register instances as applications do, read what consumers get, read what the server holds.
//! Each call speaks the API that server answers (3.0.3 turns off the v1/v2 admin API).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::testbed_env;

/// The servers the testbed starts. Alibaba Nacos is the server users run; rnacos is a second,
/// independent implementation that differs where this project matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Server {
    /// rnacos 0.8.8, open (its console listing shows disabled instances).
    Rnacos,
    /// rnacos 0.8.8 with open-API auth on (its listings hide disabled instances).
    RnacosAuth,
    /// Alibaba Nacos 2.5.1 standalone, auth on.
    Nacos2,
    /// Alibaba Nacos 3.0.3 standalone, auth on (v1/v2 admin API switched off, as by default).
    Nacos3,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Server::Rnacos => "rnacos 0.8.8",
            Server::RnacosAuth => "rnacos 0.8.8 (auth)",
            Server::Nacos2 => "Alibaba Nacos 2.5.1",
            Server::Nacos3 => "Alibaba Nacos 3.0.3",
        })
    }
}

/// One instance to register, as an application would.
#[derive(Clone, Debug)]
pub struct Registration {
    pub service: String,
    pub ip: String,
    pub port: u16,
    pub group: String,
    pub cluster: String,
    /// Nacos namespace id; `public` for the public one.
    pub namespace: String,
    pub metadata: BTreeMap<String, String>,
}

impl Registration {
    pub fn new(service: &str, ip: &str, port: u16) -> Self {
        Self {
            service: service.to_string(),
            ip: ip.to_string(),
            port,
            group: "DEFAULT_GROUP".into(),
            cluster: "DEFAULT".into(),
            namespace: "public".into(),
            metadata: BTreeMap::new(),
        }
    }

    pub fn group(mut self, group: &str) -> Self {
        self.group = group.to_string();
        self
    }

    pub fn cluster(mut self, cluster: &str) -> Self {
        self.cluster = cluster.to_string();
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("namespaceId", self.namespace.clone()),
            ("groupName", self.group.clone()),
            ("serviceName", self.service.clone()),
            ("clusterName", self.cluster.clone()),
            ("ip", self.ip.clone()),
            ("port", self.port.to_string()),
        ]
    }
}

/// What the server holds about one instance (disabled ones included).
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub enabled: bool,
    pub ephemeral: bool,
    pub metadata: BTreeMap<String, String>,
}

impl Held {
    /// The UID in our marker (`<uid> <namespace>/<name>`, or the UID alone), as the operator reads it.
    pub fn disabled_by(&self) -> Option<&str> {
        self.marker().map(|m| m.split(' ').next().unwrap_or(m))
    }

    /// Our marker's whole value.
    pub fn marker(&self) -> Option<&str> {
        self.metadata
            .get("nacos-reconciler.io/disabled-by")
            .map(String::as_str)
    }
}

impl Server {
    /// Every server, Alibaba Nacos first.
    pub const ALL: [Server; 4] = [
        Server::Nacos2,
        Server::Nacos3,
        Server::Rnacos,
        Server::RnacosAuth,
    ];

    /// The server a test name ends in (see `per_server!`).
    pub fn named(name: &str) -> Self {
        match name {
            "nacos_2_5_1" => Server::Nacos2,
            "nacos_3_0_3" => Server::Nacos3,
            "rnacos" => Server::Rnacos,
            "rnacos_auth" => Server::RnacosAuth,
            other => panic!("no testbed server is called {other}"),
        }
    }

    /// Its base URL (`http://127.0.0.1:PORT`), from the testbed's environment.
    pub fn addr(self) -> String {
        testbed_env(match self {
            Server::Rnacos => "RNACOS_ADDR",
            Server::RnacosAuth => "RNACOS_AUTH_ADDR",
            Server::Nacos2 => "NACOS_V2_ADDR",
            Server::Nacos3 => "NACOS_V3_ADDR",
        })
    }

    /// host:port, as SDKs take it.
    pub fn host_port(self) -> String {
        self.addr().trim_start_matches("http://").to_string()
    }

    pub fn is_alibaba(self) -> bool {
        matches!(self, Server::Nacos2 | Server::Nacos3)
    }

    pub fn auth(self) -> bool {
        self != Server::Rnacos
    }

    /// The version `status.nacos.version` must show.
    pub fn version(self) -> &'static str {
        match self {
            Server::Nacos2 => "2.5.1",
            Server::Nacos3 => "3.0.3",
            Server::Rnacos | Server::RnacosAuth => "unknown",
        }
    }

    /// What `status.nacos.version` shows for it.
    pub fn status_version(self) -> &'static str {
        match self {
            Server::Nacos2 => "2.5.1",
            Server::Nacos3 => "3.0.3",
            Server::Rnacos | Server::RnacosAuth => "rnacos (version not reported)",
        }
    }

    /// The API generation `apiVersion: Auto` picks.
    pub fn api(self) -> &'static str {
        match self {
            Server::Nacos2 => "V2",
            Server::Nacos3 => "V3",
            Server::Rnacos | Server::RnacosAuth => "V1",
        }
    }

    /// The testbed's credentials (every server has the same user).
    pub fn credentials(self) -> Option<(String, String)> {
        self.auth()
            .then(|| (testbed_env("NACOS_USERNAME"), testbed_env("NACOS_PASSWORD")))
    }

    /// This server, for the helpers of [`NacosAt`].
    pub fn at(self) -> NacosAt {
        NacosAt::shared(self)
    }

    pub async fn token(self) -> Option<String> {
        self.at().token().await
    }

    pub async fn register_persistent(self, r: &Registration) {
        self.at().register_persistent(r).await
    }

    pub async fn delete(self, r: &Registration, ephemeral: bool) {
        self.at().delete(r, ephemeral).await
    }

    pub async fn set_enabled_by_hand(self, r: &Registration, enabled: bool) {
        self.at().set_enabled_by_hand(r, enabled).await
    }

    pub async fn patch_by_hand(self, r: &Registration, field: (&'static str, &str)) {
        self.at().patch_by_hand(r, field).await
    }

    pub async fn consumer_view(self, service: &str) -> Vec<String> {
        self.at().consumer_view(service).await
    }

    pub async fn consumer_view_in(
        self,
        service: &str,
        group: &str,
        namespace: &str,
    ) -> Vec<String> {
        self.at().consumer_view_in(service, group, namespace).await
    }

    pub async fn held(self, service: &str, ip: &str, port: u16) -> Option<Held> {
        self.at().held(service, ip, port).await
    }

    pub async fn held_at(self, r: &Registration) -> Option<Held> {
        self.at().held_at(r).await
    }

    pub async fn create_namespace(self, id: &str) {
        self.at().create_namespace(id).await
    }

    /// The `spec.nacos` of a binding to this server; on a server with auth it names Secret
    /// `nacos-auth`, which [`Self::create_credentials`] makes.
    pub fn binding_nacos(self) -> Value {
        let mut nacos = serde_json::json!({"serverAddr": [self.addr()]});
        if self.auth() {
            nacos["credentialsSecretRef"] = serde_json::json!({"name": "nacos-auth"});
        }
        nacos
    }

    /// Secret `nacos-auth` with the testbed's credentials in `ns` (nothing without auth).
    pub async fn create_credentials(self, client: &kube::Client, ns: &str) {
        let Some((user, pass)) = self.credentials() else {
            return;
        };
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "nacos-auth"},
                "stringData": {"username": user, "password": pass}
            }))
            .expect("a Secret");
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
            .create(&Default::default(), &secret)
            .await
            .expect("create the credentials Secret");
    }
}

/// A Nacos server at an address, spoken to as `kind` speaks: one of the testbed's (`Server::at`),
/// or one a test started itself (`NacosAt::private`), which it may stop and start again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NacosAt {
    pub kind: Server,
    pub addr: String,
}

impl fmt::Display for NacosAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.addr == self.kind.addr() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{} at {}", self.kind, self.addr)
        }
    }
}

impl NacosAt {
    /// The testbed's own `kind`.
    pub fn shared(kind: Server) -> Self {
        Self {
            kind,
            addr: kind.addr(),
        }
    }

    /// A server of the test's own at `addr`, with the testbed's user where `kind` has auth.
    pub fn private(kind: Server, addr: &str) -> Self {
        Self {
            kind,
            addr: addr.trim_end_matches('/').to_string(),
        }
    }

    /// A login token, or `None` on a server without auth: one per server and test process,
    /// renewed a second before the server expires it (rnacos limits logins per user and minute;
    /// a test's own server may issue tokens that live seconds).
    pub async fn token(&self) -> Option<String> {
        type Tokens = BTreeMap<String, (String, Instant)>;
        static TOKENS: std::sync::Mutex<Tokens> = std::sync::Mutex::new(BTreeMap::new());
        let cached = TOKENS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.addr)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone());
        if cached.is_some() {
            return cached;
        }
        let (token, ttl) = self.login().await?;
        let until = Instant::now() + ttl.saturating_sub(Duration::from_secs(1));
        TOKENS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.addr.clone(), (token.clone(), until));
        Some(token)
    }

    /// A token and how long it lives.
    async fn login(&self) -> Option<(String, Duration)> {
        let (user, pass) = self.kind.credentials()?;
        let path = if self.kind == Server::Nacos3 {
            "/nacos/v3/auth/user/login"
        } else {
            "/nacos/v1/auth/login"
        };
        // A server of the test's own may still be starting: "user not found" for a few seconds.
        let v: Value = super::wait_for(
            &format!("a login to {self}"),
            Duration::from_secs(30),
            || async {
                let r = reqwest::Client::new()
                    .post(format!("{}{path}", self.addr))
                    .form(&[("username", user.as_str()), ("password", pass.as_str())])
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("login to {self}: {e}"));
                let v: Value = r.json().await.ok()?;
                v["accessToken"].is_string().then_some(v)
            },
        )
        .await;
        let ttl = v["tokenTtl"].as_u64().unwrap_or(18_000);
        Some((
            v["accessToken"].as_str().unwrap_or_default().to_string(),
            Duration::from_secs(ttl),
        ))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&'static str, String)],
    ) -> (u16, String) {
        let mut rb = reqwest::Client::new().request(method.clone(), format!("{}{path}", self.addr));
        rb = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            rb.query(params)
        } else {
            rb.form(params)
        };
        if let Some(t) = self.token().await {
            rb = rb.header("accessToken", t);
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on {self}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Registers a persistent instance over HTTP (a persistent instance stays until deleted).
    pub async fn register_persistent(&self, r: &Registration) {
        let mut params = r.params();
        params.push(("ephemeral", "false".into()));
        params.push(("metadata", metadata_json(&r.metadata)));
        let path = if self.kind == Server::Nacos3 {
            "/nacos/v3/admin/ns/instance"
        } else {
            "/nacos/v1/ns/instance"
        };
        let (status, body) = self.call(reqwest::Method::POST, path, &params).await;
        assert!(
            (200..300).contains(&status) && body.contains("ok"),
            "register {} {}:{} on {self}: {status} {body}",
            r.service,
            r.ip,
            r.port
        );
        // Alibaba Nacos lists a change only once it refreshed its view (about 500 ms later).
        super::wait_for(
            &format!("{} {}:{} to be listed on {self}", r.service, r.ip, r.port),
            Duration::from_secs(10),
            || async { self.held_at(r).await },
        )
        .await;
    }

    /// Deletes an instance as an administrator would.
    pub async fn delete(&self, r: &Registration, ephemeral: bool) {
        let mut params = r.params();
        params.push(("ephemeral", ephemeral.to_string()));
        let path = if self.kind == Server::Nacos3 {
            "/nacos/v3/admin/ns/instance"
        } else {
            "/nacos/v1/ns/instance"
        };
        let (status, body) = self.call(reqwest::Method::DELETE, path, &params).await;
        assert!(
            (200..300).contains(&status),
            "delete on {self}: {status} {body}"
        );
    }

    /// Sets `enabled` as someone else would (the console), without the operator's marker.
    pub async fn set_enabled_by_hand(&self, r: &Registration, enabled: bool) {
        self.patch_by_hand(r, ("enabled", &enabled.to_string()))
            .await
    }

    /// Changes one field of an instance as an administrator would (the console, the API), without
    /// the operator's marker; the rest stays as it is.
    pub async fn patch_by_hand(&self, r: &Registration, field: (&'static str, &str)) {
        let mut params = r.params();
        params.push((field.0, field.1.to_string()));
        let (method, path) = if self.kind == Server::Nacos3 {
            (reqwest::Method::PUT, "/nacos/v3/admin/ns/instance/partial")
        } else {
            (reqwest::Method::PATCH, "/nacos/v1/ns/instance")
        };
        let (status, body) = self.call(method, path, &params).await;
        assert!(
            (200..300).contains(&status) && body.contains("ok"),
            "{field:?} on {self}: {status} {body}"
        );
    }

    /// `ip:port` of the instances consumers get, sorted: the client list API, which hides
    /// disabled instances (every server answers `/v1/ns/instance/list`, 3.0.3 too).
    pub async fn consumer_view(&self, service: &str) -> Vec<String> {
        self.consumer_view_in(service, "DEFAULT_GROUP", "public")
            .await
    }

    pub async fn consumer_view_in(
        &self,
        service: &str,
        group: &str,
        namespace: &str,
    ) -> Vec<String> {
        let params = [
            ("serviceName", service.to_string()),
            ("groupName", group.to_string()),
            ("namespaceId", namespace.to_string()),
            ("healthyOnly", "false".to_string()),
        ];
        let (status, body) = self
            .call(reqwest::Method::GET, "/nacos/v1/ns/instance/list", &params)
            .await;
        assert_eq!(status, 200, "instance list of {service} on {self}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        let mut out: Vec<String> = v["hosts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|h| h["enabled"].as_bool().unwrap_or(true))
                    .map(|h| format!("{}:{}", h["ip"].as_str().unwrap_or(""), h["port"]))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// What the server holds about `ip:port` of `service` in cluster DEFAULT, disabled or not;
    /// `None` when it holds no such instance. Panics when the server cannot be asked: a server
    /// that does not answer must not read as "instance gone".
    pub async fn held(&self, service: &str, ip: &str, port: u16) -> Option<Held> {
        self.held_at(&Registration::new(service, ip, port)).await
    }

    pub async fn held_at(&self, r: &Registration) -> Option<Held> {
        let instance = match self.kind {
            // rnacos and 1.x: the detail API shows an instance whatever its state.
            Server::Rnacos | Server::RnacosAuth => {
                let (status, body) = self
                    .call(reqwest::Method::GET, "/nacos/v1/ns/instance", &r.params())
                    .await;
                if status == 500 && body.trim() == "error" {
                    return None;
                }
                assert_eq!(status, 200, "instance detail on {self}: {body}");
                serde_json::from_str::<Value>(&body).unwrap_or_default()
            }
            // 2.5.1's detail API has no `enabled`: its v2 catalog lists every instance with it.
            Server::Nacos2 => {
                let params = [
                    ("namespaceId", r.namespace.clone()),
                    ("serviceName", format!("{}@@{}", r.group, r.service)),
                    ("pageNo", "1".into()),
                    ("pageSize", "1000".into()),
                ];
                let (status, body) = self
                    .call(
                        reqwest::Method::GET,
                        "/nacos/v2/ns/catalog/instances",
                        &params,
                    )
                    .await;
                assert_eq!(status, 200, "v2 catalog on {self}: {body}");
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                let found = v["data"]["instances"].as_array().and_then(|a| {
                    a.iter()
                        .find(|i| {
                            i["ip"] == r.ip.as_str()
                                && i["port"] == r.port
                                && i["clusterName"] == r.cluster.as_str()
                        })
                        .cloned()
                });
                found?
            }
            // 3.0.3: the admin listing of the cluster (as the operator reads it).
            Server::Nacos3 => {
                let params = [
                    ("namespaceId", r.namespace.clone()),
                    ("groupName", r.group.clone()),
                    ("serviceName", r.service.clone()),
                    ("clusterName", r.cluster.clone()),
                ];
                let (status, body) = self
                    .call(
                        reqwest::Method::GET,
                        "/nacos/v3/admin/ns/instance/list",
                        &params,
                    )
                    .await;
                // 404: the service or cluster is not (or no longer) there.
                if status == 404 {
                    return None;
                }
                assert_eq!(status, 200, "instance list on {self}: {body}");
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                let found = v["data"].as_array().and_then(|a| {
                    a.iter()
                        .find(|i| i["ip"] == r.ip.as_str() && i["port"] == r.port)
                        .cloned()
                });
                found?
            }
        };
        instance.get("ip")?;
        Some(Held {
            enabled: instance["enabled"].as_bool().unwrap_or(true),
            ephemeral: instance["ephemeral"].as_bool().unwrap_or(true),
            metadata: instance["metadata"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Creates a Nacos namespace (id = name).
    pub async fn create_namespace(&self, id: &str) {
        let (path, params) = if self.kind == Server::Nacos3 {
            (
                "/nacos/v3/admin/core/namespace",
                vec![
                    ("namespaceId", id.to_string()),
                    ("namespaceName", id.to_string()),
                    ("namespaceDesc", "test".to_string()),
                ],
            )
        } else {
            (
                "/nacos/v1/console/namespaces",
                vec![
                    ("customNamespaceId", id.to_string()),
                    ("namespaceName", id.to_string()),
                    ("namespaceDesc", "test".to_string()),
                ],
            )
        };
        let (status, body) = self.call(reqwest::Method::POST, path, &params).await;
        assert!(
            (200..300).contains(&status) && !body.contains("false"),
            "create namespace {id} on {self}: {status} {body}"
        );
    }
}

fn metadata_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).expect("a map of strings")
}
