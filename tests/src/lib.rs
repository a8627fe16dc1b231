//! Harness for the cross-crate integration tests: the real `seata-tc` process ([`tc`]) and
//! protocol-level TM/RM test clients ([`clients`]), and throw-away MariaDB databases ([`mysql`]).

pub mod clients;
pub mod db_store;
pub mod mysql;
pub mod tc;
