//! `mtnode run` under another name, for the tests: cargo builds a package's own binaries before
//! its integration tests (not a dependency's), and the live-node tests start it inside network
//! namespaces. Same arguments, same code, same output as `mtnode run`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mtnode_control::run::{run_and_print, RunArgs};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    match run_and_print(&Cli::parse().run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtnode-live: {e:#}");
            ExitCode::from(2)
        }
    }
}
