//! Rust descriptions of rte_flow rules: plain values, no pointers.

use std::net::Ipv4Addr;

use crate::error::RteError;
use crate::MacAddr;

/// Rule attributes (`struct rte_flow_attr`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowAttr {
    /// Flow table (group); group 0 is where every packet starts.
    pub group: u32,
    /// Lower value wins within a group.
    pub priority: u32,
    pub ingress: bool,
    pub egress: bool,
    /// Applies in the switch domain (e-switch), between ports and representors.
    pub transfer: bool,
}

impl FlowAttr {
    /// An ingress rule in `group` with priority 0.
    pub fn ingress(group: u32) -> FlowAttr {
        FlowAttr {
            group,
            ingress: true,
            ..FlowAttr::default()
        }
    }
}

/// Ethernet header fields, used both as spec and as mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EthFields {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ether_type: u16,
}

impl EthFields {
    /// Mask with every field fully significant.
    pub const EXACT: EthFields = EthFields {
        dst: MacAddr::BROADCAST,
        src: MacAddr::BROADCAST,
        ether_type: 0xffff,
    };
}

/// IPv4 header fields, used both as spec and as mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Fields {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Next protocol (17 = UDP).
    pub proto: u8,
    pub ttl: u8,
    pub tos: u8,
}

impl Default for Ipv4Fields {
    fn default() -> Self {
        Ipv4Fields {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            proto: 0,
            ttl: 0,
            tos: 0,
        }
    }
}

/// UDP header fields, used both as spec and as mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UdpFields {
    pub src_port: u16,
    pub dst_port: u16,
}

/// VXLAN header fields, used both as spec and as mask (the VNI is 24 bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VxlanFields {
    pub vni: u32,
}

/// One pattern item. A mask of all zeroes means "any" and lowers to NULL spec and mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Item {
    Eth {
        spec: EthFields,
        mask: EthFields,
    },
    Ipv4 {
        spec: Ipv4Fields,
        mask: Ipv4Fields,
    },
    Udp {
        spec: UdpFields,
        mask: UdpFields,
    },
    Vxlan {
        spec: VxlanFields,
        mask: VxlanFields,
    },
    /// Traffic from DPDK port `id` (deprecated in DPDK for `RepresentedPort`, still used by
    /// older PMDs).
    PortId {
        id: u32,
    },
    /// Traffic entering the e-switch from the entity the ethdev port represents.
    RepresentedPort {
        ethdev_port_id: u16,
    },
    /// Ends the pattern; added by lowering when missing.
    End,
}

impl Item {
    /// Any Ethernet frame.
    pub fn eth_any() -> Item {
        Item::Eth {
            spec: EthFields::default(),
            mask: EthFields::default(),
        }
    }

    /// Ethernet frames to `dst`.
    pub fn eth_dst(dst: MacAddr) -> Item {
        Item::Eth {
            spec: EthFields {
                dst,
                ..EthFields::default()
            },
            mask: EthFields {
                dst: MacAddr::BROADCAST,
                ..EthFields::default()
            },
        }
    }

    /// Any IPv4 packet.
    pub fn ipv4_any() -> Item {
        Item::Ipv4 {
            spec: Ipv4Fields::default(),
            mask: Ipv4Fields::default(),
        }
    }

    /// IPv4 packets whose destination is in `addr/prefix_len` (an LPM entry).
    pub fn ipv4_dst_prefix(addr: Ipv4Addr, prefix_len: u8) -> Item {
        let mask = prefix_mask(prefix_len);
        Item::Ipv4 {
            spec: Ipv4Fields {
                dst: Ipv4Addr::from(u32::from(addr) & mask),
                ..Ipv4Fields::default()
            },
            mask: Ipv4Fields {
                dst: Ipv4Addr::from(mask),
                ..Ipv4Fields::default()
            },
        }
    }

    /// Any UDP datagram.
    pub fn udp_any() -> Item {
        Item::Udp {
            spec: UdpFields::default(),
            mask: UdpFields::default(),
        }
    }

    /// UDP datagrams to `port`.
    pub fn udp_dst(port: u16) -> Item {
        Item::Udp {
            spec: UdpFields {
                dst_port: port,
                ..UdpFields::default()
            },
            mask: UdpFields {
                dst_port: 0xffff,
                ..UdpFields::default()
            },
        }
    }

    /// VXLAN packets with `vni`.
    pub fn vxlan_vni(vni: u32) -> Item {
        Item::Vxlan {
            spec: VxlanFields { vni },
            mask: VxlanFields { vni: 0x00ff_ffff },
        }
    }
}

/// A network mask of `len` leading ones (len above 32 is clamped).
pub(crate) fn prefix_mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - l),
    }
}

/// Outer headers a VXLAN encapsulation pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanEncap {
    pub eth_src: MacAddr,
    pub eth_dst: MacAddr,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub udp_src: u16,
    /// Usually 4789.
    pub udp_dst: u16,
    pub vni: u32,
}

/// One action. Lowering appends `End` when missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowAction {
    /// Deliver to RX queue `index`.
    Queue {
        index: u16,
    },
    Drop,
    /// Continue in flow group `group`.
    Jump {
        group: u32,
    },
    SetMacSrc(MacAddr),
    SetMacDst(MacAddr),
    DecTtl,
    /// Send to DPDK port `id` (deprecated in DPDK for `RepresentedPort`).
    PortId {
        id: u32,
        original: bool,
    },
    /// Send to the entity the ethdev port represents (e.g. a VF behind its representor).
    RepresentedPort {
        ethdev_port_id: u16,
    },
    VxlanEncap(VxlanEncap),
    VxlanDecap,
    /// Count hits and bytes; read with `FlowPort::query_count`.
    Count {
        id: u32,
    },
    End,
}

/// A whole rule, for callers that keep rules as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowRule {
    pub attr: FlowAttr,
    pub pattern: Vec<Item>,
    pub actions: Vec<FlowAction>,
}

impl FlowRule {
    /// Lowers to the C arrays (see [`crate::flow::LoweredRule`]).
    pub fn lower(&self) -> Result<crate::flow::LoweredRule, RteError> {
        crate::flow::LoweredRule::new(&self.attr, &self.pattern, &self.actions)
    }

    /// The `dpdk-testpmd` command line(s) creating this rule on `port`.
    pub fn to_testpmd(&self, port: u16) -> String {
        crate::flow::to_testpmd(port, &self.attr, &self.pattern, &self.actions)
    }
}
