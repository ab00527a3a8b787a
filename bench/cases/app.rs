//! Providers on the official Nacos Java SDK (tests/clients/java/NacosApp.java, built by the
//! testbed), optionally inside a network namespace: 2.5.1 over gRPC (the connection owns its
//! ephemeral instances) or 1.4.8 over HTTP (a beat every 5 s, re-registering a deleted instance).
//! The command line is tests/common/java.rs's; the process is driven here, where a failure is an
//! error to report rather than a test's panic.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::common::java::{app_command, Sdk};
use crate::common::TestProcess;
use crate::nacos::Nacos;

pub struct App {
    proc: Option<TestProcess>,
    /// The process's own home (SDK logs, failover cache), removed with it.
    home: std::path::PathBuf,
    stdin: Option<ChildStdin>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl App {
    /// Starts a provider registering `addrs` (`ip:port`, one NamingService and connection each)
    /// in `service`; inside network namespace `netns` when given (reaching the server at its peer
    /// address). Does not wait: see [`Self::ready`].
    pub fn provider(
        sdk: Sdk,
        nacos: &Nacos,
        netns: Option<&str>,
        service: &str,
        addrs: &[String],
        logs: &std::path::Path,
    ) -> Result<Self> {
        let tag = format!(
            "{}-{:x}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        let home = std::env::temp_dir().join(format!("nacos-cases-app-{tag}"));
        std::fs::create_dir_all(&home)?;
        let server = if netns.is_some() {
            &nacos.sdk_peer
        } else {
            &nacos.sdk_local
        };
        let mut cmd = app_command(sdk, netns, &home, "register");
        cmd.args(["--server", server, "--service", service])
            .args(["--instances", &addrs.join(",")]);
        if let Some((u, p)) = &nacos.credentials {
            cmd.args(["--username", u, "--password", p]);
        }
        let stderr = std::fs::File::create(logs.join(format!("cases-app-{tag}.log")))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut proc = TestProcess::spawn_as_set(cmd, "nacos-cases-app");
        let stdin = proc.child_mut().stdin.take();
        let stdout = proc.child_mut().stdout.take().context("piped stdout")?;
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            proc: Some(proc),
            home,
            stdin,
            lines,
        })
    }

    /// Waits for READY: every instance registered and listed.
    pub async fn ready(&mut self, timeout: Duration) -> Result<()> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(until, self.lines.recv()).await {
                Ok(Some(l)) if l.trim() == "READY" => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => bail!("the Java provider exited before READY (see its log)"),
                Err(_) => bail!("the Java provider was not READY within {timeout:?}"),
            }
        }
    }

    /// Closes the connection of instance `i` (as the process exiting would).
    pub fn close(&mut self, i: usize) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin")?;
        writeln!(stdin, "close {i}")?;
        stdin.flush()?;
        Ok(())
    }

    /// SIGKILL (the kernel closes its connections).
    pub fn kill(&mut self) {
        self.proc = None;
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
