//! `mtnode replay`: the node's pipeline over a pcap file, exactly as the live node runs it, with
//! one output pcap per egress port, `traces.jsonl` and `stats.json`. Batches are the packets
//! that arrived within one batch window of each other, and the batch's clock is its last
//! arrival, so a replay is deterministic.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mtnode_dataplane::aqm::{Ecn, EgressQueue, QueueCounters};
use mtnode_dataplane::export::PostcardRing;
use mtnode_dataplane::frame::Frame;
use mtnode_dataplane::io::pcap::{PcapSink, PcapSource};
use mtnode_dataplane::io::{Buf, BufPool, MAX_FRAME};
use mtnode_dataplane::ioam::{patch_egress, EgressFacts};
use mtnode_dataplane::pipeline::{
    Counters, DropReason, NodeConfig, Packet, Pipeline, Sink, TraceEvent, Verdict,
};
use mtnode_dataplane::wire::Error as WireError;
use serde_json::{json, Map, Value};

use crate::config::Export;
use crate::exporter::Exporter;
use crate::trace_json;

/// Most packets per batch, as on a live port.
pub const BATCH: usize = 32;
/// Packets that arrive within this many ns of a batch's first share its batch.
pub const BATCH_WINDOW_NS: u64 = 10_000;

/// Writes each decapsulated trace as one JSON line.
struct TraceLines<W: Write> {
    out: W,
    /// Input index of the batch's first packet.
    base: u64,
    written: u64,
    error: Option<std::io::Error>,
}

impl<W: Write> Sink for TraceLines<W> {
    fn trace(&mut self, e: &TraceEvent<'_>) {
        let mut v = trace_json::trace(&e.trace, e.timestamp_format);
        if let Value::Object(m) = &mut v {
            m.insert("packet".into(), (self.base + e.index as u64).into());
            m.insert("rx_ns".into(), e.rx_ns.into());
        }
        let r = serde_json::to_writer(&mut self.out, &v)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        match r {
            Ok(()) => self.written += 1,
            Err(err) => {
                self.error.get_or_insert(err);
            }
        }
    }
}

/// The node's egress: per port, an optional managed queue in front of the output file.
struct Egress {
    outputs: Vec<PcapSink>,
    queues: Vec<Option<EgressQueue<Buf>>>,
    /// When each queue's last frame left (its link is busy until then).
    last_departure: Vec<u64>,
    node_id: u32,
}

impl Egress {
    fn new(config: &NodeConfig, outputs: Vec<PcapSink>) -> Self {
        Egress {
            outputs,
            queues: config
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| p.queue.as_ref().map(|q| q.build(0, i as u64 + 1)))
                .collect(),
            last_departure: vec![0; config.ports.len()],
            node_id: config.node_id,
        }
    }

    /// Queue the frame on a managed port, or write it at `now`.
    fn send(&mut self, now: u64, port: usize, frame: Frame<Buf>, pool: &mut BufPool) -> Result<()> {
        match self.queues[port].as_mut() {
            Some(q) => {
                if let Err((frame, _)) = q.enqueue(now, frame) {
                    pool.put(frame);
                }
            }
            None => {
                self.outputs[port].write(now, frame.bytes())?;
                pool.put(frame);
            }
        }
        Ok(())
    }

    /// Let every frame whose departure time is at most `until` leave, in time order per port,
    /// with this node's IOAM slot patched as it leaves.
    fn drain(&mut self, until: u64, pool: &mut BufPool) -> Result<()> {
        for (port, q) in self.queues.iter_mut().enumerate() {
            let Some(q) = q.as_mut() else { continue };
            while let Some(head) = q.head_enqueued_at() {
                let earliest = head.max(self.last_departure[port]);
                let Some(t) = q.next_departure(earliest) else {
                    break;
                };
                if t > until {
                    break;
                }
                let Some(e) = q.dequeue(t) else { break };
                self.last_departure[port] = t;
                let mut frame = e.frame;
                patch_egress(
                    frame.bytes_mut(),
                    &EgressFacts {
                        node_id: self.node_id,
                        queue_depth: e.depth_at_enqueue,
                        queue_sojourn_ns: t - e.enqueued_at,
                        buffer_occupancy: pool.in_use() as u32,
                    },
                );
                self.outputs[port].write(t, frame.bytes())?;
                pool.put(frame);
            }
        }
        Ok(())
    }

    /// Add each managed queue's counters, by ECN codepoint, to `stats.json`.
    fn report(&self, config: &NodeConfig, stats: &mut Value) {
        let by_cp = |a: &[u64; 4]| -> Value {
            Ecn::ALL
                .iter()
                .map(|e| (e.name().to_string(), Value::from(a[*e as usize])))
                .collect::<Map<_, _>>()
                .into()
        };
        let queues: Map<String, Value> = config
            .ports
            .iter()
            .zip(&self.queues)
            .filter_map(|(p, q)| {
                let c = &q.as_ref()?.counters;
                Some((
                    p.name.clone(),
                    json!({
                        "enqueued": by_cp(&c.enqueued),
                        "marked": by_cp(&c.marked),
                        "early_drops": by_cp(&c.early_drops),
                        "overflow_drops": by_cp(&c.overflow_drops),
                        "dequeued": c.dequeued,
                    }),
                ))
            })
            .collect();
        if queues.is_empty() {
            return;
        }
        stats["queues"] = queues.into();
        // Frames the queues refused were forwarded by the pipeline but never left the node.
        let sum = |f: fn(&QueueCounters) -> &[u64; 4]| -> u64 {
            self.queues
                .iter()
                .flatten()
                .map(|q| f(&q.counters).iter().sum::<u64>())
                .sum()
        };
        let early = sum(|c| &c.early_drops);
        let overflow = sum(|c| &c.overflow_drops);
        let add = |v: &mut Value, n: u64| *v = (v.as_u64().unwrap_or(0) + n).into();
        add(&mut stats["dropped"], early + overflow);
        stats["packets_out"] =
            (stats["packets_out"].as_u64().unwrap_or(0) - early - overflow).into();
        if early > 0 {
            add(&mut stats["dropped_by_reason"]["aqm_early"], early);
        }
        if overflow > 0 {
            add(&mut stats["dropped_by_reason"]["queue_overflow"], overflow);
        }
    }
}

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    pub counters: Counters,
    pub traces: u64,
    /// Records larger than a frame buffer, skipped and counted.
    pub oversize: u64,
    pub stats: Value,
}

/// Replay `input` through a node with `config`, arriving on port `ingress`, into `out_dir`.
pub fn replay(
    config: Arc<NodeConfig>,
    input: &Path,
    out_dir: &Path,
    ingress: u16,
) -> Result<ReplayReport> {
    replay_exporting(config, None, input, out_dir, ingress)
}

/// [`replay`], with the node's postcards sent as IPFIX to `export`'s collectors by a real
/// exporter thread; its counters join `stats.json` under `export`.
pub fn replay_exporting(
    config: Arc<NodeConfig>,
    export: Option<&Export>,
    input: &Path,
    out_dir: &Path,
    ingress: u16,
) -> Result<ReplayReport> {
    replay_reloading(config, export, &[], input, out_dir, ingress)
}

/// [`replay_exporting`], switching to `reloads[k].1` before input packet `reloads[k].0` (in
/// increasing order), between batches as a live worker picks up a new configuration; each
/// switch is a new epoch, which the node's postcards carry.
pub fn replay_reloading(
    config: Arc<NodeConfig>,
    export: Option<&Export>,
    reloads: &[(u64, NodeConfig)],
    input: &Path,
    out_dir: &Path,
    ingress: u16,
) -> Result<ReplayReport> {
    let mut reloads = reloads.iter().enumerate().peekable();
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut source =
        PcapSource::open(input).with_context(|| format!("reading {}", input.display()))?;
    let outputs = config
        .ports
        .iter()
        .map(|p| PcapSink::create(&out_dir.join(format!("{}.pcap", p.name))))
        .collect::<Result<Vec<_>, _>>()
        .context("creating the output pcaps")?;
    let mut egress = Egress::new(&config, outputs);
    let traces_path = out_dir.join("traces.jsonl");
    let mut sink = TraceLines {
        out: BufWriter::new(
            File::create(&traces_path)
                .with_context(|| format!("creating {}", traces_path.display()))?,
        ),
        base: 0,
        written: 0,
        error: None,
    };
    let mut pipeline = Pipeline::new(Arc::clone(&config));
    let exporter = match export {
        Some(e) => {
            let ring = Arc::new(PostcardRing::new(e.ring));
            pipeline.postcards = Some(Arc::clone(&ring));
            Some(Exporter::spawn(e.exporter.clone(), vec![ring]).context("starting the exporter")?)
        }
        None => None,
    };
    let queued: usize = config
        .ports
        .iter()
        .filter_map(|p| p.queue.as_ref())
        .map(|q| q.limits.packets)
        .sum();
    // Every packet of a batch may fan out to every port (PIM OIL, BIER neighbors).
    let fanout = config.ports.len().max(1);
    let mut pool = BufPool::new(2 * BATCH * fanout + queued.min(1 << 16));
    let mut batch: Vec<Packet<Buf>> = Vec::with_capacity(BATCH * fanout);
    let mut next_index = 0u64;
    let mut oversize = 0u64;

    let mut flush = |batch: &mut Vec<Packet<Buf>>,
                     pool: &mut BufPool,
                     pipeline: &mut Pipeline,
                     sink: &mut TraceLines<BufWriter<File>>|
     -> Result<()> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let now = last.rx_ns;
        // Departures that happened before this batch arrived leave first, so the queues are as
        // they were when it came.
        egress.drain(now, pool)?;
        pipeline.buffer_occupancy = pool.in_use() as u32;
        pipeline.process_replicating(now, batch, &mut || pool.take(), sink);
        for p in batch.drain(..) {
            match p.verdict {
                Verdict::Forward(port) => egress.send(now, port as usize, p.frame, pool)?,
                _ => pool.put(p.frame),
            }
        }
        Ok(())
    };

    loop {
        let mut record: Option<(u64, Option<Frame<Buf>>)> = None;
        let more = source.next_with(|(ts, bytes)| {
            let frame = if bytes.len() <= MAX_FRAME {
                pool.frame(bytes)
            } else {
                None
            };
            record = Some((ts, frame));
        })?;
        if !more {
            break;
        }
        let Some((ts, frame)) = record else { break };
        let Some(frame) = frame else {
            oversize += 1;
            next_index += 1;
            continue;
        };
        if let Some(first) = batch.first() {
            if batch.len() == BATCH || ts.saturating_sub(first.rx_ns) > BATCH_WINDOW_NS {
                sink.base = next_index - batch.len() as u64;
                flush(&mut batch, &mut pool, &mut pipeline, &mut sink)?;
            }
        }
        while let Some((k, (_, cfg))) = reloads.next_if(|(_, (at, _))| *at <= next_index) {
            sink.base = next_index - batch.len() as u64;
            flush(&mut batch, &mut pool, &mut pipeline, &mut sink)?;
            let mut cfg = cfg.clone();
            cfg.epoch = config.epoch + k as u32 + 1;
            pipeline.set_config(Arc::new(cfg));
        }
        batch.push(Packet {
            frame,
            rx_port: ingress,
            rx_ns: ts,
            verdict: Verdict::Pending,
        });
        next_index += 1;
    }
    sink.base = next_index - batch.len() as u64;
    flush(&mut batch, &mut pool, &mut pipeline, &mut sink)?;
    egress.drain(u64::MAX, &mut pool)?;
    if let Some(e) = sink.error.take() {
        bail!("writing {}: {e}", traces_path.display());
    }
    sink.out.flush()?;

    let counters = pipeline.counters().clone();
    let mut stats = stats_json(&config, &counters, oversize);
    if let Some(handle) = exporter {
        let e = handle.shutdown();
        stats["export"] = json!({
            "postcards_exported": counters.postcards_exported,
            "postcards_lost_ring_full": counters.postcards_lost,
            "exporter": e,
        });
    }
    egress.report(&config, &mut stats);
    let mut text = serde_json::to_string_pretty(&stats)?;
    text.push('\n');
    std::fs::write(out_dir.join("stats.json"), text)?;
    Ok(ReplayReport {
        counters,
        traces: sink.written,
        oversize,
        stats,
    })
}

/// `stats.json`: the DESIGN.md keys (`packets_in`, `packets_out`, `dropped`, `malformed`) and
/// per-role, per-reason and per-port detail.
pub fn stats_json(config: &NodeConfig, c: &Counters, oversize: u64) -> Value {
    let malformed: Map<String, Value> = WireError::ALL
        .iter()
        .filter(|e| c.malformed[e.index()] > 0)
        .map(|e| (e.reason().to_string(), c.malformed[e.index()].into()))
        .collect();
    let drops: Map<String, Value> = DropReason::ALL
        .iter()
        .filter(|r| c.dropped[**r as usize] > 0)
        .map(|r| (r.name().to_string(), c.dropped[*r as usize].into()))
        .collect();
    let ports: Map<String, Value> = config
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), c.tx_by_port[i].into()))
        .collect();
    json!({
        "node": config.name,
        "packets_in": c.packets_in + oversize,
        "packets_out": c.packets_out,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "dropped": c.dropped_total() + oversize,
        "dropped_by_reason": drops,
        "oversize_skipped": oversize,
        "malformed": malformed,
        "malformed_total": c.malformed.iter().sum::<u64>(),
        "roles": {
            "encap": c.encap,
            "transit": c.transit,
            "decap": c.decap,
            "passthrough": c.passthrough,
        },
        "overflow": c.overflow,
        "tx_by_port": ports,
    })
}
