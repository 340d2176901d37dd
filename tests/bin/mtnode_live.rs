//! `mtnode run` and `mtnode gen` under another name, for the tests: cargo builds a package's own
//! binaries before its integration tests (not a dependency's), and the live-node tests start
//! them inside network namespaces. `mtnode-live --config …` is `mtnode run --config …`;
//! `mtnode-live gen …` is `mtnode gen …`. Same code, same output.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mtnode_control::gen::{self, GenArgs};
use mtnode_control::run::{run_and_print, RunArgs};

#[derive(Debug, Parser)]
struct Run {
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Parser)]
struct Gen {
    #[command(flatten)]
    gen: GenArgs,
}

fn main() -> ExitCode {
    let r = if std::env::args().nth(1).as_deref() == Some("gen") {
        let args = Gen::parse_from(std::env::args().skip(1)).gen;
        gen::run(&args).map(|v| {
            if args.json {
                println!("{v:#}");
            } else {
                print!("{}", gen::render(&v));
            }
        })
    } else {
        run_and_print(&Run::parse().run)
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtnode-live: {e:#}");
            ExitCode::from(2)
        }
    }
}
