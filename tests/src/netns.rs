//! A small network of Linux network namespaces for the partition test (`cluster_partition.rs`), built with `ip`
//! (iproute2) and removed when dropped. Needs root (CAP_NET_ADMIN), as CI has.
//!
//! Layout: a bridge in the test's own namespace (10.217.0.1/24) joins one namespace per member on the cluster
//! network (etcd at 10.217.0.2, node `i` at 10.217.0.(10+i)). Each node also has a point-to-point client link to
//! the test's namespace (10.218.0.(4i+1) here, 10.218.0.(4i+2) there), so that cutting a node off the cluster
//! network (`cut`) leaves the test able to talk to it: the partition isolates it from etcd and the other nodes only.

use std::process::Command;

pub struct Net {
    prefix: String,
    nodes: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
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

impl Net {
    /// Builds the network for etcd and `nodes` nodes; Err (with why) where namespaces cannot be made (not root).
    pub fn create(nodes: usize) -> Result<Net, String> {
        let prefix = format!("wrn{}", std::process::id() % 10_000);
        // What an earlier run that was killed left behind would clash on the addresses.
        Self::remove_leftovers();
        let net = Net { prefix, nodes };
        let p = net.prefix.clone();
        let br = format!("{p}br");
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", "10.217.0.1/24", "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        net.member(&net.etcd_ns(), "10.217.0.2", "e")?;
        for i in 0..nodes {
            let ns = net.node_ns(i);
            net.member(&ns, &format!("10.217.0.{}", 10 + i), &i.to_string())?;
            let host = format!("{p}k{i}");
            ip(&[
                "link", "add", &host, "type", "veth", "peer", "name", "eth1", "netns", &ns,
            ])?;
            ip(&["addr", "add", &format!("10.218.0.{}/30", 4 * i + 1), "dev", &host])?;
            ip(&["link", "set", &host, "up"])?;
            ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("10.218.0.{}/30", 4 * i + 2),
                "dev",
                "eth1",
            ])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "eth1", "up"])?;
        }
        Ok(net)
    }

    /// A namespace on the cluster network at `addr`, its bridge port named `<prefix>c<tag>`.
    fn member(&self, ns: &str, addr: &str, tag: &str) -> Result<(), String> {
        ip(&["netns", "add", ns])?;
        ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"])?;
        let host = format!("{}c{tag}", self.prefix);
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["link", "set", &host, "master", &format!("{}br", self.prefix)])?;
        ip(&["link", "set", &host, "up"])?;
        ip(&[
            "netns",
            "exec",
            ns,
            "ip",
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["netns", "exec", ns, "ip", "link", "set", "eth0", "up"])
    }

    pub fn etcd_ns(&self) -> String {
        format!("{}e", self.prefix)
    }

    pub fn node_ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Node `i`'s (namespace, client address, cluster address).
    pub fn node(&self, i: usize) -> (String, String, String) {
        (
            self.node_ns(i),
            format!("10.218.0.{}", 4 * i + 2),
            format!("10.217.0.{}", 10 + i),
        )
    }

    /// Cuts node `i` off the cluster network (etcd and the other nodes); its client link stays up.
    pub fn cut(&self, i: usize) -> Result<(), String> {
        ip(&["link", "set", &format!("{}c{i}", self.prefix), "down"])
    }

    /// Undoes `cut`.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        ip(&["link", "set", &format!("{}c{i}", self.prefix), "up"])
    }

    fn remove_leftovers() {
        if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) {
                    if name.starts_with("wrn") {
                        let _ = ip(&["link", "del", name]);
                    }
                }
            }
        }
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(name) = line.split_whitespace().next().filter(|n| n.starts_with("wrn")) {
                    let _ = ip(&["netns", "del", name]);
                }
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and with them the peers in ours.
        let _ = ip(&["netns", "del", &self.etcd_ns()]);
        for i in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.node_ns(i)]);
        }
        let _ = ip(&["link", "del", &format!("{}br", self.prefix)]);
    }
}
