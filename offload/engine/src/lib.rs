//! Software match-action tables that execute the compiled pipeline on raw packets: the one
//! engine behind the DPDK fast path and wyvern-p4d.
//!
//! - [`wire`]: length-checked views over Ethernet/ARP/IPv4/UDP/ICMP and in-place rewriters.
//! - [`key`]: match keys (field, value, mask) for exact, prefix and ternary matches.
//! - [`Engine`]: one table per stage (tuple-space classifiers, see [`table`]), entries with
//!   direct counters, flood groups, and [`Engine::process`] for one frame.
//! - [`packet`]: frames to and from the IR interpreter's abstract packet.

pub mod cache;
pub mod engine;
pub mod key;
pub mod packet;
pub mod table;
pub mod wire;

pub use engine::{
    CacheStats, Counters, DropCause, Engine, EngineError, Entry, EntryId, EntryRef, Meta, Out,
    Verdict, VerdictRun,
};
pub use key::{FieldMatch, PacketKey};
pub use table::{TableKind, TableShape};
