//! pcap file replay: reads frames with their timestamps into pool buffers, and writes one
//! output file per egress port. File I/O is this module's; the pipeline never sees a file.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

pub use pcap_file::PcapError;

/// Reads an Ethernet pcap.
#[derive(Debug)]
pub struct PcapSource {
    reader: PcapReader<BufReader<File>>,
}

/// One record: its time in ns since the Unix epoch and its bytes.
pub type Record<'a> = (u64, &'a [u8]);

impl PcapSource {
    pub fn open(path: &Path) -> Result<Self, PcapError> {
        let f = File::open(path).map_err(PcapError::IoError)?;
        let reader = PcapReader::new(BufReader::new(f))?;
        if reader.header().datalink != DataLink::ETHERNET {
            return Err(PcapError::InvalidField("datalink is not Ethernet"));
        }
        Ok(PcapSource { reader })
    }

    /// Call `f` with the next record; `Ok(false)` at the end of the file.
    pub fn next_with(&mut self, f: impl FnOnce(Record<'_>)) -> Result<bool, PcapError> {
        match self.reader.next_packet() {
            None => Ok(false),
            Some(Err(e)) => Err(e),
            Some(Ok(p)) => {
                f((p.timestamp.as_nanos() as u64, &p.data));
                Ok(true)
            }
        }
    }
}

/// Writes an Ethernet pcap: little-endian, microsecond timestamps, the classic format every
/// tool reads.
#[derive(Debug)]
pub struct PcapSink {
    writer: PcapWriter<BufWriter<File>>,
}

impl PcapSink {
    pub fn create(path: &Path) -> Result<Self, PcapError> {
        let f = File::create(path).map_err(PcapError::IoError)?;
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
        Ok(PcapSink {
            writer: PcapWriter::with_header(BufWriter::new(f), header)?,
        })
    }

    pub fn write(&mut self, ts_ns: u64, bytes: &[u8]) -> Result<(), PcapError> {
        let p = PcapPacket::new(Duration::from_nanos(ts_ns), bytes.len() as u32, bytes);
        self.writer.write_packet(&p).map(|_| ())
    }
}
