//! IOAM option data (RFC 9197 §4.4, RFC 9326 §3.2) as carried after the 4-octet IPv6 option
//! prefix of RFC 9486: the Pre-allocated Trace and Direct Export (DEX). Owns the header layouts
//! and the trace-type arithmetic (NodeLen); what a node writes into its slot is
//! [`crate::ioam`]'s.

use super::{be16, be32, put16, put32, Error, Layer, Result};

/// IOAM Option-Type registry (RFC 9197 §7.1, RFC 9326 §6).
pub mod option_type {
    pub const PREALLOCATED_TRACE: u8 = 0;
    pub const INCREMENTAL_TRACE: u8 = 1;
    pub const POT: u8 = 2;
    pub const E2E: u8 = 3;
    pub const DEX: u8 = 4;
}

/// Trace flags (RFC 9197 §4.4.1 bit 0, RFC 9322 bits 1 and 2), as the 4-bit field's value.
pub mod flags {
    pub const OVERFLOW: u8 = 0b1000;
    pub const LOOPBACK: u8 = 0b0100;
    pub const ACTIVE: u8 = 0b0010;
}

/// IOAM-Trace-Type bits, numbered as in RFC 9197 §4.4.1 (bit 0 is the most significant of 24).
pub mod trace_bit {
    pub const HOP_LIM_NODE_ID: u8 = 0;
    pub const IF_IDS: u8 = 1;
    pub const TS_SECONDS: u8 = 2;
    pub const TS_FRACTION: u8 = 3;
    pub const TRANSIT_DELAY: u8 = 4;
    pub const NAMESPACE_DATA: u8 = 5;
    pub const QUEUE_DEPTH: u8 = 6;
    pub const CHECKSUM_COMPLEMENT: u8 = 7;
    pub const HOP_LIM_NODE_ID_WIDE: u8 = 8;
    pub const IF_IDS_WIDE: u8 = 9;
    pub const NAMESPACE_DATA_WIDE: u8 = 10;
    pub const BUFFER_OCCUPANCY: u8 = 11;
    pub const OPAQUE_STATE_SNAPSHOT: u8 = 22;
    pub const RESERVED: u8 = 23;

    /// The mask of one bit in the 24-bit trace type.
    pub const fn mask(bit: u8) -> u32 {
        0x80_0000 >> bit
    }
}

/// 4-octet units a trace-type bit contributes to NodeLen (bit 22 contributes none: the opaque
/// state snapshot is variable and NodeLen excludes it; bit 23 is reserved).
pub const fn bit_units(bit: u8) -> u8 {
    match bit {
        8..=10 => 2,
        0..=21 => 1,
        _ => 0,
    }
}

/// The NodeLen a trace type implies (RFC 9197 §4.4.1): one unit per bit 0–21, one more for
/// each of the wide bits 8–10. Two popcounts: it runs for every traced packet.
pub fn node_len_for(trace_type: u32) -> u8 {
    // Without POPCNT in the baseline target each popcount is a dozen instructions: answer the
    // common trace type (bits 0–4) first.
    if trace_type == 0xf8_0000 {
        return 5;
    }
    ((trace_type & 0xff_fffc).count_ones() + (trace_type & 0x00_e000).count_ones()) as u8
}

/// Trace header length: Namespace-ID, NodeLen, Flags, RemainingLen, Trace-Type, Reserved.
pub const TRACE_HEADER_LEN: usize = 8;
/// DEX header length before the optional extension fields.
pub const DEX_HEADER_LEN: usize = 8;
/// Largest trace data an IPv6 option can carry: 255 − 2 (reserved, type) − 8 (header) and
/// rounded down to 4n, the figure Linux caps at too.
pub const MAX_TRACE_DATA: usize = 244;

/// A read/write view of a Pre-allocated Trace option's data.
#[derive(Debug, Clone)]
pub struct IoamTrace<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IoamTrace<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        IoamTrace { buffer }
    }

    /// Checks the header is present, the data is 4n octets, NodeLen matches the trace type and
    /// RemainingLen stays inside the data.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let t = Self::new_unchecked(buffer);
        let b = t.buffer.as_ref();
        if b.len() < TRACE_HEADER_LEN {
            return Err(Error::Truncated(Layer::Ioam));
        }
        if t.data().len() % 4 != 0 {
            return Err(Error::BadLength(Layer::Ioam));
        }
        if t.node_len() != node_len_for(t.trace_type()) {
            return Err(Error::NodeLenMismatch);
        }
        if t.remaining_len() as usize * 4 > t.data().len() {
            return Err(Error::RemainingLenOverrun);
        }
        Ok(t)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn namespace_id(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    /// NodeLen, in 4-octet units.
    pub fn node_len(&self) -> u8 {
        self.buffer.as_ref()[2] >> 3
    }

    /// The 4-bit flags field; see [`flags`].
    pub fn flags(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[2] & 0x07) << 1 | b[3] >> 7
    }

    /// RemainingLen, in 4-octet units.
    pub fn remaining_len(&self) -> u8 {
        self.buffer.as_ref()[3] & 0x7f
    }

    /// The 24-bit IOAM-Trace-Type.
    pub fn trace_type(&self) -> u32 {
        be32(self.buffer.as_ref(), 4) >> 8
    }

    /// The pre-allocated node data list.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[TRACE_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IoamTrace<T> {
    pub fn set_namespace_id(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 0, v);
    }

    pub fn set_node_len(&mut self, v: u8) {
        let b = self.buffer.as_mut();
        b[2] = (b[2] & 0x07) | v << 3;
    }

    pub fn set_flags(&mut self, v: u8) {
        let b = self.buffer.as_mut();
        b[2] = (b[2] & 0xf8) | (v >> 1) & 0x07;
        b[3] = (b[3] & 0x7f) | (v & 1) << 7;
    }

    pub fn set_remaining_len(&mut self, v: u8) {
        let b = self.buffer.as_mut();
        b[3] = (b[3] & 0x80) | (v & 0x7f);
    }

    pub fn set_trace_type(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 4, v << 8);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[TRACE_HEADER_LEN..]
    }
}

/// The high-level form of a Pre-allocated Trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoamTraceRepr<'a> {
    pub namespace_id: u16,
    pub node_len: u8,
    pub flags: u8,
    pub remaining_len: u8,
    pub trace_type: u32,
    pub data: &'a [u8],
}

impl<'a> IoamTraceRepr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(t: &'a IoamTrace<&'a T>) -> Result<Self> {
        Ok(IoamTraceRepr {
            namespace_id: t.namespace_id(),
            node_len: t.node_len(),
            flags: t.flags(),
            remaining_len: t.remaining_len(),
            trace_type: t.trace_type(),
            data: t.data(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        TRACE_HEADER_LEN + self.data.len()
    }

    pub fn emit(&self, buf: &mut [u8]) {
        let mut t = IoamTrace::new_unchecked(&mut buf[..self.buffer_len()]);
        t.set_namespace_id(self.namespace_id);
        t.buffer[2] = 0;
        t.buffer[3] = 0;
        t.set_node_len(self.node_len);
        t.set_flags(self.flags);
        t.set_remaining_len(self.remaining_len);
        t.set_trace_type(self.trace_type);
        t.data_mut().copy_from_slice(self.data);
    }
}

/// DEX extension flag bits (RFC 9326 §3.2), numbered from the most significant.
pub mod dex_ext_bit {
    pub const FLOW_ID: u8 = 0;
    pub const SEQUENCE_NUMBER: u8 = 1;

    pub const fn mask(bit: u8) -> u8 {
        0x80 >> bit
    }
}

/// A read/write view of a DEX option's data.
#[derive(Debug, Clone)]
pub struct IoamDex<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IoamDex<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        IoamDex { buffer }
    }

    /// Checks the header and one 4-octet field per set extension flag are present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let d = Self::new_unchecked(buffer);
        let b = d.buffer.as_ref();
        if b.len() < DEX_HEADER_LEN {
            return Err(Error::Truncated(Layer::Ioam));
        }
        if b.len() < d.header_len() {
            return Err(Error::BadLength(Layer::Ioam));
        }
        Ok(d)
    }

    pub fn namespace_id(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[2]
    }

    pub fn ext_flags(&self) -> u8 {
        self.buffer.as_ref()[3]
    }

    pub fn trace_type(&self) -> u32 {
        be32(self.buffer.as_ref(), 4) >> 8
    }

    /// Header plus the extension fields present.
    pub fn header_len(&self) -> usize {
        DEX_HEADER_LEN + 4 * self.ext_flags().count_ones() as usize
    }

    /// The 4-octet extension field of `bit`, if its flag is set; fields follow in bit order.
    pub fn extension(&self, bit: u8) -> Option<u32> {
        let mask = dex_ext_bit::mask(bit);
        let ext = self.ext_flags();
        (ext & mask != 0).then(|| {
            let before = (ext & !(0xffu8 >> bit)).count_ones() as usize;
            be32(self.buffer.as_ref(), DEX_HEADER_LEN + 4 * before)
        })
    }

    pub fn flow_id(&self) -> Option<u32> {
        self.extension(dex_ext_bit::FLOW_ID)
    }

    pub fn sequence_number(&self) -> Option<u32> {
        self.extension(dex_ext_bit::SEQUENCE_NUMBER)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IoamDex<T> {
    /// Overwrite the extension field of `bit`; false if the flag is not set.
    pub fn set_extension(&mut self, bit: u8, v: u32) -> bool {
        let ext = self.ext_flags();
        if ext & dex_ext_bit::mask(bit) == 0 {
            return false;
        }
        let before = (ext & !(0xffu8 >> bit)).count_ones() as usize;
        put32(self.buffer.as_mut(), DEX_HEADER_LEN + 4 * before, v);
        true
    }
}

/// The high-level form of a DEX option: `extensions[bit]` holds the field of each set flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoamDexRepr {
    pub namespace_id: u16,
    pub flags: u8,
    pub ext_flags: u8,
    pub trace_type: u32,
    pub extensions: [u32; 8],
}

impl IoamDexRepr {
    pub fn parse<T: AsRef<[u8]>>(d: &IoamDex<T>) -> Result<Self> {
        let mut extensions = [0; 8];
        for (bit, slot) in extensions.iter_mut().enumerate() {
            *slot = d.extension(bit as u8).unwrap_or(0);
        }
        Ok(IoamDexRepr {
            namespace_id: d.namespace_id(),
            flags: d.flags(),
            ext_flags: d.ext_flags(),
            trace_type: d.trace_type(),
            extensions,
        })
    }

    pub fn buffer_len(&self) -> usize {
        DEX_HEADER_LEN + 4 * self.ext_flags.count_ones() as usize
    }

    pub fn emit(&self, buf: &mut [u8]) {
        put16(buf, 0, self.namespace_id);
        buf[2] = self.flags;
        buf[3] = self.ext_flags;
        put32(buf, 4, self.trace_type << 8);
        let mut at = DEX_HEADER_LEN;
        for bit in 0..8u8 {
            if self.ext_flags & dex_ext_bit::mask(bit) != 0 {
                put32(buf, at, self.extensions[bit as usize]);
                at += 4;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Namespace 1, NodeLen 5, Flags O, RemainingLen 5, type 0xF80000, one 5-word slot free and
    /// one written (node 7).
    static TRACE: [u8; 48] = [
        0x00, 0x01, 0x2c, 0x05, // ns 1 | NodeLen 5, O | RemainingLen 5
        0xf8, 0x00, 0x00, 0x00, // trace type bits 0-4
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // free slot
        0x3f, 0x00, 0x00, 0x07, // hop limit 63, node 7
        0x00, 0x0a, 0x00, 0x0b, // if 10 / 11
        0x65, 0x53, 0xf1, 0x00, // seconds
        0x00, 0x00, 0x01, 0xf4, // fraction
        0x00, 0x00, 0x03, 0xe8, // delay 1000 ns
    ];

    fn written() -> &'static [u8] {
        &TRACE[8..]
    }

    #[test]
    fn deconstruct() {
        let t = IoamTrace::new_checked(&TRACE[..]).unwrap();
        assert_eq!(t.namespace_id(), 1);
        assert_eq!(t.node_len(), 5);
        assert_eq!(t.flags(), flags::OVERFLOW);
        assert_eq!(t.remaining_len(), 5);
        assert_eq!(t.trace_type(), 0xf8_0000);
        assert_eq!(t.data().len(), 40);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 48];
        let mut t = IoamTrace::new_unchecked(&mut buf[..]);
        t.set_namespace_id(1);
        t.set_node_len(5);
        t.set_flags(flags::OVERFLOW);
        t.set_remaining_len(5);
        t.set_trace_type(0xf8_0000);
        t.data_mut().copy_from_slice(written());
        assert_eq!(buf, TRACE);
    }

    #[test]
    fn parse() {
        let t = IoamTrace::new_checked(&TRACE[..]).unwrap();
        let r = IoamTraceRepr::parse(&t).unwrap();
        assert_eq!(
            r,
            IoamTraceRepr {
                namespace_id: 1,
                node_len: 5,
                flags: flags::OVERFLOW,
                remaining_len: 5,
                trace_type: 0xf8_0000,
                data: written(),
            }
        );
    }

    #[test]
    fn emit() {
        let r = IoamTraceRepr {
            namespace_id: 1,
            node_len: 5,
            flags: flags::OVERFLOW,
            remaining_len: 5,
            trace_type: 0xf8_0000,
            data: written(),
        };
        let mut buf = [0xffu8; 48];
        r.emit(&mut buf);
        assert_eq!(buf, TRACE);
    }

    #[test]
    fn flag_bits_sit_where_linux_puts_them() {
        // Linux's struct ioam6_trace_hdr: nodelen:5 then overflow:1 in the third octet.
        let mut buf = [0u8; 8];
        let mut t = IoamTrace::new_unchecked(&mut buf[..]);
        t.set_flags(flags::OVERFLOW);
        assert_eq!(buf[2], 0x04);
        let mut t = IoamTrace::new_unchecked(&mut buf[..]);
        t.set_flags(flags::OVERFLOW | flags::LOOPBACK | flags::ACTIVE | 1);
        assert_eq!((buf[2], buf[3]), (0x07, 0x80));
    }

    #[test]
    fn node_len_arithmetic() {
        assert_eq!(node_len_for(0xf8_0000), 5);
        // Every bit 0..=11: 9 one-unit fields + 3 two-unit fields.
        assert_eq!(node_len_for(0xff_f000), 15);
        // Undefined bits 12-21 count one unit each; the snapshot (22) counts none.
        assert_eq!(node_len_for(0x00_0ffe), 10);
        assert_eq!(node_len_for(0x00_0002), 0);
    }

    #[test]
    fn trace_errors() {
        let mut bad = TRACE;
        bad[2] = 3 << 3; // NodeLen 3 with a 5-unit type
        assert_eq!(
            IoamTrace::new_checked(&bad[..]).unwrap_err(),
            Error::NodeLenMismatch
        );
        let mut bad = TRACE;
        bad[3] = 11; // 44 octets > 40
        assert_eq!(
            IoamTrace::new_checked(&bad[..]).unwrap_err(),
            Error::RemainingLenOverrun
        );
        assert_eq!(
            IoamTrace::new_checked(&TRACE[..7]).unwrap_err(),
            Error::Truncated(Layer::Ioam)
        );
        assert_eq!(
            IoamTrace::new_checked(&TRACE[..46]).unwrap_err(),
            Error::BadLength(Layer::Ioam)
        );
    }

    static DEX: [u8; 20] = [
        0x00, 0x07, 0x00, 0xe0, // ns 7, flags 0, ext: flow id, seq, bit 2
        0xc0, 0x00, 0x00, 0x00, // trace type bits 0, 1
        0x00, 0x00, 0x00, 0x2a, // flow id 42
        0x00, 0x00, 0x00, 0x03, // seq 3
        0x00, 0x01, 0x00, 0x02, // extension bit 2
    ];

    fn dex_repr() -> IoamDexRepr {
        let mut extensions = [0; 8];
        extensions[0] = 42;
        extensions[1] = 3;
        extensions[2] = 0x0001_0002;
        IoamDexRepr {
            namespace_id: 7,
            flags: 0,
            ext_flags: 0xe0,
            trace_type: 0xc0_0000,
            extensions,
        }
    }

    #[test]
    fn dex_deconstruct() {
        let d = IoamDex::new_checked(&DEX[..]).unwrap();
        assert_eq!(d.namespace_id(), 7);
        assert_eq!(d.ext_flags(), 0xe0);
        assert_eq!(d.trace_type(), 0xc0_0000);
        assert_eq!(d.flow_id(), Some(42));
        assert_eq!(d.sequence_number(), Some(3));
        assert_eq!(d.extension(2), Some(0x0001_0002));
        assert_eq!(d.extension(3), None);
        assert_eq!(d.header_len(), 20);
    }

    #[test]
    fn dex_construct() {
        let mut buf = DEX;
        let mut d = IoamDex::new_unchecked(&mut buf[..]);
        assert!(d.set_extension(1, 4));
        assert!(!d.set_extension(3, 4));
        assert_eq!(&buf[12..16], &[0, 0, 0, 4]);
    }

    #[test]
    fn dex_parse_emit() {
        let d = IoamDex::new_checked(&DEX[..]).unwrap();
        assert_eq!(IoamDexRepr::parse(&d).unwrap(), dex_repr());
        let mut buf = [0xffu8; 20];
        assert_eq!(dex_repr().buffer_len(), 20);
        dex_repr().emit(&mut buf);
        assert_eq!(buf, DEX);
    }

    #[test]
    fn dex_errors() {
        assert_eq!(
            IoamDex::new_checked(&DEX[..16]).unwrap_err(),
            Error::BadLength(Layer::Ioam)
        );
        assert_eq!(
            IoamDex::new_checked(&DEX[..4]).unwrap_err(),
            Error::Truncated(Layer::Ioam)
        );
    }
}
