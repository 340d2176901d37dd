//! `mtnode lab`: in-process nodes joined by memory links, running a [`Topology`] (by default the
//! seed's Figure 5 tree) in trace and per-section mode. Every node is configured through the
//! same TOML validation as a file and runs the same pipeline as replay; its postcards go to an
//! in-process collector that rebuilds the tree, which the report sets beside the configured
//! one with per-edge delay and loss and the telemetry bytes each mode spent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use mtnode_dataplane::aqm::{Ecn, EgressQueue, QueueCounters};
use mtnode_dataplane::export::{Postcard, PostcardRing};
use mtnode_dataplane::io::mem::{InFlight, MemLink};
use mtnode_dataplane::io::{Buf, BufPool, MAX_FRAME};
use mtnode_dataplane::ioam::{patch_egress, EgressFacts, HopRecord};
use mtnode_dataplane::pipeline::{Packet, Pipeline, Sink, TraceEvent, Verdict};
use mtnode_dataplane::snapshot::{ConfigCell, ConfigReader};
use mtnode_dataplane::wire::{
    bier, ethernet, ipv6, BierRepr, EtherType, EthernetRepr, Ipv6Repr, UdpPacket, UdpRepr,
};
use serde_json::{json, Value};

use crate::api::{self, ApiServer, NodeStats};
use crate::topology::{Replication, Topology};
use crate::{collector, ipfix, trace_json};

/// The lab's SSM source and group.
pub const SOURCE_ADDR: &str = "2001:db8:1::10";
pub const GROUP_ADDR: &str = "ff3e::8000:1";
const SOURCE: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const GROUP: [u8; 16] = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0x01];
/// UDP payload octets per packet (a 1316-octet MPEG-TS-over-UDP payload, as video streams use).
const PAYLOAD: usize = 1316;
const BATCH: usize = 32;

/// What `mtnode lab` runs besides the topology.
#[derive(Debug, Clone, PartialEq)]
pub struct LabOptions {
    pub packets: u32,
    /// Source rate in Mb/s on the wire; `None` uses the topology's, `Some(0.0)` sends as fast
    /// as the nodes take them (tests).
    pub source_mbps: Option<f64>,
    /// Send ECT(0) packets, so an AQM marks instead of dropping.
    pub ecn: bool,
    /// Per-hop mode: switch every node to the next branch encoding (explicit → split → sum →
    /// …) after every this many packets, with a new configuration epoch, while traffic flows.
    pub switch_encoding_every: Option<u32>,
    /// Run on a simulated clock that advances 10 µs per round instead of the wall clock: the
    /// same code, but rates, shapers and AQMs behave the same on a loaded machine (tests).
    pub simulated_clock: bool,
}

/// The lab's time: the wall clock, or a simulated one that moves only when told to.
struct Clock {
    simulated: Option<u64>,
}

impl Clock {
    /// Simulated time starts at the wall clock's now, so timestamps still look like dates.
    fn new(simulated: bool) -> Self {
        Clock {
            simulated: simulated.then(now_ns),
        }
    }

    fn now(&self) -> u64 {
        self.simulated.unwrap_or_else(now_ns)
    }

    /// Let time pass: the simulated clock steps; the wall clock passes by itself, so only yield
    /// the core when there was nothing to do.
    fn tick(&mut self, idle: bool) {
        match self.simulated.as_mut() {
            Some(t) => *t += 10_000,
            None if idle => std::thread::sleep(std::time::Duration::from_micros(50)),
            None => {}
        }
    }
}

impl LabOptions {
    /// `packets` packets as fast as the nodes take them.
    pub fn fast(packets: u32) -> Self {
        LabOptions {
            packets,
            source_mbps: Some(0.0),
            ecn: false,
            switch_encoding_every: None,
            simulated_clock: false,
        }
    }
}

/// One lab node under the control API while the lab runs (`mtnode lab --api`).
#[derive(Debug)]
pub struct LabApi {
    /// Bound by the caller (a test binds port 0 and reads the address).
    pub listener: std::net::TcpListener,
    pub token: String,
    /// The node the API configures, by name.
    pub node: String,
    /// Set to stop the source early; the lab then drains and reports.
    pub stop: Arc<AtomicBool>,
}

/// The API's view of the controlled lab node: its config cell, and its counters as of the
/// lab's last round.
#[derive(Debug)]
struct LabHandle {
    cell: Arc<ConfigCell>,
    stats: Mutex<NodeStats>,
}

impl api::Node for LabHandle {
    fn config_cell(&self) -> &Arc<ConfigCell> {
        &self.cell
    }

    fn stats(&self) -> NodeStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The controlled node's side of a [`LabApi`] while the lab runs.
struct Controlled {
    node: usize,
    reader: ConfigReader,
    handle: Arc<LabHandle>,
    stop: Arc<AtomicBool>,
    _server: ApiServer,
}

/// A source packet: IPv6 UDP from the SSM source to the group, sequence number first; inside a
/// BIER header addressed to every BFER when the tree replicates by BIER.
fn source_packet(seq: u32, ecn: bool, bier_to: Option<(u8, &[usize])>, out: &mut Vec<u8>) {
    out.clear();
    let udp_len = 8 + PAYLOAD;
    let ip = Ipv6Repr {
        traffic_class: if ecn { Ecn::Ect0 as u8 } else { 0 },
        flow_label: 0,
        payload_len: udp_len as u16,
        next_header: ipv6::next_header::UDP,
        hop_limit: 64,
        src_addr: SOURCE,
        dst_addr: GROUP,
    };
    let bier_len = bier_to.map_or(0, |(bsl, _)| bier::HEADER_LEN + mcast_octets(bsl));
    let eth = EthernetRepr {
        src_addr: [2, 0, 0, 0, 0, 1],
        dst_addr: ethernet::ipv6_multicast_mac(&GROUP),
        vlan_tci: None,
        ethertype: if bier_to.is_some() {
            EtherType::Bier
        } else {
            EtherType::Ipv6
        },
    };
    out.resize(eth.buffer_len() + bier_len + ip.buffer_len() + udp_len, 0);
    eth.emit(out);
    if let Some((bsl, bits)) = bier_to {
        let mut bitstring = vec![0u8; mcast_octets(bsl)];
        for &k in bits {
            let byte = bitstring.len() - 1 - (k - 1) / 8;
            bitstring[byte] |= 1 << ((k - 1) % 8);
        }
        BierRepr {
            bift_id: 1,
            tc: 0,
            s: true,
            ttl: 64,
            version: 0,
            bsl,
            entropy: seq & 0xf_ffff,
            oam: 0,
            dscp: 0,
            proto: bier::proto::IPV6,
            bfir_id: 1,
            bitstring: &bitstring,
        }
        .emit(&mut out[eth.buffer_len()..]);
    }
    let l3 = eth.buffer_len() + bier_len;
    ip.emit(&mut out[l3..]);
    let l4 = l3 + ipv6::HEADER_LEN;
    UdpRepr {
        src_port: 5000,
        dst_port: 5001,
        payload_len: PAYLOAD as u16,
    }
    .emit(&mut out[l4..]);
    out[l4 + 8..l4 + 12].copy_from_slice(&seq.to_be_bytes());
    UdpPacket::new_unchecked(&mut out[l4..]).fill_checksum_ipv6(&SOURCE, &GROUP);
}

fn mcast_octets(bsl: u8) -> usize {
    bier::bitstring_len(bsl).unwrap_or(8)
}

/// Keeps the last decapsulated trace, for the report.
#[derive(Default)]
struct LastTrace {
    last: Option<Value>,
    traces: u64,
}

impl Sink for LastTrace {
    fn trace(&mut self, e: &TraceEvent<'_>) {
        self.traces += 1;
        if self.traces % 64 == 1 {
            self.last = Some(trace_json::trace(&e.trace, e.timestamp_format));
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One lab node: its pipeline, postcard ring, egress queues and where each port leads.
struct LabNode {
    pipeline: Pipeline,
    ring: Arc<PostcardRing>,
    queues: Vec<EgressQueue<Buf>>,
    /// Per port: the link it feeds, or `None` for the receiver port of a leaf.
    out: Vec<Option<usize>>,
    /// Where this node's input comes from: a link index (`links[in_link]`).
    in_link: usize,
    node_id: u32,
    /// Frames delivered to this node's receiver.
    delivered: u64,
    /// IOAM queue depth and transit delay this node reported, for the report.
    depth: Vec<f64>,
    delay_us: Vec<f64>,
}

/// Run `topo` in `mode` ("trace", "per-section" or "per-hop", the last with the topology's
/// branch encoding); returns the report object.
pub fn run(topo: &Topology, mode: &str, opts: &LabOptions) -> Result<Value> {
    run_inner(topo, mode, opts, None).map(|(report, _)| report)
}

/// [`run`] with one node under the control API while traffic flows; also returns every postcard
/// the collector got, for checks against what the API was told.
pub fn run_with_api(
    topo: &Topology,
    mode: &str,
    opts: &LabOptions,
    api: LabApi,
) -> Result<(Value, Vec<Postcard>)> {
    run_inner(topo, mode, opts, Some(api))
}

fn run_inner(
    topo: &Topology,
    mode: &str,
    opts: &LabOptions,
    api: Option<LabApi>,
) -> Result<(Value, Vec<Postcard>)> {
    ensure!(opts.packets > 0, "--packets must be at least 1");
    ensure!(
        ["trace", "per-section", "per-hop"].contains(&mode),
        "--mode: `{mode}` is not trace, per-section or per-hop"
    );
    let spaced;
    let switching = opts.switch_encoding_every.filter(|_| mode == "per-hop");
    // Node IDs a `sum` encoding can use, whenever the encoding may change.
    let may_switch = switching.is_some() || api.is_some();
    let topo = if mode == "per-hop" && (topo.branch_encoding == "sum" || may_switch) {
        spaced = topo.spaced_for_sum();
        &spaced
    } else {
        topo
    };
    topo.check()?;
    let mut configs = topo.configs(mode)?;
    let mut controlled = match api {
        Some(api) => {
            let node = topo
                .nodes
                .iter()
                .position(|n| n.name == api.node)
                .with_context(|| format!("--api-node: no node `{}` in {}", api.node, topo.name))?;
            let doc = api::Doc::from_text(
                &format!("lab node {}", api.node),
                &topo.node_toml(node, mode),
            )?;
            configs[node] = doc.loaded.node.clone();
            let cell = ConfigCell::new(doc.loaded.node.clone());
            let handle = Arc::new(LabHandle {
                cell: cell.clone(),
                stats: Mutex::new(NodeStats::default()),
            });
            Some(Controlled {
                node,
                reader: cell.reader(),
                handle: handle.clone(),
                stop: api.stop,
                _server: api::spawn(api.listener, handle, doc, api.token)?,
            })
        }
        None => None,
    };
    let mut clock = Clock::new(opts.simulated_clock);
    let start = clock.now();
    // links[0] is the source's into the root; links[1 + l] is topology link l.
    let mut links = vec![MemLink::new(4096)];
    for (l, link) in topo.links.iter().enumerate() {
        links.push(MemLink::with_impairments(
            4096,
            link.delay_us * 1000,
            link.loss,
            l as u64 + 1,
        ));
    }
    let mut nodes: Vec<LabNode> = Vec::new();
    for (i, cfg) in configs.into_iter().enumerate() {
        let kids = topo.child_links(i);
        let mut out: Vec<Option<usize>> = vec![None]; // port 0 "up" never sends down
        out.extend(kids.iter().map(|&l| Some(l + 1)));
        if kids.is_empty() {
            out.push(None); // "rx"
        }
        let queues = cfg
            .ports
            .iter()
            .enumerate()
            .map(|(p, port)| match &port.queue {
                Some(q) => q.build(start, (i * 64 + p) as u64 + 1),
                None => mtnode_dataplane::aqm::QueueConfig {
                    limits: mtnode_dataplane::aqm::QueueLimits {
                        packets: 4096,
                        bytes: 4096 * MAX_FRAME,
                    },
                    shaper: None,
                    aqm: mtnode_dataplane::aqm::AqmConfig::None,
                }
                .build(start, 0),
            })
            .collect();
        let in_link = if i == 0 {
            0
        } else {
            1 + topo
                .links
                .iter()
                .position(|l| l.to == topo.nodes[i].name)
                .unwrap_or(0)
        };
        let ring = Arc::new(PostcardRing::new(1 << 14));
        let mut pipeline = Pipeline::new(Arc::new(cfg));
        pipeline.postcards = Some(Arc::clone(&ring));
        nodes.push(LabNode {
            pipeline,
            ring,
            queues,
            out,
            in_link,
            node_id: topo.nodes[i].id,
            delivered: 0,
            depth: Vec::new(),
            delay_us: Vec::new(),
        });
    }
    // Parents before children, so one pass moves a packet down the whole tree.
    let mut order = vec![0usize];
    let mut k = 0;
    while k < order.len() {
        for l in topo.child_links(order[k]) {
            order.push(topo.node_index(&topo.links[l].to));
        }
        k += 1;
    }

    let bier_to =
        (topo.replication == Replication::Bier).then(|| (topo.bsl(), topo.all_leaves_bits()));
    let mut pool = BufPool::new(16_384);
    let mut sink = LastTrace::default();
    let mut postcards: Vec<Postcard> = Vec::new();
    let mut bytes = Vec::new();
    let mut batch: Vec<Packet<Buf>> = Vec::with_capacity(BATCH * 64);
    let mut plain_len = 0usize;
    let mut sent = 0u32;
    let rate = opts.source_mbps.unwrap_or(topo.source_mbps);
    let mut epoch = 0u32;
    let mut encodings_used = vec![topo.branch_encoding.clone()];

    let mut limit = opts.packets;
    while sent < limit
        || links.iter().any(|l| !l.is_empty())
        || nodes.iter().any(|n| n.queues.iter().any(|q| q.len() > 0))
    {
        if controlled
            .as_ref()
            .is_some_and(|c| c.stop.load(Ordering::Relaxed))
        {
            limit = sent;
        }
        let now = clock.now();
        let due = if rate > 0.0 {
            let frame_bits = ((14 + ipv6::HEADER_LEN + 8 + PAYLOAD) * 8) as f64;
            (((now - start) as f64 * rate * 1e6 / 1e9 / frame_bits) as u32 + 1).min(limit)
        } else {
            (sent + BATCH as u32).min(limit)
        };
        // A switch lands between the packets it separates.
        let due = switching.map_or(due, |k| due.min((sent / k + 1) * k));
        if let Some(k) = switching {
            // Between batches, as a worker picks up a new snapshot: every node at once.
            if sent > 0 && sent / k > epoch && sent < limit {
                epoch = sent / k;
                let mut next = topo.clone();
                next.branch_encoding = ["explicit", "split", "sum"][epoch as usize % 3].to_string();
                for (node, mut cfg) in nodes.iter_mut().zip(next.configs(mode)?) {
                    cfg.epoch = epoch;
                    node.pipeline.set_config(Arc::new(cfg));
                }
                encodings_used.push(next.branch_encoding);
            }
        }
        while sent < due {
            source_packet(
                sent,
                opts.ecn,
                bier_to.as_ref().map(|(b, bits)| (*b, &bits[..])),
                &mut bytes,
            );
            plain_len = bytes.len();
            let frame = pool.frame(&bytes).context("buffer pool exhausted")?;
            if let Err(back) = links[0].send(InFlight {
                frame,
                sent_ns: now,
            }) {
                pool.put(back.frame);
            }
            sent += 1;
        }
        let mut busy = false;
        for &i in &order {
            let node = &mut nodes[i];
            let now = clock.now();
            if let Some(c) = controlled.as_mut().filter(|c| c.node == i) {
                // Between batches, as a worker does.
                if let Some(cfg) = c.reader.poll() {
                    for (q, port) in node.queues.iter_mut().zip(&cfg.ports) {
                        if let Some(qc) = &port.queue {
                            qc.apply_to(q, now);
                        }
                    }
                    node.node_id = cfg.node_id;
                    node.pipeline.set_config(cfg);
                    c.reader.applied();
                }
            }
            while batch.len() < BATCH {
                let Some(f) = links[node.in_link].recv(now) else {
                    break;
                };
                // The frame arrived when its sender sent it plus the link's delay.
                batch.push(Packet {
                    frame: f.frame,
                    rx_port: 0,
                    rx_ns: f.sent_ns + links[node.in_link].delay_ns,
                    verdict: Verdict::Pending,
                });
            }
            busy |= !batch.is_empty();
            node.pipeline.buffer_occupancy = pool.in_use() as u32;
            node.pipeline
                .process_replicating(now, &mut batch, &mut || pool.take(), &mut sink);
            for p in batch.drain(..) {
                match p.verdict {
                    Verdict::Forward(port) => {
                        if let Err((frame, _)) = node.queues[port as usize].enqueue(now, p.frame) {
                            pool.put(frame);
                        }
                    }
                    _ => pool.put(p.frame),
                }
            }
            while let Some(card) = node.ring.pop() {
                postcards.push(card);
            }
            if let Some(c) = controlled.as_ref().filter(|c| c.node == i) {
                if let Ok(mut st) = c.handle.stats.lock() {
                    st.counters.clone_from(node.pipeline.counters());
                    st.queues = node.queues.iter().map(|q| q.stats()).collect();
                    st.workers = 1;
                }
            }
            for port in 0..node.queues.len() {
                while let Some(e) = node.queues[port].dequeue(now) {
                    busy = true;
                    let mut frame = e.frame;
                    patch_egress(
                        frame.bytes_mut(),
                        &EgressFacts {
                            node_id: node.node_id,
                            queue_depth: e.depth_at_enqueue,
                            queue_sojourn_ns: now - e.enqueued_at,
                            buffer_occupancy: pool.in_use() as u32,
                        },
                    );
                    if let Some(h) = own_hop(frame.bytes(), node.node_id) {
                        node.depth.push(h.queue_depth.unwrap_or(0) as f64);
                        node.delay_us
                            .push(h.transit_delay.unwrap_or(0) as f64 / 1000.0);
                    }
                    match node.out[port] {
                        Some(l) => {
                            if let Err(back) = links[l].send(InFlight {
                                frame,
                                sent_ns: now,
                            }) {
                                pool.put(back.frame);
                            }
                        }
                        None => {
                            node.delivered += 1;
                            pool.put(frame);
                        }
                    }
                }
            }
        }
        // Waiting for the source, a link's delay or a shaper: don't spin a core.
        clock.tick(!busy && (sent == due || rate > 0.0));
    }

    let tree = collector::rebuild(&postcards);
    // The first packet's per-hop postcards in the draft's notation: [branch node,index]{node}.
    let mut first: Vec<&Postcard> = postcards
        .iter()
        .filter(|p| p.kind == mtnode_dataplane::export::PostcardKind::Hop && p.sequence == 0)
        .collect();
    first.sort_by_key(|p| (std::cmp::Reverse(p.hop_limit), p.node_id));
    let first: Vec<String> = first
        .iter()
        .map(|p| format!("[{},{}]{{{}}}", p.branch.node_id, p.branch.index, p.node_id))
        .collect();
    let epochs: std::collections::BTreeSet<u32> = postcards.iter().map(|p| p.epoch).collect();
    let mut configured = topo.edges();
    configured.sort();
    let rebuilt = tree.edge_pairs();
    let delivered: u64 = nodes.iter().map(|n| n.delivered).sum();
    let ioam_bytes: u64 = links[1..]
        .iter()
        .map(|l| l.bytes.saturating_sub(l.packets * plain_len as u64))
        .sum();
    let postcard_bytes: u64 = postcards.iter().map(|p| ipfix::record_len(p) as u64).sum();
    let per = |b: u64| {
        if delivered > 0 {
            b as f64 / delivered as f64
        } else {
            0.0
        }
    };
    let node_reports: Vec<Value> = nodes
        .iter_mut()
        .map(|n| {
            n.depth.sort_by(f64::total_cmp);
            n.delay_us.sort_by(f64::total_cmp);
            let sum = |a: &[u64; 4]| a.iter().sum::<u64>();
            let c = n
                .queues
                .iter()
                .fold(QueueCounters::default(), |mut acc, q| {
                    acc.merge(&q.counters);
                    acc
                });
            json!({
                "node_id": n.node_id,
                "delivered": n.delivered,
                "ioam_queue_depth_p50": percentile(&n.depth, 0.5),
                "ioam_queue_depth_max": n.depth.last().copied().unwrap_or(0.0),
                "ioam_transit_delay_us_p50": percentile(&n.delay_us, 0.5),
                "ioam_transit_delay_us_p99": percentile(&n.delay_us, 0.99),
                "egress": {
                    "enqueued": sum(&c.enqueued),
                    "ce_marked": sum(&c.marked),
                    "early_drops": sum(&c.early_drops),
                    "overflow_drops": sum(&c.overflow_drops),
                },
                "postcards_exported": n.pipeline.counters().postcards_exported,
                "postcards_lost": n.pipeline.counters().postcards_lost,
            })
        })
        .collect();
    let report = json!({
        "mode": mode,
        "branch_encoding": (mode == "per-hop").then_some(topo.branch_encoding.as_str()),
        "topology": topo.name,
        "replication": match topo.replication { Replication::Pim => "pim", Replication::Bier => "bier" },
        "tree_matches": rebuilt == configured,
        "configured_edges": configured,
        "rebuilt_edges": rebuilt,
        "telemetry_bytes_per_packet": per(ioam_bytes + postcard_bytes),
        "ioam_wire_bytes_per_packet": per(ioam_bytes),
        "postcard_bytes_per_packet": per(postcard_bytes),
        "postcards": postcards.len(),
        "packets_sent": sent,
        "packets_delivered": delivered,
        "receivers": topo.leaves().len(),
        "edges": tree.edges,
        "first_packet_postcards": first,
        "epochs": epochs,
        "encodings_used": encodings_used,
        "nodes": node_reports,
        "last_trace": sink.last,
    });
    Ok((report, postcards))
}

/// This node's entry in a frame's trace (the newest, if it is ours).
fn own_hop(frame: &[u8], node_id: u32) -> Option<HopRecord> {
    let eth = mtnode_dataplane::wire::EthernetFrame::new_checked(frame).ok()?;
    let mut l3 = eth.header_len();
    if eth.ethertype() == EtherType::Bier {
        l3 += mtnode_dataplane::wire::BierHeader::new_checked(&frame[l3..])
            .ok()?
            .header_len();
    }
    let loc = mtnode_dataplane::ioam::find_trace(frame, l3 + ipv6::HEADER_LEN).ok()??;
    let t = mtnode_dataplane::wire::IoamTrace::new_checked(&frame[loc.trace_range()]).ok()?;
    mtnode_dataplane::ioam::Hops::new(t)
        .next()
        .filter(|h| h.node_id == Some(node_id))
}

/// The human form of one report.
pub fn render(r: &Value) -> String {
    let mut s = String::new();
    let pairs = |k: &str| {
        r[k].as_array()
            .map(|es| {
                es.iter()
                    .map(|e| format!("{}->{}", e[0], e[1]))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    s += &format!(
        "mtnode lab: {} ({}), mode {}\n",
        r["topology"].as_str().unwrap_or("?"),
        r["replication"].as_str().unwrap_or("?"),
        r["mode"].as_str().unwrap_or("?")
    );
    s += &format!("  configured tree: {}\n", pairs("configured_edges"));
    s += &format!(
        "  rebuilt tree:    {}   ({})\n",
        pairs("rebuilt_edges"),
        if r["tree_matches"] == true {
            "matches"
        } else {
            "DIFFERS"
        }
    );
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    s += &format!(
        "  delivered {} copies of {} packets to {} receivers; telemetry {:.0} bytes per delivered packet \
         ({:.0} IOAM on the wire + {:.0} in {} postcards)\n",
        r["packets_delivered"],
        r["packets_sent"],
        r["receivers"],
        f("telemetry_bytes_per_packet"),
        f("ioam_wire_bytes_per_packet"),
        f("postcard_bytes_per_packet"),
        r["postcards"]
    );
    s += "  edges (from the postcards):\n";
    for e in r["edges"].as_array().into_iter().flatten() {
        s += &format!(
            "    {:>3} -> {:<3} branch {:<5} delay p50 {:>9.1} us  p99 {:>9.1} us  loss {:.3}\n",
            e["parent"],
            e["child"],
            e["branch_index"],
            e["delay_us_p50"].as_f64().unwrap_or(0.0),
            e["delay_us_p99"].as_f64().unwrap_or(0.0),
            e["loss"].as_f64().unwrap_or(0.0)
        );
    }
    let queued: Vec<&Value> = r["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["ioam_queue_depth_max"].as_f64().unwrap_or(0.0) > 0.0
                || n["egress"]["early_drops"] != 0
        })
        .collect();
    if !queued.is_empty() {
        s += "  queues (IOAM queue depth and transit delay, egress counters):\n";
        for n in queued {
            let g = |k: &str| n[k].as_f64().unwrap_or(0.0);
            let e = &n["egress"];
            s += &format!(
                "    node {}: depth p50 {:.0} max {:.0}  delay p50 {:.1} us p99 {:.1} us  marked {} early drops {} overflow {}\n",
                n["node_id"],
                g("ioam_queue_depth_p50"),
                g("ioam_queue_depth_max"),
                g("ioam_transit_delay_us_p50"),
                g("ioam_transit_delay_us_p99"),
                e["ce_marked"],
                e["early_drops"],
                e["overflow_drops"]
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Bottleneck;

    #[test]
    fn figure5_in_both_modes() {
        let t = Topology::figure5();
        let trace = run(&t, "trace", &LabOptions::fast(50)).unwrap();
        let section = run(&t, "per-section", &LabOptions::fast(50)).unwrap();
        for r in [&trace, &section] {
            assert_eq!(r["tree_matches"], true, "{}", render(r));
            assert_eq!(r["packets_delivered"], 50 * 4);
        }
        // Per-section spends fewer telemetry bytes than trace mode on Figure 5.
        let bytes = |r: &Value| r["telemetry_bytes_per_packet"].as_f64().unwrap();
        assert!(
            bytes(&section) < bytes(&trace),
            "{} vs {}",
            bytes(&section),
            bytes(&trace)
        );
        // Sections: at B and D per packet, plus an end section per receiver.
        assert_eq!(section["postcards"], 50 * (2 + 4));
        assert_eq!(trace["postcards"], 50 * 4);
    }

    /// The draft's Figure 1: postcards [A,0]{A}, [A,0]{B}, [B,0]{C}, [B,1]{D}, and the tree
    /// A → B → {C, D}, in every encoding.
    #[test]
    fn figure1_per_hop_postcards() {
        for enc in ["explicit", "split", "sum"] {
            let mut t = Topology::figure1();
            t.branch_encoding = enc.to_string();
            let r = run(&t, "per-hop", &LabOptions::fast(1)).unwrap();
            let g = if enc == "sum" { 16 } else { 1 };
            let want: Vec<String> = [(1, 0, 1), (1, 0, 2), (2, 0, 3), (2, 1, 4)]
                .iter()
                .map(|(b, i, n)| format!("[{},{i}]{{{}}}", b * g, n * g))
                .collect();
            assert_eq!(r["first_packet_postcards"], json!(want), "{enc}");
            assert_eq!(
                r["rebuilt_edges"],
                json!([[g, 2 * g], [2 * g, 3 * g], [2 * g, 4 * g]]),
                "{enc}"
            );
            assert_eq!(r["branch_encoding"], enc);
        }
    }

    /// Switching the branch encoding every 10 packets while they flow through Figure 5: no
    /// packet lost, every postcard decoded by the encoding its packet carried, the tree intact.
    #[test]
    fn encoding_switch_under_traffic() {
        let opts = LabOptions {
            switch_encoding_every: Some(10),
            ..LabOptions::fast(300)
        };
        let r = run(&Topology::figure5(), "per-hop", &opts).unwrap();
        assert_eq!(r["tree_matches"], true, "{}", render(&r));
        assert_eq!(r["packets_delivered"], 300 * 4);
        assert_eq!(r["epochs"].as_array().unwrap().len(), 30);
        assert_eq!(r["encodings_used"].as_array().unwrap().len(), 30);
        assert_eq!(r["postcards"], 300 * 8, "one postcard per node per packet");
    }

    #[test]
    fn chain_trace_has_every_hop_with_hop_limits() {
        let r = run(&Topology::chain(4), "trace", &LabOptions::fast(20)).unwrap();
        assert_eq!(r["tree_matches"], true);
        let hops = r["last_trace"]["hops"].as_array().unwrap();
        let ids: Vec<_> = hops
            .iter()
            .map(|h| h["node_id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let hl: Vec<_> = hops
            .iter()
            .map(|h| h["hop_lim"].as_u64().unwrap())
            .collect();
        assert_eq!(hl, [63, 62, 61, 60]);
        let ifs: Vec<_> = hops
            .iter()
            .map(|h| {
                (
                    h["ingress_if"].as_u64().unwrap(),
                    h["egress_if"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ifs, [(100, 101), (200, 201), (300, 301), (400, 401)]);
    }

    /// Loss on D → G (into an exporting node, so the collector can place it) shows on that
    /// edge alone, within a percentage point, in both modes.
    #[test]
    fn loss_shows_on_exactly_the_lossy_edge() {
        let mut t = Topology::figure5();
        let l = t
            .links
            .iter()
            .position(|l| l.from == "D" && l.to == "G")
            .unwrap();
        t.links[l].loss = 0.1;
        for mode in ["trace", "per-section"] {
            let r = run(&t, mode, &LabOptions::fast(4000)).unwrap();
            assert_eq!(r["tree_matches"], true, "{mode}");
            for e in r["edges"].as_array().unwrap() {
                let loss = e["loss"].as_f64().unwrap();
                if e["parent"] == 4 && e["child"] == 7 {
                    assert!((loss - 0.1).abs() < 0.01, "{mode}: D->G loss {loss}");
                } else {
                    assert!(loss < 0.001, "{mode}: {e}");
                }
            }
        }
    }

    /// A 10 Mb/s PIE bottleneck after the chain's second node, fed 12 Mb/s of unresponsive
    /// ECT(0): the queue builds, PIE marks while its probability is at most 10 % and drops past
    /// it, and IOAM shows the queue on that node's hop only.
    #[test]
    fn bottleneck_shows_in_ioam_on_its_hop() {
        let mut t = Topology::chain(4);
        t.trace_type = 0xfa_0000;
        t.links[1].bottleneck = Some(Bottleneck {
            rate_mbps: 10.0,
            aqm: crate::sim::AqmKind::Pie,
            limit: 1000,
        });
        let r = run(
            &t,
            "trace",
            &LabOptions {
                packets: 1500,
                source_mbps: Some(12.0),
                ecn: true,
                switch_encoding_every: None,
                simulated_clock: true,
            },
        )
        .unwrap();
        assert_eq!(r["tree_matches"], true);
        let nodes = r["nodes"].as_array().unwrap();
        let depth = |i: usize| nodes[i]["ioam_queue_depth_max"].as_f64().unwrap();
        assert!(depth(1) > 20.0, "{:#}", nodes[1]);
        for i in [0, 2, 3] {
            assert!(
                depth(i) <= 32.0,
                "node {} has no bottleneck: {:#}",
                i + 1,
                nodes[i]
            );
        }
        let e = &nodes[1]["egress"];
        assert!(e["ce_marked"].as_u64().unwrap() > 0, "{e:#}");
        let lost = e["early_drops"].as_u64().unwrap() + e["overflow_drops"].as_u64().unwrap();
        assert_eq!(r["packets_delivered"].as_u64().unwrap(), 1500 - lost);
    }
}
