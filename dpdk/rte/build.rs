//! Locates DPDK 22.11 with pkg-config, compiles the C shim for DPDK's static inline
//! functions and generates tight bindgen bindings for the API the crate wraps.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const INSTALL_HINT: &str = "the rte crate needs DPDK 22.11 development files: \
     apt-get install -y dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev";

/// Functions the safe wrappers call; anything else stays out of the bindings (build time).
const FUNCTIONS: &[&str] = &[
    "rte_eal_init",
    "rte_eal_cleanup",
    "rte_strerror",
    "rte_socket_id",
    "rte_eth_dev_count_avail",
    "rte_eth_dev_is_valid_port",
    "rte_eth_dev_info_get",
    "rte_eth_dev_get_name_by_port",
    "rte_eth_dev_socket_id",
    "rte_eth_dev_configure",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_dev_close",
    "rte_eth_stats_get",
    "rte_eth_stats_reset",
    "rte_eth_macaddr_get",
    "rte_eth_promiscuous_enable",
    "rte_eth_promiscuous_disable",
    "rte_eth_promiscuous_get",
    "rte_pktmbuf_pool_create",
    "rte_mempool_free",
    "rte_mempool_avail_count",
    "rte_mempool_in_use_count",
    "rte_flow_validate",
    "rte_flow_create",
    "rte_flow_destroy",
    "rte_flow_flush",
    "rte_flow_query",
    "rte_flow_isolate",
    "wyv_.*",
];

/// Item/action configuration structs the typed rule descriptions lower into.
const TYPES: &[&str] = &[
    "rte_flow_attr",
    "rte_flow_item",
    "rte_flow_action",
    "rte_flow_error",
    "rte_flow_item_eth",
    "rte_flow_item_ipv4",
    "rte_flow_item_udp",
    "rte_flow_item_vxlan",
    "rte_flow_item_port_id",
    "rte_flow_item_ethdev",
    "rte_flow_action_queue",
    "rte_flow_action_jump",
    "rte_flow_action_set_mac",
    "rte_flow_action_port_id",
    "rte_flow_action_ethdev",
    "rte_flow_action_vxlan_encap",
    "rte_flow_action_count",
    "rte_flow_query_count",
    // Laid out in Rust so the per-frame accessors read fields with no FFI call.
    "rte_mbuf",
];

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!("failed to find libdpdk >= 22.11 with pkg-config ({e}); {INSTALL_HINT}"),
    };
    let cflags = dpdk_cflags();

    let mut shim = cc::Build::new();
    shim.file("csrc/shim.c")
        .include("csrc")
        .opt_level(3)
        .warnings(false);
    for p in &lib.include_paths {
        shim.include(p);
    }
    for f in &cflags {
        shim.flag(f);
    }
    shim.compile("wyv_rte_shim");

    let mut builder = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_arg("-Icsrc")
        .clang_args(cflags.iter())
        .clang_args(
            lib.include_paths
                .iter()
                .map(|p| format!("-I{}", p.display())),
        )
        .use_core()
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(false)
        .generate_comments(false)
        .newtype_enum("rte_flow_item_type")
        .newtype_enum("rte_flow_action_type")
        .newtype_enum("rte_flow_error_type")
        .opaque_type("rte_mempool")
        .opaque_type("rte_flow")
        .allowlist_recursively(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    builder = builder
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_ETHER_ADDR_LEN")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_ETH_NAME_MAX_LEN")
        .allowlist_var("SOCKET_ID_ANY");
    let bindings = builder.generate().unwrap_or_else(|e| {
        panic!("failed to generate DPDK bindings with bindgen ({e}); {INSTALL_HINT}")
    });
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("failed to write bindings.rs to OUT_DIR");
}

/// `pkg-config --cflags libdpdk` split into arguments: DPDK needs `-include rte_config.h`
/// and its `-march`, which the pkg-config crate does not report.
fn dpdk_cflags() -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| {
            panic!("failed to run pkg-config --cflags libdpdk ({e}); {INSTALL_HINT}")
        });
    if !out.status.success() {
        panic!(
            "failed to get libdpdk cflags: {}; {INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|f| !f.starts_with("-I"))
        .map(str::to_owned)
        .collect()
}
