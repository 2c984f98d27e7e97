//! Compiles `proto/` without a system `protoc` (protox is a Rust protobuf compiler).
//!
//! Outputs, all in `OUT_DIR`, never in the source tree:
//! - `builtin.binpb`: google/api, google/rpc and every well-known type. Built into the gateway
//!   so that users' descriptors need not carry them and `.proto` files can import them.
//! - `examples.binpb`: the example services, with imports and source info. `descriptors/`
//!   holds a committed copy; a test fails when the two differ.
//! - `testing.binpb`: the test and benchmark fixtures (bookstore, everything, catalog), same format.
//! - Rust code for those packages (prost messages, tonic servers and clients), used by the
//!   gateway (google.api.HttpRule), the examples and the tests.
//! - `peer/`: the bench catalog once more, as a team would generate it for a gateway written
//!   by hand (a tonic client, pbjson's serde impls over `pbjson-types`' well-known types), for
//!   the `handwritten_gateway` example the e2e bench compares protogate with.

use std::path::{Path, PathBuf};

const BUILTIN: &[&str] = &[
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/httpbody.proto",
    "google/rpc/code.proto",
    "google/rpc/error_details.proto",
    "google/rpc/status.proto",
    "google/protobuf/any.proto",
    "google/protobuf/api.proto",
    "google/protobuf/descriptor.proto",
    "google/protobuf/duration.proto",
    "google/protobuf/empty.proto",
    "google/protobuf/field_mask.proto",
    "google/protobuf/source_context.proto",
    "google/protobuf/struct.proto",
    "google/protobuf/timestamp.proto",
    "google/protobuf/type.proto",
    "google/protobuf/wrappers.proto",
];
const EXAMPLES: &[&str] = &["example/users/v1/users.proto", "example/orders/v1/orders.proto"];
const TESTING: &[&str] = &[
    "protogate/testing/v1/bookstore.proto",
    "protogate/testing/v1/everything.proto",
    "protogate/testing/v1/streams.proto",
    "protogate/bench/v1/catalog.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let builtin = compile(BUILTIN, false)?;
    std::fs::write(out.join("builtin.binpb"), builtin.encode_file_descriptor_set())?;
    let examples = compile(EXAMPLES, true)?;
    std::fs::write(out.join("examples.binpb"), examples.encode_file_descriptor_set())?;
    let testing = compile(TESTING, true)?;
    std::fs::write(out.join("testing.binpb"), testing.encode_file_descriptor_set())?;

    let all: Vec<&str> = BUILTIN.iter().chain(EXAMPLES).chain(TESTING).copied().collect();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(compile(&all, false)?.file_descriptor_set())?;
    handwritten_peer(&out.join("peer"))
}

fn handwritten_peer(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let catalog = compile(&["protogate/bench/v1/catalog.proto"], false)?.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .emit_rerun_if_changed(false)
        .out_dir(out)
        // pbjson-types stand for the well-known types (they carry the serde impls).
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(catalog.clone())?;
    pbjson_build::Builder::new()
        .register_descriptors(&prost::Message::encode_to_vec(&catalog))?
        .out_dir(out)
        .build(&[".protogate.bench.v1"])?;
    Ok(())
}

fn compile(files: &[&str], source_info: bool) -> Result<protox::Compiler, protox::Error> {
    let mut compiler = protox::Compiler::new([Path::new("proto")])?;
    compiler.include_imports(true).include_source_info(source_info);
    compiler.open_files(files)?;
    Ok(compiler)
}
