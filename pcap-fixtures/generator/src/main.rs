//! `fixture-gen`: writes mtnode's pcap fixtures, byte-identical on every run.
//!
//! `cargo run -p fixture-gen -- OUT_DIR` (default `pcap-fixtures`) regenerates every file listed in
//! `pcap-fixtures/README.md`. The fixtures are inputs to replay tests, so nothing here may depend on
//! the clock, the host, randomness or iteration order: timestamps are fixed, the pcap byte order is
//! pinned, and each file's packets come out in a fixed order.
//!
//! Valid packets come from etherparse's `PacketBuilder`, an implementation independent of mtnode's
//! `dataplane::wire`. IOAM options and malformed packets are built by hand in [`ioam`] and
//! [`malformed`], from the RFC layouts, because no packet builder writes them.

#![forbid(unsafe_code)]

mod ioam;
mod malformed;
mod valid;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

/// Capture time of the first packet of every file, in whole seconds.
const START_SECS: u64 = 1_700_000_000;
/// Gap between consecutive packets of a file.
const PACKET_GAP: Duration = Duration::from_millis(1);

/// File name of the malformed cases.
const MALFORMED: &str = "malformed.pcap";

/// One fixture file: its name and its frames, in capture order.
#[derive(Debug)]
struct Fixture {
    name: &'static str,
    frames: Vec<Vec<u8>>,
}

fn main() -> anyhow::Result<()> {
    let out_dir: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("pcap-fixtures"), PathBuf::from);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for fixture in all_fixtures()? {
        let path = out_dir.join(fixture.name);
        write_pcap(&path, &fixture.frames)?;
        println!("{}: {} packets", path.display(), fixture.frames.len());
        if fixture.name == MALFORMED {
            for (index, case) in malformed::CASES.iter().enumerate() {
                println!("  packet {index}: case {}: {}", case.letter, case.what);
            }
        }
    }
    Ok(())
}

/// Every fixture, in the order the README lists them.
fn all_fixtures() -> anyhow::Result<Vec<Fixture>> {
    let mut fixtures = vec![
        Fixture {
            name: "ipv6-mcast-ssm.pcap",
            frames: valid::ipv6_mcast_ssm()?,
        },
        Fixture {
            name: "ipv6-unicast.pcap",
            frames: valid::ipv6_unicast()?,
        },
        Fixture {
            name: "ipv6-hbh-router-alert.pcap",
            frames: valid::ipv6_hbh_router_alert()?,
        },
        Fixture {
            name: "ipv6-destopts.pcap",
            frames: valid::ipv6_destopts()?,
        },
        Fixture {
            name: "ipv4-mcast.pcap",
            frames: valid::ipv4_mcast()?,
        },
        Fixture {
            name: "vlan-ipv6-mcast.pcap",
            frames: valid::vlan_ipv6_mcast()?,
        },
        Fixture {
            name: "ioam-trace.pcap",
            frames: valid::ioam_trace()?,
        },
    ];
    let mixed = round_robin(fixtures.iter().map(|f| f.frames.as_slice()));
    fixtures.push(Fixture {
        name: "malformed.pcap",
        frames: malformed::all_cases()?,
    });
    fixtures.push(Fixture {
        name: "mixed.pcap",
        frames: mixed,
    });
    Ok(fixtures)
}

/// Interleaves the files' frames: first frame of each file, then the second of each, and so on;
/// a file that runs out is skipped.
fn round_robin<'a>(files: impl Iterator<Item = &'a [Vec<u8>]> + Clone) -> Vec<Vec<u8>> {
    let longest = files.clone().map(<[_]>::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| files.clone().filter_map(move |f| f.get(i).cloned()))
        .collect()
}

/// Writes classic pcap: microsecond timestamps, LINKTYPE_ETHERNET, snaplen 65535.
///
/// The byte order is pinned to little-endian: pcap-file's `PcapWriter::new` would use the host's
/// order (and its `PcapHeader::default()` says big-endian), which would make the bytes host-dependent.
/// Frames are stored whole (`orig_len` = captured length), so truncated frames read as truncated on
/// the wire, not as a short snaplen.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: 65535,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
    };
    let mut writer = PcapWriter::with_header(BufWriter::new(file), header)?;
    let mut timestamp = Duration::from_secs(START_SECS);
    for frame in frames {
        let len = u32::try_from(frame.len())?;
        writer.write_packet(&PcapPacket::new(timestamp, len, frame))?;
        timestamp += PACKET_GAP;
    }
    let mut out = writer.into_writer();
    std::io::Write::flush(&mut out).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_exhausted_files() {
        let a = vec![vec![1], vec![2], vec![3]];
        let b = vec![vec![10]];
        let c: Vec<Vec<u8>> = vec![];
        let files = [a.as_slice(), b.as_slice(), c.as_slice()];
        let mixed = round_robin(files.iter().copied());
        assert_eq!(mixed, vec![vec![1], vec![10], vec![2], vec![3]]);
    }

    #[test]
    fn fixture_names_are_unique() {
        let fixtures = all_fixtures().unwrap();
        let mut names: Vec<_> = fixtures.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), fixtures.len());
    }
}
