//! Baselines: how long Nacos itself takes to stop listing an instance whose owner is gone, on the same
//! server: (a) an HTTP client whose beats stop, (b) a gRPC client frozen with SIGSTOP, (c) a persistent
//! instance. Each is watched until it is no longer usable, or until the bound.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::nacos::{Nacos, Server};

#[derive(Debug, Clone)]
pub struct BaselineResult {
    pub name: &'static str,
    /// First listing that showed it unusable (healthy=false, disabled, or absent).
    pub unusable: Option<Duration>,
    /// First listing without it.
    pub gone: Option<Duration>,
}

struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_client(
    server: &str,
    namespace: &str,
    service: &str,
    addr: &str,
    mode: &str,
) -> Result<Client> {
    let python = std::env::var("NACOS_PYTHON").context("NACOS_PYTHON is not set (testbed env)")?;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/nacos_client.py");
    let server = server.trim_start_matches("http://");
    let mut child = Command::new(python)
        .arg(script)
        .args([
            "--server",
            server,
            "--service",
            service,
            "--instances",
            addr,
            "--mode",
            mode,
        ])
        .args(["--beat-seconds", "5"])
        .args(["--namespace", namespace])
        // Credentials come from NACOS_USERNAME/NACOS_PASSWORD (the testbed's env).
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start nacos_client.py")?;
    super::cluster::record_pid("nacos-client-bench", child.id());
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    if line.trim() != "READY" {
        let _ = child.kill();
        bail!("nacos_client.py --mode {mode} did not register ({line:?})");
    }
    Ok(Client(child))
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// Polls `service` every 250 ms from `t0` until `addr` is gone or `bound` passed.
async fn watch(
    nacos: &Nacos,
    name: &'static str,
    service: &str,
    addr: &str,
    t0: Instant,
    bound: Duration,
) -> BaselineResult {
    let mut res = BaselineResult {
        name,
        unusable: None,
        gone: None,
    };
    while t0.elapsed() < bound {
        if let Ok(listed) = nacos.list(service).await {
            let at = t0.elapsed();
            match listed.iter().find(|l| l.addr == addr) {
                None => {
                    res.unusable.get_or_insert(at);
                    res.gone = Some(at);
                    return res;
                }
                Some(l) if !l.healthy || !l.enabled => {
                    res.unusable.get_or_insert(at);
                }
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    res
}

/// Runs the three baselines at once; returns after at most `bound` (plus start-up).
pub async fn run(nacos: Nacos, bound: Duration) -> Result<Vec<BaselineResult>> {
    // Services outside the binding's pattern, addresses outside every scope: the operator never
    // sees these.
    let (http_svc, grpc_svc, pers_svc) = ("baseline-http", "baseline-grpc", "baseline-persistent");
    let (http_addr, grpc_addr, pers_addr) = (
        "192.168.200.1:8080",
        "192.168.200.2:8080",
        "192.168.200.3:8080",
    );
    let server = nacos.base.clone();
    // Alibaba Nacos puts a gRPC client that names no namespace into namespace "", which HTTP calls
    // (namespace `public`) do not see; rnacos keeps the client's default, as in earlier runs.
    let namespace = match nacos.server {
        Server::Nacos2 => "public",
        Server::Rnacos => "",
    };
    let http = {
        let s = server.clone();
        tokio::task::spawn_blocking(move || {
            start_client(&s, namespace, http_svc, http_addr, "http")
        })
        .await??
    };
    let grpc = {
        let s = server.clone();
        tokio::task::spawn_blocking(move || {
            start_client(&s, namespace, grpc_svc, grpc_addr, "grpc")
        })
        .await??
    };
    nacos
        .register(pers_svc, "192.168.200.3", 8080, false)
        .await?;
    // Let the HTTP client beat a few times first.
    tokio::time::sleep(Duration::from_secs(7)).await;
    signal(http.0.id(), "-STOP");
    let t_http = Instant::now();
    signal(grpc.0.id(), "-STOP");
    let t_grpc = Instant::now();
    let t_pers = Instant::now();
    let (a, b, c) = tokio::join!(
        watch(
            &nacos,
            "(a) HTTP client, beats stopped (SIGSTOP)",
            http_svc,
            http_addr,
            t_http,
            bound
        ),
        watch(
            &nacos,
            "(b) gRPC client frozen (SIGSTOP)",
            grpc_svc,
            grpc_addr,
            t_grpc,
            bound
        ),
        watch(
            &nacos,
            "(c) persistent instance, owner gone",
            pers_svc,
            pers_addr,
            t_pers,
            bound
        ),
    );
    signal(http.0.id(), "-KILL");
    signal(grpc.0.id(), "-KILL");
    drop((http, grpc));
    Ok(vec![a, b, c])
}
