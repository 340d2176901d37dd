//! Branch identifiers (RFC 9630 §4.1, draft Figures 1–4): which branch of the multicast tree a
//! copy is on, as `[branch node ID, branch index]`, and the three ways mtnode carries it in the
//! DEX option's branch field. The encoding is chosen per namespace by the control plane; every
//! postcard says which one produced it, so a collector decodes each by its own.
#![forbid(unsafe_code)]

use crate::export::BranchId;

/// The RFC 9326 extension-flag bit mtnode uses for the branch field by default: bits 0 and 1
/// are Flow ID and Sequence Number, so bit 2 is the first unassigned one.
pub const DEFAULT_FLAG_BIT: u8 = 2;

/// The packet says which encoding its branch field is in: `explicit` sets the configured base
/// bit, `split` the next and `sum` the one after, and only one of them. The field's position is
/// the same for all three (they are adjacent and exclusive), so a node that changes encoding
/// rewrites the flag and the field in place, and a node still on an older configuration decodes
/// every field correctly.
pub fn flag_bit(encoding: BranchEncoding, base: u8) -> u8 {
    base + encoding.code() - 1
}

/// The encoding a DEX option's extension flags name, given the base bit and the sum gap.
pub fn from_flags(ext_flags: u8, base: u8, gap: u32) -> Option<BranchEncoding> {
    (0..3u8)
        .find(|k| ext_flags & (0x80 >> (base + k)) != 0)
        .and_then(|k| BranchEncoding::from_code(k + 1, gap))
}

/// How a branch ID is encoded in the 32-bit branch field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchEncoding {
    /// A dedicated field: branch node ID (24 bits) and branch index (8 bits).
    Explicit,
    /// A node_id-sized (24-bit) value: node ID (16 bits) and branch index (8 bits) (Figure 3).
    Split,
    /// A node_id-sized value: node ID + branch index, node IDs assigned `gap` apart (Figure 4).
    Sum { gap: u32 },
}

impl BranchEncoding {
    /// The code postcards carry (IPFIX `branchEncoding`).
    pub fn code(self) -> u8 {
        match self {
            BranchEncoding::Explicit => 1,
            BranchEncoding::Split => 2,
            BranchEncoding::Sum { .. } => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BranchEncoding::Explicit => "explicit",
            BranchEncoding::Split => "split",
            BranchEncoding::Sum { .. } => "sum",
        }
    }

    /// The largest branch index this encoding carries.
    pub fn max_index(self) -> u32 {
        match self {
            BranchEncoding::Explicit | BranchEncoding::Split => 0xff,
            BranchEncoding::Sum { gap } => gap.saturating_sub(1),
        }
    }

    /// The field for `id`; callers keep the node ID and index within the encoding's range
    /// (validation refuses configurations that would not).
    pub fn encode(self, id: BranchId) -> u32 {
        let (node, index) = (id.node_id, id.index as u32);
        match self {
            BranchEncoding::Explicit => (node & 0xff_ffff) << 8 | (index & 0xff),
            BranchEncoding::Split => (node & 0xffff) << 8 | (index & 0xff),
            BranchEncoding::Sum { .. } => (node + index) & 0xff_ffff,
        }
    }

    pub fn decode(self, field: u32) -> BranchId {
        match self {
            BranchEncoding::Explicit => BranchId {
                node_id: field >> 8,
                index: (field & 0xff) as u16,
            },
            BranchEncoding::Split => BranchId {
                node_id: (field >> 8) & 0xffff,
                index: (field & 0xff) as u16,
            },
            BranchEncoding::Sum { gap } => {
                let gap = gap.max(1);
                BranchId {
                    node_id: field / gap * gap,
                    index: (field % gap) as u16,
                }
            }
        }
    }

    /// The encoding a postcard's code names (`gap` for sum).
    pub fn from_code(code: u8, gap: u32) -> Option<Self> {
        match code {
            1 => Some(BranchEncoding::Explicit),
            2 => Some(BranchEncoding::Split),
            3 => Some(BranchEncoding::Sum { gap }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(node_id: u32, index: u16) -> BranchId {
        BranchId { node_id, index }
    }

    #[test]
    fn each_encoding_round_trips_within_its_range() {
        for enc in [
            BranchEncoding::Explicit,
            BranchEncoding::Split,
            BranchEncoding::Sum { gap: 16 },
        ] {
            for (node, index) in [(16u32, 0u16), (32, 3), (4080, 15)] {
                assert_eq!(
                    enc.decode(enc.encode(id(node, index))),
                    id(node, index),
                    "{enc:?}"
                );
            }
        }
        assert_eq!(
            BranchEncoding::Explicit.encode(id(0xabcdef, 7)),
            0xabcd_ef07
        );
        assert_eq!(BranchEncoding::Split.encode(id(0x1234, 7)), 0x12_3407);
        assert_eq!(BranchEncoding::Sum { gap: 16 }.encode(id(48, 2)), 50);
        assert_eq!(BranchEncoding::Sum { gap: 16 }.max_index(), 15);
    }

    #[test]
    fn flags_name_the_encoding() {
        let sum = BranchEncoding::Sum { gap: 16 };
        assert_eq!(flag_bit(BranchEncoding::Explicit, 2), 2);
        assert_eq!(flag_bit(sum, 2), 4);
        assert_eq!(from_flags(0xc0 | 0x08, 2, 16), Some(sum));
        assert_eq!(from_flags(0xc0 | 0x10, 2, 16), Some(BranchEncoding::Split));
        assert_eq!(from_flags(0xc0, 2, 16), None);
    }

    #[test]
    fn codes() {
        for enc in [
            BranchEncoding::Explicit,
            BranchEncoding::Split,
            BranchEncoding::Sum { gap: 8 },
        ] {
            assert_eq!(BranchEncoding::from_code(enc.code(), 8), Some(enc));
        }
        assert_eq!(BranchEncoding::from_code(0, 8), None);
    }
}
