//! Every common MySQL column type through an undo log and back.

use mysql_async::{Params, Value};
use seata_protocol::BranchStatus;
use seata_rm::at::undo::{SqlUndoLog, UndoCodec};
use seata_tm::context::with_xid;

use crate::harness::TestDb;

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

const ROW: &str = "INSERT INTO all_types VALUES (
    18446744073709551615,
    -128, 1, -32768, 8388607, -2147483648,
    4294967295, -9223372036854775808, 18446744073709551614,
    '-12345678901234.500000', 1.25, 2.5e-300,
    'ab', 'héllo \\' \"q\" \\\\ ✓', REPEAT('t', 300), '{\"k\": [1, 2]}', 'y',
    x'00ff10', x'', x'deadbeef', b'1010101010',
    '1000-01-01', '-838:59:59.000001', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.123',
    2155, NULL
)";

const CHANGE_ALL: &str = "UPDATE all_types SET
    c_tiny = 1, c_bool = 0, c_small = 2, c_medium = 3, c_int = 4, c_int_u = 5, c_big = 6,
    c_big_u = 7, c_dec = 8, c_float = 9, c_double = 10, c_char = 'z', c_varchar = 'z',
    c_text = 'z', c_json = '[]', c_enum = 'x', c_binary = 'zzz', c_varbinary = 'z',
    c_blob = 'z', c_bit = 1, c_date = '2000-01-01', c_time = '01:02:03',
    c_datetime = '2000-01-01 00:00:00', c_timestamp = '2000-01-01 00:00:00', c_year = 2000,
    c_null = 'set'
    WHERE id = 18446744073709551615";

#[tokio::test]
async fn every_column_type_survives_update_and_delete_undo() {
    let db = TestDb::new(&[ALL_TYPES, ROW]).await;
    let original = db.rows("SELECT * FROM all_types").await;
    let rid = db.ds.resource_id().to_string();
    let mut conn = db.ds.get_conn().await.unwrap();
    for (xid, sql) in [
        ("10.0.0.1:8091:1", CHANGE_ALL),
        ("10.0.0.1:8091:2", "DELETE FROM all_types"),
    ] {
        with_xid(xid, async { conn.query_drop(sql).await.unwrap() }).await;
        assert_ne!(db.rows("SELECT * FROM all_types").await, original, "{sql}");
        let (xid, branch) = db.tc.last_branch();
        assert_eq!(
            db.rm.branch_rollback(&xid, branch, &rid).await,
            BranchStatus::PhaseTwoRollbacked,
            "{sql}"
        );
        assert_eq!(db.rows("SELECT * FROM all_types").await, original, "{sql}");
    }
    assert_eq!(db.tc.lock_keys()[0], "all_types:18446744073709551615");
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn every_column_type_survives_insert_undo() {
    let db = TestDb::new(&[ALL_TYPES]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid("10.0.0.1:8091:3", async {
        conn.query_drop(ROW).await.unwrap()
    })
    .await;
    assert_eq!(db.count("SELECT COUNT(*) FROM all_types").await, 1);
    let (xid, branch) = db.tc.last_branch();
    let rid = db.ds.resource_id().to_string();
    assert_eq!(
        db.rm.branch_rollback(&xid, branch, &rid).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM all_types").await, 0);
    drop(conn);
    db.cleanup().await;
}

/// `all_types` without FLOAT and DOUBLE, whose statements are batched.
const EXACT_TYPES: &str = "CREATE TABLE exact_types (
    id BIGINT UNSIGNED PRIMARY KEY,
    c_tiny TINYINT, c_bool TINYINT(1), c_small SMALLINT, c_medium MEDIUMINT, c_int INT,
    c_int_u INT UNSIGNED, c_big BIGINT, c_big_u BIGINT UNSIGNED, c_dec DECIMAL(20, 6),
    c_char CHAR(4), c_varchar VARCHAR(50), c_text TEXT, c_json JSON, c_enum ENUM('x', 'y'),
    c_binary BINARY(3), c_varbinary VARBINARY(10), c_blob BLOB, c_bit BIT(10),
    c_date DATE, c_time TIME(6), c_datetime DATETIME(6), c_timestamp TIMESTAMP(3) NULL,
    c_year YEAR, c_null VARCHAR(5)
)";

const EXACT_ROWS: &str = "INSERT INTO exact_types SELECT n,
    -128, 1, -32768, 8388607, -2147483648,
    4294967295, -9223372036854775808, 18446744073709551614, '-12345678901234.500000',
    'ab', 'héllo \\' \"q\" \\\\ ✓', REPEAT('t', 300), '{\"k\": [1, 2]}', 'y',
    x'00ff10', x'', x'deadbeef', b'1010101010',
    '1000-01-01', '-838:59:59.000001', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.123',
    2155, NULL FROM (SELECT 1 AS n UNION SELECT 2) AS ids";

const CHANGE_EXACT: &str = "UPDATE exact_types SET
    c_tiny = 1, c_bool = 0, c_small = 2, c_medium = 3, c_int = 4, c_int_u = 5, c_big = 6,
    c_big_u = 7, c_dec = 8, c_char = 'z', c_text = 'z', c_json = '[]', c_enum = 'x',
    c_binary = 'zzz', c_varbinary = 'z', c_blob = 'z', c_bit = 1, c_date = '2000-01-01',
    c_time = '01:02:03', c_datetime = '2000-01-01 00:00:00',
    c_timestamp = '2000-01-01 00:00:00', c_year = 2000, c_null = 'set'";

/// A batched statement reads its images as text, a prepared one as binary values: both must
/// give the same undo log. Row 1 is changed with literal values only (batched); row 2 with a
/// non-ASCII parameter, which has no literal the batch would write, so its images are read
/// by prepared statements.
#[tokio::test]
async fn batched_and_prepared_images_agree_for_every_exact_type() {
    let db = TestDb::new(&[EXACT_TYPES, EXACT_ROWS]).await;
    let original = db.rows("SELECT * FROM exact_types ORDER BY id").await;
    let rid = db.ds.resource_id().to_string();
    let mut conn = db.ds.get_conn().await.unwrap();
    let text = "héllo ' \"q\" \\ ✓";
    let update = format!("{CHANGE_EXACT}, c_varchar = ? WHERE id = ?");
    let delete = "DELETE FROM exact_types WHERE id = ? AND c_varchar = ?";
    warm_meta(&db, &mut conn, "exact_types").await;
    let mut logs = Vec::new();
    for (n, (sql, params, batched)) in [
        (update.as_str(), Params::from(("z", 1)), true),
        (update.as_str(), Params::from((text, 2)), false),
        (delete, Params::from((1, text)), false),
        (delete, Params::from((2, text)), false),
        (
            "DELETE FROM exact_types WHERE id = ?",
            Params::from((1,)),
            true,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let xid = format!("10.0.0.1:8091:{}", 100 + n);
        let before = prepared_count(&mut conn).await;
        with_xid(&xid, conn.exec_drop(sql, params)).await.unwrap();
        let executed = prepared_count(&mut conn).await - before;
        // The count's own SHOW is a text query.
        assert_eq!(executed == 0, batched, "{sql}: {executed} prepared");
        let (xid, branch) = db.tc.last_branch();
        let info = db
            .rows(&format!(
                "SELECT rollback_info FROM undo_log WHERE branch_id = {branch}"
            ))
            .await;
        let Value::Bytes(info) = &info[0][0] else {
            panic!("no undo log for {sql}");
        };
        logs.push(UndoCodec::default().decode(info).unwrap().sql_undo_logs);
        assert_eq!(
            db.rm.branch_rollback(&xid, branch, &rid).await,
            BranchStatus::PhaseTwoRollbacked
        );
        assert_eq!(
            db.rows("SELECT * FROM exact_types ORDER BY id").await,
            original
        );
    }
    // Same data apart from the key (and the one SET value that had to differ).
    let strip = |mut log: Vec<SqlUndoLog>| {
        for item in &mut log {
            for row in &mut item.before_image.rows {
                row.fields.retain(|f| f.name != "id");
            }
            for row in &mut item.after_image.rows {
                row.fields
                    .retain(|f| f.name != "id" && f.name != "c_varchar");
            }
        }
        log
    };
    let logs: Vec<_> = logs.into_iter().map(strip).collect();
    assert_eq!(logs[0][0].before_image, logs[1][0].before_image);
    assert_eq!(logs[0][0].after_image.rows.len(), 1);
    assert_eq!(logs[0][0].after_image, logs[1][0].after_image);
    assert_eq!(logs[2], logs[4]);
    assert_eq!(logs[3], logs[4]);
    drop(conn);
    db.cleanup().await;
}

async fn prepared_count(conn: &mut seata_rm::at::AtConnection) -> i64 {
    let rows: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS LIKE 'Com\\_stmt\\_execute'")
        .await
        .unwrap();
    rows[0].1.parse().unwrap()
}

const INTS: &str = "CREATE TABLE ints (
    id BIGINT UNSIGNED PRIMARY KEY, c_tiny TINYINT, c_small SMALLINT, c_medium MEDIUMINT,
    c_int INT, c_int_u INT UNSIGNED, c_big BIGINT, c_big_u BIGINT UNSIGNED, c_null INT NULL
)";

/// Integer SETs give the after image without reading the row back. Rollback compares that
/// image with the row as stored, type and value, so a wrong one would be refused as a dirty
/// write. A SET MySQL clamps (with a warning, outside strict mode) must read the row instead.
#[tokio::test]
async fn integer_sets_compute_the_after_image_a_clamped_one_reads_it() {
    let db = TestDb::new(&[
        INTS,
        "INSERT INTO ints VALUES (18446744073709551615, -128, 1, 2, 3, 4, 5, 6, NULL), \
         (7, 100, 1, 2, 3, 4, 5, 6, 9)",
    ])
    .await;
    let original = db.rows("SELECT * FROM ints ORDER BY id").await;
    let rid = db.ds.resource_id().to_string();
    let mut conn = db.ds.get_conn().await.unwrap();
    warm_meta(&db, &mut conn, "ints").await;
    conn.query_drop("SET SESSION sql_mode = ''").await.unwrap();
    let computed = "UPDATE ints SET c_tiny = c_tiny + 1, c_small = 9, \
        c_medium = c_medium - ?, c_int = -7, c_int_u = c_int_u + ?, c_big = ?, \
        c_big_u = 1 + c_big_u, c_null = c_null + 1 WHERE id >= ?";
    for (xid, sql, params, selects) in [
        (
            "10.0.0.1:8091:201",
            computed,
            Params::from((3, 2, -4, 1)),
            1,
        ),
        // 100 + 100 does not fit a TINYINT: stored as 127 with a warning.
        (
            "10.0.0.1:8091:202",
            "UPDATE ints SET c_tiny = c_tiny + ? WHERE id = ?",
            Params::from((100, 7)),
            2,
        ),
    ] {
        let before = select_count(&mut conn).await;
        with_xid(xid, conn.exec_drop(sql, params)).await.unwrap();
        assert_eq!(select_count(&mut conn).await - before, selects, "{sql}");
        assert_ne!(db.rows("SELECT * FROM ints ORDER BY id").await, original);
        let (xid, branch) = db.tc.last_branch();
        assert_eq!(
            db.rm.branch_rollback(&xid, branch, &rid).await,
            BranchStatus::PhaseTwoRollbacked,
            "{sql}"
        );
        assert_eq!(db.rows("SELECT * FROM ints ORDER BY id").await, original);
    }
    assert_eq!(db.tc.lock_keys()[0], "ints:7,18446744073709551615");
    drop(conn);
    db.cleanup().await;
}

async fn select_count(conn: &mut seata_rm::at::AtConnection) -> i64 {
    let rows: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS LIKE 'Com\\_select'")
        .await
        .unwrap();
    rows[0].1.parse().unwrap()
}

/// Loads `table`'s metadata (its queries would count among a statement's otherwise).
async fn warm_meta(db: &TestDb, conn: &mut seata_rm::at::AtConnection, table: &str) {
    let Value::Bytes(schema) = db.rows("SELECT DATABASE()").await[0][0].clone() else {
        panic!("no database")
    };
    let schema = String::from_utf8(schema).unwrap();
    db.ds
        .table_meta()
        .get(conn.raw(), &schema, table)
        .await
        .unwrap();
    // raw() made the proxy forget the session's database; a USE it sees tells it again.
    conn.query_drop(format!("USE `{schema}`")).await.unwrap();
}

/// An UPDATE trigger may change the row beyond the statement's arithmetic: such a table's
/// after images are read, so rollback finds them equal to the stored rows (a computed one
/// would say 1 where the row holds 101, and rollback would refuse it as a dirty write).
#[tokio::test]
async fn a_table_with_an_update_trigger_reads_its_after_image() {
    let db = TestDb::new(&[
        "CREATE TABLE counted (id INT PRIMARY KEY, n INT)",
        "CREATE TRIGGER counted_bump BEFORE UPDATE ON counted FOR EACH ROW SET NEW.n = NEW.n + 100",
        "INSERT INTO counted VALUES (1, 0)",
    ])
    .await;
    let rid = db.ds.resource_id().to_string();
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(
        "10.0.0.1:8091:301",
        conn.exec_drop("UPDATE counted SET n = n + 1 WHERE id = ?", (1,)),
    )
    .await
    .unwrap();
    assert_eq!(db.count("SELECT n FROM counted").await, 101);
    let (xid, branch) = db.tc.last_branch();
    assert_eq!(
        db.rm.branch_rollback(&xid, branch, &rid).await,
        BranchStatus::PhaseTwoRollbacked
    );
    // The compensating UPDATE fires the trigger too (as with Seata): AT mode cannot undo
    // what a trigger adds.
    assert_eq!(db.count("SELECT n FROM counted").await, 100);
    drop(conn);
    db.cleanup().await;
}

/// An undo log of printable ASCII is written as a quoted literal, its `'` doubled: the row
/// holds the codec's bytes and rolls back exactly, whether or not backslashes escape.
#[tokio::test]
async fn a_quoted_undo_log_reads_back_under_every_sql_mode() {
    let db = TestDb::new(&[
        "CREATE TABLE quoted (id INT PRIMARY KEY, s VARCHAR(50))",
        "INSERT INTO quoted VALUES (1, 'it''s ''q''')",
    ])
    .await;
    let original = db.rows("SELECT * FROM quoted").await;
    let rid = db.ds.resource_id().to_string();
    let mut conn = db.ds.get_conn().await.unwrap();
    for (i, mode) in ["", "NO_BACKSLASH_ESCAPES"].into_iter().enumerate() {
        conn.query_drop(format!("SET SESSION sql_mode = '{mode}'"))
            .await
            .unwrap();
        let xid = format!("10.0.0.1:8091:40{i}");
        with_xid(
            xid,
            conn.exec_drop("UPDATE quoted SET s = ? WHERE id = ?", ("z'", 1)),
        )
        .await
        .unwrap();
        let info: Vec<u8> = {
            let rows = db.rows("SELECT rollback_info FROM undo_log").await;
            match rows.as_slice() {
                [row] => match row.as_slice() {
                    [Value::Bytes(b)] => b.clone(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        };
        let text = String::from_utf8(info).unwrap();
        // What makes the proxy quote it rather than write hex.
        assert!(text
            .bytes()
            .all(|c| (0x20..0x7f).contains(&c) && c != b'\\'));
        assert!(
            text.contains("\"it's 'q'\"") && text.contains("\"z'\""),
            "{mode}: {text}"
        );
        let (xid, branch) = db.tc.last_branch();
        assert_eq!(
            db.rm.branch_rollback(&xid, branch, &rid).await,
            BranchStatus::PhaseTwoRollbacked,
            "{mode}"
        );
        assert_eq!(db.rows("SELECT * FROM quoted").await, original, "{mode}");
    }
    drop(conn);
    db.cleanup().await;
}
