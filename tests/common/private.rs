//! Nacos servers of a test's own, which it may stop, kill and start again without disturbing the
//! other tests: rnacos ([`PrivateNacos`]) and Alibaba Nacos 2.5.1 ([`PrivateAlibabaNacos`], started
//! as `tests/testbed.sh` starts the shared one), and [`PrivateServer`] for a test that runs on
//! either.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::servers::{NacosAt, Server};
use super::*;

/// An rnacos server of the test's own (no auth), so a test can stop and restart it without
/// disturbing the others. Its data directory survives a restart, and so do persistent instances.
pub struct PrivateNacos {
    pub addr: String,
    port: u16,
    data_dir: PathBuf,
    proc: Option<TestProcess>,
}

impl PrivateNacos {
    /// Starts a server on a free HTTP port (gRPC on HTTP + 1000) and waits until it answers.
    pub async fn start(name: &str) -> Self {
        let port = nacos_port();
        let base = std::env::var("TESTBED_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let data_dir = base.join(format!("rnacos-{name}-{port}"));
        let mut n = Self {
            addr: format!("http://127.0.0.1:{port}"),
            port,
            data_dir,
            proc: None,
        };
        // rnacos 0.8.8 sometimes starts without recording its Raft node in `index`; such a server
        // answers, but loses every persistent instance on a restart. Start afresh until it did.
        for _ in 0..5 {
            let _ = std::fs::remove_dir_all(&n.data_dir);
            std::fs::create_dir_all(&n.data_dir).expect("rnacos data dir");
            n.resume().await;
            if n.raft_recorded(Duration::from_secs(5)).await {
                return n;
            }
            n.stop().await;
        }
        panic!(
            "rnacos never recorded its Raft node in {}",
            n.data_dir.display()
        );
    }

    /// Whether the server's Raft `index` file names its node within `timeout`.
    async fn raft_recorded(&self, timeout: Duration) -> bool {
        let node = format!("127.0.0.1:{}", self.port + 1000);
        let start = Instant::now();
        while start.elapsed() < timeout {
            let index = std::fs::read(self.data_dir.join("index")).unwrap_or_default();
            if index.windows(node.len()).any(|w| w == node.as_bytes()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Stops the server as a restart does (SIGTERM) and waits until it exited: rnacos keeps
    /// persistent instances across a clean stop, but not always across SIGKILL.
    pub async fn stop(&mut self) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        let term = Command::new("kill")
            .args(["-TERM", &proc.pid().to_string()])
            .status();
        assert!(
            term.is_ok_and(|s| s.success()),
            "cannot send SIGTERM to rnacos"
        );
        wait_for(
            "the private rnacos to exit",
            Duration::from_secs(15),
            || {
                let exited = proc.child_mut().try_wait().ok().flatten().is_some();
                async move { exited.then_some(()) }
            },
        )
        .await;
    }

    /// Starts the server again on the same ports and data directory; waits until it answers.
    pub async fn resume(&mut self) {
        let bin = std::env::var("RNACOS_BIN").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            format!("{home}/.cache/nacos-reconciler/rnacos-0.8.8/bin/rnacos")
        });
        let grpc = self.port + 1000;
        let log = std::fs::File::create(self.data_dir.join("rnacos.log")).expect("rnacos log");
        let mut cmd = Command::new(bin);
        cmd.env("RNACOS_HTTP_PORT", self.port.to_string())
            .env("RNACOS_GRPC_PORT", grpc.to_string())
            .env("RNACOS_HTTP_CONSOLE_PORT", "0")
            .env("RNACOS_SDK_HOST", "127.0.0.1")
            .env("RNACOS_CONSOLE_HOST", "127.0.0.1")
            .env("RNACOS_DATA_DIR", &self.data_dir)
            .env("RNACOS_ENV_FILE", self.data_dir.join(".env"))
            .env("RNACOS_RAFT_NODE_ADDR", format!("127.0.0.1:{grpc}"))
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().expect("rnacos log"))
            .stderr(log);
        self.proc = Some(TestProcess::spawn(cmd, "rnacos"));
        let url = format!("{}/nacos/v1/ns/service/list?pageNo=1&pageSize=1", self.addr);
        wait_for(
            &format!("the private rnacos on {} to answer", self.addr),
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move {
                    let r = reqwest::get(&url).await.ok()?;
                    r.status().is_success().then_some(())
                }
            },
        )
        .await;
    }
}

/// The HTTP port of a server of the test's own: Alibaba Nacos also binds port - 1000 (Raft), + 1000
/// (SDK gRPC) and + 1001 (cluster gRPC); rnacos + 1000 (gRPC).
pub fn nacos_port() -> u16 {
    // Below the kernel's ephemeral range (32768 up): an outgoing connection of any process may
    // take a free port there between this check and the server's bind (seen: Nacos's cluster gRPC
    // port, P + 1001, "Address already in use").
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    let mut candidate = seed;
    loop {
        candidate = candidate.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let port = 11_000 + (candidate >> 8) % 20_000; // 11000..31000
        let port = port as u16;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port - 1000) && free(port + 1000) && free(port + 1001) {
            return port;
        }
    }
}

/// The Alibaba Nacos 2.5.1 the testbed built (its distribution folder, which `up` exports).
fn alibaba_2_5_1_dist() -> PathBuf {
    PathBuf::from(testbed_env("NACOS_V2_DIST"))
}

/// An Alibaba Nacos 2.5.1 server of the test's own (standalone, auth on, the testbed's user), so a
/// test can kill and restart it, or run it with settings of its own, without disturbing the others.
/// Started as `tests/testbed.sh` starts the shared one (`launch_nacos`, `ready_nacos`), with a
/// smaller heap. Its `nacos.home` (embedded storage, the Raft log of persistent instances) and
/// `user.home` survive a restart, and so do persistent instances.
pub struct PrivateAlibabaNacos {
    pub addr: String,
    pub port: u16,
    pub dir: std::path::PathBuf,
    /// Alone (`-Dnacos.standalone=true`), or a member of a cluster (embedded storage).
    standalone: bool,
    /// Where it runs (a cluster member's address is the one in `cluster.conf`).
    place: Place,
    proc: Option<TestProcess>,
    /// How long each start took, until a login worked.
    pub starts: Vec<Duration>,
    launched: Option<Instant>,
}

impl Drop for PrivateAlibabaNacos {
    /// Kills the server and removes its data (JRaft's files take ~600 MB) and its temporary
    /// files; its logs stay.
    fn drop(&mut self) {
        drop(self.proc.take());
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        let _ = std::fs::remove_dir_all(self.dir.join("tmp"));
    }
}

impl PrivateAlibabaNacos {
    /// Starts a server with `properties` appended to its `application.properties` (after the
    /// testbed's, so they win); waits until its admin user exists and a login works.
    pub async fn start(name: &str, properties: &[(&str, &str)]) -> Self {
        let mut n = Self::launch(name, properties);
        n.ready().await;
        n
    }

    /// As `start`, without waiting: the JVM starts (15-30 s) while the test sets up the rest;
    /// [`Self::ready`] waits for it.
    pub fn launch(name: &str, properties: &[(&str, &str)]) -> Self {
        Self::launch_as(name, &Place::loopback(nacos_port()), None, properties)
    }

    /// As `launch`, at `place`; with `cluster`, a member of the cluster of those places (its
    /// `cluster.conf`), keeping its data with embedded storage (JRaft) as production clusters
    /// without MySQL do.
    fn launch_as(
        name: &str,
        place: &Place,
        cluster: Option<&[Place]>,
        properties: &[(&str, &str)],
    ) -> Self {
        let port = place.port;
        let dist = alibaba_2_5_1_dist();
        let base = std::env::var("TESTBED_STATE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let dir = base.join(format!("nacos-2.5.1-{name}-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["home", "logs", "conf"] {
            std::fs::create_dir_all(dir.join(sub)).expect("the private Nacos's directories");
        }
        for entry in std::fs::read_dir(dist.join("conf")).expect("the Nacos conf directory") {
            let entry = entry.expect("a conf entry");
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.join("conf").join(entry.file_name()))
                    .expect("copy the Nacos conf");
            }
        }
        let conf = dir.join("conf/application.properties");
        let mut text = std::fs::read_to_string(&conf).expect("application.properties");
        text.push_str("\n# tests/faults: loopback, auth on (as tests/testbed.sh's launch_nacos)\n");
        for (k, v) in [
            ("nacos.inetutils.ip-address", place.ip.as_str()),
            ("nacos.core.auth.enabled", "true"),
            (
                "nacos.core.auth.plugin.nacos.token.secret.key",
                // base64 of 'nacos-reconciler-testbed-token-secret-key!', the testbed's key
                "bmFjb3MtcmVjb25jaWxlci10ZXN0YmVkLXRva2VuLXNlY3JldC1rZXkh",
            ),
            (
                "nacos.core.auth.server.identity.key",
                "nacos-reconciler-testbed",
            ),
            (
                "nacos.core.auth.server.identity.value",
                "nacos-reconciler-testbed",
            ),
            ("server.port", &port.to_string()),
        ]
        .into_iter()
        .chain(properties.iter().copied())
        {
            text.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(&conf, text).expect("write application.properties");
        if let Some(members) = cluster {
            let list: String = members
                .iter()
                .map(|m| format!("{}:{}\n", m.ip, m.port))
                .collect();
            std::fs::write(dir.join("conf/cluster.conf"), list).expect("write cluster.conf");
        }
        let mut n = Self {
            addr: format!("http://{}:{port}", place.access_ip),
            port,
            dir,
            standalone: cluster.is_none(),
            place: place.clone(),
            proc: None,
            starts: Vec::new(),
            launched: None,
        };
        n.spawn();
        n
    }

    /// Starts the server again on the same port and state; waits until a login works.
    pub async fn resume(&mut self) {
        self.spawn();
        self.ready().await;
    }

    fn spawn(&mut self) {
        assert!(self.proc.is_none(), "the private Nacos already runs");
        self.launched = Some(Instant::now());
        let jar = alibaba_2_5_1_dist().join("target/nacos-server.jar");
        let home = self.dir.join("home");
        // RocksDB unpacks its 14 MB native library into the JVM's temporary directory at every
        // start: into this server's directory, which goes with it, not into /tmp for good.
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("the private Nacos's temporary directory");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/stdout.log"))
            .expect("the private Nacos's stdout log");
        let java = testbed_env("NACOS_JAVA");
        let mut cmd = match &self.place.netns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns, &java]);
                c
            }
            None => std::process::Command::new(java),
        };
        // Its working directory too: Tomcat's access logs and Derby's log go there.
        cmd.current_dir(&self.dir)
            .env("HOME", &home)
            .args(["-Xms128m", "-Xmx384m", "-XX:MaxMetaspaceSize=256m"])
            .arg("-XX:-OmitStackTraceInFastThrow")
            .arg(format!("-Duser.home={}", home.display()))
            .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
            // A member's JRaft node takes the machine's address unless told: the members of
            // `cluster.conf` would not find it among them.
            .args(if self.standalone {
                vec!["-Dnacos.standalone=true".to_string()]
            } else {
                vec![
                    "-DembeddedStorage=true".to_string(),
                    format!("-Dnacos.server.ip={}", self.place.ip),
                ]
            })
            .arg(format!("-Dnacos.home={}", self.dir.display()))
            .arg("-jar")
            .arg(&jar)
            .arg(format!(
                "--spring.config.additional-location=file:{}/conf/",
                self.dir.display()
            ))
            .arg(format!(
                "--logging.config={}/conf/nacos-logback.xml",
                self.dir.display()
            ))
            .stdout(out.try_clone().expect("log file"))
            .stderr(out);
        self.proc = Some(TestProcess::spawn(cmd, "nacos-2.5.1"));
    }

    /// One attempt: creates the admin user (first start only), then logs in. `false` when the
    /// login did not work (yet); panics when the process exited.
    async fn logs_in(&mut self) -> bool {
        if let Some(p) = self.proc.as_mut() {
            if let Ok(Some(status)) = p.child_mut().try_wait() {
                panic!(
                    "the private Alibaba Nacos exited ({status}); read {}/logs/",
                    self.dir.display()
                );
            }
        }
        let (user, pass) = (testbed_env("NACOS_USERNAME"), testbed_env("NACOS_PASSWORD"));
        let http = reqwest::Client::new();
        if self.starts.is_empty() {
            let _ = http
                .post(format!("{}/nacos/v1/auth/users/admin", self.addr))
                .form(&[("password", pass.as_str())])
                .send()
                .await;
        }
        let login = http
            .post(format!("{}/nacos/v1/auth/login", self.addr))
            .form(&[("username", user.as_str()), ("password", pass.as_str())])
            .send()
            .await;
        login.is_ok_and(|r| r.status().is_success())
    }

    /// Waits until a login works. From 2.4 there is no default user: the admin is created on the
    /// first start, while none exists.
    pub async fn ready(&mut self) {
        let started = self.launched.unwrap_or_else(Instant::now);
        let first = self.starts.is_empty();
        let deadline = Duration::from_secs(240);
        while !self.logs_in().await {
            assert!(
                started.elapsed() < deadline,
                "the private Alibaba Nacos on {} did not answer a login within {deadline:?}; \
                 read {}/logs/",
                self.addr,
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let took = started.elapsed();
        eprintln!(
            "private Alibaba Nacos 2.5.1 on {} started in {took:?} ({})",
            self.addr,
            if first { "first start" } else { "restart" }
        );
        self.starts.push(took);
    }

    /// SIGKILL, as a crash or an OOM kill: the process is gone at once, mid-request.
    pub async fn kill(&mut self) {
        if let Some(proc) = self.proc.take() {
            drop(proc); // TestProcess kills with SIGKILL and reaps
        }
    }

    /// SIGTERM, as a restart does; waits until the process exited.
    pub async fn stop(&mut self) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &proc.pid().to_string()])
            .status();
        wait_for(
            "the private Alibaba Nacos to exit",
            Duration::from_secs(30),
            || {
                let exited = proc.child_mut().try_wait().ok().flatten().is_some();
                async move { exited.then_some(()) }
            },
        )
        .await;
    }
}

/// Where a server runs: the address it is known by in its cluster, the one the test and the
/// operator reach it at, its HTTP port, and the network namespace it runs in.
#[derive(Debug, Clone)]
struct Place {
    ip: String,
    access_ip: String,
    port: u16,
    netns: Option<String>,
}

impl Place {
    fn loopback(port: u16) -> Self {
        Self {
            ip: "127.0.0.1".into(),
            access_ip: "127.0.0.1".into(),
            port,
            netns: None,
        }
    }
}

/// A three-member Alibaba Nacos 2.5.1 cluster of the test's own, auth on: ports 10 apart, each
/// member also on port - 1000 (JRaft), + 1000 (SDK gRPC) and + 1001 (cluster gRPC). Members 0 and
/// 1 run on this machine, member 2 in a network namespace of the test's own (see [`Netns`]):
/// [`Self::cut_off_member_2`] partitions it from the others.
pub struct PrivateNacosCluster {
    pub members: Vec<PrivateAlibabaNacos>,
    /// Dropped after the members (field order): their processes first, then their network.
    netns: Netns,
}

impl PrivateNacosCluster {
    pub async fn start(name: &str) -> Self {
        let netns = Netns::create();
        let base = cluster_port(3);
        let places: Vec<Place> = (0..3u16)
            .map(|i| {
                let (ip, access_ip) = if i < 2 {
                    (&netns.host_ip, &netns.host_ip)
                } else {
                    (&netns.inner_ip, &netns.access_ip)
                };
                Place {
                    ip: ip.clone(),
                    access_ip: access_ip.clone(),
                    port: base + 10 * i,
                    netns: (i == 2).then(|| netns.name.clone()),
                }
            })
            .collect();
        let members: Vec<PrivateAlibabaNacos> = places
            .iter()
            .enumerate()
            .map(|(i, p)| {
                PrivateAlibabaNacos::launch_as(&format!("{name}-{i}"), p, Some(&places), &[])
            })
            .collect();
        let mut cluster = Self { members, netns };
        cluster.wait_up(&[0, 1, 2]).await;
        cluster.wait_converged().await;
        cluster
    }

    /// Partitions member 2 from members 0 and 1 (no packet between them goes through, on
    /// established connections neither); the operator and the test still reach it, at its
    /// address on the access link.
    pub fn cut_off_member_2(&self) {
        self.netns.cut();
    }

    /// Ends [`Self::cut_off_member_2`].
    pub fn reconnect_member_2(&self) {
        self.netns.heal();
    }

    /// Starts member `i` again (after a kill) on its ports and data; waits until it is up and
    /// every member sees it so.
    pub async fn restart(&mut self, i: usize) {
        self.members[i].spawn();
        self.wait_up(&[i]).await;
        self.wait_converged().await;
    }

    /// Waits until members `which` answer a login.
    async fn wait_up(&mut self, which: &[usize]) {
        let members = &mut self.members;
        // Started together, a member that joins the config Raft group after its leader often
        // hangs for good (2.5.1: its startup dump fails a first read, the failure's advice waits for
        // a Spring bean whose creation waits for the dump). Restarted once a leader serves, it comes
        // up: a member still not answering 60 s after the first one is killed and started again.
        let started = Instant::now();
        let mut up: Vec<bool> = (0..members.len()).map(|i| !which.contains(&i)).collect();
        // With other members already up, a leader serves: count from now.
        let mut first_up: Option<Instant> = (which.len() < members.len()).then(Instant::now);
        while !up.iter().all(|u| *u) {
            assert!(
                started.elapsed() < Duration::from_secs(360),
                "the Nacos cluster did not come up ({up:?} up); read {}/logs/",
                members[0].dir.display()
            );
            for (i, m) in members.iter_mut().enumerate() {
                if !up[i] && m.logs_in().await {
                    up[i] = true;
                    let took = m.launched.map(|l| l.elapsed()).unwrap_or_default();
                    eprintln!("Nacos cluster member {} up in {took:?}", m.addr);
                    m.starts.push(took);
                    first_up.get_or_insert_with(Instant::now);
                }
            }
            if first_up.is_some_and(|at| at.elapsed() > Duration::from_secs(60)) {
                for (i, m) in members.iter_mut().enumerate().filter(|(i, _)| !up[*i]) {
                    eprintln!(
                        "Nacos cluster member {i} ({}) hangs at start: restarted",
                        m.addr
                    );
                    m.kill().await;
                    m.spawn();
                }
                first_up = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.members.iter().map(|m| m.addr.clone()).collect()
    }

    /// What the test asks member `i`.
    pub fn at(&self, i: usize) -> NacosAt {
        NacosAt::private(Server::Nacos2, &self.members[i].addr)
    }

    /// The members as member `ask` reports them (`/nacos/v1/core/cluster/nodes`), if it answers.
    async fn nodes(&self, ask: usize) -> Option<Vec<serde_json::Value>> {
        let url = format!("{}/nacos/v1/core/cluster/nodes", self.members[ask].addr);
        let token = self.at(ask).token().await.unwrap_or_default();
        let v: serde_json::Value = reqwest::Client::new()
            .get(url)
            .query(&[("accessToken", token)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"].as_array().cloned()
    }

    /// Waits until every member reports all three `UP`. Until then the members disagree on which
    /// of them is responsible for a service, and an HTTP registration forwarded between them is
    /// refused ("receive invalid redirect request from peer"), as after a partition heals.
    pub async fn wait_converged(&self) {
        wait_for(
            "every member to report all three UP",
            Duration::from_secs(120),
            || async {
                for ask in 0..self.members.len() {
                    let nodes = self.nodes(ask).await?;
                    let up = nodes.iter().filter(|m| m["state"] == "UP").count();
                    (up == self.members.len()).then_some(())?;
                }
                Some(())
            },
        )
        .await;
    }

    /// The member leading Raft group `group` (e.g. `naming_persistent_service_v2`), as member
    /// `ask` reports the cluster (each member's `raftMetaData` names the leader's JRaft address,
    /// port - 1000).
    pub async fn raft_leader(&self, ask: usize, group: &str) -> usize {
        wait_for(
            &format!("a leader of Raft group {group}"),
            Duration::from_secs(60),
            || async move {
                let leader = self.nodes(ask).await?.iter().find_map(|m| {
                    m["extendInfo"]["raftMetaData"]["metaDataMap"][group]["leader"]
                        .as_str()
                        .map(str::to_string)
                })?;
                let raft_port: u16 = leader.rsplit(':').next()?.parse().ok()?;
                self.members.iter().position(|m| m.port == raft_port + 1000)
            },
        )
        .await
    }
}

/// A first port of `n` members 10 apart, every member's four ports free.
fn cluster_port(n: u16) -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    loop {
        let base = nacos_port();
        let all = (0..n)
            .map(|i| base + 10 * i)
            .all(|p| free(p) && free(p - 1000) && free(p + 1000) && free(p + 1001));
        if all && base + 10 * n + 1001 < 32_768 {
            return base;
        }
    }
}

/// A server like one of the testbed's, of the test's own.
pub enum PrivateServer {
    Rnacos(PrivateNacos),
    Alibaba(PrivateAlibabaNacos),
}

impl PrivateServer {
    /// A server like `server` (rnacos, or Alibaba Nacos 2.5.1), with `properties` for Alibaba's.
    pub async fn start(server: Server, name: &str, properties: &[(&str, &str)]) -> Self {
        match server {
            Server::Rnacos => PrivateServer::Rnacos(PrivateNacos::start(name).await),
            Server::Nacos2 => {
                PrivateServer::Alibaba(PrivateAlibabaNacos::start(name, properties).await)
            }
            other => panic!("no private server like {other}"),
        }
    }

    pub fn addr(&self) -> String {
        match self {
            PrivateServer::Rnacos(n) => n.addr.clone(),
            PrivateServer::Alibaba(n) => n.addr.clone(),
        }
    }

    /// What the test asks the server, as it would ask the testbed's.
    pub fn at(&self) -> NacosAt {
        let kind = match self {
            PrivateServer::Rnacos(_) => Server::Rnacos,
            PrivateServer::Alibaba(_) => Server::Nacos2,
        };
        NacosAt::private(kind, &self.addr())
    }

    /// Stops it as a restart does (SIGTERM), and waits until it exited.
    pub async fn stop(&mut self) {
        match self {
            PrivateServer::Rnacos(n) => n.stop().await,
            PrivateServer::Alibaba(n) => n.stop().await,
        }
    }

    /// As a crash: SIGKILL for Alibaba Nacos (it commits a persistent instance's write to its Raft
    /// log before it answers); rnacos 0.8.8 keeps persistent instances across a clean stop but not
    /// always across SIGKILL, so it is stopped as a restart does.
    pub async fn kill(&mut self) {
        match self {
            PrivateServer::Rnacos(n) => n.stop().await,
            PrivateServer::Alibaba(n) => n.kill().await,
        }
    }

    /// Starts it again on the same ports and state; waits until it answers.
    pub async fn resume(&mut self) {
        match self {
            PrivateServer::Rnacos(n) => n.resume().await,
            PrivateServer::Alibaba(n) => n.resume().await,
        }
    }
}
