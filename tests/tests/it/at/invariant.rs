//! The bank invariant under concurrency: workers move money from an account in one database
//! to an account in another (two AT resources of one RM client), about 30% of the global
//! transactions are rolled back on purpose after both updates, and some fail on global-lock
//! conflicts. Afterwards every balance equals the opening balance plus exactly the committed
//! transfers, the total is unchanged, no undo log is left and the TC holds no lock.

use seata_it::mysql::TestDb;
use seata_rm::at::DataSourceProxy;
use seata_tm::TxError;

use super::{Env, INTENDED, TX_TIMEOUT};

const WORKERS: usize = 8;
const TRANSACTIONS: usize = 1000;
const ACCOUNTS: usize = 16;
const OPENING: i64 = 1_000;
const ROLLBACK_PERCENT: u32 = 30;

/// What one worker saw.
#[derive(Debug, Default)]
struct Tally {
    committed: usize,
    rolled_back: usize,
    lock_failures: usize,
    /// Per account, what the committed transfers changed: `[bank a, bank b]`.
    delta: [[i64; ACCOUNTS]; 2],
}

/// One transfer: `amount` (may be negative) from `a` in bank A to `b` in bank B, always in
/// that order so two transfers never wait for each other's global locks in a cycle.
async fn transfer(
    bank_a: &DataSourceProxy,
    bank_b: &DataSourceProxy,
    (a, b, amount): (usize, usize, i64),
) -> anyhow::Result<()> {
    const MOVE: &str = "UPDATE account SET balance = balance + ? WHERE id = ?";
    bank_a
        .get_conn()
        .await?
        .exec_drop(MOVE, (-amount, a))
        .await?;
    bank_b
        .get_conn()
        .await?
        .exec_drop(MOVE, (amount, b))
        .await?;
    Ok(())
}

async fn worker(env: &Env, banks: [&DataSourceProxy; 2], count: usize, seed: u64) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::default();
    for _ in 0..count {
        let (a, b) = (rng.usize(..ACCOUNTS), rng.usize(..ACCOUNTS));
        let amount = rng.i64(-50..=50);
        let roll_back = rng.u32(..100) < ROLLBACK_PERCENT;
        let result = env
            .tm
            .run("it-at-transfer", TX_TIMEOUT, |_| async {
                transfer(banks[0], banks[1], (a, b, amount)).await?;
                if roll_back {
                    anyhow::bail!(INTENDED);
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                tally.committed += 1;
                tally.delta[0][a] -= amount;
                tally.delta[1][b] += amount;
            }
            Err(TxError::Business(e)) if e.to_string() == INTENDED => tally.rolled_back += 1,
            // Global lock not granted within the retry budget: rolled back like any failure.
            Err(TxError::Business(e))
                if e.downcast_ref::<seata_rm::error::RmError>()
                    .is_some_and(|e| e.is_retryable()) =>
            {
                tally.lock_failures += 1
            }
            Err(e) => panic!("transfer {a}->{b} of {amount}: unexpected outcome {e:?}"),
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_across_two_databases_keep_the_total() {
    let env = Env::start().await;
    let rows = (0..ACCOUNTS)
        .map(|i| format!("({i}, {OPENING})"))
        .collect::<Vec<_>>()
        .join(", ");
    let ddl = "CREATE TABLE account (id INT PRIMARY KEY, balance BIGINT NOT NULL)";
    let insert = format!("INSERT INTO account VALUES {rows}");
    let dbs = [
        TestDb::create("bank_a", &[ddl, &insert]).await,
        TestDb::create("bank_b", &[ddl, &insert]).await,
    ];
    let bank_a = env.data_source(&dbs[0], WORKERS + 2).await;
    let bank_b = env.data_source(&dbs[1], WORKERS + 2).await;

    let started = std::time::Instant::now();
    let per_worker = TRANSACTIONS / WORKERS;
    let tallies = futures::future::join_all(
        (0..WORKERS).map(|w| worker(&env, [&bank_a, &bank_b], per_worker, 42 + w as u64)),
    )
    .await;
    let elapsed = started.elapsed();

    let mut total = Tally::default();
    for t in &tallies {
        total.committed += t.committed;
        total.rolled_back += t.rolled_back;
        total.lock_failures += t.lock_failures;
        for (bank, deltas) in t.delta.iter().enumerate() {
            for (acc, d) in deltas.iter().enumerate() {
                total.delta[bank][acc] += d;
            }
        }
    }
    // Informational only (no timing assertion): shows up with --nocapture.
    println!(
        "{} transactions in {elapsed:.1?}: committed {}, rolled back on purpose {}, \
         lock failures {}",
        per_worker * WORKERS,
        total.committed,
        total.rolled_back,
        total.lock_failures
    );
    assert!(total.committed > 0 && total.rolled_back > 0, "{total:?}");

    let keys = format!(
        "account:{}",
        (0..ACCOUNTS)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    for (db, ds) in dbs.iter().zip([&bank_a, &bank_b]) {
        db.wait_undo_empty().await;
        env.wait_lockable(ds, &keys).await;
    }
    let mut sum = 0;
    for (bank, db) in dbs.iter().enumerate() {
        let balances: Vec<(usize, i64)> = db
            .query("SELECT id, balance FROM account ORDER BY id")
            .await;
        for (id, balance) in balances {
            assert_eq!(
                balance,
                OPENING + total.delta[bank][id],
                "bank {bank} account {id}: opening + committed transfers"
            );
            sum += balance;
        }
    }
    assert_eq!(
        sum,
        2 * ACCOUNTS as i64 * OPENING,
        "money was created or destroyed"
    );
    env.close(&[&bank_a, &bank_b]).await;
    for db in dbs {
        db.cleanup().await;
    }
}
