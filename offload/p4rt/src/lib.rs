//! The P4Runtime back end: IR flows to table entries resolved by name through P4Info, kept equal to the switch's tables.
//!
//! - [`index`]: the P4Info by name (ids come only from the P4Info the target runs).
//! - [`encode`]: P4Runtime canonical bytestrings with width checks.
//! - [`mapping`]: IR flow -> `TableEntry`, flood group -> multicast group (p4/README.md).
//! - [`state`]: desired versus installed and the diff between them.
//! - [`backend`]: the tonic client: arbitration, pipeline config, Read + diff + Write,
//!   packet I/O.
//! - [`packetio`]: PacketIn -> [`packetio::Punt`], replies -> PacketOut.

pub mod backend;
pub mod encode;
pub mod index;
pub mod mapping;
pub mod packetio;
pub mod state;

pub use backend::{
    BackendError, Mastership, P4rtBackend, P4rtConfig, PacketIn, PacketOut, SyncReport,
    UpdateFailure,
};
pub use index::{IndexError, P4InfoIndex};
pub use mapping::{MapError, Mapper};
pub use packetio::{Punt, PuntError};
pub use state::{Desired, Installed, Origin};
