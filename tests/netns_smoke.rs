//! Root-only smoke tests of the netns harness against the Linux kernel: unicast and multicast
//! forwarding through the two-router chain, and the kernel's IOAM transit behaviour that the
//! interop tests will hold mtnode to. Off root they print `SKIPPED (needs root)`; under CI=true
//! they fail instead.

use std::net::Ipv6Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtnode_tests::frames::{
    ioam_prealloc_options, multicast_mac, parse_ipv6, parse_prealloc_trace, Udp6, IPV6_HEADER_LEN,
};
use mtnode_tests::netns::{
    capture, inject, require_kernel_mroute, require_root, KernelIoamChain as Chain, Netns,
};
use mtnode_tests::pcapio::write_pcap;

const CAPTURE_TIMEOUT: Duration = Duration::from_secs(5);

/// Replays `frames` on src's interface and returns what dst's interface received from the
/// fixtures' source address.
fn send_through(chain: &Chain, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let pcap = chain.src.workdir().join("sent.pcap");
    write_pcap(&pcap, frames).unwrap();
    let filter = format!("ip6 and src host {}", Chain::UNICAST_SRC);
    let cap = capture(
        &chain.dst,
        Chain::DST_IF,
        &filter,
        frames.len(),
        CAPTURE_TIMEOUT,
    );
    inject(&chain.src, Chain::SRC_IF, &pcap);
    cap.finish_frames()
}

fn udp_frames(dst: Ipv6Addr, n: usize, hop_by_hop: Option<Vec<u8>>) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut p = Udp6::new(Chain::UNICAST_SRC, dst, format!("mtnode {i}").as_bytes());
            p.hop_by_hop = hop_by_hop.clone();
            p.emit()
        })
        .collect()
}

/// Every received packet is the sent one, byte for byte, but for the hop limit.
fn assert_forwarded_unchanged(sent: &[Vec<u8>], got: &[Vec<u8>], dst_mac: Option<[u8; 6]>) {
    assert_eq!(got.len(), sent.len(), "packets at dst");
    for (s, g) in sent.iter().zip(got) {
        let s = parse_ipv6(s).unwrap();
        let g = parse_ipv6(g).expect("IPv6 at dst");
        assert_eq!(g.hop_limit, s.hop_limit - 2, "hop limit after two routers");
        let mut expected = s.packet.to_vec();
        expected[7] = s.hop_limit - 2;
        assert_eq!(g.packet, &expected[..]);
        if let Some(mac) = dst_mac {
            assert_eq!(g.dst_mac, mac);
        }
    }
}

#[test]
fn unicast_crosses_two_kernel_routers() {
    if !require_root("unicast_crosses_two_kernel_routers") {
        return;
    }
    let chain = Chain::new();
    let sent = udp_frames(Chain::UNICAST_DST, 5, None);
    let got = send_through(&chain, &sent);
    // r2's egress MAC → dst's MAC, from the harness's neighbor entries.
    assert_forwarded_unchanged(&sent, &got, Some([0x02, 0, 0, 0, 0x0c, 0x02]));
}

#[test]
fn multicast_crosses_two_smcroute_branches() {
    if !require_root("multicast_crosses_two_smcroute_branches")
        || !require_kernel_mroute("multicast_crosses_two_smcroute_branches")
    {
        return;
    }
    let chain = Chain::with_multicast();
    let sent = udp_frames(Chain::MCAST_GROUP, 5, None);
    let got = send_through(&chain, &sent);
    assert_forwarded_unchanged(&sent, &got, Some(multicast_mac(Chain::MCAST_GROUP)));
}

/// One node's data for trace type 0xF80000 (bits 0–4), RFC 9197 §4.4.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    hop_limit: u8,
    node_id: u32,
    ingress_if: u16,
    egress_if: u16,
    ts_seconds: u32,
    ts_fraction: u32,
    transit_delay: u32,
}

impl Slot {
    fn parse(b: &[u8]) -> Slot {
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        Slot {
            hop_limit: b[0],
            node_id: u32_at(0) & 0x00ff_ffff,
            ingress_if: u16::from_be_bytes([b[4], b[5]]),
            egress_if: u16::from_be_bytes([b[6], b[7]]),
            ts_seconds: u32_at(8),
            ts_fraction: u32_at(12),
            transit_delay: u32_at(16),
        }
    }

    fn micros(&self) -> u64 {
        u64::from(self.ts_seconds) * 1_000_000 + u64::from(self.ts_fraction)
    }
}

const TRACE_TYPE: u32 = 0xF8_0000;
const NODE_LEN: u8 = 5;
const REMAINING_LEN: u8 = 40;

/// Sends packets to `dst` with an empty 8-slot trace through the chain and checks what r1 and
/// r2 wrote, given the (ingress, egress) interface IDs expected of each router.
fn check_kernel_trace(chain: &Chain, dst: Ipv6Addr, if_ids: [(u16, u16); 2]) {
    let options = ioam_prealloc_options(Chain::IOAM_NAMESPACE, NODE_LEN, TRACE_TYPE, REMAINING_LEN);
    let sent = udp_frames(dst, 3, Some(options));
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let got = send_through(chain, &sent);
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(got.len(), sent.len(), "packets at dst");

    for (s, g) in sent.iter().zip(&got) {
        let s = parse_ipv6(s).unwrap();
        let g = parse_ipv6(g).expect("IPv6 at dst");
        assert_eq!(g.hop_limit, s.hop_limit - 2);
        let trace =
            parse_prealloc_trace(g.hop_by_hop.expect("Hop-by-Hop kept")).expect("trace kept");
        eprintln!(
            "trace: ns {} node_len {} flags {:#x} remaining_len {} type {:#08x} (option at {})",
            trace.namespace,
            trace.node_len,
            trace.flags,
            trace.remaining_len,
            trace.trace_type,
            trace.option_offset
        );
        assert_eq!(trace.option_offset, 4);
        assert_eq!(trace.namespace, Chain::IOAM_NAMESPACE);
        assert_eq!(trace.node_len, NODE_LEN);
        assert_eq!(trace.flags, 0);
        assert_eq!(trace.remaining_len, REMAINING_LEN - 2 * NODE_LEN);
        assert_eq!(trace.trace_type, TRACE_TYPE);
        let free = usize::from(trace.remaining_len) * 4;
        assert!(
            trace.data[..free].iter().all(|&b| b == 0),
            "free space untouched"
        );

        let nodes = trace.filled_nodes();
        assert_eq!(nodes.len(), 2, "two slots filled");
        let (r2, r1) = (Slot::parse(nodes[0]), Slot::parse(nodes[1]));
        eprintln!("r2 slot (offset {free}): {r2:?}");
        eprintln!(
            "r1 slot (offset {}): {r1:?}",
            free + 4 * usize::from(NODE_LEN)
        );

        // The kernel writes the hop limit after its own decrement.
        assert_eq!(
            (r1.hop_limit, r1.node_id),
            (s.hop_limit - 1, Chain::R1_NODE_ID)
        );
        assert_eq!(
            (r2.hop_limit, r2.node_id),
            (s.hop_limit - 2, Chain::R2_NODE_ID)
        );
        assert_eq!((r1.ingress_if, r1.egress_if), if_ids[0]);
        assert_eq!((r2.ingress_if, r2.egress_if), if_ids[1]);
        for slot in [r1, r2] {
            // POSIX seconds and microseconds of the receive time.
            assert!(slot.ts_fraction < 1_000_000, "fraction in µs: {slot:x?}");
            let t = Duration::from_micros(slot.micros());
            assert!(
                t + Duration::from_secs(1) >= before && t <= after + Duration::from_secs(1),
                "timestamp {t:?} outside [{before:?}, {after:?}]"
            );
            assert_eq!(slot.transit_delay, 0xffff_ffff, "transit delay unavailable");
        }
        assert!(r1.micros() <= r2.micros(), "r1 stamps before r2");

        // A transit node changes only Flags, RemainingLen and its own slot (RFC 9197 §4.4).
        let mut expected = s.packet.to_vec();
        expected[7] = s.hop_limit - 2;
        let trace_hdr = IPV6_HEADER_LEN + trace.option_offset + 4;
        expected[trace_hdr + 3] = trace.remaining_len;
        let slots = trace_hdr + 8 + free;
        let end = trace_hdr + 8 + trace.data.len();
        expected[slots..end].copy_from_slice(&g.packet[slots..end]);
        assert_eq!(g.packet, &expected[..]);
    }
}

#[test]
fn kernel_fills_ioam_trace_on_unicast() {
    if !require_root("kernel_fills_ioam_trace_on_unicast") {
        return;
    }
    let chain = Chain::new();
    check_kernel_trace(
        &chain,
        Chain::UNICAST_DST,
        [
            (Chain::R1_IN_ID, Chain::R1_OUT_ID),
            (Chain::R2_IN_ID, Chain::R2_OUT_ID),
        ],
    );
}

/// The kernel fills the trace at ingress, before the multicast route is looked up: the egress
/// ID it writes is the ingress interface's, so every replica would carry the same data.
#[test]
fn kernel_fills_ioam_trace_on_multicast_with_ingress_as_egress() {
    if !require_root("kernel_fills_ioam_trace_on_multicast_with_ingress_as_egress")
        || !require_kernel_mroute("kernel_fills_ioam_trace_on_multicast_with_ingress_as_egress")
    {
        return;
    }
    let chain = Chain::with_multicast();
    check_kernel_trace(
        &chain,
        Chain::MCAST_GROUP,
        [
            (Chain::R1_IN_ID, Chain::R1_IN_ID),
            (Chain::R2_IN_ID, Chain::R2_IN_ID),
        ],
    );
}

/// A capture that never sees its count still ends, at its timeout, with what it has.
#[test]
fn capture_gives_up_at_its_timeout() {
    if !require_root("capture_gives_up_at_its_timeout") {
        return;
    }
    let ns = Netns::new("idle");
    let start = std::time::Instant::now();
    let cap = capture(&ns, "lo", "udp", 1, Duration::from_millis(500));
    let frames = cap.finish_frames();
    let took = start.elapsed();
    assert!(frames.is_empty());
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
