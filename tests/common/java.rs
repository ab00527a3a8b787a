//! Applications on the official Nacos Java SDK (tests/clients/java/NacosApp.java, built by the
//! testbed): providers that register instances and stay connected (2.5.1 over gRPC) or keep
//! beating (1.4.8 over HTTP), and consumers that subscribe and select as applications do.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::servers::Server;
use super::{testbed_env, TestProcess};

/// Which SDK generation an application uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sdk {
    /// nacos-client 2.5.1: gRPC, the connection owns ephemeral instances.
    V2,
    /// nacos-client 1.4.8: HTTP registration and a beat every 5 s, re-registering a deleted instance.
    V1,
}

/// Options of a provider.
#[derive(Clone, Debug, Default)]
pub struct Provider {
    pub group: Option<String>,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub persistent: bool,
    /// Metadata of this many characters in all (keys and values), as Nacos counts them.
    pub metadata_chars: usize,
    /// `host:port` of the server to connect to instead of the testbed's (one member of a cluster).
    pub server_addr: Option<String>,
}

/// A running Java application. Killed (SIGKILL, as a node losing power would) when dropped.
pub struct JavaApp {
    proc: TestProcess,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Lines read while looking for another kind (pushes that came during a `select`).
    pending: std::collections::VecDeque<String>,
}

fn command(sdk: Sdk, server: Server, mode: &str, service: &str) -> Command {
    command_to(sdk, server, &server.host_port(), mode, service)
}

/// As `command`, connecting to `host_port` with `server`'s credentials.
fn command_to(sdk: Sdk, server: Server, host_port: &str, mode: &str, service: &str) -> Command {
    let home = std::env::temp_dir().join(format!(
        "nacos-app-{}-{}",
        std::process::id(),
        super::unique("h")
    ));
    std::fs::create_dir_all(&home).expect("a home for the Java app");
    let mut cmd = app_command(sdk, None, &home, mode);
    cmd.args(["--server", host_port, "--service", service]);
    if let Some((user, pass)) = server.credentials() {
        cmd.args(["--username", &user, "--password", &pass]);
    }
    cmd
}

/// NacosApp `mode` on `sdk`, inside network namespace `netns` when given. `home` is the process's
/// own: the SDK writes logs and a failover cache under user.home.
pub fn app_command(sdk: Sdk, netns: Option<&str>, home: &std::path::Path, mode: &str) -> Command {
    let dir = testbed_env(match sdk {
        Sdk::V2 => "NACOS_JAVA_APP_V2",
        Sdk::V1 => "NACOS_JAVA_APP_V1",
    });
    let java = testbed_env("NACOS_JAVA");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, &java]);
            c
        }
        None => Command::new(&java),
    };
    cmd.arg(format!("-Duser.home={}", home.display()))
        .args(["-Xmx96m", "-XX:TieredStopAtLevel=1", "-Xshare:auto"])
        .args([
            "-cp",
            &format!("{dir}/lib/*:{dir}/classes"),
            "NacosApp",
            mode,
        ])
        .env("HOME", home);
    cmd
}

impl JavaApp {
    /// Starts a provider that registers `addrs` (`ip:port`), one connection each (one pod's
    /// process each); returns once all are listed.
    pub fn provider(
        sdk: Sdk,
        server: Server,
        service: &str,
        addrs: &[String],
        o: &Provider,
    ) -> Self {
        let host_port = o.server_addr.clone().unwrap_or_else(|| server.host_port());
        let mut cmd = command_to(sdk, server, &host_port, "register", service);
        cmd.args(["--instances", &addrs.join(",")]);
        for (flag, value) in [
            ("--group", &o.group),
            ("--cluster", &o.cluster),
            ("--namespace", &o.namespace),
        ] {
            if let Some(v) = value {
                cmd.args([flag, v]);
            }
        }
        if o.persistent {
            cmd.arg("--persistent");
        }
        if o.metadata_chars > 0 {
            cmd.args(["--metadata-chars", &o.metadata_chars.to_string()]);
        }
        let mut app = Self::spawn(cmd, "nacos-java-provider");
        app.expect_line(
            "READY",
            Duration::from_secs(60),
            &format!("{sdk:?} provider of {service} on {server}"),
        );
        app
    }

    /// Starts a consumer subscribed to `service`; returns once subscribed.
    pub fn consumer(server: Server, service: &str, push_empty_protection: bool) -> Self {
        let mut cmd = command(Sdk::V2, server, "consume", service);
        if push_empty_protection {
            cmd.arg("--push-empty-protection");
        }
        let mut app = Self::spawn(cmd, "nacos-java-consumer");
        app.expect_line(
            "READY",
            Duration::from_secs(60),
            &format!("consumer of {service} on {server}"),
        );
        app
    }

    fn spawn(mut cmd: Command, name: &str) -> Self {
        // The SDK's own chatter (gRPC stream notices) goes to a log, not into the test's output.
        let log = std::env::var("TESTBED_STATE")
            .map(|s| std::path::PathBuf::from(s).join("logs"))
            .unwrap_or_else(|_| std::env::temp_dir())
            .join(format!("{name}-{}.log", super::unique("app")));
        let stderr = std::fs::File::create(&log)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::inherit());
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut proc = TestProcess::spawn_as_set(cmd, name);
        let stdin = proc.child_mut().stdin.take().expect("piped stdin");
        let stdout = proc.child_mut().stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            proc,
            stdin,
            lines,
            pending: Default::default(),
        }
    }

    /// Waits for the line `want`; lines before it (a consumer's first push may come before its
    /// READY) are kept for later.
    fn expect_line(&mut self, want: &str, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim() == want => return,
                Ok(other) => self.pending.push_back(other),
                Err(_) => break,
            }
        }
        panic!(
            "{what}: no {want} within {timeout:?} (read before: {:?}; its stderr is in \
             $TESTBED_STATE/logs/nacos-java-*.log)",
            self.pending
        );
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the Java app");
        self.stdin.flush().expect("flush to the Java app");
    }

    /// Closes the connection of the `i`-th instance (its process "exits" cleanly).
    pub fn close(&mut self, i: usize) {
        self.send(&format!("close {i}"));
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the Java app to close a connection");
        assert_eq!(line.trim(), format!("CLOSED {i}"));
    }

    /// What `selectInstances(healthy=true)` gives the consumer now: sorted `ip:port`.
    pub fn select(&mut self) -> Vec<String> {
        self.send("select");
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            match line.strip_prefix("SELECT") {
                Some(list) => return split(list),
                None => self.pending.push_back(line),
            }
        }
        panic!("the consumer did not answer `select`");
    }

    /// Waits for a push whose list satisfies `check` (pushes already received count too);
    /// returns it, or `None` after `timeout`.
    pub fn wait_push(
        &mut self,
        timeout: Duration,
        check: impl Fn(&[String]) -> bool,
    ) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = match self.pending.pop_front() {
                Some(line) => line,
                None => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    self.lines.recv_timeout(left).ok()?
                }
            };
            if let Some(list) = line.strip_prefix("PUSH") {
                let list = split(list);
                if check(&list) {
                    return Some(list);
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
