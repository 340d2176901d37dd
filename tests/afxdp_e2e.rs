//! mtnode live on AF_XDP sockets (root only): a PIM-SSM branch node, `(S,G) → in, [b1, b2]`,
//! runs as `mtnode run` in its own namespace on three veth interfaces; a generator namespace
//! sends it N multicast packets and two sink namespaces capture what leaves each branch.
//!
//! Twice on the same interfaces, the second run right after the first (a restart):
//! - encap: plain packets in; the node inserts a trace and replicates (the original frame is
//!   moved back to its descriptor's address after the insertion: `relocated` = N);
//! - transit: packets carrying an empty trace; the node fills its slot in both copies, handing
//!   the received frame to a TX ring as it is (`relocated` = 0).
//!
//! Checked each time: exactly N copies on each branch, one per sequence number, each carrying
//! the packet's payload and this node's IOAM entry with the branch's egress interface (decoded
//! by `mtnode_dataplane::ioam` and by the harness's independent reader, which agree); the
//! node's counters (packets in/out, replicas, role, per-port rx/tx, latency samples) equal the
//! traffic; every UMEM frame is accounted for at shutdown; the XDP program is gone afterwards.
//!
//! Off root it prints `SKIPPED (needs root)`; under CI=true it fails instead. The namespaces go
//! away on drop, panics included, and every wait is bounded.

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtnode_tests::copies;
use mtnode_tests::frames::{ioam_prealloc_options, Udp6};
use mtnode_tests::netns::{capture, inject_pps, require_root, xdp_veth, LiveNode, Netns, XDP_MTU};
use mtnode_tests::pcapio::write_pcap;
use serde_json::Value;

const N: usize = 300;

/// The tests of this file run one at a time: each has a busy-polling node, and on a 2-core
/// machine two of them at once starve the kernel's receive path and lose packets.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
const SOURCE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const GROUP: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);
const NODE_ID: u32 = 2;
const IF_IN: u16 = 20;
const IF_B1: u16 = 21;
const IF_B2: u16 = 22;
/// Frame sizes the packets cycle through (before any IOAM).
const SIZES: [usize; 3] = [70, 512, 1400];
/// The empty trace the transit packets carry: 8 hops of 5 words.
const TRACE_TYPE: u32 = 0xF8_0000;
const NODE_LEN: u8 = 5;
const HOPS: u8 = 8;

fn config(role: &str) -> String {
    let select = if role == "encap" {
        format!("hops = {HOPS}\n[[namespace.select]]\ndst = \"ff00::/8\"\n")
    } else {
        String::new()
    };
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
interface = "n_in"

[[port]]
name = "b1"
if_id = {IF_B1}
interface = "n_b1"

[[port]]
name = "b2"
if_id = {IF_B2}
interface = "n_b2"

[[mroute]]
source = "{SOURCE}"
group = "{GROUP}"
iif = "in"
oil = ["b1", "b2"]

[engine]
batch_size = 32
idle_sleep_us = 20

[[namespace]]
id = 1
role = "{role}"
trace_type = 0x{TRACE_TYPE:06X}
{select}"#
    )
}

/// Packet `seq`: UDP to the group, payload = seq (4 octets) then seq's low octet repeated.
fn packet(seq: usize, with_trace: bool) -> Vec<u8> {
    let size = SIZES[seq % SIZES.len()];
    let mut payload = vec![seq as u8; size - 14 - 40 - 8];
    payload[..4].copy_from_slice(&(seq as u32).to_be_bytes());
    let mut p = Udp6::new(SOURCE, GROUP, &payload);
    if with_trace {
        p = p.with_hop_by_hop(ioam_prealloc_options(
            1,
            NODE_LEN,
            TRACE_TYPE,
            HOPS * NODE_LEN,
        ));
    }
    p.emit()
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v:#}"))
}

struct Topo {
    gen: Netns,
    node: Netns,
    s1: Netns,
    s2: Netns,
}

fn topo() -> Topo {
    let t = Topo {
        gen: Netns::new("gen"),
        node: Netns::new("node"),
        s1: Netns::new("sink1"),
        s2: Netns::new("sink2"),
    };
    // No kernel stack speaks on these links (router solicitations, MLD reports): the node
    // sees exactly the generator's packets, and the sinks' own traffic does not reach it.
    for ns in [&t.gen, &t.node, &t.s1, &t.s2] {
        ns.ipv6_off();
    }
    xdp_veth(&t.gen, "g0", &t.node, "n_in");
    xdp_veth(&t.node, "n_b1", &t.s1, "s1");
    xdp_veth(&t.node, "n_b2", &t.s2, "s2");
    t
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// One run of the node: send N packets, capture both branches, stop the node, check it all.
fn run_once(t: &Topo, role: &str, bin: &Path) -> Value {
    let with_trace = role == "transit";
    let sent: Vec<Vec<u8>> = (0..N).map(|i| packet(i, with_trace)).collect();
    let input = t.gen.workdir().join(format!("{role}.pcap"));
    write_pcap(&input, &sent).unwrap();
    let conf = t.node.workdir().join(format!("{role}.toml"));
    std::fs::write(&conf, config(role)).unwrap();

    let node = LiveNode::start(&t.node, bin, &conf);
    let filter = format!("ip6 and src host {SOURCE}");
    let c1 = capture(&t.s1, "s1", &filter, N, Duration::from_secs(20));
    let c2 = capture(&t.s2, "s2", &filter, N, Duration::from_secs(20));
    let before = now_ns();
    inject_pps(&t.gen, "g0", &input, 10_000);
    let b1 = c1.finish_frames();
    let b2 = c2.finish_frames();
    let after = now_ns();
    let (stats, log) = node.stop();
    let links =
        |ns: &Netns| String::from_utf8_lossy(&ns.ip(["-s", "link", "show"]).stdout).into_owned();
    let ctx = format!(
        "{role}: {stats:#}\n{log}\nsink1: {}\nsink2: {}",
        links(&t.s1),
        links(&t.s2)
    );

    for (name, frames, egress_if) in [("b1", &b1, IF_B1), ("b2", &b2, IF_B2)] {
        let want = copies::Branch {
            name,
            source: SOURCE,
            group: GROUP,
            sent: &sent,
            node_id: NODE_ID,
            ingress_if: IF_IN,
            egress_if,
            node_len: NODE_LEN,
            hops: HOPS,
            window: (before, after),
        };
        copies::check(frames, &want, &ctx);
    }

    // The node's own account equals the traffic.
    let n = N as u64;
    assert_eq!(u(&stats, &["packets_in"]), n, "{ctx}");
    assert_eq!(u(&stats, &["packets_out"]), 2 * n, "{ctx}");
    assert_eq!(u(&stats, &["replicas"]), n, "{ctx}");
    assert_eq!(u(&stats, &["dropped"]), 0, "{ctx}");
    assert_eq!(u(&stats, &["roles", role]), n, "{ctx}");
    assert_eq!(u(&stats, &["tx_by_port", "b1"]), n, "{ctx}");
    assert_eq!(u(&stats, &["tx_by_port", "b2"]), n, "{ctx}");
    let ports = stats["ports"].as_array().expect("ports");
    let port = |name: &str| {
        ports
            .iter()
            .find(|p| p["port"] == name)
            .unwrap_or_else(|| panic!("port {name}: {ctx}"))
    };
    assert_eq!(u(port("in"), &["rx_packets"]), n, "{ctx}");
    assert_eq!(u(port("in"), &["tx_packets"]), 0, "{ctx}");
    for b in ["b1", "b2"] {
        assert_eq!(u(port(b), &["tx_packets"]), n, "{ctx}");
        assert_eq!(u(port(b), &["tx_dropped"]), 0, "{ctx}");
    }
    assert_eq!(u(port("in"), &["kernel", "rx_dropped"]), 0, "{ctx}");
    assert_eq!(u(&stats, &["latency_ns", "count"]), 2 * n, "{ctx}");
    let relocated = if role == "encap" { n } else { 0 };
    assert_eq!(u(&stats, &["relocated"]), relocated, "{ctx}");
    // Every frame is free or on a fill ring: nothing in flight, nothing lost, none twice.
    let umem = &stats["umem"];
    assert_eq!(u(umem, &["in_tx"]), 0, "{ctx}");
    assert_eq!(umem["leaked"].as_i64(), Some(0), "{ctx}");
    assert_eq!(u(umem, &["duplicates"]), 0, "{ctx}");
    assert_eq!(
        u(umem, &["free"]) + u(umem, &["in_fill"]),
        u(umem, &["total"]),
        "{ctx}"
    );
    // libxdp removed its program with the last socket.
    let links = String::from_utf8_lossy(&t.node.ip(["link", "show"]).stdout).into_owned();
    assert!(!links.contains("xdp"), "XDP program left behind: {links}");
    eprintln!(
        "{role}: {N} packets in, {} copies out per branch; mode {}, latency p50 {} ns p99 {} ns",
        N,
        stats["workers"][0]["mode"],
        u(&stats, &["latency_ns", "p50"]),
        u(&stats, &["latency_ns", "p99"]),
    );
    stats
}

#[test]
fn pim_branch_on_afxdp_sockets() {
    if !require_root("pim_branch_on_afxdp_sockets") {
        return;
    }
    let _one = serial();
    let bin = Path::new(env!("CARGO_BIN_EXE_mtnode-cli"));
    let t = topo();
    run_once(&t, "encap", bin);
    // Straight away, on the same interfaces: the kernel may still be tearing the last
    // sockets down, which the node rides out by retrying its binds.
    run_once(&t, "transit", bin);
}

/// `mtnode gen` at both ends of the branch node: one namespace sends two IPv6 SSM streams
/// (ECT(0)) out of g0 and counts what comes back on s1 and s2; the node routes stream 0 only.
#[test]
fn gen_counts_what_the_branch_node_delivers() {
    if !require_root("gen_counts_what_the_branch_node_delivers") {
        return;
    }
    let _one = serial();
    let bin = Path::new(env!("CARGO_BIN_EXE_mtnode-cli"));
    let ends = Netns::new("ends");
    let node = Netns::new("node");
    for ns in [&ends, &node] {
        ns.ipv6_off();
    }
    xdp_veth(&ends, "g0", &node, "n_in");
    xdp_veth(&node, "n_b1", &ends, "s1");
    xdp_veth(&node, "n_b2", &ends, "s2");
    let conf = node.workdir().join("encap.toml");
    std::fs::write(&conf, config("encap")).unwrap();
    let live = LiveNode::start(&node, bin, &conf);
    // 2000 packets at 10 000 per second, alternating streams 0 and 1.
    let mut cmd = ends.command([bin.as_os_str()]);
    cmd.args([
        "gen",
        "--tx",
        "g0",
        "--rx",
        "s1,s2",
        "--streams",
        "2",
        "--rate",
        "10000",
        "--count",
        "2000",
        "--duration",
        "5",
        "--linger",
        "0.5",
        "--size",
        "300",
        "--ecn",
        "ect0",
        "--json",
    ]);
    let out = mtnode_tests::netns::run_bounded(&mut cmd, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (stats, _) = live.stop();
    let report: Value = serde_json::from_slice(&out.stdout).expect("gen --json");
    let ctx = format!("{report:#}\n{stats:#}");
    assert_eq!(u(&report, &["tx", "sent"]), 2000, "{ctx}");
    let ifs = report["rx"]["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifs.len(), 2);
    for i in ifs {
        let s0 = &i["streams"][0];
        assert_eq!(u(s0, &["expected"]), 1000, "{ctx}");
        assert_eq!(u(s0, &["received"]), 1000, "{ctx}");
        assert_eq!(u(s0, &["lost"]), 0, "{ctx}");
        assert_eq!(u(s0, &["duplicates"]), 0, "{ctx}");
        assert_eq!(u(s0, &["ecn", "ect0"]), 1000, "{ctx}");
        let p50 = s0["delay_us_p50"].as_f64().unwrap();
        assert!(
            p50 > 0.0 && p50 < 1_000_000.0,
            "one-way delay {p50} µs: {ctx}"
        );
        // Stream 1's group has no route at the node.
        let s1 = &i["streams"][1];
        assert_eq!((u(s1, &["received"]), u(s1, &["lost"])), (0, 1000), "{ctx}");
    }
    assert_eq!(u(&report, &["rx", "foreign"]), 0, "{ctx}");
    assert_eq!(u(&stats, &["packets_in"]), 2000, "{ctx}");
    assert_eq!(u(&stats, &["dropped_by_reason", "no_route"]), 1000, "{ctx}");
    assert_eq!(u(&stats, &["packets_out"]), 2000, "{ctx}");
}

/// Two queues, two workers: every port binds queues 0 and 1 (veth pairs made with two queues
/// each), `mtnode gen` sends N packets on queue 0 and then N on queue 1 (on veth a frame sent
/// on queue k arrives on the peer's queue k), and each worker forwards exactly its queue's N to
/// both branches, where the receivers (bound to both queues' traffic in turn) count them.
#[test]
fn two_queues_two_workers() {
    if !require_root("two_queues_two_workers") {
        return;
    }
    let _one = serial();
    let bin = Path::new(env!("CARGO_BIN_EXE_mtnode-cli"));
    let ends = Netns::new("ends");
    let node = Netns::new("node");
    for ns in [&ends, &node] {
        ns.ipv6_off();
    }
    for (a, b) in [("g0", "n_in"), ("s1", "n_b1"), ("s2", "n_b2")] {
        ends.ip([
            "link",
            "add",
            a,
            "mtu",
            XDP_MTU,
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "type",
            "veth",
            "peer",
            "name",
            b,
            "mtu",
            XDP_MTU,
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "netns",
            node.name(),
        ]);
        ends.link_up(a);
        node.link_up(b);
    }
    let conf = node.workdir().join("two-queues.toml");
    let text = config("encap")
        .replace(
            "interface = \"n_in\"",
            "interface = \"n_in\"\nqueue_id = [0, 1]",
        )
        .replace(
            "interface = \"n_b1\"",
            "interface = \"n_b1\"\nqueue_id = [0, 1]",
        )
        .replace(
            "interface = \"n_b2\"",
            "interface = \"n_b2\"\nqueue_id = [0, 1]",
        );
    std::fs::write(&conf, text).unwrap();
    let live = LiveNode::start(&node, bin, &conf);
    const PER_QUEUE: u64 = 500;
    for queue in ["0", "1"] {
        let mut cmd = ends.command([bin.as_os_str()]);
        cmd.args([
            "gen",
            "--tx",
            "g0",
            "--rx",
            "s1,s2",
            "--queue",
            queue,
            "--rate",
            "10000",
            "--count",
            "500",
            "--duration",
            "5",
            "--linger",
            "0.5",
            "--size",
            "200",
            "--json",
        ]);
        let out = mtnode_tests::netns::run_bounded(&mut cmd, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let report: Value = serde_json::from_slice(&out.stdout).expect("gen --json");
        assert_eq!(u(&report, &["tx", "sent"]), PER_QUEUE, "{report:#}");
        for i in report["rx"]["interfaces"].as_array().unwrap() {
            let s = &i["streams"][0];
            assert_eq!(
                (u(s, &["received"]), u(s, &["lost"])),
                (PER_QUEUE, 0),
                "queue {queue}: {report:#}"
            );
        }
    }
    let (stats, log) = live.stop();
    let ctx = format!("{stats:#}\n{log}");
    let workers = stats["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{ctx}");
    for (q, w) in workers.iter().enumerate() {
        assert_eq!(u(w, &["queue_id"]), q as u64, "{ctx}");
        assert_eq!(u(w, &["packets_in"]), PER_QUEUE, "worker {q}: {ctx}");
        assert_eq!(u(w, &["packets_out"]), 2 * PER_QUEUE, "worker {q}: {ctx}");
    }
    assert_eq!(u(&stats, &["packets_in"]), 2 * PER_QUEUE, "{ctx}");
    assert_eq!(stats["umem"]["leaked"].as_i64(), Some(0), "{ctx}");
    assert!(
        !log.contains("generic"),
        "both workers bind native XDP (one program per interface, shared): {log}"
    );
}
