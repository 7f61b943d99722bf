//! RFC 7047 OVSDB client: creates br-int, monitors interfaces and binds logical ports to ofports.
//!
//! Written here rather than taken from crates.io: the two Rust OVSDB clients published there
//! (`ovsdb` 0.0.x, generated-model based and marked work in progress; `ovsdb-client` 0.0.1,
//! a single release built on jsonrpsee) neither reconnect nor resync monitors, and the
//! protocol subset wyvern needs (transact, monitor, echo) is small. Layers:
//! - [`codec`]: framing of the delimiter-less JSON-RPC stream, never panics on bad input;
//! - [`client`]: one connection (calls by id, echo answered, notifications);
//! - [`ops`]: typed transaction operations and datum encodings;
//! - [`vswitch`]: `ensure_bridge`, `add_port`, `del_port`, `chassis_info`;
//! - [`monitor`]: reconnecting Interface monitor (snapshot after every reconnect);
//! - [`bindings`]: logical port id -> ofport + link state, with Bound/Unbound/Changed events.

pub mod bindings;
pub mod client;
pub mod codec;
pub mod monitor;
pub mod ops;
pub mod vswitch;

pub use bindings::{Binding, BindingEvent, BindingWatch, Bindings};
pub use client::{Client, ClientError, Notification, Notifications, Remote};
pub use monitor::{
    monitor_interfaces, Backoff, InterfaceChange, InterfaceEvent, InterfaceMonitor, InterfaceState,
};
pub use vswitch::{
    add_port, chassis_info, del_port, ensure_bridge, BridgeConfig, BridgeOutcome, ChassisInfo,
    DatapathType, FailMode, InterfaceType, OfVersion, VswitchError,
};
