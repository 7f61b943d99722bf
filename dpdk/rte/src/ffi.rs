//! Raw bindgen output over DPDK 22.11 plus the C shim (`wyv_*`) for static inline functions.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
