//! IOAM Pre-allocated Trace bytes, written by hand from RFC 9197 §5.4 and RFC 9486 §3, laid out
//! the way Linux's `ioam6` encapsulation lays them out.
//!
//! Nothing here validates: the malformed fixtures reuse these helpers with fields that disagree on
//! purpose, so every helper writes exactly what it is given.

/// Hop-by-Hop option type that carries IOAM with data that may change en route (RFC 9486 §3).
pub const OPT_IOAM: u8 = 0x31;
/// IOAM Option-Type of the Pre-allocated Trace (RFC 9197 §8.1).
pub const IOAM_PREALLOC_TRACE: u8 = 0;
/// Namespace-ID of every fixture trace.
pub const NAMESPACE_ID: u16 = 1;
/// Trace-Type bits 0–4: hop limit + node ID, interface IDs, timestamp seconds, timestamp
/// fraction, transit delay (RFC 9197 §5.4.1).
pub const TRACE_TYPE: u32 = 0xF8_0000;
/// Node data length in 4-octet units that [`TRACE_TYPE`] implies: five one-word fields.
pub const NODE_LEN: u8 = 5;
/// Hops the fixture trace has room for.
pub const ROOM_HOPS: usize = 8;

/// Pad1 (RFC 8200 §4.2): one zero octet.
const PAD1: u8 = 0x00;
/// PadN (RFC 8200 §4.2): type 1, then a length, then that many zero octets.
const PADN: u8 = 0x01;
/// Next Header value of a Hop-by-Hop header (RFC 8200 §4.3).
pub const NEXT_HEADER_HOP_BY_HOP: u8 = 0;

/// Ethernet header length; the fixtures that get a Hop-by-Hop header inserted are untagged.
const ETH_LEN: usize = 14;
/// Offset of the IPv6 Payload Length field in the frame.
pub const IPV6_PAYLOAD_LEN_OFFSET: usize = ETH_LEN + 4;
/// Offset of the IPv6 Next Header field in the frame.
const IPV6_NEXT_HEADER_OFFSET: usize = ETH_LEN + 6;
/// Offset of the first byte after the fixed IPv6 header.
pub const IPV6_PAYLOAD_OFFSET: usize = ETH_LEN + 40;

/// The 8-octet trace option header (RFC 9197 §5.4):
/// `Namespace-ID(16) | NodeLen(5) Flags(4) RemainingLen(7) | IOAM-Trace-Type(24) | Reserved(8)`.
#[derive(Clone, Copy, Debug)]
pub struct TraceHeader {
    pub namespace_id: u16,
    /// Node data length, 4-octet units.
    pub node_len: u8,
    pub flags: u8,
    /// Space left for more nodes, 4-octet units.
    pub remaining_len: u8,
    pub trace_type: u32,
}

impl TraceHeader {
    pub fn to_bytes(self) -> [u8; 8] {
        let packed = (u16::from(self.node_len & 0x1f) << 11)
            | (u16::from(self.flags & 0x0f) << 7)
            | u16::from(self.remaining_len & 0x7f);
        let [ns_hi, ns_lo] = self.namespace_id.to_be_bytes();
        let [p_hi, p_lo] = packed.to_be_bytes();
        let [_, t0, t1, t2] = (self.trace_type & 0xff_ffff).to_be_bytes();
        [ns_hi, ns_lo, p_hi, p_lo, t0, t1, t2, 0]
    }
}

/// One node's data for trace type 0xF80000: five 4-octet words (RFC 9197 §5.4.2.1–5).
#[derive(Clone, Copy, Debug)]
pub struct NodeData {
    pub hop_lim: u8,
    /// 24 bits.
    pub node_id: u32,
    pub ingress_if: u16,
    pub egress_if: u16,
    pub ts_secs: u32,
    /// Timestamp fraction; PTP format, so nanoseconds.
    pub ts_frac: u32,
    /// Transit delay in nanoseconds.
    pub transit_delay: u32,
}

impl NodeData {
    pub fn to_bytes(self) -> [u8; 20] {
        let words = [
            (u32::from(self.hop_lim) << 24) | (self.node_id & 0xff_ffff),
            (u32::from(self.ingress_if) << 16) | u32::from(self.egress_if),
            self.ts_secs,
            self.ts_frac,
            self.transit_delay,
        ];
        let mut out = [0; 20];
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// The first node on the path (its data ends up last in the trace).
pub const HOP_1: NodeData = NodeData {
    hop_lim: 64,
    node_id: 1,
    ingress_if: 10,
    egress_if: 11,
    ts_secs: 1_700_000_000,
    ts_frac: 500,
    transit_delay: 1000,
};

/// The second node on the path (the newest data, first in the trace).
pub const HOP_2: NodeData = NodeData {
    hop_lim: 63,
    node_id: 2,
    ingress_if: 20,
    egress_if: 21,
    ts_secs: 1_700_000_000,
    ts_frac: 9000,
    transit_delay: 2000,
};

/// A pre-allocated data area of `room` octets after `hops` (oldest first) have written into it.
/// Each node writes at `RemainingLen − NodeLen` and then decrements RemainingLen (RFC 9197
/// §5.4), so the first hop's data sits at the end and the newest in front of it.
pub fn trace_data(room: usize, hops: &[NodeData]) -> Vec<u8> {
    let mut data = vec![0; room];
    let mut end = room;
    for hop in hops {
        let bytes = hop.to_bytes();
        data[end - bytes.len()..end].copy_from_slice(&bytes);
        end -= bytes.len();
    }
    data
}

/// An IOAM Hop-by-Hop option (RFC 9486 §3):
/// `0x31 | Opt Data Len | Reserved (0) | IOAM Option-Type | trace header | data`.
/// Opt Data Len counts everything after itself: 2 + 8 + data.
pub fn trace_option(ioam_type: u8, header: TraceHeader, data: &[u8]) -> Vec<u8> {
    let opt_data_len = u8::try_from(2 + 8 + data.len()).expect("IOAM option longer than 255");
    let mut option = vec![OPT_IOAM, opt_data_len, 0, ioam_type];
    option.extend_from_slice(&header.to_bytes());
    option.extend_from_slice(data);
    option
}

/// The fixture trace: room for [`ROOM_HOPS`] hops of five words, [`HOP_1`] then [`HOP_2`] written,
/// so RemainingLen = (8 − 2) × 5 = 30 words and the data sits at offsets 120 (node 2) and 140
/// (node 1). `node_len` and `ioam_type` are parameters for the malformed cases.
pub fn two_hop_trace_option(node_len: u8, ioam_type: u8) -> Vec<u8> {
    let hops = [HOP_1, HOP_2];
    let header = TraceHeader {
        namespace_id: NAMESPACE_ID,
        node_len,
        flags: 0,
        remaining_len: (NODE_LEN as usize * (ROOM_HOPS - hops.len())) as u8,
        trace_type: TRACE_TYPE,
    };
    trace_option(
        ioam_type,
        header,
        &trace_data(ROOM_HOPS * NODE_LEN as usize * 4, &hops),
    )
}

/// Appends Pad1 or PadN so that `buf` ends on an 8-octet boundary (RFC 8200 §4.2).
pub fn pad_to_8n(buf: &mut Vec<u8>) {
    match (8 - buf.len() % 8) % 8 {
        0 => {}
        1 => buf.push(PAD1),
        n => {
            buf.extend_from_slice(&[PADN, (n - 2) as u8]);
            buf.resize(buf.len() + n - 2, 0);
        }
    }
}

/// A Hop-by-Hop header laid out as Linux builds it:
/// `[Next Header | Hdr Ext Len][PadN 01 00][option][PadN to 8n]`.
/// The leading PadN puts the IOAM option data on a 4n boundary (RFC 9486 §3). Next Header is left
/// 0 here; [`insert_hop_by_hop`] sets it.
pub fn linux_hbh(option: &[u8]) -> Vec<u8> {
    let mut hbh = vec![0, 0, PADN, 0];
    hbh.extend_from_slice(option);
    pad_to_8n(&mut hbh);
    // Hdr Ext Len: length in 8-octet units, not counting the first 8 octets.
    hbh[1] = u8::try_from(hbh.len() / 8 - 1).expect("Hop-by-Hop header longer than 2048");
    hbh
}

/// Inserts `hbh` right after the IPv6 header of an untagged frame: the header takes over the
/// packet's Next Header, the IPv6 header's Next Header becomes Hop-by-Hop, and Payload Length grows
/// by the header's length. The UDP checksum does not cover extension headers, so it stays valid.
pub fn insert_hop_by_hop(frame: &[u8], hbh: &[u8]) -> Vec<u8> {
    let mut hbh = hbh.to_vec();
    hbh[0] = frame[IPV6_NEXT_HEADER_OFFSET];
    let mut out = frame[..IPV6_PAYLOAD_OFFSET].to_vec();
    out[IPV6_NEXT_HEADER_OFFSET] = NEXT_HEADER_HOP_BY_HOP;
    let payload_len = u16::from_be_bytes([
        out[IPV6_PAYLOAD_LEN_OFFSET],
        out[IPV6_PAYLOAD_LEN_OFFSET + 1],
    ]);
    let payload_len = payload_len + u16::try_from(hbh.len()).expect("Hop-by-Hop header too long");
    out[IPV6_PAYLOAD_LEN_OFFSET..IPV6_PAYLOAD_LEN_OFFSET + 2]
        .copy_from_slice(&payload_len.to_be_bytes());
    out.extend_from_slice(&hbh);
    out.extend_from_slice(&frame[IPV6_PAYLOAD_OFFSET..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trace header of the fixture, against the layout spelled out bit by bit.
    #[test]
    fn trace_header_bytes() {
        let header = TraceHeader {
            namespace_id: 1,
            node_len: 5,
            flags: 0,
            remaining_len: 30,
            trace_type: TRACE_TYPE,
        };
        // Second 16-bit word: NodeLen 5 << 11 | Flags 0 << 7 | RemainingLen 30 = 0x281e.
        assert_eq!(header.to_bytes(), [0, 1, 0x28, 0x1e, 0xf8, 0, 0, 0]);
    }

    #[test]
    fn node_data_bytes() {
        assert_eq!(
            HOP_2.to_bytes(),
            [
                63, 0, 0, 2, // hop limit, node ID
                0, 20, 0, 21, // ingress, egress
                0x65, 0x53, 0xf1, 0x00, // 1700000000 s
                0, 0, 0x23, 0x28, // 9000 ns
                0, 0, 0x07, 0xd0, // 2000 ns
            ]
        );
    }

    #[test]
    fn fixture_option_layout() {
        let option = two_hop_trace_option(NODE_LEN, IOAM_PREALLOC_TRACE);
        assert_eq!(option.len(), 4 + 8 + 160);
        assert_eq!(&option[..4], &[0x31, 170, 0, 0]);
        let data = &option[12..];
        assert_eq!(&data[120..140], &HOP_2.to_bytes());
        assert_eq!(&data[140..160], &HOP_1.to_bytes());
        assert!(data[..120].iter().all(|&b| b == 0));

        let hbh = linux_hbh(&option);
        // 2 + 2 + 172 = 176 = 22 × 8: no trailing padding, Hdr Ext Len 21.
        assert_eq!(hbh.len(), 176);
        assert_eq!(hbh[1], 21);
        assert_eq!(&hbh[2..4], &[PADN, 0]);
    }

    #[test]
    fn padding() {
        for (len, tail) in [
            (8, &[][..]),
            (7, &[PAD1][..]),
            (6, &[PADN, 0][..]),
            (3, &[PADN, 3, 0, 0, 0][..]),
        ] {
            let mut buf = vec![0xaa; len];
            pad_to_8n(&mut buf);
            assert_eq!(&buf[len..], tail, "from {len}");
            assert_eq!(buf.len() % 8, 0);
        }
    }
}
