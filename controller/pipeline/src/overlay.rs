//! The overlay between hosts: which remote chassis exist, where their tunnels end, and the
//! flows that carry a logical network across them (VXLAN, the network's VNI in the key).
//!
//! Every host compiles the whole distributed pipeline for what it holds; a port bound on
//! another chassis (its `binding:host_id`) is delivered through the tunnel to that chassis,
//! and packets from the tunnel enter the pipeline at `l2_lookup` (the sender already ran
//! port security, ARP, DHCP and routing: routing happens on the source host).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use uuid::Uuid;
use wyvern_model::{Port, Topology};

use crate::ir::{Action, Flow, Match, NetKey, Owner};
use crate::stage::Stage;

/// This host's view of the overlay; part of [`crate::Bindings`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    /// This host's chassis name: ports it binds carry it as `binding:host_id`.
    pub chassis: String,
    /// Every other live chassis with its tunnel endpoint.
    pub remotes: BTreeMap<String, Ipv4Addr>,
    /// The switch port of the flow-based tunnel (`remote_ip=flow`, `key=flow`).
    pub tunnel_ofport: u32,
}

/// The VNI of a network: the same on every host without coordination (24 bits of FNV-1a
/// over the UUID; 0 is never used). Collisions are possible in principle (birthday bound
/// over 2^24); see docs/multi-host.md.
pub fn vni_of(network: &Uuid) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in network.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let v = (h ^ (h >> 24)) & 0x00ff_ffff;
    if v == 0 {
        1
    } else {
        v
    }
}

impl Overlay {
    /// The tunnel endpoint of the chassis a port is bound to, if that is a live remote one.
    pub fn remote_of(&self, p: &Port) -> Option<Ipv4Addr> {
        if p.binding_host_id.is_empty() || p.binding_host_id == self.chassis {
            return None;
        }
        self.remotes.get(&p.binding_host_id).copied()
    }

    /// Remote chassis with an admin-up port on `network`, sorted and unique.
    pub fn remotes_on(&self, topo: &Topology, network: &Uuid) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = topo
            .network_ports(network)
            .filter(|p| p.admin_state_up && !p.is_router_interface())
            .filter_map(|p| self.remote_of(p))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The network's tunnel flows: decapsulated packets with its VNI enter `l2_lookup`.
    pub fn network_flows(&self, network: &Uuid, nk: NetKey, owner: Owner, out: &mut Vec<Flow>) {
        out.push(
            Flow::new(Stage::Classify, 100, owner)
                .m(Match::PhysInPort(self.tunnel_ofport))
                .m(Match::TunnelId(vni_of(network)))
                .a(Action::SetNetwork(nk))
                .a(Action::Goto(Stage::L2Lookup)),
        );
    }

    /// One tunnel copy per remote chassis with ports on the network (broadcast and unknown
    /// unicast reach only those). A packet that came from the tunnel is never sent back into
    /// it: the switch skips output to the in-port.
    pub fn flood_copies(&self, topo: &Topology, network: &Uuid) -> Vec<Action> {
        let vni = vni_of(network);
        self.remotes_on(topo, network)
            .into_iter()
            .map(|remote| Action::Tunnel {
                port: self.tunnel_ofport,
                vni,
                remote,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_is_24_bits_and_never_zero() {
        for i in 0..10_000u128 {
            let v = vni_of(&Uuid::from_u128(i * 0x9e37_79b9_7f4a_7c15));
            assert!(v > 0 && v < (1 << 24), "vni {v}");
        }
    }
}
