//! Small helpers shared by the store modules: timestamps, CDA compression and hashing,
//! and the text of multi-row statements.

use std::io::{Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use dmpflow_schemas::PackedCda;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

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

/// Gzip and hash one CDA. Level 1: CDA XML still shrinks several times, and the store has
/// to keep up with thousands of documents a second.
pub fn pack_cda(cda: &str) -> PackedCda {
    let mut enc = GzEncoder::new(Vec::with_capacity(cda.len() / 4 + 64), Compression::fast());
    enc.write_all(cda.as_bytes())
        .expect("writing into a Vec cannot fail");
    let gz = enc.finish().expect("writing into a Vec cannot fail");
    PackedCda {
        gz,
        sha256: sha256_hex(cda.as_bytes()),
        size: cda.len() as i64,
    }
}

/// Inflate a stored CDA and check it against its hash.
pub fn unpack_cda(gz: &[u8], sha256: &str) -> Result<String, &'static str> {
    let mut xml = String::new();
    GzDecoder::new(gz)
        .read_to_string(&mut xml)
        .map_err(|_| "gzip stream or UTF-8 invalid")?;
    if sha256_hex(xml.as_bytes()) != sha256 {
        return Err("sha256 mismatch");
    }
    Ok(xml)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0x0f)] as char);
    }
    s
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
    fn cda_round_trip_and_corruption() {
        let cda = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">é</ClinicalDocument>".repeat(50);
        let p = pack_cda(&cda);
        assert!(p.gz.len() < cda.len());
        assert_eq!(p.size, cda.len() as i64);
        assert_eq!(unpack_cda(&p.gz, &p.sha256).unwrap(), cda);
        assert_eq!(unpack_cda(&p.gz, &"0".repeat(64)), Err("sha256 mismatch"));
        assert!(unpack_cda(&p.gz[..10], &p.sha256).is_err());
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
