//! Generates the gRPC code of `proto/` (DTM's `dtmgimp.Dtm` and the part of etcd's API the TC
//! uses) with protox, a protobuf compiler written in Rust: a plain `cargo build` needs no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["dtmgimp.proto", "etcd.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(files)?;
    Ok(())
}
