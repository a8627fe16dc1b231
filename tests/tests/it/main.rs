//! Integration tests against the real `seata-tc` binary (and MariaDB), one module per area,
//! in one test binary to save link time.

mod admin;
mod admin_dirty_e2e;
mod at;
mod chaos;
mod config_paths;
mod crash_points;
mod db_faults;
mod dtm;
mod dtm_grpc;
mod dtm_grpc_python;
mod dtm_python;
mod durability;
mod failure_paths;
mod ha;
mod hardening;
mod metrics;
mod shop;
mod split_brain;
mod spread;
mod tc;
mod tcc;
mod tm;
mod transfer_modes;
mod xa;
