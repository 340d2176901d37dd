//! `mtnode run`: the live node. Loads a configuration whose ports name interfaces (and queues),
//! starts the [`Engine`] (one pinned, busy-polling worker per queue over AF_XDP sockets) and the
//! postcard exporter when `[export]` asks for one, runs until SIGINT or SIGTERM (or
//! `--duration`), then stops the workers, waits for their last transmissions and reports the
//! final numbers, as JSON with `--json`.
//!
//! With an `[api]` section the control API ([`crate::api`]) serves the running node: its
//! changes reach the workers through the engine's `ConfigCell` while traffic flows, and
//! `/v1/stats` and `/metrics` read the engine's merged counters.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mtnode_dataplane::engine::{Engine, EngineStats};
use mtnode_dataplane::io::afxdp::XskPortStats;
use mtnode_dataplane::pipeline::NodeConfig;
use mtnode_dataplane::snapshot::ConfigCell;
use serde_json::{json, Value};

use crate::api::{self, NodeStats};
use crate::config::{self, Loaded};
use crate::exporter::Exporter;
use crate::replay::stats_json;

/// `mtnode run`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The node's TOML configuration: every `[[port]]` names its `interface` (and `queue_id`)
    /// for AF_XDP, or has `backend = "dpdk"` and a `dpdk_port`.
    #[arg(long)]
    pub config: PathBuf,
    /// Print the final statistics as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Stop by itself after this many seconds (default: run until SIGINT or SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// DPDK nodes: stop once traffic has been seen and none arrived for this many
    /// milliseconds (for a finite source: a net_pcap device replaying a file).
    #[arg(long)]
    pub exit_when_idle_ms: Option<u64>,
}

/// Start the node described by `live` and return its engine (and exporter) running.
pub fn start(live: &Loaded) -> Result<(Engine, Option<crate::exporter::ExporterHandle>)> {
    let cell = ConfigCell::new(live.node.clone());
    let mut engine_config = live.engine.clone();
    if let Some(e) = &live.export {
        engine_config.postcard_ring = Some(e.ring);
    }
    let engine =
        Engine::start(cell, &live.live_ports, engine_config).context("starting the engine")?;
    let exporter = match &live.export {
        Some(e) => Some(
            Exporter::spawn(e.exporter.clone(), engine.postcard_rings().to_vec())
                .context("starting the exporter")?,
        ),
        None => None,
    };
    Ok((engine, exporter))
}

/// Run the node until a signal or `--duration`; returns the final statistics as JSON.
pub fn run(args: &RunArgs) -> Result<Value> {
    mtnode_dataplane::io::afxdp::quiet_libbpf();
    let loaded = config::load_all(&args.config)?;
    if loaded
        .backends
        .iter()
        .any(|b| matches!(b, config::PortBackend::Dpdk(_)))
    {
        return run_dpdk(&loaded, args);
    }
    anyhow::ensure!(
        args.exit_when_idle_ms.is_none(),
        "--exit-when-idle-ms is for DPDK nodes"
    );
    let live = loaded.require_live()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping ends the process at once (exit status 1).
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let (engine, exporter) = start(&live)?;
    for n in engine.notes() {
        eprintln!("mtnode run: {n}");
    }
    let cell = engine.config().clone();
    let node = Arc::new(LiveNode {
        cell: cell.clone(),
        engine: Mutex::new(Some(engine)),
    });
    let server = match &live.api {
        Some(a) => Some(serve_api(&args.config, a, node.clone())?),
        None => None,
    };
    let names: Vec<String> = live
        .live_ports
        .iter()
        .map(|p| {
            format!(
                "{}={}{:?}",
                live.node.ports[p.port as usize].name, p.interface, p.queue_ids
            )
        })
        .collect();
    // Scripts and tests wait for this line.
    eprintln!(
        "mtnode run: {} ready on {} (epoch {})",
        live.node.name,
        names.join(" "),
        cell.epoch()
    );
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    while !stop.load(Ordering::Acquire) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("mtnode run: stopping");
    // The API first: no change may arrive while the workers stop.
    drop(server);
    let engine = node
        .engine
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .context("the engine is gone")?;
    let config = cell.load();
    let stats = engine.shutdown().context("stopping the engine")?;
    let mut report = stats_to_json(&config, &stats);
    if let Some(x) = exporter {
        let e = x.shutdown();
        report["export"] = json!({
            "postcards_exported": stats.counters.postcards_exported,
            "postcards_lost_ring_full": stats.counters.postcards_lost,
            "exporter": e,
        });
    }
    Ok(report)
}

#[cfg(feature = "dpdk")]
fn run_dpdk(loaded: &Loaded, args: &RunArgs) -> Result<Value> {
    crate::dpdk_node::run_loaded(loaded, args, &args.config)
}

#[cfg(not(feature = "dpdk"))]
fn run_dpdk(_: &Loaded, args: &RunArgs) -> Result<Value> {
    anyhow::bail!(
        "{}: its ports are DPDK ports, and this mtnode was built without the `dpdk` feature \
         (cargo build --features dpdk)",
        args.config.display()
    )
}

/// The running engine as the control API sees it.
struct LiveNode {
    cell: Arc<ConfigCell>,
    /// Taken at shutdown.
    engine: Mutex<Option<Engine>>,
}

impl api::Node for LiveNode {
    fn config_cell(&self) -> &Arc<ConfigCell> {
        &self.cell
    }

    fn stats(&self) -> NodeStats {
        let engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        match engine.as_ref() {
            Some(e) => {
                let s = e.stats();
                NodeStats {
                    counters: s.counters,
                    queues: s.queues,
                    latency: Some(s.latency),
                    workers: s.workers.len(),
                }
            }
            None => NodeStats::default(),
        }
    }
}

/// Serve the control API for the running node (either backend's), as its config's `[api]`
/// says.
pub(crate) fn serve_api<N: api::Node>(
    file: &std::path::Path,
    a: &config::ApiConfig,
    node: Arc<N>,
) -> Result<api::ApiServer> {
    let token_file = a
        .token_file
        .as_deref()
        .context("[api] needs token_file: changes are refused without a token")?;
    let token = api::read_token(token_file)?;
    let doc = api::Doc::from_file(file)?;
    let listener = std::net::TcpListener::bind(a.listen)
        .with_context(|| format!("api.listen {}", a.listen))?;
    let server = api::spawn(listener, node, doc, token)?;
    eprintln!("mtnode run: control API on http://{}", server.addr);
    Ok(server)
}

/// [`run`], then print the report: JSON with `--json`, a summary otherwise.
pub fn run_and_print(args: &RunArgs) -> Result<()> {
    let report = run(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn port_json(config: &NodeConfig, p: &XskPortStats) -> Value {
    json!({
        "port": config.ports.get(p.port as usize).map(|x| x.name.clone()),
        "interface": p.interface,
        "rx_packets": p.rx_packets,
        "rx_bytes": p.rx_bytes,
        "tx_packets": p.tx_packets,
        "tx_bytes": p.tx_bytes,
        "tx_dropped": p.tx_dropped,
        "rx_invalid": p.rx_invalid,
        "kernel": {
            "rx_dropped": p.kernel_rx_dropped,
            "rx_ring_full": p.kernel_rx_ring_full,
            "rx_fill_ring_empty": p.kernel_rx_fill_ring_empty,
            "rx_invalid": p.kernel_rx_invalid,
            "tx_invalid": p.kernel_tx_invalid,
        },
    })
}

/// The engine's numbers as JSON: `stats.json`'s keys (as replay writes them), plus per-port
/// socket counters, latency quantiles, UMEM accounting and per-worker detail.
pub fn stats_to_json(config: &NodeConfig, s: &EngineStats) -> Value {
    let mut v = stats_json(config, &s.counters, 0);
    let l = &s.latency;
    v["epoch"] = config.epoch.into();
    v["ports"] = s.ports.iter().map(|p| port_json(config, p)).collect();
    v["queues"] = api::queues_json(config, &s.queues);
    v["latency_ns"] = json!({
        "count": l.count,
        "p50": l.p50_ns,
        "p90": l.p90_ns,
        "p99": l.p99_ns,
        "p999": l.p999_ns,
        "max": l.max_ns,
        "mean": l.mean_ns,
    });
    v["umem"] = json!({
        "total": s.umem.total,
        "free": s.umem.free,
        "in_fill": s.umem.in_fill,
        "in_tx": s.umem.in_tx,
        "lent": s.umem.lent,
        "leaked": s.umem.leaked,
        "duplicates": s.umem.duplicates,
    });
    v["replicas"] = s.counters.replicas.into();
    v["traces"] = s.traces.into();
    v["batches"] = s.batches.into();
    v["relocated"] = s.relocated.into();
    v["no_socket"] = s.no_socket.into();
    v["uptime_s"] = s.uptime.as_secs_f64().into();
    v["workers"] = s
        .workers
        .iter()
        .map(|w| {
            json!({
                "queue_id": w.queue_id,
                "core": w.core,
                "mode": w.mode.map(|m| m.name()),
                "epoch": w.epoch,
                "batches": w.batches,
                "idle_polls": w.idle_polls,
                "packets_in": w.counters.packets_in,
                "packets_out": w.counters.packets_out,
                "finished": w.finished,
            })
        })
        .collect();
    v
}

/// A short human summary of the final numbers.
pub fn render(v: &Value) -> String {
    let mut out = format!(
        "mtnode run: {}: {} packets in, {} out ({} replicas), {} dropped, {} malformed\n",
        v["node"].as_str().unwrap_or("?"),
        v["packets_in"],
        v["packets_out"],
        v["replicas"],
        v["dropped"],
        v["malformed_total"],
    );
    if let Some(ports) = v["ports"].as_array() {
        for p in ports {
            out.push_str(&format!(
                "  {} ({}): rx {} tx {} tx_dropped {} kernel rx_dropped {}\n",
                p["port"].as_str().unwrap_or("?"),
                p["interface"].as_str().unwrap_or("?"),
                p["rx_packets"],
                p["tx_packets"],
                p["tx_dropped"],
                p["kernel"]["rx_dropped"],
            ));
        }
    }
    let l = &v["latency_ns"];
    out.push_str(&format!(
        "  latency rx->tx: p50 {} ns, p99 {} ns, max {} ns over {} packets\n",
        l["p50"], l["p99"], l["max"], l["count"]
    ));
    let u = &v["umem"];
    if u.is_object() {
        out.push_str(&format!(
            "  umem frames: {} total, {} free, {} on fill rings, {} in tx, {} leaked\n",
            u["total"], u["free"], u["in_fill"], u["in_tx"], u["leaked"]
        ));
    }
    let d = &v["dpdk"];
    if d.is_object() {
        out.push_str(&format!(
            "  DPDK rx {} tx {} ({} dropped at TX) in {:.3} s\n",
            d["rx"],
            d["tx"],
            d["tx_dropped"],
            d["active_s"].as_f64().unwrap_or(0.0)
        ));
    }
    out
}
