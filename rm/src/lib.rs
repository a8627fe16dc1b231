//! The seata-rs RM client and AT mode.
