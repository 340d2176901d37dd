//! The `mtnode` command: [`mtnode_control::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    mtnode_control::cli::main()
}
