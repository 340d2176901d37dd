//! The IOAM roles of RFC 9197 and RFC 9486 for the Pre-allocated Trace: the node data writer
//! (every trace-type bit 0–11 and 22, all-ones for what a node cannot fill), encapsulation into a
//! new or an existing Hop-by-Hop header, the transit update, decapsulation that restores the
//! original bytes, and the decoder of a received trace. Works on borrowed buffers only: it never
//! allocates, and time comes in as arguments.
#![forbid(unsafe_code)]

use crate::frame::{Frame, NoRoom};
use crate::wire::ioam::{flags, node_len_for, trace_bit, MAX_TRACE_DATA, TRACE_HEADER_LEN};
use crate::wire::ipv6ext::{emit_padding, option_type, Ipv6ExtHeader, Ipv6OptionRepr};
use crate::wire::{be32, checksum_finish, checksum_sum, ipv6, put16, put32, IoamTrace};

/// How a node writes timestamps (RFC 9197 §5: PTP, NTP or POSIX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// Seconds and nanoseconds since the epoch (PTP's truncated format).
    Ptp,
    /// Seconds since 1900 and a 2^-32 fraction.
    Ntp,
    /// Seconds and microseconds since the epoch, as Linux writes.
    Posix,
}

impl TimestampFormat {
    /// The two timestamp words for `ns` nanoseconds since the Unix epoch.
    pub fn words(self, ns: u64) -> (u32, u32) {
        let secs = ns / 1_000_000_000;
        let sub = ns % 1_000_000_000;
        match self {
            TimestampFormat::Ptp => (secs as u32, sub as u32),
            TimestampFormat::Posix => (secs as u32, (sub / 1_000) as u32),
            TimestampFormat::Ntp => (
                (secs + 2_208_988_800) as u32,
                ((sub << 32) / 1_000_000_000) as u32,
            ),
        }
    }

    /// Nanoseconds since the Unix epoch from the two words (inverse of [`Self::words`]).
    pub fn to_ns(self, secs: u32, frac: u32) -> u64 {
        match self {
            TimestampFormat::Ptp => secs as u64 * 1_000_000_000 + frac as u64,
            TimestampFormat::Posix => secs as u64 * 1_000_000_000 + frac as u64 * 1_000,
            TimestampFormat::Ntp => {
                (secs as u64).wrapping_sub(2_208_988_800) * 1_000_000_000
                    + ((frac as u64 * 1_000_000_000) >> 32)
            }
        }
    }
}

/// What a node's role is for a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Encap,
    Transit,
    Decap,
}

/// A node's opaque state snapshot (trace bit 22): schema and up to 32 octets of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub schema_id: u32,
    pub len: u8,
    pub data: [u8; 32],
}

/// What a node writes for one namespace, besides the per-packet facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeData {
    pub node_id: u32,
    pub node_id_wide: u64,
    pub namespace_data: u32,
    pub namespace_data_wide: u64,
    pub timestamp_format: TimestampFormat,
    pub snapshot: Option<Snapshot>,
}

impl NodeData {
    /// 4-octet units this node's slot takes for `trace_type`: NodeLen plus, with bit 22, the
    /// snapshot's header word and data.
    pub fn slot_units(&self, trace_type: u32) -> usize {
        let oss = if trace_type & trace_bit::mask(trace_bit::OPAQUE_STATE_SNAPSHOT) != 0 {
            1 + self.snapshot.map_or(0, |s| s.len as usize / 4)
        } else {
            0
        };
        node_len_for(trace_type) as usize + oss
    }
}

/// The per-packet facts a slot records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HopFacts {
    /// The hop limit the packet leaves with (after a routing node's decrement, as Linux writes).
    pub hop_limit: u8,
    pub ingress_if: u16,
    pub egress_if: u16,
    pub ingress_if_wide: u32,
    pub egress_if_wide: u32,
    /// Receive time, ns since the Unix epoch.
    pub rx_ns: u64,
    /// The batch's time, taken as the send time, ns since the Unix epoch.
    pub now_ns: u64,
    pub queue_depth: u32,
    pub buffer_occupancy: u32,
}

const ONES: u32 = u32::MAX;

/// The trace type of hop limit + node ID, interface IDs, both timestamps and transit delay
/// (bits 0–4): the one the foundation issue's targets are set for, and the one
/// [`write_slot_bits0_4`] writes with fixed-offset stores.
pub const TRACE_TYPE_BITS0_4: u32 = 0xF8_0000;

/// [`write_slot`] for [`TRACE_TYPE_BITS0_4`]: five words at fixed offsets, one bounds check (the
/// array) instead of one per field.
#[inline]
pub fn write_slot_bits0_4(slot: &mut [u8; 20], node: &NodeData, f: &HopFacts) {
    let (secs, frac) = node.timestamp_format.words(f.rx_ns);
    let d = f.now_ns.saturating_sub(f.rx_ns);
    let delay = if d > 0x7fff_ffff { ONES } else { d as u32 };
    let words = [
        (f.hop_limit as u32) << 24 | node.node_id & 0xff_ffff,
        (f.ingress_if as u32) << 16 | f.egress_if as u32,
        secs,
        frac,
        delay,
    ];
    for (w, v) in slot.chunks_exact_mut(4).zip(words) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// Write this node's data for `trace_type` into `slot` (exactly `slot_units · 4` octets), in
/// trace-type bit order (RFC 9197 §4.4.2). Straight-line: each field is computed only when its
/// bit is set, and the common fields (bits 0–4) come first without a loop.
pub fn write_slot(slot: &mut [u8], trace_type: u32, node: &NodeData, f: &HopFacts) {
    if trace_type == TRACE_TYPE_BITS0_4 {
        if let Ok(slot) = <&mut [u8; 20]>::try_from(&mut *slot) {
            return write_slot_bits0_4(slot, node, f);
        }
    }
    let has = |bit: u8| trace_type & trace_bit::mask(bit) != 0;
    let mut at = 0;
    let put = |slot: &mut [u8], at: &mut usize, v: u32| {
        if let Some(w) = slot.get_mut(*at..*at + 4) {
            w.copy_from_slice(&v.to_be_bytes());
        }
        *at += 4;
    };
    if has(trace_bit::HOP_LIM_NODE_ID) {
        put(
            slot,
            &mut at,
            (f.hop_limit as u32) << 24 | node.node_id & 0xff_ffff,
        );
    }
    if has(trace_bit::IF_IDS) {
        put(
            slot,
            &mut at,
            (f.ingress_if as u32) << 16 | f.egress_if as u32,
        );
    }
    if has(trace_bit::TS_SECONDS) || has(trace_bit::TS_FRACTION) {
        let (secs, frac) = node.timestamp_format.words(f.rx_ns);
        if has(trace_bit::TS_SECONDS) {
            put(slot, &mut at, secs);
        }
        if has(trace_bit::TS_FRACTION) {
            put(slot, &mut at, frac);
        }
    }
    if has(trace_bit::TRANSIT_DELAY) {
        let d = f.now_ns.saturating_sub(f.rx_ns);
        put(slot, &mut at, if d > 0x7fff_ffff { ONES } else { d as u32 });
    }
    if trace_type & 0x07_fffe == 0 {
        // Nothing past bit 4: the usual case.
        return;
    }
    let mut complement_at = None;
    for bit in trace_bit::NAMESPACE_DATA..=trace_bit::OPAQUE_STATE_SNAPSHOT {
        if !has(bit) {
            continue;
        }
        match bit {
            trace_bit::NAMESPACE_DATA => put(slot, &mut at, node.namespace_data),
            trace_bit::QUEUE_DEPTH => put(slot, &mut at, f.queue_depth),
            trace_bit::CHECKSUM_COMPLEMENT => {
                complement_at = Some(at);
                put(slot, &mut at, 0)
            }
            trace_bit::HOP_LIM_NODE_ID_WIDE => {
                let w = (f.hop_limit as u64) << 56 | node.node_id_wide & 0x00ff_ffff_ffff_ffff;
                put(slot, &mut at, (w >> 32) as u32);
                put(slot, &mut at, w as u32);
            }
            trace_bit::IF_IDS_WIDE => {
                put(slot, &mut at, f.ingress_if_wide);
                put(slot, &mut at, f.egress_if_wide);
            }
            trace_bit::NAMESPACE_DATA_WIDE => {
                put(slot, &mut at, (node.namespace_data_wide >> 32) as u32);
                put(slot, &mut at, node.namespace_data_wide as u32);
            }
            trace_bit::BUFFER_OCCUPANCY => put(slot, &mut at, f.buffer_occupancy),
            trace_bit::OPAQUE_STATE_SNAPSHOT => match node.snapshot {
                Some(s) => {
                    put(
                        slot,
                        &mut at,
                        ((s.len as u32 / 4) << 24) | s.schema_id & 0xff_ffff,
                    );
                    let n = s.len as usize & !3;
                    let start = at;
                    if let Some(d) = slot.get_mut(start..start + n) {
                        d.copy_from_slice(&s.data[..n]);
                    }
                    at += n;
                }
                // No schema: length 0 and the all-ones schema ID, as Linux writes.
                None => put(slot, &mut at, 0x00ff_ffff),
            },
            // Bits 12-21 are undefined: all ones (RFC 9197 §4.4.1).
            _ => put(slot, &mut at, ONES),
        }
    }
    if let Some(c) = complement_at {
        let end = at.min(slot.len());
        fill_complement(&mut slot[..end], c);
    }
}

/// RFC 9197 §4.4.2.8 / RFC 7820: make the slot's one's-complement sum zero, so a checksum
/// covering the trace is the same as over the zeroed pre-allocated slot. The complement field at
/// `at` must be zero on entry.
fn fill_complement(slot: &mut [u8], at: usize) {
    let sum = checksum_sum(0, slot);
    put16(slot, at, checksum_finish(sum));
}

/// What the egress side knows when a packet leaves its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EgressFacts {
    /// This node's short node ID: only its own slot is rewritten.
    pub node_id: u32,
    /// Packets ahead of this one in the egress queue when it arrived there.
    pub queue_depth: u32,
    /// Time spent in the egress queue, ns: added to the transit delay written at processing.
    pub queue_sojourn_ns: u64,
    pub buffer_occupancy: u32,
}

/// At dequeue, rewrite the egress-side fields of this node's slot (the newest entry of the
/// frame's trace, if its node ID is ours): transit delay (bit 4, grown by the queue sojourn, so
/// it spans receive to dequeue), queue depth (bit 6) and buffer occupancy (bit 11), and the
/// checksum complement (bit 7) after them. Returns whether a slot
/// was rewritten. Frames without a trace, or whose newest entry is another node's, are left
/// alone.
pub fn patch_egress(frame: &mut [u8], f: &EgressFacts) -> bool {
    let Some(range) = trace_range(frame) else {
        return false;
    };
    let mut t = IoamTrace::new_unchecked(&mut frame[range]);
    let tt = t.trace_type();
    let at = t.remaining_len() as usize * 4;
    let fixed = node_len_for(tt) as usize * 4;
    let data = t.data_mut();
    if at + fixed > data.len() {
        return false;
    }
    let mut len = fixed;
    if tt & trace_bit::mask(trace_bit::OPAQUE_STATE_SNAPSHOT) != 0 {
        let Some(w) = data.get(at + fixed..at + fixed + 4) else {
            return false;
        };
        len += 4 + (w[0] as usize) * 4;
        if at + len > data.len() {
            return false;
        }
    }
    let slot = &mut data[at..at + len];
    let (mut off, mut complement) = (0, None);
    let mut bits = tt & 0xff_fffe;
    while bits != 0 {
        let bit = (bits.leading_zeros() - 8) as u8;
        bits &= !trace_bit::mask(bit);
        match bit {
            trace_bit::HOP_LIM_NODE_ID if be32(slot, off) & 0xff_ffff != f.node_id & 0xff_ffff => {
                return false;
            }
            trace_bit::TRANSIT_DELAY => {
                let d = be32(slot, off) as u64 + f.queue_sojourn_ns;
                put32(slot, off, if d > 0x7fff_ffff { u32::MAX } else { d as u32 });
            }
            trace_bit::QUEUE_DEPTH => put32(slot, off, f.queue_depth),
            trace_bit::BUFFER_OCCUPANCY => put32(slot, off, f.buffer_occupancy),
            trace_bit::CHECKSUM_COMPLEMENT => {
                put32(slot, off, 0);
                complement = Some(off);
            }
            _ => {}
        }
        off += crate::wire::ioam::bit_units(bit) as usize * 4;
    }
    if tt & trace_bit::mask(trace_bit::HOP_LIM_NODE_ID) == 0 {
        return false;
    }
    if let Some(c) = complement {
        fill_complement(slot, c);
    }
    true
}

/// The frame range of the trace header and data of an IPv6 frame's Pre-allocated Trace.
fn trace_range(frame: &[u8]) -> Option<core::ops::Range<usize>> {
    let eth = crate::wire::EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != crate::wire::EtherType::Ipv6 {
        return None;
    }
    let l3 = eth.header_len();
    let ip = crate::wire::Ipv6Packet::new_checked(&frame[l3..]).ok()?;
    if ip.next_header() != ipv6::next_header::HOP_BY_HOP {
        return None;
    }
    let loc = find_trace(frame, l3 + ipv6::HEADER_LEN).ok()??;
    IoamTrace::new_checked(&frame[loc.trace_range()]).ok()?;
    Some(loc.trace_range())
}

/// What recording into a trace did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Written,
    /// No room left: the Overflow flag is set and nothing added.
    Overflow,
}

/// Record this node's slot into a checked trace (RFC 9197 §4.4.1): write at
/// `RemainingLen − slot units`, then decrement RemainingLen; without room, set Overflow.
pub fn record(trace: &mut IoamTrace<&mut [u8]>, node: &NodeData, f: &HopFacts) -> Recorded {
    let tt = trace.trace_type();
    let units = node.slot_units(tt);
    let remaining = trace.remaining_len() as usize;
    if units > remaining {
        let fl = trace.flags();
        trace.set_flags(fl | flags::OVERFLOW);
        return Recorded::Overflow;
    }
    let start = (remaining - units) * 4;
    write_slot(&mut trace.data_mut()[start..start + units * 4], tt, node, f);
    trace.set_remaining_len((remaining - units) as u8);
    Recorded::Written
}

/// How an encapsulating node lays out its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapPlan {
    pub namespace_id: u16,
    pub trace_type: u32,
    /// Pre-allocated trace data, octets (4n, at most 244).
    pub data_len: usize,
}

impl EncapPlan {
    /// Room for `hops` slots of this node's size, capped at what one option can hold.
    pub fn new(namespace_id: u16, trace_type: u32, hops: usize, node: &NodeData) -> Self {
        let slot = node.slot_units(trace_type) * 4;
        let data_len = (hops * slot).min(MAX_TRACE_DATA / slot.max(1) * slot);
        EncapPlan {
            namespace_id,
            trace_type,
            data_len,
        }
    }

    /// Octets the insertion adds (see [`option_insert_len`]).
    pub fn insert_len(&self) -> usize {
        option_insert_len(TRACE_HEADER_LEN + self.data_len)
    }
}

/// Octets of the trace header and data an [`EncapPlan`] inserts.
pub fn trace_len(plan: &EncapPlan) -> usize {
    TRACE_HEADER_LEN + plan.data_len
}

/// Why encapsulation could not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapError {
    NoHeadroom,
    /// The packet would exceed the IPv6 Payload Length or Hop-by-Hop length limits.
    TooLong,
}

impl From<NoRoom> for EncapError {
    fn from(_: NoRoom) -> Self {
        EncapError::NoHeadroom
    }
}

/// Octets an IOAM option with a `body`-octet body adds: PadN(2), the 4-octet option prefix, the
/// body and padding to 8n, plus the 2-octet header when a new one is made (which the padding
/// absorbs: the figure is the same either way).
pub fn option_insert_len(body: usize) -> usize {
    (8 + body).next_multiple_of(8)
}

/// Insert an IOAM option (`option_type` 0x31 or 0x11, IOAM Option-Type `ioam_type`) with a
/// zeroed `body`-octet body into the IPv6 packet at frame offset `l3`: into its Hop-by-Hop header
/// if it has one (as the first option, keeping the others and their 8n alignment) or a new one.
/// Only the headers in front of the insertion point move (into the headroom). Returns the frame
/// offset of the body. The caller has checked the IPv6 header and any Hop-by-Hop header.
pub fn insert_option<B: AsRef<[u8]> + AsMut<[u8]>>(
    frame: &mut Frame<B>,
    l3: usize,
    option: u8,
    ioam_type: u8,
    body: usize,
) -> Result<usize, EncapError> {
    let s = option_insert_len(body);
    let b = frame.bytes();
    let payload_len = u16::from_be_bytes([b[l3 + 4], b[l3 + 5]]) as usize + s;
    if payload_len > u16::MAX as usize || body + 2 > 255 {
        return Err(EncapError::TooLong);
    }
    let nh = b[l3 + 6];
    let hbh = l3 + ipv6::HEADER_LEN;
    let new_header = nh != ipv6::next_header::HOP_BY_HOP;
    let gap_start = if new_header {
        frame.insert_gap(hbh, s)?;
        let b = frame.bytes_mut();
        b[l3 + 6] = ipv6::next_header::HOP_BY_HOP;
        b[hbh] = nh;
        b[hbh + 1] = (s / 8 - 1) as u8;
        hbh
    } else {
        if b[hbh + 1] as usize + s / 8 > 255 {
            return Err(EncapError::TooLong);
        }
        frame.insert_gap(hbh + 2, s)?;
        let b = frame.bytes_mut();
        b[hbh + 1] += (s / 8) as u8;
        hbh + 2
    };
    let b = frame.bytes_mut();
    put16(b, l3 + 4, payload_len as u16);
    // [PadN 0][type | len | reserved | IOAM type][body][padding]
    emit_padding(&mut b[hbh + 2..], 2);
    let opt = hbh + 4;
    b[opt] = option;
    b[opt + 1] = (2 + body) as u8;
    b[opt + 2] = 0;
    b[opt + 3] = ioam_type;
    let start = opt + 4;
    b[start..start + body].fill(0);
    let end = start + body;
    emit_padding(&mut b[end..], gap_start + s - end);
    Ok(start)
}

/// Insert a pre-allocated trace as `plan` says (see [`insert_option`]). Returns the frame offset
/// of the trace header.
pub fn encapsulate<B: AsRef<[u8]> + AsMut<[u8]>>(
    frame: &mut Frame<B>,
    l3: usize,
    plan: &EncapPlan,
) -> Result<usize, EncapError> {
    let len = TRACE_HEADER_LEN + plan.data_len;
    let th = insert_option(
        frame,
        l3,
        option_type::IOAM_CHG,
        crate::wire::ioam::option_type::PREALLOCATED_TRACE,
        len,
    )?;
    let mut t = IoamTrace::new_unchecked(&mut frame.bytes_mut()[th..th + len]);
    t.set_namespace_id(plan.namespace_id);
    t.set_node_len(node_len_for(plan.trace_type));
    t.set_flags(0);
    t.set_remaining_len((plan.data_len / 4) as u8);
    t.set_trace_type(plan.trace_type);
    Ok(th)
}

/// Insert a DEX option (RFC 9326, Hop-by-Hop option 0x11) carrying `dex`. Returns the frame
/// offset of the DEX header.
pub fn encapsulate_dex<B: AsRef<[u8]> + AsMut<[u8]>>(
    frame: &mut Frame<B>,
    l3: usize,
    dex: &crate::wire::IoamDexRepr,
) -> Result<usize, EncapError> {
    let len = dex.buffer_len();
    let at = insert_option(
        frame,
        l3,
        option_type::IOAM,
        crate::wire::ioam::option_type::DEX,
        len,
    )?;
    dex.emit(&mut frame.bytes_mut()[at..at + len]);
    Ok(at)
}

/// Where a trace option sits in a Hop-by-Hop header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLocation {
    /// Frame offset of the Hop-by-Hop header.
    pub hbh: usize,
    /// Offset of the IOAM option's type octet from the header start.
    pub option: usize,
    /// Octets of the option, prefix included.
    pub option_len: usize,
}

impl TraceLocation {
    /// Frame offset of the trace header.
    pub fn trace(&self) -> usize {
        self.hbh + self.option + 4
    }

    /// Frame range of the trace header and data.
    pub fn trace_range(&self) -> core::ops::Range<usize> {
        self.trace()..self.hbh + self.option + self.option_len
    }
}

/// Is `bytes` exactly the padding [`emit_padding`] writes for its length?
pub(crate) fn is_our_padding(bytes: &[u8]) -> bool {
    match bytes.len() {
        0 => true,
        1 => bytes[0] == option_type::PAD1,
        n => bytes[0] == option_type::PADN && bytes[1] as usize == n - 2,
    }
}

/// Strip the trace option at `loc`. A trace [`encapsulate`] inserted comes off exactly: its
/// 8n-octet block (leading PadN, option, trailing padding) from an existing header, or the whole
/// header it made, so the packet comes back byte for byte. Any other layout loses the option
/// and the padding around it, keeps the header 8n long, and drops the header when only padding
/// is left. `l3` is the frame offset of the IPv6 header; the caller has checked that the
/// header lies within the IPv6 Payload Length.
pub fn decapsulate<B: AsRef<[u8]> + AsMut<[u8]>>(
    frame: &mut Frame<B>,
    l3: usize,
    loc: &TraceLocation,
) {
    let b = frame.bytes();
    let hdr = Ipv6ExtHeader::new_unchecked(&b[loc.hbh..]);
    let hlen = hdr.header_len();
    let nh = hdr.next_header();
    let payload_len = u16::from_be_bytes([b[l3 + 4], b[l3 + 5]]);
    let h = &b[loc.hbh..loc.hbh + hlen];
    let opt_end = loc.option + loc.option_len;
    let ours = loc.option == 4 && h[2] == option_type::PADN && h[3] == 0;
    // The whole header, as encapsulate makes a new one.
    let new_tail = hlen.checked_sub(opt_end);
    if ours && new_tail.is_some_and(|t| t < 8 && is_our_padding(&h[opt_end..])) {
        return remove_header(frame, l3, loc.hbh, hlen, nh, payload_len);
    }
    // The block encapsulate puts first in an existing header.
    let ex_tail = (8 - (opt_end - 2) % 8) % 8;
    if ours && opt_end + ex_tail < hlen && is_our_padding(&h[opt_end..opt_end + ex_tail]) {
        let cut = opt_end + ex_tail - 2;
        frame.remove_range(loc.hbh + 2, cut);
        let b = frame.bytes_mut();
        b[loc.hbh + 1] -= (cut / 8) as u8;
        put16(b, l3 + 4, payload_len - cut as u16);
        return;
    }
    // Someone else's layout: the padding run right before and right after the option goes with
    // it.
    let mut start = loc.option;
    let mut end = opt_end;
    let mut others = false;
    let mut run_start = None;
    let mut after = true;
    for opt in hdr.options().flatten() {
        let is_pad = matches!(opt.repr, Ipv6OptionRepr::Pad1 | Ipv6OptionRepr::PadN(_));
        if opt.offset < loc.option {
            match (is_pad, run_start) {
                (true, None) => run_start = Some(opt.offset),
                (false, _) => {
                    run_start = None;
                    others = true
                }
                _ => {}
            }
        } else if opt.offset >= end {
            if is_pad && after {
                end = opt.offset + opt.len();
            } else if !is_pad {
                after = false;
                others = true;
            }
        }
    }
    if let Some(r) = run_start {
        start = r;
    }
    if !others {
        return remove_header(frame, l3, loc.hbh, hlen, nh, payload_len);
    }
    let removed = end - start;
    let keep = removed % 8;
    let cut = removed - keep;
    frame.remove_range(loc.hbh + start, cut);
    let b = frame.bytes_mut();
    // The header moved forward by `cut`; what is left of the run becomes padding.
    b[loc.hbh + 1] -= (cut / 8) as u8;
    emit_padding(&mut b[loc.hbh + start..], keep);
    put16(b, l3 + 4, payload_len - cut as u16);
}

/// Remove a whole Hop-by-Hop header of `hlen` octets at `hbh`, handing its Next Header back to
/// the IPv6 header. What [`decapsulate`] does for a trace in a header [`encapsulate`] made.
pub(crate) fn remove_header<B: AsRef<[u8]> + AsMut<[u8]>>(
    frame: &mut Frame<B>,
    l3: usize,
    hbh: usize,
    hlen: usize,
    nh: u8,
    payload_len: u16,
) {
    frame.remove_range(hbh, hlen);
    let b = frame.bytes_mut();
    b[l3 + 6] = nh;
    put16(b, l3 + 4, payload_len - hlen as u16);
}

/// Find the Pre-allocated Trace option in the Hop-by-Hop header at frame offset `hbh`.
/// `Ok(None)`: no trace. An IOAM option whose IOAM Option-Type is not in the registry is an error.
pub fn find_trace(bytes: &[u8], hbh: usize) -> crate::wire::Result<Option<TraceLocation>> {
    find_ioam(
        bytes,
        hbh,
        crate::wire::ioam::option_type::PREALLOCATED_TRACE,
    )
}

/// Find the DEX option (RFC 9326) in the Hop-by-Hop header at frame offset `hbh`; the
/// location's `trace()` is then the DEX header. Errors as [`find_trace`].
pub fn find_dex(bytes: &[u8], hbh: usize) -> crate::wire::Result<Option<TraceLocation>> {
    find_ioam(bytes, hbh, crate::wire::ioam::option_type::DEX)
}

/// Find the IOAM option of IOAM Option-Type `want`, checking the whole header on the way:
/// one pass over its options, which must all stay inside it.
fn find_ioam(bytes: &[u8], hbh: usize, want: u8) -> crate::wire::Result<Option<TraceLocation>> {
    let h = Ipv6ExtHeader::new_unchecked(
        bytes
            .get(hbh..)
            .ok_or(crate::wire::Error::Truncated(crate::wire::Layer::Ipv6Ext))?,
    );
    if bytes.len() < hbh + 2 {
        return Err(crate::wire::Error::Truncated(crate::wire::Layer::Ipv6Ext));
    }
    if hbh + h.header_len() > bytes.len() {
        return Err(crate::wire::Error::BadLength(crate::wire::Layer::Ipv6Ext));
    }
    // Fast path for the layout mtnode writes in a header of its own: PadN(0), the IOAM option,
    // then nothing but one padding option to the end. Every octet is accounted for, so the
    // header is valid without walking it.
    let hdr = &bytes[hbh..hbh + h.header_len()];
    if hdr.len() >= 8 && hdr[2] == option_type::PADN && hdr[3] == 0 {
        let (kind, len, ioam_type) = (hdr[4], hdr[5] as usize, hdr[7]);
        let end = 6 + len;
        if matches!(kind, option_type::IOAM_CHG | option_type::IOAM)
            && len >= 2
            && end <= hdr.len()
            && ioam_type <= crate::wire::ioam::option_type::DEX
            && hdr.len() - end < 8
            && is_our_padding(&hdr[end..])
        {
            return Ok((ioam_type == want).then_some(TraceLocation {
                hbh,
                option: 4,
                option_len: end - 4,
            }));
        }
    }
    let mut found = None;
    for opt in h.options() {
        let opt = opt?;
        if let Ipv6OptionRepr::Ioam {
            option_type: option_type::IOAM_CHG | option_type::IOAM,
            ioam_type,
            ..
        } = opt.repr
        {
            if ioam_type > crate::wire::ioam::option_type::DEX {
                return Err(crate::wire::Error::UnknownIoamOption);
            }
            if ioam_type == want && found.is_none() {
                found = Some(TraceLocation {
                    hbh,
                    option: opt.offset,
                    option_len: opt.len(),
                });
            }
        }
    }
    Ok(found)
}

/// One node's entry in a received trace; a field is `None` when the trace type lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HopRecord {
    pub hop_limit: Option<u8>,
    pub node_id: Option<u32>,
    pub ingress_if: Option<u16>,
    pub egress_if: Option<u16>,
    pub timestamp_secs: Option<u32>,
    pub timestamp_frac: Option<u32>,
    pub transit_delay: Option<u32>,
    pub namespace_data: Option<u32>,
    pub queue_depth: Option<u32>,
    pub checksum_complement: Option<u16>,
    pub hop_limit_wide: Option<u8>,
    pub node_id_wide: Option<u64>,
    pub ingress_if_wide: Option<u32>,
    pub egress_if_wide: Option<u32>,
    pub namespace_data_wide: Option<u64>,
    pub buffer_occupancy: Option<u32>,
    /// Schema ID, and the offset and length of the snapshot data within the trace data.
    pub snapshot: Option<(u32, usize, usize)>,
}

/// Iterate the written entries of a trace's data, newest first. Stops at the end of the data
/// or at an entry that would run past it (`truncated` says so).
#[derive(Debug, Clone)]
pub struct Hops<'a> {
    data: &'a [u8],
    at: usize,
    trace_type: u32,
    pub truncated: bool,
}

impl<'a> Hops<'a> {
    pub fn new(trace: IoamTrace<&'a [u8]>) -> Self {
        let (at, trace_type) = (trace.remaining_len() as usize * 4, trace.trace_type());
        Hops {
            data: &trace.into_inner()[TRACE_HEADER_LEN..],
            at,
            trace_type,
            truncated: false,
        }
    }
}

impl Iterator for Hops<'_> {
    type Item = HopRecord;

    fn next(&mut self) -> Option<HopRecord> {
        let fixed = node_len_for(self.trace_type) as usize * 4;
        let oss = self.trace_type & trace_bit::mask(trace_bit::OPAQUE_STATE_SNAPSHOT) != 0;
        // A trace type with no data fields has no entries to walk.
        if self.at >= self.data.len() || self.truncated || (fixed == 0 && !oss) {
            return None;
        }
        if self.at + fixed > self.data.len() {
            self.truncated = true;
            return None;
        }
        let d = self.data;
        let mut at = self.at;
        let word = |at: &mut usize| {
            let v = be32(d, *at);
            *at += 4;
            v
        };
        let mut h = HopRecord::default();
        let mut snapshot = false;
        let mut bits = self.trace_type & 0xff_fffe;
        while bits != 0 {
            let bit = (bits.leading_zeros() - 8) as u8;
            bits &= !trace_bit::mask(bit);
            match bit {
                trace_bit::HOP_LIM_NODE_ID => {
                    let w = word(&mut at);
                    h.hop_limit = Some((w >> 24) as u8);
                    h.node_id = Some(w & 0xff_ffff);
                }
                trace_bit::IF_IDS => {
                    let w = word(&mut at);
                    h.ingress_if = Some((w >> 16) as u16);
                    h.egress_if = Some(w as u16);
                }
                trace_bit::TS_SECONDS => h.timestamp_secs = Some(word(&mut at)),
                trace_bit::TS_FRACTION => h.timestamp_frac = Some(word(&mut at)),
                trace_bit::TRANSIT_DELAY => h.transit_delay = Some(word(&mut at)),
                trace_bit::NAMESPACE_DATA => h.namespace_data = Some(word(&mut at)),
                trace_bit::QUEUE_DEPTH => h.queue_depth = Some(word(&mut at)),
                trace_bit::CHECKSUM_COMPLEMENT => {
                    h.checksum_complement = Some((word(&mut at) >> 16) as u16)
                }
                trace_bit::HOP_LIM_NODE_ID_WIDE => {
                    let hi = word(&mut at);
                    let lo = word(&mut at);
                    h.hop_limit_wide = Some((hi >> 24) as u8);
                    h.node_id_wide = Some(((hi as u64 & 0xff_ffff) << 32) | lo as u64);
                }
                trace_bit::IF_IDS_WIDE => {
                    h.ingress_if_wide = Some(word(&mut at));
                    h.egress_if_wide = Some(word(&mut at));
                }
                trace_bit::NAMESPACE_DATA_WIDE => {
                    let hi = word(&mut at) as u64;
                    h.namespace_data_wide = Some(hi << 32 | word(&mut at) as u64);
                }
                trace_bit::BUFFER_OCCUPANCY => h.buffer_occupancy = Some(word(&mut at)),
                trace_bit::OPAQUE_STATE_SNAPSHOT => snapshot = true,
                _ => {
                    word(&mut at);
                }
            }
        }
        if snapshot {
            if at + 4 > d.len() {
                self.truncated = true;
                return None;
            }
            let w = be32(d, at);
            let len = (w >> 24) as usize * 4;
            if at + 4 + len > d.len() {
                self.truncated = true;
                return None;
            }
            h.snapshot = Some((w & 0xff_ffff, at + 4, len));
            at += 4 + len;
        }
        self.at = at;
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::HEADROOM;

    fn node(id: u32) -> NodeData {
        NodeData {
            node_id: id,
            node_id_wide: 0x00aa_0000_0000_0000 | id as u64,
            namespace_data: 0xdead_beef,
            namespace_data_wide: 0x0102_0304_0506_0708,
            timestamp_format: TimestampFormat::Ptp,
            snapshot: None,
        }
    }

    fn facts() -> HopFacts {
        HopFacts {
            hop_limit: 63,
            ingress_if: 10,
            egress_if: 11,
            ingress_if_wide: 0x1_0000,
            egress_if_wide: 0x1_0001,
            rx_ns: 1_700_000_000_000_000_500,
            now_ns: 1_700_000_000_000_001_500,
            queue_depth: 3,
            buffer_occupancy: 7,
        }
    }

    /// Ethernet + IPv6 (UDP, payload 4) + UDP header... just enough to carry a trace.
    fn packet(nh: u8, ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        let payload = (ext.len() + 12) as u16;
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&payload.to_be_bytes());
        p.extend_from_slice(&[nh, 64]);
        p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        p.extend_from_slice(&[0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1]);
        p.extend_from_slice(ext);
        p.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 12, 0x12, 0x34, 0, 0, 0, 1]);
        p
    }

    fn frame(bytes: &[u8]) -> Frame<Vec<u8>> {
        Frame::from_bytes(vec![0u8; HEADROOM + 2048], bytes).unwrap()
    }

    #[test]
    fn slot_for_every_defined_bit() {
        let mut n = node(0x123456);
        n.snapshot = Some(Snapshot {
            schema_id: 0x00ab_cdef,
            len: 4,
            data: [0x5a; 32],
        });
        // Bits 0-11, undefined bit 12, and the snapshot (22).
        let tt = 0xff_f802;
        let units = n.slot_units(tt);
        assert_eq!(units, 15 + 1 + 2);
        let mut slot = vec![0u8; units * 4];
        write_slot(&mut slot, tt, &n, &facts());
        let words: Vec<u32> = slot
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            words,
            [
                0x3f12_3456, // hop limit 63, node id
                0x000a_000b, // interfaces 10 / 11
                1_700_000_000,
                500,         // ns
                1000,        // transit delay
                0xdead_beef, // namespace data
                3,           // queue depth
                words[7],    // checksum complement, checked below
                0x3faa_0000, // wide: hop limit + node id high
                0x0012_3456,
                0x0001_0000,
                0x0001_0001,
                0x0102_0304,
                0x0506_0708,
                7,           // buffer occupancy
                0xffff_ffff, // undefined bit 12
                0x01ab_cdef, // snapshot: one word, schema
                0x5a5a_5a5a,
            ]
        );
        assert_eq!(words[7] & 0xffff, 0, "reserved half of the complement");
        // The complement makes the slot's one's-complement sum zero.
        assert_eq!(checksum_finish(checksum_sum(0, &slot)), 0);
    }

    #[test]
    fn timestamp_formats() {
        let ns = 1_700_000_000_250_000_000;
        assert_eq!(TimestampFormat::Ptp.words(ns), (1_700_000_000, 250_000_000));
        assert_eq!(TimestampFormat::Posix.words(ns), (1_700_000_000, 250_000));
        assert_eq!(
            TimestampFormat::Ntp.words(ns),
            (1_700_000_000 + 2_208_988_800, 1 << 30)
        );
        for f in [
            TimestampFormat::Ptp,
            TimestampFormat::Posix,
            TimestampFormat::Ntp,
        ] {
            let (s, fr) = f.words(ns);
            assert_eq!(f.to_ns(s, fr), ns);
        }
    }

    #[test]
    fn overflow_when_no_room() {
        let mut buf = [0u8; 8 + 20];
        let mut t = IoamTrace::new_unchecked(&mut buf[..]);
        t.set_node_len(5);
        t.set_trace_type(0xf8_0000);
        t.set_remaining_len(5);
        assert_eq!(record(&mut t, &node(1), &facts()), Recorded::Written);
        assert_eq!(t.remaining_len(), 0);
        assert_eq!(record(&mut t, &node(2), &facts()), Recorded::Overflow);
        assert_eq!(t.flags(), flags::OVERFLOW);
        assert_eq!(buf[8..12], [63, 0, 0, 1]);
    }

    #[test]
    fn encapsulate_new_header_exact_bytes() {
        let orig = packet(17, &[]);
        let mut f = frame(&orig);
        let plan = EncapPlan::new(1, 0x80_0000, 3, &node(1));
        assert_eq!(plan.data_len, 12);
        assert_eq!(plan.insert_len(), 32);
        let th = encapsulate(&mut f, 14, &plan).unwrap();
        assert_eq!(th, 14 + 40 + 8);
        let b = f.bytes();
        assert_eq!(b[14 + 6], 0, "IPv6 next header is Hop-by-Hop");
        assert_eq!(&b[18..20], &[0, 12 + 32], "payload length grew by 32");
        assert_eq!(
            &b[54..86],
            &[
                17, 3, 0x01, 0x00, 0x31, 22, 0, 0, // header, PadN, IOAM option prefix
                0, 1, 0x08, 3, 0x80, 0, 0, 0, // ns 1, NodeLen 1, RemainingLen 3, type bit 0
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 3 free slots
                0x01, 0x02, 0x00, 0x00, // PadN 2
            ]
        );
        assert_eq!(&b[86..], &orig[54..]);
        assert_eq!(&b[..14], &orig[..14]);
    }

    #[test]
    fn encapsulate_into_router_alert_header_and_back() {
        let ra = [17, 0, 0x05, 0x02, 0, 0, 0x01, 0x00];
        let orig = packet(0, &ra);
        for hops in [2, 3] {
            let mut f = frame(&orig);
            let n = node(1);
            let plan = EncapPlan::new(1, 0xf8_0000, hops, &n);
            let th = encapsulate(&mut f, 14, &plan).unwrap();
            let b = f.bytes();
            let h = Ipv6ExtHeader::new_checked(&b[54..]).unwrap();
            assert_eq!(h.header_len(), 8 + plan.insert_len());
            // The Router Alert keeps its place relative to 8n and its bytes.
            let ra_at = 54 + plan.insert_len() + 2;
            assert_eq!(&b[ra_at..ra_at + 6], &ra[2..]);
            assert_eq!(th, 62);
            let loc = find_trace(b, 54).unwrap().unwrap();
            assert_eq!(loc.option, 4);
            decapsulate(&mut f, 14, &loc);
            assert_eq!(f.bytes(), &orig[..], "hops {hops}");
        }
    }

    /// Found by the mutation tests: a packet's own header that starts with padding (or is
    /// nothing but padding) comes back exactly, for both trailing-pad sizes.
    #[test]
    fn decapsulate_keeps_the_packets_own_leading_padding() {
        for own in [
            [17u8, 0, 0x01, 0x04, 0, 0, 0, 0],
            [17, 0, 0x00, 0x00, 0x05, 0x02, 0, 0],
            [17, 0, 0x01, 0x00, 0x05, 0x02, 0, 0],
        ] {
            let orig = packet(0, &own);
            for hops in [2, 3] {
                let mut f = frame(&orig);
                let plan = EncapPlan::new(1, 0xf8_0000, hops, &node(1));
                encapsulate(&mut f, 14, &plan).unwrap();
                let loc = find_trace(f.bytes(), 54).unwrap().unwrap();
                decapsulate(&mut f, 14, &loc);
                assert_eq!(f.bytes(), &orig[..], "own header {own:02x?}, {hops} hops");
            }
        }
    }

    /// Someone else's layout (the trace after a Router Alert, no leading PadN): the option and
    /// its padding go, the Router Alert stays, the header stays 8n.
    #[test]
    fn decapsulate_a_foreign_layout() {
        let mut hbh = vec![17, 3, 0x05, 0x02, 0, 0, 0x31, 0x0e, 0, 0];
        hbh.extend_from_slice(&[0, 1, 0x08, 1, 0x80, 0, 0, 0, 0, 0, 0, 0]); // 1 free slot
        hbh.extend_from_slice(&[0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]); // PadN 8
        assert_eq!(hbh.len(), 32);
        let orig = packet(0, &hbh);
        let mut f = frame(&orig);
        let loc = find_trace(f.bytes(), 54).unwrap().unwrap();
        assert_eq!(loc.option, 6);
        decapsulate(&mut f, 14, &loc);
        let b = f.bytes();
        assert_eq!(&b[54..62], &[17, 0, 0x05, 0x02, 0, 0, 0x01, 0x00]);
        assert_eq!(
            u16::from_be_bytes([b[18], b[19]]) as usize,
            orig.len() - 54 - 24
        );
        assert_eq!(&b[62..], &orig[86..]);
    }

    #[test]
    fn hops_of_a_trace_type_without_fields_end() {
        let b = [0u8; 12];
        let t = IoamTrace::new_checked(&b[..]).unwrap();
        assert_eq!(Hops::new(t).count(), 0);
    }

    #[test]
    fn decapsulate_restores_new_header_case() {
        let orig = packet(17, &[]);
        for hops in 1..=8 {
            let mut f = frame(&orig);
            let n = node(9);
            let plan = EncapPlan::new(1, 0xf8_0000, hops, &n);
            let th = encapsulate(&mut f, 14, &plan).unwrap();
            let mut t = IoamTrace::new_unchecked(&mut f.bytes_mut()[th..th + trace_len(&plan)]);
            assert_eq!(record(&mut t, &n, &facts()), Recorded::Written);
            let loc = find_trace(f.bytes(), 54).unwrap().unwrap();
            decapsulate(&mut f, 14, &loc);
            assert_eq!(f.bytes(), &orig[..], "hops {hops}");
        }
    }

    #[test]
    fn hops_decode_newest_first() {
        let mut buf = [0u8; 8 + 40];
        let mut t = IoamTrace::new_unchecked(&mut buf[..]);
        t.set_node_len(5);
        t.set_trace_type(0xf8_0000);
        t.set_remaining_len(10);
        record(&mut t, &node(1), &facts());
        record(
            &mut t,
            &node(2),
            &HopFacts {
                hop_limit: 62,
                ..facts()
            },
        );
        let hops: Vec<_> = Hops::new(IoamTrace::new_checked(&buf[..]).unwrap()).collect();
        assert_eq!(hops.len(), 2);
        assert_eq!((hops[0].node_id, hops[0].hop_limit), (Some(2), Some(62)));
        assert_eq!((hops[1].node_id, hops[1].hop_limit), (Some(1), Some(63)));
        assert_eq!(hops[1].transit_delay, Some(1000));
        assert_eq!(hops[1].ingress_if, Some(10));
    }

    #[test]
    fn egress_patch_rewrites_only_our_newest_slot() {
        let orig = packet(17, &[]);
        let mut f = frame(&orig);
        let tt = 0xfb_0000; // bits 0-4, 6, 7
        let n = node(5);
        let plan = EncapPlan::new(1, tt, 2, &n);
        let th = encapsulate(&mut f, 14, &plan).unwrap();
        let mut t = IoamTrace::new_unchecked(&mut f.bytes_mut()[th..th + trace_len(&plan)]);
        record(&mut t, &n, &facts());
        let e = EgressFacts {
            node_id: 5,
            queue_depth: 42,
            queue_sojourn_ns: 76_000,
            buffer_occupancy: 9,
        };
        assert!(patch_egress(f.bytes_mut(), &e));
        let t = IoamTrace::new_checked(&f.bytes()[th..th + trace_len(&plan)]).unwrap();
        let hop = Hops::new(t.clone()).next().unwrap();
        assert_eq!(
            hop.transit_delay,
            Some(1_000 + 76_000),
            "processing + queue"
        );
        assert_eq!(hop.queue_depth, Some(42));
        assert_eq!(hop.node_id, Some(5));
        let slot = &t.data()[t.remaining_len() as usize * 4..][..7 * 4];
        assert_eq!(
            checksum_finish(checksum_sum(0, slot)),
            0,
            "complement redone"
        );
        // Another node's slot is not ours to touch.
        let before = f.bytes().to_vec();
        assert!(!patch_egress(
            f.bytes_mut(),
            &EgressFacts { node_id: 6, ..e }
        ));
        assert_eq!(f.bytes(), &before[..]);
        // No trace: nothing to do.
        let mut plain = orig.clone();
        assert!(!patch_egress(&mut plain, &e));
        assert_eq!(plain, orig);
    }

    #[test]
    fn unknown_ioam_type_is_an_error_known_ones_are_not_traces() {
        let mut hbh = [17, 1, 0x01, 0x00, 0x31, 0x0a, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            find_trace(&hbh, 0).unwrap_err(),
            crate::wire::Error::UnknownIoamOption
        );
        hbh[7] = 2; // POT: known, not a trace
        assert_eq!(find_trace(&hbh, 0).unwrap(), None);
    }
}
