//! End-to-end tests of wyvern-cascade with real processes: two bottom wyvernd sites, the
//! top wyvern-cascade, the real openstack CLI, OVS and dhclient for the datapath test.

mod cli;
mod common;
mod datapath;
mod failures;
mod lazy;
