//! AT mode against a real MariaDB/MySQL (`SEATA_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306`). Each test makes and drops its own database; the TC is a
//! fake in-process `TcLink`.

mod commit;
mod dirty;
mod dml;
mod harness;
mod safety;
mod session;
mod sql_cases;
mod sql_support;
mod types;
