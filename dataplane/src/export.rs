//! Postcards: the fixed-size records a node exports about a packet (a trace section at a branch
//! point, an end node's trace, or a DEX per-hop record), and the per-worker rings that carry them
//! off the data path. A full ring loses the postcard and counts it; it never blocks or drops a
//! packet. Encoding them as IPFIX is the exporter's business, not this module's.
#![forbid(unsafe_code)]

use crossbeam::queue::ArrayQueue;

/// Most IOAM data octets a postcard carries: a whole pre-allocated trace fits.
pub const MAX_POSTCARD_DATA: usize = 244;

/// What a postcard reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PostcardKind {
    /// A branch node's export before replicating: the trace accumulated since the previous
    /// branch point, with this node's ingress-side entry (per-section mode, RFC 9630 §4.2).
    Section = 1,
    /// An end node's export of the last section (per-section mode) or of the whole trace
    /// (trace mode).
    EndSection = 2,
    /// One node's own data for one packet (DEX per-hop mode, RFC 9326).
    Hop = 3,
}

impl PostcardKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(PostcardKind::Section),
            2 => Some(PostcardKind::EndSection),
            3 => Some(PostcardKind::Hop),
            _ => None,
        }
    }
}

/// A branch identifier: the branch node and which of its branches (RFC 9630 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BranchId {
    pub node_id: u32,
    pub index: u16,
}

/// One postcard. `Copy` and fixed-size so rings hold them by value: no allocation per export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Postcard {
    pub kind: PostcardKind,
    /// When the node exported it, ns since the Unix epoch.
    pub observation_ns: u64,
    /// The exporting node's short IOAM node ID.
    pub node_id: u32,
    pub namespace_id: u16,
    pub trace_type: u32,
    /// A digest of the packet's invariant fields (addresses, flow label, next header, payload
    /// start), the same at every node: the collector's correlation key.
    pub digest: u64,
    /// DEX Flow ID and Sequence Number (RFC 9326), zero when the packet has none.
    pub flow_id: u32,
    pub sequence: u32,
    /// The branch the packet is on (per-hop modes), as received, decoded.
    pub branch: BranchId,
    /// The encoding the branch field was in (`BranchEncoding::code`; 0: none) ...
    pub branch_encoding: u8,
    /// ... and the field as the packet carried it.
    pub branch_field: u32,
    /// The configuration epoch that produced the postcard.
    pub epoch: u32,
    pub ingress_if: u32,
    pub egress_if: u32,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub flow_label: u32,
    pub hop_limit: u8,
    /// IOAM node data: trace entries as on the wire (newest first) for sections, this node's
    /// entry for a hop postcard.
    pub data_len: u8,
    pub data: [u8; MAX_POSTCARD_DATA],
}

impl Postcard {
    /// An empty postcard of `kind`, to fill in.
    pub fn new(kind: PostcardKind) -> Self {
        Postcard {
            kind,
            observation_ns: 0,
            node_id: 0,
            namespace_id: 0,
            trace_type: 0,
            digest: 0,
            flow_id: 0,
            sequence: 0,
            branch: BranchId::default(),
            branch_encoding: 0,
            branch_field: 0,
            epoch: 0,
            ingress_if: 0,
            egress_if: 0,
            src_addr: [0; 16],
            dst_addr: [0; 16],
            flow_label: 0,
            hop_limit: 0,
            data_len: 0,
            data: [0; MAX_POSTCARD_DATA],
        }
    }

    /// The IOAM data it carries.
    pub fn data(&self) -> &[u8] {
        &self.data[..self.data_len as usize]
    }

    /// Copy `d` in (cut at [`MAX_POSTCARD_DATA`], which a valid trace never exceeds).
    pub fn set_data(&mut self, d: &[u8]) {
        let n = d.len().min(MAX_POSTCARD_DATA);
        self.data[..n].copy_from_slice(&d[..n]);
        self.data_len = n as u8;
    }
}

/// FNV-1a, 64 bits: a cheap, stable digest (every node and the collector compute the same).
pub fn digest(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A worker's postcard ring: bounded, lock-free, single producer (the worker) and single
/// consumer (the exporter thread).
#[derive(Debug)]
pub struct PostcardRing {
    ring: ArrayQueue<Postcard>,
}

impl PostcardRing {
    pub fn new(capacity: usize) -> Self {
        PostcardRing {
            ring: ArrayQueue::new(capacity.max(1)),
        }
    }

    /// Offer a postcard; false (and the postcard is lost) when the ring is full.
    pub fn push(&self, p: Postcard) -> bool {
        self.ring.push(p).is_ok()
    }

    pub fn pop(&self) -> Option<Postcard> {
        self.ring.pop()
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_loses_the_postcard_not_the_caller() {
        let r = PostcardRing::new(2);
        let mut p = Postcard::new(PostcardKind::Section);
        for i in 0..3 {
            p.sequence = i;
            assert_eq!(r.push(p), i < 2);
        }
        assert_eq!(r.pop().unwrap().sequence, 0);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn digest_is_fnv1a() {
        // FNV-1a 64 test vectors: "" and "a".
        assert_eq!(digest(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(digest(&[b"a", b"b"]), digest(&[b"ab"]));
    }

    #[test]
    fn data_is_cut_to_the_record() {
        let mut p = Postcard::new(PostcardKind::Hop);
        p.set_data(&[7; 300]);
        assert_eq!(p.data().len(), MAX_POSTCARD_DATA);
        assert_eq!(PostcardKind::from_u8(3), Some(PostcardKind::Hop));
        assert_eq!(PostcardKind::from_u8(4), None);
    }
}
