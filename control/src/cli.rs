//! The `mtnode` command line: argument parsing and output only; the work is in the other
//! modules. `mtnode` (control/src/main.rs) is [`main`]; so is the tests' `mtnode-cli`, which
//! cargo builds for the tests that run the whole CLI (`mtnode lab --netns` starts its own binary
//! for every node).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::{
    api, collector, config, ctl, gen, ipfix, lab, netns_lab, replay, run as live, sim, topology,
};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// mtnode: a multicast telemetry node (IOAM trace insert/transit/strip, postcards, AQM).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run in-process nodes joined by memory links, rebuild the tree from their postcards.
    Lab {
        /// A topology file, or a built-in: figure5 (default), figure1, rfc8279, bier64 (8 × 8
        /// receivers), chain:N, random:SEED:NODES.
        #[arg(long, default_value = "figure5")]
        topology: String,
        /// trace, per-section or per-hop (default: all three, one report each).
        #[arg(long)]
        mode: Option<String>,
        /// Per-hop mode's branch-ID encoding: explicit, split or sum.
        #[arg(long, default_value = "explicit")]
        branch_encoding: String,
        /// Replicate by pim or bier (default: the topology's).
        #[arg(long)]
        replication: Option<String>,
        /// Packets the source sends.
        #[arg(long, default_value_t = 1000)]
        packets: u32,
        /// Source rate, Mb/s on the wire (default: the topology's; 0 = as fast as possible).
        #[arg(long)]
        source_rate: Option<f64>,
        /// Send ECT(0), so AQMs mark instead of dropping.
        #[arg(long)]
        ecn: bool,
        /// Put a shaped, AQM-managed bottleneck on the link FROM-TO (node names).
        #[arg(long)]
        bottleneck: Option<String>,
        /// The bottleneck's rate, Mb/s.
        #[arg(long, default_value_t = 10.0)]
        bottleneck_rate: f64,
        /// The bottleneck's AQM: pie or red.
        #[arg(long, default_value = "pie")]
        aqm: String,
        /// The bottleneck queue's limit, packets.
        #[arg(long, default_value_t = 1000)]
        queue_limit: usize,
        /// Lose this fraction of packets on a link: FROM-TO:RATE.
        #[arg(long)]
        loss: Option<String>,
        /// Serve the control API for one node (--api-node) on this address while the lab
        /// runs (one mode, per-hop by default); `mtnode ctl` then reconfigures it live.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
        /// The node the API configures, by name.
        #[arg(long, requires = "api")]
        api_node: Option<String>,
        /// The API's bearer token, first line of this file.
        #[arg(long, requires = "api")]
        token_file: Option<PathBuf>,
        /// Run the topology as live nodes (`mtnode run` on AF_XDP sockets), one network
        /// namespace per node joined by veth pairs, and compare with the in-process lab (root).
        #[arg(long, conflicts_with = "api")]
        netns: bool,
        /// With --netns: run these nodes (comma-separated names, or `all`) on DPDK
        /// `net_af_packet` devices over the same veths instead of AF_XDP sockets.
        #[arg(long, requires = "netns", value_delimiter = ',')]
        dpdk_nodes: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Talk to a running node's control API.
    Ctl {
        /// The API's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8686")]
        api: String,
        /// The bearer token for set and reload, first line of this file.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        what: CtlCommand,
    },
    /// Run a node's pipeline over a pcap: per-port pcaps, traces.jsonl and stats.json.
    Replay {
        /// The node's TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// Input pcap (Ethernet).
        #[arg(long)]
        input: PathBuf,
        /// Where the outputs go (created if missing).
        #[arg(long)]
        output_dir: PathBuf,
        /// The port the input arrives on (default: the first port).
        #[arg(long)]
        ingress: Option<String>,
        /// Switch to another configuration before input packet N (0-based): N:FILE, repeatable,
        /// in increasing N. Each switch is a new epoch.
        #[arg(long = "reload-at")]
        reload_at: Vec<String>,
        /// Print stats.json to stdout too.
        #[arg(long)]
        json: bool,
    },
    /// Send multicast UDP streams on an AF_XDP socket and/or count them on others (root).
    Gen(gen::GenArgs),
    /// Run the node live (root) on AF_XDP ports (every `[[port]]` names an `interface`) or on
    /// DPDK ports (every port has `backend = "dpdk"`; built with the `dpdk` feature), until
    /// SIGINT/SIGTERM; then print final stats.
    Run(live::RunArgs),
    /// Collect IPFIX postcards over UDP and rebuild the multicast tree from them.
    Collect {
        /// UDP address to listen on, e.g. 0.0.0.0:4739 or [::]:4739.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the tree as Graphviz dot to this file.
        #[arg(long)]
        dot: Option<PathBuf>,
        /// Stop after this many postcards.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many milliseconds. With neither --count nor --timeout-ms, the
        /// collector runs until killed and prints its report every 10 seconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Private Enterprise Number of mtnode's enterprise-specific fields.
        #[arg(long, default_value_t = ipfix::DEFAULT_ENTERPRISE_NUMBER)]
        enterprise_number: u32,
    },
    /// Closed-loop simulations that drive mtnode's real queue code.
    Sim {
        #[command(subcommand)]
        what: SimCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// The running config (one FIELD, or all of it as FIELD = VALUE rows).
    Get { field: Option<String> },
    /// Change the running config: FIELD=VALUE ..., e.g. node.node_id=48
    /// namespace[1].branch_encoding=split port[to-F].queue.target_ms=5 (one new epoch).
    Set {
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Counters, queues, latency and the running epoch.
    Stats,
    /// Re-read the node's config file.
    Reload,
    /// The Prometheus text of /metrics.
    Metrics,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Responsive senders (and optional video) through one AQM-managed bottleneck.
    Aqm {
        /// pie or red.
        #[arg(long, default_value = "pie")]
        aqm: String,
        /// Senders, e.g. reno:10 or reno:5,cubic:5.
        #[arg(long, default_value = "reno:10")]
        flows: String,
        /// Unresponsive video streams, e.g. 1080p:2 (480p, 720p, 1080p, 2160p).
        #[arg(long, default_value = "")]
        video: String,
        /// Bottleneck rate, Mb/s.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Base round-trip time, ms.
        #[arg(long, default_value_t = 40.0)]
        rtt: f64,
        /// Simulated seconds.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Seconds left out of the statistics (slow start).
        #[arg(long, default_value_t = 5.0)]
        warmup: f64,
        /// Turn ECN off: the AQM drops instead of marking.
        #[arg(long)]
        no_ecn: bool,
        /// Draw queue delay and probability over time into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
}

/// Parse the process's arguments, run the command, print any error; the exit status.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MTNODE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtnode: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What `mtnode ctl` prints for a successful reply.
fn print_ctl(what: &CtlCommand, body: &serde_json::Value, json: bool) -> Result<()> {
    let config = &body["config"];
    match what {
        CtlCommand::Metrics => print!("{}", body.as_str().unwrap_or("")),
        CtlCommand::Get { field: Some(f) } => {
            let v = ctl::lookup(config, f)?;
            if json {
                println!("{}", serde_json::to_string_pretty(v)?);
            } else {
                print!(
                    "{}",
                    ctl::table(&ctl::flatten(&serde_json::json!({ f.as_str(): v })))
                );
            }
        }
        _ if json => println!("{}", serde_json::to_string_pretty(body)?),
        CtlCommand::Get { field: None } => {
            println!("epoch {}", body["epoch"]);
            print!("{}", ctl::table(&ctl::flatten(config)));
        }
        CtlCommand::Set { .. } | CtlCommand::Reload => println!(
            "epoch {}: {} ({} µs)",
            body["epoch"],
            if body["applied"] == true {
                "active on every worker"
            } else {
                "published, not yet active on every worker"
            },
            body["apply_us"]
        ),
        CtlCommand::Stats => print!("{}", ctl::table(&ctl::flatten(body))),
    }
    Ok(())
}

/// A built-in topology name or a topology file.
fn load_topology(spec: &str) -> Result<topology::Topology> {
    let parts: Vec<&str> = spec.split(':').collect();
    Ok(match parts.as_slice() {
        ["figure5"] => topology::Topology::figure5(),
        ["figure1"] => topology::Topology::figure1(),
        ["bier64"] => topology::Topology::bier_two_level(8, 8),
        ["rfc8279"] => topology::Topology::rfc8279(),
        ["chain", n] => topology::Topology::chain(n.parse().context("chain:N")?),
        ["random", seed, n] => topology::Topology::random(
            seed.parse().context("random:SEED:NODES")?,
            n.parse().context("random:SEED:NODES")?,
            8,
            topology::TRACE_HOPS - 2,
            topology::Replication::Pim,
        ),
        _ => {
            let text =
                std::fs::read_to_string(spec).with_context(|| format!("--topology {spec}"))?;
            topology::Topology::parse(spec, &text)?
        }
    })
}

fn find_link(t: &topology::Topology, spec: &str) -> Result<usize> {
    let (a, b) = spec.split_once('-').context("a link is FROM-TO")?;
    t.links
        .iter()
        .position(|l| l.from == a && l.to == b)
        .with_context(|| format!("no link {a} -> {b} in topology {}", t.name))
}

fn parse_aqm(s: &str) -> Result<sim::AqmKind> {
    match s {
        "pie" => Ok(sim::AqmKind::Pie),
        "red" => Ok(sim::AqmKind::Red),
        other => anyhow::bail!("--aqm: `{other}` is not pie or red"),
    }
}

fn print_collect(
    c: &collector::Collector,
    json: bool,
    dot: Option<&std::path::Path>,
) -> Result<()> {
    let report = c.report();
    if let Some(path) = dot {
        std::fs::write(path, collector::to_dot(&c.tree()))
            .with_context(|| format!("--dot {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", collector::render(&report));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Collect {
            listen,
            json,
            dot,
            count,
            timeout_ms,
            enterprise_number,
        } => {
            let socket =
                std::net::UdpSocket::bind(listen).with_context(|| format!("--listen {listen}"))?;
            let mut c = collector::Collector::new(enterprise_number);
            if count.is_none() && timeout_ms.is_none() {
                loop {
                    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    c.run(&socket, None, Some(until))?;
                    print_collect(&c, json, dot.as_deref())?;
                }
            }
            let deadline = timeout_ms
                .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms));
            c.run(&socket, count, deadline)?;
            print_collect(&c, json, dot.as_deref())?;
        }
        Command::Lab {
            topology,
            mode,
            branch_encoding,
            replication,
            packets,
            source_rate,
            ecn,
            bottleneck,
            bottleneck_rate,
            aqm,
            queue_limit,
            loss,
            api,
            api_node,
            token_file,
            netns,
            dpdk_nodes,
            json,
        } => {
            let mut topo = load_topology(&topology)?;
            anyhow::ensure!(
                ["explicit", "split", "sum"].contains(&branch_encoding.as_str()),
                "--branch-encoding: `{branch_encoding}` is not explicit, split or sum"
            );
            topo.branch_encoding = branch_encoding;
            if let Some(r) = replication {
                topo.replication = match r.as_str() {
                    "pim" => topology::Replication::Pim,
                    "bier" => topology::Replication::Bier,
                    other => anyhow::bail!("--replication: `{other}` is not pim or bier"),
                };
            }
            if let Some(link) = bottleneck {
                let l = find_link(&topo, &link)?;
                topo.links[l].bottleneck = Some(topology::Bottleneck {
                    rate_mbps: bottleneck_rate,
                    aqm: parse_aqm(&aqm)?,
                    limit: queue_limit,
                });
            }
            if let Some(spec) = loss {
                let (link, rate) = spec.rsplit_once(':').context("--loss takes FROM-TO:RATE")?;
                let l = find_link(&topo, link)?;
                topo.links[l].loss = rate.parse().context("--loss: RATE is not a number")?;
            }
            let opts = lab::LabOptions {
                packets,
                source_mbps: source_rate,
                ecn,
                switch_encoding_every: None,
                simulated_clock: false,
            };
            let reports = if let Some(addr) = api {
                let node = api_node.context("--api needs --api-node NAME")?;
                let token_file = token_file.context("--api needs --token-file FILE")?;
                let lab_api = lab::LabApi {
                    listener: std::net::TcpListener::bind(addr)
                        .with_context(|| format!("--api {addr}"))?,
                    token: api::read_token(&token_file)?,
                    node,
                    stop: Default::default(),
                };
                let mode = mode.as_deref().unwrap_or("per-hop");
                vec![lab::run_with_api(&topo, mode, &opts, lab_api)?.0]
            } else {
                let modes: Vec<&str> = match mode.as_deref() {
                    Some(m) => vec![m],
                    None => vec!["trace", "per-section", "per-hop"],
                };
                if netns {
                    let exe = std::env::current_exe().context("finding the mtnode binary")?;
                    modes
                        .iter()
                        .map(|m| netns_lab::run(&topo, m, &opts, &exe, &dpdk_nodes))
                        .collect::<Result<Vec<_>>>()?
                } else {
                    modes
                        .iter()
                        .map(|m| lab::run(&topo, m, &opts))
                        .collect::<Result<Vec<_>>>()?
                }
            };
            if json {
                let v = if reports.len() == 1 {
                    reports[0].clone()
                } else {
                    serde_json::Value::Array(reports)
                };
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for r in &reports {
                    if netns {
                        print!("{}", netns_lab::render(r));
                    } else {
                        print!("{}", lab::render(r));
                    }
                }
            }
        }
        Command::Ctl {
            api,
            token_file,
            json,
            what,
        } => {
            let token = token_file.as_deref().map(api::read_token).transpose()?;
            let client = ctl::Client::new(&api, token);
            let reply = match &what {
                CtlCommand::Get { .. } => client.get("/v1/config")?,
                CtlCommand::Set { settings } => client.patch(&ctl::patch_from(settings)?)?,
                CtlCommand::Stats => client.get("/v1/stats")?,
                CtlCommand::Reload => client.send("POST", "/v1/reload", None)?,
                CtlCommand::Metrics => client.get("/metrics")?,
            };
            if reply.status != 200 {
                anyhow::bail!(
                    "{api}: {} {}: field `{}`",
                    reply.status,
                    reply.body["error"].as_str().unwrap_or("?"),
                    reply.body["field"].as_str().unwrap_or("-")
                );
            }
            print_ctl(&what, &reply.body, json)?;
        }
        Command::Run(args) => live::run_and_print(&args)?,
        Command::Gen(args) => {
            let report = gen::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", gen::render(&report));
            }
        }
        Command::Replay {
            config,
            input,
            output_dir,
            ingress,
            reload_at,
            json,
        } => {
            let mut reloads = Vec::new();
            for r in &reload_at {
                let (n, file) = r.split_once(':').context("--reload-at takes N:FILE")?;
                let n: u64 = n.parse().context("--reload-at: N is not a packet number")?;
                anyhow::ensure!(
                    reloads.last().is_none_or(|(m, _)| *m < n),
                    "--reload-at: give the switches in increasing packet order"
                );
                reloads.push((n, config::load(std::path::Path::new(file))?));
            }
            let (cfg, export) = config::load_with_export(&config)?;
            let cfg = Arc::new(cfg);
            let ingress = match ingress {
                Some(name) => cfg
                    .ports
                    .iter()
                    .position(|p| p.name == name)
                    .with_context(|| {
                        format!("--ingress: no port named `{name}` in {}", config.display())
                    })? as u16,
                None => 0,
            };
            let report = replay::replay_reloading(
                cfg,
                export.as_ref(),
                &reloads,
                &input,
                &output_dir,
                ingress,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.stats)?);
            } else {
                let c = &report.counters;
                println!(
                    "replayed {} packets: {} out, {} dropped, {} malformed; encap {} transit {} decap {} passthrough {}; {} traces -> {}",
                    report.stats["packets_in"], c.packets_out, report.stats["dropped"],
                    report.stats["malformed_total"], c.encap, c.transit, c.decap, c.passthrough,
                    report.traces, output_dir.display()
                );
            }
        }
        Command::Sim {
            what:
                SimCommand::Aqm {
                    aqm,
                    flows,
                    video,
                    rate,
                    rtt,
                    duration,
                    warmup,
                    no_ecn,
                    plot,
                    seed,
                    json,
                },
        } => {
            let params = sim::SimParams {
                aqm: parse_aqm(&aqm)?,
                flows: sim::parse_flows(&flows)?,
                video: sim::parse_video(&video)?,
                rate_mbps: rate,
                rtt_ms: rtt,
                duration_s: duration,
                warmup_s: warmup,
                ecn: !no_ecn,
                seed,
            };
            let (report, series) = sim::run(&params)?;
            if let Some(path) = plot {
                let title = format!("{aqm}, {flows}, {rate} Mb/s, {rtt} ms");
                sim::plot(&series, &title, &path)
                    .with_context(|| format!("--plot {}", path.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", sim::render(&report));
            }
        }
    }
    Ok(())
}
