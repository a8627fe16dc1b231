//! With the `grpc` feature: generates the client of DTM's `dtmgimp.Dtm` and of etcd's `KV.Range`
//! (`etcd://` server URLs) from `proto/` and the
//! tests' branch service `busi.Busi` from `tests/proto/` (integration tests cannot have a build
//! script of their own) with protox, a protobuf compiler written in Rust, so a plain
//! `cargo build` needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "grpc")]
    {
        println!("cargo:rerun-if-changed=proto");
        println!("cargo:rerun-if-changed=tests/proto");
        let dtm = protox::compile(["dtmgimp.proto"], ["proto"])?;
        tonic_prost_build::configure()
            .build_server(false)
            .build_client(true)
            .compile_fds(dtm)?;
        let etcd = protox::compile(["etcd.proto"], ["proto"])?;
        tonic_prost_build::configure()
            .build_server(false)
            .build_client(true)
            .compile_fds(etcd)?;
        let busi = protox::compile(["busi.proto"], ["tests/proto"])?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .compile_fds(busi)?;
    }
    Ok(())
}
