//! Every `Repr` round-trips. Forward: an arbitrary `Repr` within its fields' ranges, emitted
//! into `buffer_len()` octets (plus the payload its length field promises, which `new_checked`
//! insists on), wrapped with `new_checked` and parsed, is the `Repr` it started as. Reverse:
//! arbitrary header bytes, made valid where a field's value is constrained, parsed and
//! re-emitted, are the bytes they started as, save the fields a `Repr` deliberately does not
//! carry (named where they are cleared).

use mtnode_dataplane::wire::bier::bitstring_len;
use mtnode_dataplane::wire::ioam::{node_len_for, MAX_TRACE_DATA};
use mtnode_dataplane::wire::ipv6ext::option_type;
use mtnode_dataplane::wire::{
    BierHeader, BierRepr, EtherType, EthernetFrame, EthernetRepr, IoamDex, IoamDexRepr, IoamTrace,
    IoamTraceRepr, Ipv4Packet, Ipv4Repr, Ipv6ExtHeader, Ipv6ExtHeaderRepr, Ipv6OptionRepr,
    Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};
use proptest::prelude::*;

/// Mostly frame-sized lengths, sometimes anything the field holds.
fn len_up_to(max: u16) -> impl Strategy<Value = u16> {
    prop_oneof![3 => 0..=1500u16.min(max), 1 => 0..=max]
}

fn ethertype() -> impl Strategy<Value = EtherType> {
    prop_oneof![
        prop::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0xab37]),
        any::<u16>()
    ]
    .prop_map(EtherType::from)
}

fn ethernet_repr() -> impl Strategy<Value = EthernetRepr> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        prop::option::of(any::<u16>()),
        ethertype(),
    )
        .prop_map(|(src_addr, dst_addr, vlan_tci, ethertype)| EthernetRepr {
            src_addr,
            dst_addr,
            vlan_tci,
            ethertype,
        })
        // Untagged, 0x8100 is the tag itself: such a repr has no encoding.
        .prop_filter("untagged VLAN EtherType", |r| {
            r.vlan_tci.is_some() || r.ethertype != EtherType::Vlan
        })
}

fn ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
    (
        any::<(u8, u16, u16, u8, u8)>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        len_up_to(u16::MAX - 20),
    )
        .prop_map(
            |((tos, ident, flags_frag, ttl, protocol), src_addr, dst_addr, payload_len)| Ipv4Repr {
                tos,
                ident,
                flags_frag,
                ttl,
                protocol,
                src_addr,
                dst_addr,
                payload_len,
            },
        )
}

fn ipv6_repr() -> impl Strategy<Value = Ipv6Repr> {
    (
        any::<(u8, u8, u8)>(),
        0..=0xf_ffffu32,
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        len_up_to(u16::MAX),
    )
        .prop_map(
            |(
                (traffic_class, next_header, hop_limit),
                flow_label,
                src_addr,
                dst_addr,
                payload_len,
            )| {
                Ipv6Repr {
                    traffic_class,
                    flow_label,
                    payload_len,
                    next_header,
                    hop_limit,
                    src_addr,
                    dst_addr,
                }
            },
        )
}

fn udp_repr() -> impl Strategy<Value = UdpRepr> {
    (any::<u16>(), any::<u16>(), len_up_to(u16::MAX - 8)).prop_map(
        |(src_port, dst_port, payload_len)| UdpRepr {
            src_port,
            dst_port,
            payload_len,
        },
    )
}

/// The owned parts of an [`IoamTraceRepr`]: NodeLen is whatever the trace type implies, and
/// RemainingLen points inside the data.
#[derive(Debug, Clone)]
struct Trace {
    namespace_id: u16,
    flags: u8,
    remaining_len: u8,
    trace_type: u32,
    data: Vec<u8>,
}

impl Trace {
    fn repr(&self) -> IoamTraceRepr<'_> {
        IoamTraceRepr {
            namespace_id: self.namespace_id,
            node_len: node_len_for(self.trace_type),
            flags: self.flags,
            remaining_len: self.remaining_len,
            trace_type: self.trace_type,
            data: &self.data,
        }
    }
}

fn trace() -> impl Strategy<Value = Trace> {
    (0..=MAX_TRACE_DATA / 4)
        .prop_flat_map(|words| {
            (
                any::<u16>(),
                0..16u8,
                0..=words as u8,
                0..=0xff_ffffu32,
                prop::collection::vec(any::<u8>(), words * 4),
            )
        })
        .prop_map(
            |(namespace_id, flags, remaining_len, trace_type, data)| Trace {
                namespace_id,
                flags,
                remaining_len,
                trace_type,
                data,
            },
        )
}

fn dex_repr() -> impl Strategy<Value = IoamDexRepr> {
    (any::<(u16, u8, u8)>(), 0..=0xff_ffffu32, any::<[u32; 8]>()).prop_map(
        |((namespace_id, flags, ext_flags), trace_type, mut extensions)| {
            // A field is only on the wire when its flag is set; parse reads the others as 0.
            for (bit, e) in extensions.iter_mut().enumerate() {
                if ext_flags & (0x80 >> bit) == 0 {
                    *e = 0;
                }
            }
            IoamDexRepr {
                namespace_id,
                flags,
                ext_flags,
                trace_type,
                extensions,
            }
        },
    )
}

/// BIER fields other than BSL and the BitString, within their widths.
#[derive(Debug, Clone, Copy)]
struct BierFields {
    bift_id: u32,
    tc: u8,
    s: bool,
    ttl: u8,
    version: u8,
    entropy: u32,
    oam: u8,
    dscp: u8,
    proto: u8,
    bfir_id: u16,
}

fn bier_fields() -> impl Strategy<Value = BierFields> {
    (
        (0..=0xf_ffffu32, 0..8u8, any::<bool>(), any::<u8>(), 0..16u8),
        (0..=0xf_ffffu32, 0..4u8, 0..64u8, 0..64u8, any::<u16>()),
    )
        .prop_map(
            |((bift_id, tc, s, ttl, version), (entropy, oam, dscp, proto, bfir_id))| BierFields {
                bift_id,
                tc,
                s,
                ttl,
                version,
                entropy,
                oam,
                dscp,
                proto,
                bfir_id,
            },
        )
}

impl BierFields {
    fn repr(self, bsl: u8, bitstring: &[u8]) -> BierRepr<'_> {
        BierRepr {
            bift_id: self.bift_id,
            tc: self.tc,
            s: self.s,
            ttl: self.ttl,
            version: self.version,
            bsl,
            entropy: self.entropy,
            oam: self.oam,
            dscp: self.dscp,
            proto: self.proto,
            bfir_id: self.bfir_id,
            bitstring,
        }
    }
}

/// The owned form of a non-padding option.
#[derive(Debug, Clone)]
enum Opt {
    RouterAlert(u16),
    Ioam {
        option_type: u8,
        ioam_type: u8,
        data: Vec<u8>,
    },
    Unknown {
        option_type: u8,
        data: Vec<u8>,
    },
}

impl Opt {
    fn repr(&self) -> Ipv6OptionRepr<'_> {
        match self {
            Opt::RouterAlert(v) => Ipv6OptionRepr::RouterAlert(*v),
            Opt::Ioam {
                option_type,
                ioam_type,
                data,
            } => Ipv6OptionRepr::Ioam {
                option_type: *option_type,
                ioam_type: *ioam_type,
                data,
            },
            Opt::Unknown { option_type, data } => Ipv6OptionRepr::Unknown {
                option_type: *option_type,
                data,
            },
        }
    }
}

fn opt() -> impl Strategy<Value = Opt> {
    prop_oneof![
        any::<u16>().prop_map(Opt::RouterAlert),
        (
            prop::sample::select(vec![option_type::IOAM, option_type::IOAM_CHG]),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..=253),
        )
            .prop_map(|(option_type, ioam_type, data)| Opt::Ioam {
                option_type,
                ioam_type,
                data
            }),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..=255))
            // Pad1, PadN, IOAM and a two-octet Router Alert parse as themselves, not Unknown.
            .prop_filter("codepoint with its own variant", |(t, d)| match *t {
                option_type::PAD1 | option_type::PADN => false,
                option_type::IOAM | option_type::IOAM_CHG => false,
                option_type::ROUTER_ALERT => d.len() != 2,
                _ => true,
            })
            .prop_map(|(option_type, data)| Opt::Unknown { option_type, data }),
    ]
}

/// Up to `N` options, in the leading slots as parse fills them.
fn ext_repr<const N: usize>(next_header: u8, opts: &[Opt]) -> Ipv6ExtHeaderRepr<'_, N> {
    let mut options = [None; N];
    for (slot, o) in options.iter_mut().zip(opts) {
        *slot = Some(o.repr());
    }
    Ipv6ExtHeaderRepr {
        next_header,
        options,
    }
}

/// One item of a hand-laid options header: an option or a padding run of `n` octets.
#[derive(Debug, Clone)]
enum Item {
    Opt(Opt),
    Pad(usize),
}

/// Encode `items` as a header as a sender might: no alignment, padding where it falls, then
/// padding to 8n.
fn lay_out(next_header: u8, items: &[Item]) -> Vec<u8> {
    let mut b = vec![next_header, 0];
    let pad = |b: &mut Vec<u8>, n: usize| match n {
        0 => {}
        1 => b.push(option_type::PAD1),
        n => {
            b.extend([option_type::PADN, (n - 2) as u8]);
            b.resize(b.len() + n - 2, 0);
        }
    };
    for item in items {
        match item {
            Item::Opt(o) => {
                let at = b.len();
                b.resize(at + o.repr().buffer_len(), 0);
                o.repr().emit(&mut b[at..]);
            }
            Item::Pad(n) => pad(&mut b, *n),
        }
    }
    let n = (8 - b.len() % 8) % 8;
    pad(&mut b, n);
    b[1] = (b.len() / 8 - 1) as u8;
    b
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![2 => opt().prop_map(Item::Opt), 1 => (1..=9usize).prop_map(Item::Pad)]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(512) })]

    #[test]
    fn ethernet_repr_round_trips(r in ethernet_repr()) {
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b);
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), r);
        prop_assert_eq!(f.header_len(), r.buffer_len());
    }

    #[test]
    fn ethernet_bytes_round_trip(mut b in any::<[u8; 18]>(), tagged in any::<bool>()) {
        if tagged {
            b[12..14].copy_from_slice(&[0x81, 0x00]);
        } else if b[12..14] == [0x81, 0x00] {
            b[12] = 0x08;
        }
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        let r = EthernetRepr::parse(&f).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out);
        prop_assert_eq!(&out[..], &b[..f.header_len()]);
    }

    #[test]
    fn ipv4_repr_round_trips(r in ipv4_repr()) {
        let mut b = vec![0u8; r.buffer_len() + r.payload_len as usize];
        r.emit(&mut b);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn ipv4_bytes_round_trip(mut h in any::<[u8; 20]>(), payload in 0..64usize) {
        // An option-less header (the only kind Ipv4Repr parses) with a true checksum.
        h[0] = 0x45;
        h[2..4].copy_from_slice(&(20 + payload as u16).to_be_bytes());
        let mut b = h.to_vec();
        b.resize(20 + payload, 0);
        Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        let r = Ipv4Repr::parse(&p).unwrap();
        let mut out = [0u8; 20];
        r.emit(&mut out);
        prop_assert_eq!(&out[..], &b[..20]);
    }

    #[test]
    fn ipv6_repr_round_trips(r in ipv6_repr()) {
        let mut b = vec![0u8; r.buffer_len() + r.payload_len as usize];
        r.emit(&mut b);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn ipv6_bytes_round_trip(mut h in any::<[u8; 40]>(), payload in 0..64usize) {
        h[0] = 0x60 | h[0] & 0x0f;
        h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        let mut b = h.to_vec();
        b.resize(40 + payload, 0xee);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let r = Ipv6Repr::parse(&p).unwrap();
        let mut out = [0u8; 40];
        r.emit(&mut out);
        prop_assert_eq!(&out[..], &h[..]);
    }

    #[test]
    fn udp_repr_round_trips(r in udp_repr()) {
        let mut b = vec![0u8; r.buffer_len() + r.payload_len as usize];
        r.emit(&mut b);
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        prop_assert_eq!(UdpRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn udp_bytes_round_trip(mut h in any::<[u8; 8]>(), payload in 0..64usize) {
        h[4..6].copy_from_slice(&(8 + payload as u16).to_be_bytes());
        // UdpRepr has no checksum: emit writes 0 for `fill_checksum_*` to fill later.
        h[6..8].fill(0);
        let mut b = h.to_vec();
        b.resize(8 + payload, 0);
        let r = UdpRepr::parse(&UdpPacket::new_checked(&b[..]).unwrap()).unwrap();
        let mut out = [0u8; 8];
        r.emit(&mut out);
        prop_assert_eq!(out, h);
    }

    #[test]
    fn ioam_trace_repr_round_trips(t in trace()) {
        let r = t.repr();
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b);
        let v = IoamTrace::new_checked(&b[..]).unwrap();
        prop_assert_eq!(IoamTraceRepr::parse(&v).unwrap(), r);
    }

    #[test]
    fn ioam_trace_bytes_round_trip(
        mut h in any::<[u8; 8]>(),
        data in (0..=MAX_TRACE_DATA / 4).prop_flat_map(|w| prop::collection::vec(any::<u8>(), w * 4)),
    ) {
        let tt = u32::from_be_bytes([0, h[4], h[5], h[6]]);
        // NodeLen as the trace type says, RemainingLen inside the data, and the reserved
        // octet after the trace type, which the Repr does not carry, zero.
        h[2] = node_len_for(tt) << 3 | h[2] & 0x07;
        h[3] = (h[3] & 0x80) | ((h[3] & 0x7f) % (data.len() as u8 / 4 + 1));
        h[7] = 0;
        let mut b = h.to_vec();
        b.extend_from_slice(&data);
        let v = IoamTrace::new_checked(&b[..]).unwrap();
        let r = IoamTraceRepr::parse(&v).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out);
        prop_assert_eq!(out, b);
    }

    #[test]
    fn ioam_dex_repr_round_trips(r in dex_repr()) {
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b);
        let d = IoamDex::new_checked(&b[..]).unwrap();
        prop_assert_eq!(d.header_len(), r.buffer_len());
        prop_assert_eq!(IoamDexRepr::parse(&d).unwrap(), r);
    }

    #[test]
    fn ioam_dex_bytes_round_trip(mut h in any::<[u8; 8]>(), ext in any::<[u8; 32]>()) {
        // The reserved octet after the trace type is not in the Repr.
        h[7] = 0;
        let mut b = h.to_vec();
        b.extend_from_slice(&ext[..4 * h[3].count_ones() as usize]);
        let d = IoamDex::new_checked(&b[..]).unwrap();
        let r = IoamDexRepr::parse(&d).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out);
        prop_assert_eq!(out, b);
    }

    /// Every BSL, 1 (64 bits) to 7 (4096 bits), in every case.
    #[test]
    fn bier_repr_round_trips_for_every_bsl(
        f in bier_fields(),
        bits in prop::collection::vec(any::<u8>(), 512),
    ) {
        for bsl in 1..=7u8 {
            let r = f.repr(bsl, &bits[..bitstring_len(bsl).unwrap()]);
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut b);
            let h = BierHeader::new_checked(&b[..]).unwrap();
            prop_assert_eq!(h.nibble(), 0b0101);
            prop_assert_eq!(h.header_len(), r.buffer_len());
            prop_assert_eq!(BierRepr::parse(&h).unwrap(), r);
        }
    }

    #[test]
    fn bier_bytes_round_trip(
        mut h in any::<[u8; 12]>(),
        bsl in 1..=7u8,
        bits in prop::collection::vec(any::<u8>(), 512),
    ) {
        h[4] = 0x50 | h[4] & 0x0f;
        h[5] = bsl << 4 | h[5] & 0x0f;
        // The two Rsv bits are not in the Repr (RFC 8296 §2.1.2: sent as zero).
        h[8] &= !0x30;
        let mut b = h.to_vec();
        b.extend_from_slice(&bits[..bitstring_len(bsl).unwrap()]);
        let v = BierHeader::new_checked(&b[..]).unwrap();
        let r = BierRepr::parse(&v).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out);
        prop_assert_eq!(out, b);
    }

    /// Router Alert, IOAM and unknown options, each where its alignment puts it.
    #[test]
    fn ipv6_ext_header_repr_round_trips(
        next_header in any::<u8>(),
        opts in prop::collection::vec(opt(), 0..=4),
    ) {
        let r = ext_repr::<4>(next_header, &opts);
        let len = r.buffer_len();
        prop_assert_eq!(len % 8, 0);
        let mut b = vec![0xa5u8; len];
        r.emit(&mut b);
        let h = Ipv6ExtHeader::new_checked(&b[..]).unwrap();
        prop_assert_eq!(h.header_len(), len);
        prop_assert_eq!(Ipv6ExtHeaderRepr::<4>::parse(&h).unwrap(), r);
        // Each option sits at its alignment (RFC 8200 §4.2, RFC 9486 §3).
        for o in h.options() {
            let o = o.unwrap();
            let (x, y) = o.repr.alignment();
            prop_assert_eq!(o.offset % x, y);
        }
    }

    /// A header laid out by someone else (padding anywhere, no alignment) parses, and
    /// re-emitting what was parsed gives the same options back; what mtnode emits comes back
    /// byte for byte.
    #[test]
    fn ipv6_ext_header_bytes_round_trip(
        next_header in any::<u8>(),
        items in prop::collection::vec(item(), 0..=6),
    ) {
        let b = lay_out(next_header, &items);
        prop_assume!(b.len() <= 2048);
        let h = Ipv6ExtHeader::new_checked(&b[..]).unwrap();
        let r = Ipv6ExtHeaderRepr::<6>::parse(&h).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out);
        let again = Ipv6ExtHeader::new_checked(&out[..]).unwrap();
        let r2 = Ipv6ExtHeaderRepr::<6>::parse(&again).unwrap();
        prop_assert_eq!(r2, r);
        let mut out2 = vec![0u8; r2.buffer_len()];
        r2.emit(&mut out2);
        prop_assert_eq!(out2, out);
    }
}
