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

use anyhow::{bail, Result};

use crate::common::netns::{self, listed};

fn ip(args: &[&str]) -> Result<()> {
    netns::ip(args).map_err(anyhow::Error::msg)
}

/// Removes the namespaces, links and `lo` addresses of benchmark runs whose process is gone.
pub fn sweep_leftovers() {
    netns::sweep_leftovers("nrcb-", "nb", "nrcb");
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
