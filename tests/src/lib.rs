//! Harness for the cross-crate integration tests: the real `seata-tc` process ([`tc`]) and
//! protocol-level TM/RM test clients ([`clients`]), throw-away MariaDB databases ([`mysql`]), and
//! a branch service plus client for the DTM HTTP mode ([`dtm`]), and the runner of the
//! Python clients' test programs ([`python`]).

pub mod clients;
pub mod db_store;
pub mod dtm;
pub mod etcd;
pub mod grpc_busi;
pub mod mysql;
pub mod private_mariadb;
pub mod process;
pub mod python;
pub mod tc;
