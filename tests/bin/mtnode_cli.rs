//! The whole `mtnode` command line under another name, for the tests: cargo builds a package's
//! own binaries before its integration tests (not a dependency's), and `mtnode lab --netns`
//! starts the binary it runs as (`run`, `gen`, `collect`) in every namespace. Same code as
//! `mtnode`: [`mtnode_control::cli::main`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    mtnode_control::cli::main()
}
