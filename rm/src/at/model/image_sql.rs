//! The SQL text of image queries: quoted identifiers, column lists and the by-key condition.
//! Values never go into the text; they travel as `?` parameters.

use mysql_async::Value;

use super::table_meta::{ColumnMeta, TableMeta};
use super::value::FieldValue;

/// Back-quotes an identifier (doubling embedded back-quotes).
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

/// Largest number of rows per by-key query, to stay far below MySQL's 65535 placeholders.
pub(crate) const KEY_CHUNK: usize = 1000;

/// `pk IN (?,...)` for a one-column key, `(a = ? AND b = ?) OR ...` for a composite key (a
/// form both MySQL and MariaDB resolve through the primary index).
pub(crate) fn key_condition(
    meta: &TableMeta,
    pk_cols: &[&ColumnMeta],
    keys: &[Vec<FieldValue>],
) -> (String, Vec<Value>) {
    let year = |i: usize| pk_cols.get(i).is_some_and(|c| c.data_type == "year");
    let params: Vec<Value> = keys
        .iter()
        .flat_map(|k| k.iter().enumerate().map(move |(i, v)| v.to_mysql(year(i))))
        .collect();
    let cond = if let [pk] = meta.primary_keys.as_slice() {
        let marks = vec!["?"; keys.len()].join(",");
        format!("{} IN ({marks})", quote(pk))
    } else {
        let one = meta
            .primary_keys
            .iter()
            .map(|c| format!("{} = ?", quote(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        vec![format!("({one})"); keys.len()].join(" OR ")
    };
    (cond, params)
}

pub(crate) fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote("a`b"), "`a``b`");
    }
}
