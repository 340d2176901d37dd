//! Zero-copy views over packet bytes, one module per protocol, in the smoltcp manner.
//!
//! Every view is `Packet<T: AsRef<[u8]>>` with a `new_checked` constructor; once it succeeds no
//! accessor panics. Every view has a `Repr` with `parse`, `buffer_len` and `emit`, used by tests,
//! tools and the fixture generator. This module never allocates and never reads a clock.
#![forbid(unsafe_code)]

pub mod bier;
pub mod ethernet;
pub mod ioam;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
pub mod udp;

pub use bier::{BierHeader, BierRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr};
pub use ioam::{IoamDex, IoamDexRepr, IoamTrace, IoamTraceRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use ipv6ext::{Ipv6ExtHeader, Ipv6ExtHeaderRepr, Ipv6Option, Ipv6OptionRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Why bytes could not be read as the protocol asked for. Small and `Copy`: it travels the hot
/// path and becomes a counter label (see [`Error::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than the fixed header needs.
    #[error("truncated {0} header")]
    Truncated(Layer),
    /// A length field points past the bytes that are there.
    #[error("{0} length field points past the data")]
    BadLength(Layer),
    /// A version, nibble or other fixed field holds a value the protocol forbids.
    #[error("bad {0} header field")]
    BadField(Layer),
    /// An option's length runs past the end of its extension header.
    #[error("IPv6 option length past the header")]
    OptionOverrun,
    /// IOAM trace: NodeLen disagrees with the sizes the trace type implies (RFC 9197 §4.4.1).
    #[error("IOAM NodeLen disagrees with the trace type")]
    NodeLenMismatch,
    /// IOAM trace: RemainingLen points past the pre-allocated data.
    #[error("IOAM RemainingLen past the trace data")]
    RemainingLenOverrun,
    /// An IOAM option type this node does not know (RFC 9197 §4.1 registry).
    #[error("unknown IOAM option type")]
    UnknownIoamOption,
    /// BIER: a BSL value outside 1..=7 (RFC 8296 §2.1.2).
    #[error("invalid BIER BSL")]
    BadBsl,
    /// An IPv4 header checksum that does not verify.
    #[error("IPv4 header checksum mismatch")]
    Checksum,
}

/// The protocol layer an [`Error`] was found at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    Ethernet,
    Ipv4,
    Ipv6,
    Ipv6Ext,
    Ioam,
    Udp,
    Bier,
}

impl core::fmt::Display for Layer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Ipv6Ext => "ipv6_ext",
            Layer::Ioam => "ioam",
            Layer::Udp => "udp",
            Layer::Bier => "bier",
        }
    }
}

impl Error {
    /// Every reason, in a fixed order: counters index by [`Error::index`].
    pub const ALL: [Error; 27] = [
        Error::Truncated(Layer::Ethernet),
        Error::Truncated(Layer::Ipv4),
        Error::Truncated(Layer::Ipv6),
        Error::Truncated(Layer::Ipv6Ext),
        Error::Truncated(Layer::Ioam),
        Error::Truncated(Layer::Udp),
        Error::Truncated(Layer::Bier),
        Error::BadLength(Layer::Ethernet),
        Error::BadLength(Layer::Ipv4),
        Error::BadLength(Layer::Ipv6),
        Error::BadLength(Layer::Ipv6Ext),
        Error::BadLength(Layer::Ioam),
        Error::BadLength(Layer::Udp),
        Error::BadLength(Layer::Bier),
        Error::BadField(Layer::Ipv4),
        Error::BadField(Layer::Ipv6),
        Error::BadField(Layer::Bier),
        Error::BadField(Layer::Ioam),
        Error::BadField(Layer::Ethernet),
        Error::BadField(Layer::Ipv6Ext),
        Error::BadField(Layer::Udp),
        Error::OptionOverrun,
        Error::NodeLenMismatch,
        Error::RemainingLenOverrun,
        Error::UnknownIoamOption,
        Error::BadBsl,
        Error::Checksum,
    ];

    /// Position in [`Error::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        Error::ALL
            .iter()
            .position(|e| *e == self)
            .expect("Error::ALL lists every value")
    }

    /// Stable snake_case name used as the counter key in `stats.json` and metrics.
    pub fn reason(self) -> &'static str {
        use Layer::*;
        match self {
            Error::Truncated(Ethernet) => "truncated_ethernet",
            Error::Truncated(Ipv4) => "truncated_ipv4",
            Error::Truncated(Ipv6) => "truncated_ipv6",
            Error::Truncated(Ipv6Ext) => "truncated_ipv6_ext",
            Error::Truncated(Ioam) => "truncated_ioam",
            Error::Truncated(Udp) => "truncated_udp",
            Error::Truncated(Bier) => "truncated_bier",
            Error::BadLength(Ethernet) => "bad_length_ethernet",
            Error::BadLength(Ipv4) => "bad_length_ipv4",
            Error::BadLength(Ipv6) => "bad_length_ipv6",
            Error::BadLength(Ipv6Ext) => "bad_length_ipv6_ext",
            Error::BadLength(Ioam) => "bad_length_ioam",
            Error::BadLength(Udp) => "bad_length_udp",
            Error::BadLength(Bier) => "bad_length_bier",
            Error::BadField(Ipv4) => "bad_field_ipv4",
            Error::BadField(Ipv6) => "bad_field_ipv6",
            Error::BadField(Bier) => "bad_field_bier",
            Error::BadField(Ioam) => "bad_field_ioam",
            Error::BadField(Ethernet) => "bad_field_ethernet",
            Error::BadField(Ipv6Ext) => "bad_field_ipv6_ext",
            Error::BadField(Udp) => "bad_field_udp",
            Error::OptionOverrun => "option_overrun",
            Error::NodeLenMismatch => "ioam_node_len_mismatch",
            Error::RemainingLenOverrun => "ioam_remaining_len_overrun",
            Error::UnknownIoamOption => "ioam_unknown_option_type",
            Error::BadBsl => "bier_bad_bsl",
            Error::Checksum => "ipv4_checksum",
        }
    }
}

/// Result type of the wire views.
pub type Result<T> = core::result::Result<T, Error>;

/// Read a big-endian u16 at `at`; callers have already checked the length.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Read a big-endian u32 at `at`; callers have already checked the length.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// RFC 1071 one's-complement sum of `data` folded into 16 bits, starting from `initial`.
pub fn checksum_sum(initial: u32, data: &[u8]) -> u32 {
    let mut sum = initial as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u64) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u32
}

/// Fold a sum and complement it: the value that goes into a checksum field.
pub fn checksum_finish(sum: u32) -> u16 {
    let mut s = sum;
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// RFC 1624 eqn. 3 incremental update: `HC' = ~(~HC + ~m + m')` for one 16-bit word changing
/// from `old` to `new`.
pub fn checksum_update(hc: u16, old: u16, new: u16) -> u16 {
    let sum = (!hc as u32) + (!old as u32 & 0xffff) + new as u32;
    checksum_finish(sum)
}
