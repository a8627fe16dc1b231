//! Integration tests against the real `seata-tc` binary (and MariaDB), one module per area,
//! in one test binary to save link time.

mod at;
mod durability;
mod ha;
mod tc;
mod tm;
