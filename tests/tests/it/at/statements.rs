//! Every statement kind the AT proxy supports, each ended once by a global commit and once by
//! a global rollback through the TM template, checking the table, `undo_log` and the TC's
//! row locks afterwards; plus composite primary keys and every common column type.

use mysql_async::Value;
use seata_it::mysql::TestDb;

use super::{End, Env};

const ACCOUNT: &str = "CREATE TABLE account (
    id INT PRIMARY KEY, owner VARCHAR(32) NOT NULL, balance INT NOT NULL)";
const ACCOUNT_ROWS: &str =
    "INSERT INTO account VALUES (1, 'a', 100), (2, 'b', 200), (3, 'c', 300), (4, 'd', 400)";
const ITEMS: &str =
    "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20), qty INT)";
const SELECT_ACCOUNTS: &str = "SELECT * FROM account ORDER BY id";
const BOTH: [End; 2] = [End::Commit, End::Rollback];

#[tokio::test]
async fn insert_with_explicit_keys() {
    let env = Env::start().await;
    let db = TestDb::create("ins", &[ACCOUNT]).await;
    let ds = env.data_source(&db, 4).await;
    for (end, first) in [(End::Commit, 10), (End::Rollback, 20)] {
        let key = format!("account:{},{}", first, first + 1);
        let xid = env
            .global(end, || async {
                let mut conn = ds.get_conn().await?;
                conn.exec_drop(
                    "INSERT INTO account (id, owner, balance) VALUES (?, ?, ?), (?, ?, ?)",
                    (first, "x", 1, first + 1, "y", 2),
                )
                .await?;
                assert_eq!(conn.affected_rows(), 2);
                assert_eq!(db.undo_rows().await, 1, "phase one wrote the undo log");
                assert!(!env.lockable(&ds, &key).await, "branch holds {key}");
                Ok(())
            })
            .await;
        env.assert_phase_two_done(&xid, &db, &ds, &key).await;
    }
    let ids: Vec<i32> = db.query("SELECT id FROM account ORDER BY id").await;
    assert_eq!(
        ids,
        [10, 11],
        "committed rows stay, rolled-back rows are gone"
    );
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test]
async fn multi_row_insert_with_auto_increment_keys() {
    let env = Env::start().await;
    let db = TestDb::create("ins_auto", &[ITEMS]).await;
    let ds = env.data_source(&db, 4).await;
    for end in BOTH {
        let mut key = String::new();
        let xid = env
            .global(end, || async {
                let mut conn = ds.get_conn().await?;
                conn.exec_drop(
                    "INSERT INTO items (name, qty) VALUES (?, 1), (?, 2), ('z', 3)",
                    ("x", "y"),
                )
                .await?;
                let first = conn.last_insert_id().expect("generated id");
                // Every row is imaged and locked, not only the first (Seata 1.2's bug).
                key = format!("items:{},{},{}", first, first + 1, first + 2);
                assert!(!env.lockable(&ds, &key).await, "branch holds {key}");
                Ok(())
            })
            .await;
        env.assert_phase_two_done(&xid, &db, &ds, &key).await;
    }
    let rows: Vec<(u64, String, i32)> = db.query("SELECT * FROM items ORDER BY id").await;
    assert_eq!(
        rows,
        [(1, "x".into(), 1), (2, "y".into(), 2), (3, "z".into(), 3)],
        "only the committed insert remains"
    );
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test]
async fn update_with_where_order_by_and_limit() {
    let env = Env::start().await;
    let db = TestDb::create("upd", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 4).await;
    for end in BOTH {
        let xid = env
            .global(end, || async {
                let mut conn = ds.get_conn().await?;
                conn.exec_drop(
                    "UPDATE account SET balance = balance + ? WHERE balance >= ? \
                     ORDER BY balance DESC LIMIT 2",
                    (5, 200),
                )
                .await?;
                assert_eq!(conn.affected_rows(), 2);
                // Only the two rows the LIMIT picked are locked.
                assert!(!env.lockable(&ds, "account:3").await);
                assert!(!env.lockable(&ds, "account:4").await);
                assert!(env.lockable(&ds, "account:2").await);
                Ok(())
            })
            .await;
        env.assert_phase_two_done(&xid, &db, &ds, "account:3,4")
            .await;
    }
    let balances: Vec<i32> = db.query("SELECT balance FROM account ORDER BY id").await;
    assert_eq!(
        balances,
        [100, 200, 305, 405],
        "one +5 committed, one undone"
    );
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test]
async fn delete() {
    let env = Env::start().await;
    let db = TestDb::create("del", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 4).await;
    let original = db.rows(SELECT_ACCOUNTS).await;
    for (end, ids) in [(End::Rollback, (1, 2)), (End::Commit, (3, 4))] {
        let key = format!("account:{},{}", ids.0, ids.1);
        let xid = env
            .global(end, || async {
                let mut conn = ds.get_conn().await?;
                conn.exec_drop("DELETE FROM account WHERE id IN (?, ?)", ids)
                    .await?;
                assert_eq!(conn.affected_rows(), 2);
                assert!(!env.lockable(&ds, &key).await, "branch holds {key}");
                Ok(())
            })
            .await;
        env.assert_phase_two_done(&xid, &db, &ds, &key).await;
        if end == End::Rollback {
            assert_eq!(db.rows(SELECT_ACCOUNTS).await, original, "rows re-inserted");
        }
    }
    let ids: Vec<i32> = db.query("SELECT id FROM account ORDER BY id").await;
    assert_eq!(ids, [1, 2]);
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test]
async fn select_for_update_then_update() {
    let env = Env::start().await;
    let db = TestDb::create("sfu", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 4).await;
    for end in BOTH {
        let xid = env
            .global(end, || async {
                let mut conn = ds.get_conn().await?;
                let balance: Option<i32> = conn
                    .exec_first("SELECT balance FROM account WHERE id = ? FOR UPDATE", (1,))
                    .await?;
                // SELECT FOR UPDATE only checks the global lock; it registers nothing.
                assert!(env.lockable(&ds, "account:1").await);
                assert_eq!(db.undo_rows().await, 0);
                let new = balance.expect("row 1") + 7;
                conn.exec_drop("UPDATE account SET balance = ? WHERE id = ?", (new, 1))
                    .await?;
                assert!(!env.lockable(&ds, "account:1").await);
                Ok(())
            })
            .await;
        env.assert_phase_two_done(&xid, &db, &ds, "account:1").await;
    }
    assert_eq!(
        db.scalar("SELECT balance FROM account WHERE id = 1").await,
        107
    );
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test]
async fn local_transaction_with_several_statements_is_one_branch() {
    let env = Env::start().await;
    let db = TestDb::create("local", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 4).await;
    let original = db.rows(SELECT_ACCOUNTS).await;
    for end in [End::Rollback, End::Commit] {
        let xid = env
            .global(end, || async {
                let mut conn = ds.get_conn().await?;
                conn.begin().await?;
                conn.query_drop("UPDATE account SET balance = 0 WHERE id IN (1, 2)")
                    .await?;
                conn.query_drop("INSERT INTO account VALUES (5, 'e', 500)")
                    .await?;
                conn.query_drop("DELETE FROM account WHERE id = 2").await?;
                conn.query_drop("UPDATE account SET balance = 1 WHERE id = 5")
                    .await?;
                conn.commit().await?;
                // One undo_log row per local transaction (at-mode.md 11.2).
                assert_eq!(db.undo_rows().await, 1);
                assert!(!env.lockable(&ds, "account:1,2,5").await);
                Ok(())
            })
            .await;
        env.assert_phase_two_done(&xid, &db, &ds, "account:1,2,5")
            .await;
        if end == End::Rollback {
            // Undone in reverse statement order, so the row 5 update is undone before the
            // insert it depends on.
            assert_eq!(db.rows(SELECT_ACCOUNTS).await, original);
        }
    }
    let rows: Vec<(i32, i32)> = db
        .query("SELECT id, balance FROM account ORDER BY id")
        .await;
    assert_eq!(rows, [(1, 0), (3, 300), (4, 400), (5, 1)]);
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test]
async fn composite_primary_keys() {
    const ORDER_LINE: &str = "CREATE TABLE order_line (
        order_id INT NOT NULL, line INT NOT NULL, qty INT NOT NULL, note VARCHAR(20),
        PRIMARY KEY (order_id, line))";
    const LINES: &str = "SELECT * FROM order_line ORDER BY order_id, line";
    let env = Env::start().await;
    let db = TestDb::create(
        "cpk",
        &[
            ORDER_LINE,
            "INSERT INTO order_line VALUES (1, 1, 5, 'a'), (1, 2, 6, NULL), (2, 1, 7, 'c')",
        ],
    )
    .await;
    let ds = env.data_source(&db, 4).await;
    let original = db.rows(LINES).await;
    // Composite keys are `v1_v2` in primary-key order (later Seata's format).
    let keys = "order_line:1_1,1_2;order_line:3_1;order_line:2_1";
    for end in [End::Rollback, End::Commit] {
        let xid = env
            .global(end, || async {
                let mut conn = ds.get_conn().await?;
                conn.exec_drop(
                    "UPDATE order_line SET qty = qty + 1 WHERE order_id = ?",
                    (1,),
                )
                .await?;
                conn.exec_drop(
                    "INSERT INTO order_line (order_id, line, qty) VALUES (?, ?, ?)",
                    (3, 1, 9),
                )
                .await?;
                conn.exec_drop(
                    "DELETE FROM order_line WHERE order_id = ? AND line = ?",
                    (2, 1),
                )
                .await?;
                for key in keys.split(';') {
                    assert!(!env.lockable(&ds, key).await, "branch holds {key}");
                }
                assert!(env.lockable(&ds, "order_line:1_3").await);
                Ok(())
            })
            .await;
        env.assert_phase_two_done(&xid, &db, &ds, keys).await;
        if end == End::Rollback {
            assert_eq!(db.rows(LINES).await, original);
        }
    }
    let rows: Vec<(i32, i32, i32)> = db
        .query("SELECT order_id, line, qty FROM order_line ORDER BY order_id, line")
        .await;
    assert_eq!(rows, [(1, 1, 6), (1, 2, 7), (3, 1, 9)]);
    env.close(&[&ds]).await;
    db.cleanup().await;
}

const ALL_TYPES: &str = "CREATE TABLE all_types (
    id BIGINT UNSIGNED PRIMARY KEY,
    c_tiny TINYINT, c_bool TINYINT(1), c_small SMALLINT, c_medium MEDIUMINT, c_int INT,
    c_int_u INT UNSIGNED, c_big BIGINT, c_big_u BIGINT UNSIGNED,
    c_dec DECIMAL(20, 6), c_float FLOAT, c_double DOUBLE,
    c_char CHAR(4), c_varchar VARCHAR(50), c_text TEXT, c_json JSON, c_enum ENUM('x', 'y'),
    c_binary BINARY(3), c_varbinary VARBINARY(10), c_blob BLOB, c_bit BIT(10),
    c_date DATE, c_time TIME(6), c_datetime DATETIME(6), c_timestamp TIMESTAMP(3) NULL,
    c_year YEAR, c_null VARCHAR(5)
)";

/// Extreme and awkward values: unsigned maxima, negative time, escapes, UTF-8, empty binary.
const ALL_TYPES_ROW: &str = "INSERT INTO all_types VALUES (
    18446744073709551615,
    -128, 1, -32768, 8388607, -2147483648,
    4294967295, -9223372036854775808, 18446744073709551614,
    '-12345678901234.500000', 1.25, 2.5e-300,
    'ab', 'héllo \\' \"q\" \\\\ ✓', REPEAT('t', 300), '{\"k\": [1, 2]}', 'y',
    x'00ff10', x'', x'deadbeef', b'1010101010',
    '1000-01-01', '-838:59:59.000001', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.123',
    2155, NULL
)";

const CHANGE_ALL_TYPES: &str = "UPDATE all_types SET
    c_tiny = 1, c_bool = 0, c_small = 2, c_medium = 3, c_int = 4, c_int_u = 5, c_big = 6,
    c_big_u = 7, c_dec = 8, c_float = 9, c_double = 10, c_char = 'z', c_varchar = 'z',
    c_text = 'z', c_json = '[]', c_enum = 'x', c_binary = 'zzz', c_varbinary = 'z',
    c_blob = 'z', c_bit = 1, c_date = '2000-01-01', c_time = '01:02:03',
    c_datetime = '2000-01-01 00:00:00', c_timestamp = '2000-01-01 00:00:00', c_year = 2000,
    c_null = 'set'";

#[tokio::test]
async fn every_column_type_round_trips_through_global_rollback() {
    let env = Env::start().await;
    let db = TestDb::create("types", &[ALL_TYPES, ALL_TYPES_ROW]).await;
    let ds = env.data_source(&db, 4).await;
    let original = db.rows("SELECT * FROM all_types").await;
    let key = "all_types:18446744073709551615";
    // UPDATE then DELETE are two branches; the TC undoes them in reverse order.
    let xid = env
        .global(End::Rollback, || async {
            let mut conn = ds.get_conn().await?;
            conn.query_drop(CHANGE_ALL_TYPES).await?;
            conn.query_drop("DELETE FROM all_types").await?;
            assert_eq!(db.scalar("SELECT COUNT(*) FROM all_types").await, 0);
            assert_eq!(db.undo_rows().await, 2);
            Ok(())
        })
        .await;
    env.assert_phase_two_done(&xid, &db, &ds, key).await;
    assert_eq!(db.rows("SELECT * FROM all_types").await, original);

    // INSERT's after image holds every column too.
    db.run("DELETE FROM all_types").await;
    let xid = env
        .global(End::Rollback, || async {
            let mut conn = ds.get_conn().await?;
            conn.query_drop(ALL_TYPES_ROW).await?;
            let inserted = db.rows("SELECT * FROM all_types").await;
            assert_eq!(inserted, original);
            Ok(())
        })
        .await;
    env.assert_phase_two_done(&xid, &db, &ds, key).await;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM all_types").await, 0);

    // And a committed change stays exactly as written.
    db.run(ALL_TYPES_ROW).await;
    let xid = env
        .global(End::Commit, || async {
            let mut conn = ds.get_conn().await?;
            conn.query_drop(CHANGE_ALL_TYPES).await?;
            Ok(())
        })
        .await;
    env.assert_phase_two_done(&xid, &db, &ds, key).await;
    let changed = db.rows("SELECT c_varchar, c_null FROM all_types").await;
    assert_eq!(changed, [[Value::from("z"), Value::from("set")]]);
    env.close(&[&ds]).await;
    db.cleanup().await;
}
