//! mtnode live on DPDK (root only): a PIM-SSM branch node, `(S,G) → in, [b1, b2]`, runs as
//! `mtnode run` in its own namespace with its three ports on `net_af_packet` virtual devices
//! bound to veth interfaces (`--no-huge --no-pci`, a file prefix of its own); a generator
//! namespace sends it multicast packets and two sink namespaces capture what leaves each branch.
//! The node serves the control API on its namespace's loopback, and curl (an independent
//! client) talks to it while it forwards.
//!
//! 1. N plain packets: the node inserts its trace and replicates. Exactly N copies on each
//!    branch, one per sequence number, each with the packet's own UDP datagram and this node's
//!    IOAM entry (node ID, hop limit, ingress/egress interface IDs of the branch, a timestamp
//!    within the run), decoded by `mtnode_dataplane::ioam` and by the harness's own reader.
//! 2. `/v1/stats` and `/metrics`, live: exactly N in, 2N out, N replicas, one worker.
//! 3. `PATCH /v1/config` changes the node ID and the route (`oil = ["b1"]`) at once; the reply
//!    says every worker runs epoch 1. Then N more packets: N copies on b1, all with the new
//!    node ID, none on b2.
//! 4. At SIGTERM the final numbers equal the traffic (2N in, 3N out, N replicas, per device
//!    rx/tx), nothing was dropped at TX, and no mbuf is held at exit.
//!
//! Off root it prints `SKIPPED (needs root)`; under CI=true it fails instead. The namespaces go
//! away on drop, panics included, and every wait is bounded.
#![cfg(feature = "dpdk")]

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtnode_tests::copies;
use mtnode_tests::frames::Udp6;
use mtnode_tests::netns::{capture, inject_pps, require_root, xdp_veth, LiveNode, Netns};
use mtnode_tests::pcapio::write_pcap;
use serde_json::Value;

const N: usize = 300;
const PPS: u32 = 5_000;
const SOURCE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const GROUP: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);
const NODE_ID: u32 = 2;
const NODE_ID_PATCHED: u32 = 7;
const IF_IN: u16 = 20;
const IF_B1: u16 = 21;
const IF_B2: u16 = 22;
/// Frame sizes the packets cycle through (before any IOAM).
const SIZES: [usize; 3] = [70, 512, 1400];
const TRACE_TYPE: u32 = 0xF8_0000;
const NODE_LEN: u8 = 5;
const HOPS: u8 = 8;
const TOKEN: &str = "dpdk-veth-test-token";
const API: &str = "http://127.0.0.1:8687";

fn config(prefix: &str, token_file: &Path) -> String {
    format!(
        r#"
[node]
name = "branch"
node_id = {NODE_ID}
forwarding = "route"
timestamp_format = "ptp"

[[port]]
name = "in"
if_id = {IF_IN}
backend = "dpdk"
dpdk_port = "net_af_packet0"

[[port]]
name = "b1"
if_id = {IF_B1}
backend = "dpdk"
dpdk_port = "net_af_packet1"

[[port]]
name = "b2"
if_id = {IF_B2}
backend = "dpdk"
dpdk_port = "net_af_packet2"

[[mroute]]
source = "{SOURCE}"
group = "{GROUP}"
iif = "in"
oil = ["b1", "b2"]

[[namespace]]
id = 1
role = "encap"
trace_type = 0x{TRACE_TYPE:06X}
hops = {HOPS}
[[namespace.select]]
dst = "ff00::/8"

[dpdk]
eal_args = ["-l", "0", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "256",
            "--file-prefix", "{prefix}", "--log-level", "lib.eal:error",
            "--vdev", "net_af_packet0,iface=n_in",
            "--vdev", "net_af_packet1,iface=n_b1",
            "--vdev", "net_af_packet2,iface=n_b2"]
mbufs = 4095
batch_size = 32
idle_sleep_us = 20

[api]
listen = "127.0.0.1:8687"
token_file = "{}"
"#,
        token_file.display()
    )
}

/// Packet `seq`: UDP to the group, payload = seq (4 octets) then seq's low octet repeated.
fn packet(seq: usize) -> Vec<u8> {
    let size = SIZES[seq % SIZES.len()];
    let mut payload = vec![seq as u8; size - 14 - 40 - 8];
    payload[..4].copy_from_slice(&(seq as u32).to_be_bytes());
    Udp6::new(SOURCE, GROUP, &payload).emit()
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v:#}"))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn check_branch(
    name: &str,
    frames: &[Vec<u8>],
    sent: &[Vec<u8>],
    egress_if: u16,
    node_id: u32,
    window: (u64, u64),
) {
    let want = copies::Branch {
        name,
        source: SOURCE,
        group: GROUP,
        sent,
        node_id,
        ingress_if: IF_IN,
        egress_if,
        node_len: NODE_LEN,
        hops: HOPS,
        window,
    };
    copies::check(frames, &want, "");
}

#[test]
fn pim_branch_on_dpdk_af_packet_with_live_api() {
    if !require_root("pim_branch_on_dpdk_af_packet_with_live_api") {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_mtnode-cli"));
    let (gen, node, s1, s2) = (
        Netns::new("gen"),
        Netns::new("node"),
        Netns::new("sink1"),
        Netns::new("sink2"),
    );
    // No kernel stack speaks on these links: the node sees exactly the generator's packets.
    for ns in [&gen, &node, &s1, &s2] {
        ns.ipv6_off();
    }
    xdp_veth(&gen, "g0", &node, "n_in");
    xdp_veth(&node, "n_b1", &s1, "s1");
    xdp_veth(&node, "n_b2", &s2, "s2");
    let token_file = node.workdir().join("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let conf = node.workdir().join("dpdk.toml");
    std::fs::write(&conf, config(node.name(), &token_file)).unwrap();
    let sent: Vec<Vec<u8>> = (0..N).map(packet).collect();
    let input = gen.workdir().join("stream.pcap");
    write_pcap(&input, &sent).unwrap();
    let filter = format!("ip6 and src host {SOURCE}");

    let live = LiveNode::start(&node, bin, &conf);

    // 1. Replication with this node's entry on both branches.
    let c1 = capture(&s1, "s1", &filter, N, Duration::from_secs(20));
    let c2 = capture(&s2, "s2", &filter, N, Duration::from_secs(20));
    let before = now_ns();
    inject_pps(&gen, "g0", &input, PPS);
    let (b1, b2) = (c1.finish_frames(), c2.finish_frames());
    let window = (before, now_ns());
    check_branch("b1", &b1, &sent, IF_B1, NODE_ID, window);
    check_branch("b2", &b2, &sent, IF_B2, NODE_ID, window);

    // 2. The running node's numbers.
    let n = N as u64;
    let (status, body) = node.curl(&[&format!("{API}/v1/stats")]);
    assert_eq!(status, 200, "{body}");
    let stats = json(&body);
    assert_eq!(u(&stats, &["epoch"]), 0, "{stats:#}");
    assert_eq!(u(&stats, &["packets_in"]), n, "{stats:#}");
    assert_eq!(u(&stats, &["packets_out"]), 2 * n, "{stats:#}");
    assert_eq!(u(&stats, &["workers"]), 1, "{stats:#}");
    let (status, metrics) = node.curl(&[&format!("{API}/metrics")]);
    assert_eq!(status, 200);
    for line in [
        format!("\nmtnode_packets_in_total {N}\n"),
        format!("\nmtnode_packets_out_total {}\n", 2 * N),
        "\nmtnode_config_epoch 0\n".to_string(),
    ] {
        assert!(metrics.contains(&line), "{line:?} in {metrics}");
    }

    // 3. A new node ID and a pruned branch, in one change, while the node runs.
    let patch = format!(
        r#"{{"node":{{"node_id":{NODE_ID_PATCHED}}},"mroute":[{{"source":"{SOURCE}","group":"{GROUP}","iif":"in","oil":["b1"]}}]}}"#
    );
    let (status, reply) = node.curl_patch(&format!("{API}/v1/config"), Some(TOKEN), &patch);
    assert_eq!(status, 200, "{reply}");
    let reply = json(&reply);
    assert_eq!(
        (reply["epoch"].as_u64(), reply["applied"].as_bool()),
        (Some(1), Some(true)),
        "{reply:#}"
    );
    // What a DPDK node takes only at restart is refused, and changes nothing.
    let (status, reply) = node.curl_patch(
        &format!("{API}/v1/config"),
        Some(TOKEN),
        r#"{"dpdk":{"batch_size":64}}"#,
    );
    assert_eq!(status, 409, "{reply}");
    assert!(reply.contains("dpdk"), "{reply}");

    let c1 = capture(&s1, "s1", &filter, N, Duration::from_secs(20));
    let c2 = capture(&s2, "s2", &filter, N, Duration::from_secs(4));
    let before = now_ns();
    inject_pps(&gen, "g0", &input, PPS);
    let (b1, b2) = (c1.finish_frames(), c2.finish_frames());
    check_branch("b1", &b1, &sent, IF_B1, NODE_ID_PATCHED, (before, now_ns()));
    assert_eq!(b2.len(), 0, "b2 left the route");

    // 4. The final account.
    let (stats, log) = live.stop();
    let ctx = format!("{stats:#}\n{log}");
    assert_eq!(u(&stats, &["epoch"]), 1, "{ctx}");
    assert_eq!(u(&stats, &["packets_in"]), 2 * n, "{ctx}");
    assert_eq!(u(&stats, &["packets_out"]), 3 * n, "{ctx}");
    assert_eq!(u(&stats, &["replicas"]), n, "{ctx}");
    assert_eq!(u(&stats, &["dropped"]), 0, "{ctx}");
    assert_eq!(u(&stats, &["roles", "encap"]), 2 * n, "{ctx}");
    assert_eq!(u(&stats, &["tx_by_port", "b1"]), 2 * n, "{ctx}");
    assert_eq!(u(&stats, &["tx_by_port", "b2"]), n, "{ctx}");
    let d = &stats["dpdk"];
    assert_eq!(u(d, &["rx"]), 2 * n, "{ctx}");
    assert_eq!(u(d, &["tx"]), 3 * n, "{ctx}");
    assert_eq!(u(d, &["tx_dropped"]), 0, "{ctx}");
    assert_eq!(u(d, &["alloc_failed"]), 0, "{ctx}");
    assert_eq!(u(d, &["mbufs_held_at_exit"]), 0, "{ctx}");
    assert_eq!(
        d["pool_in_use_before_close"],
        serde_json::json!([0]),
        "{ctx}"
    );
    // The 8-hop trace (168 octets) outgrows DPDK's 128 octets of headroom: every received
    // frame is moved once on its way out; replicas are copied with room to spare.
    assert_eq!(u(d, &["relocated"]), 2 * n, "{ctx}");
    let ports = d["ports"].as_array().expect("ports");
    let port = |name: &str| {
        ports
            .iter()
            .find(|p| p["port"] == name)
            .unwrap_or_else(|| panic!("port {name}: {ctx}"))
    };
    for (name, rx, tx) in [("in", 2 * n, 0), ("b1", 0, 2 * n), ("b2", 0, n)] {
        assert_eq!(u(port(name), &["rx_packets"]), rx, "{name}: {ctx}");
        assert_eq!(u(port(name), &["tx_packets"]), tx, "{name}: {ctx}");
    }
    eprintln!(
        "DPDK on net_af_packet: {} in, {} out; latency p50 {} ns p99 {} ns",
        2 * N,
        3 * N,
        u(d, &["latency_ns", "p50"]),
        u(d, &["latency_ns", "p99"]),
    );
}
