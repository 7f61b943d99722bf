//! wyvernd with `--p4runtime` against the real wyvern-p4d: the topology of the OpenFlow
//! tests created through the API, its ports bound through OVSDB (the binding source; the
//! private Open vSwitch gets the OpenFlow side as well), the P4 target's tables read back
//! over P4Runtime, and real packets through the target's DPDK pcap ports.
//!
//! wyvern-p4d is another package's binary: `WYVERN_TEST_WYVERN_P4D`, else the one a
//! workspace build made, else it is built (see `wyvern_testkit::cascade::workspace_bin`).

#[allow(dead_code)]
#[path = "../ovs/common.rs"]
mod common;
mod control;
mod forwarding;
mod harness;
#[allow(dead_code)]
#[path = "../ovs/packet.rs"]
mod packet;
