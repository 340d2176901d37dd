//! IPv6 Hop-by-Hop and Destination Options headers (RFC 8200 §4.3, §4.6) and the options inside
//! them: Pad1/PadN, Router Alert (RFC 2711), the IOAM options (RFC 9486) and unknown options,
//! which are kept as they are. Owns TLV walking and padding; the IOAM option *data* is
//! [`super::ioam`]'s.

use super::{Error, Layer, Result};

/// Option Type codepoints (IANA "Destination Options and Hop-by-Hop Options").
pub mod option_type {
    pub const PAD1: u8 = 0x00;
    pub const PADN: u8 = 0x01;
    pub const ROUTER_ALERT: u8 = 0x05;
    /// IOAM, data does not change en route (RFC 9486 §3): DEX, E2E.
    pub const IOAM: u8 = 0x11;
    /// IOAM, data may change en route (RFC 9486 §3): the Pre-allocated Trace.
    pub const IOAM_CHG: u8 = 0x31;
}

/// A read/write view of a Hop-by-Hop or Destination Options header.
#[derive(Debug, Clone)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6ExtHeader { buffer }
    }

    /// Checks the header fits and every option TLV stays inside it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let h = Self::new_unchecked(buffer);
        let b = h.buffer.as_ref();
        if b.len() < 2 {
            return Err(Error::Truncated(Layer::Ipv6Ext));
        }
        if h.header_len() > b.len() {
            return Err(Error::BadLength(Layer::Ipv6Ext));
        }
        for opt in h.options() {
            opt?;
        }
        Ok(h)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    pub fn hdr_ext_len(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Whole header length in octets: `(Hdr Ext Len + 1) · 8`.
    pub fn header_len(&self) -> usize {
        (self.hdr_ext_len() as usize + 1) * 8
    }

    /// The option area, `header_len − 2` octets.
    pub fn options_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }

    /// Walk the options; offsets are from the start of the header.
    pub fn options(&self) -> Options<'_> {
        Options {
            bytes: &self.buffer.as_ref()[..self.header_len().min(self.buffer.as_ref().len())],
            at: 2,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6ExtHeader<T> {
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[0] = nh;
    }

    pub fn set_hdr_ext_len(&mut self, len: u8) {
        self.buffer.as_mut()[1] = len;
    }
}

/// One option as found in a header: where it starts and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Option<'a> {
    /// Offset of the Option Type octet from the start of the extension header.
    pub offset: usize,
    pub repr: Ipv6OptionRepr<'a>,
}

impl Ipv6Option<'_> {
    /// Octets the option occupies, type and length included.
    pub fn len(&self) -> usize {
        self.repr.buffer_len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Iterator over the options of an extension header.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<Ipv6Option<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let offset = self.at;
        let kind = self.bytes[offset];
        if kind == option_type::PAD1 {
            self.at += 1;
            return Some(Ok(Ipv6Option {
                offset,
                repr: Ipv6OptionRepr::Pad1,
            }));
        }
        let Some(&len) = self.bytes.get(offset + 1) else {
            self.at = self.bytes.len();
            return Some(Err(Error::OptionOverrun));
        };
        let end = offset + 2 + len as usize;
        if end > self.bytes.len() {
            self.at = self.bytes.len();
            return Some(Err(Error::OptionOverrun));
        }
        self.at = end;
        let data = &self.bytes[offset + 2..end];
        Some(Ipv6OptionRepr::parse(kind, data).map(|repr| Ipv6Option { offset, repr }))
    }
}

/// The high-level form of one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6OptionRepr<'a> {
    Pad1,
    /// PadN with this many zero data octets.
    PadN(u8),
    RouterAlert(u16),
    /// An IOAM option (RFC 9486 §3): `option_type` is 0x11 or 0x31, `ioam_type` the IOAM
    /// Option-Type, `data` what follows the Reserved and IOAM Option-Type octets.
    Ioam {
        option_type: u8,
        ioam_type: u8,
        data: &'a [u8],
    },
    /// Any other option, kept verbatim.
    Unknown {
        option_type: u8,
        data: &'a [u8],
    },
}

impl<'a> Ipv6OptionRepr<'a> {
    fn parse(kind: u8, data: &'a [u8]) -> Result<Self> {
        Ok(match kind {
            option_type::PADN => Ipv6OptionRepr::PadN(data.len() as u8),
            option_type::ROUTER_ALERT if data.len() == 2 => {
                Ipv6OptionRepr::RouterAlert(u16::from_be_bytes([data[0], data[1]]))
            }
            option_type::IOAM | option_type::IOAM_CHG => {
                if data.len() < 2 {
                    return Err(Error::Truncated(Layer::Ioam));
                }
                Ipv6OptionRepr::Ioam {
                    option_type: kind,
                    ioam_type: data[1],
                    data: &data[2..],
                }
            }
            other => Ipv6OptionRepr::Unknown {
                option_type: other,
                data,
            },
        })
    }

    /// Octets on the wire, type and length included.
    pub fn buffer_len(&self) -> usize {
        match *self {
            Ipv6OptionRepr::Pad1 => 1,
            Ipv6OptionRepr::PadN(n) => 2 + n as usize,
            Ipv6OptionRepr::RouterAlert(_) => 4,
            Ipv6OptionRepr::Ioam { data, .. } => 4 + data.len(),
            Ipv6OptionRepr::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Alignment requirement `xn + y` of the Option Type octet, as `(x, y)`.
    pub fn alignment(&self) -> (usize, usize) {
        match self {
            Ipv6OptionRepr::RouterAlert(_) => (2, 0),
            // RFC 9486 §3: 4n, so that the IOAM data after the 4-octet option prefix is
            // 4-octet aligned.
            Ipv6OptionRepr::Ioam { .. } => (4, 0),
            _ => (1, 0),
        }
    }

    /// Write the option into the first `buffer_len()` octets of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        match *self {
            Ipv6OptionRepr::Pad1 => buf[0] = option_type::PAD1,
            Ipv6OptionRepr::PadN(n) => {
                buf[0] = option_type::PADN;
                buf[1] = n;
                buf[2..2 + n as usize].fill(0);
            }
            Ipv6OptionRepr::RouterAlert(v) => {
                buf[0] = option_type::ROUTER_ALERT;
                buf[1] = 2;
                buf[2..4].copy_from_slice(&v.to_be_bytes());
            }
            Ipv6OptionRepr::Ioam {
                option_type,
                ioam_type,
                data,
            } => {
                buf[0] = option_type;
                buf[1] = (2 + data.len()) as u8;
                buf[2] = 0;
                buf[3] = ioam_type;
                buf[4..4 + data.len()].copy_from_slice(data);
            }
            Ipv6OptionRepr::Unknown { option_type, data } => {
                buf[0] = option_type;
                buf[1] = data.len() as u8;
                buf[2..2 + data.len()].copy_from_slice(data);
            }
        }
    }
}

/// Write `n` octets of padding at the start of `buf`: Pad1 for one, PadN otherwise.
pub fn emit_padding(buf: &mut [u8], n: usize) {
    match n {
        0 => {}
        1 => buf[0] = option_type::PAD1,
        _ => Ipv6OptionRepr::PadN((n - 2) as u8).emit(buf),
    }
}

/// The high-level form of a whole options header: its Next Header and non-padding options,
/// laid out on emit with each option's alignment and the header padded to 8n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtHeaderRepr<'a, const N: usize> {
    pub next_header: u8,
    pub options: [Option<Ipv6OptionRepr<'a>>; N],
}

impl<'a, const N: usize> Ipv6ExtHeaderRepr<'a, N> {
    /// Collect the non-padding options of `h`; fails if there are more than `N`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(h: &'a Ipv6ExtHeader<&'a T>) -> Result<Self> {
        let mut options = [None; N];
        let mut i = 0;
        for opt in h.options() {
            let opt = opt?;
            if matches!(opt.repr, Ipv6OptionRepr::Pad1 | Ipv6OptionRepr::PadN(_)) {
                continue;
            }
            *options.get_mut(i).ok_or(Error::BadLength(Layer::Ipv6Ext))? = Some(opt.repr);
            i += 1;
        }
        Ok(Ipv6ExtHeaderRepr {
            next_header: h.next_header(),
            options,
        })
    }

    fn layout(&self, mut out: impl FnMut(usize, usize, Option<&Ipv6OptionRepr<'a>>)) -> usize {
        let mut at = 2;
        for opt in self.options.iter().flatten() {
            let (x, y) = opt.alignment();
            let pad = (x + y - at % x) % x;
            out(at, pad, None);
            at += pad;
            out(at, 0, Some(opt));
            at += opt.buffer_len();
        }
        let pad = (8 - at % 8) % 8;
        out(at, pad, None);
        at + pad
    }

    pub fn buffer_len(&self) -> usize {
        self.layout(|_, _, _| {})
    }

    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        buf[0] = self.next_header;
        buf[1] = (len / 8 - 1) as u8;
        self.layout(|at, pad, opt| match opt {
            Some(o) => o.emit(&mut buf[at..]),
            None => emit_padding(&mut buf[at..], pad),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hop-by-Hop: NH UDP, Router Alert (MLD, 0), PadN(0), then an unknown option 0x1e.
    static HBH: [u8; 16] = [
        0x11, 0x01, // UDP, 16 octets
        0x05, 0x02, 0x00, 0x00, // Router Alert 0
        0x1e, 0x04, 0xde, 0xad, 0xbe, 0xef, // unknown, kept
        0x01, 0x02, 0x00, 0x00, // PadN 2
    ];

    fn repr() -> Ipv6ExtHeaderRepr<'static, 2> {
        Ipv6ExtHeaderRepr {
            next_header: 17,
            options: [
                Some(Ipv6OptionRepr::RouterAlert(0)),
                Some(Ipv6OptionRepr::Unknown {
                    option_type: 0x1e,
                    data: &[0xde, 0xad, 0xbe, 0xef],
                }),
            ],
        }
    }

    #[test]
    fn deconstruct() {
        let h = Ipv6ExtHeader::new_checked(&HBH[..]).unwrap();
        assert_eq!(h.next_header(), 17);
        assert_eq!(h.header_len(), 16);
        let opts: Vec<_> = h.options().map(|o| o.unwrap()).collect();
        assert_eq!(opts.len(), 3);
        assert_eq!(opts[0].offset, 2);
        assert_eq!(opts[0].repr, Ipv6OptionRepr::RouterAlert(0));
        assert_eq!(opts[1].offset, 6);
        assert_eq!(opts[2].repr, Ipv6OptionRepr::PadN(2));
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 16];
        let mut h = Ipv6ExtHeader::new_unchecked(&mut buf[..]);
        h.set_next_header(17);
        h.set_hdr_ext_len(1);
        Ipv6OptionRepr::RouterAlert(0).emit(&mut buf[2..]);
        Ipv6OptionRepr::Unknown {
            option_type: 0x1e,
            data: &[0xde, 0xad, 0xbe, 0xef],
        }
        .emit(&mut buf[6..]);
        emit_padding(&mut buf[12..], 4);
        assert_eq!(buf, HBH);
    }

    #[test]
    fn parse() {
        let h = Ipv6ExtHeader::new_checked(&HBH[..]).unwrap();
        assert_eq!(Ipv6ExtHeaderRepr::<2>::parse(&h).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let r = repr();
        assert_eq!(r.buffer_len(), 16);
        let mut buf = [0xffu8; 16];
        r.emit(&mut buf);
        assert_eq!(buf, HBH);
    }

    #[test]
    fn ioam_option_is_4n_aligned_like_linux() {
        let data = [0u8; 8];
        let r = Ipv6ExtHeaderRepr::<1> {
            next_header: 17,
            options: [Some(Ipv6OptionRepr::Ioam {
                option_type: option_type::IOAM_CHG,
                ioam_type: 0,
                data: &data,
            })],
        };
        let mut buf = [0xffu8; 16];
        assert_eq!(r.buffer_len(), 16);
        r.emit(&mut buf);
        assert_eq!(
            buf,
            [0x11, 0x01, 0x01, 0x00, 0x31, 0x0a, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // Four more data octets need a trailing PadN to reach 8n.
        let data = [0u8; 12];
        let r = Ipv6ExtHeaderRepr::<1> {
            options: [Some(Ipv6OptionRepr::Ioam {
                option_type: option_type::IOAM_CHG,
                ioam_type: 0,
                data: &data,
            })],
            ..r
        };
        let mut buf = [0xffu8; 24];
        assert_eq!(r.buffer_len(), 24);
        r.emit(&mut buf);
        assert_eq!(&buf[..6], &[0x11, 0x02, 0x01, 0x00, 0x31, 0x0e]);
        assert_eq!(&buf[20..], &[0x01, 0x02, 0x00, 0x00]);
    }

    #[test]
    fn overruns_are_errors() {
        // PadN claims 10 octets in an 8-octet header.
        let bad = [0x11, 0x00, 0x01, 0x0a, 0, 0, 0, 0];
        assert_eq!(
            Ipv6ExtHeader::new_checked(&bad[..]).unwrap_err(),
            Error::OptionOverrun
        );
        // Hdr Ext Len says 16 octets, 8 present.
        let short = [0x11, 0x01, 0x01, 0x04, 0, 0, 0, 0];
        assert_eq!(
            Ipv6ExtHeader::new_checked(&short[..]).unwrap_err(),
            Error::BadLength(Layer::Ipv6Ext)
        );
        // A lone option type at the end has no length octet.
        let cut = [0x11, 0x00, 0x01, 0x03, 0, 0, 0, 0x05];
        assert_eq!(
            Ipv6ExtHeader::new_checked(&cut[..]).unwrap_err(),
            Error::OptionOverrun
        );
    }
}
