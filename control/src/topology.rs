//! Lab topologies: a multicast tree of nodes and links, from a TOML file, the seed's Figure 5,
//! a chain, or a random tree; and each node's configuration derived from it (roles from the
//! tree's shape, PIM-SSM routes or BIER BIFTs from its branches), written as TOML and validated
//! like any file a user writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, ensure, Context, Result};
use mtnode_dataplane::aqm::Rng;
use mtnode_dataplane::pipeline::NodeConfig;
use serde::Deserialize;

use crate::config;
use crate::sim::AqmKind;

/// How copies are made at branch points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replication {
    Pim,
    Bier,
}

/// A shaped, AQM-managed egress on a link's parent side.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bottleneck {
    pub rate_mbps: f64,
    #[serde(default = "default_aqm")]
    pub aqm: AqmKind,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_aqm() -> AqmKind {
    AqmKind::Pie
}
fn default_limit() -> usize {
    1000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopoNode {
    pub name: String,
    /// The IOAM node ID (24 bits).
    pub id: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopoLink {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub loss: f64,
    #[serde(default)]
    pub delay_us: u64,
    pub bottleneck: Option<Bottleneck>,
}

/// A multicast tree: the first node is the root (the encapsulating node, where the source
/// attaches); leaves are the decapsulating nodes with a receiver each.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub name: String,
    #[serde(default = "default_replication")]
    pub replication: Replication,
    /// The IOAM trace type every node uses (default: hop limit + node ID, interface IDs, both
    /// timestamps, transit delay).
    #[serde(default = "default_trace_type")]
    pub trace_type: u32,
    /// Source bitrate, Mb/s (default 8.1: the seed's typical 1080p60).
    #[serde(default = "default_source")]
    pub source_mbps: f64,
    /// Per-hop mode's branch-ID encoding: explicit, split or sum (node IDs must then be
    /// multiples of [`SUM_GAP`]).
    #[serde(default = "default_encoding")]
    pub branch_encoding: String,
    #[serde(rename = "node")]
    pub nodes: Vec<TopoNode>,
    #[serde(rename = "link")]
    pub links: Vec<TopoLink>,
}

fn default_replication() -> Replication {
    Replication::Pim
}
fn default_trace_type() -> u32 {
    0xf8_0000
}
fn default_source() -> f64 {
    8.1
}
fn default_encoding() -> String {
    "explicit".to_string()
}

/// The interface a live lab node's port `k` is (in the node's own network namespace): `pk`.
pub fn port_interface(k: usize) -> String {
    format!("p{k}")
}

/// What a live lab node ([`Topology::live_node_toml`]) runs its ports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveBackend {
    /// AF_XDP sockets on the node's veth interfaces.
    Afxdp,
    /// DPDK `net_af_packet` devices on them; `prefix` is the EAL's `--file-prefix`.
    Dpdk { prefix: String },
}

/// The node-ID gap of the `sum` encoding in the lab.
pub const SUM_GAP: u32 = 16;

/// The IOAM trace carries room for this many hops in trace mode.
pub const TRACE_HOPS: usize = 12;

impl Topology {
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let t: Topology = toml::from_str(text).with_context(|| format!("topology {name}"))?;
        t.check()?;
        Ok(t)
    }

    /// The seed draft's Figure 5: A → B; B → C → D → three branches; B → E.
    pub fn figure5() -> Self {
        let names = ["A", "B", "C", "D", "E", "F", "G", "H"];
        let edges = [
            ("A", "B"),
            ("B", "C"),
            ("C", "D"),
            ("D", "F"),
            ("D", "G"),
            ("D", "H"),
            ("B", "E"),
        ];
        Self::from_edges("figure5", &names, &edges)
    }

    /// A line of `n` nodes.
    pub fn chain(n: usize) -> Self {
        let names: Vec<String> = (0..n).map(|i| format!("N{}", i + 1)).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let edges: Vec<(&str, &str)> = refs.windows(2).map(|w| (w[0], w[1])).collect();
        Self::from_edges("chain", &refs, &edges)
    }

    /// RFC 8279 §6.3's topology as a tree from A: A–B, B–C, B–E, C–D, C–F (BFERs D, F, E).
    pub fn rfc8279() -> Self {
        let mut t = Self::from_edges(
            "rfc8279",
            &["A", "B", "C", "D", "E", "F"],
            &[("A", "B"), ("B", "C"), ("B", "E"), ("C", "D"), ("C", "F")],
        );
        t.replication = Replication::Bier;
        t
    }

    /// A two-level BIER tree: the root, `mid` branch nodes, `leaves` receivers under each.
    pub fn bier_two_level(mid: usize, leaves: usize) -> Self {
        let mut names = vec!["root".to_string()];
        let mut edges = Vec::new();
        for m in 0..mid {
            names.push(format!("M{}", m + 1));
        }
        for m in 0..mid {
            for l in 0..leaves {
                let leaf = format!("L{}", m * leaves + l + 1);
                edges.push((format!("M{}", m + 1), leaf.clone()));
                names.push(leaf);
            }
            edges.insert(m, ("root".to_string(), format!("M{}", m + 1)));
        }
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let e: Vec<(&str, &str)> = edges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut t = Self::from_edges(&format!("bier{}", mid * leaves), &refs, &e);
        t.replication = Replication::Bier;
        t
    }

    /// A random tree of `n` nodes with fan-out at most `fanout` and depth at most `max_depth`.
    pub fn random(
        seed: u64,
        n: usize,
        fanout: usize,
        max_depth: usize,
        replication: Replication,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let mut parent = vec![usize::MAX];
        let mut children = vec![0usize];
        let mut depth = vec![0usize];
        while parent.len() < n {
            let open: Vec<usize> = (0..parent.len())
                .filter(|&i| children[i] < fanout && depth[i] < max_depth)
                .collect();
            let p = open[(rng.uniform() * open.len() as f64) as usize % open.len()];
            parent.push(p);
            children[p] += 1;
            children.push(0);
            depth.push(depth[p] + 1);
        }
        let names: Vec<String> = (0..n).map(|i| format!("R{}", i + 1)).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let edges: Vec<(&str, &str)> = (1..n).map(|i| (refs[parent[i]], refs[i])).collect();
        let mut t = Self::from_edges(&format!("random-{seed}"), &refs, &edges);
        t.replication = replication;
        t
    }

    fn from_edges(name: &str, names: &[&str], edges: &[(&str, &str)]) -> Self {
        Topology {
            name: name.to_string(),
            replication: Replication::Pim,
            trace_type: default_trace_type(),
            source_mbps: default_source(),
            branch_encoding: default_encoding(),
            nodes: names
                .iter()
                .enumerate()
                .map(|(i, n)| TopoNode {
                    name: n.to_string(),
                    id: i as u32 + 1,
                })
                .collect(),
            links: edges
                .iter()
                .map(|(a, b)| TopoLink {
                    from: a.to_string(),
                    to: b.to_string(),
                    loss: 0.0,
                    delay_us: 0,
                    bottleneck: None,
                })
                .collect(),
        }
    }

    /// A tree rooted at the first node: every other node has exactly one parent, reachable.
    pub fn check(&self) -> Result<()> {
        ensure!(
            self.nodes.len() >= 2,
            "topology {}: needs at least two nodes",
            self.name
        );
        // Lab interface IDs are (position + 1) × 100 + branch: they must fit in 16 bits.
        ensure!(
            self.nodes.len() <= 600,
            "topology {}: at most 600 nodes",
            self.name
        );

        let mut ids = BTreeMap::new();
        for n in &self.nodes {
            ensure!(
                n.id > 0 && n.id <= 0xff_ffff,
                "node {}: id {} is not a 24-bit node ID",
                n.name,
                n.id
            );
            if let Some(other) = ids.insert(n.id, &n.name) {
                bail!("nodes {other} and {} share node ID {}", n.name, n.id);
            }
        }
        let index = |name: &str| self.nodes.iter().position(|n| n.name == name);
        let mut parent = vec![None; self.nodes.len()];
        for l in &self.links {
            let (Some(a), Some(b)) = (index(&l.from), index(&l.to)) else {
                bail!("link {} -> {}: unknown node", l.from, l.to);
            };
            ensure!(
                b != 0,
                "link {} -> {}: the root ({}) has no parent",
                l.from,
                l.to,
                l.to
            );
            ensure!(parent[b].is_none(), "node {} has two parents", l.to);
            ensure!(
                (0.0..1.0).contains(&l.loss),
                "link {} -> {}: loss must be in [0, 1)",
                l.from,
                l.to
            );
            parent[b] = Some(a);
        }
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            let mut at = i;
            let mut steps = 0;
            while let Some(p) = parent[at] {
                at = p;
                steps += 1;
                ensure!(steps <= self.nodes.len(), "node {} is on a loop", n.name);
            }
            ensure!(
                at == 0,
                "node {} is not reachable from the root {}",
                n.name,
                self.nodes[0].name
            );
        }
        let units = mtnode_dataplane::wire::ioam::node_len_for(self.trace_type) as usize;
        ensure!(
            units > 0,
            "trace_type {:#x} has no data fields",
            self.trace_type
        );
        Ok(())
    }

    /// Children of node `i`, as link indices, in file order.
    pub fn child_links(&self, i: usize) -> Vec<usize> {
        let name = &self.nodes[i].name;
        (0..self.links.len())
            .filter(|&l| &self.links[l].from == name)
            .collect()
    }

    pub fn node_index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .expect("checked topology")
    }

    /// Leaves in depth-first order: their position + 1 is their BFR-id.
    pub fn leaves(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.dfs(0, &mut |i, is_leaf| {
            if is_leaf {
                out.push(i)
            }
        });
        out
    }

    fn dfs(&self, i: usize, f: &mut dyn FnMut(usize, bool)) {
        let kids = self.child_links(i);
        f(i, kids.is_empty());
        for l in kids {
            self.dfs(self.node_index(&self.links[l].to), f);
        }
    }

    /// Links from the root to the deepest leaf.
    pub fn depth(&self) -> usize {
        fn go(t: &Topology, i: usize) -> usize {
            t.child_links(i)
                .into_iter()
                .map(|l| 1 + go(t, t.node_index(&t.links[l].to)))
                .max()
                .unwrap_or(0)
        }
        go(self, 0)
    }

    /// Entries in the longest section: from the root or a branch point (a node with two or
    /// more children) down to the next branch point or leaf, both ends included.
    pub fn longest_section(&self) -> usize {
        let mut longest = 1;
        for start in 0..self.nodes.len() {
            if start != 0 && self.child_links(start).len() < 2 {
                continue;
            }
            for l in self.child_links(start) {
                let mut at = self.node_index(&self.links[l].to);
                let mut len = 2;
                loop {
                    let kids = self.child_links(at);
                    if kids.len() != 1 {
                        break;
                    }
                    at = self.node_index(&self.links[kids[0]].to);
                    len += 1;
                }
                longest = longest.max(len);
            }
        }
        longest
    }

    /// This tree with node IDs `SUM_GAP` apart, as the `sum` encoding needs.
    pub fn spaced_for_sum(&self) -> Topology {
        let mut t = self.clone();
        for n in &mut t.nodes {
            n.id *= SUM_GAP;
        }
        t
    }

    /// The seed draft's Figure 1: A → B → {C, D}.
    pub fn figure1() -> Self {
        Self::from_edges(
            "figure1",
            &["A", "B", "C", "D"],
            &[("A", "B"), ("B", "C"), ("B", "D")],
        )
    }

    /// The configured tree as (parent ID, child ID) pairs.
    pub fn edges(&self) -> Vec<[u32; 2]> {
        self.links
            .iter()
            .map(|l| {
                [
                    self.nodes[self.node_index(&l.from)].id,
                    self.nodes[self.node_index(&l.to)].id,
                ]
            })
            .collect()
    }

    /// The TOML configuration of node `i` in `mode` ("trace", "per-section" or "per-hop").
    pub fn node_toml(&self, i: usize, mode: &str) -> String {
        self.node_toml_with(i, mode, None)
    }

    /// [`Topology::node_toml`] for `mtnode run` (`mtnode lab --netns`): every port names its
    /// interface ([`port_interface`]: port k is `pk`), the node stays polite on a small machine
    /// (small batches, sleeping when idle), and postcards go as IPFIX to `collector`.
    ///
    /// On [`LiveBackend::Afxdp`] the ports are AF_XDP sockets on those interfaces (`[engine]`);
    /// on [`LiveBackend::Dpdk`] port k is the DPDK device `net_af_packet<k>` bound to `pk`, in
    /// an EAL of its own (`--no-huge --no-pci`, file prefix `prefix`), so DPDK nodes run on the
    /// same veth links and any mix of the two backends makes one tree.
    pub fn live_node_toml(
        &self,
        i: usize,
        mode: &str,
        collector: std::net::SocketAddr,
        backend: &LiveBackend,
    ) -> String {
        let mut s = self.node_toml_with(i, mode, Some(backend));
        match backend {
            LiveBackend::Afxdp => {
                s.push_str("\n[engine]\nbatch_size = 16\nidle_sleep_us = 100\nring_size = 256\n")
            }
            LiveBackend::Dpdk { prefix } => {
                let mut eal: Vec<String> = [
                    "-l",
                    "0",
                    "--no-huge",
                    "--no-pci",
                    "--no-shconf",
                    "--no-telemetry",
                    "-m",
                    "128",
                    "--log-level",
                    "lib.eal:error",
                    "--file-prefix",
                    prefix,
                ]
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect();
                for k in 0..self.port_count(i) {
                    eal.push(format!(
                        "\"--vdev\", \"net_af_packet{k},iface={}\"",
                        port_interface(k)
                    ));
                }
                let _ = write!(
                    s,
                    "\n[dpdk]\neal_args = [{}]\nmbufs = 2047\nrx_desc = 256\ntx_desc = 256\n\
                     batch_size = 16\nidle_sleep_us = 100\n",
                    eal.join(", ")
                );
            }
        }
        let _ = write!(s, "\n[export]\ncollectors = [\"{collector}\"]\n");
        s
    }

    /// How many ports node `i` has: `up`, then one per child link, or `rx` at a leaf.
    pub fn port_count(&self, i: usize) -> usize {
        1 + self.child_links(i).len().max(1)
    }

    fn node_toml_with(&self, i: usize, mode: &str, live: Option<&LiveBackend>) -> String {
        let iface = |k: usize| match live {
            None => String::new(),
            Some(LiveBackend::Afxdp) => format!("interface = \"{}\"\n", port_interface(k)),
            Some(LiveBackend::Dpdk { .. }) => {
                format!("backend = \"dpdk\"\ndpdk_port = \"net_af_packet{k}\"\n")
            }
        };
        let n = &self.nodes[i];
        let kids = self.child_links(i);
        let role = if i == 0 {
            "encap"
        } else if kids.is_empty() {
            "decap"
        } else {
            "transit"
        };
        let mut s = format!(
            "[node]\nname = \"{}\"\nnode_id = {}\nforwarding = \"route\"\n\n",
            n.name, n.id
        );
        let base = (i as u64 + 1) * 100;
        let _ = write!(s, "[[port]]\nname = \"up\"\nif_id = {base}\n{}\n", iface(0));
        let mut port_names = Vec::new();
        for (k, &l) in kids.iter().enumerate() {
            let name = format!("to-{}", self.links[l].to);
            let _ = write!(
                s,
                "[[port]]\nname = \"{name}\"\nif_id = {}\n{}",
                base + k as u64 + 1,
                iface(k + 1)
            );
            if let Some(b) = &self.links[l].bottleneck {
                let aqm = match b.aqm {
                    AqmKind::Pie => "pie",
                    AqmKind::Red => "red",
                };
                let _ = write!(
                    s,
                    "[port.queue]\nrate_mbps = {}\naqm = \"{aqm}\"\nlimit_packets = {}\n",
                    b.rate_mbps, b.limit
                );
            }
            s.push('\n');
            port_names.push(name);
        }
        if kids.is_empty() {
            let _ = write!(
                s,
                "[[port]]\nname = \"rx\"\nif_id = {}\n{}\n",
                base + 1,
                iface(1)
            );
            s += "[[route]]\nprefix = \"::/0\"\nport = \"rx\"\n\n";
        }
        match self.replication {
            Replication::Pim if !kids.is_empty() => {
                let oil: Vec<String> = port_names.iter().map(|p| format!("\"{p}\"")).collect();
                let _ = write!(
                    s,
                    "[[mroute]]\nsource = \"{}\"\ngroup = \"{}\"\niif = \"up\"\noil = [{}]\n\n",
                    crate::lab::SOURCE_ADDR,
                    crate::lab::GROUP_ADDR,
                    oil.join(", ")
                );
            }
            Replication::Bier => {
                let leaves = self.leaves();
                let bits = leaves.len().next_power_of_two().max(64);
                let _ = write!(s, "[[bift]]\nbift_id = 1\nbsl = {bits}\n\n");
                for (k, &l) in kids.iter().enumerate() {
                    let mut under = Vec::new();
                    self.dfs(self.node_index(&self.links[l].to), &mut |j, leaf| {
                        if leaf {
                            under.push(leaves.iter().position(|&x| x == j).unwrap() + 1);
                        }
                    });
                    let _ = write!(
                        s,
                        "[[bift.neighbor]]\nport = \"{}\"\nbits = {:?}\n\n",
                        port_names[k], under
                    );
                }
                if kids.is_empty() {
                    let me = leaves.iter().position(|&x| x == i).unwrap() + 1;
                    let _ = write!(s, "[[bift.neighbor]]\nlocal = true\nbits = [{me}]\n\n");
                }
            }
            Replication::Pim => {}
        }
        let _ = write!(
            s,
            "[[namespace]]\nid = 1\nrole = \"{role}\"\nmode = \"{mode}\"\ntrace_type = {}\n",
            self.trace_type
        );
        if mode == "per-hop" {
            let _ = writeln!(s, "branch_encoding = \"{}\"", self.branch_encoding);
            if self.branch_encoding == "sum" {
                let _ = writeln!(s, "sum_gap = {SUM_GAP}");
            }
        }
        if role == "encap" {
            // Room for what one trace has to hold: the whole path in trace mode, the longest
            // section in per-section mode.
            let slot = mtnode_dataplane::wire::ioam::node_len_for(self.trace_type) as usize * 4;
            let need = if mode == "per-section" {
                self.longest_section()
            } else {
                self.depth() + 1
            };
            let hops = need
                .min(mtnode_dataplane::wire::ioam::MAX_TRACE_DATA / slot)
                .min(TRACE_HOPS);
            let _ = write!(
                s,
                "hops = {hops}\n\n[[namespace.select]]\ndst = \"ff00::/8\"\n"
            );
        }
        s
    }

    /// Every node's validated configuration, in node order.
    pub fn configs(&self, mode: &str) -> Result<Vec<NodeConfig>> {
        (0..self.nodes.len())
            .map(|i| {
                config::parse(
                    &format!("{} node {}", self.name, self.nodes[i].name),
                    &self.node_toml(i, mode),
                )
                .map_err(anyhow::Error::from)
            })
            .collect()
    }

    /// BFR-ids of every leaf: the BitString the source's BIER frames carry.
    pub fn all_leaves_bits(&self) -> Vec<usize> {
        (1..=self.leaves().len()).collect()
    }

    /// The BSL codepoint of this tree's BIFTs.
    pub fn bsl(&self) -> u8 {
        let bits = self.leaves().len().next_power_of_two().max(64);
        (1..=7u8).find(|&c| 1usize << (c + 5) == bits).unwrap_or(7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure5_shape_and_configs() {
        let t = Topology::figure5();
        t.check().unwrap();
        assert_eq!(
            t.edges(),
            [[1, 2], [2, 3], [3, 4], [4, 6], [4, 7], [4, 8], [2, 5]]
        );
        let leaves: Vec<&str> = t
            .leaves()
            .iter()
            .map(|&i| t.nodes[i].name.as_str())
            .collect();
        assert_eq!(leaves, ["F", "G", "H", "E"]);
        assert_eq!((t.depth(), t.longest_section()), (4, 3));
        for mode in ["trace", "per-section"] {
            let c = t.configs(mode).unwrap();
            assert_eq!(c.len(), 8);
            assert_eq!(c[1].pim.routes[0].oil.len(), 2, "B branches to C and E");
            assert_eq!(c[3].pim.routes[0].oil.len(), 3, "D branches three ways");
        }
    }

    /// The live form is the lab form plus interfaces, `[engine]` and `[export]`: the same
    /// node, ports and routes, and it loads as `mtnode run` needs it.
    #[test]
    fn live_configs_name_every_port_and_export() {
        let t = Topology::figure5();
        let collector: std::net::SocketAddr = "10.255.0.254:4739".parse().unwrap();
        for mode in ["trace", "per-section", "per-hop"] {
            for i in 0..t.nodes.len() {
                let text = t.live_node_toml(i, mode, collector, &LiveBackend::Afxdp);
                let l = config::parse_all("live", &text)
                    .unwrap()
                    .require_live()
                    .unwrap();
                assert_eq!(l.node, config::parse("lab", &t.node_toml(i, mode)).unwrap());
                assert_eq!(l.live_ports.len(), l.node.ports.len());
                assert_eq!(l.node.ports.len(), t.port_count(i));
                for (k, p) in l.live_ports.iter().enumerate() {
                    assert_eq!(
                        (p.port as usize, p.interface.clone()),
                        (k, port_interface(k))
                    );
                }
                let e = l.export.as_ref().unwrap();
                assert_eq!(e.exporter.collectors, [collector]);
                assert!(l.engine.idle_sleep_us > 0);
            }
        }
    }

    /// The DPDK form is the same node with port k on `net_af_packet<k>`, bound to `pk` by the
    /// node's own EAL arguments.
    #[test]
    fn dpdk_live_configs_bind_every_port_to_its_veth() {
        let t = Topology::figure5();
        let collector: std::net::SocketAddr = "10.255.0.254:4739".parse().unwrap();
        let backend = LiveBackend::Dpdk {
            prefix: "mtl1-3".into(),
        };
        for i in 0..t.nodes.len() {
            let text = t.live_node_toml(i, "per-hop", collector, &backend);
            let l = config::parse_all("live", &text).unwrap();
            assert_eq!(
                l.node,
                config::parse("lab", &t.node_toml(i, "per-hop")).unwrap()
            );
            assert!(l.live_ports.is_empty(), "no AF_XDP port");
            let names: Vec<config::PortBackend> = (0..t.port_count(i))
                .map(|k| {
                    config::PortBackend::Dpdk(config::DpdkPortRef::Name(format!(
                        "net_af_packet{k}"
                    )))
                })
                .collect();
            assert_eq!(l.backends, names);
            let d = l.dpdk.as_ref().unwrap();
            let vdevs: Vec<&str> = d
                .eal_args
                .windows(2)
                .filter(|w| w[0] == "--vdev")
                .map(|w| w[1].as_str())
                .collect();
            let want: Vec<String> = (0..t.port_count(i))
                .map(|k| format!("net_af_packet{k},iface=p{k}"))
                .collect();
            assert_eq!(vdevs, want);
            let prefix = d
                .eal_args
                .iter()
                .position(|a| a == "--file-prefix")
                .unwrap();
            assert_eq!(d.eal_args[prefix + 1], "mtl1-3");
            assert!(d.eal_args.iter().any(|a| a == "--no-huge"));
            assert_eq!(l.export.as_ref().unwrap().exporter.collectors, [collector]);
        }
    }

    #[test]
    fn bier_bifts_cover_the_leaves_below() {
        let t = Topology::rfc8279();
        let c = t.configs("trace").unwrap();
        // B (index 1): C's subtree holds D and F (BFR-ids 1, 2), E is 3.
        let b = &c[1].bifts[0];
        assert_eq!(b.neighbors[0].1[0], 0b011);
        assert_eq!(b.neighbors[1].1[0], 0b100);
    }

    #[test]
    fn random_trees_respect_their_bounds() {
        for seed in 1..50 {
            let t = Topology::random(seed, 30, 8, 10, Replication::Pim);
            t.check().unwrap();
            assert_eq!(t.nodes.len(), 30);
            for i in 0..30 {
                assert!(t.child_links(i).len() <= 8);
            }
        }
    }

    #[test]
    fn bad_topologies_are_refused() {
        let two_parents = r#"
name = "x"
[[node]]
name = "a"
id = 1
[[node]]
name = "b"
id = 2
[[node]]
name = "c"
id = 3
[[link]]
from = "a"
to = "c"
[[link]]
from = "b"
to = "c"
"#;
        let e = Topology::parse("t", two_parents).unwrap_err();
        assert!(format!("{e:#}").contains("node c has two parents"), "{e:#}");
        let dup = r#"
name = "x"
[[node]]
name = "a"
id = 1
[[node]]
name = "b"
id = 1
[[link]]
from = "a"
to = "b"
"#;
        let e = Topology::parse("t", dup).unwrap_err();
        assert!(format!("{e:#}").contains("share node ID 1"), "{e:#}");
    }
}
