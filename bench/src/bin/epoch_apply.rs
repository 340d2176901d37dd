//! How long a configuration change takes to be active on every worker, and what the workers'
//! per-batch epoch check costs (issue 7's benchmarks):
//!
//! ```text
//! epoch_apply api [changes] [workers]   # PATCHes over HTTP to workers running transit batches
//! epoch_apply poll [batches]            # the per-batch check alone, for callgrind:
//! valgrind --tool=callgrind --toggle-collect='epoch_apply::measured_poll' epoch_apply poll 100000
//! ```
//!
//! `api` serves the control API (a real socket on loopback) for `workers` threads that each run
//! `Pipeline::process` over batches of 32 transit frames and poll their `ConfigReader` between
//! batches, as the engine does. It PATCHes the node ID `changes` times and prints, as JSON, the
//! client's round trip (the reply comes once every worker runs the new epoch) and the API's own
//! publish-to-active time, p50/p99/max in µs.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mtnode_bench::{fixture_path, Role, RoleBench};
use mtnode_control::api::{self, Doc, Node, NodeStats};
use mtnode_control::ctl::Client;
use mtnode_dataplane::snapshot::{ConfigCell, ConfigReader};
use serde_json::json;

struct Workers {
    cell: Arc<ConfigCell>,
}

impl Node for Workers {
    fn config_cell(&self) -> &Arc<ConfigCell> {
        &self.cell
    }
    fn stats(&self) -> NodeStats {
        NodeStats::default()
    }
}

#[inline(never)]
fn measured_poll(reader: &mut ConfigReader) -> bool {
    reader.poll().is_some()
}

fn quantiles(h: &Histogram<u64>) -> serde_json::Value {
    json!({"p50": h.value_at_quantile(0.5), "p99": h.value_at_quantile(0.99), "max": h.max(), "n": h.len()})
}

fn api_run(changes: u32, workers: usize) -> Result<(), String> {
    let file = fixture_path("configs/transit.toml");
    let doc = Doc::from_file(&file).map_err(|e| e.to_string())?;
    let cell = ConfigCell::new(doc.loaded.node.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let mut reader = cell.reader();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut b = RoleBench::new(Role::Transit, 512);
                let mut batches = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(cfg) = reader.poll() {
                        b.pipeline.set_config(cfg);
                        reader.applied();
                    }
                    b.reset();
                    b.process();
                    batches += 1;
                }
                batches
            })
        })
        .collect();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let token = "bench".to_string();
    let server = api::spawn(listener, Arc::new(Workers { cell }), doc, token.clone())
        .map_err(|e| e.to_string())?;
    let client = Client::new(&format!("http://{}", server.addr), Some(token));
    let mut rtt = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut apply = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let started = Instant::now();
    for k in 0..changes {
        let t = Instant::now();
        let r = client
            .patch(&json!({"node": {"node_id": 100 + k % 1000}}))
            .map_err(|e| e.to_string())?;
        let us = t.elapsed().as_micros() as u64;
        if r.status != 200 || r.body["applied"] != true {
            return Err(format!("change {k}: {} {}", r.status, r.body));
        }
        rtt.record(us.max(1)).map_err(|e| e.to_string())?;
        apply
            .record(r.body["apply_us"].as_u64().unwrap_or(0).max(1))
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let batches: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    println!(
        "{}",
        json!({
            "changes": changes,
            "workers": workers,
            "api_round_trip_us": quantiles(&rtt),
            "publish_to_all_workers_us": quantiles(&apply),
            "worker_batches": batches,
            "seconds": secs,
        })
    );
    Ok(())
}

fn poll_run(batches: u64) {
    let file = fixture_path("configs/transit.toml");
    let cfg = mtnode_control::config::load(&file).expect("the fixture config loads");
    let cell = ConfigCell::new(cfg);
    let mut reader = cell.reader();
    let mut changed = 0u64;
    for _ in 0..batches {
        changed += measured_poll(&mut reader) as u64;
    }
    black_box(changed);
    println!("batches={batches} changed={changed}");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let r = match args.first().map(String::as_str) {
        Some("api") => api_run(n(1, 1000) as u32, n(2, 2) as usize),
        Some("poll") => {
            poll_run(n(1, 100_000));
            Ok(())
        }
        _ => Err("usage: epoch_apply api [changes] [workers] | epoch_apply poll [batches]".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("epoch_apply: {e}");
            ExitCode::FAILURE
        }
    }
}
