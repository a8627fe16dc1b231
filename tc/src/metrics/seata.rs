//! Counters and histograms of the Seata side (and the mode-wide transaction counters the DTM
//! engine also feeds), one process-wide instance reached through [`seata()`].
//!
//! Why a static: the store's writer thread, the coordinator and the dispatch all record into
//! it, and threading a handle through every constructor (and every test that builds one)
//! would buy nothing; a process serves one TC. Every label combination is resolved once, at
//! first use, into a plain `Counter`/[`Histogram`] handle in an array indexed by enums, so a
//! request pays an array index and a relaxed `fetch_add`, never a label hash or a lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use seata_protocol::{BranchStatus, BranchType, GlobalStatus};

use super::histogram::Histogram;

/// The transaction mode label (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// A Seata-protocol begin: its mode is known only once branches register.
    Seata,
    /// Only AT branches.
    At,
    /// Only TCC branches.
    Tcc,
    /// Only XA branches.
    Xa,
    /// Only saga branches (Seata), or a DTM saga.
    Saga,
    /// DTM msg.
    Msg,
    /// DTM TCC.
    DtmTcc,
    /// DTM XA.
    DtmXa,
    /// Branches of more than one type.
    Mixed,
    /// Ended without any branch.
    None,
}

impl Mode {
    const ALL: [Mode; 10] = [
        Mode::Seata,
        Mode::At,
        Mode::Tcc,
        Mode::Xa,
        Mode::Saga,
        Mode::Msg,
        Mode::DtmTcc,
        Mode::DtmXa,
        Mode::Mixed,
        Mode::None,
    ];

    fn label(self) -> &'static str {
        match self {
            Mode::Seata => "seata",
            Mode::At => "at",
            Mode::Tcc => "tcc",
            Mode::Xa => "xa",
            Mode::Saga => "saga",
            Mode::Msg => "msg",
            Mode::DtmTcc => "dtm-tcc",
            Mode::DtmXa => "dtm-xa",
            Mode::Mixed => "mixed",
            Mode::None => "none",
        }
    }

    /// The mode of a Seata session from the set of its branch types ([`branch_bit`]).
    pub fn of_branch_bits(bits: u8) -> Mode {
        match bits {
            0 => Mode::None,
            1 => Mode::At,
            2 => Mode::Tcc,
            4 => Mode::Saga,
            8 => Mode::Xa,
            _ => Mode::Mixed,
        }
    }

    /// The mode of a DTM transaction type (saga, msg, tcc, xa).
    pub fn of_dtm(trans_type: &str) -> Mode {
        match trans_type {
            "saga" => Mode::Saga,
            "msg" => Mode::Msg,
            "tcc" => Mode::DtmTcc,
            "xa" => Mode::DtmXa,
            _ => Mode::None,
        }
    }
}

/// One bit per branch type, for [`Mode::of_branch_bits`].
pub fn branch_bit(t: BranchType) -> u8 {
    1 << t.code().min(7)
}

/// How a transaction ended (`outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Committed (DTM: succeed).
    Committed,
    /// Rolled back on request (DTM: failed).
    RolledBack,
    /// Rolled back after its timeout.
    TimedOut,
    /// Commit or rollback failed for good (kept for an operator).
    Failed,
}

impl End {
    const ALL: [End; 4] = [End::Committed, End::RolledBack, End::TimedOut, End::Failed];

    fn label(self) -> &'static str {
        match self {
            End::Committed => "committed",
            End::RolledBack => "rolled_back",
            End::TimedOut => "timed_out",
            End::Failed => "failed",
        }
    }

    /// The end a final global status stands for (`None` for a status that is not final).
    pub fn of_status(s: GlobalStatus) -> Option<End> {
        match s {
            GlobalStatus::Committed | GlobalStatus::Finished => Some(End::Committed),
            GlobalStatus::Rollbacked => Some(End::RolledBack),
            GlobalStatus::TimeoutRollbacked => Some(End::TimedOut),
            GlobalStatus::CommitFailed
            | GlobalStatus::RollbackFailed
            | GlobalStatus::TimeoutRollbackFailed => Some(End::Failed),
            _ => None,
        }
    }
}

/// Phase two direction (`phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Branch commit.
    Commit,
    /// Branch rollback.
    Rollback,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Commit => "commit",
            Phase::Rollback => "rollback",
        }
    }
}

/// What an RM answered to phase two (`outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Done,
    Retryable,
    Unretryable,
    Other,
    /// No answer: no RM connected, timeout, closed connection.
    Error,
}

impl Answer {
    const ALL: [Answer; 5] = [
        Answer::Done,
        Answer::Retryable,
        Answer::Unretryable,
        Answer::Other,
        Answer::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Answer::Done => "done",
            Answer::Retryable => "retryable",
            Answer::Unretryable => "unretryable",
            Answer::Other => "other",
            Answer::Error => "error",
        }
    }

    fn of<E>(r: &Result<BranchStatus, E>) -> Answer {
        match r {
            Ok(BranchStatus::PhaseTwoCommitted | BranchStatus::PhaseTwoRollbacked) => Answer::Done,
            Ok(
                BranchStatus::PhaseTwoCommitFailedRetryable
                | BranchStatus::PhaseTwoRollbackFailedRetryable,
            ) => Answer::Retryable,
            Ok(
                BranchStatus::PhaseTwoCommitFailedUnretryable
                | BranchStatus::PhaseTwoRollbackFailedUnretryable,
            ) => Answer::Unretryable,
            Ok(_) => Answer::Other,
            Err(_) => Answer::Error,
        }
    }
}

/// A request served on the Seata RPC port (`request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Request {
    /// GlobalBegin.
    Begin,
    /// BranchRegister.
    Register,
    /// BranchReport.
    Report,
    /// GlobalCommit.
    Commit,
    /// GlobalRollback.
    Rollback,
    /// GlobalStatus.
    Status,
    /// GlobalLockQuery.
    LockQuery,
    /// GlobalReport.
    GlobalReport,
}

impl Request {
    const ALL: [Request; 8] = [
        Request::Begin,
        Request::Register,
        Request::Report,
        Request::Commit,
        Request::Rollback,
        Request::Status,
        Request::LockQuery,
        Request::GlobalReport,
    ];

    fn label(self) -> &'static str {
        match self {
            Request::Begin => "begin",
            Request::Register => "register",
            Request::Report => "report",
            Request::Commit => "commit",
            Request::Rollback => "rollback",
            Request::Status => "status",
            Request::LockQuery => "lock_query",
            Request::GlobalReport => "global_report",
        }
    }
}

const BRANCH_TYPES: [BranchType; 4] = [
    BranchType::At,
    BranchType::Tcc,
    BranchType::Saga,
    BranchType::Xa,
];

fn branch_label(t: BranchType) -> &'static str {
    match t {
        BranchType::At => "at",
        BranchType::Tcc => "tcc",
        BranchType::Saga => "saga",
        BranchType::Xa => "xa",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModeOutcome {
    mode: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseTwoLabels {
    branch_type: &'static str,
    phase: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabel {
    request: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// A MySQL store statement group (`op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatement {
    /// A writer's batch of session/branch statements, run in one database transaction.
    WriteBatch,
    /// The COMMIT of such a batch.
    Commit,
}

impl StoreStatement {
    const ALL: [StoreStatement; 2] = [StoreStatement::WriteBatch, StoreStatement::Commit];

    fn label(self) -> &'static str {
        match self {
            StoreStatement::WriteBatch => "write_batch",
            StoreStatement::Commit => "commit",
        }
    }
}

/// Off only to measure what the metrics cost (`[metrics] enabled = false`): the request
/// paths then skip every update.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the updates on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

#[inline]
fn on() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The Seata side's metrics; see the module docs.
#[derive(Debug)]
pub struct SeataMetrics {
    begun_family: Family<ModeLabel, Counter>,
    begun: [Counter; Mode::ALL.len()],
    finished_family: Family<ModeOutcome, Counter>,
    finished: [[Counter; End::ALL.len()]; Mode::ALL.len()],
    timeouts: Counter,
    phase_two_family: Family<PhaseTwoLabels, Counter>,
    /// [branch type][phase][answer].
    phase_two: [[[Counter; Answer::ALL.len()]; 2]; BRANCH_TYPES.len()],
    phase_two_seconds_family: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    phase_two_seconds: [Histogram; 2],
    retrying_family: Family<PhaseLabel, Counter>,
    retrying: [Counter; 2],
    retries_family: Family<PhaseLabel, Counter>,
    retries: [Counter; 2],
    lock_conflicts: Counter,
    request_family: Family<RequestLabel, Histogram, fn() -> Histogram>,
    requests: [Histogram; Request::ALL.len()],
    group_commit_batch: Histogram,
    fsync_seconds: Histogram,
    statement_family: Family<OpLabel, Histogram, fn() -> Histogram>,
    statements: [Histogram; StoreStatement::ALL.len()],
}

fn resolve<L, M, C, const N: usize>(family: &Family<L, M, C>, labels: [L; N]) -> [M; N]
where
    L: Clone + std::hash::Hash + Eq,
    M: Clone,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    labels.map(|l| family.get_or_create(&l).clone())
}

impl SeataMetrics {
    fn new() -> Self {
        let begun_family = Family::<ModeLabel, Counter>::default();
        let begun = resolve(
            &begun_family,
            Mode::ALL.map(|m| ModeLabel { mode: m.label() }),
        );
        let finished_family = Family::<ModeOutcome, Counter>::default();
        let finished = Mode::ALL.map(|m| {
            resolve(
                &finished_family,
                End::ALL.map(|e| ModeOutcome {
                    mode: m.label(),
                    outcome: e.label(),
                }),
            )
        });
        let phase_two_family = Family::<PhaseTwoLabels, Counter>::default();
        let phase_two = BRANCH_TYPES.map(|t| {
            [Phase::Commit, Phase::Rollback].map(|p| {
                resolve(
                    &phase_two_family,
                    Answer::ALL.map(|a| PhaseTwoLabels {
                        branch_type: branch_label(t),
                        phase: p.label(),
                        outcome: a.label(),
                    }),
                )
            })
        });
        let phases = [Phase::Commit, Phase::Rollback].map(|p| PhaseLabel { phase: p.label() });
        let latency: fn() -> Histogram = Histogram::latency;
        let phase_two_seconds_family = Family::new_with_constructor(latency);
        let phase_two_seconds = resolve(&phase_two_seconds_family, phases.clone());
        let retrying_family = Family::<PhaseLabel, Counter>::default();
        let retrying = resolve(&retrying_family, phases.clone());
        let retries_family = Family::<PhaseLabel, Counter>::default();
        let retries = resolve(&retries_family, phases);
        let request_family = Family::new_with_constructor(latency);
        let requests = resolve(
            &request_family,
            Request::ALL.map(|r| RequestLabel { request: r.label() }),
        );
        let statement_family = Family::new_with_constructor(latency);
        let statements = resolve(
            &statement_family,
            StoreStatement::ALL.map(|s| OpLabel { op: s.label() }),
        );
        SeataMetrics {
            begun_family,
            begun,
            finished_family,
            finished,
            timeouts: Counter::default(),
            phase_two_family,
            phase_two,
            phase_two_seconds_family,
            phase_two_seconds,
            retrying_family,
            retrying,
            retries_family,
            retries,
            lock_conflicts: Counter::default(),
            request_family,
            requests,
            group_commit_batch: Histogram::batch(),
            fsync_seconds: Histogram::latency(),
            statement_family,
            statements,
        }
    }

    /// Registers every metric in `registry` (whose prefix is `seata`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "global_transactions_begun",
            "Global transactions begun, by mode (Seata-protocol begins count as mode=seata: \
             their mode is known only once branches register)",
            self.begun_family.clone(),
        );
        registry.register(
            "global_transactions_finished",
            "Global transactions ended, by mode (from the branch types; DTM: its type) and outcome",
            self.finished_family.clone(),
        );
        registry.register(
            "global_timeouts",
            "Seata-protocol global transactions that timed out and began rolling back",
            self.timeouts.clone(),
        );
        registry.register(
            "branch_phase_two",
            "Phase-two requests sent to RMs, by branch type, phase and answer",
            self.phase_two_family.clone(),
        );
        registry.register(
            "branch_phase_two_seconds",
            "Time from sending a phase-two request to its answer (or failure)",
            self.phase_two_seconds_family.clone(),
        );
        registry.register(
            "global_retrying",
            "Global transactions that entered a phase-two retry status",
            self.retrying_family.clone(),
        );
        registry.register(
            "global_retries",
            "Phase-two passes run by the retry jobs",
            self.retries_family.clone(),
        );
        registry.register(
            "lock_conflicts",
            "Branch registrations refused because a row is locked by another transaction",
            self.lock_conflicts.clone(),
        );
        registry.register(
            "request_seconds",
            "Time to serve a Seata-protocol request, by request",
            self.request_family.clone(),
        );
        registry.register(
            "store_group_commit_batch",
            "Records per write (and fdatasync) of the file store's group commit",
            self.group_commit_batch.clone(),
        );
        registry.register(
            "store_fsync_seconds",
            "Time of one fdatasync of the file store",
            self.fsync_seconds.clone(),
        );
        registry.register(
            "store_statement_seconds",
            "Time of the MySQL store's statements, by kind",
            self.statement_family.clone(),
        );
    }

    /// A global transaction began.
    #[inline]
    pub fn begun(&self, mode: Mode) {
        if on() {
            if let Some(c) = self.begun.get(mode as usize) {
                c.inc();
            }
        }
    }

    /// A global transaction ended.
    #[inline]
    pub fn finished(&self, mode: Mode, end: End) {
        if on() {
            if let Some(c) = self
                .finished
                .get(mode as usize)
                .and_then(|row| row.get(end as usize))
            {
                c.inc();
            }
        }
    }

    /// A Begin session passed its timeout.
    #[inline]
    pub fn timed_out(&self) {
        if on() {
            self.timeouts.inc();
        }
    }

    /// A phase-two request was answered (or failed) after `took`.
    #[inline]
    pub fn phase_two<E>(
        &self,
        branch_type: BranchType,
        phase: Phase,
        answer: &Result<BranchStatus, E>,
        took: Duration,
    ) {
        if !on() {
            return;
        }
        let t = BRANCH_TYPES
            .iter()
            .position(|&b| b == branch_type)
            .unwrap_or(0);
        if let Some(c) = self
            .phase_two
            .get(t)
            .and_then(|p| p.get(phase as usize))
            .and_then(|a| a.get(Answer::of(answer) as usize))
        {
            c.inc();
        }
        if let Some(h) = self.phase_two_seconds.get(phase as usize) {
            h.observe_duration(took);
        }
    }

    /// A session entered CommitRetrying/RollbackRetrying (or an async-commit retry).
    #[inline]
    pub fn retrying(&self, phase: Phase) {
        if on() {
            if let Some(c) = self.retrying.get(phase as usize) {
                c.inc();
            }
        }
    }

    /// A retry job ran a phase-two pass.
    #[inline]
    pub fn retried(&self, phase: Phase) {
        if on() {
            if let Some(c) = self.retries.get(phase as usize) {
                c.inc();
            }
        }
    }

    /// A registration was refused for a row lock.
    #[inline]
    pub fn lock_conflict(&self) {
        if on() {
            self.lock_conflicts.inc();
        }
    }

    /// A request was served in `took`.
    #[inline]
    pub fn request(&self, request: Request, took: Duration) {
        if on() {
            if let Some(h) = self.requests.get(request as usize) {
                h.observe_duration(took);
            }
        }
    }

    /// The file store wrote a batch of `records` records.
    #[inline]
    pub fn group_commit(&self, records: u64) {
        if on() {
            self.group_commit_batch.observe(records);
        }
    }

    /// The file store's fdatasync took `took`.
    #[inline]
    pub fn fsync(&self, took: Duration) {
        if on() {
            self.fsync_seconds.observe_duration(took);
        }
    }

    /// A MySQL store statement (group) took `took`.
    #[inline]
    pub fn statement(&self, kind: StoreStatement, took: Duration) {
        if on() {
            if let Some(h) = self.statements.get(kind as usize) {
                h.observe_duration(took);
            }
        }
    }
}

static SEATA: LazyLock<SeataMetrics> = LazyLock::new(SeataMetrics::new);

/// The process's Seata-side metrics.
#[inline]
pub fn seata() -> &'static SeataMetrics {
    &SEATA
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_combination_is_pre_resolved_and_rendered() {
        let m = SeataMetrics::new();
        m.begun(Mode::Seata);
        m.finished(Mode::DtmTcc, End::RolledBack);
        m.phase_two::<()>(
            BranchType::Xa,
            Phase::Rollback,
            &Ok(BranchStatus::PhaseTwoRollbackFailedRetryable),
            Duration::from_millis(3),
        );
        m.request(Request::Register, Duration::from_micros(80));
        let mut reg = Registry::with_prefix("seata");
        m.register(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        for line in [
            "seata_global_transactions_begun_total{mode=\"seata\"} 1",
            "seata_global_transactions_begun_total{mode=\"at\"} 0",
            "seata_global_transactions_finished_total{mode=\"dtm-tcc\",outcome=\"rolled_back\"} 1",
            "seata_branch_phase_two_total{branch_type=\"xa\",phase=\"rollback\",outcome=\"retryable\"} 1",
            "seata_branch_phase_two_seconds_count{phase=\"rollback\"} 1",
            "seata_request_seconds_bucket{le=\"0.0001\",request=\"register\"} 1",
            "seata_lock_conflicts_total 0",
        ] {
            assert!(out.contains(line), "missing {line} in {out}");
        }
    }

    #[test]
    fn mode_follows_the_branch_types() {
        let bits = |ts: &[BranchType]| ts.iter().fold(0, |b, &t| b | branch_bit(t));
        assert_eq!(Mode::of_branch_bits(bits(&[])), Mode::None);
        assert_eq!(
            Mode::of_branch_bits(bits(&[BranchType::At, BranchType::At])),
            Mode::At
        );
        assert_eq!(Mode::of_branch_bits(bits(&[BranchType::Xa])), Mode::Xa);
        assert_eq!(
            Mode::of_branch_bits(bits(&[BranchType::Tcc, BranchType::At])),
            Mode::Mixed
        );
        assert_eq!(Mode::of_dtm("tcc"), Mode::DtmTcc);
    }
}
