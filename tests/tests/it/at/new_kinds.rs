//! The statement kinds Seata 1.2 gets wrong or refuses, end to end through the real TC: an
//! upsert, a multi-table UPDATE and a savepoint rollback in one global transaction, ended by
//! commit and by rollback, with the TC's row locks checked while it runs and after.
//! (`rm/tests/at/sql_support.rs` covers every kind against MariaDB with the RM alone.)

use seata_it::mysql::TestDb;

use super::{End, Env};

const ACCOUNT: &str = "CREATE TABLE account (id INT PRIMARY KEY, owner VARCHAR(16) NOT NULL, \
     balance INT NOT NULL, UNIQUE KEY ux_owner (owner))";
const ACCOUNT_ROWS: &str = "INSERT INTO account VALUES (1, 'a', 100), (2, 'b', 200)";
const ORDERS: &str = "CREATE TABLE orders (id INT PRIMARY KEY, account_id INT NOT NULL, \
     amount INT NOT NULL, state VARCHAR(8) NOT NULL)";
const ORDER_ROWS: &str = "INSERT INTO orders VALUES (10, 1, 30, 'new'), (11, 2, 40, 'paid')";

async fn contents(db: &TestDb) -> (Vec<(i32, String, i32)>, Vec<(i32, String)>) {
    (
        db.query("SELECT id, owner, balance FROM account ORDER BY id")
            .await,
        db.query("SELECT id, state FROM orders ORDER BY id").await,
    )
}

#[tokio::test]
async fn upsert_join_and_savepoint_commit_and_roll_back() {
    let env = Env::start().await;
    let db = TestDb::create("newkinds", &[ACCOUNT, ACCOUNT_ROWS, ORDERS, ORDER_ROWS]).await;
    let ds = env.data_source(&db, 4).await;
    let initial = contents(&db).await;
    let key = "account:1,2,3";
    for end in [End::Rollback, End::Commit] {
        let xid = env
            .global(end, || async {
                let mut conn = ds.get_conn().await?;
                conn.exec_drop(
                    "INSERT INTO account VALUES (?, ?, ?), (?, ?, ?) \
                     ON DUPLICATE KEY UPDATE balance = balance + VALUES(balance)",
                    (2, "b", 5, 3, "c", 300),
                )
                .await?;
                conn.query_drop(
                    "UPDATE account a JOIN orders o ON o.account_id = a.id \
                     SET a.balance = a.balance - o.amount, o.state = 'paid' WHERE o.state = 'new'",
                )
                .await?;
                conn.begin().await?;
                conn.query_drop("SAVEPOINT s1").await?;
                conn.query_drop("DELETE FROM orders WHERE id = 11").await?;
                conn.query_drop("ROLLBACK TO SAVEPOINT s1").await?;
                conn.commit().await?;
                assert!(
                    !env.lockable(&ds, "account:1").await,
                    "UPDATE ... JOIN locked it"
                );
                assert!(
                    !env.lockable(&ds, "account:2,3").await,
                    "the upsert locked them"
                );
                assert!(!env.lockable(&ds, "orders:10").await);
                assert!(
                    env.lockable(&ds, "orders:11").await,
                    "the DELETE rolled back to the savepoint holds no lock"
                );
                Ok(())
            })
            .await;
        env.assert_phase_two_done(&xid, &db, &ds, key).await;
        match end {
            End::Rollback => assert_eq!(contents(&db).await, initial, "rolled back exactly"),
            End::Commit => assert_eq!(
                contents(&db).await,
                (
                    vec![
                        (1, "a".to_string(), 70),
                        (2, "b".to_string(), 205),
                        (3, "c".to_string(), 300)
                    ],
                    vec![(10, "paid".to_string()), (11, "paid".to_string())]
                )
            ),
        }
    }
    env.close(&[&ds]).await;
    db.cleanup().await;
}
