//! With the `dpdk` feature: compile the C shim over DPDK's inline calls and generate bindings
//! for the rest, both against the headers pkg-config `libdpdk` names. Without it: nothing, so
//! the default build needs no DPDK, clang or pkg-config.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;
    use std::process::Command;

    const SHIM: &str = "src/io/dpdk/shim.c";
    const SHIM_H: &str = "src/io/dpdk/shim.h";

    /// The non-inline DPDK calls the backend makes, and the shim's own.
    const FUNCTIONS: &[&str] = &[
        "rte_eal_init",
        "rte_eal_cleanup",
        "rte_eal_get_runtime_dir",
        "rte_strerror",
        "rte_socket_id",
        "rte_thread_register",
        "rte_thread_unregister",
        "rte_eth_dev_count_avail",
        "rte_eth_dev_get_port_by_name",
        "rte_eth_dev_get_name_by_port",
        "rte_eth_dev_is_valid_port",
        "rte_eth_dev_socket_id",
        "rte_eth_dev_stop",
        "rte_eth_dev_close",
        "rte_eth_stats_get",
        "rte_pktmbuf_pool_create",
        "rte_pktmbuf_free_bulk",
        "rte_mempool_free",
        "rte_mempool_avail_count",
        "rte_mempool_in_use_count",
        "rte_mbuf_dyn_rx_timestamp_register",
        "mtn_.*",
    ];

    pub fn build() {
        println!("cargo:rerun-if-changed={SHIM}");
        println!("cargo:rerun-if-changed={SHIM_H}");
        // Emits the link flags (every rte_* library; PMDs are plugins EAL loads at run time).
        let lib = pkg_config::Config::new()
            .atleast_version("22.11")
            .probe("libdpdk")
            .unwrap_or_else(|e| {
                panic!("the `dpdk` feature needs DPDK (apt-get install libdpdk-dev): {e}")
            });
        // The raw cflags carry `-include rte_config.h` and `-march=...`, which DPDK's headers
        // need and the crate's include_paths leave out.
        let out = Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("running pkg-config --cflags libdpdk");
        assert!(out.status.success(), "pkg-config --cflags libdpdk failed");
        let cflags: Vec<String> = String::from_utf8(out.stdout)
            .expect("pkg-config prints text")
            .split_whitespace()
            .map(str::to_string)
            .collect();

        let mut cc = cc::Build::new();
        cc.file(SHIM).opt_level(3).warnings(true);
        for path in &lib.include_paths {
            cc.include(path);
        }
        for f in &cflags {
            if !f.starts_with("-I") {
                cc.flag(f);
            }
        }
        cc.compile("mtnode_dpdk_shim");

        let mut header = String::new();
        for h in [
            "rte_eal.h",
            "rte_errno.h",
            "rte_lcore.h",
            "rte_ethdev.h",
            "rte_mbuf.h",
            "rte_mbuf_dyn.h",
            "rte_mempool.h",
        ] {
            header.push_str(&format!("#include <{h}>\n"));
        }
        header.push_str(&format!(
            "#include \"{}/{SHIM_H}\"\n",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
        ));
        let mut b = bindgen::Builder::default()
            .header_contents("mtnode_dpdk.h", &header)
            .clang_args(&cflags)
            .allowlist_type("rte_eth_stats")
            .allowlist_type("mtn_mbuf_info")
            .allowlist_var("RTE_MAX_ETHPORTS")
            .allowlist_var("RTE_ETH_NAME_MAX_LEN")
            // rte_mbuf and rte_mempool are only ever handled by pointer: their layout stays on
            // the C side, and src/io/dpdk declares them opaque.
            .allowlist_recursively(false)
            .layout_tests(false)
            // DPDK's comments hold C examples that rustdoc would run as doctests.
            .generate_comments(false)
            .derive_debug(true)
            .derive_default(true)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
        for f in FUNCTIONS {
            b = b.allowlist_function(f);
        }
        let bindings = b.generate().expect("bindgen over DPDK's headers");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        bindings
            .write_to_file(out.join("dpdk_bindings.rs"))
            .expect("writing the DPDK bindings");
    }
}
