//! In-memory sessions: a [`GlobalSession`] per global transaction with its
//! [`BranchSession`]s, and the pure lifecycle rules in [`state`].
//!
//! The coordinator keeps sessions in a `DashMap` keyed by transaction id; each session guards
//! its mutable part with its own `std` mutex, which is never held across an `.await`.

pub mod branch;
pub mod global;
pub mod state;

pub use branch::BranchSession;
pub use global::{GlobalSession, SessionState};
