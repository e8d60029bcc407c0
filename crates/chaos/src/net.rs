//! Network namespaces for the nodes: one namespace per node, a veth pair
//! into one bridge in the host namespace (where the clients run), and
//! faults as blackhole routes inside the namespaces.
//!
//! A blackhole route for B's address in A's namespace drops every packet
//! A sends to B, so "A cannot reach B" is a route in A, and a two-way cut
//! is a route on each side. Clients in the host namespace are never cut:
//! an isolated leader still hears its clients, which is the case that
//! matters (it must not acknowledge what it cannot replicate).
//!
//! Everything is created by [`Network::create`] and removed by
//! [`Network::remove`] (also on drop); names carry a run tag so that
//! leftovers of a crashed run are found and removed first.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The namespaces, veths and bridge of one run.
#[derive(Debug)]
pub(crate) struct Network {
    tag: String,
    subnet: u8,
    nodes: usize,
    /// Blackholes in place: (from, to) node indexes.
    cuts: BTreeSet<(usize, usize)>,
    live: bool,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Network {
    /// Creates the bridge and one namespace per node. `subnet` picks
    /// 10.213.`subnet`.0/24, so parallel runs need different ones.
    pub(crate) fn create(subnet: u8, nodes: usize) -> Result<Network> {
        let tag = format!("fjc{subnet}");
        let net = Network { tag, subnet, nodes, cuts: BTreeSet::new(), live: true };
        net.remove_leftovers();
        let br = net.bridge();
        let host = format!("{}/24", net.host_addr());
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", &host, "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 0..nodes {
            let (ns, veth) = (net.namespace(i), net.veth(i));
            let addr = format!("{}/24", net.node_addr(i));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["link", "set", &veth, "master", &br])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{}", self.tag, i)
    }

    /// Node `i`'s namespace.
    pub(crate) fn namespace(&self, i: usize) -> String {
        format!("{}-n{}", self.tag, i)
    }

    /// Node `i`'s address.
    pub(crate) fn node_addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, i as u8 + 1)
    }

    /// The host side (clients) of the bridge.
    pub(crate) fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 254)
    }

    /// Drops every packet from node `from` to node `to`.
    pub(crate) fn cut(&mut self, from: usize, to: usize) -> Result<()> {
        if from == to || from >= self.nodes || to >= self.nodes || !self.cuts.insert((from, to)) {
            return Ok(());
        }
        let dst = format!("{}/32", self.node_addr(to));
        ip(&["-n", &self.namespace(from), "route", "add", "blackhole", &dst])
    }

    /// Removes every cut.
    pub(crate) fn heal(&mut self) -> Result<()> {
        let cuts = std::mem::take(&mut self.cuts);
        let mut first_err = None;
        for (from, to) in cuts {
            let dst = format!("{}/32", self.node_addr(to));
            if let Err(e) = ip(&["-n", &self.namespace(from), "route", "del", "blackhole", &dst]) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The cuts in place, as 1-based node ids, for the history.
    pub(crate) fn describe_cuts(&self) -> String {
        let parts: Vec<String> = self.cuts.iter().map(|(a, b)| format!("{}->{}", a + 1, b + 1)).collect();
        parts.join(" ")
    }

    fn remove_leftovers(&self) {
        for i in 0..16 {
            let _ = ip(&["link", "del", &self.veth(i)]);
            let _ = ip(&["netns", "del", &self.namespace(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }

    /// Removes the veths, the namespaces and the bridge. The veths
    /// explicitly: a namespace outlives its name while sockets of a killed
    /// node still close in it, and its veth with it.
    pub(crate) fn remove(&mut self) {
        if std::mem::take(&mut self.live) {
            for i in 0..self.nodes {
                let _ = ip(&["link", "del", &self.veth(i)]);
                let _ = ip(&["netns", "del", &self.namespace(i)]);
            }
            let _ = ip(&["link", "del", &self.bridge()]);
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}
