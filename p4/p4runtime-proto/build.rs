//! Compiles the P4Runtime .proto files (needs `protoc`; google/protobuf/any.proto comes with it).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/p4/v1/p4runtime.proto",
        "proto/p4/v1/p4data.proto",
        "proto/p4/config/v1/p4info.proto",
        "proto/p4/config/v1/p4types.proto",
        "proto/google/rpc/status.proto",
        "proto/google/rpc/code.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The text-format reader encodes by these descriptors.
        .file_descriptor_set_path(out.join("p4runtime_descriptor.bin"))
        .compile_protos(&protos, &["proto", "/usr/include"])?;
    Ok(())
}
