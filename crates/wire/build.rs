//! Generates the module <-> coordinator gRPC service from `proto/concord.proto` (needs
//! `protoc`; `scripts/lib.sh` installs it).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/concord.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/concord.proto"], &["proto"])?;
    Ok(())
}
