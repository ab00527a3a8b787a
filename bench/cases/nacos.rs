//! The Nacos servers of the benchmark, as consumers and the harness speak to them over HTTP, and
//! the private rnacos (bound to the namespaces' peer address, see `net.rs`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::common::TestProcess;

/// Which server a case runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The testbed's Alibaba Nacos 2.5.1 (auth on).
    Alibaba,
    /// rnacos 0.8.8, a private instance of the benchmark (no auth).
    Rnacos,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Alibaba => "nacos",
            Kind::Rnacos => "rnacos",
        }
    }
}

/// A server: where the harness and the operator reach it, where SDK clients in a namespace reach
/// it, and its credentials.
pub struct Nacos {
    pub kind: Kind,
    /// `http://host:port`, for the harness and the operator.
    pub base: String,
    /// `host:port` for SDK clients on this machine.
    pub sdk_local: String,
    /// `host:port` for SDK clients inside a network namespace (the peer address).
    pub sdk_peer: String,
    pub credentials: Option<(String, String)>,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<String>>,
    _proc: Option<TestProcess>,
}

impl Nacos {
    /// The testbed's Alibaba Nacos 2.5.1, which listens on every address of this machine.
    pub fn alibaba(peer_ip: &str) -> Result<Self> {
        let base = std::env::var("NACOS_V2_ADDR").context("NACOS_V2_ADDR (the testbed's)")?;
        let port = base.rsplit(':').next().unwrap_or_default().to_string();
        let creds = (
            std::env::var("NACOS_USERNAME").context("NACOS_USERNAME")?,
            std::env::var("NACOS_PASSWORD").context("NACOS_PASSWORD")?,
        );
        Ok(Self {
            kind: Kind::Alibaba,
            sdk_local: base.trim_start_matches("http://").to_string(),
            sdk_peer: format!("{peer_ip}:{port}"),
            base,
            credentials: Some(creds),
            http: client(),
            token: Default::default(),
            _proc: None,
        })
    }

    /// A private rnacos bound to `peer_ip` alone: the testbed's listens on 127.0.0.1, which a
    /// client in a network namespace cannot reach. rnacos 0.8.8 now and then starts with its Raft
    /// store broken (every write fails): started afresh up to five times.
    pub async fn private_rnacos(peer_ip: &str, state: &std::path::Path) -> Result<Self> {
        let bin = std::env::var("CASES_RNACOS").context("CASES_RNACOS (set by bench/cases.sh)")?;
        for attempt in 1..=5 {
            let port = free_pair(peer_ip)?;
            let dir: PathBuf = state.join(format!("rnacos-cases-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let log = std::fs::File::create(dir.join("rnacos.log"))?;
            let mut cmd = Command::new(&bin);
            cmd.env("RNACOS_HTTP_PORT", port.to_string())
                .env("RNACOS_GRPC_PORT", (port + 1000).to_string())
                .env("RNACOS_HTTP_CONSOLE_PORT", "0")
                .env("RNACOS_DATA_DIR", &dir)
                .env("RNACOS_ENV_FILE", dir.join(".env"))
                .env("RNACOS_ENABLE_OPEN_API_AUTH", "false")
                .env("RNACOS_ENABLE_NO_AUTH_CONSOLE", "true")
                .env("RNACOS_SDK_HOST", peer_ip)
                .env("RNACOS_CONSOLE_HOST", peer_ip)
                .env(
                    "RNACOS_RAFT_NODE_ADDR",
                    format!("{peer_ip}:{}", port + 1000),
                )
                .env("RUST_LOG", "warn")
                .stdout(log.try_clone()?)
                .stderr(log);
            let proc = TestProcess::spawn(cmd, "rnacos-cases");
            let n = Self {
                kind: Kind::Rnacos,
                base: format!("http://{peer_ip}:{port}"),
                sdk_local: format!("{peer_ip}:{port}"),
                sdk_peer: format!("{peer_ip}:{port}"),
                credentials: None,
                http: client(),
                token: Default::default(),
                _proc: Some(proc),
            };
            if n.takes_writes().await {
                return Ok(n);
            }
            eprintln!("[cases] private rnacos did not take writes (attempt {attempt} of 5)");
        }
        bail!("the private rnacos did not start in five attempts")
    }

    /// Whether a Raft write (a namespace) takes within 30 s; the first answers may come before
    /// the Raft store is ready.
    async fn takes_writes(&self) -> bool {
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ok = self
                .http
                .post(format!("{}/nacos/v1/console/namespaces", self.base))
                .form(&[
                    ("customNamespaceId", "cases-probe"),
                    ("namespaceName", "cases-probe"),
                    ("namespaceDesc", "start-up probe"),
                ])
                .send()
                .await;
            if let Ok(r) = ok {
                if r.text().await.is_ok_and(|t| t.trim() == "true") {
                    return true;
                }
            }
        }
        false
    }

    async fn token(&self) -> Result<Option<String>> {
        let Some((user, pass)) = &self.credentials else {
            return Ok(None);
        };
        let mut t = self.token.lock().await;
        if t.is_none() {
            let v: Value = self
                .http
                .post(format!("{}/nacos/v1/auth/login", self.base))
                .form(&[("username", user), ("password", pass)])
                .send()
                .await?
                .json()
                .await?;
            *t = Some(
                v["accessToken"]
                    .as_str()
                    .context("no accessToken in the login answer")?
                    .to_string(),
            );
        }
        Ok(t.clone())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<String> {
        let mut rb = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        rb = if method == reqwest::Method::GET {
            rb.query(params)
        } else {
            rb.form(params)
        };
        if let Some(t) = self.token().await? {
            rb = rb.header("accessToken", t);
        }
        let r = rb.send().await?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: {status} {body}");
        }
        Ok(body)
    }

    /// A persistent instance (only a DELETE removes it).
    pub async fn register_persistent(&self, service: &str, ip: &str, port: u16) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", service.to_string()),
                ("ip", ip.to_string()),
                ("port", port.to_string()),
                ("namespaceId", "public".to_string()),
                ("ephemeral", "false".to_string()),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Alibaba Nacos: no health check of `service`'s persistent instances (cluster DEFAULT).
    pub async fn no_health_check(&self, service: &str) -> Result<()> {
        if self.kind != Kind::Alibaba {
            return Ok(());
        }
        self.call(
            reqwest::Method::PUT,
            "/nacos/v1/ns/cluster",
            &[
                ("serviceName", service.to_string()),
                ("clusterName", "DEFAULT".to_string()),
                ("namespaceId", "public".to_string()),
                ("checkPort", "80".to_string()),
                ("useInstancePort4Check", "true".to_string()),
                ("healthChecker", r#"{"type":"NONE"}"#.to_string()),
            ],
        )
        .await
        .map(|_| ())
    }

    /// `ip:port` of the instances a consumer of `service` is served now: the client list API
    /// (`/nacos/v1/ns/instance/list`, all instances), keeping those enabled and healthy, which is
    /// what the Java SDK's `selectInstances(healthy=true)` and a subscriber that skips unhealthy
    /// instances use. (Each service has healthy keepers, so the protect threshold never makes the
    /// server report an unhealthy instance as healthy.) An error is no evidence: `Err`.
    pub async fn served(&self, service: &str) -> Result<Vec<String>> {
        let body = self
            .call(
                reqwest::Method::GET,
                "/nacos/v1/ns/instance/list",
                &[
                    ("serviceName", service.to_string()),
                    ("groupName", "DEFAULT_GROUP".to_string()),
                    ("namespaceId", "public".to_string()),
                    ("healthyOnly", "false".to_string()),
                ],
            )
            .await?;
        let v: Value = serde_json::from_str(&body).context("instance list is not JSON")?;
        let hosts = v["hosts"].as_array().context("no hosts in the list")?;
        Ok(hosts
            .iter()
            .filter(|h| h["enabled"].as_bool().unwrap_or(true))
            .filter(|h| h["healthy"].as_bool().unwrap_or(true))
            .map(|h| format!("{}:{}", h["ip"].as_str().unwrap_or(""), h["port"]))
            .collect())
    }

    /// The binding's `spec.nacos` (with Secret `nacos-auth` where the server has auth).
    pub fn binding_nacos(&self) -> Value {
        let mut v = serde_json::json!({"serverAddr": [self.base]});
        if self.credentials.is_some() {
            v["credentialsSecretRef"] = serde_json::json!({"name": "nacos-auth"});
        }
        v
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// A port P with P and P + 1000 (rnacos's gRPC) free on `ip`, below the ephemeral range.
fn free_pair(ip: &str) -> Result<u16> {
    let seed = std::process::id() as u64 ^ chrono::Utc::now().timestamp_subsec_nanos() as u64;
    for i in 0..500u64 {
        let p = 11000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 7919)) % 20000) as u16;
        let a = std::net::TcpListener::bind((ip, p));
        let b = std::net::TcpListener::bind((ip, p + 1000));
        if a.is_ok() && b.is_ok() {
            return Ok(p);
        }
    }
    bail!("no free port pair on {ip}")
}
