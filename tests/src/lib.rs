//! Test harness: starts the real seata-tc binary.
