//! The seata-rs TM client: begin, commit and roll back global transactions, and carry the XID.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod context;

pub use context::{current_xid, with_xid, XID_HEADER};
