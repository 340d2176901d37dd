//! Postcards over real IPFIX: four nodes (A → B → {C, E}) each replay their input pcap with an
//! exporter thread sending to a collector on loopback UDP, and the collector, learning the
//! templates from the wire, rebuilds the tree. Both modes.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtnode_control::collector::Collector;
use mtnode_control::topology::Topology;
use mtnode_control::{config, replay};
use mtnode_tests::scratch::{fixture, ScratchDir};

const TOPOLOGY: &str = r#"
name = "ipfix-tree"
[[node]]
name = "A"
id = 1
[[node]]
name = "B"
id = 2
[[node]]
name = "C"
id = 3
[[node]]
name = "E"
id = 5
[[link]]
from = "A"
to = "B"
[[link]]
from = "B"
to = "C"
[[link]]
from = "B"
to = "E"
"#;

fn run(mode: &str, expect_postcards: usize) {
    let t = Topology::parse("ipfix-tree", TOPOLOGY).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let collector = std::thread::spawn(move || {
        let mut c = Collector::new(32473);
        c.run(
            &socket,
            Some(expect_postcards),
            Some(Instant::now() + Duration::from_secs(10)),
        )
        .unwrap();
        c
    });
    let dir = ScratchDir::new(&format!("ipfix-{mode}"));
    let node = |name: &str, input: &std::path::Path| {
        let i = t.node_index(name);
        let toml = format!(
            "{}\n[export]\ncollectors = [\"{addr}\"]\n",
            t.node_toml(i, mode)
        );
        let (cfg, export) = config::parse_with_export(name, &toml).unwrap();
        let out = dir.path().join(name);
        let r = replay::replay_exporting(Arc::new(cfg), export.as_ref(), input, &out, 0).unwrap();
        assert_eq!(
            r.stats["export"]["exporter"]["lost"], 0,
            "{name}: {:#}",
            r.stats
        );
        out
    };
    let a = node("A", &fixture("ipv6-mcast-ssm.pcap"));
    let b = node("B", &a.join("to-B.pcap"));
    node("C", &b.join("to-C.pcap"));
    node("E", &b.join("to-E.pcap"));
    let c = collector.join().unwrap();
    assert_eq!(c.postcards().len(), expect_postcards, "{:?}", c.stats());
    assert!(!c.templates().is_empty(), "templates learned from the wire");
    let tree = c.tree();
    assert_eq!(tree.edge_pairs(), [[1, 2], [2, 3], [2, 5]], "{mode}");
    assert_eq!(tree.packets, 12);
    for e in &tree.edges {
        assert_eq!(e.loss, 0.0, "{mode}: {e:?}");
    }
}

#[test]
fn trace_mode_end_nodes_export_the_whole_trace() {
    // 12 packets, two receivers: one trace each.
    run("trace", 12 * 2);
}

#[test]
fn per_section_mode_branch_and_end_sections() {
    // B's section plus an end section at each receiver, per packet.
    run("per-section", 12 * 3);
}
