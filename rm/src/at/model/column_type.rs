//! What a MySQL column type means to AT mode: the JDBC type code Connector/J reports for it
//! and the Java class its values take (at-mode.md 2.3), from information_schema's type names.
//! Shared by the table metadata (which records it per column) and the value model (which
//! converts by it), so neither needs the other's file for it.

/// `java.sql.Types` codes used by the MySQL driver.
pub mod jdbc {
    #![allow(missing_docs)]
    pub const BIT: i32 = -7;
    pub const TINYINT: i32 = -6;
    pub const SMALLINT: i32 = 5;
    pub const INTEGER: i32 = 4;
    pub const BIGINT: i32 = -5;
    pub const REAL: i32 = 7;
    pub const DOUBLE: i32 = 8;
    pub const DECIMAL: i32 = 3;
    pub const CHAR: i32 = 1;
    pub const VARCHAR: i32 = 12;
    pub const LONGVARCHAR: i32 = -1;
    pub const BINARY: i32 = -2;
    pub const VARBINARY: i32 = -3;
    pub const LONGVARBINARY: i32 = -4;
    pub const DATE: i32 = 91;
    pub const TIME: i32 = 92;
    pub const TIMESTAMP: i32 = 93;
    pub const OTHER: i32 = 1111;
}

/// How a column's values are classed, from its MySQL type (Connector/J's defaults:
/// `tinyInt1isBit=true`, `yearIsDateType=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Boolean,
    Int,
    Long,
    BigInteger,
    Float,
    Double,
    Decimal,
    Text,
    Bytes,
    Date,
    Year,
    Time,
    Timestamp,
}

/// The value class and JDBC type code for a column, from information_schema's `DATA_TYPE`
/// and `COLUMN_TYPE` (both lower-case).
pub(crate) fn classify(data_type: &str, column_type: &str) -> (Kind, i32) {
    let unsigned = column_type.contains("unsigned");
    match data_type {
        "tinyint" if column_type.starts_with("tinyint(1)") => (Kind::Boolean, jdbc::BIT),
        "tinyint" => (Kind::Int, jdbc::TINYINT),
        "smallint" => (Kind::Int, jdbc::SMALLINT),
        "mediumint" => (Kind::Int, jdbc::INTEGER),
        "int" | "integer" if unsigned => (Kind::Long, jdbc::INTEGER),
        "int" | "integer" => (Kind::Int, jdbc::INTEGER),
        "bigint" if unsigned => (Kind::BigInteger, jdbc::BIGINT),
        "bigint" => (Kind::Long, jdbc::BIGINT),
        "decimal" | "numeric" => (Kind::Decimal, jdbc::DECIMAL),
        "float" => (Kind::Float, jdbc::REAL),
        "double" | "real" => (Kind::Double, jdbc::DOUBLE),
        "bit" if column_type == "bit(1)" => (Kind::Boolean, jdbc::BIT),
        "bit" => (Kind::Bytes, jdbc::BIT),
        "char" | "enum" | "set" => (Kind::Text, jdbc::CHAR),
        "varchar" | "tinytext" => (Kind::Text, jdbc::VARCHAR),
        "text" | "mediumtext" | "longtext" | "json" => (Kind::Text, jdbc::LONGVARCHAR),
        "binary" => (Kind::Bytes, jdbc::BINARY),
        "varbinary" | "tinyblob" => (Kind::Bytes, jdbc::VARBINARY),
        "blob" | "mediumblob" | "longblob" => (Kind::Bytes, jdbc::LONGVARBINARY),
        "date" => (Kind::Date, jdbc::DATE),
        "year" => (Kind::Year, jdbc::DATE),
        "time" => (Kind::Time, jdbc::TIME),
        "datetime" | "timestamp" => (Kind::Timestamp, jdbc::TIMESTAMP),
        _ => (Kind::Bytes, jdbc::OTHER),
    }
}
