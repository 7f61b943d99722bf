//! VMs end to end: a userspace Open vSwitch in its own network namespace, the real wyvernd
//! programming it, and network namespaces as VMs running the real ISC `dhclient` and
//! `ping`. Every test builds its own topology (two networks joined by one router, three
//! VMs) and tears it down in Drop guards.

mod bad_input;
mod lab;
mod leases;
mod routing;
