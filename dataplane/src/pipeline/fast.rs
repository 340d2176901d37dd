//! The per-packet fast path: an untagged IPv6 packet with one destination (a bump, or a unicast
//! route) whose IOAM work is a transit update, an encapsulation into a new Hop-by-Hop header, a
//! decapsulation of the layout mtnode writes, or nothing. For such a packet it does exactly what
//! the general path in the parent module does, in straight-line code over layouts worked out
//! once per configuration ([`Fast::new`]), without the copy plan. It declines everything else
//! before touching the packet or a counter, and the general path takes it: that path stays the
//! definition of what the node does, and the tests below hold the two equal.
//!
//! It must never be the only code that handles some packet: every check here is a reason to
//! decline, not to drop or to count as malformed.
#![forbid(unsafe_code)]

use core::ops::Range;

use super::{
    is_multicast6, Forwarding, NodeConfig, Packet, Pipeline, Prefix, Sink, TraceEvent, TraceMode,
    Verdict, IPFIX_PORT, IPFIX_TLS_PORT, MAX_PORTS,
};
use crate::frame::{Frame, HEADROOM};
use crate::ioam::{self, encapsulate, HopFacts, Recorded, Role};
use crate::wire::ioam::{node_len_for, option_type as ioam_type, TRACE_HEADER_LEN};
use crate::wire::ipv6ext::option_type;
use crate::wire::{ipv6, IoamTrace};

/// Frame offsets of an untagged IPv6 packet: the IPv6 header, the Hop-by-Hop header after it,
/// and, in the layout mtnode writes, the trace header after PadN(0) and the 4-octet option prefix.
const L3: usize = 14;
const HBH: usize = L3 + ipv6::HEADER_LEN;
const TRACE: usize = HBH + 8;

/// What the fast path needs from one configuration, worked out when the configuration is set,
/// never per packet.
#[derive(Debug, Default)]
pub(super) struct Fast {
    /// Tests switch the fast path off to compare it with the general path.
    #[cfg(test)]
    off: bool,
    /// The node routes; otherwise it is a bump in the wire and `bump` has its egress.
    route: bool,
    /// A bump's egress and interface IDs by receiving port.
    bump: Vec<Hop>,
    /// The namespaces a received trace may belong to (not encapsulating, not per-hop), in
    /// configuration order: the first match is the general path's.
    traced: Vec<Traced>,
    /// The encapsulating namespaces in configuration order.
    encaps: Vec<Encap>,
    /// Some selector has a prefix longer than 128 bits: the general path decides.
    odd_selector: bool,
}

/// Where a packet leaves and the interface IDs its slot records.
#[derive(Debug, Clone, Copy)]
struct Hop {
    port: u16,
    ingress_if: u16,
    egress_if: u16,
    ingress_if_wide: u32,
    egress_if_wide: u32,
}

impl Hop {
    fn new(config: &NodeConfig, rx: u16, port: u16) -> Hop {
        let rx_if = config.ports.get(rx as usize);
        let tx_if = config.ports.get(port as usize);
        Hop {
            port,
            ingress_if: rx_if.map_or(u16::MAX, |x| x.if_id),
            egress_if: tx_if.map_or(u16::MAX, |x| x.if_id),
            ingress_if_wide: rx_if.map_or(u32::MAX, |x| x.if_id_wide),
            egress_if_wide: tx_if.map_or(u32::MAX, |x| x.if_id_wide),
        }
    }
}

/// A transit or decapsulating namespace, with the node data its slot takes.
#[derive(Debug)]
struct Traced {
    id: u16,
    decap: bool,
    node: ioam::NodeData,
}

/// An encapsulating namespace as the fast path matches and inserts it.
#[derive(Debug)]
struct Encap {
    node: ioam::NodeData,
    select: Vec<MaskSelector>,
    /// What a new Hop-by-Hop header adds when the fast path can insert it (`None`: per-hop
    /// DEX, or no plan).
    block: Option<EncapBlock>,
}

/// A [`super::Selector`] with its prefixes as 128-bit value and mask: one XOR and AND per
/// address instead of a slice compare. Both are the address octets in native order, as the
/// packet's are read, so no byte swap is needed: XOR and AND work octet by octet.
#[derive(Debug, Clone, Copy)]
struct MaskSelector {
    src: (u128, u128),
    dst: (u128, u128),
    dscp: Option<u8>,
    udp_dst_port: Option<u16>,
}

impl MaskSelector {
    /// `None` for a prefix longer than the address, which [`Prefix::matches`] cannot take.
    fn new(s: &super::Selector) -> Option<MaskSelector> {
        let mask = |p: Option<Prefix<16>>| match p {
            None => Some((0, 0)),
            Some(p) if p.len > 128 => None,
            Some(p) => {
                let m = u128::MAX.checked_shl(128 - p.len as u32).unwrap_or(0);
                let m = u128::from_ne_bytes(m.to_be_bytes());
                Some((u128::from_ne_bytes(p.addr) & m, m))
            }
        };
        Some(MaskSelector {
            src: mask(s.src)?,
            dst: mask(s.dst)?,
            dscp: s.dscp,
            udp_dst_port: s.udp_dst_port,
        })
    }

    /// [`super::selects`], on addresses as integers.
    #[inline]
    fn selects(&self, src: u128, dst: u128, dscp: u8, udp: Option<u16>) -> bool {
        (src ^ self.src.0) & self.src.1 == 0
            && (dst ^ self.dst.0) & self.dst.1 == 0
            && self.dscp.is_none_or(|d| d == dscp)
            && self.udp_dst_port.is_none_or(|port| udp == Some(port))
    }
}

/// The octets an encapsulating namespace puts in front of the upper layer in a new Hop-by-Hop
/// header, as [`encapsulate`] writes them, with this node's slot already taken off RemainingLen.
/// Octet 0, the header's Next Header, is the packet's.
#[derive(Debug)]
struct EncapBlock {
    bytes: Box<[u8]>,
    /// This node's slot, as offsets into `bytes`.
    slot: Range<usize>,
    trace_type: u32,
}

impl EncapBlock {
    /// Run the general path's [`encapsulate`] once on a bare IPv6 header and keep what it
    /// inserted; `None` when this node's own slot would not fit (the general path then sets
    /// Overflow) or the plan cannot be inserted at all.
    fn new(plan: &ioam::EncapPlan, node: &ioam::NodeData) -> Option<EncapBlock> {
        let mut ip = [0u8; ipv6::HEADER_LEN];
        ip[0] = 0x60;
        ip[6] = ipv6::next_header::UDP;
        let mut f = Frame::from_bytes(vec![0u8; HEADROOM + ip.len()], &ip)?;
        let th = encapsulate(&mut f, 0, plan).ok()? - ipv6::HEADER_LEN;
        let mut bytes: Box<[u8]> = f.bytes()[ipv6::HEADER_LEN..].into();
        let units = node.slot_units(plan.trace_type);
        let remaining = plan.data_len / 4;
        if units > remaining {
            return None;
        }
        let mut t = IoamTrace::new_unchecked(&mut bytes[th..th + ioam::trace_len(plan)]);
        t.set_remaining_len((remaining - units) as u8);
        let start = th + TRACE_HEADER_LEN + (remaining - units) * 4;
        Some(EncapBlock {
            bytes,
            slot: start..start + units * 4,
            trace_type: plan.trace_type,
        })
    }
}

impl Fast {
    pub(super) fn new(config: &NodeConfig) -> Fast {
        let ns = config.namespaces.iter().enumerate();
        Fast {
            #[cfg(test)]
            off: false,
            route: config.forwarding == Forwarding::Route,
            bump: match config.forwarding {
                Forwarding::Route => Vec::new(),
                Forwarding::Bump => (0..config.ports.len() as u16)
                    .map_while(|rx| {
                        let n = config.ports.len() as u16;
                        // Pipeline::bump_egress: the other port, or the first that is not rx.
                        let port = if n == 2 {
                            u16::from(rx == 0)
                        } else {
                            (0..n).find(|&i| i != rx)?
                        };
                        Some(Hop::new(config, rx, port))
                    })
                    .collect(),
            },
            traced: ns
                .clone()
                .filter(|(_, n)| n.role != Role::Encap && n.mode != TraceMode::PerHop)
                .map(|(_, n)| Traced {
                    id: n.id,
                    decap: n.role == Role::Decap,
                    node: n.node,
                })
                .collect(),
            encaps: ns
                .clone()
                .filter(|(_, n)| n.role == Role::Encap)
                .map(|(_, n)| {
                    let dex = n.mode == TraceMode::PerHop && n.dex.is_some();
                    Encap {
                        node: n.node,
                        select: n.select.iter().filter_map(MaskSelector::new).collect(),
                        block: n
                            .plan
                            .filter(|_| !dex)
                            .and_then(|p| EncapBlock::new(&p, &n.node)),
                    }
                })
                .collect(),
            odd_selector: ns
                .filter(|(_, n)| n.role == Role::Encap)
                .any(|(_, n)| n.select.iter().any(|s| MaskSelector::new(s).is_none())),
        }
    }
}

/// The layout mtnode writes in a Hop-by-Hop header of its own, as [`ioam::find_trace`]'s fast
/// path accepts it: PadN(0), a Pre-allocated Trace option, then one padding option to the end.
/// Returns the option's length octet, or `None` for anything else (the general path decides).
#[inline]
fn own_trace_layout(b: &[u8], packet_end: usize) -> Option<usize> {
    let h: &[u8; 8] = b.get(HBH..HBH + 8)?.try_into().ok()?;
    // PadN(0) at octets 2–3, option type 0x31 or 0x11 at 4 (they differ in one bit), IOAM
    // type Pre-allocated Trace at 7: one compare.
    const MASK: u64 = u64::from_be_bytes([
        0,
        0,
        0xff,
        0xff,
        !(option_type::IOAM ^ option_type::IOAM_CHG),
        0,
        0,
        0xff,
    ]);
    const WANT: u64 = u64::from_be_bytes([
        0,
        0,
        option_type::PADN,
        0,
        option_type::IOAM & option_type::IOAM_CHG,
        0,
        0,
        ioam_type::PREALLOCATED_TRACE,
    ]);
    if u64::from_be_bytes(*h) & MASK != WANT {
        return None;
    }
    let hlen = (h[1] as usize + 1) * 8;
    let end = 6 + h[5] as usize;
    let ok = HBH + hlen <= packet_end
        && end <= hlen
        && hlen - end < 8
        && ioam::is_our_padding(&b[HBH + end..HBH + hlen]);
    ok.then_some(h[5] as usize)
}

impl Pipeline {
    /// Take packet `index` down the fast path: `true` when it did, with the verdict set and
    /// every counter as the general path would leave them; `false`, having changed nothing,
    /// when the general path must.
    #[inline]
    pub(super) fn fast_one<B: AsRef<[u8]> + AsMut<[u8]>, S: Sink>(
        &mut self,
        config: &NodeConfig,
        fast: &Fast,
        now_ns: u64,
        index: usize,
        p: &mut Packet<B>,
        sink: &mut S,
    ) -> bool {
        #[cfg(test)]
        if fast.off {
            return false;
        }
        let (rx, rx_ns) = (p.rx_port, p.rx_ns);
        let b = p.frame.bytes_mut();
        let len = b.len();
        let Some(h) = b.first_chunk::<HBH>() else {
            return false;
        };
        if h[12..14] != [0x86, 0xdd] || h[L3] >> 4 != 6 {
            return false;
        }
        let packet_end = HBH + u16::from_be_bytes([h[L3 + 4], h[L3 + 5]]) as usize;
        if packet_end > len {
            return false;
        }
        let nh = h[L3 + 6];
        let mut hop_limit = h[L3 + 7];
        let hop = if fast.route {
            let dst: &[u8; 16] = h[L3 + 24..HBH].try_into().expect("16 octets");
            if is_multicast6(dst) && !config.pim.routes.is_empty() {
                return false;
            }
            match config.routes6.iter().find(|r| r.prefix.matches(dst)) {
                Some(r) if hop_limit > 1 => {
                    hop_limit -= 1;
                    Hop::new(config, rx, r.port)
                }
                _ => return false,
            }
        } else {
            match fast.bump.get(rx as usize) {
                Some(hop) => *hop,
                None => return false,
            }
        };
        let port = hop.port;
        let q = port as usize % MAX_PORTS;
        let mut facts = HopFacts {
            hop_limit,
            ingress_if: hop.ingress_if,
            egress_if: hop.egress_if,
            ingress_if_wide: hop.ingress_if_wide,
            egress_if_wide: hop.egress_if_wide,
            rx_ns,
            now_ns,
            queue_depth: self.queued[q],
            buffer_occupancy: self.buffer_occupancy,
        };
        if nh == ipv6::next_header::HOP_BY_HOP {
            let Some(opt_len) = own_trace_layout(b, packet_end) else {
                return false;
            };
            // IoamTrace::new_checked, on what the layout check left open.
            let t = &b[TRACE..TRACE + TRACE_HEADER_LEN];
            let data_len = opt_len.wrapping_sub(2 + TRACE_HEADER_LEN);
            let trace_type = u32::from_be_bytes([0, t[4], t[5], t[6]]);
            let remaining = (t[3] & 0x7f) as usize;
            if opt_len < 2 + TRACE_HEADER_LEN
                || data_len % 4 != 0
                || t[2] >> 3 != node_len_for(trace_type)
                || remaining * 4 > data_len
            {
                return false;
            }
            let ns_id = u16::from_be_bytes([t[0], t[1]]);
            let Some(ns) = fast.traced.iter().find(|n| n.id == ns_id) else {
                b[L3 + 7] = hop_limit;
                self.counters.passthrough += 1;
                return self.fast_out(&mut p.verdict, len, port, q);
            };
            let range = TRACE..TRACE + opt_len - 2;
            if ns.decap {
                if self.postcards.is_some() {
                    // The end-of-section postcard is the general path's.
                    return false;
                }
                // As the general path records at the end node: the egress's short ID only.
                facts.egress_if_wide = u32::MAX;
                facts.queue_depth = 0;
                b[L3 + 7] = hop_limit;
                self.fast_record(b, range.clone(), trace_type, remaining, &ns.node, &facts);
                sink.trace(&TraceEvent {
                    index,
                    rx_port: rx,
                    rx_ns,
                    timestamp_format: ns.node.timestamp_format,
                    trace: IoamTrace::new_unchecked(&b[range]),
                });
                // `decapsulate` on this layout (its own header, nothing else in it) takes the
                // whole header off.
                let (next, hlen) = (b[HBH], (b[HBH + 1] as usize + 1) * 8);
                let payload_len = (packet_end - HBH) as u16;
                ioam::remove_header(&mut p.frame, L3, HBH, hlen, next, payload_len);
                self.counters.decap += 1;
                return self.fast_out(&mut p.verdict, p.frame.len(), port, q);
            }
            // Transit (a per-section namespace only breaks the section at a branch point).
            b[L3 + 7] = hop_limit;
            self.counters.transit += 1;
            self.fast_record(b, range, trace_type, remaining, &ns.node, &facts);
            return self.fast_out(&mut p.verdict, len, port, q);
        }
        // No Hop-by-Hop header: encapsulate if a namespace selects the packet.
        let udp_port = match nh {
            ipv6::next_header::UDP => b
                .get(HBH + 2..HBH + 4)
                .map(|w| u16::from_be_bytes([w[0], w[1]])),
            ipv6::next_header::DEST_OPTS => return false,
            _ => None,
        };
        if udp_port.is_some_and(|p| p == IPFIX_PORT || p == IPFIX_TLS_PORT) || fast.odd_selector {
            return false;
        }
        let src = u128::from_ne_bytes(h[L3 + 8..L3 + 24].try_into().expect("16 octets"));
        let dst = u128::from_ne_bytes(h[L3 + 24..HBH].try_into().expect("16 octets"));
        let dscp = ((u16::from_be_bytes([h[L3], h[L3 + 1]]) >> 4) as u8) >> 2;
        let selected = fast
            .encaps
            .iter()
            .find(|e| e.select.iter().any(|s| s.selects(src, dst, dscp, udp_port)));
        let Some(Encap { node, block, .. }) = selected else {
            b[L3 + 7] = hop_limit;
            self.counters.passthrough += 1;
            return self.fast_out(&mut p.verdict, len, port, q);
        };
        let Some(block) = block else {
            return false;
        };
        let s = block.bytes.len();
        let payload_len = packet_end - HBH + s;
        if payload_len > u16::MAX as usize || p.frame.insert_gap(HBH, s).is_err() {
            return false;
        }
        let b = p.frame.bytes_mut();
        b[HBH..HBH + s].copy_from_slice(&block.bytes);
        b[HBH] = nh;
        b[L3 + 6] = ipv6::next_header::HOP_BY_HOP;
        b[L3 + 4..L3 + 6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        b[L3 + 7] = hop_limit;
        let slot = &mut b[HBH + block.slot.start..HBH + block.slot.end];
        match <&mut [u8; 20]>::try_from(&mut *slot) {
            Ok(slot) if block.trace_type == ioam::TRACE_TYPE_BITS0_4 => {
                ioam::write_slot_bits0_4(slot, node, &facts)
            }
            _ => ioam::write_slot(slot, block.trace_type, node, &facts),
        }
        self.counters.encap += 1;
        self.fast_out(&mut p.verdict, len + s, port, q)
    }

    /// [`ioam::record`] on the checked trace at `range`, counting an overflow.
    #[inline(always)]
    fn fast_record(
        &mut self,
        b: &mut [u8],
        range: Range<usize>,
        trace_type: u32,
        remaining: usize,
        node: &ioam::NodeData,
        facts: &HopFacts,
    ) {
        if trace_type == ioam::TRACE_TYPE_BITS0_4 && remaining >= 5 {
            let start = range.start + TRACE_HEADER_LEN + (remaining - 5) * 4;
            if let Some(slot) = b.get_mut(start..start + 20) {
                ioam::write_slot_bits0_4(slot.try_into().expect("20 octets"), node, facts);
                b[range.start + 3] = (b[range.start + 3] & 0x80) | (remaining - 5) as u8;
                return;
            }
        }
        let mut t = IoamTrace::new_unchecked(&mut b[range]);
        if ioam::record(&mut t, node, facts) == Recorded::Overflow {
            self.counters.overflow += 1;
        }
    }

    /// The general path's `finish` for one destination of a packet now `len` octets long.
    #[inline]
    fn fast_out(&mut self, verdict: &mut Verdict, len: usize, port: u16, q: usize) -> bool {
        self.counters.packets_out += 1;
        self.counters.bytes_out += len as u64;
        self.counters.tx_by_port[q] += 1;
        self.queued[q] += 1;
        *verdict = Verdict::Forward(port);
        true
    }
}

#[cfg(test)]
mod tests {
    //! The fast path against the general path: the same packets through two pipelines with the
    //! same configuration, one with the fast path switched off, must leave the same bytes,
    //! verdicts, counters and traces. Inputs are every fixture packet, each again after an
    //! encapsulating node, and random mutations of both.
    use std::sync::Arc;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::super::*;
    use super::Fast;
    use crate::frame::{Frame, HEADROOM};
    use crate::ioam::{EncapPlan, NodeData, Role, Snapshot, TimestampFormat};
    use crate::mcast::{Oif, PimTable, SgRoute};

    /// Records every trace the decapsulating node hands over.
    #[derive(Debug, Default)]
    struct Traces(Vec<(usize, u16, u64, TimestampFormat, Vec<u8>)>);

    impl Sink for Traces {
        fn trace(&mut self, e: &TraceEvent<'_>) {
            let bytes = e.trace.clone().into_inner().to_vec();
            self.0
                .push((e.index, e.rx_port, e.rx_ns, e.timestamp_format, bytes));
        }
    }

    fn node(id: u32, format: TimestampFormat, snapshot: bool) -> NodeData {
        NodeData {
            node_id: id,
            node_id_wide: 0x0100_0000_0000 + id as u64,
            namespace_data: 0xdead_0000 + id,
            namespace_data_wide: 0xbeef_0000_0000 + id as u64,
            timestamp_format: format,
            snapshot: snapshot.then_some(Snapshot {
                schema_id: 77,
                len: 8,
                data: [7; 32],
            }),
        }
    }

    fn prefix(addr: [u8; 16], len: u8) -> Prefix<16> {
        Prefix { addr, len }
    }

    /// One node: `role` for namespace 1 (none for `None`), plus a per-section transit or decap
    /// namespace 2 and an encapsulating namespace 3 selecting by UDP port and DSCP.
    #[allow(clippy::too_many_arguments)]
    fn node_config(
        id: u32,
        role: Option<Role>,
        trace_type: u32,
        hops: usize,
        forwarding: Forwarding,
        ports: u16,
        pim: bool,
        format: TimestampFormat,
        snapshot: bool,
    ) -> NodeConfig {
        let n = node(id, format, snapshot);
        let mut namespaces = Vec::new();
        if let Some(role) = role {
            namespaces.push(Namespace {
                id: 1,
                role,
                mode: TraceMode::Trace,
                node: n,
                plan: (role == Role::Encap).then(|| EncapPlan::new(1, trace_type, hops, &n)),
                dex: None,
                select: vec![Selector {
                    dst: Some(prefix([0xff; 16], 8)),
                    ..Selector::default()
                }],
            });
        }
        namespaces.push(Namespace {
            id: 2,
            role: if role == Some(Role::Decap) {
                Role::Decap
            } else {
                Role::Transit
            },
            mode: TraceMode::PerSection,
            node: n,
            plan: None,
            dex: None,
            select: vec![],
        });
        namespaces.push(Namespace {
            id: 3,
            role: Role::Encap,
            mode: TraceMode::Trace,
            node: n,
            plan: Some(EncapPlan::new(3, 0xc0_0000, 2, &n)),
            dex: None,
            select: vec![
                Selector {
                    udp_dst_port: Some(5001),
                    dscp: Some(0),
                    ..Selector::default()
                },
                Selector {
                    src: Some(prefix(
                        [0x20, 1, 0xd, 0xb8, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        35,
                    )),
                    dst: Some(prefix(
                        [0x20, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        16,
                    )),
                    dscp: Some(0),
                    ..Selector::default()
                },
            ],
        });
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(&[0x20, 1, 0xd, 0xb8]);
        let mut g = [0u8; 16];
        g[..2].copy_from_slice(&[0xff, 0x3e]);
        NodeConfig {
            name: format!("n{id}"),
            node_id: id,
            forwarding,
            malformed: MalformedPolicy::Forward,
            timestamp_format: format,
            ports: (0..ports)
                .map(|k| Port {
                    name: format!("p{k}"),
                    if_id: id as u16 * 10 + k,
                    if_id_wide: id * 1000 + k as u32,
                    capacity_bps: 10_000_000_000,
                    queue: None,
                })
                .collect(),
            routes6: vec![
                Route {
                    prefix: prefix([0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 32),
                    port: ports - 1,
                },
                Route {
                    prefix: prefix([0xff; 16], 8),
                    port: 1,
                },
            ],
            routes4: vec![],
            namespaces,
            pim: PimTable {
                routes: if pim {
                    vec![SgRoute {
                        source: s,
                        group: g,
                        iif: 0,
                        oil: vec![Oif {
                            port: 1,
                            ttl_threshold: 1,
                        }],
                    }]
                } else {
                    vec![]
                },
            },
            bifts: vec![],
            epoch: 1,
        }
    }

    /// The configurations compared: every role, bump and routed, several trace types.
    fn configs() -> Vec<NodeConfig> {
        use Forwarding::{Bump, Route};
        use TimestampFormat::{Ntp, Posix, Ptp};
        let mut v = Vec::new();
        for role in [
            None,
            Some(Role::Encap),
            Some(Role::Transit),
            Some(Role::Decap),
        ] {
            for (tt, hops, snapshot) in [
                (0xf8_0000, 8, false),
                (0xf8_0000, 0, false),
                (0xc0_0000, 3, false),
                (0xff_f002, 2, true),
                (0x80_0000, 40, false),
            ] {
                v.push(node_config(
                    7, role, tt, hops, Bump, 2, false, Ptp, snapshot,
                ));
                v.push(node_config(
                    8, role, tt, hops, Route, 3, true, Ntp, snapshot,
                ));
            }
            v.push(node_config(
                9, role, 0xf8_0000, 8, Bump, 3, false, Posix, false,
            ));
            v.push(node_config(
                10, role, 0xf8_0000, 8, Route, 2, false, Ptp, false,
            ));
        }
        v
    }

    fn fixture_packets() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcap-fixtures");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for path in names {
            let file = std::fs::File::open(&path).unwrap();
            let mut r = pcap_file::pcap::PcapReader::new(file).unwrap();
            while let Some(p) = r.next_packet() {
                out.push(p.unwrap().data.into_owned());
            }
        }
        assert!(out.len() > 40, "fixtures missing from {}", dir.display());
        out
    }

    /// The fixtures, then each as encapsulating nodes with several trace types send it.
    fn inputs() -> &'static [Vec<u8>] {
        static ALL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        ALL.get_or_init(|| {
            let plain = fixture_packets();
            let mut all = plain.clone();
            for c in configs()
                .into_iter()
                .filter(|c| c.namespaces[0].role == Role::Encap)
            {
                let mut p = Pipeline::new(Arc::new(c));
                let mut batch: Vec<_> = plain.iter().map(|b| packet(b, 0)).collect();
                p.process(5_000, &mut batch, &mut Traces::default());
                all.extend(
                    batch
                        .iter()
                        .filter(|p| matches!(p.verdict, Verdict::Forward(_)))
                        .map(|p| p.frame.bytes().to_vec()),
                );
            }
            all.sort();
            all.dedup();
            all
        })
    }

    fn packet(bytes: &[u8], rx_port: u16) -> Packet<Vec<u8>> {
        Packet {
            frame: Frame::from_bytes(vec![0u8; HEADROOM + 2048], bytes).unwrap(),
            rx_port,
            rx_ns: 1_000 + bytes.len() as u64,
            verdict: Verdict::Pending,
        }
    }

    type Outcome = (
        Vec<(Vec<u8>, Verdict)>,
        Counters,
        Vec<(usize, u16, u64, TimestampFormat, Vec<u8>)>,
    );

    fn run(config: &Arc<NodeConfig>, off: bool, frames: &[(Vec<u8>, u16)]) -> Outcome {
        let mut p = Pipeline::new(Arc::clone(config));
        p.fast = Arc::new(Fast {
            off,
            ..Fast::new(config)
        });
        p.buffer_occupancy = 5;
        let mut sink = Traces::default();
        // Two batches, so that per-batch state (queue depths) restarts.
        let mut out = Vec::new();
        for chunk in frames.chunks(frames.len().div_ceil(2).max(1)) {
            let mut batch: Vec<_> = chunk.iter().map(|(b, rx)| packet(b, *rx)).collect();
            p.process_replicating(
                1_000_000_000_000_005_000,
                &mut batch,
                &mut || Some(vec![0u8; HEADROOM + 2048]),
                &mut sink,
            );
            out.extend(batch.iter().map(|p| (p.frame.bytes().to_vec(), p.verdict)));
        }
        (out, p.counters().clone(), sink.0)
    }

    fn same(frames: &[(Vec<u8>, u16)]) {
        for c in configs() {
            let c = Arc::new(c);
            let general = run(&c, true, frames);
            let fast = run(&c, false, frames);
            assert_eq!(fast.0, general.0, "frames and verdicts, config {c:?}");
            assert_eq!(fast.1, general.1, "counters, config {c:?}");
            assert_eq!(fast.2, general.2, "traces, config {c:?}");
        }
    }

    #[test]
    fn fast_path_matches_the_general_path_on_every_fixture() {
        let frames: Vec<_> = inputs()
            .iter()
            .flat_map(|b| [(b.clone(), 0), (b.clone(), 1)])
            .collect();
        same(&frames);
    }

    #[test]
    fn fast_path_takes_the_common_cases() {
        // The benchmarks' nodes must not quietly fall back to the general path.
        for role in [Role::Encap, Role::Transit, Role::Decap] {
            let c = node_config(
                7,
                Some(role),
                0xf8_0000,
                8,
                Forwarding::Bump,
                2,
                false,
                TimestampFormat::Ptp,
                false,
            );
            let input = inputs()
                .iter()
                .find(|b| {
                    b.len() > 54
                        && b[12..14] == [0x86, 0xdd]
                        && b[38] == 0xff
                        && (b[20] == 0) == (role != Role::Encap)
                        && (role == Role::Encap || b[62..64] == [0, 1])
                })
                .unwrap();
            let mut p = Pipeline::new(Arc::new(c));
            let fast = Arc::clone(&p.fast);
            let config = Arc::clone(&p.config);
            let mut pkt = packet(input, 0);
            let taken = p.fast_one(&config, &fast, 2_000, 0, &mut pkt, &mut Traces::default());
            assert!(taken, "{role:?}");
            assert_eq!(pkt.verdict, Verdict::Forward(1));
        }
    }

    /// A configuration change reaches the fast path: what it worked out is the new
    /// configuration's, from the next batch on.
    #[test]
    fn set_config_renews_the_fast_path() {
        let cfg = |role| {
            node_config(
                7,
                Some(role),
                0xf8_0000,
                8,
                Forwarding::Bump,
                2,
                false,
                TimestampFormat::Ptp,
                false,
            )
        };
        let traced = inputs()
            .iter()
            .find(|b| {
                b.len() > 70 && b[12..14] == [0x86, 0xdd] && b[20] == 0 && b[62..64] == [0, 1]
            })
            .unwrap();
        let mut p = Pipeline::new(Arc::new(cfg(Role::Transit)));
        let mut sink = Traces::default();
        let mut batch = vec![packet(traced, 0)];
        p.process(2_000, &mut batch, &mut sink);
        assert_eq!((p.counters().transit, p.counters().decap), (1, 0));
        assert_eq!(batch[0].frame.len(), traced.len());
        p.set_config(Arc::new(cfg(Role::Decap)));
        let mut batch = vec![packet(traced, 0)];
        p.process(2_000, &mut batch, &mut sink);
        assert_eq!((p.counters().transit, p.counters().decap), (1, 1));
        assert_eq!(sink.0.len(), 1);
        assert!(batch[0].frame.len() < traced.len(), "the trace came off");
    }

    fn mutate(b: &mut Vec<u8>, edits: &[(usize, u8, bool)], cut: Option<usize>) {
        for &(at, v, flip) in edits {
            if b.is_empty() {
                break;
            }
            // Mostly the headers, where the fast path decides.
            let i = if at % 4 == 0 {
                at % b.len()
            } else {
                at % b.len().min(80)
            };
            b[i] = if flip { b[i] ^ v.max(1) } else { v };
        }
        if let Some(n) = cut {
            b.truncate(n % (b.len() + 1));
        }
    }

    proptest! {
        #![proptest_config(Config {
            rng_seed: RngSeed::Fixed(0x6661_7374),
            failure_persistence: None,
            ..Config::with_cases(64)
        })]

        #[test]
        fn fast_path_matches_the_general_path_on_mutations(
            picks in prop::collection::vec(
                (any::<prop::sample::Index>(),
                 prop::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..4),
                 prop::option::weighted(0.1, any::<usize>()),
                 0u16..3),
                1..12)
        ) {
            let all = inputs();
            let frames: Vec<_> = picks
                .iter()
                .map(|(i, edits, cut, rx)| {
                    let mut b = all[i.index(all.len())].clone();
                    mutate(&mut b, edits, *cut);
                    (b, *rx)
                })
                .collect();
            same(&frames);
        }
    }
}
