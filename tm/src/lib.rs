//! The seata-rs TM client.
