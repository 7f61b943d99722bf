//! Test harness: starts and stops the real processes (wyvernd, ovsdb-server, ovs-vswitchd,
//! network namespaces) that wyvern's tests run against, and waits on conditions with a
//! deadline instead of sleeping.
//!
//! Every process a harness starts is a child of the test (never `--detach`, which leaves
//! zombies on this kind of machine) and is stopped and reaped on `Drop`.

pub mod cascade;
pub mod etcd;
pub mod keystone;
pub mod netns;
pub mod openstack;
pub mod ovs;
pub mod pcap;
pub mod poll;
pub mod service;
pub mod venv;
pub mod wyvernd;
