//! Helpers shared by the fixture tests: where the committed fixtures live and how to read them.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::PcapReader;

/// The committed fixtures: `pcap-fixtures/`, the generator crate's parent directory.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("generator crate has a parent directory")
        .to_path_buf()
}

/// One captured frame.
#[derive(Debug)]
pub struct Frame {
    pub timestamp: Duration,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// Reads a classic pcap file into memory.
pub fn read_pcap(path: &Path) -> Vec<Frame> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = PcapReader::new(file).unwrap();
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        frames.push(Frame {
            timestamp: packet.timestamp,
            orig_len: packet.orig_len,
            data: packet.data.into_owned(),
        });
    }
    frames
}

/// The `.pcap` file names in `dir`, sorted.
pub fn pcap_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".pcap"))
        .collect();
    names.sort();
    names
}
