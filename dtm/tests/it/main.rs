//! Integration tests of `seata-dtm` against the real `seata-tc` binary (its DTM HTTP API, found
//! via `SEATA_TC_BIN` or the workspace target dir: `cargo build -p seata-tc` first) and MariaDB
//! (`SEATA_TEST_MYSQL_URL`, default `127.0.0.1:3306`, throw-away databases per test).

mod barrier;
mod client;
#[cfg(feature = "grpc")]
#[cfg(feature = "grpc")]
mod grpc;
mod harness;
mod msg;
mod saga;
mod tcc;
mod xa;
