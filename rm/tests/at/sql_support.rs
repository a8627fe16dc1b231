//! Runs every case of `sql_cases.rs` against MariaDB and checks that `docs/at-sql-support.md`
//! is what the cases render.
//!
//! A supported case runs three times, each in a fresh database: on a plain connection (what
//! MySQL itself does), and through the AT proxy in a global transaction ended once by phase-two
//! commit and once by rollback. Through the proxy the tables must end as on the plain
//! connection and the undo log must hold exactly the case's items; commit keeps that state and
//! rollback brings back the tables exactly as they were. A refused case must fail with its
//! construct named and leave the tables, the undo log and the TC untouched.

use mysql_async::prelude::Queryable;
use mysql_async::Value;
use seata_protocol::BranchStatus;
use seata_rm::at::undo::UndoCodec;
use seata_tm::context::with_xid;

use crate::harness::TestDb;
use crate::sql_cases::{Case, Expect, CASES};

/// The document, relative to this crate.
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/at-sql-support.md");
/// Set to rewrite the document instead of comparing it.
const REGENERATE: &str = "SEATA_WRITE_SQL_SUPPORT";

type Snapshot = Vec<(String, Vec<Vec<Value>>)>;

async fn snapshot(db: &TestDb, tables: &[&str]) -> Snapshot {
    let mut out = Vec::new();
    for t in tables {
        let mut rows = db.rows(&format!("SELECT * FROM {t}")).await;
        // Any order of the same rows is the same table.
        rows.sort_by_key(|r| format!("{r:?}"));
        out.push((t.to_string(), rows));
    }
    out
}

/// The statements through the proxy inside global transaction `xid`; the first error, if any.
async fn run_proxied(db: &TestDb, case: &Case, xid: &str) -> Result<(), String> {
    let mut conn = db.ds.get_conn().await.map_err(|e| e.to_string())?;
    with_xid(xid, async {
        for sql in case.statements {
            conn.query_drop(*sql).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await
}

/// The undo items of every branch, in order, as `sqlType` names.
async fn undo_items(db: &TestDb) -> String {
    let rows = db
        .rows("SELECT rollback_info FROM undo_log ORDER BY id")
        .await;
    let mut kinds = Vec::new();
    for row in rows {
        let Some(Value::Bytes(info)) = row.first() else {
            panic!("undo_log.rollback_info is not bytes: {row:?}")
        };
        let log = UndoCodec::default().decode(info).unwrap();
        kinds.extend(log.sql_undo_logs.iter().map(|u| u.sql_type.name()));
    }
    kinds.join(", ")
}

async fn supported(case: &Case, items: &str) {
    let reference = TestDb::new(case.setup).await;
    let mut plain = reference.plain.get_conn().await.unwrap();
    for sql in case.statements {
        plain.query_drop(*sql).await.unwrap();
    }
    drop(plain);
    let want = snapshot(&reference, case.tables).await;
    reference.cleanup().await;
    for commit in [true, false] {
        let db = TestDb::new(case.setup).await;
        let before = snapshot(&db, case.tables).await;
        let xid = format!("127.0.0.1:8091:{}", if commit { 1 } else { 2 });
        if let Err(e) = run_proxied(&db, case, &xid).await {
            panic!("{}: {e}", case.construct);
        }
        assert_eq!(
            snapshot(&db, case.tables).await,
            want,
            "{}: phase one changed the tables as MySQL does",
            case.construct
        );
        assert_eq!(
            undo_items(&db).await,
            items,
            "{}: undo items",
            case.construct
        );
        let branches = db.tc.branches.lock().unwrap().clone();
        assert_eq!(
            branches.is_empty(),
            items.is_empty(),
            "{}: a branch iff rows changed",
            case.construct
        );
        let rid = db.ds.resource_id().to_string();
        if commit {
            for (x, b) in &branches {
                assert_eq!(
                    db.rm.branch_commit(x, *b, &rid).await,
                    BranchStatus::PhaseTwoCommitted
                );
            }
            db.rm.flush_async_commits().await;
            assert_eq!(
                snapshot(&db, case.tables).await,
                want,
                "{}: commit keeps the changes",
                case.construct
            );
        } else {
            // The TC rolls branches back newest first.
            for (x, b) in branches.iter().rev() {
                assert_eq!(
                    db.rm.branch_rollback(x, *b, &rid).await,
                    BranchStatus::PhaseTwoRollbacked,
                    "{}: rollback",
                    case.construct
                );
            }
            assert_eq!(
                snapshot(&db, case.tables).await,
                before,
                "{}: rollback restores the tables exactly",
                case.construct
            );
        }
        assert_eq!(
            db.undo_rows().await,
            0,
            "{}: phase two removes the undo log",
            case.construct
        );
        db.cleanup().await;
    }
}

async fn refused(case: &Case, construct: &str) {
    let db = TestDb::new(case.setup).await;
    let before = snapshot(&db, case.tables).await;
    match run_proxied(&db, case, "127.0.0.1:8091:3").await {
        Ok(()) => panic!(
            "{}: expected a refusal naming `{construct}`",
            case.construct
        ),
        Err(e) => assert!(
            e.contains(construct),
            "{}: error `{e}` does not name `{construct}`",
            case.construct
        ),
    }
    assert_eq!(
        snapshot(&db, case.tables).await,
        before,
        "{}: refused before touching data",
        case.construct
    );
    assert_eq!(db.undo_rows().await, 0, "{}: no undo log", case.construct);
    assert!(
        db.tc.registered.lock().unwrap().is_empty(),
        "{}: no branch",
        case.construct
    );
    db.cleanup().await;
}

#[tokio::test]
async fn every_case_behaves_as_the_matrix_says() {
    for case in CASES {
        match case.expect {
            Expect::Supported(items) => supported(case, items).await,
            Expect::Refused(construct) => refused(case, construct).await,
        }
    }
}

/// The document the cases render.
fn render() -> String {
    let mut out = String::from(
        "# AT mode: SQL support matrix (MySQL / MariaDB)\n\n\
         <!-- Generated from rm/tests/at/sql_cases.rs; do not edit. Regenerate with\n     \
         SEATA_WRITE_SQL_SUPPORT=1 cargo test -p seata-rm --test at -- sql_support -->\n\n\
         Which statements an `AtConnection` accepts inside a global transaction. Every row is a\n\
         test case (`rm/tests/at/sql_support.rs`) run against MariaDB: a supported statement is\n\
         run once ended by phase-two commit and once by rollback, and must change the tables as\n\
         it does without AT mode, write exactly the undo items listed, and be undone exactly; a\n\
         refused one must fail before touching data with an error naming the construct.\n\n\
         Outside a global transaction every statement passes through untouched.\n\n\
         **Undo logs stay readable by Java Seata 1.2.** Every kind, including the ones Seata 1.2\n\
         does not handle, is written as Seata 1.2's own `INSERT`, `UPDATE` and `DELETE` items\n\
         (at-mode.md 2) with whole-row or key-plus-SET-column images, so a Java 1.2 RM sharing the\n\
         database undoes them as it would undo single-table statements. Composite keys need Java\n\
         Seata 1.4 or later on the reading side (1.2 refuses tables with composite keys).\n\n",
    );
    let (mut yes, mut no) = (0, 0);
    out.push_str("| Construct | Example | AT mode | Undo items | How / why | Seata 1.2 |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for case in CASES {
        let (verdict, items) = match case.expect {
            Expect::Supported(items) => {
                yes += 1;
                ("supported", if items.is_empty() { "none" } else { items })
            }
            Expect::Refused(_) => {
                no += 1;
                ("refused", "—")
            }
        };
        let example = case
            .statements
            .iter()
            .map(|s| format!("`{}`", s.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect::<Vec<_>>()
            .join("<br>");
        out.push_str(&format!(
            "| {} | {} | {verdict} | {items} | {} | {} |\n",
            case.construct,
            example.replace('|', "\\|"),
            case.how,
            case.seata_1_2
        ));
    }
    out.push_str(&format!(
        "\n{yes} supported, {no} refused.\n\n\
         Not in the table: `INSERT ... ON DUPLICATE KEY UPDATE`, `INSERT IGNORE` and `REPLACE`\n\
         need a value for every column of the primary key (unless it is generated and a unique\n\
         key identifies the row) and of each unique key; several statements in one string carry\n\
         no `?` parameters (the text protocol has none); named parameters are refused.\n"
    ));
    out
}

#[test]
fn sql_support_document_is_current() {
    let want = render();
    if std::env::var_os(REGENERATE).is_some() {
        std::fs::write(DOC, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        have == want,
        "docs/at-sql-support.md differs from what rm/tests/at/sql_cases.rs renders; regenerate \
         it with `{REGENERATE}=1 cargo test -p seata-rm --test at -- sql_support`"
    );
}
