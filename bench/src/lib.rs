//! Set-up shared by the criterion benches and the callgrind counter: the three IOAM node
//! configurations of the foundation issue, the fixture frames they run on, and batches that can be
//! put back to their starting bytes cheaply so that every measured iteration does the same work.
//! It measures nothing itself and must never reach into the pipeline's internals: everything
//! goes through `Pipeline::process`, as a backend would.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtnode_control::replay::{BATCH as REPLAY_BATCH, BATCH_WINDOW_NS};
use mtnode_dataplane::frame::{Frame, HEADROOM};
use mtnode_dataplane::io::{Buf, BufPool};
use mtnode_dataplane::ioam::{self, EncapPlan, NodeData, TimestampFormat};
use mtnode_dataplane::mcast::PimTable;
use mtnode_dataplane::pipeline::{
    CountingSink, Forwarding, MalformedPolicy, Namespace, NodeConfig, Packet, Pipeline, Port,
    Prefix, Selector, Sink, TraceEvent, TraceMode, Verdict,
};
use mtnode_dataplane::wire::{ethernet, ipv6};

/// Packets per `Pipeline::process` call, as a backend's receive burst.
pub const BATCH: usize = 32;

/// Frame buffer size: the headroom plus room for a 1500-octet frame and its trace.
pub const BUF_LEN: usize = HEADROOM + 2048;

/// The trace type: hop limit + node ID, interface IDs, timestamp seconds and fraction,
/// transit delay (bits 0–4; five 4-octet words per node).
pub const TRACE_TYPE: u32 = 0xF8_0000;

/// Pre-allocated room, in hops, of the encapsulated trace (160 octets of data for 0xF80000).
pub const TRACE_HOPS: usize = 8;

/// The namespace every configuration uses.
pub const NAMESPACE_ID: u16 = 1;

/// The batch's `now`, and every packet's receive time 1.5 µs before it (a non-zero transit delay).
pub const NOW_NS: u64 = 1_700_000_000_000_010_000;
pub const RX_NS: u64 = NOW_NS - 1_500;

/// The frame-size sweep, as frame lengths in `ipv6-mcast-ssm.pcap`. The smallest is 66, not 64:
/// Ethernet + IPv6 + UDP + a 4-octet sequence number do not fit in 64 (pcap-fixtures/README.md).
pub const FRAME_LENS: [usize; 3] = [66, 512, 1500];

/// Which node a benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No namespaces: parse, pick the other port, forward. The baseline.
    Passthrough,
    /// Insert the trace and write the first slot.
    Encap,
    /// Write a slot into an existing trace.
    Transit,
    /// Write the last slot, hand the trace to the sink, strip it.
    Decap,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Transit, Role::Encap, Role::Decap, Role::Passthrough];

    pub fn name(self) -> &'static str {
        match self {
            Role::Passthrough => "passthrough",
            Role::Encap => "encap",
            Role::Transit => "transit",
            Role::Decap => "decap",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    fn ioam(self) -> Option<ioam::Role> {
        match self {
            Role::Passthrough => None,
            Role::Encap => Some(ioam::Role::Encap),
            Role::Transit => Some(ioam::Role::Transit),
            Role::Decap => Some(ioam::Role::Decap),
        }
    }
}

/// `pcap-fixtures/<name>` in this workspace.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pcap-fixtures")
        .join(name)
}

/// A captured frame: receive time (ns since the Unix epoch) and bytes.
#[derive(Debug, Clone)]
pub struct Captured {
    pub ts_ns: u64,
    pub bytes: Vec<u8>,
}

/// Every frame of a pcap file, in order.
pub fn read_pcap(path: &Path) -> std::io::Result<Vec<Captured>> {
    let file = std::fs::File::open(path)?;
    let mut r = pcap_file::pcap::PcapReader::new(file).map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.map_err(std::io::Error::other)?;
        out.push(Captured {
            ts_ns: p.timestamp.as_nanos() as u64,
            bytes: p.data.into_owned(),
        });
    }
    Ok(out)
}

/// A fixture's frames; panics with the path if it cannot be read (bench set-up only).
pub fn fixture(name: &str) -> Vec<Captured> {
    let path = fixture_path(name);
    read_pcap(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The plain IPv6 multicast frame (ff3e::8000:1 from 2001:db8:1::10, UDP) of length `len`, one
/// of [`FRAME_LENS`].
pub fn plain_frame(len: usize) -> Vec<u8> {
    fixture("ipv6-mcast-ssm.pcap")
        .into_iter()
        .map(|c| c.bytes)
        .find(|b| b.len() == len)
        .unwrap_or_else(|| panic!("no {len}-octet frame in ipv6-mcast-ssm.pcap"))
}

/// Node data for node `id` as `mtnode` builds it from a config without `data`/`data_wide`:
/// PTP timestamps, all-ones namespace data, no snapshot.
pub fn node_data(id: u32) -> NodeData {
    NodeData {
        node_id: id,
        node_id_wide: id as u64,
        namespace_data: u32::MAX,
        namespace_data_wide: u64::MAX,
        timestamp_format: TimestampFormat::Ptp,
        snapshot: None,
    }
}

/// The configuration `pcap-fixtures/configs/<role>.toml` loads to (a test holds them equal): a
/// bump-in-the-wire node with ports `in` and `out` and, unless `role` is passthrough, namespace 1
/// in that role. The encapsulating node selects every multicast destination (ff00::/8) and
/// inserts [`TRACE_TYPE`] with room for [`TRACE_HOPS`].
pub fn node_config(role: Role) -> NodeConfig {
    let id = match role {
        Role::Passthrough => 0,
        Role::Encap => 1,
        Role::Transit => 2,
        Role::Decap => 3,
    };
    let node = node_data(id);
    let mut ff00 = [0u8; 16];
    ff00[0] = 0xff;
    let namespaces = role
        .ioam()
        .map(|r| {
            let encap = r == ioam::Role::Encap;
            Namespace {
                id: NAMESPACE_ID,
                role: r,
                mode: TraceMode::Trace,
                node,
                plan: encap.then(|| EncapPlan::new(NAMESPACE_ID, TRACE_TYPE, TRACE_HOPS, &node)),
                dex: None,
                select: if encap {
                    vec![Selector {
                        dst: Some(Prefix { addr: ff00, len: 8 }),
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                },
            }
        })
        .into_iter()
        .collect();
    let port = |name: &str, i: u16| Port {
        name: name.to_string(),
        if_id: 10 * id as u16 + i,
        if_id_wide: 10 * id + i as u32,
        capacity_bps: 10_000_000_000,
        queue: None,
    };
    NodeConfig {
        name: role.name().to_string(),
        node_id: id,
        forwarding: Forwarding::Bump,
        malformed: MalformedPolicy::Forward,
        timestamp_format: TimestampFormat::Ptp,
        ports: vec![port("in", 0), port("out", 1)],
        routes6: Vec::new(),
        routes4: Vec::new(),
        namespaces,
        pim: PimTable::default(),
        bifts: Vec::new(),
        epoch: 0,
    }
}

/// A pipeline for `role`.
pub fn pipeline(role: Role) -> Pipeline {
    Pipeline::new(Arc::new(node_config(role)))
}

/// A packet holding `bytes` at the standard headroom, received on port 0 at [`RX_NS`].
pub fn packet(bytes: &[u8]) -> Packet<Vec<u8>> {
    Packet {
        frame: Frame::from_bytes(vec![0u8; BUF_LEN], bytes).expect("frame fits its buffer"),
        rx_port: 0,
        rx_ns: RX_NS,
        verdict: Verdict::Pending,
    }
}

/// Run `bytes` once through a node in `role` and return what it forwards.
pub fn through(role: Role, bytes: &[u8]) -> Vec<u8> {
    let mut batch = vec![packet(bytes)];
    pipeline(role).process(NOW_NS, &mut batch, &mut CountingSink::default());
    assert_eq!(
        batch[0].verdict,
        Verdict::Forward(1),
        "{} node",
        role.name()
    );
    batch[0].frame.bytes().to_vec()
}

/// What a role's input is: plain frames for passthrough and encapsulation, frames carrying the
/// encapsulating node's trace for transit and decapsulation.
pub fn input_frame(role: Role, plain_len: usize) -> Vec<u8> {
    let plain = plain_frame(plain_len);
    match role {
        Role::Passthrough | Role::Encap => plain,
        Role::Transit | Role::Decap => through(Role::Encap, &plain),
    }
}

/// How a batch gets back to its starting bytes between iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The role changes nothing (passthrough in a bump).
    Nothing,
    /// Transit moves nothing and rewrites its whole slot: restoring the trace header's
    /// NodeLen/Flags/RemainingLen octets at this frame offset is enough.
    TraceHeader { at: usize, orig: [u8; 2] },
    /// Encapsulation and decapsulation move the frame's start: put the frame back at the standard
    /// headroom and restore the first `prefix` octets, the only ones the role overwrites (found
    /// by comparing against the input once, checked by this crate's tests).
    Prefix { prefix: usize },
}

/// A batch of [`BATCH`] identical frames for one role, and the node that processes them.
#[derive(Debug)]
pub struct RoleBench {
    pub role: Role,
    pub pipeline: Pipeline,
    pub batch: Vec<Packet<Vec<u8>>>,
    pub sink: CountingSink,
    /// The input frame.
    pub pristine: Vec<u8>,
    pub reset: Reset,
}

impl RoleBench {
    /// `plain_len` is the plain frame's length (one of [`FRAME_LENS`]); transit and decap inputs
    /// are longer by the trace the encapsulating node inserted.
    pub fn new(role: Role, plain_len: usize) -> Self {
        let pristine = input_frame(role, plain_len);
        let reset = match role {
            Role::Passthrough => Reset::Nothing,
            Role::Transit => {
                let loc = ioam::find_trace(&pristine, ethernet::HEADER_LEN + ipv6::HEADER_LEN)
                    .expect("encapsulated frame parses")
                    .expect("encapsulated frame carries a trace");
                let at = loc.trace() + 2;
                Reset::TraceHeader {
                    at,
                    orig: [pristine[at], pristine[at + 1]],
                }
            }
            Role::Encap | Role::Decap => Reset::Prefix {
                prefix: overwritten_prefix(role, &pristine),
            },
        };
        RoleBench {
            role,
            pipeline: pipeline(role),
            batch: (0..BATCH).map(|_| packet(&pristine)).collect(),
            sink: CountingSink::default(),
            pristine,
            reset,
        }
    }

    /// Put every packet of the batch back to the input bytes, verdict pending (`process` skips
    /// packets that already have a verdict).
    #[inline]
    pub fn reset(&mut self) {
        for p in &mut self.batch {
            p.verdict = Verdict::Pending;
        }
        match self.reset {
            Reset::Nothing => {}
            Reset::TraceHeader { at, orig } => {
                for p in &mut self.batch {
                    p.frame.bytes_mut()[at..at + 2].copy_from_slice(&orig);
                }
            }
            Reset::Prefix { prefix } => {
                let len = self.pristine.len();
                for p in &mut self.batch {
                    let buf = std::mem::replace(&mut p.frame, Frame::new(Vec::new(), 0, 0));
                    let mut f = Frame::new(buf.into_buf(), HEADROOM, len);
                    f.bytes_mut()[..prefix].copy_from_slice(&self.pristine[..prefix]);
                    p.frame = f;
                }
            }
        }
    }

    /// One `process` call over the batch.
    #[inline]
    pub fn process(&mut self) {
        self.pipeline
            .process(NOW_NS, &mut self.batch, &mut self.sink);
    }
}

/// How many leading octets of `input` a node in `role` overwrites inside the input's own span of
/// the buffer (what it writes into the headroom it writes whole every time).
fn overwritten_prefix(role: Role, input: &[u8]) -> usize {
    let mut batch = vec![packet(input)];
    pipeline(role).process(NOW_NS, &mut batch, &mut CountingSink::default());
    let buf = batch.pop().expect("one packet").frame.into_buf();
    let span = &buf[HEADROOM..HEADROOM + input.len()];
    span.iter()
        .zip(input)
        .rposition(|(a, b)| a != b)
        .map_or(0, |i| i + 1)
}

/// A sink that encodes every trace as `mtnode replay` does for `traces.jsonl`, into nothing: the
/// JSON cost without the file.
#[derive(Debug, Default)]
pub struct JsonSink {
    pub traces: u64,
}

impl Sink for JsonSink {
    fn trace(&mut self, e: &TraceEvent<'_>) {
        let v = mtnode_control::trace_json::trace(&e.trace, e.timestamp_format);
        serde_json::to_writer(std::io::sink(), &v).expect("writing to io::sink");
        self.traces += 1;
    }
}

/// `mtnode replay`'s loop (control/src/replay.rs) with the capture already in memory and the
/// output pcaps replaced by a count: frames are copied into buffers from a [`BufPool`], grouped
/// into batches by the same rule (at most [`REPLAY_BATCH`], arrivals within
/// [`BATCH_WINDOW_NS`] of the batch's first), processed by `process_replicating` with the batch's
/// last arrival as `now` and replica buffers from the pool, and their buffers returned. Several
/// nodes make a chain on one core: each node's forwarded packets enter the next on its `in`
/// port; dropped ones keep their verdict, so the next node skips them.
#[derive(Debug)]
pub struct Replay<S: Sink> {
    pub nodes: Vec<Pipeline>,
    pub frames: Vec<Captured>,
    pool: BufPool,
    batch: Vec<Packet<Buf>>,
    pub sink: S,
    pub batches: u64,
    pub forwarded: u64,
    pub bytes_out: u64,
}

impl<S: Sink> Replay<S> {
    pub fn new(configs: Vec<NodeConfig>, frames: Vec<Captured>, sink: S) -> Self {
        // As replay sizes them: every packet may fan out to every port.
        let fanout = configs.iter().map(|c| c.ports.len()).max().unwrap_or(1);
        Replay {
            nodes: configs
                .into_iter()
                .map(|c| Pipeline::new(Arc::new(c)))
                .collect(),
            frames,
            pool: BufPool::new(2 * REPLAY_BATCH * fanout),
            batch: Vec::with_capacity(REPLAY_BATCH * fanout),
            sink,
            batches: 0,
            forwarded: 0,
            bytes_out: 0,
        }
    }

    /// Replay the whole capture once; returns the packets replayed.
    pub fn run(&mut self) -> usize {
        for i in 0..self.frames.len() {
            let c = &self.frames[i];
            if let Some(first) = self.batch.first() {
                if self.batch.len() == REPLAY_BATCH
                    || c.ts_ns.saturating_sub(first.rx_ns) > BATCH_WINDOW_NS
                {
                    self.flush();
                }
            }
            let c = &self.frames[i];
            let frame = self.pool.frame(&c.bytes).expect("pool and frame sizes");
            self.batch.push(Packet {
                frame,
                rx_port: 0,
                rx_ns: c.ts_ns,
                verdict: Verdict::Pending,
            });
        }
        self.flush();
        self.frames.len()
    }

    fn flush(&mut self) {
        let Some(last) = self.batch.last() else {
            return;
        };
        let now = last.rx_ns;
        let Replay {
            nodes,
            pool,
            batch,
            sink,
            ..
        } = self;
        for (k, node) in nodes.iter_mut().enumerate() {
            if k > 0 {
                for p in batch.iter_mut() {
                    if let Verdict::Forward(_) = p.verdict {
                        p.verdict = Verdict::Pending;
                        p.rx_port = 0;
                    }
                }
            }
            node.buffer_occupancy = pool.in_use() as u32;
            let mut take = || pool.take();
            node.process_replicating(now, batch, &mut take, sink);
        }
        self.batches += 1;
        for p in self.batch.drain(..) {
            if let Verdict::Forward(_) = p.verdict {
                self.forwarded += 1;
                self.bytes_out += p.frame.len() as u64;
            }
            self.pool.put(p.frame);
        }
    }
}

/// `mixed.pcap` as the first node of a chain starting with `first` receives it: as captured for
/// an encapsulating node, after the nodes ahead of it otherwise (so that a transit or
/// decapsulating node gets traffic carrying the traces it works on). Cycled to `times` copies
/// and re-timed to arrive `spacing_ns` apart: the fixture's own 1 ms spacing makes every
/// `mtnode replay` batch a single packet, a spacing under `BATCH_WINDOW_NS / 32` makes them 32.
pub fn mixed_for(first: Role, times: usize, spacing_ns: u64) -> Vec<Captured> {
    let ahead: &[Role] = match first {
        Role::Passthrough | Role::Encap => &[],
        Role::Transit => &[Role::Encap],
        Role::Decap => &[Role::Encap, Role::Transit],
    };
    let mut frames = fixture("mixed.pcap");
    let t0 = frames[0].ts_ns;
    for &r in ahead {
        for c in &mut frames {
            c.bytes = through(r, &c.bytes);
        }
    }
    let n = frames.len();
    frames
        .into_iter()
        .cycle()
        .take(n * times)
        .enumerate()
        .map(|(i, c)| Captured {
            ts_ns: t0 + i as u64 * spacing_ns,
            bytes: c.bytes,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cheap reset must leave every iteration doing the same work as a fresh frame would:
    /// same output bytes, same counters, no overflow.
    #[test]
    fn reset_repeats_the_same_work() {
        for role in Role::ALL {
            for len in FRAME_LENS {
                let mut b = RoleBench::new(role, len);
                let once = through(role, &b.pristine);
                for i in 0..50 {
                    b.reset();
                    // Transit's reset leaves the previous iteration's slot in place, which the
                    // next one rewrites whole: the output check below covers it.
                    if role != Role::Transit {
                        for p in &b.batch {
                            assert_eq!(p.frame.bytes(), &b.pristine[..], "{role:?} {len} in {i}");
                        }
                    }
                    b.process();
                    for p in &mut b.batch {
                        assert_eq!(p.frame.bytes(), &once[..], "{role:?} {len} output {i}");
                        assert_eq!(p.verdict, Verdict::Forward(1));
                        p.verdict = Verdict::Pending;
                    }
                }
                let c = b.pipeline.counters();
                let n = 50 * BATCH as u64;
                let counted = match role {
                    Role::Passthrough => c.passthrough,
                    Role::Encap => c.encap,
                    Role::Transit => c.transit,
                    Role::Decap => c.decap,
                };
                assert_eq!(counted, n, "{role:?} {len}");
                assert_eq!(c.overflow, 0);
                if role == Role::Decap {
                    assert_eq!(b.sink.traces, n);
                    assert_eq!(b.batch[0].frame.bytes(), &plain_frame(len)[..]);
                }
            }
        }
    }

    #[test]
    fn encapsulated_sizes() {
        for len in FRAME_LENS {
            // 8 hops × 20 octets + 8 header + 4 option prefix + 2 PadN + 2 Hop-by-Hop header.
            assert_eq!(input_frame(Role::Transit, len).len(), len + 176);
        }
    }

    #[test]
    fn configs_match_the_fixture_tomls() {
        for role in [Role::Encap, Role::Transit, Role::Decap] {
            let path = fixture_path(&format!("configs/{}.toml", role.name()));
            let loaded = mtnode_control::config::load(&path).unwrap();
            assert_eq!(node_config(role), loaded, "{}", path.display());
        }
    }

    #[test]
    fn replay_batches_and_forwards_everything() {
        for roles in [
            &[Role::Encap][..],
            &[Role::Transit],
            &[Role::Decap],
            &[Role::Encap, Role::Transit, Role::Decap],
        ] {
            let configs = roles.iter().map(|&r| node_config(r)).collect();
            let mut r = Replay::new(
                configs,
                mixed_for(roles[0], 2, 1_000_000),
                CountingSink::default(),
            );
            assert_eq!(r.run(), 90);
            assert_eq!((r.batches, r.forwarded), (90, 90), "{roles:?}, 1 ms apart");
            let configs = roles.iter().map(|&r| node_config(r)).collect();
            let mut r = Replay::new(configs, mixed_for(roles[0], 32, 100), JsonSink::default());
            assert_eq!(r.run(), 1440);
            assert_eq!(
                (r.batches, r.forwarded),
                (45, 1440),
                "{roles:?}, 100 ns apart"
            );
            let c = r.nodes[0].counters();
            assert!(c.encap + c.transit + c.decap > 0, "{roles:?}: no IOAM work");
            if roles.contains(&Role::Decap) {
                assert!(r.sink.traces > 0);
            }
        }
    }
}
