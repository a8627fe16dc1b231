//! Crash points for tests (tikv's pattern): named `fail::fail_point!`s at the moments where a
//! crash matters, compiled in only with the cargo feature `failpoints` and configured at start
//! from the `FAILPOINTS` environment variable (`name=action;name2=action`, the `fail` crate's
//! syntax, e.g. `tc::decision::after_append=panic` or `tc::file::group_commit=2*off->panic`).
//!
//! A panic inside a tokio task would only end that task, not the process, so when `FAILPOINTS`
//! is set every panic aborts the process (SIGABRT): a failpoint's `panic` is a real crash, with
//! nothing flushed or answered after it.
//!
//! The points:
//!
//! | name | where |
//! |---|---|
//! | `tc::decision::after_append` | a commit/rollback decision is durable, the TM not answered |
//! | `tc::commit::before_branch_commit` | commit decided, no BranchCommit sent yet |
//! | `tc::phase_two::between_branches` | one branch's phase two done and forgotten, the next not sent |
//! | `tc::file::group_commit` | a group-commit batch written, not synced, waiters not answered |
//! | `tc::file::snapshot` | compaction's snapshot half written, not yet renamed into place |

/// Configures the failpoints from `FAILPOINTS`; keep the returned value for the process's
/// life. Without the `failpoints` feature this does nothing.
pub fn setup() -> Option<Box<dyn std::any::Any>> {
    #[cfg(feature = "failpoints")]
    {
        if std::env::var_os("FAILPOINTS").is_some_and(|v| !v.is_empty()) {
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                default(info);
                std::process::abort();
            }));
            return Some(Box::new(fail::FailScenario::setup()));
        }
    }
    None
}

/// Evaluates the crash point `name` (one of the table above): with the feature and a
/// configuration for it, its action runs here; otherwise nothing happens.
#[inline]
pub fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
