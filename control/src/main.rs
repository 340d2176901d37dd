//! The `mtnode` command: argument parsing and output only; the work is in the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mtnode_control::{config, lab, replay};

/// mtnode: a multicast telemetry node (IOAM trace insert/transit/strip, postcards, AQM).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run in-process nodes joined by memory links and report the rebuilt path.
    Lab {
        /// Packets the source sends.
        #[arg(long, default_value_t = 1000)]
        packets: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
        /// Print stats.json to stdout too.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtnode: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Lab { packets, json } => {
            let report = lab::run_chain(packets)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", lab::render(&report));
            }
        }
        Command::Replay {
            config,
            input,
            output_dir,
            ingress,
            json,
        } => {
            let cfg = Arc::new(config::load(&config)?);
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
            let report = replay::replay(cfg, &input, &output_dir, ingress)?;
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
    }
    Ok(())
}
