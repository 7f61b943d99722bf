//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod p4info_gen;
pub mod p4src;
