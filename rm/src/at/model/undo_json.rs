//! `rollback_info` exactly as Java Seata 1.2's default Jackson serializer writes and reads it
//! (at-mode.md 2): [`UndoCodec`] for the model in `undo_log.rs`.
//!
//! Time values: `java.sql.Timestamp`/`Date` carry epoch milliseconds in the JVM's zone. We
//! convert with a fixed UTC offset ([`UndoCodec::offset_secs`]); use the Java services' zone
//! for logs both sides read, any value works for logs only seata-rs reads.

use super::image::{Field, KeyType, Row, TableRecords};
use super::json::{self, base64_decode, base64_encode, write_str, Json};
use super::undo_log::{BranchUndoLog, SqlType, SqlUndoLog};
use super::value::{parse_time, Civil, FieldValue};

const PKG: &str = "io.seata.rm.datasource";

/// Encodes and decodes `rollback_info` in Seata's Jackson form.
#[derive(Debug, Clone, Copy, Default)]
pub struct UndoCodec {
    /// Seconds east of UTC used for `java.sql.Timestamp`/`Date` millis (the JVM zone).
    pub offset_secs: i32,
}

impl UndoCodec {
    /// `rollback_info` bytes for `log`.
    pub fn encode(&self, log: &BranchUndoLog) -> Vec<u8> {
        let mut o = String::with_capacity(512);
        o.push_str(&format!(
            "{{\"@class\":\"{PKG}.undo.BranchUndoLog\",\"xid\":"
        ));
        write_str(&mut o, &log.xid);
        o.push_str(&format!(",\"branchId\":{},\"sqlUndoLogs\":", log.branch_id));
        self.list(&mut o, &log.sql_undo_logs, |o, u| {
            o.push_str(&format!(
                "{{\"@class\":\"{PKG}.undo.SQLUndoLog\",\"sqlType\":\"{}\",\"tableName\":",
                u.sql_type.name()
            ));
            write_str(o, &u.table_name);
            o.push_str(",\"beforeImage\":");
            self.records(o, &u.before_image);
            o.push_str(",\"afterImage\":");
            self.records(o, &u.after_image);
            o.push('}');
        });
        o.push('}');
        o.into_bytes()
    }

    fn list<T>(&self, o: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
        o.push_str("[\"java.util.ArrayList\",[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            each(o, item);
        }
        o.push_str("]]");
    }

    fn records(&self, o: &mut String, r: &TableRecords) {
        let class = if r.rows.is_empty() {
            "TableRecords$EmptyTableRecords"
        } else {
            "TableRecords"
        };
        o.push_str(&format!(
            "{{\"@class\":\"{PKG}.sql.struct.{class}\",\"tableName\":"
        ));
        write_str(o, &r.table_name);
        o.push_str(",\"rows\":");
        self.list(o, &r.rows, |o, row| {
            o.push_str(&format!(
                "{{\"@class\":\"{PKG}.sql.struct.Row\",\"fields\":"
            ));
            self.list(o, &row.fields, |o, f| {
                o.push_str(&format!(
                    "{{\"@class\":\"{PKG}.sql.struct.Field\",\"name\":"
                ));
                write_str(o, &f.name);
                let key = match f.key_type {
                    KeyType::PrimaryKey => "PRIMARY_KEY",
                    KeyType::Null => "NULL",
                };
                o.push_str(&format!(
                    ",\"keyType\":\"{key}\",\"type\":{},\"value\":",
                    f.jdbc_type
                ));
                self.value(o, &f.value);
                o.push('}');
            });
            o.push('}');
        });
        o.push('}');
    }

    fn value(&self, o: &mut String, v: &FieldValue) {
        let wrap = |o: &mut String, class: &str, payload: &str| {
            o.push_str(&format!("[\"{class}\",{payload}]"));
        };
        let quoted = |s: &str| {
            let mut q = String::new();
            write_str(&mut q, s);
            q
        };
        match v {
            FieldValue::Null => o.push_str("null"),
            FieldValue::Boolean(b) => o.push_str(if *b { "true" } else { "false" }),
            FieldValue::Int(i) => o.push_str(&i.to_string()),
            FieldValue::Short(s) => wrap(o, "java.lang.Short", &s.to_string()),
            FieldValue::Long(l) => wrap(o, "java.lang.Long", &l.to_string()),
            FieldValue::BigInteger(s) => wrap(o, "java.math.BigInteger", s),
            FieldValue::Float(f) => wrap(o, "java.lang.Float", &format!("{f:?}")),
            FieldValue::Double(d) => o.push_str(&format!("{d:?}")),
            FieldValue::BigDecimal(s) => wrap(o, "java.math.BigDecimal", &json_number(s)),
            FieldValue::String(s) => write_str(o, s),
            FieldValue::Bytes(b) => wrap(o, "[B", &quoted(&base64_encode(b))),
            FieldValue::Blob(b) => wrap(
                o,
                "javax.sql.rowset.serial.SerialBlob",
                &quoted(&base64_encode(b)),
            ),
            FieldValue::Clob(s) => wrap(o, "javax.sql.rowset.serial.SerialClob", &quoted(s)),
            FieldValue::Timestamp(c) => wrap(
                o,
                "java.sql.Timestamp",
                &format!(
                    "[{},{}]",
                    c.epoch_millis(self.offset_secs),
                    u64::from(c.micros) * 1000
                ),
            ),
            FieldValue::Date { year, month, day } => {
                let midnight = Civil {
                    year: *year,
                    month: *month,
                    day: *day,
                    hour: 0,
                    minute: 0,
                    second: 0,
                    micros: 0,
                };
                wrap(
                    o,
                    "java.sql.Date",
                    &midnight.epoch_millis(self.offset_secs).to_string(),
                )
            }
            FieldValue::Time { .. } => wrap(o, "java.sql.Time", &quoted(&v.time_text())),
        }
    }

    /// Decodes `rollback_info`. The defense content `{}` decodes to an empty log.
    pub fn decode(&self, bytes: &[u8]) -> Result<BranchUndoLog, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let root = json::parse(text)?;
        let sql_undo_logs = match root.get("sqlUndoLogs") {
            None | Some(Json::Null) => Vec::new(),
            Some(l) => list(l)?
                .iter()
                .map(|u| self.decode_item(u))
                .collect::<Result<_, _>>()?,
        };
        Ok(BranchUndoLog {
            xid: root
                .get("xid")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            branch_id: match root.get("branchId") {
                Some(Json::Num(n)) => n.parse().map_err(|_| format!("bad branchId {n}"))?,
                _ => 0,
            },
            sql_undo_logs,
        })
    }

    fn decode_item(&self, u: &Json) -> Result<SqlUndoLog, String> {
        let sql_type = match u.get("sqlType").and_then(Json::as_str) {
            Some("INSERT") => SqlType::Insert,
            Some("UPDATE") => SqlType::Update,
            Some("DELETE") => SqlType::Delete,
            other => return Err(format!("unsupported sqlType {other:?}")),
        };
        Ok(SqlUndoLog {
            sql_type,
            table_name: u
                .get("tableName")
                .and_then(Json::as_str)
                .ok_or("SQLUndoLog without tableName")?
                .to_string(),
            before_image: self.decode_records(u.get("beforeImage"))?,
            after_image: self.decode_records(u.get("afterImage"))?,
        })
    }

    fn decode_records(&self, r: Option<&Json>) -> Result<TableRecords, String> {
        let Some(r) = r.filter(|r| **r != Json::Null) else {
            return Ok(TableRecords::default());
        };
        let rows = match r.get("rows") {
            None | Some(Json::Null) => Vec::new(),
            Some(l) => list(l)?
                .iter()
                .map(|row| {
                    let fields = match row.get("fields") {
                        None | Some(Json::Null) => Vec::new(),
                        Some(fl) => list(fl)?
                            .iter()
                            .map(|f| self.decode_field(f))
                            .collect::<Result<_, _>>()?,
                    };
                    Ok(Row { fields })
                })
                .collect::<Result<_, String>>()?,
        };
        Ok(TableRecords {
            table_name: r
                .get("tableName")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            rows,
        })
    }

    fn decode_field(&self, f: &Json) -> Result<Field, String> {
        let name = f
            .get("name")
            .and_then(Json::as_str)
            .ok_or("Field without name")?;
        Ok(Field {
            name: name.to_string(),
            key_type: match f.get("keyType").and_then(Json::as_str) {
                Some("PRIMARY_KEY") => KeyType::PrimaryKey,
                _ => KeyType::Null,
            },
            jdbc_type: match f.get("type") {
                Some(Json::Num(n)) => n.parse().map_err(|_| format!("bad type {n}"))?,
                _ => return Err(format!("field {name} without type")),
            },
            value: self
                .decode_value(f.get("value").unwrap_or(&Json::Null))
                .map_err(|e| format!("field {name}: {e}"))?,
        })
    }

    fn decode_value(&self, v: &Json) -> Result<FieldValue, String> {
        Ok(match v {
            Json::Null => FieldValue::Null,
            Json::Bool(b) => FieldValue::Boolean(*b),
            Json::Str(s) => FieldValue::String(s.clone()),
            Json::Num(n) if n.contains(['.', 'e', 'E']) => {
                FieldValue::Double(n.parse().map_err(|_| format!("bad number {n}"))?)
            }
            Json::Num(n) => {
                if let Ok(i) = n.parse::<i32>() {
                    FieldValue::Int(i)
                } else if let Ok(l) = n.parse::<i64>() {
                    FieldValue::Long(l)
                } else {
                    FieldValue::BigInteger(n.clone())
                }
            }
            Json::Arr(pair) => {
                let [Json::Str(class), payload] = pair.as_slice() else {
                    return Err("value array is not [class, payload]".into());
                };
                self.decode_typed(class, payload)?
            }
            Json::Obj(_) => return Err("object values are not supported".into()),
        })
    }

    fn decode_typed(&self, class: &str, p: &Json) -> Result<FieldValue, String> {
        let num = || match p {
            Json::Num(n) => Ok(n.as_str()),
            _ => Err(format!("{class} payload is not a number")),
        };
        let string = || p.as_str().ok_or(format!("{class} payload is not a string"));
        let bad = || format!("bad {class} payload");
        Ok(match class {
            "java.lang.Long" => FieldValue::Long(num()?.parse().map_err(|_| bad())?),
            "java.lang.Integer" => FieldValue::Int(num()?.parse().map_err(|_| bad())?),
            "java.lang.Short" => FieldValue::Short(num()?.parse().map_err(|_| bad())?),
            "java.lang.Byte" => FieldValue::Short(num()?.parse().map_err(|_| bad())?),
            "java.math.BigInteger" => FieldValue::BigInteger(num()?.to_string()),
            "java.math.BigDecimal" => FieldValue::BigDecimal(num()?.to_string()),
            "java.lang.Float" => FieldValue::Float(num()?.parse().map_err(|_| bad())?),
            "java.lang.Double" => FieldValue::Double(num()?.parse().map_err(|_| bad())?),
            "java.lang.Boolean" => match p {
                Json::Bool(b) => FieldValue::Boolean(*b),
                _ => return Err(bad()),
            },
            "java.lang.String" => FieldValue::String(string()?.to_string()),
            "[B" => FieldValue::Bytes(base64_decode(string()?)?),
            "javax.sql.rowset.serial.SerialBlob" => FieldValue::Blob(base64_decode(string()?)?),
            "javax.sql.rowset.serial.SerialClob" => FieldValue::Clob(string()?.to_string()),
            "java.sql.Timestamp" => {
                let Json::Arr(parts) = p else {
                    return Err(bad());
                };
                let [Json::Num(ms), Json::Num(ns)] = parts.as_slice() else {
                    return Err(bad());
                };
                let ms: i64 = ms.parse().map_err(|_| bad())?;
                let ns: u32 = ns.parse().map_err(|_| bad())?;
                FieldValue::Timestamp(Civil::from_epoch(ms, ns, self.offset_secs))
            }
            "java.sql.Date" => {
                let ms: i64 = num()?.parse().map_err(|_| bad())?;
                let c = Civil::from_epoch(ms, 0, self.offset_secs);
                FieldValue::Date {
                    year: c.year,
                    month: c.month,
                    day: c.day,
                }
            }
            "java.sql.Time" => parse_time(string()?).ok_or_else(bad)?,
            other => return Err(format!("unsupported value class {other}")),
        })
    }
}

/// A `["java.util.ArrayList", [...]]` wrapper (or a bare array) → its elements.
fn list(v: &Json) -> Result<&[Json], String> {
    match v {
        Json::Arr(items) => match items.as_slice() {
            [Json::Str(_), Json::Arr(inner)] => Ok(inner),
            _ => Ok(items),
        },
        _ => Err("expected a list".into()),
    }
}

/// MySQL decimal text as a JSON number (MySQL never omits the leading zero, but be safe).
fn json_number(s: &str) -> String {
    let (sign, digits) = match s.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", s),
    };
    if digits.starts_with('.') {
        format!("{sign}0{digits}")
    } else {
        s.to_string()
    }
}

/// The serializer named by a `context` value (`k=v&k=v`); absent means the default, jackson.
pub fn serializer_of(context: &str) -> &str {
    context
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "serializer")
        .map(|(_, v)| v)
        .unwrap_or("jackson")
}

#[cfg(test)]
#[path = "undo_json_tests.rs"]
mod tests;
