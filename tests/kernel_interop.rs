//! mtnode and the Linux kernel's IOAM in one path (root only): mtnode encapsulates a fixture
//! (replay, node 1), the packets cross the kernel chain `src — r1 — r2 — dst` (r1 = node 101,
//! r2 = node 102, IOAM transit in the kernel), tcpdump captures them at dst, and mtnode
//! decapsulates the capture (replay, node 3). Checked, for the unicast fixture and for the
//! (S,G) multicast fixture routed by smcroute:
//!
//! - one trace per injected packet in `traces.jsonl`, in path order node IDs [1, 101, 102, 3],
//!   hop limits [64, 63, 62, 62] (mtnode in bump mode records the hop limit as it sends/receives
//!   it; the kernel records it after its decrement), the interface IDs each node was given (for
//!   multicast the kernel writes its ingress ID as egress too), POSIX timestamps (µs fraction)
//!   within the test's run and transit delay 0xffffffff from the kernel, RemainingLen 20;
//! - the kernel's slots as decoded by mtnode equal an independent decode of the captured frame;
//! - the decapsulated packets equal the fixture's byte for byte, except the IPv6 hop limit
//!   (64 → 62) and the MAC addresses the last router writes.
//!
//! The `*_live_*` tests run the same path with both mtnode nodes live (`mtnode run` on AF_XDP
//! sockets in src and dst, fed by a generator namespace, delivering to a sink namespace) and
//! check the trace leaving r2, the decapsulated frames, and the nodes' counters and UMEM
//! accounting.
//!
//! Off root they print `SKIPPED (needs root)`; under CI=true they fail instead. Every wait is
//! bounded and the namespaces go away on drop, panics included.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtnode_control::replay::{replay, BATCH_WINDOW_NS};
use mtnode_tests::frames::{multicast_mac, parse_ipv6, parse_prealloc_trace};
use mtnode_tests::netns::{
    capture, inject, require_kernel_mroute, require_root, KernelIoamChain as Chain,
};
use mtnode_tests::pcapio::read_pcap;
use mtnode_tests::scratch::{fixture, inline_config, ENCAP_MCAST_AND_UNICAST_TOML};
use serde_json::Value;

const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);

/// The fixtures' first packet time (pcap-fixtures/README.md): packet i is at this + i ms.
const FIXTURE_EPOCH_SECS: u64 = 1_700_000_000;

/// r2's egress MAC (harness table, link c), the source MAC of every frame dst receives.
const R2_OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x01];
/// dst's MAC, the destination of unicast frames it receives.
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x02];

/// The interface IDs mtnode's example nodes have: encap in/out, decap in/out.
const ENCAP_IF_IDS: (u64, u64) = (10, 11);
const DECAP_IF_IDS: (u64, u64) = (30, 31);

/// Offset of the IPv6 hop limit in an untagged frame.
const HOP_LIMIT_AT: usize = 14 + 7;

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

fn read_traces(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut traces: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("traces.jsonl: {e}: {l}")))
        .collect();
    traces.sort_by_key(|t| u(t, "packet"));
    traces
}

/// What the kernel routers are expected to write as (ingress, egress) IDs.
struct Expect {
    r1_if: (u64, u64),
    r2_if: (u64, u64),
    /// Destination MAC of the frames dst receives.
    dst_mac: [u8; 6],
}

impl Expect {
    /// Unicast: each router writes its ingress and egress interface IDs.
    fn unicast() -> Expect {
        Expect {
            r1_if: (Chain::R1_IN_ID.into(), Chain::R1_OUT_ID.into()),
            r2_if: (Chain::R2_IN_ID.into(), Chain::R2_OUT_ID.into()),
            dst_mac: DST_MAC,
        }
    }

    /// Multicast: the kernel fills its slot at ingress, before the route lookup, so its egress
    /// ID is the ingress interface's.
    fn multicast() -> Expect {
        Expect {
            r1_if: (Chain::R1_IN_ID.into(), Chain::R1_IN_ID.into()),
            r2_if: (Chain::R2_IN_ID.into(), Chain::R2_IN_ID.into()),
            dst_mac: multicast_mac(Chain::MCAST_GROUP),
        }
    }
}

fn run(chain: &Chain, fixture_name: &str, expect: &Expect) {
    let input = fixture(fixture_name);
    let originals = read_pcap(&input).unwrap();
    let n = originals.len();
    assert!(n > 0);
    for (i, f) in originals.iter().enumerate() {
        let p = parse_ipv6(f).expect("fixture is untagged IPv6");
        assert_eq!(p.hop_limit, 64, "fixture packet {i}: hop limit");
        if !p.dst.is_multicast() {
            // The harness gives r1's ingress the fixtures' router MAC: no rewriting needed.
            assert_eq!(
                p.dst_mac,
                parse_mac(Chain::R1_IN_MAC),
                "fixture packet {i}: dst MAC"
            );
        }
    }

    // 1. mtnode encapsulates (node 1). The namespace's timestamps are POSIX, as Linux writes
    // them: RFC 9197 §5 gives a namespace one format, so every node of it agrees.
    let posix = |toml: &str| toml.replace("hops = 8", "hops = 8\ntimestamp_format = \"posix\"");
    let encap = inline_config(
        "encap (mcast + unicast)",
        &posix(ENCAP_MCAST_AND_UNICAST_TOML),
    );
    let encap_dir = chain.src.workdir().join("encap");
    let e = replay(encap, &input, &encap_dir, 0).unwrap();
    assert_eq!(e.counters.encap, n as u64, "encap counter: {:#}", e.stats);
    let encapsulated = encap_dir.join("out.pcap");
    let sent = read_pcap(&encapsulated).unwrap();
    assert_eq!(sent.len(), n);
    for (o, s) in originals.iter().zip(&sent) {
        assert_eq!(
            s.len(),
            o.len() + 176,
            "Hop-by-Hop header of 176 octets added"
        );
    }

    // 2. The kernel chain forwards and fills its slots.
    let filter = format!("ip6 and src host {}", Chain::UNICAST_SRC);
    let cap = capture(&chain.dst, Chain::DST_IF, &filter, n, CAPTURE_TIMEOUT);
    let before = now();
    inject(&chain.src, Chain::SRC_IF, &encapsulated);
    let captured = cap.finish();
    let after = now();
    let received = read_pcap(&captured).unwrap();
    assert_eq!(received.len(), n, "packets captured at dst");

    // 3. mtnode decapsulates (node 3).
    let decap_toml = std::fs::read_to_string(fixture("configs/decap.toml")).unwrap();
    let decap = inline_config(
        "decap (posix)",
        &decap_toml.replace(
            "role = \"decap\"",
            "role = \"decap\"\ntimestamp_format = \"posix\"",
        ),
    );
    let decap_dir = chain.dst.workdir().join("decap");
    let d = replay(decap, &captured, &decap_dir, 0).unwrap();
    assert_eq!(d.counters.decap, n as u64, "decap counter: {:#}", d.stats);
    let traces = read_traces(&decap_dir.join("traces.jsonl"));
    assert_eq!(traces.len(), n, "one trace per injected packet");

    let in_window = |secs: u64, ns: u64| {
        let t = Duration::from_secs(secs) + Duration::from_nanos(ns);
        t + Duration::from_secs(1) >= before && t <= after + Duration::from_secs(1)
    };

    for (i, t) in traces.iter().enumerate() {
        let ctx = format!("{fixture_name} packet {i}: {t}");
        assert_eq!(u(t, "packet"), i as u64, "{ctx}");
        assert_eq!(u(t, "namespace"), 1, "{ctx}");
        assert_eq!(t["trace_type"], "0xf80000", "{ctx}");
        assert_eq!(u(t, "node_len"), 5, "{ctx}");
        assert_eq!(u(t, "flags"), 0, "{ctx}");
        assert_eq!(t["overflow"], false, "{ctx}");
        assert_eq!(t["truncated"], false, "{ctx}");
        // 8 hops of 5 words, 4 written.
        assert_eq!(u(t, "remaining_len"), 40 - 4 * 5, "{ctx}");

        let hops = t["hops"].as_array().expect("hops");
        let field = |k: &str| hops.iter().map(|h| u(h, k)).collect::<Vec<_>>();
        assert_eq!(
            field("node_id"),
            [
                1,
                u64::from(Chain::R1_NODE_ID),
                u64::from(Chain::R2_NODE_ID),
                3
            ],
            "{ctx}"
        );
        assert_eq!(field("hop_lim"), [64, 63, 62, 62], "{ctx}");
        let ifs: Vec<(u64, u64)> = field("ingress_if")
            .into_iter()
            .zip(field("egress_if"))
            .collect();
        assert_eq!(
            ifs,
            [ENCAP_IF_IDS, expect.r1_if, expect.r2_if, DECAP_IF_IDS],
            "{ctx}"
        );

        // mtnode's encap hop: POSIX time of the packet's pcap record, delay within one batch.
        let (e0, r1, r2, d3) = (&hops[0], &hops[1], &hops[2], &hops[3]);
        assert_eq!(u(e0, "timestamp_secs"), FIXTURE_EPOCH_SECS, "{ctx}");
        assert_eq!(u(e0, "timestamp_frac"), i as u64 * 1_000, "{ctx}");
        // One format for the namespace: every hop's timestamp_ns is seconds + µs.
        for h in hops {
            assert_eq!(
                u(h, "timestamp_ns"),
                u(h, "timestamp_secs") * 1_000_000_000 + u(h, "timestamp_frac") * 1_000,
                "{ctx}"
            );
        }
        assert!(u(e0, "transit_delay_ns") <= BATCH_WINDOW_NS, "{ctx}");
        // The kernel's hops: POSIX seconds + µs of this run, no transit delay.
        for k in [r1, r2] {
            assert!(u(k, "timestamp_frac") < 1_000_000, "µs fraction: {ctx}");
            assert!(
                in_window(u(k, "timestamp_secs"), u(k, "timestamp_frac") * 1_000),
                "kernel timestamp outside [{before:?}, {after:?}]: {ctx}"
            );
            assert_eq!(u(k, "transit_delay_ns"), 0xffff_ffff, "{ctx}");
        }
        let micros = |h: &Value| u(h, "timestamp_secs") * 1_000_000 + u(h, "timestamp_frac");
        assert!(micros(r1) <= micros(r2), "r1 stamps before r2: {ctx}");
        // mtnode's decap hop: POSIX time of the capture record.
        assert!(u(d3, "timestamp_frac") < 1_000_000, "{ctx}");
        assert!(
            in_window(u(d3, "timestamp_secs"), u(d3, "timestamp_frac") * 1_000),
            "decap timestamp outside [{before:?}, {after:?}]: {ctx}"
        );

        // What mtnode decoded of the received frame equals an independent decode of it.
        let g = parse_ipv6(&received[i]).expect("IPv6 at dst");
        assert_eq!(g.hop_limit, 62, "{ctx}");
        let raw =
            parse_prealloc_trace(g.hop_by_hop.expect("Hop-by-Hop at dst")).expect("trace at dst");
        assert_eq!(
            (raw.namespace, raw.node_len, raw.flags, raw.remaining_len),
            (1, 5, 0, 25),
            "{ctx}"
        );
        let mut path: Vec<&[u8]> = raw.filled_nodes();
        path.reverse();
        assert_eq!(path.len(), 3, "{ctx}");
        for (slot, hop) in path.iter().zip(hops) {
            let w = |k: usize| {
                u64::from(u32::from_be_bytes(
                    slot[4 * k..4 * k + 4].try_into().unwrap(),
                ))
            };
            let decoded = [
                u64::from(slot[0]),
                w(0) & 0xff_ffff,
                w(1) >> 16,
                w(1) & 0xffff,
                w(2),
                w(3),
                w(4),
            ];
            let keys = [
                "hop_lim",
                "node_id",
                "ingress_if",
                "egress_if",
                "timestamp_secs",
                "timestamp_frac",
                "transit_delay_ns",
            ];
            let mtnode: Vec<u64> = keys.iter().map(|k| u(hop, k)).collect();
            assert_eq!(mtnode, decoded, "{keys:?}: {ctx}");
        }
    }

    // 4. Decapsulated = original, but for the hop limit and the last router's MACs.
    assert_eq!(
        read_pcap(&decap_dir.join("in.pcap")).unwrap().len(),
        0,
        "nothing sent back"
    );
    let out = read_pcap(&decap_dir.join("out.pcap")).unwrap();
    assert_eq!(out.len(), n, "decapsulated packets");
    for (i, (orig, got)) in originals.iter().zip(&out).enumerate() {
        let mut want = orig.clone();
        want[0..6].copy_from_slice(&expect.dst_mac);
        want[6..12].copy_from_slice(&R2_OUT_MAC);
        want[HOP_LIMIT_AT] = 62;
        if *got != want {
            let first = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "{fixture_name} packet {i}: decapsulated frame differs from the fixture's \
                 (lengths {} vs {} expected; first difference at octet {first}: {:02x?} vs {:02x?})",
                got.len(),
                want.len(),
                got.get(first..(first + 8).min(got.len())),
                want.get(first..(first + 8).min(want.len())),
            );
        }
    }
    eprintln!(
        "{fixture_name}: {n} packets, mtnode encap → kernel r1, r2 → mtnode decap; traces: {}",
        traces
            .first()
            .map(|t| t["hops"].to_string())
            .unwrap_or_default()
    );
}

#[test]
fn unicast_mtnode_encap_kernel_transit_mtnode_decap() {
    if !require_root("unicast_mtnode_encap_kernel_transit_mtnode_decap") {
        return;
    }
    let chain = Chain::new();
    run(&chain, "ipv6-unicast.pcap", &Expect::unicast());
}

/// For multicast the kernel fills its slot at ingress, before the route lookup: egress ID =
/// ingress ID.
#[test]
fn multicast_mtnode_encap_kernel_transit_mtnode_decap() {
    if !require_root("multicast_mtnode_encap_kernel_transit_mtnode_decap")
        || !require_kernel_mroute("multicast_mtnode_encap_kernel_transit_mtnode_decap")
    {
        return;
    }
    let chain = Chain::with_multicast();
    run(&chain, "ipv6-mcast-ssm.pcap", &Expect::multicast());
}

// ---------------------------------------------------------------------------------------------
// The same path with mtnode live at both ends: `gen — [encap node] — r1 — r2 — [decap node] —
// sink`, the encap node in src on AF_XDP sockets (its `in` port on a veth from a generator
// namespace, its `out` port on s0), the decap node in dst (in = d0, out = a veth to a sink
// namespace). tcpdump on r2's egress sees the trace as the decap node receives it; the sink
// sees what the decap node sends.

/// The encap node, live: namespace 1 traces on the fixtures' traffic only (the routers' own
/// ND and MLD, which reach its `out` socket too, are left alone).
fn live_encap_toml() -> String {
    r#"
[node]
name = "encap"
node_id = 1
forwarding = "bump"
malformed = "forward"

[[port]]
name = "in"
if_id = 10
interface = "e_in"

[[port]]
name = "out"
if_id = 11
interface = "s0"

[engine]
idle_sleep_us = 20

[[namespace]]
id = 1
role = "encap"
trace_type = 0xF80000
hops = 8
timestamp_format = "posix"

[[namespace.select]]
dst = "ff3e::/16"

[[namespace.select]]
dst = "2001:db8:2::/64"
"#
    .to_string()
}

fn live_decap_toml() -> String {
    r#"
[node]
name = "decap"
node_id = 3
forwarding = "bump"
malformed = "forward"

[[port]]
name = "in"
if_id = 30
interface = "d0"

[[port]]
name = "out"
if_id = 31
interface = "d_out"

[engine]
idle_sleep_us = 20

[[namespace]]
id = 1
role = "decap"
timestamp_format = "posix"
"#
    .to_string()
}

fn run_live(chain: &Chain, fixture_name: &str, expect: &Expect) {
    use mtnode_tests::netns::{veth, LiveNode, Netns};
    let bin = Path::new(env!("CARGO_BIN_EXE_mtnode-cli"));
    let originals = read_pcap(&fixture(fixture_name)).unwrap();
    let n = originals.len();
    let gen = Netns::new("gen");
    let sink = Netns::new("sink");
    for ns in [&gen, &sink] {
        ns.ipv6_off();
    }
    veth(&gen, "g0", &chain.src, "e_in");
    veth(&chain.dst, "d_out", &sink, "sk0");

    let write = |ns: &Netns, name: &str, text: String| {
        let p = ns.workdir().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let decap = LiveNode::start(
        &chain.dst,
        bin,
        &write(&chain.dst, "decap.toml", live_decap_toml()),
    );
    let encap = LiveNode::start(
        &chain.src,
        bin,
        &write(&chain.src, "encap.toml", live_encap_toml()),
    );

    let filter = format!("ip6 and src host {}", Chain::UNICAST_SRC);
    let mid = capture(&chain.r2, Chain::R2_OUT, &filter, n, CAPTURE_TIMEOUT);
    let out = capture(&sink, "sk0", &filter, n, CAPTURE_TIMEOUT);
    let before = now();
    inject(&gen, "g0", &fixture(fixture_name));
    let transited = read_pcap(&mid.finish()).unwrap();
    let delivered = read_pcap(&out.finish()).unwrap();
    let after = now();
    let (es, elog) = encap.stop();
    let (ds, dlog) = decap.stop();
    let ctx = format!("{fixture_name}: encap {es:#}\n{elog}\ndecap {ds:#}\n{dlog}");

    // The nodes' own accounts.
    assert_eq!(u(&es["roles"], "encap"), n as u64, "{ctx}");
    assert_eq!(u(&ds["roles"], "decap"), n as u64, "{ctx}");
    assert_eq!(u(&ds, "traces"), n as u64, "{ctx}");
    for s in [&es, &ds] {
        assert_eq!(s["umem"]["leaked"].as_i64(), Some(0), "{ctx}");
        assert_eq!(u(&s["umem"], "in_tx"), 0, "{ctx}");
    }

    // Between r2 and the decap node: mtnode's entry and both kernels', in path order.
    assert_eq!(transited.len(), n, "packets seen leaving r2: {ctx}");
    let in_window = |secs: u64, micros: u64| {
        let t = Duration::from_secs(secs) + Duration::from_micros(micros);
        t + Duration::from_secs(1) >= before && t <= after + Duration::from_secs(1)
    };
    for (i, f) in transited.iter().enumerate() {
        let g = parse_ipv6(f).expect("IPv6 leaving r2");
        assert_eq!(g.hop_limit, 62, "packet {i}");
        let raw = parse_prealloc_trace(g.hop_by_hop.expect("Hop-by-Hop leaving r2"))
            .expect("trace leaving r2");
        assert_eq!(
            (raw.namespace, raw.node_len, raw.flags, raw.remaining_len),
            (1, 5, 0, 25),
            "packet {i}"
        );
        let mut path = raw.filled_nodes();
        path.reverse();
        let w = |slot: &[u8], k: usize| {
            u64::from(u32::from_be_bytes(
                slot[4 * k..4 * k + 4].try_into().unwrap(),
            ))
        };
        let ids: Vec<(u64, u64, u64, u64)> = path
            .iter()
            .map(|s| {
                (
                    u64::from(s[0]),
                    w(s, 0) & 0xff_ffff,
                    w(s, 1) >> 16,
                    w(s, 1) & 0xffff,
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                (64, 1, ENCAP_IF_IDS.0, ENCAP_IF_IDS.1),
                (
                    63,
                    u64::from(Chain::R1_NODE_ID),
                    expect.r1_if.0,
                    expect.r1_if.1
                ),
                (
                    62,
                    u64::from(Chain::R2_NODE_ID),
                    expect.r2_if.0,
                    expect.r2_if.1
                ),
            ],
            "packet {i}: (hop limit, node, ingress, egress) per hop"
        );
        // mtnode's live encap hop: POSIX seconds + µs of this run, delay within a batch.
        let e0 = path[0];
        assert!(w(e0, 3) < 1_000_000, "packet {i}: µs fraction");
        assert!(in_window(w(e0, 2), w(e0, 3)), "packet {i}: encap timestamp");
        assert!(w(e0, 4) < 1_000_000_000, "packet {i}: transit delay");
        assert!(
            w(e0, 2) * 1_000_000 + w(e0, 3) <= w(path[1], 2) * 1_000_000 + w(path[1], 3),
            "packet {i}: mtnode stamps before r1"
        );
    }

    // What the decap node sent: the fixture's packets, but for the hop limit and r2's MACs.
    assert_eq!(delivered.len(), n, "packets delivered to the sink: {ctx}");
    for (i, (orig, got)) in originals.iter().zip(&delivered).enumerate() {
        let mut want = orig.clone();
        want[0..6].copy_from_slice(&expect.dst_mac);
        want[6..12].copy_from_slice(&R2_OUT_MAC);
        want[HOP_LIMIT_AT] = 62;
        assert_eq!(got, &want, "{fixture_name} packet {i}: decapsulated frame");
    }
    eprintln!(
        "{fixture_name}: {n} packets, live mtnode encap → kernel r1, r2 → live mtnode decap \
         (encap {}, decap {})",
        es["workers"][0]["mode"], ds["workers"][0]["mode"]
    );
}

#[test]
fn unicast_live_mtnode_at_both_ends() {
    if !require_root("unicast_live_mtnode_at_both_ends") {
        return;
    }
    let chain = Chain::new();
    run_live(&chain, "ipv6-unicast.pcap", &Expect::unicast());
}

#[test]
fn multicast_live_mtnode_at_both_ends() {
    if !require_root("multicast_live_mtnode_at_both_ends")
        || !require_kernel_mroute("multicast_live_mtnode_at_both_ends")
    {
        return;
    }
    let chain = Chain::with_multicast();
    run_live(&chain, "ipv6-mcast-ssm.pcap", &Expect::multicast());
}
