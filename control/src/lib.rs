//! mtnode's control side: configuration ([`config`]), pcap replay ([`replay`]), the in-process
//! lab ([`lab`]) over its topologies ([`topology`]), the AQM simulator ([`sim`]) and the JSON
//! forms of what the data path reports ([`trace_json`]). The `mtnode` binary is a thin clap
//! front end over these.
//!
//! Postcard export: the IPFIX codec ([`ipfix`]), the exporter thread that drains the workers'
//! rings ([`exporter`]), and the collector that rebuilds the multicast tree ([`collector`]).
//!
//! With the `dpdk` feature, `dpdk_node` runs the live node on DPDK ports (`mtnode run`).
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod collector;
pub mod config;
pub mod ctl;
#[cfg(feature = "dpdk")]
pub mod dpdk_node;
pub mod exporter;
pub mod gen;
pub mod ipfix;
pub mod lab;
pub mod netns_lab;
pub mod replay;
pub mod run;
pub mod sim;
pub mod topology;
pub mod trace_json;
