//! Lowering typed rules to `rte_flow_attr`, `rte_flow_item[]` and `rte_flow_action[]`.
//!
//! Every spec, mask and action configuration is moved to the heap once and owned by the
//! [`LoweredRule`] through [`Owned`]; the C arrays point into those allocations. Nothing in
//! a `LoweredRule` can be mutated or moved out after construction, its fields are private,
//! and flow calls take `&LoweredRule`, so the pointed-to storage outlives every call and is
//! freed exactly once, in `Drop`.

use std::ffi::c_void;
use std::ptr;

use super::types::{
    EthFields, FlowAction, FlowAttr, Ipv4Fields, Item, UdpFields, VxlanEncap, VxlanFields,
};
use crate::error::RteError;
use crate::ffi;

/// One heap allocation (a `Box<T>` or `Box<[T]>` turned into a raw pointer so that the
/// pointers handed to C stay valid however the owner moves).
struct Owned {
    ptr: *mut (),
    len: usize,
    drop_fn: unsafe fn(*mut (), usize),
}

unsafe fn drop_box<T>(p: *mut (), _len: usize) {
    // SAFETY: p came from Box::<T>::into_raw in Owned::new.
    drop(unsafe { Box::from_raw(p as *mut T) });
}

unsafe fn drop_slice<T>(p: *mut (), len: usize) {
    // SAFETY: p and len came from Box::<[T]>::into_raw in Owned::slice.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p as *mut T, len)) });
}

impl Owned {
    fn new<T>(value: T) -> (Owned, *mut T) {
        let p = Box::into_raw(Box::new(value));
        (
            Owned {
                ptr: p as *mut (),
                len: 1,
                drop_fn: drop_box::<T>,
            },
            p,
        )
    }

    fn slice<T>(values: Vec<T>) -> (Owned, *mut T) {
        let b: Box<[T]> = values.into_boxed_slice();
        let len = b.len();
        let p = Box::into_raw(b) as *mut T;
        (
            Owned {
                ptr: p as *mut (),
                len,
                drop_fn: drop_slice::<T>,
            },
            p,
        )
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: constructed by new/slice with the matching drop function; dropped once.
        unsafe { (self.drop_fn)(self.ptr, self.len) }
    }
}

/// A rule in DPDK's C form, owning all the storage its arrays point at. Pass it by
/// reference to [`crate::flow::FlowPort`] operations; drop it when done (a created flow
/// does not need it any more).
pub struct LoweredRule {
    attr: ffi::rte_flow_attr,
    items: Vec<ffi::rte_flow_item>,
    actions: Vec<ffi::rte_flow_action>,
    storage: Vec<Owned>,
}

// SAFETY: the rule exclusively owns everything its raw pointers reach.
unsafe impl Send for LoweredRule {}
// SAFETY: shared access only reads.
unsafe impl Sync for LoweredRule {}

impl LoweredRule {
    /// Lowers `attr`, `pattern` and `actions`; END terminators are added when missing.
    pub fn new(
        attr: &FlowAttr,
        pattern: &[Item],
        actions: &[FlowAction],
    ) -> Result<LoweredRule, RteError> {
        let mut rule = LoweredRule {
            attr: lower_attr(attr),
            items: Vec::with_capacity(pattern.len() + 1),
            actions: Vec::with_capacity(actions.len() + 1),
            storage: Vec::new(),
        };
        let items = lower_items(pattern, &mut rule.storage)?;
        rule.items = items;
        for (i, a) in actions.iter().enumerate() {
            if matches!(a, FlowAction::End) && i + 1 != actions.len() {
                return Err(RteError::FlowLowering {
                    reason: format!("END action at position {i} before the end of the action list"),
                });
            }
            let lowered = lower_action(a, &mut rule.storage)?;
            rule.actions.push(lowered);
        }
        if !matches!(actions.last(), Some(FlowAction::End)) {
            rule.actions.push(action(
                ffi::rte_flow_action_type::RTE_FLOW_ACTION_TYPE_END,
                ptr::null(),
            ));
        }
        Ok(rule)
    }

    /// The C attributes.
    pub fn attr(&self) -> &ffi::rte_flow_attr {
        &self.attr
    }

    /// The C pattern, END-terminated.
    pub fn items(&self) -> &[ffi::rte_flow_item] {
        &self.items
    }

    /// The C actions, END-terminated.
    pub fn actions(&self) -> &[ffi::rte_flow_action] {
        &self.actions
    }
}

fn lower_attr(a: &FlowAttr) -> ffi::rte_flow_attr {
    let mut attr = ffi::rte_flow_attr {
        group: a.group,
        priority: a.priority,
        ..Default::default()
    };
    attr.set_ingress(a.ingress as u32);
    attr.set_egress(a.egress as u32);
    attr.set_transfer(a.transfer as u32);
    attr
}

fn item(
    type_: ffi::rte_flow_item_type,
    spec: *const c_void,
    mask: *const c_void,
) -> ffi::rte_flow_item {
    ffi::rte_flow_item {
        type_,
        spec,
        last: ptr::null(),
        mask,
    }
}

fn action(type_: ffi::rte_flow_action_type, conf: *const c_void) -> ffi::rte_flow_action {
    ffi::rte_flow_action { type_, conf }
}

/// Stores spec and mask on the heap, or NULL for both when the mask is all zero ("any").
fn spec_mask<T>(
    storage: &mut Vec<Owned>,
    any: bool,
    spec: T,
    mask: T,
) -> (*const c_void, *const c_void) {
    if any {
        return (ptr::null(), ptr::null());
    }
    let (o1, s) = Owned::new(spec);
    let (o2, m) = Owned::new(mask);
    storage.push(o1);
    storage.push(o2);
    (s as *const c_void, m as *const c_void)
}

fn lower_items(
    pattern: &[Item],
    storage: &mut Vec<Owned>,
) -> Result<Vec<ffi::rte_flow_item>, RteError> {
    use ffi::rte_flow_item_type as T;
    let mut out = Vec::with_capacity(pattern.len() + 1);
    for (i, it) in pattern.iter().enumerate() {
        let lowered = match it {
            Item::Eth { spec, mask } => {
                let (s, m) = spec_mask(
                    storage,
                    *mask == EthFields::default(),
                    c_eth(spec),
                    c_eth(mask),
                );
                item(T::RTE_FLOW_ITEM_TYPE_ETH, s, m)
            }
            Item::Ipv4 { spec, mask } => {
                let (s, m) = spec_mask(
                    storage,
                    *mask == Ipv4Fields::default(),
                    c_ipv4(spec),
                    c_ipv4(mask),
                );
                item(T::RTE_FLOW_ITEM_TYPE_IPV4, s, m)
            }
            Item::Udp { spec, mask } => {
                let (s, m) = spec_mask(
                    storage,
                    *mask == UdpFields::default(),
                    c_udp(spec),
                    c_udp(mask),
                );
                item(T::RTE_FLOW_ITEM_TYPE_UDP, s, m)
            }
            Item::Vxlan { spec, mask } => {
                if spec.vni > 0x00ff_ffff || mask.vni > 0x00ff_ffff {
                    return Err(RteError::FlowLowering {
                        reason: format!(
                            "VXLAN VNI {:#x} does not fit 24 bits",
                            spec.vni.max(mask.vni)
                        ),
                    });
                }
                let (s, m) = spec_mask(
                    storage,
                    *mask == VxlanFields::default(),
                    c_vxlan(spec),
                    c_vxlan(mask),
                );
                item(T::RTE_FLOW_ITEM_TYPE_VXLAN, s, m)
            }
            Item::PortId { id } => {
                let (s, m) = spec_mask(
                    storage,
                    false,
                    ffi::rte_flow_item_port_id { id: *id },
                    ffi::rte_flow_item_port_id { id: u32::MAX },
                );
                item(T::RTE_FLOW_ITEM_TYPE_PORT_ID, s, m)
            }
            Item::RepresentedPort { ethdev_port_id } => {
                let (s, m) = spec_mask(
                    storage,
                    false,
                    ffi::rte_flow_item_ethdev {
                        port_id: *ethdev_port_id,
                    },
                    ffi::rte_flow_item_ethdev { port_id: u16::MAX },
                );
                item(T::RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT, s, m)
            }
            Item::End => {
                if i + 1 != pattern.len() {
                    return Err(RteError::FlowLowering {
                        reason: format!("END item at position {i} before the end of the pattern"),
                    });
                }
                item(T::RTE_FLOW_ITEM_TYPE_END, ptr::null(), ptr::null())
            }
        };
        out.push(lowered);
    }
    if !matches!(pattern.last(), Some(Item::End)) {
        out.push(item(T::RTE_FLOW_ITEM_TYPE_END, ptr::null(), ptr::null()));
    }
    Ok(out)
}

fn lower_action(
    a: &FlowAction,
    storage: &mut Vec<Owned>,
) -> Result<ffi::rte_flow_action, RteError> {
    use ffi::rte_flow_action_type as A;
    fn conf<T>(storage: &mut Vec<Owned>, v: T) -> *const c_void {
        let (o, p) = Owned::new(v);
        storage.push(o);
        p as *const c_void
    }
    Ok(match a {
        FlowAction::Queue { index } => action(
            A::RTE_FLOW_ACTION_TYPE_QUEUE,
            conf(storage, ffi::rte_flow_action_queue { index: *index }),
        ),
        FlowAction::Drop => action(A::RTE_FLOW_ACTION_TYPE_DROP, ptr::null()),
        FlowAction::Jump { group } => action(
            A::RTE_FLOW_ACTION_TYPE_JUMP,
            conf(storage, ffi::rte_flow_action_jump { group: *group }),
        ),
        FlowAction::SetMacSrc(mac) => action(
            A::RTE_FLOW_ACTION_TYPE_SET_MAC_SRC,
            conf(storage, ffi::rte_flow_action_set_mac { mac_addr: mac.0 }),
        ),
        FlowAction::SetMacDst(mac) => action(
            A::RTE_FLOW_ACTION_TYPE_SET_MAC_DST,
            conf(storage, ffi::rte_flow_action_set_mac { mac_addr: mac.0 }),
        ),
        FlowAction::DecTtl => action(A::RTE_FLOW_ACTION_TYPE_DEC_TTL, ptr::null()),
        FlowAction::PortId { id, original } => {
            let mut c = ffi::rte_flow_action_port_id {
                id: *id,
                ..Default::default()
            };
            c.set_original(*original as u32);
            action(A::RTE_FLOW_ACTION_TYPE_PORT_ID, conf(storage, c))
        }
        FlowAction::RepresentedPort { ethdev_port_id } => action(
            A::RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT,
            conf(
                storage,
                ffi::rte_flow_action_ethdev {
                    port_id: *ethdev_port_id,
                },
            ),
        ),
        FlowAction::VxlanEncap(encap) => {
            if encap.vni > 0x00ff_ffff {
                return Err(RteError::FlowLowering {
                    reason: format!("VXLAN VNI {:#x} does not fit 24 bits", encap.vni),
                });
            }
            let definition = encap_definition(encap, storage);
            action(
                A::RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP,
                conf(storage, ffi::rte_flow_action_vxlan_encap { definition }),
            )
        }
        FlowAction::VxlanDecap => action(A::RTE_FLOW_ACTION_TYPE_VXLAN_DECAP, ptr::null()),
        FlowAction::Count { id } => action(
            A::RTE_FLOW_ACTION_TYPE_COUNT,
            conf(storage, ffi::rte_flow_action_count { id: *id }),
        ),
        FlowAction::End => action(A::RTE_FLOW_ACTION_TYPE_END, ptr::null()),
    })
}

/// The eth / ipv4 / udp / vxlan / end item list a VXLAN_ENCAP action pushes (specs only,
/// as the encap definition needs no masks).
fn encap_definition(e: &VxlanEncap, storage: &mut Vec<Owned>) -> *mut ffi::rte_flow_item {
    use ffi::rte_flow_item_type as T;
    fn spec<V>(storage: &mut Vec<Owned>, v: V) -> *const c_void {
        let (o, p) = Owned::new(v);
        storage.push(o);
        p as *const c_void
    }
    let eth = c_eth(&EthFields {
        dst: e.eth_dst,
        src: e.eth_src,
        ether_type: 0x0800,
    });
    let mut ipv4 = c_ipv4(&Ipv4Fields {
        src: e.ip_src,
        dst: e.ip_dst,
        proto: 17,
        ttl: 64,
        tos: 0,
    });
    ipv4.hdr.__bindgen_anon_1.version_ihl = 0x45;
    let udp = c_udp(&UdpFields {
        src_port: e.udp_src,
        dst_port: e.udp_dst,
    });
    let mut vxlan = c_vxlan(&VxlanFields { vni: e.vni });
    // Writing a Copy field of a union is safe; 0x08 is the I flag (VNI valid).
    vxlan.__bindgen_anon_1.__bindgen_anon_1.flags = 0x08;
    let items = vec![
        item(T::RTE_FLOW_ITEM_TYPE_ETH, spec(storage, eth), ptr::null()),
        item(T::RTE_FLOW_ITEM_TYPE_IPV4, spec(storage, ipv4), ptr::null()),
        item(T::RTE_FLOW_ITEM_TYPE_UDP, spec(storage, udp), ptr::null()),
        item(
            T::RTE_FLOW_ITEM_TYPE_VXLAN,
            spec(storage, vxlan),
            ptr::null(),
        ),
        item(T::RTE_FLOW_ITEM_TYPE_END, ptr::null(), ptr::null()),
    ];
    let (o, p) = Owned::slice(items);
    storage.push(o);
    p
}

pub(crate) fn c_eth(f: &EthFields) -> ffi::rte_flow_item_eth {
    let mut e = ffi::rte_flow_item_eth::default();
    e.__bindgen_anon_1.hdr = ffi::rte_ether_hdr {
        dst_addr: ffi::rte_ether_addr {
            addr_bytes: f.dst.0,
        },
        src_addr: ffi::rte_ether_addr {
            addr_bytes: f.src.0,
        },
        ether_type: f.ether_type.to_be(),
    };
    e
}

pub(crate) fn c_ipv4(f: &Ipv4Fields) -> ffi::rte_flow_item_ipv4 {
    let mut i = ffi::rte_flow_item_ipv4::default();
    i.hdr.src_addr = u32::from(f.src).to_be();
    i.hdr.dst_addr = u32::from(f.dst).to_be();
    i.hdr.next_proto_id = f.proto;
    i.hdr.time_to_live = f.ttl;
    i.hdr.type_of_service = f.tos;
    i
}

pub(crate) fn c_udp(f: &UdpFields) -> ffi::rte_flow_item_udp {
    let mut u = ffi::rte_flow_item_udp::default();
    u.hdr.src_port = f.src_port.to_be();
    u.hdr.dst_port = f.dst_port.to_be();
    u
}

pub(crate) fn c_vxlan(f: &VxlanFields) -> ffi::rte_flow_item_vxlan {
    let mut v = ffi::rte_flow_item_vxlan::default();
    let b = f.vni.to_be_bytes();
    v.__bindgen_anon_1.__bindgen_anon_1 = ffi::rte_flow_item_vxlan__bindgen_ty_1__bindgen_ty_1 {
        flags: 0,
        rsvd0: [0; 3],
        vni: [b[1], b[2], b[3]],
        rsvd1: 0,
    };
    v
}
