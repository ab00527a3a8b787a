//! The harness's side of Nacos: fast registration, the consumer's view, and a tracker that records
//! when each watched instance stops being listed as usable. Speaks to rnacos (open) and to Alibaba
//! Nacos 2.5.1 (auth on: a login token rides on every request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;

/// The server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The testbed's open rnacos 0.8.8 (`RNACOS_ADDR`).
    Rnacos,
    /// The testbed's Alibaba Nacos 2.5.1, standalone, auth on (`NACOS_V2_ADDR`).
    Nacos2,
}

impl Server {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "rnacos" => Ok(Server::Rnacos),
            "nacos-2.5.1" => Ok(Server::Nacos2),
            _ => bail!("--server {s}: rnacos or nacos-2.5.1"),
        }
    }

    /// As `--server` and bench/run.sh name it.
    pub fn id(self) -> &'static str {
        match self {
            Server::Rnacos => "rnacos",
            Server::Nacos2 => "nacos-2.5.1",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Server::Rnacos => "rnacos 0.8.8",
            Server::Nacos2 => "Alibaba Nacos 2.5.1",
        }
    }

    /// The testbed's component name (its PID is in `$TESTBED_STATE/pids/<name>`).
    pub fn component(self) -> &'static str {
        match self {
            Server::Rnacos => "rnacos",
            Server::Nacos2 => "nacos-2.5.1",
        }
    }

    fn addr_var(self) -> &'static str {
        match self {
            Server::Rnacos => "RNACOS_ADDR",
            Server::Nacos2 => "NACOS_V2_ADDR",
        }
    }

    pub fn auth(self) -> bool {
        self == Server::Nacos2
    }
}

#[derive(Clone)]
pub struct Nacos {
    pub base: String,
    pub server: Server,
    http: reqwest::Client,
    /// username, password where the server has auth.
    credentials: Option<(String, String)>,
    /// The login token and when to log in again.
    token: Arc<tokio::sync::Mutex<Option<(String, Instant)>>>,
}

/// An instance as a consumer sees it in `/nacos/v1/ns/instance/list` (which hides disabled ones).
#[derive(Debug, Clone)]
pub struct Listed {
    pub addr: String,
    pub healthy: bool,
    pub enabled: bool,
}

impl Nacos {
    /// The testbed's `server`, from its environment.
    pub fn new(server: Server) -> Result<Self> {
        let env =
            |k: &str| std::env::var(k).with_context(|| format!("{k} is not set (testbed env)"));
        let base = env(server.addr_var())?;
        let credentials = if server.auth() {
            Some((env("NACOS_USERNAME")?, env("NACOS_PASSWORD")?))
        } else {
            None
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(10))
            .build()
            .context("an HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            server,
            http,
            credentials,
            token: Default::default(),
        })
    }

    pub fn credentials(&self) -> Option<&(String, String)> {
        self.credentials.as_ref()
    }

    /// The `accessToken` query parameter (none without auth). One login per process, renewed a
    /// minute before the server's `tokenTtl` runs out; concurrent callers wait for the one login.
    async fn auth_query(&self) -> Result<Vec<(&'static str, String)>> {
        let Some((user, pass)) = &self.credentials else {
            return Ok(Vec::new());
        };
        let mut token = self.token.lock().await;
        if let Some((t, until)) = token.as_ref() {
            if Instant::now() < *until {
                return Ok(vec![("accessToken", t.clone())]);
            }
        }
        let r = self
            .http
            .post(format!("{}/nacos/v1/auth/login", self.base))
            .form(&[("username", user.as_str()), ("password", pass.as_str())])
            .send()
            .await
            .context("login")?;
        if !r.status().is_success() {
            bail!("login: HTTP {}", r.status());
        }
        let v: serde_json::Value = r.json().await.context("login")?;
        let t = v["accessToken"]
            .as_str()
            .context("login: no accessToken")?
            .to_string();
        let ttl = Duration::from_secs(v["tokenTtl"].as_u64().unwrap_or(18_000));
        *token = Some((
            t.clone(),
            Instant::now() + ttl.saturating_sub(Duration::from_secs(60)),
        ));
        Ok(vec![("accessToken", t)])
    }

    /// Registers an instance over the v1 HTTP API (persistent unless `ephemeral`).
    pub async fn register(
        &self,
        service: &str,
        ip: &str,
        port: u16,
        ephemeral: bool,
    ) -> Result<()> {
        let mut last = None;
        let auth = self.auth_query().await?;
        for attempt in 0..5 {
            let r = self
                .http
                .post(format!("{}/nacos/v1/ns/instance", self.base))
                .query(&[
                    ("serviceName", service),
                    ("ip", ip),
                    ("port", &port.to_string()),
                    ("ephemeral", if ephemeral { "true" } else { "false" }),
                ])
                .query(&auth)
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = Some(format!("HTTP {}", r.status())),
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
        }
        bail!(
            "register {service} {ip}:{port}: {}",
            last.unwrap_or_default()
        )
    }

    /// Deregisters a persistent instance over the v1 HTTP API.
    pub async fn deregister(&self, service: &str, ip: &str, port: u16) -> Result<()> {
        let auth = self.auth_query().await?;
        let r = self
            .http
            .delete(format!("{}/nacos/v1/ns/instance", self.base))
            .query(&[
                ("serviceName", service),
                ("ip", ip),
                ("port", &port.to_string()),
                ("ephemeral", "false"),
            ])
            .query(&auth)
            .send()
            .await
            .with_context(|| format!("deregister {service} {ip}:{port}"))?;
        if !r.status().is_success() {
            bail!("deregister {service} {ip}:{port}: HTTP {}", r.status());
        }
        Ok(())
    }

    /// The server's own share of a removal: `n` times, a persistent instance of `service` is
    /// registered, its DELETE answered, and the time from that answer to the first consumer listing
    /// without it taken (listings back to back; `None`: still listed after 10 s). No operator acts
    /// meanwhile: what it shows is what no client of the server can beat.
    pub async fn publication_delay(
        &self,
        service: &str,
        n: usize,
    ) -> Result<Vec<Option<Duration>>> {
        let listed = |all: &[Listed], addr: &str| all.iter().any(|l| l.addr == addr);
        let mut delays = Vec::with_capacity(n);
        for i in 0..n {
            let ip = format!("10.247.0.{}", i % 250 + 1);
            let addr = format!("{ip}:8080");
            self.register(service, &ip, 8080, false).await?;
            let until = Instant::now() + Duration::from_secs(10);
            while !listed(&self.list(service).await?, &addr) {
                if Instant::now() > until {
                    bail!("probe {addr} of {service} not listed 10 s after its registration");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.deregister(service, &ip, 8080).await?;
            let answered = Instant::now();
            let mut delay = None;
            while answered.elapsed() < Duration::from_secs(10) {
                if !listed(&self.list(service).await?, &addr) {
                    delay = Some(answered.elapsed());
                    break;
                }
            }
            delays.push(delay);
        }
        Ok(delays)
    }

    /// The consumer's view of a service (`healthyOnly=false`: rnacos defaults it to true). Both
    /// servers hide disabled instances here; `enabled` is read all the same, in case one does not.
    pub async fn list(&self, service: &str) -> Result<Vec<Listed>> {
        let auth = self.auth_query().await?;
        let r = self
            .http
            .get(format!("{}/nacos/v1/ns/instance/list", self.base))
            .query(&[("serviceName", service), ("healthyOnly", "false")])
            .query(&auth)
            .send()
            .await
            .with_context(|| format!("list {service}"))?;
        if !r.status().is_success() {
            bail!("list {service}: HTTP {}", r.status());
        }
        let v: serde_json::Value = r.json().await.with_context(|| format!("list {service}"))?;
        Ok(v["hosts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| Listed {
                        addr: format!("{}:{}", h["ip"].as_str().unwrap_or(""), h["port"]),
                        healthy: h["healthy"].as_bool().unwrap_or(true),
                        enabled: h["enabled"].as_bool().unwrap_or(true),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Watches instances until consumers no longer get them (absent, or listed `enabled=false`).
/// One background loop lists each service that has watched instances, a few at a time, at most
/// every `period`; an instance's end time is the arrival of the first listing without it.
/// Per service: the watched instances.
type Pending = HashMap<String, Vec<Watched>>;

struct Watched {
    addr: String,
    id: usize,
    /// A pod whose deletion the harness must have seen before the service is polled for this
    /// instance: polling instances whose pods still exist (most of them, early in a mass deletion)
    /// would only load the machine the benchmark runs on.
    after: Option<String>,
    /// The last listing that had it usable.
    usable_at: Option<Instant>,
}

/// Whether the harness has seen the deletion of a pod.
pub type SeenDeleted = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct OfflineTracker {
    pending: Arc<Mutex<Pending>>,
    /// Listings per second at most (0: no cap), set per phase.
    max_rate: Arc<std::sync::atomic::AtomicU64>,
    done: Arc<Mutex<HashMap<usize, Instant>>>,
    /// Per finished id: the last listing that still had the instance usable (if any).
    last_usable: Arc<Mutex<HashMap<usize, Instant>>>,
    polls: Arc<std::sync::atomic::AtomicU64>,
}

impl OfflineTracker {
    pub fn start(
        nacos: Nacos,
        concurrency: usize,
        period: Duration,
        seen_deleted: SeenDeleted,
    ) -> Self {
        let t = Self {
            pending: Default::default(),
            max_rate: Default::default(),
            done: Default::default(),
            last_usable: Default::default(),
            polls: Default::default(),
        };
        let me = t.clone();
        tokio::spawn(async move {
            loop {
                let round = Instant::now();
                let services: Vec<String> = me
                    .pending
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|(_, list)| {
                        list.iter()
                            .any(|w| w.after.as_deref().is_none_or(|pod| seen_deleted(pod)))
                    })
                    .map(|(svc, _)| svc.clone())
                    .collect();
                let polled = services.len();
                futures::stream::iter(services)
                    .map(|svc| {
                        let nacos = nacos.clone();
                        async move {
                            let r = nacos.list(&svc).await;
                            (svc, r, Instant::now())
                        }
                    })
                    .buffer_unordered(concurrency.max(1))
                    .for_each(|(svc, listed, at)| {
                        me.polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Ok(listed) = listed {
                            let usable: std::collections::HashSet<&str> = listed
                                .iter()
                                .filter(|l| l.enabled)
                                .map(|l| l.addr.as_str())
                                .collect();
                            let mut pending = me.pending.lock().expect("lock");
                            let mut done = me.done.lock().expect("lock");
                            let mut last_usable = me.last_usable.lock().expect("lock");
                            if let Some(list) = pending.get_mut(&svc) {
                                list.retain_mut(|w| {
                                    if usable.contains(w.addr.as_str()) {
                                        w.usable_at = Some(at);
                                        return true;
                                    }
                                    done.insert(w.id, at);
                                    if let Some(u) = w.usable_at {
                                        last_usable.insert(w.id, u);
                                    }
                                    false
                                });
                                if list.is_empty() {
                                    pending.remove(&svc);
                                }
                            }
                        }
                        futures::future::ready(())
                    })
                    .await;
                let rate = me.max_rate.load(std::sync::atomic::Ordering::Relaxed);
                let paced = if rate == 0 {
                    period
                } else {
                    period.max(Duration::from_secs_f64(polled as f64 / rate as f64))
                };
                if let Some(rest) = paced.checked_sub(round.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
        });
        t
    }

    /// Starts watching `addr` (ip:port) of `service` under `id`; with `after`, once that pod's
    /// deletion was seen.
    pub fn track(&self, id: usize, service: &str, addr: &str, after: Option<&str>) {
        self.pending
            .lock()
            .expect("lock")
            .entry(service.to_string())
            .or_default()
            .push(Watched {
                addr: addr.to_string(),
                id,
                after: after.map(str::to_string),
                usable_at: None,
            });
    }

    /// Caps the listings per second (0: no cap). An observer that lists as fast as it can takes
    /// a share of the machine from what it observes when thousands of instances are pending; the
    /// cap costs resolution only while many are pending (a round lists each pending service once).
    pub fn set_max_rate(&self, per_second: u64) {
        self.max_rate
            .store(per_second, std::sync::atomic::Ordering::Relaxed);
    }

    /// When `id` was first seen offline.
    pub fn done_at(&self, id: usize) -> Option<Instant> {
        self.done.lock().expect("lock").get(&id).copied()
    }

    /// The last listing before `done_at` that still had `id` usable: it went offline in between.
    pub fn last_usable_at(&self, id: usize) -> Option<Instant> {
        self.last_usable.lock().expect("lock").get(&id).copied()
    }

    pub fn pending_count(&self) -> usize {
        self.pending
            .lock()
            .expect("lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Waits until nothing is pending or `timeout` passed; stops watching what is left.
    pub async fn wait_all(&self, timeout: Duration) {
        let start = Instant::now();
        while self.pending_count() > 0 && start.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.pending.lock().expect("lock").clear();
    }

    pub fn polls(&self) -> u64 {
        self.polls.load(std::sync::atomic::Ordering::Relaxed)
    }
}
