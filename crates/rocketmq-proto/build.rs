//! Build script of `fjord-rocketmq-proto`.
//!
//! Compiles `proto/apache/rocketmq/v2/*.proto` with `protox` (a protobuf
//! compiler written in Rust, which also bundles the `google/protobuf`
//! well-known types), so no `protoc` has to be installed. The resulting
//! `FileDescriptorSet` is handed to `tonic-prost-build`, which writes the prost
//! messages and the tonic client and server for package `apache.rocketmq.v2`
//! into `OUT_DIR`. The encoded descriptor set is also written to `OUT_DIR` for
//! gRPC reflection.

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;

/// The interface files, relative to the `proto/` include directory.
const PROTOS: [&str; 3] =
    ["apache/rocketmq/v2/definition.proto", "apache/rocketmq/v2/service.proto", "apache/rocketmq/v2/admin.proto"];

/// Name, in `OUT_DIR`, of the encoded `FileDescriptorSet`.
const DESCRIPTOR_FILE: &str = "apache.rocketmq.v2.bin";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let include = manifest_dir.join("proto");

    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }

    let mut compiler = protox::Compiler::new([&include])?;
    // Source info carries the .proto comments into the generated rustdoc;
    // imports make the descriptor set self-contained (google/protobuf/*).
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;

    fs::write(out_dir.join(DESCRIPTOR_FILE), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(compiler.file_descriptor_set())?;

    Ok(())
}
