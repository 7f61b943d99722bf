//! wyvernd programming a real Open vSwitch: each test starts a private ovsdb-server and
//! ovs-vswitchd (dummy datapath) and the real wyvernd, builds a topology through the Neutron
//! API, and checks the switch with injected packets, traces and flow dumps.

mod common;
mod forwarding;
mod incremental;
mod packet;
mod resync;
