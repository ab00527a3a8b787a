//! A network namespace of the test's own, for a Nacos member a test cuts off from the others. Two
//! veth links join it to this machine:
//! - the cluster link: this machine's cluster address `10.201.N.1` (on `lo`, so that what runs
//!   here keeps it while the link is down) and the namespace's `10.201.N.2`;
//! - the access link: `10.202.N.1` here, `10.202.N.2` inside, for the operator and the test.
//!
//! [`Netns::cut`] takes the cluster link down inside the namespace: every packet between the two
//! cluster addresses is lost from then on, established connections included, as across a
//! partition; the access link stays up. Traffic only ever flows between the namespace and this
//! machine. Removed on drop (links, `lo` address, namespace); what a killed test left behind is
//! removed by the next one.

use std::process::Command;

pub struct Netns {
    pub name: String,
    /// This machine's address on the cluster link.
    pub host_ip: String,
    /// The namespace's address on the cluster link.
    pub inner_ip: String,
    /// The namespace's address on the access link.
    pub access_ip: String,
    /// The cluster link's end inside the namespace.
    inner_link: String,
    /// The links' ends on this machine.
    host_links: [String; 2],
}

/// Runs `ip args`; the error names the command and what it printed.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("{e} (a network namespace needs CAP_NET_ADMIN)"));
}

/// What `ip args` prints (empty on failure).
pub fn listed(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether `name` is `prefix` and the id of a process that is gone (`nrc1234a` after `nrc`: 1234).
/// Digits only: one user's prefix may begin another's (`lo:nrc` and `lo:nrcb1234`).
fn left_by_gone_run(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let pid = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
    !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what runs that are gone (SIGKILLed) left behind: namespaces named `<netns><pid>…`, links
/// `<link><pid>…` (a link whose namespace's end is gone may outlive the namespace) and `lo`
/// addresses labelled `lo:<lo><pid>`.
pub fn sweep_leftovers(netns: &str, link: &str, lo: &str) {
    for line in listed(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if left_by_gone_run(name, netns) {
            let _ = ip(&["netns", "del", name]);
        }
    }
    // `8: nrc1234a@if7: <…>`
    for line in listed(&["-o", "link"]).lines() {
        let Some(name) = line.split_whitespace().nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if left_by_gone_run(name, link) {
            let _ = ip(&["link", "del", name]);
        }
    }
    // `1: lo    inet 10.201.7.1/32 scope global lo:nrc1234`
    let label = format!("lo:{lo}");
    for line in listed(&["-o", "-4", "addr", "show", "dev", "lo"]).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let addr = words
            .iter()
            .position(|w| *w == "inet")
            .and_then(|i| words.get(i + 1));
        let ours = words.iter().any(|w| left_by_gone_run(w, &label));
        if let (Some(addr), true) = (addr, ours) {
            let _ = ip(&["addr", "del", addr, "dev", "lo"]);
        }
    }
}

impl Netns {
    pub fn create() -> Self {
        sweep_leftovers("nrc-", "nrc", "nrc");
        let pid = std::process::id();
        let used = listed(&["-o", "addr"]);
        let n = (0..250u32)
            .map(|i| (pid + i) % 250)
            .find(|n| {
                !used.contains(&format!("10.201.{n}.")) && !used.contains(&format!("10.202.{n}."))
            })
            .expect("a free 10.201.N.0/24 and 10.202.N.0/24");
        let ns = Self {
            name: format!("nrc-{pid}"),
            host_ip: format!("10.201.{n}.1"),
            inner_ip: format!("10.201.{n}.2"),
            access_ip: format!("10.202.{n}.2"),
            inner_link: format!("nrc{pid}x"),
            host_links: [format!("nrc{pid}a"), format!("nrc{pid}b")],
        };
        let [cluster_host, access_host] = ns.host_links.clone();
        let access_inner = format!("nrc{pid}y");
        must(&["netns", "add", &ns.name]);
        must(&[
            "addr",
            "add",
            &format!("{}/32", ns.host_ip),
            "dev",
            "lo",
            // By this label a leftover of a killed run is found (see `sweep_leftovers`).
            "label",
            &format!("lo:nrc{pid}"),
        ]);
        for (here, inside) in [
            (&cluster_host, &ns.inner_link),
            (&access_host, &access_inner),
        ] {
            must(&["link", "add", here, "type", "veth", "peer", "name", inside]);
            must(&["link", "set", inside, "netns", &ns.name]);
            must(&["link", "set", here, "up"]);
        }
        must(&[
            "route",
            "add",
            &format!("{}/32", ns.inner_ip),
            "dev",
            &cluster_host,
            "src",
            &ns.host_ip,
        ]);
        must(&[
            "addr",
            "add",
            &format!("10.202.{n}.1/24"),
            "dev",
            &access_host,
        ]);
        ns.inside(&["link", "set", "lo", "up"]);
        ns.inside(&[
            "addr",
            "add",
            &format!("{}/32", ns.inner_ip),
            "dev",
            &ns.inner_link,
        ]);
        ns.inside(&[
            "addr",
            "add",
            &format!("{}/24", ns.access_ip),
            "dev",
            &access_inner,
        ]);
        ns.inside(&["link", "set", &access_inner, "up"]);
        ns.connect();
        ns
    }

    fn inside(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        must(&all);
    }

    /// The cluster link up, and the namespace's route to this machine's cluster address (taking
    /// the link down removed it).
    fn connect(&self) {
        self.inside(&["link", "set", &self.inner_link, "up"]);
        self.inside(&[
            "route",
            "replace",
            &format!("{}/32", self.host_ip),
            "dev",
            &self.inner_link,
            "src",
            &self.inner_ip,
        ]);
    }

    /// Partitions the namespace from this machine's cluster address.
    pub fn cut(&self) {
        self.inside(&["link", "set", &self.inner_link, "down"]);
    }

    /// Ends [`Self::cut`].
    pub fn heal(&self) {
        self.connect();
    }
}

impl Drop for Netns {
    /// Deleting one end of a veth pair deletes the pair.
    fn drop(&mut self) {
        for link in &self.host_links {
            let _ = ip(&["link", "del", link]);
        }
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["addr", "del", &format!("{}/32", self.host_ip), "dev", "lo"]);
    }
}
