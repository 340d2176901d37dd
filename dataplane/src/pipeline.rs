//! The per-packet graph over a batch: parse, route (or bump), the IOAM role of the packet's
//! namespace, and the verdict. It owns the node's runtime configuration and its counters. It
//! opens no socket, reads no clock and allocates nothing per packet: backends hand it a batch
//! and `now`, and read the verdicts back.
#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::aqm::QueueConfig;
use crate::frame::Frame;
use crate::ioam::{
    self, decapsulate, encapsulate, find_trace, record, EncapError, EncapPlan, HopFacts, NodeData,
    Recorded, Role, TimestampFormat,
};
use crate::wire::{
    ipv6, Error as WireError, EtherType, EthernetFrame, IoamTrace, Ipv4Packet, Ipv6ExtHeader,
    Ipv6Packet,
};

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
    pub node: NodeData,
    /// Encapsulating namespaces: the trace to insert.
    pub plan: Option<EncapPlan>,
    pub select: Vec<Selector>,
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
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    Malformed,
    NoRoute,
    HopLimitExceeded,
    NoHeadroom,
    TooLong,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::Malformed,
        DropReason::NoRoute,
        DropReason::HopLimitExceeded,
        DropReason::NoHeadroom,
        DropReason::TooLong,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoRoute => "no_route",
            DropReason::HopLimitExceeded => "hop_limit_exceeded",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::TooLong => "too_long",
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

/// One node's data path.
#[derive(Debug)]
pub struct Pipeline {
    config: Arc<NodeConfig>,
    counters: Counters,
    /// Packets queued per egress port in the current batch: the queue depth IOAM reports.
    queued: [u32; MAX_PORTS],
    /// Buffers in use, as the backend last reported: IOAM's buffer occupancy.
    pub buffer_occupancy: u32,
}

type Outcome = Result<u16, DropReason>;

impl Pipeline {
    pub fn new(config: Arc<NodeConfig>) -> Self {
        Pipeline {
            config,
            counters: Counters::default(),
            queued: [0; MAX_PORTS],
            buffer_occupancy: 0,
        }
    }

    pub fn config(&self) -> &Arc<NodeConfig> {
        &self.config
    }

    /// Switch to a new configuration; call between batches.
    pub fn set_config(&mut self, config: Arc<NodeConfig>) {
        self.config = config;
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Run every packet of the batch through the graph, setting each verdict. `now_ns` is the
    /// batch's time (ns since the Unix epoch), read once by the caller.
    pub fn process<B: AsRef<[u8]> + AsMut<[u8]>, S: Sink>(
        &mut self,
        now_ns: u64,
        batch: &mut [Packet<B>],
        sink: &mut S,
    ) {
        self.queued = [0; MAX_PORTS];
        // One reference-count touch per batch, not per packet.
        let config = Arc::clone(&self.config);
        for (index, p) in batch.iter_mut().enumerate() {
            self.counters.packets_in += 1;
            self.counters.bytes_in += p.frame.len() as u64;
            let outcome = self.one(&config, now_ns, index, p, sink);
            p.verdict = match outcome {
                Ok(port) => {
                    self.counters.packets_out += 1;
                    self.counters.bytes_out += p.frame.len() as u64;
                    let q = port as usize % MAX_PORTS;
                    self.counters.tx_by_port[q] += 1;
                    self.queued[q] += 1;
                    Verdict::Forward(port)
                }
                Err(r) => {
                    self.counters.dropped[r as usize] += 1;
                    Verdict::Drop(r)
                }
            };
        }
    }

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
            _ => {
                self.counters.passthrough += 1;
                self.bump_egress(p.rx_port).ok_or(DropReason::NoRoute)
            }
        }
    }

    fn bump_egress(&self, rx: u16) -> Option<u16> {
        (0..self.config.ports.len() as u16).find(|&i| i != rx)
    }

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
                egress.ok_or(DropReason::Malformed)
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
        let egress = self
            .egress4(p.rx_port, &ip.dst_addr())
            .ok_or(DropReason::NoRoute)?;
        self.counters.passthrough += 1;
        if self.config.forwarding == Forwarding::Route {
            if ttl <= 1 {
                return Err(DropReason::HopLimitExceeded);
            }
            Ipv4Packet::new_unchecked(&mut p.frame.bytes_mut()[l3..]).set_ttl(ttl - 1);
        }
        Ok(egress)
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
        let dst = ip.dst_addr();
        let hbh = l3 + ipv6::HEADER_LEN;
        let trace = if ip.next_header() == ipv6::next_header::HOP_BY_HOP {
            // The header must lie within the Payload Length, not just the frame: decapsulation
            // and encapsulation adjust the Payload Length by its size.
            let end = hbh + ip.payload_len() as usize;
            match find_trace(&bytes[..end], hbh) {
                Ok(t) => t,
                Err(e) => return self.malformed(e, p.rx_port, Some(dst)),
            }
        } else {
            None
        };
        let trace_ns = match trace {
            Some(loc) => match IoamTrace::new_checked(&bytes[loc.trace_range()]) {
                Ok(t) => Some((loc, t.namespace_id())),
                Err(e) => return self.malformed(e, p.rx_port, Some(dst)),
            },
            None => None,
        };
        let egress = self.egress6(p.rx_port, &dst).ok_or(DropReason::NoRoute)?;
        let mut hop_limit = ip.hop_limit();
        let tc = ip.traffic_class();
        let src = ip.src_addr();
        let next_header = ip.next_header();
        if self.config.forwarding == Forwarding::Route {
            if hop_limit <= 1 {
                return Err(DropReason::HopLimitExceeded);
            }
            hop_limit -= 1;
            p.frame.bytes_mut()[l3 + 7] = hop_limit;
        }
        let facts = || {
            let ports = &config.ports;
            let (i, e) = (p.rx_port as usize, egress as usize);
            HopFacts {
                hop_limit,
                ingress_if: ports.get(i).map_or(u16::MAX, |x| x.if_id),
                egress_if: ports.get(e).map_or(u16::MAX, |x| x.if_id),
                ingress_if_wide: ports.get(i).map_or(u32::MAX, |x| x.if_id_wide),
                egress_if_wide: ports.get(e).map_or(u32::MAX, |x| x.if_id_wide),
                rx_ns: p.rx_ns,
                now_ns,
                queue_depth: self.queued[e % MAX_PORTS],
                buffer_occupancy: self.buffer_occupancy,
            }
        };
        match trace_ns {
            Some((loc, ns_id)) => {
                let Some(ns) = config
                    .namespaces
                    .iter()
                    .find(|n| n.id == ns_id && n.role != Role::Encap)
                else {
                    self.counters.passthrough += 1;
                    return Ok(egress);
                };
                let f = facts();
                let range = loc.trace_range();
                let mut t = IoamTrace::new_unchecked(&mut p.frame.bytes_mut()[range.clone()]);
                if record(&mut t, &ns.node, &f) == Recorded::Overflow {
                    self.counters.overflow += 1;
                }
                if ns.role == Role::Decap {
                    sink.trace(&TraceEvent {
                        index,
                        rx_port: p.rx_port,
                        rx_ns: p.rx_ns,
                        timestamp_format: ns.node.timestamp_format,
                        trace: IoamTrace::new_unchecked(&p.frame.bytes()[range]),
                    });
                    decapsulate(&mut p.frame, l3, &loc);
                    self.counters.decap += 1;
                } else {
                    self.counters.transit += 1;
                }
                Ok(egress)
            }
            None => {
                let udp_port = udp_dst_port(p.frame.bytes(), l3, next_header);
                let Some(ns) = config.namespaces.iter().find(|n| {
                    n.role == Role::Encap
                        && n.select
                            .iter()
                            .any(|s| selects(s, &src, &dst, tc >> 2, udp_port))
                }) else {
                    self.counters.passthrough += 1;
                    return Ok(egress);
                };
                let Some(plan) = ns.plan else {
                    self.counters.passthrough += 1;
                    return Ok(egress);
                };
                let f = facts();
                let th = match encapsulate(&mut p.frame, l3, &plan) {
                    Ok(th) => th,
                    Err(EncapError::NoHeadroom) => return Err(DropReason::NoHeadroom),
                    Err(EncapError::TooLong) => return Err(DropReason::TooLong),
                };
                let len = ioam::trace_len(&plan);
                let mut t = IoamTrace::new_unchecked(&mut p.frame.bytes_mut()[th..th + len]);
                if record(&mut t, &ns.node, &f) == Recorded::Overflow {
                    self.counters.overflow += 1;
                }
                self.counters.encap += 1;
                Ok(egress)
            }
        }
    }
}

fn selects(s: &Selector, src: &[u8; 16], dst: &[u8; 16], dscp: u8, udp: Option<u16>) -> bool {
    s.src.is_none_or(|p| p.matches(src))
        && s.dst.is_none_or(|p| p.matches(dst))
        && s.dscp.is_none_or(|d| d == dscp)
        && s.udp_dst_port.is_none_or(|port| udp == Some(port))
}

/// The UDP destination port, walking Hop-by-Hop and Destination Options headers.
fn udp_dst_port(bytes: &[u8], l3: usize, mut nh: u8) -> Option<u16> {
    let mut at = l3 + ipv6::HEADER_LEN;
    for _ in 0..4 {
        match nh {
            ipv6::next_header::UDP => {
                let b = bytes.get(at + 2..at + 4)?;
                return Some(u16::from_be_bytes([b[0], b[1]]));
            }
            ipv6::next_header::HOP_BY_HOP | ipv6::next_header::DEST_OPTS => {
                let h = Ipv6ExtHeader::new_checked(bytes.get(at..)?).ok()?;
                nh = h.next_header();
                at += h.header_len();
            }
            _ => return None,
        }
    }
    None
}
