//! Unit tests for `recognize.rs` (kept apart to hold that file under the size target).

use super::*;
use crate::at::model::statement::JoinedKind;

fn pos(v: Vec<Value>) -> Params {
    Params::Positional(v)
}

fn rec(sql: &str, params: Vec<Value>) -> Recognized {
    recognize(sql, &pos(params)).unwrap()
}

fn refused(sql: &str) -> String {
    match recognize(sql, &Params::Empty) {
        Err(RmError::Unsupported { reason, .. }) => reason,
        other => panic!("expected Unsupported for {sql}, got {other:?}"),
    }
}

#[test]
fn update_splits_set_params_from_where_params() {
    let r = rec(
        "UPDATE account_tbl SET money = ? WHERE user_id = ?",
        vec![Value::Int(900), Value::from("U100001")],
    );
    let Recognized::Update(u) = r else { panic!() };
    assert_eq!(u.table.table, "account_tbl");
    assert_eq!(u.columns, vec!["money"]);
    assert_eq!(u.filter.render(), " WHERE user_id = ?");
    assert_eq!(u.filter.params, vec![Value::from("U100001")]);
}

#[test]
fn update_keeps_order_by_limit_alias_and_multiline_params() {
    let r = rec(
        "UPDATE `db1`.`t` AS x SET x.a = ?,\n b = b + ? WHERE x.id > ?\n ORDER BY id DESC LIMIT ?",
        vec![Value::Int(1), Value::Int(2), Value::Int(3), Value::Int(4)],
    );
    let Recognized::Update(u) = r else { panic!() };
    assert_eq!(u.table.schema.as_deref(), Some("db1"));
    assert_eq!(u.table.from_sql(), "`db1`.`t` x");
    assert_eq!(u.columns, vec!["a", "b"]);
    assert_eq!(
        u.filter.render(),
        " WHERE x.id > ? ORDER BY id DESC LIMIT ?"
    );
    assert_eq!(u.filter.params, vec![Value::Int(3), Value::Int(4)]);
}

#[test]
fn where_literals_round_trip_raw() {
    let sql = r"DELETE FROM t WHERE name = 'a\\b' AND n2 = 'it''s' AND n3 = 'x\'y'";
    let Recognized::Delete(d) = rec(sql, vec![]) else {
        panic!()
    };
    assert_eq!(
        d.filter.render(),
        r" WHERE name = 'a\\b' AND n2 = 'it''s' AND n3 = 'x\'y'"
    );
}

#[test]
fn insert_rows_with_params_literals_and_nulls() {
    let r = rec(
        "INSERT INTO t (id, name, v) VALUES (?, 'a''b', NULL), (-5, ?, now())",
        vec![Value::Int(7), Value::from("z")],
    );
    let Recognized::Insert(i) = r else { panic!() };
    assert_eq!(i.columns, vec!["id", "name", "v"]);
    assert_eq!(
        i.rows,
        vec![
            vec![
                Cell::Value(Value::Int(7)),
                Cell::Value(Value::from("a'b")),
                Cell::Null
            ],
            vec![
                Cell::Value(Value::Int(-5)),
                Cell::Value(Value::from("z")),
                Cell::Expr("now()".into())
            ],
        ]
    );
}

#[test]
fn insert_set_form_and_no_column_list() {
    let Recognized::Insert(i) = rec("INSERT INTO t SET id = 1, name = 'x'", vec![]) else {
        panic!()
    };
    assert_eq!(i.columns, vec!["id", "name"]);
    assert_eq!(i.rows.len(), 1);
    let Recognized::Insert(i) = rec("INSERT INTO t VALUES (DEFAULT, 2)", vec![]) else {
        panic!()
    };
    assert!(i.columns.is_empty());
    assert_eq!(i.rows[0][0], Cell::Default);
}

#[test]
fn select_for_update_is_recognized_and_plain_select_is_not() {
    let Recognized::SelectForUpdate(s) = rec(
        "SELECT money FROM account_tbl a WHERE a.id = ? LIMIT 1 FOR UPDATE",
        vec![Value::Int(1)],
    ) else {
        panic!()
    };
    assert_eq!(s.table.from_sql(), "account_tbl a");
    assert_eq!(s.filter.render(), " WHERE a.id = ? LIMIT 1");
    assert_eq!(s.filter.params, vec![Value::Int(1)]);
    assert!(matches!(
        rec("SELECT * FROM t WHERE id = ?", vec![Value::Int(1)]),
        Recognized::Plain
    ));
    assert!(matches!(
        rec("CREATE TABLE x (id INT)", vec![]),
        Recognized::Plain
    ));
    assert!(matches!(rec("SET @a = 1", vec![]), Recognized::Plain));
}

#[test]
fn refuses_what_cannot_be_undone() {
    assert!(refused("INSERT INTO t (id) SELECT id FROM u").contains("INSERT ... SELECT"));
    assert!(refused("SELECT * FROM t JOIN u ON t.id = u.id FOR UPDATE").contains("join"));
    assert!(refused("UPDATE t, u SET t.a = 1 WHERE t.id = u.id").contains("comma-separated"));
    assert!(refused("UPDATE t JOIN u ON t.id = u.id SET t.a = 1 LIMIT 1").contains("LIMIT"));
    assert!(refused("UPDATE t JOIN u ON t.id = u.id SET x.a = 1").contains("`x` names no table"));
    let many = recognize(
        "UPDATE t SET a = ? ; UPDATE t SET a = 2",
        &pos(vec![Value::Int(1)]),
    );
    assert!(matches!(many, Err(RmError::Unsupported { .. })));
}

#[test]
fn recognizes_conflicting_inserts() {
    for (sql, want) in [
        (
            "INSERT INTO t (id) VALUES (1) ON DUPLICATE KEY UPDATE id = 2",
            OnConflict::UpdateDuplicate,
        ),
        ("REPLACE INTO t (id) VALUES (1)", OnConflict::Replace),
        ("INSERT IGNORE INTO t (id) VALUES (1)", OnConflict::Ignore),
        ("INSERT INTO t (id) VALUES (1)", OnConflict::Error),
    ] {
        match rec(sql, vec![]) {
            Recognized::Insert(i) => assert_eq!(i.on_conflict, want, "{sql}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
}

#[test]
fn recognizes_multi_table_statements() {
    let Recognized::Joined(j) = rec(
        "UPDATE a JOIN b bb ON a.id = bb.id AND bb.k = ? SET a.x = ?, bb.y = 2, z = 3 WHERE a.v = ?",
        vec![Value::Int(1), Value::Int(2), Value::Int(3)],
    ) else {
        panic!("not joined")
    };
    assert_eq!(j.kind, JoinedKind::Update);
    assert_eq!(
        j.targets,
        vec![
            ("a".to_string(), vec!["x".to_string()]),
            ("bb".to_string(), vec!["y".to_string()])
        ]
    );
    assert_eq!(j.unqualified, vec!["z".to_string()]);
    assert_eq!(
        j.params,
        vec![Value::Int(1), Value::Int(3)],
        "ON and WHERE params, not SET's"
    );
    assert_eq!(j.from, "a JOIN b bb ON a.id = bb.id AND bb.k = ?");
    for sql in [
        "DELETE a, b FROM a JOIN b ON a.id = b.id WHERE b.z = 1",
        "DELETE FROM a, b USING a JOIN b ON a.id = b.id WHERE b.z = 1",
    ] {
        let Recognized::Joined(j) = rec(sql, vec![]) else {
            panic!("{sql}")
        };
        assert_eq!(j.kind, JoinedKind::Delete);
        let names: Vec<&str> = j.targets.iter().map(|(q, _)| q.as_str()).collect();
        assert_eq!(names, ["a", "b"], "{sql}");
    }
}

#[test]
fn recognizes_statement_lists_and_savepoints() {
    let Recognized::Many(parts) = rec("UPDATE t SET a = 1; SAVEPOINT s; DELETE FROM t", vec![])
    else {
        panic!("not many")
    };
    assert_eq!(parts.len(), 3);
    assert!(matches!(parts[1].1, Recognized::Transaction(TxControl::Savepoint(ref n)) if n == "s"));
    assert!(matches!(
        rec("SELECT 1; SELECT 2", vec![]),
        Recognized::Plain
    ));
    assert!(matches!(
        rec("ROLLBACK TO SAVEPOINT s1", vec![]),
        Recognized::Transaction(TxControl::RollbackTo(ref n)) if n == "s1"
    ));
    assert!(matches!(
        rec("RELEASE SAVEPOINT s1", vec![]),
        Recognized::Transaction(TxControl::Release(_))
    ));
}

#[test]
fn named_params_and_param_count_mismatch_are_errors() {
    let named = Params::Named(std::collections::HashMap::new());
    assert!(matches!(
        recognize("UPDATE t SET a = 1", &named),
        Err(RmError::Unsupported { .. })
    ));
    assert!(matches!(
        recognize("UPDATE t SET a = ? WHERE id = ?", &pos(vec![Value::Int(1)])),
        Err(RmError::Parse { .. })
    ));
}

#[test]
fn unparsable_dml_is_an_error_but_other_text_passes() {
    assert!(matches!(
        recognize("UPDATE t SET WHERE", &Params::Empty),
        Err(RmError::Parse { .. })
    ));
    assert!(matches!(
        recognize("FLUSH SOMETHING WEIRD ((", &Params::Empty),
        Ok(Recognized::Plain)
    ));
}

#[test]
fn unescapes_mysql_literals() {
    assert_eq!(unescape(r"a\nb\\c''d\%", '\''), "a\nb\\c'd\\%");
}

#[test]
fn statement_lists_keep_each_statements_literals_raw() {
    let sql =
        r"INSERT INTO t VALUES (1, 'it''s', 'x\'y', 'a\\b'); UPDATE t SET v = 'q''' WHERE id = 2";
    let Recognized::Many(parts) = rec(sql, vec![]) else {
        panic!("not many")
    };
    assert_eq!(
        parts[0].0,
        r"INSERT INTO t VALUES (1, 'it''s', 'x\'y', 'a\\b')"
    );
    assert_eq!(parts[1].0, r"UPDATE t SET v = 'q''' WHERE id = 2");
}
