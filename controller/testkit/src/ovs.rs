//! Open vSwitch harness: a private ovsdb-server and ovs-vswitchd per test.
