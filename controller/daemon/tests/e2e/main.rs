//! End-to-end tests: the real `wyvernd` and `wyvern` binaries, talked to over HTTP and
//! driven by the real `openstack` CLI. One test binary (one link) for all of them.

mod binaries;
mod common;
mod durability;
mod keystone;
mod lifecycle;
mod multi_api;
mod openstack;
mod query;
mod tempest;
mod validation;
