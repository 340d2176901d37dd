//! `mtnode run` on DPDK ports: a configuration whose ports all say `backend = "dpdk"` (with a
//! `dpdk_port`) and whose `[dpdk]` section carries the EAL arguments runs on
//! `mtnode_dataplane::dpdk_engine` until SIGINT/SIGTERM, `--duration`, or (for finite inputs
//! such as `net_pcap` replaying a file) `--exit-when-idle-ms`, then reports its final numbers:
//! `stats.json`'s keys (as `mtnode replay` writes them) plus a `dpdk` object.
//!
//! With an `[api]` section the control API serves the running node exactly as on AF_XDP:
//! `PATCH /v1/config` publishes to the `ConfigCell` the workers poll between batches, and
//! `/v1/stats` and `/metrics` merge the workers' numbers on request ([`DpdkMonitor`]).
//!
//! DPDK initialises once per process, so a process runs one DPDK node; tests run it as a
//! subprocess. A node runs one backend for all its ports: forwarding between an AF_XDP socket
//! and a DPDK port would copy every frame between a UMEM and a mempool.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mtnode_dataplane::dpdk_engine::{
    self, Clock, DpdkEngineConfig, DpdkMonitor, DpdkPort, StopWhen,
};
use mtnode_dataplane::export::PostcardRing;
use mtnode_dataplane::io::dpdk::PortSpec;
use mtnode_dataplane::snapshot::ConfigCell;
use serde_json::{json, Value};

use crate::api::{self, NodeStats};
use crate::config::{DpdkClockKind, DpdkPortRef, Loaded, PortBackend};
use crate::exporter::Exporter;
use crate::replay::{stats_json, BATCH_WINDOW_NS};
use crate::run::{serve_api, RunArgs};

/// The running DPDK node as the control API sees it.
struct DpdkLiveNode {
    cell: Arc<ConfigCell>,
    monitor: Arc<DpdkMonitor>,
}

impl api::Node for DpdkLiveNode {
    fn config_cell(&self) -> &Arc<ConfigCell> {
        &self.cell
    }

    fn stats(&self) -> NodeStats {
        let s = self.monitor.stats();
        NodeStats {
            counters: s.counters,
            queues: s.queues,
            latency: Some(s.latency),
            workers: s.workers,
        }
    }
}

/// The engine's view of a loaded configuration: its DPDK ports and settings.
pub fn engine_config(loaded: &Loaded) -> Result<(Vec<DpdkPort>, DpdkEngineConfig)> {
    let mut ports = Vec::new();
    for (i, (b, p)) in loaded.backends.iter().zip(&loaded.node.ports).enumerate() {
        match b {
            PortBackend::Dpdk(r) => ports.push(DpdkPort {
                port: i as u16,
                device: match r {
                    DpdkPortRef::Id(id) => PortSpec::Id(*id as u16),
                    DpdkPortRef::Name(n) => PortSpec::Name(n.clone()),
                },
            }),
            PortBackend::Afxdp => bail!(
                "port `{}` is on AF_XDP and others on DPDK: a node runs one backend for all its \
                 ports",
                p.name
            ),
            PortBackend::Unspecified => bail!(
                "port `{}` names no backend: a DPDK node needs backend = \"dpdk\" and a \
                 dpdk_port on every port",
                p.name
            ),
        }
    }
    if ports.is_empty() {
        bail!("no port has backend = \"dpdk\"");
    }
    let d = loaded.dpdk.clone().unwrap_or_default();
    let config = DpdkEngineConfig {
        eal_args: d.eal_args,
        queues: d.queues,
        batch_size: d.batch_size,
        cores: d.cores,
        mbufs_per_queue: d.mbufs,
        rx_desc: d.rx_desc,
        tx_desc: d.tx_desc,
        clock: match d.clock {
            DpdkClockKind::System => Clock::System,
            DpdkClockKind::Device => Clock::Device {
                scale: d.device_clock_ns,
                window_ns: BATCH_WINDOW_NS,
            },
        },
        idle_sleep_us: d.idle_sleep_us,
        postcards: Vec::new(),
    };
    Ok((ports, config))
}

/// Run the DPDK node `loaded` describes (`path` names it in messages) until a signal,
/// `--duration` or `--exit-when-idle-ms`; returns the final statistics as JSON.
pub fn run_loaded(loaded: &Loaded, args: &RunArgs, path: &Path) -> Result<Value> {
    let (ports, mut engine) =
        engine_config(loaded).with_context(|| format!("{}", path.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let exporter = match &loaded.export {
        Some(e) => {
            let rings: Vec<Arc<PostcardRing>> = (0..engine.queues)
                .map(|_| Arc::new(PostcardRing::new(e.ring)))
                .collect();
            engine.postcards = rings.clone();
            Some(Exporter::spawn(e.exporter.clone(), rings).context("starting the exporter")?)
        }
        None => None,
    };
    let cell = ConfigCell::new(loaded.node.clone());
    let when = StopWhen {
        duration: args.duration.map(Duration::from_secs_f64),
        idle: args.exit_when_idle_ms.map(Duration::from_millis),
    };
    let monitor = Arc::new(DpdkMonitor::new());
    // Bound before the EAL starts, so a taken address fails fast; it answers with zero
    // workers until they poll.
    let server = match &loaded.api {
        Some(a) => Some(serve_api(
            path,
            a,
            Arc::new(DpdkLiveNode {
                cell: Arc::clone(&cell),
                monitor: Arc::clone(&monitor),
            }),
        )?),
        None => None,
    };
    let s = dpdk_engine::run(
        Arc::clone(&cell),
        &ports,
        &engine,
        &stop,
        when,
        &monitor,
        |names| {
            let list: Vec<String> = names
                .iter()
                .map(|(i, n)| format!("{}={n}", loaded.node.ports[*i as usize].name))
                .collect();
            // Scripts and tests wait for this line (the AF_XDP node prints the same).
            eprintln!(
                "mtnode run: {} ready on {} (DPDK, epoch {})",
                loaded.node.name,
                list.join(" "),
                cell.epoch()
            );
        },
    );
    drop(server);
    let s = s.context("DPDK node")?;
    let config = cell.load();

    let mut stats = stats_json(&config, &s.counters, 0);
    stats["epoch"] = config.epoch.into();
    stats["replicas"] = s.counters.replicas.into();
    stats["queues"] = api::queues_json(&config, &s.queues);
    if let Some(handle) = exporter {
        let e = handle.shutdown();
        stats["export"] = json!({
            "postcards_exported": s.counters.postcards_exported,
            "postcards_lost_ring_full": s.counters.postcards_lost,
            "exporter": e,
        });
    }
    let active = s.active.as_secs_f64();
    let q = |x: f64| s.latency.value_at_quantile(x);
    stats["dpdk"] = json!({
        "ports": s.ports.iter().map(|(i, name, p)| json!({
            "port": loaded.node.ports[*i as usize].name,
            "device": name,
            "rx_packets": p.rx_packets,
            "tx_packets": p.tx_packets,
            "rx_bytes": p.rx_bytes,
            "tx_bytes": p.tx_bytes,
            "rx_missed": p.rx_missed,
            "rx_errors": p.rx_errors,
            "tx_errors": p.tx_errors,
            "rx_no_mbuf": p.rx_no_mbuf,
        })).collect::<Vec<_>>(),
        "rx": s.io.rx,
        "tx": s.io.tx,
        "tx_dropped": s.io.tx_dropped,
        "rx_unusable": s.io.rx_unusable,
        "relocated": s.io.relocated,
        "alloc_failed": s.io.alloc_failed,
        "unstamped": s.io.unstamped,
        "mbufs_held_at_exit": s.workers.iter().map(|w| w.held_at_exit).sum::<u32>(),
        "pool_in_use_before_close": s.pool_in_use_before_close,
        "workers": s.workers.iter().map(|w| json!({
            "queue": w.queue,
            "core": w.core,
            "lcore": w.lcore,
            "batches": w.batches,
            "idle_polls": w.idle_polls,
            "rx": w.io.rx,
            "tx": w.io.tx,
        })).collect::<Vec<_>>(),
        "batches": s.batches,
        "traces": s.traces,
        "active_s": active,
        "rx_pps": if active > 0.0 { s.io.rx as f64 / active } else { 0.0 },
        "tx_pps": if active > 0.0 { s.io.tx as f64 / active } else { 0.0 },
        "latency_ns": {
            "count": s.latency.len(),
            "p50": q(0.5),
            "p99": q(0.99),
            "max": s.latency.max(),
        },
    });
    Ok(stats)
}
