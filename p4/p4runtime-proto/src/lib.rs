//! P4Runtime v1 messages and gRPC service (client and server), plus a protobuf text-format reader for P4Info files.
//!
//! The .proto files under `proto/` were written from the P4Runtime specification (v1.4) and
//! are checked field by field against the descriptors of the official `p4runtime` Python
//! package (`tests/python_wire.rs`). Generated modules follow the proto packages:
//! [`p4::v1`] (service, entities, stream messages), [`p4::config::v1`] (P4Info) and
//! [`google::rpc`] (Status, Code).

pub mod text;

/// The `p4` proto packages.
pub mod p4 {
    /// `p4.v1`: the P4Runtime service and its messages.
    pub mod v1 {
        tonic::include_proto!("p4.v1");
    }
    /// `p4.config.v1`: P4Info and P4 type descriptions.
    pub mod config {
        pub mod v1 {
            tonic::include_proto!("p4.config.v1");
        }
    }
}

/// The `google.rpc` proto package.
pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

/// The compiled descriptors of every message above (and google.protobuf.Any), as a
/// serialized `google.protobuf.FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/p4runtime_descriptor.bin"));

pub use p4::config::v1::P4Info;
pub use text::{parse_p4info, TextFormatError};
