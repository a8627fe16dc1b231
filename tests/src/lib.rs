//! Harness for the cross-crate integration tests: the real `seata-tc` process ([`tc`]) and
//! protocol-level TM/RM test clients ([`clients`]).

pub mod clients;
pub mod tc;
