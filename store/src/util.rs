//! Small helpers shared by the store modules: timestamps, CDA compression and hashing,
//! and the text of multi-row statements.

use std::cell::RefCell;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use dmpflow_schemas::{PackedCda, Packing, SourceRef};
use flate2::read::GzDecoder;
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

thread_local! {
    // One zstd context per thread, reused: building one per document (allocating and
    // zeroing its tables) cost as much as compressing a lab report.
    static PACKER: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compress (zstd, level 1) and hash one CDA. Level 1: CDA XML still shrinks ~4.8 times
/// (gzip's fastest level: 3.8) at about twice its speed, and the pipeline compresses
/// thousands of documents a second (bench/ANALYSIS.md).
pub fn pack_cda(cda: &str) -> PackedCda {
    let bytes = PACKER.with(|packer| {
        let mut packer = packer.borrow_mut();
        let packer = match &mut *packer {
            Some(p) => p,
            none => none
                .insert(zstd::bulk::Compressor::new(1).expect("a zstd context needs only memory")),
        };
        packer
            .compress(cda.as_bytes())
            .expect("zstd compresses any input into a Vec")
    });
    PackedCda {
        bytes,
        sha256: sha256_hex(cda.as_bytes()),
        size: cda.len() as i64,
    }
}

/// The largest CDA `unpack_cda` inflates: far above any real document (normalize refuses
/// messages over its own limit long before), low enough that a corrupt or hostile frame
/// cannot exhaust memory.
const MAX_UNPACKED_CDA: u64 = 256 << 20;

/// Inflate a stored CDA (zstd, or gzip written by earlier builds) and check it against its
/// hash.
pub fn unpack_cda(packed: &[u8], sha256: &str) -> Result<String, &'static str> {
    let mut xml = String::new();
    let read = match Packing::of(packed) {
        Some(Packing::Zstd) => zstd::stream::read::Decoder::new(packed)
            .map_err(|_| "zstd frame invalid")?
            .take(MAX_UNPACKED_CDA + 1)
            .read_to_string(&mut xml)
            .map_err(|_| "zstd frame or UTF-8 invalid")?,
        Some(Packing::Gzip) => GzDecoder::new(packed)
            .take(MAX_UNPACKED_CDA + 1)
            .read_to_string(&mut xml)
            .map_err(|_| "gzip stream or UTF-8 invalid")?,
        None => return Err("packed CDA is neither zstd nor gzip"),
    };
    if read as u64 > MAX_UNPACKED_CDA {
        return Err("packed CDA inflates beyond the size limit");
    }
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
    fn cda_round_trip_and_corruption() {
        let cda = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">é</ClinicalDocument>".repeat(50);
        let p = pack_cda(&cda);
        assert_eq!(Packing::of(&p.bytes), Some(Packing::Zstd));
        assert!(p.bytes.len() < cda.len());
        assert_eq!(p.size, cda.len() as i64);
        assert_eq!(unpack_cda(&p.bytes, &p.sha256).unwrap(), cda);
        assert_eq!(
            unpack_cda(&p.bytes, &"0".repeat(64)),
            Err("sha256 mismatch")
        );
        assert!(unpack_cda(&p.bytes[..10], &p.sha256).is_err());
        assert!(unpack_cda(b"<ClinicalDocument/>", &p.sha256).is_err());
        // The context is reused: a second, different document packs just as well.
        let other = cda.replace('é', "è");
        let q = pack_cda(&other);
        assert_eq!(unpack_cda(&q.bytes, &q.sha256).unwrap(), other);
    }

    #[test]
    fn gzip_written_by_earlier_builds_still_unpacks() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let cda = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">ü</ClinicalDocument>".repeat(20);
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(cda.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(Packing::of(&gz), Some(Packing::Gzip));
        let sha = sha256_hex(cda.as_bytes());
        assert_eq!(unpack_cda(&gz, &sha).unwrap(), cda);
        assert_eq!(unpack_cda(&gz, &"0".repeat(64)), Err("sha256 mismatch"));
    }

    #[test]
    fn a_frame_inflating_beyond_the_limit_is_refused() {
        // 300 MB of zeros packs into a few kilobytes: a bomb must not be inflated whole.
        let zeros = vec![0u8; (MAX_UNPACKED_CDA + (44 << 20)) as usize];
        let bomb = zstd::bulk::compress(&zeros, 1).unwrap();
        drop(zeros);
        assert!(bomb.len() < 1 << 20);
        assert_eq!(
            unpack_cda(&bomb, &"0".repeat(64)),
            Err("packed CDA inflates beyond the size limit")
        );
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
