//! Statement text with its parameters written in as SQL literals, so that several statements
//! can travel in one text-protocol round trip (see `batch.rs`).
//!
//! Only values whose literal means exactly what the bound parameter would are written in:
//! integers, NULL, finite doubles (in exponent form, which MySQL reads as a DOUBLE, as the
//! bound value is) and strings of printable ASCII without `'` or `\` (such a literal reads the
//! same under every `sql_mode` and every ASCII-compatible connection character set). Anything
//! else makes [`inline_params`] answer `None`, and the caller sends the statements one by one,
//! as prepared statements.

use std::sync::{Arc, LazyLock};

use mysql_async::Value;
use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};

use super::text_cache::TextCache;

/// The SQL literal for `v`, when one means exactly the same as binding `v`.
pub(crate) fn sql_literal(v: &Value) -> Option<String> {
    match v {
        Value::NULL => Some("NULL".into()),
        Value::Int(i) if *i < 0 => Some(format!("({i})")),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Double(d) if d.is_finite() && d.is_sign_negative() => Some(format!("({d:e})")),
        Value::Double(d) if d.is_finite() => Some(format!("{d:e}")),
        Value::Bytes(b)
            if b.iter()
                .all(|c| (0x20..0x7f).contains(c) && *c != b'\'' && *c != b'\\') =>
        {
            // Checked to be ASCII just above.
            Some(format!("'{}'", String::from_utf8_lossy(b)))
        }
        _ => None,
    }
}

/// A literal for any byte string stored as it is (an undo-log row, never compared with a
/// column's collation). Printable ASCII without `\` (the JSON undo log of ASCII data) is a
/// `_binary` quoted string with `'` doubled, which reads the same with or without
/// `NO_BACKSLASH_ESCAPES`: half the bytes of hex, and cheaper for MariaDB to parse (the
/// INSERT + COMMIT of a 1.2 KB undo log took about 50 µs less). Anything else is hex.
pub(crate) fn bytes_literal(b: &[u8]) -> String {
    if b.is_empty() {
        return "''".into();
    }
    if b.iter().all(|c| (0x20..0x7f).contains(c) && *c != b'\\') {
        let quotes = b.iter().filter(|c| **c == b'\'').count();
        let mut s = String::with_capacity(10 + b.len() + quotes);
        s.push_str("_binary'");
        for &c in b {
            if c == b'\'' {
                s.push('\'');
            }
            s.push(char::from(c));
        }
        s.push('\'');
        return s;
    }
    let digit = |n: u8| char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 });
    let mut s = String::with_capacity(3 + 2 * b.len());
    s.push_str("X'");
    for byte in b {
        s.push(digit(byte >> 4));
        s.push(digit(byte & 0xf));
    }
    s.push('\'');
    s
}

/// Where a text's `?`s are (byte ranges) and where its last token ends.
#[derive(Debug)]
struct Splice {
    holes: Vec<(usize, usize)>,
    end: usize,
}

/// Splices of recent texts (the application's statements and the image queries built from
/// them repeat).
static SPLICES: LazyLock<TextCache<Option<Arc<Splice>>>> = LazyLock::new(|| TextCache::new(1024));

/// `sql` with each `?` replaced by the literal of the matching parameter and anything after
/// its last token (comments, `;`) cut, so that another statement can follow it. `None` when a
/// parameter has no exact literal, the counts differ, the text does not tokenize, or it holds
/// something whose meaning could change when spliced (`/*! ... */` comments, numbered `?1`).
pub(crate) fn inline_params(sql: &str, params: &[Value]) -> Option<String> {
    let splice = SPLICES.get_or_insert_with(sql, || splice(sql).map(Arc::new))?;
    if splice.holes.len() != params.len() {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 8 * params.len());
    let mut copied = 0;
    for ((start, end), param) in splice.holes.iter().zip(params) {
        out.push_str(sql.get(copied..*start)?);
        out.push(' ');
        out.push_str(&sql_literal(param)?);
        out.push(' ');
        copied = *end;
    }
    out.push_str(sql.get(copied..splice.end)?);
    Some(out)
}

fn splice(sql: &str) -> Option<Splice> {
    if sql.contains("/*!") {
        return None;
    }
    let dialect = MySqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize_with_location()
        .ok()?;
    let last = tokens
        .iter()
        .rev()
        .find(|t| {
            !matches!(
                t.token,
                Token::Whitespace(_) | Token::SemiColon | Token::EOF
            )
        })?
        .span
        .end;
    let mut cursor = Cursor::new(sql);
    let mut holes = Vec::new();
    for t in &tokens {
        match &t.token {
            Token::Placeholder(p) if p == "?" => {
                holes.push((cursor.byte_at(t.span.start)?, cursor.byte_at(t.span.end)?));
            }
            Token::Placeholder(_) => return None,
            Token::Whitespace(Whitespace::MultiLineComment(c)) if c.starts_with('!') => {
                return None
            }
            _ => {}
        }
    }
    Some(Splice {
        holes,
        end: cursor.byte_at(last)?,
    })
}

/// Maps the tokenizer's (line, column) locations, columns counted in characters, to byte
/// offsets, moving forwards only.
struct Cursor<'a> {
    sql: &'a str,
    line: u64,
    col: u64,
    byte: usize,
}

impl<'a> Cursor<'a> {
    fn new(sql: &'a str) -> Self {
        Cursor {
            sql,
            line: 1,
            col: 1,
            byte: 0,
        }
    }

    fn byte_at(&mut self, at: Location) -> Option<usize> {
        while (self.line, self.col) < (at.line, at.column) {
            let c = self.sql[self.byte..].chars().next()?;
            self.byte += c.len_utf8();
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
        ((self.line, self.col) == (at.line, at.column)).then_some(self.byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Bytes(v.as_bytes().to_vec())
    }

    #[test]
    fn literals_only_where_exact() {
        assert_eq!(sql_literal(&Value::Int(-5)).as_deref(), Some("(-5)"));
        assert_eq!(
            sql_literal(&Value::UInt(u64::MAX)).as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(sql_literal(&Value::Double(0.1)).as_deref(), Some("1e-1"));
        assert_eq!(
            sql_literal(&Value::Double(-2.5)).as_deref(),
            Some("(-2.5e0)")
        );
        assert_eq!(sql_literal(&s("a b-c_%")).as_deref(), Some("'a b-c_%'"));
        assert_eq!(sql_literal(&Value::NULL).as_deref(), Some("NULL"));
        for v in [
            s("it's"),
            s("a\\b"),
            s("é"),
            s("a\nb"),
            Value::Double(f64::NAN),
            Value::Float(1.0),
            Value::Date(2024, 1, 2, 3, 4, 5, 0),
        ] {
            assert_eq!(sql_literal(&v), None, "{v:?}");
        }
        assert_eq!(bytes_literal(&[0, 0xab]), "X'00AB'");
        assert_eq!(bytes_literal(&[]), "''");
        assert_eq!(
            bytes_literal(b"{\"a\":\"it's\"}"),
            r#"_binary'{"a":"it''s"}'"#
        );
        assert_eq!(bytes_literal(b"a\\b"), "X'615C62'");
        assert_eq!(bytes_literal(b"a\nb"), "X'610A62'");
        assert_eq!(bytes_literal("é".as_bytes()), "X'C3A9'");
    }

    #[test]
    fn splices_parameters_outside_strings_and_comments() {
        let sql = "UPDATE t SET a = ?, b = '?' /* ? */ WHERE id = ? -- ?";
        assert_eq!(
            inline_params(sql, &[Value::Int(1), Value::Int(2)]).as_deref(),
            Some("UPDATE t SET a =  1 , b = '?' /* ? */ WHERE id =  2 ")
        );
        assert_eq!(
            inline_params("SELECT 1 LIMIT?;  ;\n", &[Value::Int(3)]).as_deref(),
            Some("SELECT 1 LIMIT 3 ")
        );
        assert_eq!(
            inline_params("UPDATE `é?` SET\n x = ?", &[s("ok")]).as_deref(),
            Some("UPDATE `é?` SET\n x =  'ok' ")
        );
    }

    #[test]
    fn refuses_what_it_cannot_splice_exactly() {
        assert_eq!(inline_params("SELECT ?", &[]), None);
        assert_eq!(
            inline_params("SELECT ?", &[Value::Int(1), Value::Int(2)]),
            None
        );
        assert_eq!(inline_params("SELECT ?", &[s("it's")]), None);
        assert_eq!(inline_params("SELECT ?1", &[Value::Int(1)]), None);
        assert_eq!(
            inline_params("SELECT /*!50000 ? */ 1", &[Value::Int(1)]),
            None
        );
        assert_eq!(inline_params("SELECT 'open", &[]), None);
        assert_eq!(inline_params(" -- nothing", &[]), None);
    }
}
