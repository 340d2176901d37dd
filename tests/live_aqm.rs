//! A managed egress queue on a live node (root only), on AF_XDP sockets and (with the `dpdk`
//! feature) on DPDK `net_af_packet` devices over the same veths: `mtnode run` forwards a PIM
//! (S,G) stream of ECT(0) packets into a port shaped to 20 Mb/s with PIE and ECN, offered at
//! about twice that rate. The sink captures what leaves.
//!
//! Checked: the node's queue accounts for every packet (enqueued + early + overflow drops =
//! packets in; dequeued = enqueued once drained); exactly the packets the queue says it marked
//! arrive with CE, the rest ECT(0); the output rate is the shaper's; the node's IOAM entries
//! carry the queue depth and a transit delay that includes the queueing.
//!
//! Off root it prints `SKIPPED (needs root)`; under CI=true it fails instead.

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use mtnode_dataplane::ioam::{find_trace, Hops};
use mtnode_dataplane::wire::IoamTrace;
use mtnode_tests::frames::{ioam_prealloc_options, Udp6};
use mtnode_tests::netns::{capture, inject_pps, line, require_root, Line, LiveNode};
use mtnode_tests::pcapio::{read_pcap_timed, write_pcap};
use serde_json::Value;

const N: usize = 6000;
const PPS: u32 = 5000;
/// 1000-octet frames at 5000/s: 40 Mb/s offered into 20 Mb/s.
const FRAME: usize = 1000;
const RATE_MBPS: f64 = 20.0;
const SOURCE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const GROUP: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);
/// Hop limit + node ID, interface IDs, both timestamps, transit delay, queue depth.
const TRACE_TYPE: u32 = 0xFA_0000;
const NODE_ID: u32 = 77;

/// Where the node's ports live.
enum Backend {
    Afxdp,
    /// With the EAL's file prefix.
    #[cfg(feature = "dpdk")]
    Dpdk(String),
}

fn config(backend: &Backend) -> String {
    let (port_in, port_out, engine) = match backend {
        Backend::Afxdp => (
            "interface = \"n_in\"".to_owned(),
            "interface = \"n_out\"".to_owned(),
            "[engine]\nbatch_size = 32\nidle_sleep_us = 20\n".to_owned(),
        ),
        #[cfg(feature = "dpdk")]
        Backend::Dpdk(prefix) => (
            "backend = \"dpdk\"\ndpdk_port = \"net_af_packet0\"".to_owned(),
            "backend = \"dpdk\"\ndpdk_port = \"net_af_packet1\"".to_owned(),
            format!(
                "[dpdk]\neal_args = [\"-l\", \"0\", \"--no-huge\", \"--no-pci\", \"--no-shconf\", \"--no-telemetry\", \
                 \"-m\", \"128\", \"--file-prefix\", \"{prefix}\", \"--log-level\", \
                 \"lib.eal:error\", \"--vdev\", \"net_af_packet0,iface=n_in\", \"--vdev\", \
                 \"net_af_packet1,iface=n_out\"]\nmbufs = 4095\nbatch_size = 32\nidle_sleep_us = 20\n",
            ),
        ),
    };
    format!(
        r#"
[node]
name = "aqm"
node_id = {NODE_ID}
forwarding = "route"

[[port]]
name = "in"
if_id = 40
{port_in}

[[port]]
name = "out"
if_id = 41
{port_out}
[port.queue]
rate_mbps = {RATE_MBPS}
burst_bytes = 3000
aqm = "pie"
ecn = true
target_ms = 5.0
limit_packets = 400

[[mroute]]
source = "{SOURCE}"
group = "{GROUP}"
iif = "in"
oil = ["out"]

[[namespace]]
id = 1
role = "transit"
trace_type = 0x{TRACE_TYPE:06X}

{engine}"#
    )
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v:#}"))
}

#[test]
fn pie_marks_and_shapes_on_a_live_port() {
    if !require_root("pie_marks_and_shapes_on_a_live_port") {
        return;
    }
    check(Backend::Afxdp);
}

/// The same queue on DPDK: the DPDK engine runs the same egress queues as the AF_XDP one.
#[cfg(feature = "dpdk")]
#[test]
fn pie_marks_and_shapes_on_a_live_dpdk_port() {
    if !require_root("pie_marks_and_shapes_on_a_live_dpdk_port") {
        return;
    }
    check(Backend::Dpdk(format!("mtn-aqm-{}", std::process::id())));
}

/// One at a time: the checks are about rates, and two nodes shaping at once on a 2-core
/// machine would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Line { gen, node, sink } = line();
    let conf = node.workdir().join("aqm.toml");
    std::fs::write(&conf, config(&backend)).unwrap();

    // ECT(0) packets with an empty 8-hop trace of 6 words a hop, sequence number first.
    let options = ioam_prealloc_options(1, 6, TRACE_TYPE, 48);
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let probe = Udp6::new(SOURCE, GROUP, &[]).with_hop_by_hop(options.clone());
            let mut payload = vec![0u8; FRAME - probe.emit().len()];
            payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
            let mut f = Udp6::new(SOURCE, GROUP, &payload)
                .with_hop_by_hop(options.clone())
                .emit();
            f[15] |= 0x20; // traffic class ECN bits: ECT(0)
            f
        })
        .collect();
    assert_eq!(sent[0].len(), FRAME);
    let input = gen.workdir().join("stream.pcap");
    write_pcap(&input, &sent).unwrap();

    let live = LiveNode::start(&node, Path::new(env!("CARGO_BIN_EXE_mtnode-cli")), &conf);
    let cap = capture(
        &sink,
        "s0",
        &format!("ip6 and src host {SOURCE}"),
        N,
        // Fewer than N arrive, so the capture ends by time: the stream lasts 1.2 s.
        Duration::from_secs(5),
    );
    inject_pps(&gen, "g0", &input, PPS);
    // Let the queue drain at 20 Mb/s (400 packets take 160 ms).
    std::thread::sleep(Duration::from_millis(500));
    let (stats, log) = live.stop();
    let timed = read_pcap_timed(&cap.finish()).unwrap();
    let frames: Vec<&[u8]> = timed.iter().map(|(_, f)| &f[..]).collect();
    let ctx = format!("{stats:#}\n{log}");

    let q = &stats["queues"]["out"];
    let (enq, marked) = (u(q, &["enqueued"]), u(q, &["ecn_marked"]));
    let (early, overflow) = (u(q, &["early_drops"]), u(q, &["overflow_drops"]));
    assert_eq!(u(&stats, &["packets_in"]), N as u64, "{ctx}");
    assert_eq!(
        enq + early + overflow,
        N as u64,
        "every packet accounted for: {ctx}"
    );
    assert_eq!(u(q, &["dequeued"]), enq, "drained: {ctx}");
    assert_eq!(u(q, &["depth"]), 0, "{ctx}");
    // RFC 8033 §5.1: above a 10 % drop probability PIE drops even ECT packets; a 2x overload
    // gets there, so early drops are expected besides the marks.
    assert!(marked > 0, "PIE marked under a 2x overload: {ctx}");
    assert!(
        enq < N as u64,
        "the shaper made a queue that overflowed or marked: {ctx}"
    );

    assert_eq!(
        frames.len() as u64,
        enq,
        "everything dequeued arrives: {ctx}"
    );
    let ce = frames.iter().filter(|f| (f[15] >> 4) & 3 == 3).count() as u64;
    let ect0 = frames.iter().filter(|f| (f[15] >> 4) & 3 == 2).count() as u64;
    assert_eq!(
        (ce, ect0),
        (marked, enq - marked),
        "CE exactly where PIE marked"
    );

    // The shaper's rate, over the middle of the run (the first burst drains at line rate).
    let (a, b) = (&timed[timed.len() / 10], &timed[timed.len() * 9 / 10]);
    let octets: usize = timed[timed.len() / 10..timed.len() * 9 / 10]
        .iter()
        .map(|(_, f)| f.len())
        .sum();
    let mbps = octets as f64 * 8.0 / (b.0 - a.0).as_secs_f64() / 1e6;
    assert!(
        (RATE_MBPS * 0.85..=RATE_MBPS * 1.1).contains(&mbps),
        "output rate {mbps:.1} Mb/s, shaper {RATE_MBPS}"
    );

    // IOAM: the node's entry carries the queue depth at enqueue and the queueing delay.
    let mut depths = Vec::new();
    let mut delays = Vec::new();
    for f in &frames {
        let loc = find_trace(f, 14 + 40).expect("Hop-by-Hop").expect("trace");
        let trace = IoamTrace::new_checked(&f[loc.trace_range()]).expect("trace");
        let h = Hops::new(trace).next().expect("the node's entry");
        assert_eq!(h.node_id, Some(NODE_ID));
        depths.push(h.queue_depth.expect("queue depth"));
        delays.push(h.transit_delay.expect("transit delay"));
    }
    depths.sort_unstable();
    delays.sort_unstable();
    let p99 = |v: &[u32]| v[v.len() * 99 / 100];
    assert!(
        p99(&depths) >= 10,
        "a standing queue: depth p99 {}",
        p99(&depths)
    );
    assert!(
        p99(&delays) >= 2_000_000,
        "queueing shows in the transit delay: p99 {} ns",
        p99(&delays)
    );

    eprintln!(
        "{N} in, {enq} queued ({marked} CE), {overflow} overflow drops, {mbps:.1} Mb/s out; IOAM \
         queue depth p99 {}, transit delay p99 {} µs",
        p99(&depths),
        p99(&delays) / 1000
    );
}
