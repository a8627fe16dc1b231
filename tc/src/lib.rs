//! The seata-rs transaction coordinator.
