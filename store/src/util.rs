//! Small helpers shared by the store modules: timestamps and the text of multi-row
//! statements. (CDA compression and hashing: `dmpflow_schemas::cda_body`.)

use std::time::{SystemTime, UNIX_EPOCH};

use dmpflow_schemas::SourceRef;

/// Now, as RFC 3339 UTC with microseconds (`2026-03-01T12:34:56.123456Z`). Fixed width, so
/// the text sorts in time order on both backends.
pub(crate) fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(d.as_secs() as i64, d.subsec_micros())
}

fn format_utc(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A message's content hash as the `source_content_hash` columns store it: NULL when the
/// item has none (payloads of builds before content hashes).
pub(crate) fn stored_hash(s: &SourceRef) -> Option<&str> {
    (!s.content_hash.is_empty()).then_some(s.content_hash.as_str())
}

/// `prefix VALUES ($1,..,$n), (...) suffix` for `rows` rows of `cols` columns. `$n`
/// placeholders work on PostgreSQL and SQLite alike through the Any driver.
pub(crate) fn values_sql(prefix: &str, cols: usize, rows: usize, suffix: &str) -> String {
    let mut sql = String::with_capacity(prefix.len() + suffix.len() + rows * cols * 6);
    sql.push_str(prefix);
    sql.push_str(" VALUES ");
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&n.to_string());
            n += 1;
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(suffix);
    sql
}

/// `$start, $start+1, ...` for an `IN (...)` list of `n` values.
pub(crate) fn in_list(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_utc(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(format_utc(1_772_368_496, 0), "2026-03-01T12:34:56.000000Z");
        assert_eq!(now_rfc3339().len(), 27);
    }

    #[test]
    fn builds_multi_row_sql() {
        assert_eq!(
            values_sql("INSERT INTO t (a,b)", 2, 2, "ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a,b) VALUES ($1,$2),($3,$4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(in_list(3, 3), "$3,$4,$5");
    }
}
