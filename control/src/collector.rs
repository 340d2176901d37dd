//! The IPFIX collector of `mtnode collect`, and the multicast tree rebuilt from postcards.
//!
//! [`Collector`] learns templates from the wire, per (exporter address, observation domain,
//! template ID) as RFC 7011 §8 scopes them, decodes data records by the learned template
//! whatever its field order, and keeps the postcards. It assumes nothing about the template
//! beyond the Information Elements it recognises (docs/ipfix.md); records of templates without
//! a postcardKind field are counted as foreign and dropped.
//!
//! [`rebuild`] is the tree logic, a pure function over decoded postcards, so the lab and tests
//! call it without sockets. Correlation is by packet digest (a hash over fields no node
//! changes), never by arrival order.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mtnode_dataplane::export::{Postcard, PostcardKind, MAX_POSTCARD_DATA};
use mtnode_dataplane::ioam::Hops;
use mtnode_dataplane::wire::ioam::{node_len_for, TRACE_HEADER_LEN};
use mtnode_dataplane::wire::IoamTrace;
use serde::Serialize;

use crate::ipfix::{
    self, DecodeError, Decoded, ExporterStatsRecord, MessageHeader, PostcardDecoder, Sets,
    TemplateRecord, MIN_DATA_SET_ID, OPTIONS_TEMPLATE_SET_ID, TEMPLATE_SET_ID,
};

/// A template's scope: the exporter's address, the observation domain, the template ID.
pub type TemplateKey = (SocketAddr, u32, u16);

#[derive(Debug, Clone)]
struct Learned {
    record: TemplateRecord,
    options: bool,
    /// None when a known field has an impossible length: its records are skipped, not misread.
    decoder: Option<PostcardDecoder>,
    min_len: usize,
}

/// What the collector counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CollectorStats {
    pub messages: u64,
    /// Messages (or their rest) given up on: bad header, set length or template.
    pub malformed: u64,
    /// Data records decoded (postcards, foreign and options records).
    pub records: u64,
    pub postcards: u64,
    /// Records of templates that carry no postcard (no postcardKind under our PEN).
    pub foreign_records: u64,
    /// Data sets whose template was not (yet) learned, dropped whole.
    pub sets_without_template: u64,
    pub templates_learned: u64,
    pub template_withdrawals: u64,
    /// Messages whose sequence number was not the one expected from the previous message.
    pub sequence_gaps: u64,
    /// Data records the sequence numbers say never arrived.
    pub missing_records: u64,
}

/// One learned template, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LearnedTemplate {
    pub exporter: String,
    pub observation_domain_id: u32,
    pub template_id: u16,
    pub options: bool,
    /// `id/len` or `pen:id/len` (`var` for variable length), in template order.
    pub fields: Vec<String>,
}

/// An IPFIX collecting process for postcards.
#[derive(Debug)]
pub struct Collector {
    pen: u32,
    templates: HashMap<TemplateKey, Learned>,
    postcards: Vec<Postcard>,
    /// Next expected sequence number per (exporter, observation domain).
    sequences: HashMap<(SocketAddr, u32), u32>,
    exporters: BTreeMap<(SocketAddr, u32), ExporterStatsRecord>,
    stats: CollectorStats,
}

impl Collector {
    /// A collector that recognises mtnode's enterprise elements under `enterprise_number`.
    pub fn new(enterprise_number: u32) -> Self {
        Collector {
            pen: enterprise_number,
            templates: HashMap::new(),
            postcards: Vec::new(),
            sequences: HashMap::new(),
            exporters: BTreeMap::new(),
            stats: CollectorStats::default(),
        }
    }

    pub fn stats(&self) -> CollectorStats {
        self.stats
    }

    pub fn postcards(&self) -> &[Postcard] {
        &self.postcards
    }

    /// The exporters' own reliability statistics (options template records), last seen.
    pub fn exporter_stats(&self) -> Vec<(SocketAddr, ExporterStatsRecord)> {
        self.exporters.iter().map(|(k, v)| (k.0, *v)).collect()
    }

    /// The templates learned so far, sorted by scope.
    pub fn templates(&self) -> Vec<LearnedTemplate> {
        let mut keys: Vec<&TemplateKey> = self.templates.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|k| {
                let l = &self.templates[k];
                LearnedTemplate {
                    exporter: k.0.to_string(),
                    observation_domain_id: k.1,
                    template_id: k.2,
                    options: l.options,
                    fields: l.record.fields.iter().map(|f| f.to_string()).collect(),
                }
            })
            .collect()
    }

    /// The tree the postcards so far describe.
    pub fn tree(&self) -> Tree {
        rebuild(&self.postcards)
    }

    /// Decode one datagram from `source`; returns the postcards it carried. Sets before a
    /// malformed one are kept.
    pub fn ingest(&mut self, source: SocketAddr, datagram: &[u8]) -> Result<usize, DecodeError> {
        self.stats.messages += 1;
        let h = match MessageHeader::parse(datagram) {
            Ok(h) => h,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        let msg = &datagram[..h.length as usize];
        let domain = h.observation_domain_id;
        let before = self.postcards.len();
        let unknown_before = self.stats.sets_without_template;
        let mut records = 0u32;
        let mut result = Ok(());
        for set in Sets::new(msg) {
            let (id, body) = match set {
                Ok(s) => s,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let r = match id {
                TEMPLATE_SET_ID | OPTIONS_TEMPLATE_SET_ID => {
                    self.learn(source, domain, body, id == OPTIONS_TEMPLATE_SET_ID)
                }
                _ => {
                    debug_assert!(id >= MIN_DATA_SET_ID);
                    self.data_set(source, domain, id, body, &mut records)
                }
            };
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }
        if self.stats.sets_without_template > unknown_before {
            // Records of unknown templates cannot be counted: resynchronise on the next message
            // rather than report a gap that is not there.
            self.sequences.remove(&(source, domain));
        } else {
            self.check_sequence(source, domain, h.sequence, records);
        }
        match result {
            Ok(()) => Ok(self.postcards.len() - before),
            Err(e) => {
                self.stats.malformed += 1;
                Err(e)
            }
        }
    }

    fn check_sequence(&mut self, source: SocketAddr, domain: u32, seq: u32, records: u32) {
        let next = self
            .sequences
            .insert((source, domain), seq.wrapping_add(records));
        if let Some(expected) = next {
            if expected != seq {
                self.stats.sequence_gaps += 1;
                let ahead = seq.wrapping_sub(expected);
                // Far "ahead" is a restart or reordering, not loss.
                if ahead < 1 << 31 {
                    self.stats.missing_records += ahead as u64;
                }
            }
        }
    }

    fn learn(
        &mut self,
        source: SocketAddr,
        domain: u32,
        body: &[u8],
        options: bool,
    ) -> Result<(), DecodeError> {
        for record in ipfix::parse_template_set(body, options)? {
            let key = (source, domain, record.template_id);
            if record.fields.is_empty() {
                self.templates.remove(&key);
                self.stats.template_withdrawals += 1;
                continue;
            }
            let decoder = if options {
                None
            } else {
                PostcardDecoder::new(&record, self.pen).ok()
            };
            let min_len = ipfix::min_record_len(&record);
            let fresh = self.templates.insert(
                key,
                Learned {
                    record,
                    options,
                    decoder,
                    min_len,
                },
            );
            if fresh.is_none() {
                self.stats.templates_learned += 1;
            }
        }
        Ok(())
    }

    fn data_set(
        &mut self,
        source: SocketAddr,
        domain: u32,
        id: u16,
        body: &[u8],
        records: &mut u32,
    ) -> Result<(), DecodeError> {
        let Some(t) = self.templates.get(&(source, domain, id)) else {
            self.stats.sets_without_template += 1;
            return Ok(());
        };
        // A template of zero-length fields would never advance.
        if t.min_len == 0 {
            return Ok(());
        }
        let mut at = 0;
        while body.len() - at >= t.min_len {
            let rest = &body[at..];
            if t.options {
                match ipfix::decode_stats(&t.record, rest) {
                    Some((s, used)) => {
                        self.exporters.insert((source, domain), s);
                        at += used;
                    }
                    None => {
                        // Not the statistics we know: step over the record all the same.
                        at += skip_record(&t.record, rest).ok_or(DecodeError::RecordOverrun)?;
                    }
                }
            } else if let Some(d) = &t.decoder {
                let (decoded, used) = d.decode(rest)?;
                at += used;
                match decoded {
                    Decoded::Postcard(p) => {
                        self.postcards.push(p);
                        self.stats.postcards += 1;
                    }
                    Decoded::Foreign => self.stats.foreign_records += 1,
                }
            } else {
                at += skip_record(&t.record, rest).ok_or(DecodeError::RecordOverrun)?;
                self.stats.foreign_records += 1;
            }
            *records += 1;
            self.stats.records += 1;
        }
        Ok(())
    }

    /// A UDP socket for collecting on `listen`, with a receive buffer large enough for an
    /// exporter's bursts (8 MiB asked; the kernel caps it at net.core.rmem_max). IPFIX over UDP
    /// has no flow control: what overflows the buffer is lost, and shows as sequence gaps.
    pub fn bind(listen: SocketAddr) -> io::Result<UdpSocket> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(listen),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: a smaller buffer still works.
        let _ = s.set_recv_buffer_size(RECV_BUFFER);
        s.bind(&listen.into())?;
        Ok(s.into())
    }

    /// Receive on `socket` until `count` postcards in all (if given) or until `deadline`.
    /// Datagrams that do not decode are counted and skipped.
    pub fn run(
        &mut self,
        socket: &UdpSocket,
        count: Option<usize>,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            if count.is_some_and(|n| self.postcards.len() >= n) {
                return Ok(());
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(());
                    }
                    left.min(Duration::from_millis(200))
                }
                None => Duration::from_millis(200),
            };
            socket.set_read_timeout(Some(wait))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let _ = self.ingest(from, &buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Everything `mtnode collect` prints.
    pub fn report(&self) -> CollectReport {
        let tree = self.tree();
        CollectReport {
            postcards: self.postcards.len(),
            postcard_bytes: self
                .postcards
                .iter()
                .map(|p| ipfix::record_len(p) as u64)
                .sum(),
            messages: self.stats.messages,
            templates: self.templates(),
            nodes: tree.nodes,
            edges: tree.edges,
            packets: tree.packets,
            unusable_postcards: tree.unusable_postcards,
            stats: self.stats,
            exporters: self
                .exporter_stats()
                .into_iter()
                .map(|(a, s)| ExporterReport {
                    exporter: a.to_string(),
                    observation_domain_id: s.observation_domain_id,
                    messages: s.messages,
                    records: s.records,
                    not_sent: s.not_sent,
                })
                .collect(),
        }
    }
}

/// The receive buffer [`Collector::bind`] asks for.
const RECV_BUFFER: usize = 8 << 20;

/// The octets of one record of `t` at the start of `rec`, if it fits.
fn skip_record(t: &TemplateRecord, rec: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    for f in &t.fields {
        let len = if f.len == ipfix::VARLEN {
            let first = *rec.get(at)? as usize;
            at += 1;
            if first == 255 {
                let l = rec.get(at..at + 2)?;
                at += 2;
                u16::from_be_bytes([l[0], l[1]]) as usize
            } else {
                first
            }
        } else {
            f.len as usize
        };
        at += len;
    }
    (at <= rec.len()).then_some(at)
}

/// An exporter's view of itself, from its options records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExporterReport {
    pub exporter: String,
    pub observation_domain_id: u32,
    pub messages: u64,
    pub records: u64,
    pub not_sent: u64,
}

/// `mtnode collect --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectReport {
    pub postcards: usize,
    /// The postcards' data records, octets (what `mtnode lab` counts as postcard bytes).
    pub postcard_bytes: u64,
    pub messages: u64,
    pub templates: Vec<LearnedTemplate>,
    pub nodes: Vec<TreeNode>,
    pub edges: Vec<Edge>,
    /// Distinct packets (digests) among the postcards.
    pub packets: usize,
    pub unusable_postcards: usize,
    pub stats: CollectorStats,
    pub exporters: Vec<ExporterReport>,
}

/// A multicast tree as the postcards describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Tree {
    /// Every node seen, by node ID.
    pub nodes: Vec<TreeNode>,
    /// Parent → child edges, sorted by (parent, child).
    pub edges: Vec<Edge>,
    /// Distinct packets (digests).
    pub packets: usize,
    /// Postcards whose data could not be walked (no node ID in the trace type, data not in
    /// whole entries).
    pub unusable_postcards: usize,
}

impl Tree {
    /// The edges as `[parent, child]` pairs, the form `mtnode lab --json` compares.
    pub fn edge_pairs(&self) -> Vec<[u32; 2]> {
        self.edges.iter().map(|e| [e.parent, e.child]).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TreeNode {
    pub node_id: u32,
    /// Distinct packets this node was seen to handle.
    pub packets: u64,
}

/// One parent → child edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub parent: u32,
    pub child: u32,
    /// The branch the edge leaves the parent on: the parent's egress interface ID where the
    /// parent's entry starts a section (its per-branch entry), or the received branch index of
    /// a hop postcard; 0 for an edge inside a section.
    pub branch_index: u16,
    /// Child timestamp minus parent timestamp, µs; None when the trace type has no timestamps.
    pub delay_us_p50: Option<f64>,
    pub delay_us_p99: Option<f64>,
    /// 1 − (packets seen at the child) / (packets seen at the parent), over the packets of the
    /// destinations seen on this edge.
    pub loss: f64,
    /// Packets seen crossing the edge.
    pub packets: u64,
}

/// One node's entry in a postcard, in the terms the tree needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    node_id: u32,
    egress_if: u32,
    /// PTP receive timestamp, ns; None when absent or all-ones.
    ts_ns: Option<u64>,
}

/// The entries of a postcard's IOAM data, newest first as on the wire. None when the data is not
/// whole entries or the trace type carries no node ID.
fn entries(p: &Postcard) -> Option<Vec<Entry>> {
    let data = p.data();
    if data.is_empty() || data.len() % 4 != 0 {
        return None;
    }
    let mut buf = [0u8; TRACE_HEADER_LEN + MAX_POSTCARD_DATA];
    buf[0..2].copy_from_slice(&p.namespace_id.to_be_bytes());
    buf[2] = node_len_for(p.trace_type) << 3;
    buf[3] = 0; // RemainingLen 0: every octet of data is written entries.
    buf[4..8].copy_from_slice(&(p.trace_type << 8).to_be_bytes());
    buf[TRACE_HEADER_LEN..TRACE_HEADER_LEN + data.len()].copy_from_slice(data);
    let trace = IoamTrace::new_checked(&buf[..TRACE_HEADER_LEN + data.len()]).ok()?;
    let mut hops = Hops::new(trace);
    let mut out = Vec::new();
    for h in hops.by_ref() {
        let node_id = h.node_id.or(h.node_id_wide.map(|w| w as u32))?;
        let egress_if = h.egress_if.map(u32::from).or(h.egress_if_wide).unwrap_or(0);
        let ts_ns = match (h.timestamp_secs, h.timestamp_frac) {
            (Some(s), Some(f)) if s != u32::MAX && f != u32::MAX => {
                Some(s as u64 * 1_000_000_000 + f as u64)
            }
            _ => None,
        };
        out.push(Entry {
            node_id,
            egress_if,
            ts_ns,
        });
    }
    if hops.truncated || out.is_empty() {
        return None;
    }
    Some(out)
}

#[derive(Debug, Default)]
struct EdgeAcc {
    branch_index: Option<u16>,
    delays_us: Vec<f64>,
    dsts: HashSet<[u8; 16]>,
    digests: HashSet<u64>,
}

#[derive(Debug, Default)]
struct Walk {
    /// node → destination → digests seen there.
    seen: HashMap<u32, HashMap<[u8; 16], HashSet<u64>>>,
    edges: BTreeMap<(u32, u32), EdgeAcc>,
}

impl Walk {
    fn see(&mut self, node: u32, p: &Postcard) {
        self.seen
            .entry(node)
            .or_default()
            .entry(p.dst_addr)
            .or_default()
            .insert(p.digest);
    }

    fn edge(&mut self, parent: &Entry, child: &Entry, branch: Option<u16>, p: &Postcard) {
        let e = self
            .edges
            .entry((parent.node_id, child.node_id))
            .or_default();
        if e.branch_index.is_none() {
            e.branch_index = branch;
        }
        if let (Some(a), Some(b)) = (parent.ts_ns, child.ts_ns) {
            e.delays_us.push((b as i64 - a as i64) as f64 / 1000.0);
        }
        e.dsts.insert(p.dst_addr);
        e.digests.insert(p.digest);
    }
}

/// Rebuild the tree from postcards, in any order and from any mix of nodes.
///
/// Section and EndSection postcards carry trace entries newest first; in path order the first
/// entry is the upstream branch node's per-branch entry and the last the exporter's own. Each
/// pair of consecutive entries is an edge, and takes the parent entry's egress interface ID as
/// its branch index: mtnode records every entry per copy, so the egress names the branch taken
/// (a node that cannot fill it writes all ones, which counts as 0). A whole trace (trace mode)
/// is walked the same way.
///
/// Hop postcards (DEX) are grouped by packet and received branch ID, ordered by decreasing hop
/// limit; the group's first node hangs off the branch node with the received branch index.
pub fn rebuild(postcards: &[Postcard]) -> Tree {
    // Per-hop postcards of one packet share its DEX (Flow ID, Sequence Number) (DESIGN.md); the
    // digest of invariant fields is for the others. Two packets may share a digest (it sees
    // only the start of the upper layer), never a sequence number within a flow.
    let keyed: Vec<Postcard> = postcards
        .iter()
        .map(|p| {
            let mut p = *p;
            if p.kind == PostcardKind::Hop && p.flow_id != 0 {
                p.digest = mtnode_dataplane::export::digest(&[
                    b"dex",
                    &p.flow_id.to_be_bytes(),
                    &p.sequence.to_be_bytes(),
                ]);
            }
            p
        })
        .collect();
    let postcards = &keyed[..];
    let mut w = Walk::default();
    let mut unusable = 0;
    let mut digests = HashSet::new();
    // (digest, branch node, branch index) → (hop limit, entry), for hop postcards.
    let mut hop_groups: BTreeMap<(u64, u32, u16), Vec<(u8, Entry)>> = BTreeMap::new();
    let mut hop_at: HashMap<(u64, u32), Entry> = HashMap::new();
    let mut hop_postcard: HashMap<u64, Postcard> = HashMap::new();

    for p in postcards {
        digests.insert(p.digest);
        match p.kind {
            PostcardKind::Section | PostcardKind::EndSection => {
                let Some(mut path) = entries(p) else {
                    unusable += 1;
                    continue;
                };
                path.reverse();
                for e in &path {
                    w.see(e.node_id, p);
                }
                for pair in path.windows(2) {
                    let egress = pair[0].egress_if as u16;
                    w.edge(
                        &pair[0],
                        &pair[1],
                        Some(if egress == u16::MAX { 0 } else { egress }),
                        p,
                    );
                }
            }
            PostcardKind::Hop => {
                let own = entries(p).and_then(|v| v.into_iter().next());
                let e = own.unwrap_or(Entry {
                    node_id: p.node_id,
                    egress_if: p.egress_if,
                    ts_ns: None,
                });
                let e = Entry {
                    node_id: p.node_id,
                    ..e
                };
                w.see(e.node_id, p);
                hop_at.insert((p.digest, e.node_id), e);
                hop_postcard.entry(p.digest).or_insert(*p);
                hop_groups
                    .entry((p.digest, p.branch.node_id, p.branch.index))
                    .or_default()
                    .push((p.hop_limit, e));
            }
        }
    }

    for ((digest, branch_node, branch_index), mut group) in hop_groups {
        // The node that stamped a branch ID also reports it (draft Figure 1: A's postcard says
        // [A,0]); it is the parent of the group, not a member.
        group.retain(|(_, e)| e.node_id != branch_node);
        if group.is_empty() {
            continue;
        }
        group.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.ts_ns.cmp(&b.1.ts_ns)));
        let p = hop_postcard[&digest];
        if branch_node != 0 {
            let parent = hop_at
                .get(&(digest, branch_node))
                .copied()
                .unwrap_or(Entry {
                    node_id: branch_node,
                    egress_if: 0,
                    ts_ns: None,
                });
            w.edge(&parent, &group[0].1, Some(branch_index), &p);
        }
        for pair in group.windows(2) {
            w.edge(&pair[0].1, &pair[1].1, None, &p);
        }
    }

    let empty = HashMap::new();
    let edges = w
        .edges
        .iter_mut()
        .map(|(&(parent, child), acc)| {
            let at_parent = w.seen.get(&parent).unwrap_or(&empty);
            let at_child = w.seen.get(&child).unwrap_or(&empty);
            let (mut upstream, mut both) = (0u64, 0u64);
            for dst in &acc.dsts {
                let Some(up) = at_parent.get(dst) else {
                    continue;
                };
                upstream += up.len() as u64;
                if let Some(down) = at_child.get(dst) {
                    both += up.intersection(down).count() as u64;
                }
            }
            acc.delays_us.sort_by(f64::total_cmp);
            Edge {
                parent,
                child,
                branch_index: acc.branch_index.unwrap_or(0),
                delay_us_p50: percentile(&acc.delays_us, 0.50),
                delay_us_p99: percentile(&acc.delays_us, 0.99),
                loss: if upstream == 0 {
                    0.0
                } else {
                    1.0 - both as f64 / upstream as f64
                },
                packets: acc.digests.len() as u64,
            }
        })
        .collect();
    let mut nodes: Vec<TreeNode> = w
        .seen
        .iter()
        .map(|(&node_id, by_dst)| TreeNode {
            node_id,
            packets: by_dst.values().map(|d| d.len() as u64).sum(),
        })
        .collect();
    nodes.sort_by_key(|n| n.node_id);
    Tree {
        nodes,
        edges,
        packets: digests.len(),
        unusable_postcards: unusable,
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The report as a table, for people.
pub fn render(r: &CollectReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} postcards in {} messages, {} packets, {} templates learned; {} malformed, {} sequence gaps ({} records missing)",
        r.postcards,
        r.messages,
        r.packets,
        r.templates.len(),
        r.stats.malformed,
        r.stats.sequence_gaps,
        r.stats.missing_records
    );
    let _ = writeln!(s, "nodes: {}", {
        let v: Vec<String> = r
            .nodes
            .iter()
            .map(|n| format!("{} ({} pkts)", n.node_id, n.packets))
            .collect();
        v.join(", ")
    });
    let _ = writeln!(
        s,
        "{:>10} {:>10} {:>7} {:>12} {:>12} {:>8} {:>8}",
        "parent", "child", "branch", "p50 µs", "p99 µs", "loss", "packets"
    );
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for e in &r.edges {
        let _ = writeln!(
            s,
            "{:>10} {:>10} {:>7} {:>12} {:>12} {:>7.2}% {:>8}",
            e.parent,
            e.child,
            e.branch_index,
            us(e.delay_us_p50),
            us(e.delay_us_p99),
            e.loss * 100.0,
            e.packets
        );
    }
    s
}

/// The tree in Graphviz's dot language.
pub fn to_dot(tree: &Tree) -> String {
    let mut s = String::from("digraph mtnode {\n  rankdir=LR;\n  node [shape=box];\n");
    for n in &tree.nodes {
        let _ = writeln!(
            s,
            "  n{0} [label=\"node {0}\\n{1} pkts\"];",
            n.node_id, n.packets
        );
    }
    for e in &tree.edges {
        let delay = e
            .delay_us_p50
            .map_or(String::new(), |d| format!("\\np50 {d:.1} µs"));
        let _ = writeln!(
            s,
            "  n{} -> n{} [label=\"branch {}{}\\nloss {:.2}%\"];",
            e.parent,
            e.child,
            e.branch_index,
            delay,
            e.loss * 100.0
        );
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trace type with bits 0-3: hop limit + node ID, interface IDs, timestamp s and ns.
    const TT: u32 = 0xf0_0000;

    /// Entry words for (node, ingress, egress, rx time ns).
    fn entry(node: u32, iif: u16, eif: u16, ns: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&(64u32 << 24 | node).to_be_bytes());
        b[4..8].copy_from_slice(&((iif as u32) << 16 | eif as u32).to_be_bytes());
        b[8..12].copy_from_slice(&((ns / 1_000_000_000) as u32).to_be_bytes());
        b[12..16].copy_from_slice(&((ns % 1_000_000_000) as u32).to_be_bytes());
        b
    }

    /// A section postcard whose path (oldest first) is `path`.
    fn section(kind: PostcardKind, digest: u64, path: &[(u32, u16, u64)]) -> Postcard {
        let mut p = Postcard::new(kind);
        p.trace_type = TT;
        p.digest = digest;
        p.dst_addr[0] = 0xff;
        p.node_id = path.last().unwrap().0;
        let mut data = Vec::new();
        for &(node, eif, ns) in path.iter().rev() {
            data.extend_from_slice(&entry(node, 1, eif, ns));
        }
        p.set_data(&data);
        p
    }

    #[test]
    fn sections_rebuild_edges_branches_delay_and_loss() {
        // 1 → 2 (branch node); 2 branches to 3 on if 1 and to 4 on if 2; 4 → 5.
        let t = 1_790_000_000_000_000_000u64;
        let mut ps = Vec::new();
        for d in 0..100u64 {
            let t = t + d * 1_000_000;
            ps.push(section(
                PostcardKind::Section,
                d,
                &[(1, 7, t), (2, 0, t + 10_000)],
            ));
            ps.push(section(
                PostcardKind::EndSection,
                d,
                &[(2, 1, t + 11_000), (3, 0, t + 31_000)],
            ));
            // Every tenth packet is lost between 2 and 4.
            if d % 10 != 0 {
                ps.push(section(
                    PostcardKind::EndSection,
                    d,
                    &[
                        (2, 2, t + 11_000),
                        (4, 0, t + 15_000 + d * 10),
                        (5, 0, t + 20_000 + d * 10),
                    ],
                ));
            }
        }
        let tree = rebuild(&ps);
        assert_eq!(tree.edge_pairs(), vec![[1, 2], [2, 3], [2, 4], [4, 5]]);
        assert_eq!(tree.packets, 100);
        let e = |p, c| {
            tree.edges
                .iter()
                .find(|e| e.parent == p && e.child == c)
                .unwrap()
        };
        assert_eq!(e(1, 2).branch_index, 7);
        assert_eq!(e(2, 3).branch_index, 1);
        assert_eq!(e(2, 4).branch_index, 2);
        assert_eq!(e(4, 5).branch_index, 0);
        assert_eq!(e(1, 2).delay_us_p50, Some(10.0));
        assert_eq!(e(2, 3).delay_us_p99, Some(20.0));
        // 2 → 4: 4 µs + d·10 ns over d = 1..99 without multiples of 10.
        let p99 = e(2, 4).delay_us_p99.unwrap();
        assert!((4.9..=5.0).contains(&p99), "{p99}");
        assert_eq!(e(2, 3).loss, 0.0);
        assert!((e(2, 4).loss - 0.1).abs() < 1e-9, "{}", e(2, 4).loss);
        assert_eq!(e(4, 5).loss, 0.0);
        assert_eq!(e(2, 4).packets, 90);
        let n2 = tree.nodes.iter().find(|n| n.node_id == 2).unwrap();
        assert_eq!(n2.packets, 100);
    }

    #[test]
    fn loss_counts_only_the_edges_destinations() {
        // Node 2 also forwards another group that never goes to 3: no loss on 2 → 3.
        let mut ps = vec![section(
            PostcardKind::EndSection,
            1,
            &[(2, 1, 0), (3, 0, 5)],
        )];
        let mut other = section(PostcardKind::EndSection, 2, &[(2, 2, 0), (4, 0, 5)]);
        other.dst_addr[1] = 1;
        ps.push(other);
        let tree = rebuild(&ps);
        assert!(tree.edges.iter().all(|e| e.loss == 0.0));
    }

    #[test]
    fn unusable_data_is_counted_not_misread() {
        let mut p = section(PostcardKind::Section, 1, &[(1, 0, 0), (2, 0, 0)]);
        p.data_len = 18; // not whole words
        let mut q = p;
        q.data_len = 32;
        q.trace_type = 0x30_0000; // timestamps only: no node ID
        let tree = rebuild(&[p, q]);
        assert_eq!(tree.unusable_postcards, 2);
        assert!(tree.edges.is_empty());
    }

    #[test]
    fn hop_postcards_hang_off_their_branch_node() {
        let hop = |node: u32, hl: u8, branch: (u32, u16), ns: u64| {
            let mut p = Postcard::new(PostcardKind::Hop);
            p.trace_type = TT;
            p.node_id = node;
            p.hop_limit = hl;
            p.digest = 42;
            p.branch.node_id = branch.0;
            p.branch.index = branch.1;
            p.set_data(&entry(node, 1, 1, ns));
            p
        };
        let ps = [
            hop(12, 61, (10, 3), 3_000),
            hop(10, 63, (0, 0), 1_000),
            hop(11, 62, (10, 3), 2_000),
            hop(13, 62, (10, 4), 2_500),
        ];
        let tree = rebuild(&ps);
        assert_eq!(tree.edge_pairs(), vec![[10, 11], [10, 13], [11, 12]]);
        let e = &tree.edges;
        assert_eq!(
            (e[0].branch_index, e[1].branch_index, e[2].branch_index),
            (3, 4, 0)
        );
        assert_eq!(e[0].delay_us_p50, Some(1.0));
        assert_eq!(e[1].delay_us_p50, Some(1.5));
    }

    /// Two packets whose invariant fields digest alike (tests/netns_lab.rs met it: a generator
    /// whose sequence number lies past the digested octets) are still two packets: per-hop
    /// postcards go by their DEX Flow ID and Sequence Number, and no node follows itself.
    #[test]
    fn hop_postcards_of_packets_with_one_digest_stay_apart() {
        let hop = |node: u32, hl: u8, branch: u32, seq: u32, ns: u64| {
            let mut p = Postcard::new(PostcardKind::Hop);
            p.trace_type = TT;
            p.node_id = node;
            p.hop_limit = hl;
            p.digest = 42;
            p.flow_id = 1;
            p.sequence = seq;
            p.branch.node_id = branch;
            p.set_data(&entry(node, 1, 1, ns));
            p
        };
        let ps: Vec<Postcard> = [(0u32, 0u64), (1, 76_000_000)]
            .iter()
            .flat_map(|&(seq, t)| {
                [
                    hop(10, 63, 0, seq, t + 1_000),
                    hop(11, 62, 10, seq, t + 2_000),
                    hop(12, 61, 11, seq, t + 3_000),
                ]
            })
            .collect();
        let tree = rebuild(&ps);
        assert_eq!(tree.edge_pairs(), vec![[10, 11], [11, 12]]);
        assert_eq!(tree.packets, 2);
        assert!(tree
            .edges
            .iter()
            .all(|e| e.packets == 2 && e.delay_us_p50 == Some(1.0)));
    }

    #[test]
    fn dot_names_every_edge() {
        let ps = [section(
            PostcardKind::EndSection,
            1,
            &[(1, 5, 0), (2, 0, 1000)],
        )];
        let dot = to_dot(&rebuild(&ps));
        assert!(
            dot.contains("n1 -> n2 [label=\"branch 5\\np50 1.0 µs"),
            "{dot}"
        );
    }
}
