//! Network namespaces of the benchmark's own, one per client that "loses its network" (case e).
//!
//! This machine keeps one peer address `10.203.P.1/32` on `lo` (labelled `lo:nrcb<pid>`), which the
//! Nacos servers are reached at from inside the namespaces. Each namespace `nrcb-<pid>-<k>` gets a
//! veth pair: inside, the pod's IP (the client registers with the address it has, as in a pod);
//! here, a /32 route to that IP through the pair. [`ClientNet::cut`] takes the inner end down:
//! from then on every packet between the client and the server is lost, established connections
//! included, and nothing tells either end. Traffic flows only between a namespace and this machine.
//!
//! Everything is removed on drop; what a killed run left behind (its pid gone) is removed by the
//! next run ([`sweep_leftovers`]) and by `bench/cases.sh` after the harness exits.

use std::process::Command;

use anyhow::{bail, Result};

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn listed(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn gone(pid: &str) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the namespaces, links and `lo` addresses of benchmark runs whose process is gone.
pub fn sweep_leftovers() {
    for line in listed(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = name.strip_prefix("nrcb-").and_then(|r| r.split('-').next()) {
            if gone(pid) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    // `8: nb1234h3@if7: <…>`
    for line in listed(&["-o", "link"]).lines() {
        let Some(name) = line.split_whitespace().nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if let Some(pid) = name
            .strip_prefix("nb")
            .and_then(|r| r.split(['h', 'i']).next())
        {
            if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && gone(pid) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
    for line in listed(&["-o", "-4", "addr", "show", "dev", "lo"]).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(label)) = (
            words
                .iter()
                .position(|w| *w == "inet")
                .map(|i| words[i + 1]),
            words.iter().find(|w| w.starts_with("lo:nrcb")),
        ) else {
            continue;
        };
        if gone(&label["lo:nrcb".len()..]) {
            let _ = ip(&["addr", "del", addr, "dev", "lo"]);
        }
    }
}

/// This machine's peer address of every namespace, on `lo` for the run's duration.
pub struct Peer {
    pub ip: String,
}

impl Peer {
    pub fn create() -> Result<Self> {
        sweep_leftovers();
        let pid = std::process::id();
        let used = listed(&["-o", "addr"]);
        let n = (0..250u32)
            .map(|i| (pid + i) % 250)
            .find(|n| !used.contains(&format!("10.203.{n}.")))
            .ok_or_else(|| anyhow::anyhow!("no free 10.203.N.1"))?;
        let peer = Self {
            ip: format!("10.203.{n}.1"),
        };
        ip(&[
            "addr",
            "add",
            &format!("{}/32", peer.ip),
            "dev",
            "lo",
            "label",
            &format!("lo:nrcb{pid}"),
        ])?;
        Ok(peer)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = ip(&["addr", "del", &format!("{}/32", self.ip), "dev", "lo"]);
    }
}

/// One client's namespace, holding a pod's IP.
pub struct ClientNet {
    pub name: String,
    inner: String,
    host: String,
}

impl ClientNet {
    /// Namespace number `k` (unique within the run) with `pod_ip` inside, reaching `peer`.
    pub fn create(k: usize, pod_ip: &str, peer: &Peer) -> Result<Self> {
        let pid = std::process::id();
        let routes = listed(&["-4", "route", "show", &format!("{pod_ip}/32")]);
        if !routes.trim().is_empty() {
            bail!("this machine already routes {pod_ip}: {}", routes.trim());
        }
        let net = Self {
            name: format!("nrcb-{pid}-{k}"),
            inner: format!("nb{pid}i{k}"),
            host: format!("nb{pid}h{k}"),
        };
        ip(&["netns", "add", &net.name])?;
        // From here on, Drop removes what was made even if a later step fails.
        ip(&[
            "link", "add", &net.host, "type", "veth", "peer", "name", &net.inner,
        ])?;
        ip(&["link", "set", &net.inner, "netns", &net.name])?;
        ip(&["link", "set", &net.host, "up"])?;
        ip(&[
            "route",
            "add",
            &format!("{pod_ip}/32"),
            "dev",
            &net.host,
            "src",
            &peer.ip,
        ])?;
        net.inside(&["link", "set", "lo", "up"])?;
        net.inside(&["addr", "add", &format!("{pod_ip}/32"), "dev", &net.inner])?;
        net.inside(&["link", "set", &net.inner, "up"])?;
        net.inside(&[
            "route",
            "add",
            &format!("{}/32", peer.ip),
            "dev",
            &net.inner,
            "src",
            pod_ip,
        ])?;
        Ok(net)
    }

    fn inside(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The client loses its network: the link goes down inside the namespace.
    pub fn cut(&self) -> Result<()> {
        self.inside(&["link", "set", &self.inner, "down"])
    }
}

impl Drop for ClientNet {
    /// Deleting one end of a veth pair deletes the pair (and its route).
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
