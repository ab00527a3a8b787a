//! nacos-reconciler: the command line. `run` the controller, print a one-shot `plan`, print the `crd`.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use nacos_reconciler::cluster::{ClusterViewConfig, WatchNamespaces};
use nacos_reconciler::controller::{self, RunOptions};
use nacos_reconciler::leader::{self, ActingGate, LeaderConfig};
use nacos_reconciler::metrics::Metrics;
use nacos_reconciler::server::{self, Health};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "nacos-reconciler",
    version,
    about = "Takes Nacos instances offline when their Kubernetes pod or node is gone"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print, once, the instances of a NacosBinding, their verdicts and the actions that would be
    /// taken. Changes nothing.
    Plan(PlanArgs),
    /// Print the NacosBinding CRD as YAML.
    Crd,
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct PlanArgs {
    /// Namespace of the NacosBinding.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Name of the NacosBinding.
    name: String,
    /// Kubeconfig file; default: in-cluster, then $KUBECONFIG, then ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig file; default: in-cluster, then $KUBECONFIG, then ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Namespaces to watch (pods and NacosBindings), comma-separated; empty = all namespaces.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. info or nacos_reconciler=debug.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Bindings reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// Name of this replica in Events and leases (the pod name in a cluster).
    #[arg(long, env = "POD_NAME", default_value = "nacos-reconciler")]
    instance_name: String,
    /// Elect a leader on a Lease: only the leader writes to Nacos.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "nacos-reconciler")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long a leader's Lease lasts without renewal; a standby takes over after it.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// How long a new leader watches before it writes to Nacos.
    #[arg(long, env = "SETTLE_SECONDS", default_value_t = 10)]
    settle_seconds: u64,
}

fn init_logs(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: escape codes in a container's log file break log pipelines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn kube_config(kubeconfig: Option<&std::path::Path>) -> anyhow_like::Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    })
}

/// How long a request to the API server (not a watch) may wait for its answer. Without a limit a
/// half-open connection holds a pass, and what it holds, until the kernel gives the connection up.
const API_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A client for requests, whose answers must come within [`API_REQUEST_TIMEOUT`], and one for
/// watches, which may stay quiet for minutes (kube's watcher has an idle timeout of its own).
async fn kube_clients(
    kubeconfig: Option<&std::path::Path>,
) -> anyhow_like::Result<(kube::Client, kube::Client)> {
    let config = kube_config(kubeconfig).await?;
    let watches = kube::Client::try_from(config.clone())?;
    let requests = with_answer_timeout(config, API_REQUEST_TIMEOUT);
    Ok((kube::Client::try_from(requests)?, watches))
}

/// `config` whose requests fail when no answer comes within `timeout` (the clock restarts with
/// each request written on the connection).
fn with_answer_timeout(mut config: kube::Config, timeout: std::time::Duration) -> kube::Config {
    config.read_timeout = Some(timeout);
    config.reset_reader_on_write = true;
    config
}

/// Start-up errors: printed once, exit code 1.
mod anyhow_like {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

async fn run(args: RunArgs) -> anyhow_like::Result<()> {
    init_logs(args.log_format, &args.log_level);
    let (client, watches) = kube_clients(args.kubeconfig.as_deref()).await?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let server = tokio::spawn(server::serve(
        args.metrics_addr,
        metrics.clone(),
        health.clone(),
    ));
    let namespaces = args
        .namespaces
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    let cluster = ClusterViewConfig {
        namespaces: if namespaces.is_empty() {
            WatchNamespaces::All
        } else {
            WatchNamespaces::Only(namespaces.clone())
        },
        ..ClusterViewConfig::default()
    };
    let acting_allowed = Arc::new(if args.leader_elect {
        ActingGate::standby()
    } else {
        ActingGate::always()
    });
    if args.leader_elect {
        tokio::spawn(leader::run(
            client.clone(),
            LeaderConfig {
                lease_name: args.lease_name.clone(),
                namespace: args.lease_namespace.clone(),
                identity: args.instance_name.clone(),
                lease_duration: std::time::Duration::from_secs(args.lease_duration_seconds.max(2)),
                settle: std::time::Duration::from_secs(args.settle_seconds),
            },
            acting_allowed.clone(),
            metrics.leader.clone(),
        ));
    } else {
        metrics.leader.set(1);
    }
    tokio::select! {
        _ = controller::run(
            client,
            watches,
            RunOptions {
                cluster,
                binding_namespaces: namespaces,
                concurrency: args.concurrency.max(1),
                instance_name: args.instance_name,
            },
            metrics,
            health,
            acting_allowed,
        ) => Ok(()),
        r = server => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("metrics server on {}: {e}", args.metrics_addr).into()),
            Err(e) => Err(e.into()),
        },
    }
}

async fn plan(args: PlanArgs) -> anyhow_like::Result<()> {
    init_logs(LogFormat::Text, "warn");
    let (client, watches) = kube_clients(args.kubeconfig.as_deref()).await?;
    let table = controller::plan_once(client, watches, &args.namespace, &args.name).await?;
    print!("{table}");
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => {
            print!("{}", nacos_reconciler::crd::crd_yaml());
            Ok(())
        }
        Command::Version => {
            println!("nacos-reconciler {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run(args) => run(args).await,
        Command::Plan(args) => plan(args).await,
    };
    if let Err(e) = result {
        eprintln!("nacos-reconciler: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    /// An API server that takes the connection and the request but never answers (a half-open
    /// connection, a frozen apiserver): the request fails at the timeout instead of hanging.
    #[tokio::test]
    async fn a_request_the_api_server_never_answers_fails_at_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn); // read nothing, answer nothing, close nothing
            }
        });
        let config = kube::Config::new(url.parse().unwrap());
        let client =
            kube::Client::try_from(with_answer_timeout(config, Duration::from_millis(500)))
                .unwrap();
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            kube::Api::<Pod>::namespaced(client, "shop").get("orders-1"),
        )
        .await
        .expect("the request hung past the client's timeout");
        assert!(answer.is_err(), "{answer:?}");
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        held.abort();
    }
}
