//! mtnode's control side: configuration ([`config`]), pcap replay ([`replay`]), the in-process
//! lab ([`lab`]), the AQM simulator ([`sim`]) and the JSON forms of what the data path reports ([`trace_json`]). The `mtnode`
//! binary is a thin clap front end over these.
#![forbid(unsafe_code)]

pub mod config;
pub mod lab;
pub mod replay;
pub mod sim;
pub mod trace_json;
