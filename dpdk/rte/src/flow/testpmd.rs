//! Rendering rules in `dpdk-testpmd`'s flow command syntax, for operators and for
//! checking rules against a real driver with testpmd's `flow validate`.

use std::fmt::Write;
use std::net::Ipv4Addr;

use super::types::{EthFields, FlowAction, FlowAttr, Ipv4Fields, Item, UdpFields, VxlanFields};
use crate::MacAddr;

/// Which testpmd flow command to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestpmdVerb {
    Create,
    Validate,
}

impl TestpmdVerb {
    fn word(self) -> &'static str {
        match self {
            TestpmdVerb::Create => "create",
            TestpmdVerb::Validate => "validate",
        }
    }
}

/// The testpmd command(s) creating the rule on `port`, e.g.
/// `flow create 0 ingress group 1 pattern eth dst is 00:11:22:33:44:55 / ipv4 / end actions dec_ttl / port_id id 1 / end`.
/// A VXLAN encapsulation needs testpmd's global `set vxlan ...` first: that line precedes
/// the flow command, separated by a newline.
pub fn to_testpmd(port: u16, attr: &FlowAttr, items: &[Item], actions: &[FlowAction]) -> String {
    to_testpmd_verb(TestpmdVerb::Create, port, attr, items, actions)
}

/// As [`to_testpmd`], with the verb chosen (`flow validate` checks without installing).
pub fn to_testpmd_verb(
    verb: TestpmdVerb,
    port: u16,
    attr: &FlowAttr,
    items: &[Item],
    actions: &[FlowAction],
) -> String {
    let mut out = String::new();
    for a in actions {
        if let FlowAction::VxlanEncap(e) = a {
            let _ = writeln!(
                out,
                "set vxlan ip-version ipv4 vni {} udp-src {} udp-dst {} ip-src {} ip-dst {} eth-src {} eth-dst {}",
                e.vni, e.udp_src, e.udp_dst, e.ip_src, e.ip_dst, e.eth_src, e.eth_dst
            );
        }
    }
    let _ = write!(out, "flow {} {port}", verb.word());
    if attr.group != 0 {
        let _ = write!(out, " group {}", attr.group);
    }
    if attr.priority != 0 {
        let _ = write!(out, " priority {}", attr.priority);
    }
    if attr.ingress {
        out.push_str(" ingress");
    }
    if attr.egress {
        out.push_str(" egress");
    }
    if attr.transfer {
        out.push_str(" transfer");
    }
    out.push_str(" pattern");
    for it in items.iter().filter(|i| !matches!(i, Item::End)) {
        out.push(' ');
        render_item(&mut out, it);
        out.push_str(" /");
    }
    out.push_str(" end actions");
    for a in actions.iter().filter(|a| !matches!(a, FlowAction::End)) {
        out.push(' ');
        render_action(&mut out, a);
        out.push_str(" /");
    }
    out.push_str(" end");
    out
}

/// One field: nothing for a zero mask, `is` for a full mask, `spec`/`mask` otherwise.
fn field<V: std::fmt::Display + PartialEq + Default>(
    out: &mut String,
    name: &str,
    spec: V,
    mask: V,
    full: V,
) {
    if mask == V::default() {
        return;
    }
    if mask == full {
        let _ = write!(out, " {name} is {spec}");
    } else {
        let _ = write!(out, " {name} spec {spec} {name} mask {mask}");
    }
}

/// Ipv4Addr has no Default: render addresses through their u32 form's zero test.
fn addr_field(out: &mut String, name: &str, spec: Ipv4Addr, mask: Ipv4Addr) {
    let m = u32::from(mask);
    if m == 0 {
        return;
    }
    if m == u32::MAX {
        let _ = write!(out, " {name} is {spec}");
    } else {
        let _ = write!(out, " {name} spec {spec} {name} mask {mask}");
    }
}

struct Hex16(u16);
impl std::fmt::Display for Hex16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

fn render_item(out: &mut String, it: &Item) {
    match it {
        Item::Eth { spec, mask } => {
            out.push_str("eth");
            let EthFields {
                dst,
                src,
                ether_type,
            } = *spec;
            field(out, "dst", dst, mask.dst, MacAddr::BROADCAST);
            field(out, "src", src, mask.src, MacAddr::BROADCAST);
            if mask.ether_type != 0 {
                if mask.ether_type == 0xffff {
                    let _ = write!(out, " type is {}", Hex16(ether_type));
                } else {
                    let _ = write!(
                        out,
                        " type spec {} type mask {}",
                        Hex16(ether_type),
                        Hex16(mask.ether_type)
                    );
                }
            }
        }
        Item::Ipv4 { spec, mask } => {
            out.push_str("ipv4");
            let Ipv4Fields {
                src,
                dst,
                proto,
                ttl,
                tos,
            } = *spec;
            addr_field(out, "src", src, mask.src);
            addr_field(out, "dst", dst, mask.dst);
            field(out, "proto", proto, mask.proto, u8::MAX);
            field(out, "ttl", ttl, mask.ttl, u8::MAX);
            field(out, "tos", tos, mask.tos, u8::MAX);
        }
        Item::Udp { spec, mask } => {
            out.push_str("udp");
            let UdpFields { src_port, dst_port } = *spec;
            field(out, "src", src_port, mask.src_port, u16::MAX);
            field(out, "dst", dst_port, mask.dst_port, u16::MAX);
        }
        Item::Vxlan { spec, mask } => {
            out.push_str("vxlan");
            let VxlanFields { vni } = *spec;
            field(out, "vni", vni, mask.vni, 0x00ff_ffff);
        }
        Item::PortId { id } => {
            let _ = write!(out, "port_id id is {id}");
        }
        Item::RepresentedPort { ethdev_port_id } => {
            let _ = write!(out, "represented_port ethdev_port_id is {ethdev_port_id}");
        }
        Item::End => out.push_str("end"),
    }
}

fn render_action(out: &mut String, a: &FlowAction) {
    let _ = match a {
        FlowAction::Queue { index } => write!(out, "queue index {index}"),
        FlowAction::Drop => write!(out, "drop"),
        FlowAction::Jump { group } => write!(out, "jump group {group}"),
        FlowAction::SetMacSrc(mac) => write!(out, "set_mac_src mac_addr {mac}"),
        FlowAction::SetMacDst(mac) => write!(out, "set_mac_dst mac_addr {mac}"),
        FlowAction::DecTtl => write!(out, "dec_ttl"),
        FlowAction::PortId { id, original } => {
            if *original {
                write!(out, "port_id original 1 id {id}")
            } else {
                write!(out, "port_id id {id}")
            }
        }
        FlowAction::RepresentedPort { ethdev_port_id } => {
            write!(out, "represented_port ethdev_port_id {ethdev_port_id}")
        }
        FlowAction::VxlanEncap(_) => write!(out, "vxlan_encap"),
        FlowAction::VxlanDecap => write!(out, "vxlan_decap"),
        FlowAction::Count { id } => {
            if *id == 0 {
                write!(out, "count")
            } else {
                write!(out, "count identifier {id}")
            }
        }
        FlowAction::End => write!(out, "end"),
    };
}
