//! The per-packet graph over a batch: parse, route (or bump, or replicate by PIM-SSM route or
//! BIER BIFT), the IOAM role of the packet's namespace, postcards, and the verdict. It owns the
//! node's runtime configuration and its counters. It opens no socket, reads no clock and
//! allocates nothing per packet: backends hand it a batch, `now` and buffers for replicas, and
//! read the verdicts back.
#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::aqm::QueueConfig;
use crate::branch::{self, BranchEncoding};
use crate::export::{self, BranchId, Postcard, PostcardKind, PostcardRing};
use crate::frame::Frame;
use crate::ioam::{
    self, decapsulate, encapsulate, encapsulate_dex, find_dex, find_trace, record, EncapError,
    EncapPlan, HopFacts, NodeData, Recorded, Role, TimestampFormat,
};
use crate::mcast::{self, Bift, McastMiss, Neighbor, PimTable};
use crate::wire::ioam::dex_ext_bit;
use crate::wire::ioam::{flags as trace_flags, MAX_TRACE_DATA};
use crate::wire::{
    bier, ipv6, BierHeader, Error as WireError, EtherType, EthernetFrame, IoamTrace, Ipv4Packet,
    Ipv6ExtHeader, Ipv6Packet,
};
use crate::wire::{IoamDex, IoamDexRepr};

mod fast;

/// Most ports one node has.
pub const MAX_PORTS: usize = 64;

/// An IP prefix over `N` octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix<const N: usize> {
    pub addr: [u8; N],
    pub len: u8,
}

impl<const N: usize> Prefix<N> {
    pub fn matches(&self, a: &[u8; N]) -> bool {
        let full = self.len as usize / 8;
        if self.addr[..full] != a[..full] {
            return false;
        }
        let rem = self.len % 8;
        rem == 0 || {
            let mask = 0xffu8 << (8 - rem);
            (self.addr[full] ^ a[full]) & mask == 0
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub name: String,
    pub if_id: u16,
    pub if_id_wide: u32,
    /// Line rate, bits per second: what DEX's export cap is a fraction of.
    pub capacity_bps: u64,
    /// The egress queue, when the port has a managed one (shaper, AQM); otherwise frames go
    /// straight to the wire.
    pub queue: Option<QueueConfig>,
}

/// Whether the node routes (decrements the hop limit, picks the egress by prefix) or sits in the
/// wire between two ports and changes nothing but IOAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    Route,
    Bump,
}

/// What happens to a packet that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedPolicy {
    Forward,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<const N: usize> {
    pub prefix: Prefix<N>,
    pub port: u16,
}

/// Which packets an encapsulating namespace takes; every field set must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selector {
    pub src: Option<Prefix<16>>,
    pub dst: Option<Prefix<16>>,
    pub udp_dst_port: Option<u16>,
    pub dscp: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub id: u16,
    pub role: Role,
    /// What happens to the trace at a branch point (a node that sends more than one copy).
    pub mode: TraceMode,
    pub node: NodeData,
    /// Encapsulating namespaces: the trace to insert.
    pub plan: Option<EncapPlan>,
    /// Per-hop namespaces: the DEX option.
    pub dex: Option<DexConfig>,
    pub select: Vec<Selector>,
}

/// The telemetry mode of a namespace at branch points (RFC 9630 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// The trace rides along into every copy; the end node exports it whole.
    Trace,
    /// A branch node exports the section so far with its own ingress-side entry, then starts
    /// each copy's trace afresh with its per-branch entry; end nodes export the last section.
    PerSection,
    /// No trace: a DEX option (RFC 9326) asks every node to export its own data; branch nodes
    /// stamp a branch ID into each copy (RFC 9630 §4.1).
    PerHop,
}

/// A per-hop namespace's DEX settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DexConfig {
    /// The Flow ID the encapsulating node writes; sequence numbers count from 0 per namespace.
    pub flow_id: u32,
    /// The IOAM-Trace-Type: what every node exports.
    pub trace_type: u32,
    pub encoding: BranchEncoding,
    /// The base extension-flag bit of the branch field ([`crate::branch::flag_bit`]).
    pub flag_bit: u8,
    /// The `sum` encoding's node-ID gap, known to every node so any node decodes a sum field.
    pub sum_gap: u32,
    /// Export at most 1/N of the ingress port's capacity (RFC 9326 §5).
    pub rate_divisor: u32,
}

/// A node's validated, immutable runtime configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    /// The node's short IOAM node ID (its slots carry it; the egress side finds them by it).
    pub node_id: u32,
    pub forwarding: Forwarding,
    pub malformed: MalformedPolicy,
    pub timestamp_format: TimestampFormat,
    pub ports: Vec<Port>,
    /// Longest prefix first.
    pub routes6: Vec<Route<16>>,
    pub routes4: Vec<Route<4>>,
    pub namespaces: Vec<Namespace>,
    /// Static PIM-SSM routes (IPv6, and IPv4 IPv4-mapped).
    pub pim: PimTable,
    /// BIER forwarding tables, by BIFT-id.
    pub bifts: Vec<Bift>,
    /// Bumped by every configuration change; postcards carry it.
    pub epoch: u32,
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    Malformed,
    NoRoute,
    HopLimitExceeded,
    NoHeadroom,
    TooLong,
    /// A multicast packet that arrived on an interface other than its route's iif.
    RpfFail,
    /// A multicast route whose every outgoing interface the packet may not use.
    NoOif,
    /// A BIER packet with an empty BitString (RFC 8279 §6.5).
    BierEmpty,
    /// No buffer for a replica.
    NoBuffer,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::Malformed,
        DropReason::NoRoute,
        DropReason::HopLimitExceeded,
        DropReason::NoHeadroom,
        DropReason::TooLong,
        DropReason::RpfFail,
        DropReason::NoOif,
        DropReason::BierEmpty,
        DropReason::NoBuffer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoRoute => "no_route",
            DropReason::HopLimitExceeded => "hop_limit_exceeded",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::TooLong => "too_long",
            DropReason::RpfFail => "rpf_fail",
            DropReason::NoOif => "no_oif",
            DropReason::BierEmpty => "bier_empty_bitstring",
            DropReason::NoBuffer => "no_buffer",
        }
    }
}

/// What the pipeline decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pending,
    Forward(u16),
    Drop(DropReason),
}

/// A packet in a batch: its frame, where and when it arrived, and the verdict.
#[derive(Debug)]
pub struct Packet<B> {
    pub frame: Frame<B>,
    pub rx_port: u16,
    pub rx_ns: u64,
    pub verdict: Verdict,
}

/// Per-pipeline counters: plain integers, one pipeline per worker, merged on request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub encap: u64,
    pub transit: u64,
    pub decap: u64,
    /// Packets the node had no IOAM role for.
    pub passthrough: u64,
    /// Traces that had no room for this node (Overflow set).
    pub overflow: u64,
    /// Copies made beyond the first, by PIM or BIER replication.
    pub replicas: u64,
    /// BIER bit positions with no BIFT entry, cleared.
    pub bier_unreachable: u64,
    /// Copies delivered locally by a BFER.
    pub bier_local: u64,
    pub postcards_exported: u64,
    /// Postcards lost to a full ring (the packets were not).
    pub postcards_lost: u64,
    /// DEX postcards the export-rate cap held back.
    pub postcards_suppressed: u64,
    pub malformed: [u64; WireError::ALL.len()],
    pub dropped: [u64; DropReason::ALL.len()],
    pub tx_by_port: [u64; MAX_PORTS],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            packets_in: 0,
            packets_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            encap: 0,
            transit: 0,
            decap: 0,
            passthrough: 0,
            overflow: 0,
            replicas: 0,
            bier_unreachable: 0,
            bier_local: 0,
            postcards_exported: 0,
            postcards_lost: 0,
            postcards_suppressed: 0,
            malformed: [0; WireError::ALL.len()],
            dropped: [0; DropReason::ALL.len()],
            tx_by_port: [0; MAX_PORTS],
        }
    }
}

impl Counters {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Add another worker's counters into these.
    pub fn merge(&mut self, o: &Counters) {
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.encap += o.encap;
        self.transit += o.transit;
        self.decap += o.decap;
        self.passthrough += o.passthrough;
        self.overflow += o.overflow;
        self.replicas += o.replicas;
        self.bier_unreachable += o.bier_unreachable;
        self.bier_local += o.bier_local;
        self.postcards_exported += o.postcards_exported;
        self.postcards_lost += o.postcards_lost;
        self.postcards_suppressed += o.postcards_suppressed;
        for (a, b) in self.malformed.iter_mut().zip(o.malformed) {
            *a += b;
        }
        for (a, b) in self.dropped.iter_mut().zip(o.dropped) {
            *a += b;
        }
        for (a, b) in self.tx_by_port.iter_mut().zip(o.tx_by_port) {
            *a += b;
        }
    }
}

/// A trace the decapsulating node took off a packet, with its own entry recorded.
#[derive(Debug)]
pub struct TraceEvent<'a> {
    /// The packet's position in its batch.
    pub index: usize,
    pub rx_port: u16,
    pub rx_ns: u64,
    pub timestamp_format: TimestampFormat,
    pub trace: IoamTrace<&'a [u8]>,
}

/// Where decoded traces go. Called on the data path: implementations must be cheap.
pub trait Sink {
    fn trace(&mut self, event: &TraceEvent<'_>);
}

/// A sink that counts and drops: for benchmarks and the allocation test.
#[derive(Debug, Default)]
pub struct CountingSink {
    pub traces: u64,
}

impl Sink for CountingSink {
    fn trace(&mut self, _: &TraceEvent<'_>) {
        self.traces += 1;
    }
}

/// Most copies one packet makes.
pub const MAX_TARGETS: usize = MAX_PORTS;
/// Words of the largest BitString (BSL 4096).
const BIER_WORDS: usize = 64;

/// One copy's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    port: u16,
    /// A BFER's own copy: decapsulate and run the inner packet through the graph again.
    local: bool,
}

/// What is left to do per copy once the shared work is done.
#[derive(Debug, Clone)]
struct Plan {
    targets: usize,
    /// Record this node's slot into the trace at this frame range, with the copy's egress.
    slot: Option<(core::ops::Range<usize>, usize, HopFacts)>,
    /// BIER: the header's frame offset, header length and TTL to write; the copies'
    /// BitStrings are in the pipeline's scratch.
    bier: Option<(usize, usize, u8)>,
    /// DEX at a branch point: the DEX header's frame offset, this node's encoding, base flag
    /// bit and ID: copy `t` is stamped `[node, t]`.
    stamp: Option<(usize, BranchEncoding, u8, u32)>,
}

impl Plan {
    fn single() -> Plan {
        Plan::with(1, None)
    }

    fn with(targets: usize, slot: Option<(core::ops::Range<usize>, usize, HopFacts)>) -> Plan {
        Plan {
            targets,
            slot,
            bier: None,
            stamp: None,
        }
    }
}

type Outcome = Result<Plan, DropReason>;

/// One node's data path.
#[derive(Debug)]
pub struct Pipeline {
    config: Arc<NodeConfig>,
    counters: Counters,
    /// Packets queued per egress port in the current batch: the queue depth IOAM reports.
    queued: [u32; MAX_PORTS],
    /// Buffers in use, as the backend last reported: IOAM's buffer occupancy.
    pub buffer_occupancy: u32,
    /// Where postcards go; without a ring none are made.
    pub postcards: Option<Arc<PostcardRing>>,
    /// The next DEX sequence number, per namespace.
    dex_seq: Vec<u32>,
    /// The DEX export cap's tokens (postcards) and when they were last topped up.
    dex_budget: f64,
    dex_budget_at: u64,
    targets: [Target; MAX_TARGETS],
    /// Per target, its BitString (BIER); the incoming one at the end.
    bier_words: Box<[u64]>,
    /// What the fast path needs from `config`, worked out when it was set.
    fast: Arc<fast::Fast>,
}

impl Pipeline {
    pub fn new(config: Arc<NodeConfig>) -> Self {
        let namespaces = config.namespaces.len();
        Pipeline {
            fast: Arc::new(fast::Fast::new(&config)),
            config,
            counters: Counters::default(),
            queued: [0; MAX_PORTS],
            buffer_occupancy: 0,
            postcards: None,
            dex_seq: vec![0; namespaces],
            dex_budget: 64.0,
            dex_budget_at: 0,
            targets: [Target {
                port: 0,
                local: false,
            }; MAX_TARGETS],
            bier_words: vec![0u64; (MAX_TARGETS + 1) * BIER_WORDS].into_boxed_slice(),
        }
    }

    pub fn config(&self) -> &Arc<NodeConfig> {
        &self.config
    }

    /// Switch to a new configuration; call between batches.
    pub fn set_config(&mut self, config: Arc<NodeConfig>) {
        // Sequence numbers continue across a change; a new namespace starts at 0.
        self.dex_seq.resize(config.namespaces.len(), 0);
        self.fast = Arc::new(fast::Fast::new(&config));
        self.config = config;
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Run every packet of the batch through the graph without making replicas: a packet with
    /// several destinations goes to the first, and the others are counted as `no_buffer`.
    pub fn process<B: AsRef<[u8]> + AsMut<[u8]>, S: Sink>(
        &mut self,
        now_ns: u64,
        batch: &mut Vec<Packet<B>>,
        sink: &mut S,
    ) {
        self.process_replicating(now_ns, batch, &mut || None, sink);
    }

    /// Run every packet of the batch through the graph, setting each verdict. Replicas are
    /// appended to `batch` with their verdicts set, in buffers from `alloc` (reserve capacity
    /// for them once, and the steady state allocates nothing); a BFER's local copy is appended
    /// and run through the graph in the same call. `now_ns` is the batch's time, read once by
    /// the caller.
    pub fn process_replicating<B: AsRef<[u8]> + AsMut<[u8]>, S: Sink>(
        &mut self,
        now_ns: u64,
        batch: &mut Vec<Packet<B>>,
        alloc: &mut dyn FnMut() -> Option<B>,
        sink: &mut S,
    ) {
        self.queued = [0; MAX_PORTS];
        // One reference-count touch per batch, not per packet.
        let config = Arc::clone(&self.config);
        let fast = Arc::clone(&self.fast);
        let mut i = 0;
        // Set when a BFER's own copy comes round again as the inner packet: not a new arrival.
        let mut again = false;
        while i < batch.len() {
            if batch[i].verdict != Verdict::Pending {
                i += 1;
                again = false;
                continue;
            }
            if !again {
                self.counters.packets_in += 1;
                self.counters.bytes_in += batch[i].frame.len() as u64;
                // One destination and the common IOAM work: no copy plan needed.
                if self.fast_one(&config, &fast, now_ns, i, &mut batch[i], sink) {
                    i += 1;
                    continue;
                }
            }
            match self.one(&config, now_ns, i, &mut batch[i], sink) {
                Err(r) => self.drop_packet(&mut batch[i], r),
                Ok(plan) => {
                    for t in 1..plan.targets {
                        let Some(buf) = alloc() else {
                            self.counters.dropped[DropReason::NoBuffer as usize] += 1;
                            continue;
                        };
                        let Some(frame) = Frame::from_bytes(buf, batch[i].frame.bytes()) else {
                            self.counters.dropped[DropReason::NoBuffer as usize] += 1;
                            continue;
                        };
                        let mut copy = Packet {
                            frame,
                            rx_port: batch[i].rx_port,
                            rx_ns: batch[i].rx_ns,
                            verdict: Verdict::Pending,
                        };
                        self.counters.replicas += 1;
                        self.finish(&config, &mut copy, &plan, t);
                        if copy.verdict == Verdict::Pending {
                            // A BFER's own copy goes round the graph again from the end of the
                            // batch, where it will be counted in as if it had arrived: take
                            // that back now, so a packet is one arrival wherever its bit is.
                            self.counters.packets_in = self.counters.packets_in.saturating_sub(1);
                            self.counters.bytes_in = self
                                .counters
                                .bytes_in
                                .saturating_sub(copy.frame.len() as u64);
                        }
                        batch.push(copy);
                    }
                    self.finish(&config, &mut batch[i], &plan, 0);
                }
            }
            if batch[i].verdict == Verdict::Pending {
                again = true;
                continue;
            }
            again = false;
            i += 1;
        }
    }

    fn drop_packet<B>(&mut self, p: &mut Packet<B>, r: DropReason) {
        self.counters.dropped[r as usize] += 1;
        p.verdict = Verdict::Drop(r);
    }

    /// The per-copy work: this copy's IOAM slot and BIER BitString, then its verdict.
    #[inline(never)]
    fn finish<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        config: &NodeConfig,
        p: &mut Packet<B>,
        plan: &Plan,
        t: usize,
    ) {
        let target = self.targets[t];
        if let Some((range, ns, facts)) = &plan.slot {
            if !target.local {
                let port = config.ports.get(target.port as usize);
                let f = HopFacts {
                    egress_if: port.map_or(u16::MAX, |x| x.if_id),
                    egress_if_wide: port.map_or(u32::MAX, |x| x.if_id_wide),
                    queue_depth: self.queued[target.port as usize % MAX_PORTS],
                    ..*facts
                };
                let mut tr = IoamTrace::new_unchecked(&mut p.frame.bytes_mut()[range.clone()]);
                if record(&mut tr, &config.namespaces[*ns].node, &f) == Recorded::Overflow {
                    self.counters.overflow += 1;
                }
            }
        }
        if let Some((at, encoding, base, node_id)) = plan.stamp {
            let id = BranchId {
                node_id,
                index: t as u16,
            };
            let b = p.frame.bytes_mut();
            let ours = 0x80u8 >> branch::flag_bit(encoding, base);
            let others = (0x80u8 >> base | 0x40 >> base | 0x20 >> base) & !ours;
            b[at + 3] = b[at + 3] & !others | ours;
            let f = at + branch_field_offset(b[at + 3], branch::flag_bit(encoding, base));
            b[f..f + 4].copy_from_slice(&encoding.encode(id).to_be_bytes());
        }
        if let Some((at, hlen, ttl)) = plan.bier {
            let words = &self.bier_words[t * BIER_WORDS..];
            let b = p.frame.bytes_mut();
            let n = (hlen - bier::HEADER_LEN) / 8;
            mcast::words_to_bitstring(&words[..n], &mut b[at + bier::HEADER_LEN..at + hlen]);
            b[at + 3] = ttl;
            if target.local {
                // The BFER's copy: strip BIER and hand the inner packet back to the graph.
                let ethertype: u16 = match BierHeader::new_unchecked(&b[at..]).proto() {
                    bier::proto::IPV4 => 0x0800,
                    _ => 0x86dd,
                };
                b[at - 2..at].copy_from_slice(&ethertype.to_be_bytes());
                p.frame.remove_range(at, hlen);
                self.counters.bier_local += 1;
                p.verdict = Verdict::Pending;
                return;
            }
        }
        self.counters.packets_out += 1;
        self.counters.bytes_out += p.frame.len() as u64;
        let q = target.port as usize % MAX_PORTS;
        self.counters.tx_by_port[q] += 1;
        self.queued[q] += 1;
        p.verdict = Verdict::Forward(target.port);
    }

    #[inline(never)]
    fn one<B: AsRef<[u8]> + AsMut<[u8]>, S: Sink>(
        &mut self,
        config: &NodeConfig,
        now_ns: u64,
        index: usize,
        p: &mut Packet<B>,
        sink: &mut S,
    ) -> Outcome {
        let eth = match EthernetFrame::new_checked(p.frame.bytes()) {
            Ok(e) => e,
            Err(e) => return self.malformed(e, p.rx_port, None),
        };
        let l3 = eth.header_len();
        match eth.ethertype() {
            EtherType::Ipv6 => self.ipv6(config, now_ns, index, p, l3, sink),
            EtherType::Ipv4 => self.ipv4(p, l3),
            EtherType::Bier => self.bier(config, now_ns, p, l3),
            _ => {
                self.counters.passthrough += 1;
                self.single(self.bump_egress(p.rx_port))
            }
        }
    }

    /// One destination, or no route.
    fn single(&mut self, port: Option<u16>) -> Outcome {
        let port = port.ok_or(DropReason::NoRoute)?;
        self.targets[0] = Target { port, local: false };
        Ok(Plan::single())
    }

    #[inline]
    fn bump_egress(&self, rx: u16) -> Option<u16> {
        match self.config.ports.len() {
            // The usual bump in the wire: the other port.
            2 => Some(u16::from(rx == 0)),
            n => (0..n as u16).find(|&i| i != rx),
        }
    }

    #[inline]
    fn egress6(&self, rx: u16, dst: &[u8; 16]) -> Option<u16> {
        match self.config.forwarding {
            Forwarding::Bump => self.bump_egress(rx),
            Forwarding::Route => self
                .config
                .routes6
                .iter()
                .find(|r| r.prefix.matches(dst))
                .map(|r| r.port),
        }
    }

    fn egress4(&self, rx: u16, dst: &[u8; 4]) -> Option<u16> {
        match self.config.forwarding {
            Forwarding::Bump => self.bump_egress(rx),
            Forwarding::Route => self
                .config
                .routes4
                .iter()
                .find(|r| r.prefix.matches(dst))
                .map(|r| r.port),
        }
    }

    /// Fill the targets of a routed packet: the `(S,G)` route's OIL when there is one (after
    /// the RPF check, and only interfaces whose TTL threshold the packet passes), or the one
    /// unicast or bump egress. Returns how many.
    #[inline]
    fn route_targets(
        &mut self,
        config: &NodeConfig,
        rx: u16,
        src: &[u8; 16],
        dst: &[u8; 16],
        hop_limit: u8,
        unicast: Option<u16>,
    ) -> Result<usize, DropReason> {
        let multicast = is_multicast6(dst);
        if config.forwarding == Forwarding::Route && multicast && !config.pim.routes.is_empty() {
            match config.pim.lookup(src, dst, rx) {
                Ok(route) => {
                    let mut n = 0;
                    for oif in &route.oil {
                        if oif.port != rx && hop_limit > oif.ttl_threshold && n < MAX_TARGETS {
                            self.targets[n] = Target {
                                port: oif.port,
                                local: false,
                            };
                            n += 1;
                        }
                    }
                    return if n == 0 {
                        Err(DropReason::NoOif)
                    } else {
                        Ok(n)
                    };
                }
                Err(McastMiss::RpfFail) => return Err(DropReason::RpfFail),
                Err(McastMiss::NoRoute) => {}
            }
        }
        let port = unicast.ok_or(DropReason::NoRoute)?;
        self.targets[0] = Target { port, local: false };
        Ok(1)
    }

    /// Count a malformed packet by reason, then forward it untouched or drop it by policy.
    fn malformed(&mut self, e: WireError, rx: u16, dst: Option<[u8; 16]>) -> Outcome {
        self.counters.malformed[e.index()] += 1;
        match self.config.malformed {
            MalformedPolicy::Drop => Err(DropReason::Malformed),
            MalformedPolicy::Forward => {
                let egress = match (self.config.forwarding, dst) {
                    (Forwarding::Bump, _) => self.bump_egress(rx),
                    (Forwarding::Route, Some(d)) => self.egress6(rx, &d),
                    (Forwarding::Route, None) => None,
                };
                let port = egress.ok_or(DropReason::Malformed)?;
                self.targets[0] = Target { port, local: false };
                Ok(Plan::single())
            }
        }
    }

    fn ipv4<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, p: &mut Packet<B>, l3: usize) -> Outcome {
        let ip = match Ipv4Packet::new_checked(&p.frame.bytes()[l3..]) {
            Ok(ip) => ip,
            Err(e) => return self.malformed(e, p.rx_port, None),
        };
        if !ip.verify_checksum() {
            return self.malformed(WireError::Checksum, p.rx_port, None);
        }
        let ttl = ip.ttl();
        let (src, dst) = (mcast::v4_mapped(ip.src_addr()), ip.dst_addr());
        let unicast = self.egress4(p.rx_port, &dst);
        let config = Arc::clone(&self.config);
        let n = self.route_targets(
            &config,
            p.rx_port,
            &src,
            &mcast::v4_mapped(dst),
            ttl,
            unicast,
        )?;
        self.counters.passthrough += 1;
        if self.config.forwarding == Forwarding::Route {
            if ttl <= 1 {
                return Err(DropReason::HopLimitExceeded);
            }
            Ipv4Packet::new_unchecked(&mut p.frame.bytes_mut()[l3..]).set_ttl(ttl - 1);
        }
        Ok(Plan::with(n, None))
    }

    /// What this node knows of a packet on arrival; the egress side is filled per copy.
    #[inline]
    fn ingress_facts<B: AsRef<[u8]>>(
        &self,
        config: &NodeConfig,
        p: &Packet<B>,
        hop_limit: u8,
        now_ns: u64,
    ) -> HopFacts {
        let rx = config.ports.get(p.rx_port as usize);
        HopFacts {
            hop_limit,
            ingress_if: rx.map_or(u16::MAX, |x| x.if_id),
            egress_if: u16::MAX,
            ingress_if_wide: rx.map_or(u32::MAX, |x| x.if_id_wide),
            egress_if_wide: u32::MAX,
            rx_ns: p.rx_ns,
            now_ns,
            queue_depth: 0,
            buffer_occupancy: self.buffer_occupancy,
        }
    }

    /// Export a postcard, counting it as lost when the ring is full.
    fn export(&mut self, card: Postcard) {
        let Some(ring) = &self.postcards else { return };
        if ring.push(card) {
            self.counters.postcards_exported += 1;
        } else {
            self.counters.postcards_lost += 1;
        }
    }

    /// A postcard about the IPv6 packet at `l3` with the trace at `range`.
    #[allow(clippy::too_many_arguments)]
    fn postcard(
        &self,
        kind: PostcardKind,
        config: &NodeConfig,
        ns: &Namespace,
        bytes: &[u8],
        l3: usize,
        trace: &[u8],
        facts: &HopFacts,
    ) -> Postcard {
        let ip = Ipv6Packet::new_unchecked(&bytes[l3..]);
        let t = IoamTrace::new_unchecked(trace);
        let mut c = Postcard::new(kind);
        c.observation_ns = facts.now_ns;
        c.node_id = ns.node.node_id;
        c.namespace_id = ns.id;
        c.trace_type = t.trace_type();
        c.digest = packet_digest(bytes, l3);
        c.branch = BranchId::default();
        c.epoch = config.epoch;
        c.ingress_if = facts.ingress_if as u32;
        c.egress_if = facts.egress_if as u32;
        c.src_addr = ip.src_addr();
        c.dst_addr = ip.dst_addr();
        c.flow_label = ip.flow_label();
        c.hop_limit = facts.hop_limit;
        c.set_data(&t.data()[t.remaining_len() as usize * 4..]);
        c
    }

    /// The IOAM work on an IPv6 packet (at `l3`, possibly inside BIER) that `targets` copies
    /// will leave with: encapsulate, transit (per copy, in `finish`), decapsulate, and at a
    /// branch point in per-section mode, export the section and start the trace afresh.
    #[allow(clippy::too_many_arguments)]
    fn ioam<B: AsRef<[u8]> + AsMut<[u8]>, S: Sink>(
        &mut self,
        config: &NodeConfig,
        p: &mut Packet<B>,
        l3: usize,
        index: usize,
        targets: usize,
        facts: HopFacts,
        sink: &mut S,
    ) -> Outcome {
        let bytes = p.frame.bytes();
        let ip = Ipv6Packet::new_unchecked(&bytes[l3..]);
        let (src, dst, tc, nh) = (
            ip.src_addr(),
            ip.dst_addr(),
            ip.traffic_class(),
            ip.next_header(),
        );
        let hbh = l3 + ipv6::HEADER_LEN;
        let trace = if nh == ipv6::next_header::HOP_BY_HOP {
            let end = hbh + ip.payload_len() as usize;
            match find_trace(&bytes[..end], hbh) {
                Ok(t) => t,
                Err(e) => return self.malformed_multi(e, targets),
            }
        } else {
            None
        };
        let plan = |slot| Plan::with(targets, slot);
        if trace.is_none() && nh == ipv6::next_header::HOP_BY_HOP {
            let end = hbh + ip.payload_len() as usize;
            match find_dex(&bytes[..end], hbh) {
                Ok(Some(loc)) => return self.dex_hop(config, p, l3, loc, targets, facts),
                Ok(None) => {}
                Err(e) => return self.malformed_multi(e, targets),
            }
        }
        let Some(loc) = trace else {
            let udp_port = udp_dst_port(bytes, l3, nh);
            // RFC 9326 §4: never add DEX (or a trace) to a packet that is itself an export.
            if udp_port.is_some_and(|p| p == IPFIX_PORT || p == IPFIX_TLS_PORT) {
                self.counters.passthrough += 1;
                return Ok(plan(None));
            }
            let Some((ns_index, ns)) = config.namespaces.iter().enumerate().find(|(_, n)| {
                n.role == Role::Encap
                    && n.select
                        .iter()
                        .any(|s| selects(s, &src, &dst, tc >> 2, udp_port))
            }) else {
                self.counters.passthrough += 1;
                return Ok(plan(None));
            };
            if let (TraceMode::PerHop, Some(dex)) = (ns.mode, ns.dex) {
                return self.dex_encap(config, p, l3, ns_index, dex, targets, facts);
            }
            let Some(encap) = ns.plan else {
                self.counters.passthrough += 1;
                return Ok(plan(None));
            };
            let th = match encapsulate(&mut p.frame, l3, &encap) {
                Ok(th) => th,
                Err(EncapError::NoHeadroom) => return Err(DropReason::NoHeadroom),
                Err(EncapError::TooLong) => return Err(DropReason::TooLong),
            };
            self.counters.encap += 1;
            return Ok(plan(Some((
                th..th + ioam::trace_len(&encap),
                ns_index,
                facts,
            ))));
        };
        let range = loc.trace_range();
        let ns_id = match IoamTrace::new_checked(&bytes[range.clone()]) {
            Ok(t) => t.namespace_id(),
            Err(e) => return self.malformed_multi(e, targets),
        };
        let Some((ns_index, ns)) = config
            .namespaces
            .iter()
            .enumerate()
            // A per-hop namespace exports hop postcards only: a trace claiming its ID is not
            // its own, and passes untouched.
            .find(|(_, n)| n.id == ns_id && n.role != Role::Encap && n.mode != TraceMode::PerHop)
        else {
            self.counters.passthrough += 1;
            return Ok(plan(None));
        };
        if ns.role == Role::Decap {
            let f = HopFacts {
                egress_if: config
                    .ports
                    .get(self.targets[0].port as usize)
                    .map_or(u16::MAX, |x| x.if_id),
                ..facts
            };
            let mut t = IoamTrace::new_unchecked(&mut p.frame.bytes_mut()[range.clone()]);
            if record(&mut t, &ns.node, &f) == Recorded::Overflow {
                self.counters.overflow += 1;
            }
            let bytes = p.frame.bytes();
            if self.postcards.is_some() {
                let card = self.postcard(
                    PostcardKind::EndSection,
                    config,
                    ns,
                    bytes,
                    l3,
                    &bytes[range.clone()],
                    &f,
                );
                self.export(card);
            }
            sink.trace(&TraceEvent {
                index,
                rx_port: p.rx_port,
                rx_ns: p.rx_ns,
                timestamp_format: ns.node.timestamp_format,
                trace: IoamTrace::new_unchecked(&bytes[range]),
            });
            decapsulate(&mut p.frame, l3, &loc);
            self.counters.decap += 1;
            return Ok(plan(None));
        }
        self.counters.transit += 1;
        if ns.mode == TraceMode::PerSection && targets > 1 {
            self.section_break(config, ns, p, l3, range.clone(), facts);
        }
        Ok(plan(Some((range, ns_index, facts))))
    }

    /// The encapsulating node of a per-hop namespace: insert DEX with the flow's next sequence
    /// number and the branch ID `[this node, 0]`, export this node's postcard, and stamp
    /// `[this node, k]` into copy k when it replicates itself.
    #[allow(clippy::too_many_arguments)]
    fn dex_encap<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        config: &NodeConfig,
        p: &mut Packet<B>,
        l3: usize,
        ns_index: usize,
        dex: DexConfig,
        targets: usize,
        facts: HopFacts,
    ) -> Outcome {
        let ns = &config.namespaces[ns_index];
        let seq = self.dex_seq.get(ns_index).copied().unwrap_or(0);
        if let Some(s) = self.dex_seq.get_mut(ns_index) {
            *s = s.wrapping_add(1);
        }
        let own = BranchId {
            node_id: ns.node.node_id,
            index: 0,
        };
        let field = dex.encoding.encode(own);
        let bit = branch::flag_bit(dex.encoding, dex.flag_bit);
        let mut extensions = [0u32; 8];
        extensions[dex_ext_bit::FLOW_ID as usize] = dex.flow_id;
        extensions[dex_ext_bit::SEQUENCE_NUMBER as usize] = seq;
        extensions[bit as usize] = field;
        let repr = IoamDexRepr {
            namespace_id: ns.id,
            flags: 0,
            ext_flags: dex_ext_bit::mask(dex_ext_bit::FLOW_ID)
                | dex_ext_bit::mask(dex_ext_bit::SEQUENCE_NUMBER)
                | dex_ext_bit::mask(bit),
            trace_type: dex.trace_type,
            extensions,
        };
        let at = match encapsulate_dex(&mut p.frame, l3, &repr) {
            Ok(at) => at,
            Err(EncapError::NoHeadroom) => return Err(DropReason::NoHeadroom),
            Err(EncapError::TooLong) => return Err(DropReason::TooLong),
        };
        self.counters.encap += 1;
        let card = self.hop_postcard(
            config,
            ns,
            p.frame.bytes(),
            l3,
            &dex,
            seq,
            (own, field, dex.encoding),
            targets,
            facts,
        );
        self.export_dex(card, &dex, config, p.rx_port, facts.now_ns);
        let mut plan = Plan::with(targets, None);
        if targets > 1 {
            plan.stamp = Some((at, dex.encoding, dex.flag_bit, ns.node.node_id));
        }
        Ok(plan)
    }

    /// A transit or decapsulating node of a per-hop namespace: export this node's postcard with
    /// the branch ID the packet came with; strip DEX at the end, or stamp each copy at a branch.
    fn dex_hop<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        config: &NodeConfig,
        p: &mut Packet<B>,
        l3: usize,
        loc: ioam::TraceLocation,
        targets: usize,
        facts: HopFacts,
    ) -> Outcome {
        let bytes = p.frame.bytes();
        let d = match IoamDex::new_checked(&bytes[loc.trace_range()]) {
            Ok(d) => d,
            Err(e) => return self.malformed_multi(e, targets),
        };
        let Some((ns, dex)) = config
            .namespaces
            .iter()
            .find(|n| {
                n.id == d.namespace_id() && n.role != Role::Encap && n.mode == TraceMode::PerHop
            })
            .and_then(|n| Some((n, n.dex?)))
        else {
            self.counters.passthrough += 1;
            return Ok(Plan::with(targets, None));
        };
        // The packet says which encoding its field is in, whatever this node's is now.
        let carried = branch::from_flags(d.ext_flags(), dex.flag_bit, dex.sum_gap);
        let received = match carried {
            Some(enc) => {
                let field = d
                    .extension(branch::flag_bit(enc, dex.flag_bit))
                    .unwrap_or(0);
                (enc.decode(field), field, enc)
            }
            None => (BranchId::default(), 0, dex.encoding),
        };
        let seq = d.sequence_number().unwrap_or(0);
        let dex_pkt = DexConfig {
            flow_id: d.flow_id().unwrap_or(0),
            trace_type: d.trace_type(),
            ..dex
        };
        let dex_at = loc.trace();
        let card = self.hop_postcard(
            config, ns, bytes, l3, &dex_pkt, seq, received, targets, facts,
        );
        self.export_dex(card, &dex, config, p.rx_port, facts.now_ns);
        if ns.role == Role::Decap {
            decapsulate(&mut p.frame, l3, &loc);
            self.counters.decap += 1;
            return Ok(Plan::with(targets, None));
        }
        self.counters.transit += 1;
        let mut plan = Plan::with(targets, None);
        if targets > 1 && carried.is_some() {
            plan.stamp = Some((dex_at, dex.encoding, dex.flag_bit, ns.node.node_id));
        }
        Ok(plan)
    }

    /// This node's DEX postcard: its own data for the DEX trace type, the branch ID received.
    #[allow(clippy::too_many_arguments)]
    fn hop_postcard(
        &self,
        config: &NodeConfig,
        ns: &Namespace,
        bytes: &[u8],
        l3: usize,
        dex: &DexConfig,
        seq: u32,
        (branch, field, encoding): (BranchId, u32, BranchEncoding),
        targets: usize,
        facts: HopFacts,
    ) -> Postcard {
        let ip = Ipv6Packet::new_unchecked(&bytes[l3..]);
        let egress = config.ports.get(self.targets[0].port as usize);
        let f = if targets == 1 {
            HopFacts {
                egress_if: egress.map_or(u16::MAX, |x| x.if_id),
                egress_if_wide: egress.map_or(u32::MAX, |x| x.if_id_wide),
                ..facts
            }
        } else {
            facts
        };
        let mut c = Postcard::new(PostcardKind::Hop);
        c.observation_ns = facts.now_ns;
        c.node_id = ns.node.node_id;
        c.namespace_id = ns.id;
        c.trace_type = dex.trace_type;
        c.digest = packet_digest(bytes, l3);
        c.flow_id = dex.flow_id;
        c.sequence = seq;
        c.branch = branch;
        c.branch_encoding = encoding.code();
        c.branch_field = field;
        c.epoch = config.epoch;
        c.ingress_if = f.ingress_if as u32;
        c.egress_if = f.egress_if as u32;
        c.src_addr = ip.src_addr();
        c.dst_addr = ip.dst_addr();
        c.flow_label = ip.flow_label();
        c.hop_limit = f.hop_limit;
        let units = ns.node.slot_units(dex.trace_type).min(MAX_TRACE_DATA / 4);
        ioam::write_slot(&mut c.data[..units * 4], dex.trace_type, &ns.node, &f);
        c.data_len = (units * 4) as u8;
        c
    }

    /// Export a DEX postcard within the cap: at most 1/N of the ingress port's capacity (RFC
    /// 9326 §5), counting a 28-octet UDP/IP share and the record; what the cap holds back is
    /// counted, never the packet.
    fn export_dex(
        &mut self,
        card: Postcard,
        dex: &DexConfig,
        config: &NodeConfig,
        rx: u16,
        now: u64,
    ) {
        if self.postcards.is_none() {
            return;
        }
        let capacity = config
            .ports
            .get(rx as usize)
            .map_or(10_000_000_000, |p| p.capacity_bps);
        let bits = ((28 + 96 + card.data_len as usize) * 8) as f64;
        let rate = capacity as f64 / dex.rate_divisor.max(1) as f64 / bits;
        let burst = (rate / 100.0).max(64.0);
        let elapsed = now.saturating_sub(self.dex_budget_at) as f64 / 1e9;
        self.dex_budget = (self.dex_budget + elapsed * rate).min(burst);
        self.dex_budget_at = self.dex_budget_at.max(now);
        if self.dex_budget < 1.0 {
            self.counters.postcards_suppressed += 1;
            return;
        }
        self.dex_budget -= 1.0;
        self.export(card);
    }

    /// RFC 9630 §4.2 at a branch point: export the section so far with this node's
    /// ingress-side entry (egress unknown: all ones), then clear the trace so that every copy
    /// starts a fresh section with its per-branch entry.
    fn section_break<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        config: &NodeConfig,
        ns: &Namespace,
        p: &mut Packet<B>,
        l3: usize,
        range: core::ops::Range<usize>,
        facts: HopFacts,
    ) {
        if self.postcards.is_some() {
            let bytes = p.frame.bytes();
            let mut scratch = [0u8; 8 + MAX_TRACE_DATA];
            let len = range.len().min(scratch.len());
            scratch[..len].copy_from_slice(&bytes[range.start..range.start + len]);
            let f = HopFacts {
                egress_if: u16::MAX,
                egress_if_wide: u32::MAX,
                ..facts
            };
            let mut t = IoamTrace::new_unchecked(&mut scratch[..len]);
            record(&mut t, &ns.node, &f);
            let card = self.postcard(
                PostcardKind::Section,
                config,
                ns,
                bytes,
                l3,
                &scratch[..len],
                &f,
            );
            self.export(card);
        }
        let mut t = IoamTrace::new_unchecked(&mut p.frame.bytes_mut()[range]);
        let full = (t.data().len() / 4) as u8;
        let fl = t.flags();
        t.set_flags(fl & !trace_flags::OVERFLOW);
        t.set_remaining_len(full);
        t.data_mut().fill(0);
    }

    /// A malformed IOAM option on a packet that already has its targets.
    fn malformed_multi(&mut self, e: WireError, targets: usize) -> Outcome {
        self.counters.malformed[e.index()] += 1;
        match self.config.malformed {
            MalformedPolicy::Drop => Err(DropReason::Malformed),
            MalformedPolicy::Forward => Ok(Plan::with(targets, None)),
        }
    }

    fn ipv6<B: AsRef<[u8]> + AsMut<[u8]>, S: Sink>(
        &mut self,
        config: &NodeConfig,
        now_ns: u64,
        index: usize,
        p: &mut Packet<B>,
        l3: usize,
        sink: &mut S,
    ) -> Outcome {
        let bytes = p.frame.bytes();
        let ip = match Ipv6Packet::new_checked(&bytes[l3..]) {
            Ok(ip) => ip,
            Err(e) => {
                let dst = bytes
                    .get(l3 + 24..l3 + 40)
                    .filter(|_| bytes[l3] >> 4 == 6)
                    .map(|d| d.try_into().unwrap());
                return self.malformed(e, p.rx_port, dst);
            }
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let mut hop_limit = ip.hop_limit();
        let unicast = self.egress6(p.rx_port, &dst);
        let targets = self.route_targets(config, p.rx_port, &src, &dst, hop_limit, unicast)?;
        if config.forwarding == Forwarding::Route {
            if hop_limit <= 1 {
                return Err(DropReason::HopLimitExceeded);
            }
            hop_limit -= 1;
            p.frame.bytes_mut()[l3 + 7] = hop_limit;
        }
        let facts = self.ingress_facts(config, p, hop_limit, now_ns);
        self.ioam(config, p, l3, index, targets, facts, sink)
    }

    /// RFC 8279 §6.5 on a BIER frame: one copy per neighbor with its share of the BitString and
    /// TTL − 1; the BFER's own copy goes back through the graph without its BIER header. The
    /// inner IPv6 packet's trace gets this node's per-branch entry, as at a PIM branch point.
    fn bier<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        config: &NodeConfig,
        now_ns: u64,
        p: &mut Packet<B>,
        l3: usize,
    ) -> Outcome {
        let bytes = p.frame.bytes();
        let h = match BierHeader::new_checked(&bytes[l3..]) {
            Ok(h) => h,
            Err(e) => return self.malformed(e, p.rx_port, None),
        };
        let Some(bift) = config
            .bifts
            .iter()
            .find(|b| b.bift_id == h.bift_id() && b.bsl == h.bsl())
        else {
            return Err(DropReason::NoRoute);
        };
        let ttl = h.ttl();
        let hlen = h.header_len();
        let n = mcast::words(h.bsl());
        let incoming = MAX_TARGETS * BIER_WORDS;
        mcast::bitstring_to_words(h.bitstring(), &mut self.bier_words[incoming..incoming + n]);
        if self.bier_words[incoming..incoming + n]
            .iter()
            .all(|&w| w == 0)
        {
            return Err(DropReason::BierEmpty);
        }
        if ttl <= 1 {
            return Err(DropReason::HopLimitExceeded);
        }
        let (copies, rest) = self.bier_words.split_at_mut(incoming);
        let mut count = 0usize;
        let targets = &mut self.targets;
        let unreachable = bift.forward(&mut rest[..n], |nbr, bits| {
            if count < MAX_TARGETS {
                targets[count] = match nbr {
                    Neighbor::Port(port) => Target { port, local: false },
                    Neighbor::Local => Target {
                        port: 0,
                        local: true,
                    },
                };
                copies[count * BIER_WORDS..count * BIER_WORDS + n].copy_from_slice(bits);
                count += 1;
            }
        });
        self.counters.bier_unreachable += unreachable as u64;
        if count == 0 {
            return Err(DropReason::NoRoute);
        }
        let inner = l3 + hlen;
        let mut plan = Plan {
            bier: Some((l3, hlen, ttl - 1)),
            ..Plan::with(count, None)
        };
        if h.proto() == bier::proto::IPV6 && Ipv6Packet::new_checked(&bytes[inner..]).is_ok() {
            let facts = self.ingress_facts(config, p, bytes[inner + 7], now_ns);
            // Encap at the BFIR, transit at a BFR: a local copy meets its decapsulating role
            // when it comes back through the graph as IPv6, so a BFER does nothing here.
            let local_only = (0..count).all(|t| self.targets[t].local);
            let per_hop = Ipv6Packet::new_unchecked(&bytes[inner..]).next_header()
                == ipv6::next_header::HOP_BY_HOP
                && find_dex(bytes, inner + ipv6::HEADER_LEN).is_ok_and(|d| d.is_some());
            if local_only {
                self.counters.passthrough += 1;
            } else if per_hop {
                let hbh = inner + ipv6::HEADER_LEN;
                let loc = find_dex(p.frame.bytes(), hbh).ok().flatten();
                let transit = loc.and_then(|loc| {
                    let d = IoamDex::new_checked(&p.frame.bytes()[loc.trace_range()]).ok()?;
                    config
                        .namespaces
                        .iter()
                        .any(|n| n.id == d.namespace_id() && n.role == Role::Transit)
                        .then_some(loc)
                });
                match transit {
                    Some(loc) => {
                        plan.stamp = self.dex_hop(config, p, inner, loc, count, facts)?.stamp
                    }
                    None => self.counters.passthrough += 1,
                }
            } else if let Some(dex_encap) = self.inner_dex_encap(config, p.frame.bytes(), inner) {
                let (ns_index, dex) = dex_encap;
                plan.stamp = self
                    .dex_encap(config, p, inner, ns_index, dex, count, facts)?
                    .stamp;
            } else {
                plan.slot = self.inner_ioam(config, p, inner, count, facts)?;
            }
        } else {
            self.counters.passthrough += 1;
        }
        Ok(plan)
    }

    /// The per-hop namespace that would encapsulate this inner IPv6 packet, if any and if it
    /// carries no IOAM yet.
    fn inner_dex_encap(
        &self,
        config: &NodeConfig,
        bytes: &[u8],
        l3: usize,
    ) -> Option<(usize, DexConfig)> {
        let ip = Ipv6Packet::new_unchecked(&bytes[l3..]);
        if ip.next_header() == ipv6::next_header::HOP_BY_HOP {
            let hbh = l3 + ipv6::HEADER_LEN;
            if find_trace(bytes, hbh).ok()?.is_some() {
                return None;
            }
        }
        let (src, dst, tc) = (ip.src_addr(), ip.dst_addr(), ip.traffic_class());
        let udp_port = udp_dst_port(bytes, l3, ip.next_header());
        let (i, ns) = config.namespaces.iter().enumerate().find(|(_, n)| {
            n.role == Role::Encap
                && n.select
                    .iter()
                    .any(|s| selects(s, &src, &dst, tc >> 2, udp_port))
        })?;
        (ns.mode == TraceMode::PerHop).then_some((i, ns.dex?))
    }

    /// The encapsulating and transit parts of [`Self::ioam`] for a packet inside BIER (a BFIR
    /// inserts the trace; BFRs record their per-branch entries).
    fn inner_ioam<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        config: &NodeConfig,
        p: &mut Packet<B>,
        l3: usize,
        targets: usize,
        facts: HopFacts,
    ) -> Result<Option<(core::ops::Range<usize>, usize, HopFacts)>, DropReason> {
        let bytes = p.frame.bytes();
        let ip = Ipv6Packet::new_unchecked(&bytes[l3..]);
        let hbh = l3 + ipv6::HEADER_LEN;
        let loc = if ip.next_header() == ipv6::next_header::HOP_BY_HOP {
            find_trace(&bytes[..hbh + ip.payload_len() as usize], hbh)
                .ok()
                .flatten()
        } else {
            None
        };
        let Some(loc) = loc else {
            let (src, dst, tc) = (ip.src_addr(), ip.dst_addr(), ip.traffic_class());
            let udp_port = udp_dst_port(bytes, l3, ip.next_header());
            let encap = config.namespaces.iter().enumerate().find(|(_, n)| {
                n.role == Role::Encap
                    && n.select
                        .iter()
                        .any(|s| selects(s, &src, &dst, tc >> 2, udp_port))
            });
            let Some((ns_index, Some(plan))) = encap.map(|(i, n)| (i, n.plan)) else {
                self.counters.passthrough += 1;
                return Ok(None);
            };
            let th = match encapsulate(&mut p.frame, l3, &plan) {
                Ok(th) => th,
                Err(EncapError::NoHeadroom) => return Err(DropReason::NoHeadroom),
                Err(EncapError::TooLong) => return Err(DropReason::TooLong),
            };
            self.counters.encap += 1;
            return Ok(Some((th..th + ioam::trace_len(&plan), ns_index, facts)));
        };
        let range = loc.trace_range();
        let Some(ns_id) = IoamTrace::new_checked(&bytes[range.clone()])
            .ok()
            .map(|t| t.namespace_id())
        else {
            self.counters.passthrough += 1;
            return Ok(None);
        };
        let Some((ns_index, ns)) =
            config.namespaces.iter().enumerate().find(|(_, n)| {
                n.id == ns_id && n.role == Role::Transit && n.mode != TraceMode::PerHop
            })
        else {
            self.counters.passthrough += 1;
            return Ok(None);
        };
        self.counters.transit += 1;
        let local_only = (0..targets).all(|t| self.targets[t].local);
        if ns.mode == TraceMode::PerSection && targets > 1 && !local_only {
            self.section_break(config, ns, p, l3, range.clone(), facts);
        }
        Ok(Some((range, ns_index, facts)))
    }
}

/// An IPv6 multicast address, or an IPv4-mapped IPv4 multicast one.
#[inline]
fn is_multicast6(dst: &[u8; 16]) -> bool {
    dst[0] == 0xff || dst[..12] == mcast::v4_mapped([0; 4])[..12] && (224..240).contains(&dst[12])
}

fn selects(s: &Selector, src: &[u8; 16], dst: &[u8; 16], dscp: u8, udp: Option<u16>) -> bool {
    s.src.is_none_or(|p| p.matches(src))
        && s.dst.is_none_or(|p| p.matches(dst))
        && s.dscp.is_none_or(|d| d == dscp)
        && s.udp_dst_port.is_none_or(|port| udp == Some(port))
}

/// IPFIX's UDP ports (RFC 7011 §10.3): packets to them are exports, never instrumented.
const IPFIX_PORT: u16 = 4739;
const IPFIX_TLS_PORT: u16 = 4740;

/// Offset of the extension field of `bit` from the DEX header's start.
fn branch_field_offset(ext_flags: u8, bit: u8) -> usize {
    crate::wire::ioam::DEX_HEADER_LEN + 4 * (ext_flags & !(0xffu8 >> bit)).count_ones() as usize
}

/// The offset and protocol of the upper layer, past Hop-by-Hop and Destination Options.
fn upper_layer(bytes: &[u8], l3: usize, mut nh: u8) -> Option<(usize, u8)> {
    let mut at = l3 + ipv6::HEADER_LEN;
    for _ in 0..4 {
        match nh {
            ipv6::next_header::HOP_BY_HOP | ipv6::next_header::DEST_OPTS => {
                let h = Ipv6ExtHeader::new_checked(bytes.get(at..)?).ok()?;
                nh = h.next_header();
                at += h.header_len();
            }
            _ => return Some((at, nh)),
        }
    }
    None
}

/// The UDP destination port, walking Hop-by-Hop and Destination Options headers.
#[inline]
fn udp_dst_port(bytes: &[u8], l3: usize, nh: u8) -> Option<u16> {
    if nh == ipv6::next_header::UDP {
        // No extension headers: the common case, without the walk.
        let at = l3 + ipv6::HEADER_LEN;
        let b = bytes.get(at + 2..at + 4)?;
        return Some(u16::from_be_bytes([b[0], b[1]]));
    }
    match upper_layer(bytes, l3, nh)? {
        (at, ipv6::next_header::UDP) => {
            let b = bytes.get(at + 2..at + 4)?;
            Some(u16::from_be_bytes([b[0], b[1]]))
        }
        _ => None,
    }
}

/// Octets of the upper layer a packet digest covers: a UDP header and 24 octets of payload, so
/// that a sequence number a little way into the payload (`mtnode gen`'s, after its magic,
/// stream and checksum-balance words) tells packets apart.
const UPPER_DIGEST_LEN: usize = 32;

/// A digest of what no node changes in an IPv6 packet: addresses, flow label, upper-layer
/// protocol and the first [`UPPER_DIGEST_LEN`] octets of the upper layer (for UDP: its header
/// and the start of the payload, where a source's sequence number sits).
pub fn packet_digest(bytes: &[u8], l3: usize) -> u64 {
    let ip = Ipv6Packet::new_unchecked(&bytes[l3..]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let flow = ip.flow_label().to_be_bytes();
    match upper_layer(bytes, l3, ip.next_header()) {
        Some((at, proto)) => {
            let end = (at + UPPER_DIGEST_LEN).min(bytes.len());
            export::digest(&[&src, &dst, &flow[1..], &[proto], &bytes[at.min(end)..end]])
        }
        None => export::digest(&[&src, &dst, &flow[1..]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::HEADROOM;
    use crate::ioam::Hops;
    use crate::mcast::{Oif, SgRoute};
    use crate::wire::BierRepr;

    const S: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const G: [u8; 16] = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1];

    fn node(id: u32) -> NodeData {
        NodeData {
            node_id: id,
            node_id_wide: id as u64,
            namespace_data: 0,
            namespace_data_wide: 0,
            timestamp_format: TimestampFormat::Ptp,
            snapshot: None,
        }
    }

    fn ns(id: u32, role: Role, mode: TraceMode) -> Namespace {
        let n = node(id);
        Namespace {
            id: 1,
            role,
            mode,
            node: n,
            plan: (role == Role::Encap).then(|| EncapPlan::new(1, 0xf8_0000, 8, &n)),
            dex: None,
            select: vec![Selector {
                dst: Some(Prefix {
                    addr: [0xff; 16],
                    len: 8,
                }),
                ..Selector::default()
            }],
        }
    }

    /// Node `id` with ports in (if id·10), b1.. (if id·10 + k), routing, one namespace.
    fn config(id: u32, role: Role, mode: TraceMode, oil: &[u8]) -> NodeConfig {
        let ports = (0..=oil.len() as u16)
            .map(|k| Port {
                name: format!("p{k}"),
                if_id: id as u16 * 10 + k,
                if_id_wide: id * 10 + k as u32,
                queue: None,
                capacity_bps: 10_000_000_000,
            })
            .collect();
        NodeConfig {
            name: format!("n{id}"),
            node_id: id,
            forwarding: Forwarding::Route,
            malformed: MalformedPolicy::Drop,
            timestamp_format: TimestampFormat::Ptp,
            ports,
            routes6: vec![Route {
                prefix: Prefix {
                    addr: [0; 16],
                    len: 0,
                },
                port: 1,
            }],
            routes4: vec![],
            namespaces: vec![ns(id, role, mode)],
            pim: PimTable {
                routes: vec![SgRoute {
                    source: S,
                    group: G,
                    iif: 0,
                    oil: oil
                        .iter()
                        .map(|&t| Oif {
                            port: t as u16,
                            ttl_threshold: 1,
                        })
                        .collect(),
                }],
            },
            bifts: vec![],
            epoch: 7,
        }
    }

    fn udp6(hop_limit: u8) -> Vec<u8> {
        let mut p = vec![0x33, 0x33, 0x80, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 12, 17, hop_limit]);
        p.extend_from_slice(&S);
        p.extend_from_slice(&G);
        p.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 12, 0, 0, 0, 0, 0, 42]);
        p
    }

    fn buf() -> Vec<u8> {
        vec![0u8; HEADROOM + 2048]
    }

    fn packet(bytes: &[u8]) -> Packet<Vec<u8>> {
        Packet {
            frame: Frame::from_bytes(buf(), bytes).unwrap(),
            rx_port: 0,
            rx_ns: 1_000,
            verdict: Verdict::Pending,
        }
    }

    fn run(p: &mut Pipeline, bytes: &[u8]) -> Vec<Packet<Vec<u8>>> {
        let mut batch = vec![packet(bytes)];
        p.process_replicating(
            2_000,
            &mut batch,
            &mut || Some(buf()),
            &mut CountingSink::default(),
        );
        batch
    }

    /// The newest entry of a frame's trace, and RemainingLen.
    fn newest(f: &[u8]) -> (crate::ioam::HopRecord, u8, usize) {
        let loc = find_trace(f, 54).unwrap().unwrap();
        let t = IoamTrace::new_checked(&f[loc.trace_range()]).unwrap();
        let rem = t.remaining_len();
        let hops = Hops::new(t.clone()).count();
        (Hops::new(t).next().unwrap(), rem, hops)
    }

    /// An encapsulated packet as node 1 sends it (one entry).
    fn from_encap() -> Vec<u8> {
        let mut p = Pipeline::new(Arc::new(config(1, Role::Encap, TraceMode::Trace, &[1])));
        run(&mut p, &udp6(64)).remove(0).frame.bytes().to_vec()
    }

    #[test]
    fn pim_branch_gives_each_copy_its_own_egress_entry() {
        let mut p = Pipeline::new(Arc::new(config(
            2,
            Role::Transit,
            TraceMode::Trace,
            &[1, 2, 3],
        )));
        let out = run(&mut p, &from_encap());
        let v: Vec<_> = out.iter().map(|p| p.verdict).collect();
        assert_eq!(
            v,
            [
                Verdict::Forward(1),
                Verdict::Forward(2),
                Verdict::Forward(3)
            ]
        );
        for (k, o) in out.iter().enumerate() {
            let (h, rem, hops) = newest(o.frame.bytes());
            assert_eq!(h.node_id, Some(2));
            assert_eq!(h.hop_limit, Some(62), "decremented once, by each router");
            assert_eq!((h.ingress_if, h.egress_if), (Some(20), Some(21 + k as u16)));
            assert_eq!(
                (rem, hops),
                (40 - 10, 2),
                "trace mode keeps the upstream entry"
            );
        }
        assert_eq!(p.counters().replicas, 2);
        assert_eq!(p.counters().packets_out, 3);
        assert_eq!(p.counters().transit, 1);
    }

    #[test]
    fn rpf_ttl_threshold_and_missing_buffers() {
        let mut p = Pipeline::new(Arc::new(config(
            2,
            Role::Transit,
            TraceMode::Trace,
            &[1, 2],
        )));
        let mut wrong = packet(&from_encap());
        wrong.rx_port = 1;
        let mut batch = vec![wrong];
        p.process(0, &mut batch, &mut CountingSink::default());
        assert_eq!(batch[0].verdict, Verdict::Drop(DropReason::RpfFail));

        let mut cfg = config(2, Role::Transit, TraceMode::Trace, &[1, 2]);
        cfg.pim.routes[0].oil[1].ttl_threshold = 63;
        let mut p = Pipeline::new(Arc::new(cfg));
        let out = run(&mut p, &from_encap());
        assert_eq!(out.len(), 1, "hop limit 63 does not pass threshold 63");

        // Without buffers the first copy still goes; the others are counted.
        let mut p = Pipeline::new(Arc::new(config(
            2,
            Role::Transit,
            TraceMode::Trace,
            &[1, 2, 3],
        )));
        let mut batch = vec![packet(&from_encap())];
        p.process(0, &mut batch, &mut CountingSink::default());
        assert_eq!(batch.len(), 1);
        assert_eq!(p.counters().dropped[DropReason::NoBuffer as usize], 2);
    }

    #[test]
    fn per_section_exports_the_section_and_restarts_each_copy() {
        let ring = Arc::new(PostcardRing::new(8));
        let mut p = Pipeline::new(Arc::new(config(
            2,
            Role::Transit,
            TraceMode::PerSection,
            &[1, 2],
        )));
        p.postcards = Some(Arc::clone(&ring));
        let input = from_encap();
        let out = run(&mut p, &input);
        assert_eq!(out.len(), 2);
        let card = ring.pop().unwrap();
        assert!(ring.pop().is_none(), "one section per packet, not per copy");
        assert_eq!(card.kind, PostcardKind::Section);
        assert_eq!((card.node_id, card.epoch, card.ingress_if), (2, 7, 20));
        assert_eq!(card.digest, packet_digest(&input, 14));
        assert_eq!(
            card.data().len(),
            2 * 20,
            "encap's entry and this node's ingress entry"
        );
        // Newest first: this node, egress unknown yet.
        assert_eq!(&card.data()[..4], &[62, 0, 0, 2]);
        assert_eq!(&card.data()[4..8], &[0, 20, 0xff, 0xff]);
        assert_eq!(
            &card.data()[20..24],
            &[63, 0, 0, 1],
            "the encap router decremented too"
        );
        for (k, o) in out.iter().enumerate() {
            let (h, rem, hops) = newest(o.frame.bytes());
            assert_eq!(
                (rem, hops),
                (40 - 5, 1),
                "a fresh section: this node's entry only"
            );
            assert_eq!(h.egress_if, Some(21 + k as u16));
            assert_eq!(
                packet_digest(o.frame.bytes(), 14),
                card.digest,
                "digest survives"
            );
        }
        assert_eq!(p.counters().postcards_exported, 1);
    }

    #[test]
    fn decap_exports_the_end_section_and_restores_the_packet() {
        let ring = Arc::new(PostcardRing::new(8));
        let mut p = Pipeline::new(Arc::new(config(
            3,
            Role::Decap,
            TraceMode::PerSection,
            &[1],
        )));
        p.postcards = Some(Arc::clone(&ring));
        let out = run(&mut p, &from_encap());
        let card = ring.pop().unwrap();
        assert_eq!(card.kind, PostcardKind::EndSection);
        assert_eq!(&card.data()[..4], &[62, 0, 0, 3]);
        let mut want = udp6(64);
        want[21] = 62;
        assert_eq!(out[0].frame.bytes(), &want[..]);
    }

    fn bier_frame(bits: u8, inner: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 1, 0xab, 0x37];
        let mut h = [0u8; 20];
        BierRepr {
            bift_id: 1,
            tc: 0,
            s: true,
            ttl: 16,
            version: 0,
            bsl: 1,
            entropy: 0,
            oam: 0,
            dscp: 0,
            proto: bier::proto::IPV6,
            bfir_id: 4,
            bitstring: &[0, 0, 0, 0, 0, 0, 0, bits],
        }
        .emit(&mut h);
        f.extend_from_slice(&h);
        f.extend_from_slice(&inner[14..]);
        f
    }

    /// RFC 8279 §6.3 at B: BitString 0111 gives C 0011 and E 0100, TTL − 1, and B's entry in
    /// each copy's inner trace names the copy's egress.
    #[test]
    fn bier_at_b_follows_rfc8279_and_stamps_the_branch() {
        let mut cfg = config(2, Role::Transit, TraceMode::Trace, &[1, 2, 3]);
        cfg.bifts = vec![Bift::new(
            1,
            1,
            &[
                (Neighbor::Port(2), vec![1, 2]),
                (Neighbor::Port(3), vec![3]),
                (Neighbor::Port(1), vec![4]),
            ],
        )
        .unwrap()];
        let mut p = Pipeline::new(Arc::new(cfg));
        let out = run(&mut p, &bier_frame(0b0111, &from_encap()));
        let got: Vec<_> = out
            .iter()
            .map(|o| {
                let h = BierHeader::new_checked(&o.frame.bytes()[14..]).unwrap();
                (o.verdict, h.bitstring()[7], h.ttl())
            })
            .collect();
        assert_eq!(
            got,
            [
                (Verdict::Forward(2), 0b0011, 15),
                (Verdict::Forward(3), 0b0100, 15)
            ]
        );
        for o in &out {
            let inner = &o.frame.bytes()[14 + 20..];
            let mut eth = o.frame.bytes()[..14].to_vec();
            eth[12..14].copy_from_slice(&[0x86, 0xdd]);
            eth.extend_from_slice(inner);
            let (h, _, hops) = newest(&eth);
            assert_eq!(hops, 2);
            let Verdict::Forward(port) = o.verdict else {
                panic!()
            };
            assert_eq!(h.egress_if, Some(20 + port));
        }
        let mut empty = vec![packet(&bier_frame(0, &from_encap()))];
        p.process(0, &mut empty, &mut CountingSink::default());
        assert_eq!(empty[0].verdict, Verdict::Drop(DropReason::BierEmpty));
    }

    /// A BFER: its own bit sends the inner packet back through the graph, where the decap
    /// role takes the trace off and the route delivers it.
    #[test]
    fn bfer_decapsulates_bier_then_ioam() {
        let mut cfg = config(4, Role::Decap, TraceMode::Trace, &[1]);
        cfg.pim.routes.clear();
        cfg.bifts = vec![Bift::new(1, 1, &[(Neighbor::Local, vec![1])]).unwrap()];
        let mut p = Pipeline::new(Arc::new(cfg));
        let mut sink = CountingSink::default();
        let mut batch = vec![packet(&bier_frame(0b0001, &from_encap()))];
        p.process_replicating(0, &mut batch, &mut || Some(buf()), &mut sink);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].verdict, Verdict::Forward(1));
        assert_eq!(sink.traces, 1);
        let mut want = udp6(64);
        want[21] = 62; // the encap router's and the BFER's decrement
        want[..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        assert_eq!(batch[0].frame.bytes(), &want[..]);
        assert_eq!((p.counters().bier_local, p.counters().decap), (1, 1));
    }
}
