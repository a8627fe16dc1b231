//! `seata-chaos`: is money conserved when things die? A run owns a `seata-tc` (or two sharing
//! MariaDB), starts worker processes that move money between two MySQL databases in AT-mode
//! (or, with `--modes`, mixed AT/TCC/XA) global transactions (some rolled back on purpose),
//! kills the TC and workers with `kill -9` at seeded random moments, and at the end checks the
//! money, the per-transfer outcomes and that nothing is left in `undo_log`, the TCC fence, XA
//! or the TC.
//!
//! - `args.rs` flags; `run.rs` the orchestrator; `faults.rs` the seeded fault plan;
//! - `worker.rs` the worker process (RM + TM, journals each transfer on stdout); `modes.rs`
//!   the AT/TCC/XA mix (`--modes`), its TCC actions and its leftovers;
//! - `journal.rs` the journal's line format and record; `bank.rs` the two databases;
//! - `procs.rs` the owned processes; `tc_state.rs` what the TC still holds; `check.rs` the
//!   invariants.

pub mod args;
pub mod bank;
pub mod check;
pub mod faults;
pub mod journal;
pub mod modes;
pub mod procs;
pub mod run;
pub mod tc_state;
pub mod worker;
