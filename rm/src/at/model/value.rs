//! Column values as Java Seata sees them: the class MySQL Connector/J's `getObject` returns
//! for each column type (at-mode.md 2.3), converted from and back to `mysql_async::Value`.
//!
//! Owns the type mapping (MySQL column → JDBC type code and Java class), the Java
//! `String.valueOf` rendering used in lock keys, and the civil-time ↔ epoch-millis math for
//! `java.sql.Timestamp`/`Date`. The JSON form lives in `undo_json.rs`; the type classes in
//! `column_type.rs`.

use mysql_async::Value;

use super::column_type::Kind;
use super::table_meta::ColumnMeta;
use crate::error::RmError;

/// A field value, one variant per Java class an undo log can carry.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// SQL NULL.
    Null,
    /// `java.lang.Boolean` (TINYINT(1), BIT(1)).
    Boolean(bool),
    /// `java.lang.Short`.
    Short(i16),
    /// `java.lang.Integer` (TINYINT..MEDIUMINT, INT).
    Int(i32),
    /// `java.lang.Long` (BIGINT, INT UNSIGNED).
    Long(i64),
    /// `java.math.BigInteger` (BIGINT UNSIGNED), as decimal digits.
    BigInteger(String),
    /// `java.lang.Float` (FLOAT).
    Float(f32),
    /// `java.lang.Double` (DOUBLE).
    Double(f64),
    /// `java.math.BigDecimal` (DECIMAL), as MySQL's decimal text (scale kept).
    BigDecimal(String),
    /// `java.lang.String` (CHAR, VARCHAR, TEXT, JSON, ENUM, SET).
    String(String),
    /// `byte[]` (BINARY, VARBINARY, BLOB, BIT(n>1), anything unrecognised).
    Bytes(Vec<u8>),
    /// `javax.sql.rowset.serial.SerialBlob`: only read from Java-written logs.
    Blob(Vec<u8>),
    /// `javax.sql.rowset.serial.SerialClob`: only read from Java-written logs.
    Clob(String),
    /// `java.sql.Timestamp` (DATETIME, TIMESTAMP), in the session's civil time.
    Timestamp(Civil),
    /// `java.sql.Date` (DATE, YEAR).
    Date { year: i32, month: u8, day: u8 },
    /// `java.sql.Time` (TIME). MySQL's range (negative, over 24 h, microseconds) is kept.
    Time {
        negative: bool,
        hours: u32,
        minutes: u8,
        seconds: u8,
        micros: u32,
    },
}

/// A civil date-time with microseconds (MySQL DATETIME(6) precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i32,
    /// Month 1..=12.
    pub month: u8,
    /// Day 1..=31.
    pub day: u8,
    /// Hour.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// Second.
    pub second: u8,
    /// Microseconds.
    pub micros: u32,
}

fn bad(col: &ColumnMeta, v: &Value) -> RmError {
    RmError::Value {
        column: col.name.clone(),
        reason: format!("unexpected value {v:?} for {}", col.column_type),
    }
}

fn text(col: &ColumnMeta, bytes: &[u8]) -> Result<String, RmError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| RmError::Value {
        column: col.name.clone(),
        reason: "text is not valid UTF-8 (use a utf8mb4 connection)".into(),
    })
}

fn int_of(col: &ColumnMeta, v: &Value) -> Result<i128, RmError> {
    match v {
        Value::Int(i) => Ok(i128::from(*i)),
        Value::UInt(u) => Ok(i128::from(*u)),
        Value::Bytes(b) => text(col, b)?.trim().parse().map_err(|_| bad(col, v)),
        _ => Err(bad(col, v)),
    }
}

impl FieldValue {
    /// Converts a value read with the binary protocol (text-protocol bytes are parsed too).
    pub(crate) fn from_mysql(v: Value, col: &ColumnMeta) -> Result<Self, RmError> {
        if v == Value::NULL {
            return Ok(FieldValue::Null);
        }
        let num = |v: &Value| int_of(col, v);
        Ok(match col.kind {
            // Keep values other than 0/1 exact: Java would turn them into `true`.
            Kind::Boolean => match &v {
                Value::Bytes(b) if col.data_type == "bit" => {
                    FieldValue::Boolean(b.iter().any(|x| *x != 0))
                }
                _ => match num(&v)? {
                    0 => FieldValue::Boolean(false),
                    1 => FieldValue::Boolean(true),
                    n => FieldValue::Int(i32::try_from(n).map_err(|_| bad(col, &v))?),
                },
            },
            Kind::Int => FieldValue::Int(i32::try_from(num(&v)?).map_err(|_| bad(col, &v))?),
            Kind::Long => FieldValue::Long(i64::try_from(num(&v)?).map_err(|_| bad(col, &v))?),
            Kind::BigInteger => FieldValue::BigInteger(num(&v)?.to_string()),
            Kind::Float => match v {
                Value::Float(f) => FieldValue::Float(f),
                Value::Double(d) => FieldValue::Float(d as f32),
                Value::Bytes(ref b) => {
                    FieldValue::Float(text(col, b)?.parse().map_err(|_| bad(col, &v))?)
                }
                _ => return Err(bad(col, &v)),
            },
            Kind::Double => match v {
                Value::Double(d) => FieldValue::Double(d),
                Value::Float(f) => FieldValue::Double(f64::from(f)),
                Value::Bytes(ref b) => {
                    FieldValue::Double(text(col, b)?.parse().map_err(|_| bad(col, &v))?)
                }
                _ => return Err(bad(col, &v)),
            },
            Kind::Decimal => match v {
                Value::Bytes(b) => FieldValue::BigDecimal(text(col, &b)?),
                Value::Int(i) => FieldValue::BigDecimal(i.to_string()),
                Value::UInt(u) => FieldValue::BigDecimal(u.to_string()),
                _ => return Err(bad(col, &v)),
            },
            Kind::Text => match v {
                Value::Bytes(b) => FieldValue::String(text(col, &b)?),
                _ => return Err(bad(col, &v)),
            },
            Kind::Bytes => match v {
                Value::Bytes(b) => FieldValue::Bytes(b),
                Value::Int(i) => FieldValue::Bytes(i.to_string().into_bytes()),
                Value::UInt(u) => FieldValue::Bytes(u.to_string().into_bytes()),
                _ => return Err(bad(col, &v)),
            },
            Kind::Year => FieldValue::Date {
                year: i32::try_from(num(&v)?).map_err(|_| bad(col, &v))?,
                month: 1,
                day: 1,
            },
            Kind::Date | Kind::Timestamp => {
                let c = match v {
                    Value::Date(y, mo, d, h, mi, s, us) => Civil {
                        year: i32::from(y),
                        month: mo,
                        day: d,
                        hour: h,
                        minute: mi,
                        second: s,
                        micros: us,
                    },
                    Value::Bytes(ref b) => {
                        parse_civil(&text(col, b)?).ok_or_else(|| bad(col, &v))?
                    }
                    _ => return Err(bad(col, &v)),
                };
                if col.kind == Kind::Date {
                    FieldValue::Date {
                        year: c.year,
                        month: c.month,
                        day: c.day,
                    }
                } else {
                    FieldValue::Timestamp(c)
                }
            }
            Kind::Time => match v {
                Value::Time(neg, days, h, m, s, us) => FieldValue::Time {
                    negative: neg,
                    hours: days * 24 + u32::from(h),
                    minutes: m,
                    seconds: s,
                    micros: us,
                },
                Value::Bytes(ref b) => parse_time(&text(col, b)?).ok_or_else(|| bad(col, &v))?,
                _ => return Err(bad(col, &v)),
            },
        })
    }

    /// The value to bind for this field in a compensating statement. `year_column` says the
    /// target is a YEAR column, which takes a number rather than a date.
    pub(crate) fn to_mysql(&self, year_column: bool) -> Value {
        match self {
            FieldValue::Null => Value::NULL,
            FieldValue::Boolean(b) => Value::Int(i64::from(*b)),
            FieldValue::Short(v) => Value::Int(i64::from(*v)),
            FieldValue::Int(v) => Value::Int(i64::from(*v)),
            FieldValue::Long(v) => Value::Int(*v),
            FieldValue::BigInteger(s) => match s.parse::<u64>() {
                Ok(u) => Value::UInt(u),
                Err(_) => Value::Bytes(s.clone().into_bytes()),
            },
            FieldValue::Float(f) => Value::Float(*f),
            FieldValue::Double(d) => Value::Double(*d),
            FieldValue::BigDecimal(s) | FieldValue::String(s) | FieldValue::Clob(s) => {
                Value::Bytes(s.clone().into_bytes())
            }
            FieldValue::Bytes(b) | FieldValue::Blob(b) => Value::Bytes(b.clone()),
            FieldValue::Date { year, .. } if year_column => Value::Int(i64::from(*year)),
            FieldValue::Date { year, month, day } => {
                Value::Date(clamp_year(*year), *month, *day, 0, 0, 0, 0)
            }
            FieldValue::Timestamp(c) => Value::Date(
                clamp_year(c.year),
                c.month,
                c.day,
                c.hour,
                c.minute,
                c.second,
                c.micros,
            ),
            FieldValue::Time {
                negative,
                hours,
                minutes,
                seconds,
                micros,
            } => Value::Time(
                *negative,
                hours / 24,
                u8::try_from(hours % 24).unwrap_or(0),
                *minutes,
                *seconds,
                *micros,
            ),
        }
    }

    /// Java's `String.valueOf(value)`, used for lock keys (at-mode.md 4). Byte arrays are
    /// rendered as lower-case hex, where Java would print an identity hash.
    pub fn lock_key_text(&self) -> String {
        match self {
            FieldValue::Null => "null".into(),
            FieldValue::Boolean(b) => b.to_string(),
            FieldValue::Short(v) => v.to_string(),
            FieldValue::Int(v) => v.to_string(),
            FieldValue::Long(v) => v.to_string(),
            FieldValue::Float(f) => format!("{f:?}"),
            FieldValue::Double(d) => format!("{d:?}"),
            FieldValue::BigInteger(s)
            | FieldValue::BigDecimal(s)
            | FieldValue::String(s)
            | FieldValue::Clob(s) => s.clone(),
            FieldValue::Bytes(b) | FieldValue::Blob(b) => {
                b.iter().map(|x| format!("{x:02x}")).collect()
            }
            FieldValue::Timestamp(c) => {
                // java.sql.Timestamp#toString: nanos with trailing zeros trimmed, at least ".0".
                let nanos = format!("{:09}", u64::from(c.micros) * 1000);
                let frac = nanos.trim_end_matches('0');
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{}",
                    c.year,
                    c.month,
                    c.day,
                    c.hour,
                    c.minute,
                    c.second,
                    if frac.is_empty() { "0" } else { frac }
                )
            }
            FieldValue::Date { year, month, day } => format!("{year:04}-{month:02}-{day:02}"),
            FieldValue::Time { .. } => self.time_text(),
        }
    }

    /// `java.sql.Time#toString` (`HH:MM:SS`) when the value fits Java's `Time`; otherwise
    /// MySQL's own form (`-838:59:59.000001`), which only seata-rs reads back.
    pub(crate) fn time_text(&self) -> String {
        let FieldValue::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } = self
        else {
            return String::new();
        };
        let mut s = format!(
            "{}{hours:02}:{minutes:02}:{seconds:02}",
            if *negative { "-" } else { "" }
        );
        if *micros != 0 {
            s.push_str(&format!(".{micros:06}"));
        }
        s
    }
}

fn clamp_year(y: i32) -> u16 {
    u16::try_from(y.clamp(0, 9999)).unwrap_or(0)
}

/// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]]`.
fn parse_civil(s: &str) -> Option<Civil> {
    let (date, time) = match s.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let year = d.next()?.parse().ok()?;
    let month = d.next()?.parse().ok()?;
    let day = d.next()?.parse().ok()?;
    let (mut hour, mut minute, mut second, mut micros) = (0, 0, 0, 0);
    if let Some(t) = time {
        let FieldValue::Time {
            negative: false,
            hours,
            minutes,
            seconds,
            micros: us,
        } = parse_time(t)?
        else {
            return None;
        };
        hour = u8::try_from(hours).ok()?;
        (minute, second, micros) = (minutes, seconds, us);
    }
    Some(Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
    })
}

/// Parses `[-]H:MM:SS[.f{1,6}]`.
pub(crate) fn parse_time(s: &str) -> Option<FieldValue> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let mut p = hms.split(':');
    let hours = p.next()?.parse().ok()?;
    let minutes = p.next()?.parse().ok()?;
    let seconds = p.next()?.parse().ok()?;
    let micros = match frac {
        Some(f) if !f.is_empty() && f.len() <= 6 => format!("{f:0<6}").parse().ok()?,
        Some(_) => return None,
        None => 0,
    };
    Some(FieldValue::Time {
        negative,
        hours,
        minutes,
        seconds,
        micros,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        i32::try_from(y).unwrap_or(0),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

impl Civil {
    /// Epoch milliseconds of this civil time in a zone `offset_secs` east of UTC.
    pub(crate) fn epoch_millis(&self, offset_secs: i32) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(offset_secs);
        secs * 1000 + i64::from(self.micros / 1000)
    }

    /// The civil time of `millis` + `nanos` (nanosecond of the second) in the zone.
    pub(crate) fn from_epoch(millis: i64, nanos: u32, offset_secs: i32) -> Civil {
        let secs = millis.div_euclid(1000) + i64::from(offset_secs);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        Civil {
            year,
            month,
            day,
            hour: u8::try_from(sod / 3600).unwrap_or(0),
            minute: u8::try_from(sod % 3600 / 60).unwrap_or(0),
            second: u8::try_from(sod % 60).unwrap_or(0),
            micros: nanos / 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_math_round_trips() {
        let c = Civil {
            year: 2020,
            month: 5,
            day: 1,
            hour: 12,
            minute: 34,
            second: 56,
            micros: 789_000,
        };
        assert_eq!(c.epoch_millis(0), 1_588_336_496_789);
        assert_eq!(Civil::from_epoch(1_588_336_496_789, 789_000_000, 0), c);
        assert_eq!(
            Civil::from_epoch(c.epoch_millis(28_800), 789_000_000, 28_800),
            c
        );
        assert_eq!(civil_from_days(days_from_civil(1900, 2, 28)), (1900, 2, 28));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn java_string_forms() {
        let ts = FieldValue::Timestamp(Civil {
            year: 2020,
            month: 5,
            day: 1,
            hour: 12,
            minute: 34,
            second: 56,
            micros: 789_000,
        });
        assert_eq!(ts.lock_key_text(), "2020-05-01 12:34:56.789");
        let t = parse_time("-838:59:59.5").unwrap();
        assert_eq!(t.time_text(), "-838:59:59.500000");
        assert_eq!(parse_time("12:34:56").unwrap().time_text(), "12:34:56");
        assert_eq!(FieldValue::Long(7).lock_key_text(), "7");
    }
}
