//! Generates the servers of the shop's gRPC flavour from `proto/shop.proto` with protox, a
//! protobuf compiler written in Rust, so a plain `cargo build` needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let shop = protox::compile(["shop.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .compile_fds(shop)?;
    Ok(())
}
