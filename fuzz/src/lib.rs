//! The checks behind mtnode's fuzz targets, shared with the stable-toolchain property test
//! `dataplane/tests/mutate.rs` (which includes this file with `#[path]`), so that libFuzzer on
//! nightly and proptest on stable hold the data path to exactly the same promises:
//!
//! - no input panics any view, `Repr`, IOAM function or pipeline;
//! - a `Repr` that parses re-emits to bytes that parse back to the same `Repr`;
//! - recording keeps a trace valid, and `Hops` ends within the trace data;
//! - every packet of a batch, replicas included, gets a verdict, and the counters add up:
//!   `packets_out + dropped − dropped[no_buffer] = arrivals + replicas`, `packets_in = arrivals`
//!   (see [`check_batch`]); postcards come from the node's namespaces, in their modes;
//! - a malformed packet is dropped by policy or forwarded untouched (a routing node's hop-limit
//!   decrement aside), never otherwise rewritten;
//! - encapsulate → transit → decapsulate gives the original bytes back (hop limits aside), in
//!   trace mode, across a PIM branch point in per-section mode, in per-hop (DEX) mode across a
//!   branch point, and through a BIER BFR and BFER; branch IDs and sections come out as sent.
//!
//! It never asserts *which* error a malformed input gets: that is the unit tests' job.
#![forbid(unsafe_code)]

use std::sync::{Arc, OnceLock};

use mtnode_dataplane::branch::{self, BranchEncoding};
use mtnode_dataplane::export::{BranchId, Postcard, PostcardKind, PostcardRing, MAX_POSTCARD_DATA};
use mtnode_dataplane::frame::{Frame, HEADROOM};
use mtnode_dataplane::ioam::{
    find_trace, record, EncapPlan, HopFacts, Hops, NodeData, Recorded, Role, Snapshot,
    TimestampFormat,
};
use mtnode_dataplane::mcast::{self, Bift, Neighbor, Oif, PimTable, SgRoute};
use mtnode_dataplane::pipeline::{
    Counters, DexConfig, DropReason, Forwarding, MalformedPolicy, Namespace, NodeConfig, Packet,
    Pipeline, Port, Prefix, Route, Selector, Sink, TraceEvent, TraceMode, Verdict, MAX_PORTS,
};
use mtnode_dataplane::wire::ioam::{flags, MAX_TRACE_DATA};
use mtnode_dataplane::wire::ipv6::next_header;
use mtnode_dataplane::wire::{
    bier, BierHeader, BierRepr, EtherType, EthernetFrame, EthernetRepr, IoamDex, IoamDexRepr,
    IoamTrace, IoamTraceRepr, Ipv4Packet, Ipv4Repr, Ipv6ExtHeader, Ipv6ExtHeaderRepr,
    Ipv6OptionRepr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};

/// The trace every encapsulating node here inserts: bits 0–4 (hop limit and node ID,
/// interfaces, both timestamp words, transit delay), as in the fixtures and Linux's default.
pub const TRACE_TYPE: u32 = 0xf8_0000;
/// Hops the encapsulating node pre-allocates room for.
pub const HOPS: usize = 8;
/// The one namespace every node here shares.
pub const NAMESPACE: u16 = 1;
/// Receive time of every packet; the batch runs 1 µs later.
pub const RX_NS: u64 = 1_700_000_000_000_000_000;

/// Largest Hop-by-Hop or Destination Options header: Hdr Ext Len is one octet.
const MAX_EXT_HEADER: usize = 256 * 8;

// ---------------------------------------------------------------------------------------------
// Wire views

/// Offsets a walk from the Ethernet header finds, through checked views only: the network
/// header, each Hop-by-Hop / Destination Options header, the data of each IOAM option in them,
/// and the transport header.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Layout {
    pub l3: Option<usize>,
    pub ext: Vec<usize>,
    pub ioam_data: Vec<usize>,
    pub l4: Option<usize>,
}

/// Walk `bytes` as an Ethernet frame as far as the checked views allow.
pub fn layout(bytes: &[u8]) -> Layout {
    let mut out = Layout::default();
    let Ok(eth) = EthernetFrame::new_checked(bytes) else {
        return out;
    };
    let l3 = eth.header_len();
    out.l3 = Some(l3);
    match eth.ethertype() {
        EtherType::Ipv6 => {
            let Ok(ip) = Ipv6Packet::new_checked(&bytes[l3..]) else {
                return out;
            };
            let mut nh = ip.next_header();
            let mut at = l3 + 40;
            // Bounded like the pipeline's own walk: a chain of options headers is not a loop.
            for _ in 0..8 {
                match nh {
                    next_header::HOP_BY_HOP | next_header::DEST_OPTS => {
                        let Ok(h) = Ipv6ExtHeader::new_checked(&bytes[at..]) else {
                            return out;
                        };
                        out.ext.push(at);
                        for opt in h.options().flatten() {
                            if let Ipv6OptionRepr::Ioam { .. } = opt.repr {
                                out.ioam_data.push(at + opt.offset + 4);
                            }
                        }
                        nh = h.next_header();
                        at += h.header_len();
                    }
                    next_header::UDP => {
                        out.l4 = Some(at);
                        return out;
                    }
                    _ => return out,
                }
            }
        }
        EtherType::Ipv4 => {
            if let Ok(ip) = Ipv4Packet::new_checked(&bytes[l3..]) {
                out.l4 = Some(l3 + ip.header_len());
            }
        }
        _ => {}
    }
    out
}

/// Every view, with every accessor and its `Repr`, on `bytes` at offset 0 and at each offset
/// [`layout`] finds.
pub fn wire_views(bytes: &[u8]) {
    every_view(bytes);
    let l = layout(bytes);
    for at in l.l3.into_iter().chain(l.ext).chain(l.ioam_data).chain(l.l4) {
        every_view(&bytes[at..]);
    }
}

/// Every view on `b` as if `b` started with its header.
pub fn every_view(b: &[u8]) {
    ethernet(b);
    ipv4(b);
    ipv6(b);
    ext_header(b);
    udp(b);
    trace(b);
    dex(b);
    bier(b);
}

fn ethernet(b: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(b) else {
        return;
    };
    let _ = (f.dst_addr(), f.src_addr(), f.vlan_tci(), f.ethertype());
    assert!(f.header_len() + f.payload().len() == b.len());
    let r = EthernetRepr::parse(&f).expect("EthernetRepr::parse after new_checked");
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out);
    let again = EthernetFrame::new_checked(&out[..]).expect("emitted Ethernet header checks");
    assert_eq!(EthernetRepr::parse(&again).unwrap(), r);
}

fn ipv4(b: &[u8]) {
    let Ok(p) = Ipv4Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.version(),
        p.tos(),
        p.ident(),
        p.flags_frag(),
        p.ttl(),
        p.protocol(),
    );
    let _ = (
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
        p.verify_checksum(),
    );
    assert_eq!(p.header_len() + p.payload().len(), p.total_len() as usize);
    let Ok(r) = Ipv4Repr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; r.buffer_len() + r.payload_len as usize];
    r.emit(&mut out);
    let again = Ipv4Packet::new_checked(&out[..]).expect("emitted IPv4 header checks");
    assert_eq!(Ipv4Repr::parse(&again).unwrap(), r);
}

fn ipv6(b: &[u8]) {
    let Ok(p) = Ipv6Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.next_header(),
    );
    let _ = (p.hop_limit(), p.src_addr(), p.dst_addr());
    assert_eq!(p.payload().len(), p.payload_len() as usize);
    let r = Ipv6Repr::parse(&p).expect("Ipv6Repr::parse after new_checked");
    let mut out = vec![0u8; r.buffer_len() + r.payload_len as usize];
    r.emit(&mut out);
    let again = Ipv6Packet::new_checked(&out[..]).expect("emitted IPv6 header checks");
    assert_eq!(Ipv6Repr::parse(&again).unwrap(), r);
}

fn ext_header(b: &[u8]) {
    let Ok(h) = Ipv6ExtHeader::new_checked(b) else {
        return;
    };
    let _ = (h.next_header(), h.hdr_ext_len());
    assert_eq!(h.options_bytes().len() + 2, h.header_len());
    let mut covered = 2;
    for opt in h.options() {
        let opt = opt.expect("options of a checked header parse");
        assert_eq!(opt.offset, covered, "options tile the header");
        covered += opt.len();
        let _ = (opt.is_empty(), opt.repr.alignment());
    }
    assert_eq!(covered, h.header_len());
    // 16 is more non-padding options than any header the node builds carries.
    let Ok(r) = Ipv6ExtHeaderRepr::<16>::parse(&h) else {
        return;
    };
    let len = r.buffer_len();
    assert_eq!(len % 8, 0);
    // Realigning options can grow a full-size header past what Hdr Ext Len can say; such a
    // repr cannot be emitted faithfully, so there is nothing to compare.
    if len > MAX_EXT_HEADER {
        return;
    }
    let mut out = vec![0u8; len];
    r.emit(&mut out);
    let again = Ipv6ExtHeader::new_checked(&out[..]).expect("emitted options header checks");
    assert_eq!(Ipv6ExtHeaderRepr::<16>::parse(&again).unwrap(), r);
}

fn udp(b: &[u8]) {
    let Ok(p) = UdpPacket::new_checked(b) else {
        return;
    };
    let _ = (p.src_port(), p.dst_port(), p.checksum());
    let _ = p.verify_checksum_ipv6(&[0x20; 16], &[0xff; 16]);
    assert_eq!(p.payload().len() + 8, p.len() as usize);
    let r = UdpRepr::parse(&p).expect("UdpRepr::parse after new_checked");
    let mut out = vec![0u8; r.buffer_len() + r.payload_len as usize];
    r.emit(&mut out);
    let again = UdpPacket::new_checked(&out[..]).expect("emitted UDP header checks");
    assert_eq!(UdpRepr::parse(&again).unwrap(), r);
}

fn trace(b: &[u8]) {
    let Ok(t) = IoamTrace::new_checked(b) else {
        return;
    };
    let _ = (
        t.namespace_id(),
        t.node_len(),
        t.flags(),
        t.remaining_len(),
        t.trace_type(),
    );
    bounded_hops(t.clone());
    let r = IoamTraceRepr::parse(&t).expect("IoamTraceRepr::parse after new_checked");
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out);
    let again = IoamTrace::new_checked(&out[..]).expect("emitted trace checks");
    assert_eq!(IoamTraceRepr::parse(&again).unwrap(), r);
}

fn dex(b: &[u8]) {
    let Ok(d) = IoamDex::new_checked(b) else {
        return;
    };
    let _ = (d.namespace_id(), d.flags(), d.trace_type(), d.flow_id());
    let _ = d.sequence_number();
    for bit in 0..8 {
        assert_eq!(
            d.extension(bit).is_some(),
            d.ext_flags() & (0x80 >> bit) != 0
        );
    }
    let r = IoamDexRepr::parse(&d).expect("IoamDexRepr::parse after new_checked");
    assert_eq!(r.buffer_len(), d.header_len());
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out);
    // Everything but the reserved octet after the trace type comes back.
    let hl = d.header_len();
    assert!(
        out[..7] == b[..7] && out[8..] == b[8..hl],
        "DEX emit gives the header back"
    );
    let again = IoamDex::new_checked(&out[..]).expect("emitted DEX checks");
    assert_eq!(IoamDexRepr::parse(&again).unwrap(), r);
}

fn bier(b: &[u8]) {
    let Ok(h) = BierHeader::new_checked(b) else {
        return;
    };
    let _ = (
        h.bift_id(),
        h.tc(),
        h.s(),
        h.ttl(),
        h.nibble(),
        h.version(),
        h.entropy(),
    );
    let _ = (h.oam(), h.rsv(), h.dscp(), h.proto(), h.bfir_id());
    assert_eq!(h.header_len(), 12 + h.bitstring().len());
    assert_eq!(h.header_len() + h.payload().len(), b.len());
    let r = BierRepr::parse(&h).expect("BierRepr::parse after new_checked");
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out);
    let again = BierHeader::new_checked(&out[..]).expect("emitted BIER header checks");
    assert_eq!(BierRepr::parse(&again).unwrap(), r);
}

// ---------------------------------------------------------------------------------------------
// IOAM trace

/// Iterate a checked trace's hops and return how many there were. Every entry takes at least
/// one 4-octet word, so there can be no more entries than words: more means `Hops` is not
/// advancing and a consumer that collects it would never finish.
pub fn bounded_hops(t: IoamTrace<&[u8]>) -> usize {
    let words = t.data().len() / 4;
    let tt = t.trace_type();
    let mut n = 0;
    for _ in Hops::new(t) {
        n += 1;
        assert!(
            n <= words,
            "Hops yields more entries than the trace has words (trace type {tt:#08x}): \
             it does not advance"
        );
    }
    n
}

/// The nodes recording is tried with: no snapshot, and snapshots of 0, 8 and 32 octets, so
/// that trace-type bit 22 takes 1, 1, 3 and 9 extra words.
pub fn recording_nodes() -> [NodeData; 4] {
    let base = NodeData {
        node_id: 0x00ab_cdef,
        node_id_wide: 0x0012_3456_789a_bcde,
        namespace_data: 0xdead_beef,
        namespace_data_wide: 0x0102_0304_0506_0708,
        timestamp_format: TimestampFormat::Ptp,
        snapshot: None,
    };
    let snap = |len| {
        Some(Snapshot {
            schema_id: 0x0000_0042,
            len,
            data: [0x5a; 32],
        })
    };
    [
        base,
        NodeData {
            snapshot: snap(0),
            timestamp_format: TimestampFormat::Ntp,
            ..base
        },
        NodeData {
            snapshot: snap(8),
            timestamp_format: TimestampFormat::Posix,
            ..base
        },
        NodeData {
            snapshot: snap(32),
            ..base
        },
    ]
}

fn facts() -> HopFacts {
    HopFacts {
        hop_limit: 63,
        ingress_if: 10,
        egress_if: 11,
        ingress_if_wide: 0x1_0000,
        egress_if_wide: 0x1_0001,
        rx_ns: RX_NS,
        now_ns: RX_NS + 1_000,
        queue_depth: 3,
        buffer_occupancy: 7,
    }
}

/// The input as a Hop-by-Hop header (through `find_trace`) and as trace data: check, decode
/// and record into a copy.
pub fn ioam_trace(bytes: &[u8]) {
    trace_at_hbh(bytes, 0);
    trace_checks(bytes);
}

/// The input as an Ethernet frame: `find_trace` at every options header [`layout`] finds.
pub fn ioam_trace_in_frame(bytes: &[u8]) {
    for at in layout(bytes).ext {
        trace_at_hbh(bytes, at);
    }
}

fn trace_at_hbh(bytes: &[u8], hbh: usize) {
    let Ok(Some(loc)) = find_trace(bytes, hbh) else {
        return;
    };
    let range = loc.trace_range();
    assert!(
        loc.hbh == hbh && range.start <= range.end && range.end <= bytes.len(),
        "find_trace located {loc:?} outside {} octets",
        bytes.len()
    );
    let h = Ipv6ExtHeader::new_checked(&bytes[hbh..]).expect("find_trace checked the header");
    assert!(loc.option + loc.option_len <= h.header_len());
    trace_checks(&bytes[range]);
}

/// Decode a trace and record each of [`recording_nodes`] into a fresh copy of it.
pub fn trace_checks(b: &[u8]) {
    let Ok(t) = IoamTrace::new_checked(b) else {
        return;
    };
    let before = bounded_hops(t.clone());
    let (tt, remaining, fl) = (t.trace_type(), t.remaining_len() as usize, t.flags());
    for node in recording_nodes() {
        let mut copy = b.to_vec();
        let mut w = IoamTrace::new_unchecked(&mut copy[..]);
        let units = node.slot_units(tt);
        match record(&mut w, &node, &facts()) {
            Recorded::Written => {
                assert_eq!(w.node_len(), t.node_len());
                assert_eq!(w.remaining_len() as usize, remaining - units);
                assert_eq!(w.flags(), fl);
                let start = 8 + (remaining - units) * 4;
                assert_eq!(copy[..2], b[..2], "namespace unchanged");
                assert_eq!(copy[4..start], b[4..start], "nothing before the slot moved");
                assert_eq!(
                    copy[start + units * 4..],
                    b[start + units * 4..],
                    "older hops unchanged"
                );
                let after =
                    IoamTrace::new_checked(&copy[..]).expect("recording keeps a trace valid");
                let n = bounded_hops(after.clone());
                if units > 0 {
                    assert!(n >= 1, "the slot just written decodes");
                    let first = Hops::new(after).next().unwrap();
                    if tt & 0x80_0000 != 0 {
                        assert_eq!(first.node_id, Some(node.node_id));
                        assert_eq!(first.hop_limit, Some(63));
                    }
                } else {
                    assert_eq!(n, before);
                }
            }
            Recorded::Overflow => {
                assert!(units > remaining);
                assert_eq!(w.flags(), fl | flags::OVERFLOW);
                let mut expect = b.to_vec();
                IoamTrace::new_unchecked(&mut expect[..]).set_flags(fl | flags::OVERFLOW);
                assert_eq!(copy, expect, "overflow changes the flag and nothing else");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pipeline

/// A sink that decodes every trace it is given, as an exporter would.
#[derive(Debug, Default)]
pub struct DecodingSink {
    pub traces: u64,
    pub hops: u64,
}

impl Sink for DecodingSink {
    fn trace(&mut self, e: &TraceEvent<'_>) {
        self.traces += 1;
        self.hops += bounded_hops(e.trace.clone()) as u64;
    }
}

/// The fixtures' multicast source and groups (IPv6, and IPv4 IPv4-mapped), which the PIM
/// nodes have `(S,G)` routes for.
pub const SOURCE: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
pub const GROUP: [u8; 16] = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1];
pub const SOURCE4: [u8; 4] = [192, 0, 2, 10];
pub const GROUP4: [u8; 4] = [232, 1, 1, 1];
/// The per-hop (DEX) namespace, beside the trace namespace [`NAMESPACE`].
pub const DEX_NAMESPACE: u16 = 2;
/// The Flow ID the DEX encapsulating node writes.
pub const DEX_FLOW: u32 = 0x000a_bcde;
/// Every node's configuration epoch; postcards carry it.
pub const EPOCH: u32 = 7;
/// Postcards a node's ring holds: few, so that a batch can fill it.
pub const RING: usize = 8;
/// Replica buffers the allocator hands out per batch, the third of them too small for any
/// frame: enough for one packet's copies at any node here, not for a batch's.
pub const REPLICA_BUFFERS: usize = 4;
const TINY_BUFFER: usize = 3;
/// Room a replica buffer has beyond the largest input: more than any encapsulation adds.
const REPLICA_SLACK: usize = 512;
/// The BIER nodes' BIFT-id (BSL 64), and the BitString the harness wraps packets in: bits 1–3.
pub const BIFT_ID: u32 = 1;
pub const BIER_BITS: u8 = 0b111;
/// The BIER TTL the harness sends with.
pub const BIER_TTL: u8 = 16;

/// Node IDs, one per node kind; a node's ports have interface IDs 10·id + k.
pub mod id {
    pub const ENCAP: u32 = 1;
    pub const TRANSIT: u32 = 2;
    pub const DECAP: u32 = 3;
    /// PIM branch point, per-section mode, fan-out 3.
    pub const PIM_BRANCH: u32 = 4;
    /// Per-hop mode (DEX, explicit branch IDs): encapsulating, branching (PIM fan-out 3) and
    /// decapsulating nodes.
    pub const DEX_ENCAP: u32 = 5;
    pub const DEX_BRANCH: u32 = 6;
    pub const DEX_DECAP: u32 = 7;
    /// BIER: a BFR (transit, per-section trace and per-hop DEX) and a BFER (decap), each with a
    /// BIFT of two neighbors and its own bit.
    pub const BIER_BFR: u32 = 8;
    pub const BIER_BFER: u32 = 9;
}

/// The per-hop namespaces' DEX settings.
pub const DEX: DexConfig = DexConfig {
    flow_id: DEX_FLOW,
    trace_type: TRACE_TYPE,
    encoding: BranchEncoding::Explicit,
    flag_bit: branch::DEFAULT_FLAG_BIT,
    sum_gap: 16,
    rate_divisor: 100,
};

/// A node the pipeline checks run: its configuration, and whether its pipeline exports
/// postcards (into a fresh ring of [`RING`] per run).
#[derive(Debug)]
pub struct Node {
    pub config: Arc<NodeConfig>,
    pub postcards: bool,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The IOAM role of its first namespace.
    pub fn role(&self) -> Role {
        self.config.namespaces[0].role
    }
}

fn node_data(id: u32, snapshot: Option<Snapshot>) -> NodeData {
    NodeData {
        node_id: id,
        node_id_wide: 0x00aa_0000_0000_0000 | id as u64,
        namespace_data: 0xdead_beef,
        namespace_data_wide: 0x0102_0304_0506_0708,
        timestamp_format: TimestampFormat::Ptp,
        snapshot,
    }
}

fn ff00() -> Vec<Selector> {
    let mut ff = [0u8; 16];
    ff[0] = 0xff;
    vec![Selector {
        dst: Some(Prefix { addr: ff, len: 8 }),
        ..Selector::default()
    }]
}

/// A trace namespace: an encapsulating one selects ff00::/8 and inserts [`TRACE_TYPE`] with
/// room for [`HOPS`].
fn trace_ns(role: Role, mode: TraceMode, node: NodeData) -> Namespace {
    Namespace {
        id: NAMESPACE,
        role,
        mode,
        node,
        plan: (role == Role::Encap).then(|| EncapPlan::new(NAMESPACE, TRACE_TYPE, HOPS, &node)),
        dex: None,
        select: if role == Role::Encap {
            ff00()
        } else {
            Vec::new()
        },
    }
}

/// A per-hop namespace with [`DEX`]; an encapsulating one selects ff00::/8.
fn dex_ns(role: Role, node: NodeData) -> Namespace {
    Namespace {
        id: DEX_NAMESPACE,
        role,
        mode: TraceMode::PerHop,
        node,
        plan: None,
        dex: Some(DEX),
        select: if role == Role::Encap {
            ff00()
        } else {
            Vec::new()
        },
    }
}

/// A node with `ports` ports (packets arrive on port 0) whose routes send `::/0` and
/// `0.0.0.0/0` out of port 1, with no multicast state.
fn base(
    name: &str,
    id: u32,
    forwarding: Forwarding,
    malformed: MalformedPolicy,
    ports: u16,
    namespaces: Vec<Namespace>,
) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        node_id: id,
        forwarding,
        malformed,
        timestamp_format: TimestampFormat::Ptp,
        ports: (0..ports)
            .map(|k| Port {
                name: format!("p{k}"),
                if_id: 10 * id as u16 + k,
                if_id_wide: 0x1_0000 | (10 * id + k as u32),
                capacity_bps: 10_000_000_000,
                queue: None,
            })
            .collect(),
        routes6: vec![Route {
            prefix: Prefix {
                addr: [0; 16],
                len: 0,
            },
            port: 1,
        }],
        routes4: vec![Route {
            prefix: Prefix {
                addr: [0; 4],
                len: 0,
            },
            port: 1,
        }],
        namespaces,
        pim: PimTable::default(),
        bifts: Vec::new(),
        epoch: EPOCH,
    }
}

/// `(SOURCE, GROUP)` and `(SOURCE4, GROUP4)` from port 0 to ports 1, 2 and 3, with TTL
/// thresholds 0, 1 and 32.
fn pim_fan_out_3() -> PimTable {
    let oil: Vec<Oif> = [(1, 0), (2, 1), (3, 32)]
        .into_iter()
        .map(|(port, ttl_threshold)| Oif {
            port,
            ttl_threshold,
        })
        .collect();
    PimTable {
        routes: vec![
            SgRoute {
                source: SOURCE,
                group: GROUP,
                iif: 0,
                oil: oil.clone(),
            },
            SgRoute {
                source: mcast::v4_mapped(SOURCE4),
                group: mcast::v4_mapped(GROUP4),
                iif: 0,
                oil,
            },
        ],
    }
}

/// The BIER nodes' BIFT: bit 1 via port 1, bit 2 this node (the BFER's own copy), bit 3 via
/// port 2. The own bit sits between the neighbors' so that the BFER's copy is the first copy of
/// some BitStrings and a later one of others.
pub fn bift() -> Bift {
    Bift::new(
        BIFT_ID,
        1,
        &[
            (Neighbor::Port(1), vec![1]),
            (Neighbor::Local, vec![2]),
            (Neighbor::Port(2), vec![3]),
        ],
    )
    .unwrap()
}

/// One of the twelve trace-mode nodes with one namespace, two ports and no multicast state:
/// the encapsulating node; the transit node, with an 8-octet snapshot so that traces asking
/// for bit 22 get one; the decapsulating node.
pub fn node_config(role: Role, forwarding: Forwarding, malformed: MalformedPolicy) -> NodeConfig {
    let (id, snapshot) = match role {
        Role::Encap => (id::ENCAP, None),
        Role::Transit => (
            id::TRANSIT,
            Some(Snapshot {
                schema_id: 7,
                len: 8,
                data: [0xa5; 32],
            }),
        ),
        Role::Decap => (id::DECAP, None),
    };
    let name = format!("{role:?}-{forwarding:?}-{malformed:?}").to_lowercase();
    let ns = trace_ns(role, TraceMode::Trace, node_data(id, snapshot));
    base(&name, id, forwarding, malformed, 2, vec![ns])
}

/// The branching, per-hop and BIER nodes, each with a postcard ring:
///
/// - `pim-branch`: routing, transit in per-section mode, PIM fan-out 3;
/// - `dex-encap` (bump), `dex-branch` (routing, PIM fan-out 3, drops malformed packets) and
///   `dex-decap` (routing): per-hop mode, explicit branch IDs;
/// - `bier-bfr` (transit, per-section trace and per-hop DEX) and `bier-bfer` (decap for both,
///   drops malformed packets): routing, with [`bift`].
pub fn multicast_configs() -> Vec<NodeConfig> {
    use MalformedPolicy::{Drop, Forward};
    let route = Forwarding::Route;
    let nd = |id| node_data(id, None);
    let mut pim_branch = base(
        "pim-branch",
        id::PIM_BRANCH,
        route,
        Forward,
        4,
        vec![trace_ns(
            Role::Transit,
            TraceMode::PerSection,
            nd(id::PIM_BRANCH),
        )],
    );
    pim_branch.pim = pim_fan_out_3();
    let dex_encap = base(
        "dex-encap",
        id::DEX_ENCAP,
        Forwarding::Bump,
        Forward,
        2,
        vec![dex_ns(Role::Encap, nd(id::DEX_ENCAP))],
    );
    let mut dex_branch = base(
        "dex-branch",
        id::DEX_BRANCH,
        route,
        Drop,
        4,
        vec![dex_ns(Role::Transit, nd(id::DEX_BRANCH))],
    );
    dex_branch.pim = pim_fan_out_3();
    let dex_decap = base(
        "dex-decap",
        id::DEX_DECAP,
        route,
        Forward,
        2,
        vec![dex_ns(Role::Decap, nd(id::DEX_DECAP))],
    );
    let mut bfr = base(
        "bier-bfr",
        id::BIER_BFR,
        route,
        Forward,
        3,
        vec![
            trace_ns(Role::Transit, TraceMode::PerSection, nd(id::BIER_BFR)),
            dex_ns(Role::Transit, nd(id::BIER_BFR)),
        ],
    );
    bfr.bifts = vec![bift()];
    let mut bfer = base(
        "bier-bfer",
        id::BIER_BFER,
        route,
        Drop,
        3,
        vec![
            trace_ns(Role::Decap, TraceMode::PerSection, nd(id::BIER_BFER)),
            dex_ns(Role::Decap, nd(id::BIER_BFER)),
        ],
    );
    bfer.bifts = vec![bift()];
    vec![pim_branch, dex_encap, dex_branch, dex_decap, bfr, bfer]
}

/// Every node, built once: the twelve trace-mode nodes (encap, transit, decap × bump, route ×
/// forward, drop malformed), without postcards, then [`multicast_configs`], with them.
pub fn nodes() -> &'static [Node] {
    static NODES: OnceLock<Vec<Node>> = OnceLock::new();
    NODES.get_or_init(|| {
        let mut v = Vec::new();
        for role in [Role::Encap, Role::Transit, Role::Decap] {
            for fwd in [Forwarding::Bump, Forwarding::Route] {
                for policy in [MalformedPolicy::Forward, MalformedPolicy::Drop] {
                    v.push(Node {
                        config: Arc::new(node_config(role, fwd, policy)),
                        postcards: false,
                    });
                }
            }
        }
        for c in multicast_configs() {
            v.push(Node {
                config: Arc::new(c),
                postcards: true,
            });
        }
        v
    })
}

/// The trace-mode node with this role and forwarding that forwards malformed packets.
pub fn config(role: Role, fwd: Forwarding) -> &'static Node {
    nodes()
        .iter()
        .find(|n| {
            let c = &n.config;
            c.node_id <= id::DECAP
                && n.role() == role
                && c.forwarding == fwd
                && c.malformed == MalformedPolicy::Forward
        })
        .unwrap()
}

/// The node with this node ID from [`multicast_configs`].
pub fn node(id: u32) -> &'static Node {
    nodes().iter().find(|n| n.config.node_id == id).unwrap()
}

/// Nodes that take BIER.
pub fn bier_nodes() -> impl Iterator<Item = &'static Node> {
    nodes().iter().filter(|n| !n.config.bifts.is_empty())
}

/// What one node did to a batch.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every packet the batch ended with, verdict and bytes: the inputs in order, then the
    /// replicas in the order they were made (for one input: copy 1, 2, …).
    pub out: Vec<(Verdict, Vec<u8>)>,
    pub counters: Counters,
    /// What the node exported, in order.
    pub postcards: Vec<Postcard>,
    /// Trace events, and the hops they held.
    pub traces: u64,
    pub hops: u64,
}

impl Outcome {
    /// The first input's verdict.
    pub fn verdict(&self) -> Verdict {
        self.out[0].0
    }

    /// The first input's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.out[0].1
    }

    pub fn malformed(&self) -> u64 {
        self.counters.malformed.iter().sum()
    }

    /// The postcards of one kind.
    pub fn cards(&self, kind: PostcardKind) -> Vec<Postcard> {
        self.postcards
            .iter()
            .filter(|c| c.kind == kind)
            .copied()
            .collect()
    }
}

fn packet(bytes: &[u8]) -> Packet<Vec<u8>> {
    Packet {
        frame: Frame::from_bytes(vec![0u8; HEADROOM + bytes.len()], bytes).unwrap(),
        rx_port: 0,
        rx_ns: RX_NS,
        verdict: Verdict::Pending,
    }
}

/// Run `frames` as one batch through a fresh pipeline for `node` (and a fresh postcard ring),
/// replicating with [`REPLICA_BUFFERS`] buffers or, with `replicate` false, through `process`,
/// which makes no copies. Checks the batch-wide promises (see [`check_batch`]).
pub fn process(node: &Node, frames: &[&[u8]], replicate: bool) -> Outcome {
    let mut batch: Vec<Packet<Vec<u8>>> = frames.iter().map(|b| packet(b)).collect();
    let mut pipeline = Pipeline::new(Arc::clone(&node.config));
    let ring = node.postcards.then(|| Arc::new(PostcardRing::new(RING)));
    pipeline.postcards = ring.clone();
    let mut sink = DecodingSink::default();
    let now = RX_NS + 1_000;
    if replicate {
        let size = HEADROOM + frames.iter().map(|b| b.len()).max().unwrap_or(0) + REPLICA_SLACK;
        let mut handed = 0;
        let mut alloc = || {
            handed += 1;
            match handed {
                TINY_BUFFER => Some(vec![0u8; HEADROOM]),
                n if n <= REPLICA_BUFFERS => Some(vec![0u8; size]),
                _ => None,
            }
        };
        pipeline.process_replicating(now, &mut batch, &mut alloc, &mut sink);
    } else {
        pipeline.process(now, &mut batch, &mut sink);
    }
    let postcards = match &ring {
        Some(r) => std::iter::from_fn(|| r.pop()).collect(),
        None => Vec::new(),
    };
    let o = Outcome {
        out: batch
            .iter()
            .map(|p| (p.verdict, p.frame.bytes().to_vec()))
            .collect(),
        counters: pipeline.counters().clone(),
        postcards,
        traces: sink.traces,
        hops: sink.hops,
    };
    check_batch(node, frames, &batch, &o, replicate);
    o
}

/// The promises every batch keeps, whatever its packets:
///
/// - every packet, replicas included, ends with a verdict, and replicas are appended, one per
///   copy counted in `replicas`;
/// - `packets_out` counts the packets forwarded (by port in `tx_by_port`, and `bytes_out` their
///   octets), and `dropped` the others by reason, save `no_buffer`, which counts copies never
///   made: `packets_out + dropped − dropped[no_buffer] = arrivals + replicas`;
/// - `packets_in` counts arrivals only: a BFER's own copy, which goes round the graph again,
///   is not one;
/// - nothing goes back out of the port it came in on, or out of a port the node lacks;
/// - one trace event per trace-mode decapsulation;
/// - postcards: only with a ring, as many in the ring as counted, each from one of the node's
///   namespaces in that namespace's mode, with the node's epoch and the batch's time.
pub fn check_batch(
    node: &Node,
    frames: &[&[u8]],
    batch: &[Packet<Vec<u8>>],
    o: &Outcome,
    replicate: bool,
) {
    let config = &node.config;
    let name = &config.name;
    let c = &o.counters;
    let n = frames.len() as u64;
    assert!(
        batch.iter().all(|p| p.verdict != Verdict::Pending),
        "{name}: a packet left pending"
    );
    assert_eq!(
        batch.len() as u64,
        n + c.replicas,
        "{name}: one appended packet per replica"
    );
    if !replicate {
        assert_eq!(c.replicas, 0, "{name}: replicas without buffers");
    }
    let no_buffer = c.dropped[DropReason::NoBuffer as usize];
    let mut forwarded = 0;
    let mut bytes_out = 0;
    let mut by_port = [0u64; MAX_PORTS];
    for p in batch {
        match p.verdict {
            Verdict::Forward(port) => {
                forwarded += 1;
                bytes_out += p.frame.len() as u64;
                by_port[port as usize % MAX_PORTS] += 1;
                assert!(
                    (port as usize) < config.ports.len(),
                    "{name}: out of port {port}, which it does not have"
                );
                assert_ne!(port, p.rx_port, "{name}: sent back where it came from");
            }
            Verdict::Drop(r) => assert_ne!(
                r,
                DropReason::NoBuffer,
                "{name}: no_buffer counts copies never made, not packets"
            ),
            Verdict::Pending => unreachable!(),
        }
    }
    assert_eq!(
        forwarded, c.packets_out,
        "{name}: packets_out counts the packets forwarded"
    );
    assert_eq!(bytes_out, c.bytes_out, "{name}: bytes_out");
    assert_eq!(by_port, c.tx_by_port, "{name}: tx_by_port");
    assert_eq!(
        c.packets_out + c.dropped_total() - no_buffer,
        n + c.replicas,
        "{name}: out + dropped − no_buffer = arrivals + replicas"
    );
    assert_eq!(
        c.packets_in, n,
        "{name}: packets_in counts arrivals, not a BFER's own copy"
    );
    let bytes_in: usize = frames.iter().map(|b| b.len()).sum();
    assert_eq!(c.bytes_in, bytes_in as u64, "{name}: bytes_in");
    let per_hop = config
        .namespaces
        .iter()
        .any(|ns| ns.mode == TraceMode::PerHop);
    assert!(o.traces <= c.decap, "{name}: a trace event without decap");
    if !per_hop {
        assert_eq!(o.traces, c.decap, "{name}: one trace event per decap");
    }
    if !node.postcards {
        assert!(o.postcards.is_empty(), "{name}");
        assert_eq!(
            (
                c.postcards_exported,
                c.postcards_lost,
                c.postcards_suppressed
            ),
            (0, 0, 0),
            "{name}: postcards without a ring"
        );
        return;
    }
    assert_eq!(
        o.postcards.len() as u64,
        c.postcards_exported,
        "{name}: postcards in the ring"
    );
    assert!(o.postcards.len() <= RING, "{name}");
    if c.postcards_lost == 0 {
        assert_eq!(
            o.cards(PostcardKind::EndSection).len() as u64,
            o.traces,
            "{name}: one end-of-section postcard per trace taken off"
        );
    }
    assert!(
        o.cards(PostcardKind::Section).len() as u64 <= c.transit,
        "{name}: a section postcard without transit"
    );
    for card in &o.postcards {
        check_postcard(config, card);
    }
}

fn check_postcard(config: &NodeConfig, card: &Postcard) {
    let name = &config.name;
    let ns = config
        .namespaces
        .iter()
        .find(|ns| ns.id == card.namespace_id && ns.node.node_id == card.node_id)
        .unwrap_or_else(|| panic!("{name}: postcard from no namespace of the node: {card:?}"));
    assert_eq!(
        card.kind == PostcardKind::Hop,
        ns.mode == TraceMode::PerHop,
        "{name}: hop postcards are per-hop mode's, and only they"
    );
    assert_eq!(
        (card.epoch, card.observation_ns),
        (EPOCH, RX_NS + 1_000),
        "{name}"
    );
    assert_eq!(card.ingress_if, config.ports[0].if_id as u32, "{name}");
    assert!(card.data().len() <= MAX_POSTCARD_DATA, "{name}");
    match card.kind {
        PostcardKind::Hop => {
            let units = ns.node.slot_units(card.trace_type).min(MAX_TRACE_DATA / 4);
            assert_eq!(
                card.data().len(),
                units * 4,
                "{name}: a hop postcard holds this node's slot"
            );
            assert!(card.branch_encoding <= 3, "{name}");
        }
        PostcardKind::Section => assert_eq!(
            card.egress_if,
            u16::MAX as u32,
            "{name}: a section's egress is not known yet"
        ),
        PostcardKind::EndSection => {}
    }
}

/// Each frame of `frames` alone, then all as one batch, replicating and not.
pub fn run_batch(node: &Node, frames: &[&[u8]]) -> Vec<Verdict> {
    process(node, frames, false);
    let o = process(node, frames, true);
    o.out.iter().map(|(v, _)| *v).collect()
}

/// One packet through one node (replicating), with the per-packet promises checked on top of
/// the batch's:
///
/// - a packet is parsed once, and once more each time a BFER's own copy comes back: no more
///   malformed counts than that;
/// - a malformed packet is dropped only by policy, or when routing and there is nothing to
///   route on (no IPv6 destination, no BIER header); otherwise all its copies go out
///   untouched, save a routing node's hop-limit decrement when the IPv6 header itself parsed;
/// - a packet whose IPv6 header (or BIER header and inner IPv6 header) checked on the way in
///   still checks in every copy on the way out;
/// - a PIM branch point sends each copy out of a different port; BIER copies split the
///   incoming BitString among themselves, with the TTL one lower.
pub fn run_one(node: &Node, bytes: &[u8]) -> Outcome {
    let o = process(node, &[bytes], true);
    let config = &node.config;
    let name = &config.name;
    let c = &o.counters;
    let malformed = o.malformed();
    assert!(
        malformed <= 1 + c.bier_local,
        "{name}: one packet counted malformed {malformed} times"
    );
    let bier_in = bier_header(bytes);
    for (v, _) in &o.out {
        if *v == Verdict::Drop(DropReason::Malformed) {
            assert!(malformed >= 1, "{name}: a malformed drop not counted");
        }
    }
    if c.bier_local == 0 {
        let routable = has_ipv6_dst(bytes) || bier_in.is_some();
        assert_eq!(
            o.verdict() == Verdict::Drop(DropReason::Malformed),
            malformed == 1
                && (config.malformed == MalformedPolicy::Drop
                    || (config.forwarding == Forwarding::Route && !routable)),
            "{name}: a malformed drop is counted by reason, and only by policy or for want of \
             a route"
        );
    }
    let l3 = layout(bytes).l3;
    if malformed >= 1 && c.bier_local == 0 && bier_in.is_none() {
        let mut want = bytes.to_vec();
        if let Some(l3) = l3.filter(|&l3| ipv6_checks(bytes, l3)) {
            if config.forwarding == Forwarding::Route {
                // Forwarded, so there was hop limit to take.
                want[l3 + 7] = want[l3 + 7].wrapping_sub(1);
            }
        }
        for (v, out) in &o.out {
            if matches!(v, Verdict::Forward(_)) {
                assert!(
                    *out == want,
                    "{name}: a malformed packet was rewritten\n in: {}\nout: {}",
                    hex(bytes),
                    hex(out)
                );
            }
        }
    }
    if malformed == 0 {
        let checks_in = match (l3, bier_in) {
            (Some(l3), None) => ipv6_checks(bytes, l3),
            (Some(l3), Some(len)) => inner_ipv6_checks(bytes, l3 + len),
            (None, _) => false,
        };
        for (v, out) in &o.out {
            if checks_in && matches!(v, Verdict::Forward(_)) {
                let l3 = layout(out).l3.unwrap();
                let ok = match bier_header(out) {
                    Some(len) => inner_ipv6_checks(out, l3 + len),
                    None => ipv6_checks(out, l3),
                };
                assert!(
                    ok,
                    "{name}: forwarded a packet whose IPv6 header no longer checks\n in: {}\n\
                     out: {}",
                    hex(bytes),
                    hex(out)
                );
            }
        }
    }
    if !config.pim.routes.is_empty() && bier_in.is_none() {
        let mut seen = [false; MAX_PORTS];
        for (v, _) in &o.out {
            if let Verdict::Forward(port) = v {
                assert!(
                    !std::mem::replace(&mut seen[*port as usize], true),
                    "{name}: two copies out of port {port}"
                );
            }
        }
    }
    if let (Some(l3), Some(_)) = (l3, bier_in) {
        let h = BierHeader::new_checked(&bytes[l3..]).unwrap();
        let incoming = h.bitstring().to_vec();
        let mut union = vec![0u8; incoming.len()];
        for (v, out) in &o.out {
            if !matches!(v, Verdict::Forward(_)) || bier_header(out).is_none() {
                continue;
            }
            let c = BierHeader::new_checked(&out[l3..]).unwrap();
            assert_eq!(c.ttl(), h.ttl() - 1, "{name}: a BIER copy's TTL");
            for ((u, &b), &i) in union.iter_mut().zip(c.bitstring()).zip(&incoming) {
                assert_eq!(*u & b, 0, "{name}: two BIER copies share a bit");
                assert_eq!(
                    b & !i,
                    0,
                    "{name}: a BIER copy with a bit it did not come with"
                );
                *u |= b;
            }
        }
    }
    o
}

fn ipv6_checks(bytes: &[u8], l3: usize) -> bool {
    matches!(
        EthernetFrame::new_checked(bytes).map(|e| e.ethertype()),
        Ok(EtherType::Ipv6)
    ) && bytes.len() >= l3
        && Ipv6Packet::new_checked(&bytes[l3..]).is_ok()
}

fn inner_ipv6_checks(bytes: &[u8], inner: usize) -> bool {
    BierHeader::new_checked(&bytes[layout(bytes).l3.unwrap()..])
        .is_ok_and(|h| h.proto() == bier::proto::IPV6)
        && bytes.len() >= inner
        && Ipv6Packet::new_checked(&bytes[inner..]).is_ok()
}

/// The length of the frame's BIER header, if it is a BIER frame whose header checks.
pub fn bier_header(bytes: &[u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(bytes).ok()?;
    if eth.ethertype() != EtherType::Bier {
        return None;
    }
    BierHeader::new_checked(eth.payload())
        .ok()
        .map(|h| h.header_len())
}

fn is_bier(bytes: &[u8]) -> bool {
    EthernetFrame::new_checked(bytes).is_ok_and(|e| e.ethertype() == EtherType::Bier)
}

/// Does a malformed frame still carry an IPv6 destination the routing node can route on (an
/// IPv6 EtherType, version 6 and a whole fixed header)? This is the pipeline's rule for
/// forwarding a malformed packet when routing.
fn has_ipv6_dst(bytes: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(bytes) else {
        return false;
    };
    let l3 = eth.header_len();
    eth.ethertype() == EtherType::Ipv6 && bytes.len() >= l3 + 40 && bytes[l3] >> 4 == 6
}

/// The IPv6 or IPv4 packet of an Ethernet frame put in BIER (BIFT [`BIFT_ID`], BSL 64, TTL
/// [`BIER_TTL`]) with BitString `bits`, as a BFIR would send it; `None` for other frames.
pub fn as_bier(bytes: &[u8], bits: u8) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(bytes).ok()?;
    let proto = match eth.ethertype() {
        EtherType::Ipv6 => bier::proto::IPV6,
        EtherType::Ipv4 => bier::proto::IPV4,
        _ => return None,
    };
    let l3 = eth.header_len();
    let mut h = [0u8; bier::HEADER_LEN + 8];
    BierRepr {
        bift_id: BIFT_ID,
        tc: 0,
        s: true,
        ttl: BIER_TTL,
        version: 0,
        bsl: 1,
        entropy: 0,
        oam: 0,
        dscp: 0,
        proto,
        bfir_id: 4,
        bitstring: &[0, 0, 0, 0, 0, 0, 0, bits],
    }
    .emit(&mut h);
    let mut out = bytes[..l3 - 2].to_vec();
    out.extend_from_slice(&u16::from(EtherType::Bier).to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[l3..]);
    Some(out)
}

/// The inverse of [`as_bier`] for a BIER copy: the inner packet back in its Ethernet frame.
pub fn from_bier(bytes: &[u8]) -> Vec<u8> {
    let len = bier_header(bytes).expect("a BIER frame");
    let l3 = layout(bytes).l3.unwrap();
    let h = BierHeader::new_checked(&bytes[l3..]).unwrap();
    let ethertype = match h.proto() {
        bier::proto::IPV4 => EtherType::Ipv4,
        _ => EtherType::Ipv6,
    };
    let mut out = bytes[..l3 - 2].to_vec();
    out.extend_from_slice(&u16::from(ethertype).to_be_bytes());
    out.extend_from_slice(&bytes[l3 + len..]);
    out
}

/// `bytes` with its IPv6 hop limit `routers` lower: what `routers` routing nodes send on.
fn lowered(bytes: &[u8], routers: u8) -> Vec<u8> {
    let mut want = bytes.to_vec();
    let l3 = layout(bytes).l3.unwrap();
    want[l3 + 7] = want[l3 + 7]
        .checked_sub(routers)
        .expect("a router forwarded a packet with no hop limit left");
    want
}

/// A drop a chain may rightly meet: the hop limit ran out, or it did not pass any outgoing
/// interface's TTL threshold.
fn expected_drop(v: Verdict) -> bool {
    matches!(
        v,
        Verdict::Drop(DropReason::HopLimitExceeded | DropReason::NoOif)
    )
}

fn check_restored(what: &str, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{what} changed the packet\n in: {}\nout: {}",
        hex(want),
        hex(got)
    );
}

/// Encapsulate, transit and decapsulate `bytes` with the trace-mode nodes. Returns `None`
/// when the encapsulating node did not encapsulate; otherwise checks the packet came back as it
/// went in, save each routing node's hop-limit decrement, and returns the final bytes.
pub fn encap_transit_decap(bytes: &[u8], fwd: Forwarding) -> Option<Vec<u8>> {
    let e = run_one(config(Role::Encap, fwd), bytes);
    if e.counters.encap == 0 {
        return None;
    }
    assert!(matches!(e.verdict(), Verdict::Forward(_)));
    let t = run_one(config(Role::Transit, fwd), e.bytes());
    // A routing node may rightly drop a packet whose hop limit runs out along the chain.
    if expected_drop(t.verdict()) {
        return None;
    }
    assert_eq!(
        (t.counters.transit, t.malformed()),
        (1, 0),
        "the transit node takes what the encapsulating node made: {}",
        hex(e.bytes())
    );
    let d = run_one(config(Role::Decap, fwd), t.bytes());
    if expected_drop(d.verdict()) {
        return None;
    }
    assert_eq!(
        (d.counters.decap, d.malformed()),
        (1, 0),
        "the decapsulating node takes what the transit node passed: {}",
        hex(t.bytes())
    );
    let routers = if fwd == Forwarding::Route { 3 } else { 0 };
    check_restored(
        &format!("encap → transit → decap ({fwd:?})"),
        d.bytes(),
        &lowered(bytes, routers),
    );
    Some(d.bytes().to_vec())
}

/// Octets of one trace entry of [`TRACE_TYPE`] for the nodes without a snapshot.
fn entry_len() -> usize {
    node_data(0, None).slot_units(TRACE_TYPE) * 4
}

/// Encapsulate (routing), branch at `pim-branch` and decapsulate each copy (routing). Each
/// copy comes back as the original, three routers lower. Where the node branched (more than one
/// copy), it exported one section (the encapsulating node's entry and its own ingress-side
/// one), and each copy's trace starts afresh: the decapsulating node sees the branch node's
/// entry and its own. Returns how many copies the branch node sent.
pub fn encap_branch_decap(bytes: &[u8]) -> Option<usize> {
    let e = run_one(config(Role::Encap, Forwarding::Route), bytes);
    if e.counters.encap == 0 || !matches!(e.verdict(), Verdict::Forward(_)) {
        return None;
    }
    let b = run_one(node(id::PIM_BRANCH), e.bytes());
    if expected_drop(b.verdict()) {
        return None;
    }
    let what = format!("pim-branch on {}", hex(e.bytes()));
    assert_eq!((b.counters.transit, b.malformed()), (1, 0), "{what}");
    let copies = b.out.len();
    let sections = b.cards(PostcardKind::Section);
    assert_eq!(
        sections.len(),
        (copies > 1) as usize,
        "{what}: one section per branching packet"
    );
    if let Some(s) = sections.first() {
        assert_eq!(s.data().len(), 2 * entry_len(), "{what}: the section");
    }
    for (v, copy) in &b.out {
        assert!(matches!(v, Verdict::Forward(_)), "{what}: {v:?}");
        let d = run_one(config(Role::Decap, Forwarding::Route), copy);
        if expected_drop(d.verdict()) {
            continue;
        }
        assert_eq!((d.counters.decap, d.malformed()), (1, 0), "{what}");
        let entries = if copies > 1 { 2 } else { 3 };
        assert_eq!(d.hops, entries, "{what}: entries at the end of the section");
        check_restored("encap → pim-branch → decap", d.bytes(), &lowered(bytes, 3));
    }
    Some(copies)
}

/// The one hop postcard a node exported for one packet.
fn hop_card(o: &Outcome, what: &str) -> Postcard {
    let cards = o.cards(PostcardKind::Hop);
    assert_eq!(cards.len(), 1, "{what}: one hop postcard per packet");
    cards[0]
}

fn branch_id(node_id: u32, index: u16) -> BranchId {
    BranchId { node_id, index }
}

/// Check a hop postcard's DEX fields: the flow, sequence number 0 (the first packet of a fresh
/// pipeline), the branch ID received, in the explicit encoding, and the packet's digest.
fn check_hop_card(card: &Postcard, branch: BranchId, digest: u64, what: &str) {
    assert_eq!(
        (card.flow_id, card.sequence, card.digest),
        (DEX_FLOW, 0, digest),
        "{what}: flow, sequence and digest"
    );
    assert_eq!(card.branch, branch, "{what}: branch ID");
    assert_eq!(
        (card.branch_encoding, card.branch_field),
        (
            BranchEncoding::Explicit.code(),
            BranchEncoding::Explicit.encode(branch)
        ),
        "{what}: branch field"
    );
}

/// Per-hop mode: DEX in at `dex-encap` (bump), a branch at `dex-branch` (routing), out at
/// `dex-decap` (routing) for each copy. Each copy comes back as the original, two routers
/// lower; the encapsulating and branch nodes export `[dex-encap, 0]` and the end node
/// `[dex-branch, k]` for copy k (`[dex-encap, 0]` when there was one copy); one flow, one
/// sequence number and one digest throughout. Returns how many copies the branch node sent.
pub fn dex_encap_branch_decap(bytes: &[u8]) -> Option<usize> {
    let e = run_one(node(id::DEX_ENCAP), bytes);
    if e.counters.encap == 0 {
        return None;
    }
    assert!(matches!(e.verdict(), Verdict::Forward(_)));
    let first = branch_id(id::DEX_ENCAP, 0);
    let card = hop_card(&e, "dex-encap");
    let digest = card.digest;
    check_hop_card(&card, first, digest, "dex-encap");
    let b = run_one(node(id::DEX_BRANCH), e.bytes());
    if expected_drop(b.verdict()) {
        return None;
    }
    let what = format!("dex-branch on {}", hex(e.bytes()));
    assert_eq!((b.counters.transit, b.malformed()), (1, 0), "{what}");
    check_hop_card(&hop_card(&b, &what), first, digest, &what);
    let copies = b.out.len();
    for (k, (v, copy)) in b.out.iter().enumerate() {
        assert!(matches!(v, Verdict::Forward(_)), "{what}: {v:?}");
        let d = run_one(node(id::DEX_DECAP), copy);
        if expected_drop(d.verdict()) {
            continue;
        }
        let what = format!("dex-decap on copy {k} of {copies}: {}", hex(copy));
        assert_eq!((d.counters.decap, d.malformed()), (1, 0), "{what}");
        let received = if copies > 1 {
            branch_id(id::DEX_BRANCH, k as u16)
        } else {
            first
        };
        check_hop_card(&hop_card(&d, &what), received, digest, &what);
        check_restored(
            "dex-encap → dex-branch → dex-decap",
            d.bytes(),
            &lowered(bytes, 2),
        );
    }
    Some(copies)
}

/// BIER, with `bytes` sent from a BFIR with BitString [`BIER_BITS`] (bits 1–3) after
/// encapsulation by the trace (routing) or the DEX (bump) encapsulating node:
///
/// - trace, at `bier-bfr`: two BIER copies (bits 1 and 3, TTL − 1) and the BFER's own copy,
///   one section exported; each neighbor's copy out of BIER and through the decapsulating node
///   (routing) is the original two routers lower, the own copy (which the BFR also routed)
///   three lower;
/// - trace, at `bier-bfer`: the own copy comes out decapsulated, two routers lower; the
///   neighbors' copies still carry the trace, which the decapsulating node takes off;
/// - DEX, at `bier-bfr`: copy k is stamped `[bier-bfr, k]`, which `dex-decap` reports; each
///   comes back as the original, one router (two for the own copy) lower.
///
/// Returns how many of the three chains ran to the end.
pub fn bier_chains(bytes: &[u8]) -> usize {
    let mut done = 0;
    let e = run_one(config(Role::Encap, Forwarding::Route), bytes);
    if e.counters.encap == 1 && matches!(e.verdict(), Verdict::Forward(_)) {
        if let Some(w) = as_bier(e.bytes(), BIER_BITS) {
            done += bier_trace(bytes, &w, id::BIER_BFR) as usize;
            done += bier_trace(bytes, &w, id::BIER_BFER) as usize;
        }
    }
    let e = run_one(node(id::DEX_ENCAP), bytes);
    if e.counters.encap == 1 && matches!(e.verdict(), Verdict::Forward(_)) {
        if let Some(w) = as_bier(e.bytes(), BIER_BITS) {
            done += bier_dex(bytes, &w, hop_card(&e, "dex-encap").digest) as usize;
        }
    }
    done
}

/// The copies a BIER node made: the neighbors' (still BIER), the own copy's index, and the own
/// copy.
type BierCopies<'a> = (Vec<&'a [u8]>, usize, &'a [u8]);

/// The copies a BIER node made of [`BIER_BITS`]; `None` when a router rightly dropped one.
fn bier_copies<'a>(o: &'a Outcome, what: &str) -> Option<BierCopies<'a>> {
    assert_eq!(
        (o.out.len(), o.counters.bier_local, o.malformed()),
        (3, 1, 0),
        "{what}: three copies, one of them the BFER's own"
    );
    if o.out.iter().any(|(v, _)| expected_drop(*v)) {
        return None;
    }
    let mut neighbors = Vec::new();
    let mut own = None;
    for (k, (v, copy)) in o.out.iter().enumerate() {
        assert!(matches!(v, Verdict::Forward(_)), "{what}: {v:?}");
        if is_bier(copy) {
            neighbors.push(&copy[..]);
        } else {
            assert!(
                own.replace((k, &copy[..])).is_none(),
                "{what}: two own copies"
            );
        }
    }
    let (k, own) = own.unwrap();
    Some((neighbors, k, own))
}

fn bier_trace(bytes: &[u8], w: &[u8], at: u32) -> bool {
    let b = run_one(node(at), w);
    if expected_drop(b.verdict()) {
        return false;
    }
    let what = format!("{} on {}", node(at).name(), hex(w));
    let Some((neighbors, _, own)) = bier_copies(&b, &what) else {
        return false;
    };
    let decap = config(Role::Decap, Forwarding::Route);
    if at == id::BIER_BFR {
        assert_eq!(
            b.counters.transit, 2,
            "{what}: transit for the neighbors, and again for the own copy"
        );
        assert_eq!(
            b.cards(PostcardKind::Section).len(),
            1,
            "{what}: one section"
        );
        let d = run_one(decap, own);
        if !expected_drop(d.verdict()) {
            assert_eq!((d.counters.decap, d.malformed()), (1, 0), "{what}");
            check_restored("bier-bfr's own copy → decap", d.bytes(), &lowered(bytes, 3));
        }
    } else {
        assert_eq!(
            (b.counters.decap, b.traces, b.hops),
            (1, 1, 2),
            "{what}: the own copy decapsulated, with the encapsulating node's entry and its own"
        );
        check_restored("bier-bfer's own copy", own, &lowered(bytes, 2));
    }
    for n in neighbors {
        let d = run_one(decap, &from_bier(n));
        if expected_drop(d.verdict()) {
            continue;
        }
        assert_eq!((d.counters.decap, d.malformed()), (1, 0), "{what}");
        check_restored("a BIER copy → decap", d.bytes(), &lowered(bytes, 2));
    }
    true
}

fn bier_dex(bytes: &[u8], w: &[u8], digest: u64) -> bool {
    let b = run_one(node(id::BIER_BFR), w);
    if expected_drop(b.verdict()) {
        return false;
    }
    let what = format!("bier-bfr on {}", hex(w));
    let Some((_, own, _)) = bier_copies(&b, &what) else {
        return false;
    };
    let cards = b.cards(PostcardKind::Hop);
    assert_eq!(
        cards.len(),
        2,
        "{what}: a hop postcard, and one for the own copy"
    );
    check_hop_card(&cards[0], branch_id(id::DEX_ENCAP, 0), digest, &what);
    let stamped = branch_id(id::BIER_BFR, own as u16);
    check_hop_card(&cards[1], stamped, digest, &format!("{what}, own copy"));
    for (k, (_, copy)) in b.out.iter().enumerate() {
        let (copy, routers) = if is_bier(copy) {
            (from_bier(copy), 1)
        } else {
            (copy.clone(), 2)
        };
        let d = run_one(node(id::DEX_DECAP), &copy);
        if expected_drop(d.verdict()) {
            continue;
        }
        let what = format!("dex-decap on copy {k}: {}", hex(&copy));
        assert_eq!((d.counters.decap, d.malformed()), (1, 0), "{what}");
        check_hop_card(
            &hop_card(&d, &what),
            branch_id(id::BIER_BFR, k as u16),
            digest,
            &what,
        );
        check_restored(
            "dex-encap → bier-bfr → dex-decap",
            d.bytes(),
            &lowered(bytes, routers),
        );
    }
    true
}

/// The fuzz target `pipeline`: the input as one frame through every node, and in BIER through
/// the BIER nodes; three of it as one batch through each node that replicates; then the chains.
pub fn pipeline(bytes: &[u8]) {
    for n in nodes() {
        run_one(n, bytes);
    }
    let wrapped = as_bier(bytes, BIER_BITS);
    for n in bier_nodes() {
        if let Some(w) = &wrapped {
            run_one(n, w);
        }
    }
    for n in nodes() {
        if !n.config.pim.routes.is_empty() {
            run_batch(n, &[bytes, bytes, bytes]);
        } else if let (false, Some(w)) = (n.config.bifts.is_empty(), &wrapped) {
            run_batch(n, &[w, bytes, w]);
        }
    }
    encap_transit_decap(bytes, Forwarding::Bump);
    encap_transit_decap(bytes, Forwarding::Route);
    encap_branch_decap(bytes);
    dex_encap_branch_decap(bytes);
    bier_chains(bytes);
}

/// Lower-case hex, for messages and regression cases.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The inverse of [`hex`]; whitespace is ignored.
pub fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}
