//! OpenFlow 1.3 + Nicira extensions: typed wire codec, switch connection and ofctrl.
//!
//! - [`wire`]: the codec (zero-copy [`wire::Frame`] view + parsed [`wire::Message`]).
//! - [`conn`]: a listener the bridge connects to, and a [`conn::Switch`] handle with
//!   request/reply correlation, echo keepalive and packet-in delivery.
//! - [`ofctrl`]: desired versus installed flows and groups; sends only the difference, in
//!   bundles followed by a barrier.

pub mod conn;
pub mod ofctrl;
pub mod wire;

pub use conn::{ListenAddr, Listener, Switch, SwitchConfig, SwitchEvent};
pub use ofctrl::{
    Completion, CountersSnapshot, DesiredFlow, FlowKey, GroupSpec, Lanes, Ofctrl, OfctrlError,
    SyncReport, Update,
};
pub use wire::{Action, ControllerAction, Field, FieldRange, Instructions, MacAddr, Match};

use std::fmt;

/// An OpenFlow 1.3 port number (32 bits), with the reserved ports as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortNo(pub u32);

impl PortNo {
    pub const MAX: PortNo = PortNo(0xffff_ff00);
    pub const IN_PORT: PortNo = PortNo(0xffff_fff8);
    pub const TABLE: PortNo = PortNo(0xffff_fff9);
    pub const NORMAL: PortNo = PortNo(0xffff_fffa);
    pub const FLOOD: PortNo = PortNo(0xffff_fffb);
    pub const ALL: PortNo = PortNo(0xffff_fffc);
    pub const CONTROLLER: PortNo = PortNo(0xffff_fffd);
    pub const LOCAL: PortNo = PortNo(0xffff_fffe);
    pub const ANY: PortNo = PortNo(0xffff_ffff);

    /// Widens an OpenFlow 1.0 (16-bit) port number, mapping its reserved range.
    pub fn from_16(p: u16) -> PortNo {
        if p >= 0xff00 {
            PortNo(u32::from(p) | 0xffff_0000)
        } else {
            PortNo(u32::from(p))
        }
    }
}

impl fmt::Display for PortNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PortNo::IN_PORT => f.write_str("IN_PORT"),
            PortNo::TABLE => f.write_str("TABLE"),
            PortNo::NORMAL => f.write_str("NORMAL"),
            PortNo::FLOOD => f.write_str("FLOOD"),
            PortNo::ALL => f.write_str("ALL"),
            PortNo::CONTROLLER => f.write_str("CONTROLLER"),
            PortNo::LOCAL => f.write_str("LOCAL"),
            PortNo::ANY => f.write_str("ANY"),
            PortNo(n) => write!(f, "{n}"),
        }
    }
}
