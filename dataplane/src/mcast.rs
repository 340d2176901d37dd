//! Multicast forwarding state: static PIM-SSM routes `(S,G) → (iif, OIL)` with the RPF check and
//! per-interface TTL thresholds, and BIER forwarding tables (RFC 8279 §6.5) with F-BMs per
//! neighbor for every BSL from 64 to 4096. Decides where copies go; making the copies is the
//! pipeline's job.
#![forbid(unsafe_code)]

/// One outgoing interface of an `(S,G)` route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oif {
    pub port: u16,
    /// Copies go out only when the packet's hop limit (TTL) is above this.
    pub ttl_threshold: u8,
}

/// A static `(S,G)` route. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgRoute {
    pub source: [u8; 16],
    pub group: [u8; 16],
    /// The RPF interface: packets arriving elsewhere are dropped.
    pub iif: u16,
    pub oil: Vec<Oif>,
}

/// The IPv4-mapped form of an IPv4 address.
pub fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&a);
    m
}

/// Is `g` a source-specific multicast group: FF3x::/32 or 232/8 (IPv4-mapped)?
pub fn is_ssm(g: &[u8; 16]) -> bool {
    (g[0] == 0xff && g[1] & 0xf0 == 0x30 && g[2] == 0 && g[3] == 0)
        || (g[..12] == v4_mapped([0; 4])[..12] && g[12] == 232)
}

/// Why the table would not forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McastMiss {
    /// No `(S,G)` entry.
    NoRoute,
    /// Arrived on an interface other than the route's iif.
    RpfFail,
}

/// The static PIM-SSM table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PimTable {
    pub routes: Vec<SgRoute>,
}

impl PimTable {
    /// The route for `(source, group)` if the packet came in on its iif.
    pub fn lookup(
        &self,
        source: &[u8; 16],
        group: &[u8; 16],
        rx: u16,
    ) -> Result<&SgRoute, McastMiss> {
        let r = self
            .routes
            .iter()
            .find(|r| &r.group == group && &r.source == source)
            .ok_or(McastMiss::NoRoute)?;
        if r.iif != rx {
            return Err(McastMiss::RpfFail);
        }
        Ok(r)
    }
}

/// Where a BIER copy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Neighbor {
    Port(u16),
    /// This router is the BFER: decapsulate and deliver.
    Local,
}

/// One BIFT (RFC 8279 §6.4), for one (sub-domain, BSL, SI), named by its BIFT-id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bift {
    pub bift_id: u32,
    /// BSL codepoint 1..=7.
    pub bsl: u8,
    /// Per neighbor, its Forwarding Bit Mask in 64-bit words, least significant word first
    /// (word 0 holds bit positions 1..=64).
    pub neighbors: Vec<(Neighbor, Vec<u64>)>,
    /// For each bit position − 1: the index in `neighbors`, or `u16::MAX` for none.
    pub bit_to_neighbor: Vec<u16>,
}

/// Words of a BitString of BSL codepoint `bsl`.
pub fn words(bsl: u8) -> usize {
    (1usize << (bsl + 2)) / 8
}

impl Bift {
    /// A BIFT from `(neighbor, bit positions)` pairs; the F-BM of a neighbor is the set of bit
    /// positions reached through it. Returns `None` if a position is outside the BSL or listed
    /// for two neighbors.
    pub fn new(bift_id: u32, bsl: u8, entries: &[(Neighbor, Vec<u16>)]) -> Option<Self> {
        let bits = words(bsl) * 64;
        let mut bit_to_neighbor = vec![u16::MAX; bits];
        let mut neighbors = Vec::new();
        for (i, (nbr, positions)) in entries.iter().enumerate() {
            let mut fbm = vec![0u64; words(bsl)];
            for &k in positions {
                let k = k as usize;
                if k == 0 || k > bits || bit_to_neighbor[k - 1] != u16::MAX {
                    return None;
                }
                bit_to_neighbor[k - 1] = i as u16;
                fbm[(k - 1) / 64] |= 1 << ((k - 1) % 64);
            }
            neighbors.push((*nbr, fbm));
        }
        Some(Bift {
            bift_id,
            bsl,
            neighbors,
            bit_to_neighbor,
        })
    }

    /// RFC 8279 §6.5 forwarding of a BitString (words, least significant first): calls
    /// `out(neighbor, bitstring for that copy)` once per copy, in order of the lowest bit each
    /// copy serves. Bits with no BIFT entry are cleared and counted in the return value.
    pub fn forward(&self, bitstring: &mut [u64], mut out: impl FnMut(Neighbor, &[u64])) -> u32 {
        let mut unreachable = 0;
        let mut copy = [0u64; 64];
        let n = bitstring.len().min(64);
        while let Some(w) = bitstring[..n].iter().position(|&x| x != 0) {
            let bit = w * 64 + bitstring[w].trailing_zeros() as usize;
            let idx = self.bit_to_neighbor.get(bit).copied().unwrap_or(u16::MAX);
            if idx == u16::MAX {
                bitstring[w] &= !(1 << (bit % 64));
                unreachable += 1;
                continue;
            }
            let (nbr, fbm) = &self.neighbors[idx as usize];
            for i in 0..n {
                copy[i] = bitstring[i] & fbm[i];
                bitstring[i] &= !fbm[i];
            }
            out(*nbr, &copy[..n]);
        }
        unreachable
    }
}

/// Read a BitString (network order, bit 1 = least significant bit of the last octet) into
/// words, least significant first.
pub fn bitstring_to_words(bytes: &[u8], out: &mut [u64]) {
    for (i, w) in out.iter_mut().enumerate() {
        let end = bytes.len() - i * 8;
        *w = u64::from_be_bytes(bytes[end - 8..end].try_into().unwrap());
    }
}

/// Write words (least significant first) back as a BitString.
pub fn words_to_bitstring(words: &[u64], bytes: &mut [u8]) {
    let len = bytes.len();
    for (i, w) in words.iter().enumerate() {
        bytes[len - (i + 1) * 8..len - i * 8].copy_from_slice(&w.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8279 §6.3: A–B–C–D, E on B, F on C; BFR-ids D=1, F=2, E=3, A=4.
    fn bift_b() -> Bift {
        Bift::new(
            1,
            1,
            &[
                (Neighbor::Port(2), vec![1, 2]), // C
                (Neighbor::Port(3), vec![3]),    // E
                (Neighbor::Port(1), vec![4]),    // A
            ],
        )
        .unwrap()
    }

    fn bift_c() -> Bift {
        Bift::new(
            1,
            1,
            &[
                (Neighbor::Port(2), vec![1]),    // D
                (Neighbor::Port(3), vec![2]),    // F
                (Neighbor::Port(1), vec![3, 4]), // B
            ],
        )
        .unwrap()
    }

    #[test]
    fn rfc8279_section_6_3_vector() {
        let mut copies = Vec::new();
        let mut bs = [0b0111u64];
        let lost = bift_b().forward(&mut bs, |n, b| copies.push((n, b[0])));
        assert_eq!(lost, 0);
        assert_eq!(
            copies,
            [(Neighbor::Port(2), 0b0011), (Neighbor::Port(3), 0b0100)]
        );
        assert_eq!(bs, [0]);
        let mut at_c = Vec::new();
        bift_c().forward(&mut [0b0011], |n, b| at_c.push((n, b[0])));
        assert_eq!(
            at_c,
            [(Neighbor::Port(2), 0b0001), (Neighbor::Port(3), 0b0010)]
        );
    }

    #[test]
    fn unknown_bits_are_cleared_and_counted() {
        let mut seen = 0;
        let lost = bift_b().forward(&mut [0b1_0000_0001], |_, _| seen += 1);
        assert_eq!((lost, seen), (1, 1));
    }

    #[test]
    fn every_bsl_round_trips_its_bitstring() {
        for bsl in 1..=7u8 {
            let n = words(bsl);
            let mut bytes = vec![0u8; n * 8];
            *bytes.last_mut().unwrap() = 0b1; // bit 1
            bytes[0] = 0x80; // the highest bit position
            let mut w = vec![0u64; n];
            bitstring_to_words(&bytes, &mut w);
            assert_eq!(w[0] & 1, 1);
            assert_eq!(w[n - 1] >> 63, 1);
            let mut back = vec![0u8; n * 8];
            words_to_bitstring(&w, &mut back);
            assert_eq!(back, bytes);
            let top = (n * 64) as u16;
            let b = Bift::new(9, bsl, &[(Neighbor::Local, vec![1, top])]).unwrap();
            let mut got = Vec::new();
            b.forward(&mut w, |nbr, c| got.push((nbr, c.to_vec())));
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].1[n - 1] >> 63, 1);
        }
        assert!(
            Bift::new(1, 1, &[(Neighbor::Local, vec![65])]).is_none(),
            "past BSL 64"
        );
        assert!(Bift::new(
            1,
            1,
            &[(Neighbor::Local, vec![1]), (Neighbor::Port(1), vec![1])]
        )
        .is_none());
    }

    #[test]
    fn pim_rpf_and_ssm_ranges() {
        let s = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let g = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1];
        let t = PimTable {
            routes: vec![SgRoute {
                source: s,
                group: g,
                iif: 0,
                oil: vec![Oif {
                    port: 1,
                    ttl_threshold: 1,
                }],
            }],
        };
        assert!(t.lookup(&s, &g, 0).is_ok());
        assert_eq!(t.lookup(&s, &g, 1).unwrap_err(), McastMiss::RpfFail);
        assert_eq!(t.lookup(&g, &s, 0).unwrap_err(), McastMiss::NoRoute);
        assert!(is_ssm(&g));
        assert!(is_ssm(&v4_mapped([232, 1, 1, 1])));
        assert!(!is_ssm(&v4_mapped([239, 1, 1, 1])));
        assert!(!is_ssm(&[
            0xff, 0x0e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
        ]));
    }
}
