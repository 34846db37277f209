//! The rows a batch writes, as column values: one place that says what goes in each column
//! of `documents`, `entries`, `quarantine` and `audit`, and two ways to send them — bound
//! as parameters of a multi-row INSERT through sqlx's `Any` driver (both backends:
//! [`bind`]), or encoded for PostgreSQL's binary `COPY` ([`CopyRows`], the native write
//! path of `batch/pg.rs`).

use dmpflow_schemas::{Entry, PackedCda, SourceRef};
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::audit::AuditRow;
use crate::plan::{NewDoc, NewQuarantine};
use crate::util::stored_hash;

/// One column value. The three SQL types the write path uses: TEXT, BIGINT and BYTEA
/// (every column of these tables is one of them on PostgreSQL; SQLite stores them as
/// TEXT, INTEGER and BLOB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Bytes(Option<&'a [u8]>),
}

use Val::{Bytes, Int, Text};

/// Binds `vals` in order to `q`.
pub(crate) fn bind<'q>(
    mut q: Query<'q, sqlx::Any, AnyArguments>,
    vals: &[Val<'q>],
) -> Query<'q, sqlx::Any, AnyArguments> {
    for v in vals {
        q = match *v {
            Text(t) => q.bind(t),
            Int(i) => q.bind(i),
            Bytes(b) => q.bind(b),
        };
    }
    q
}

/// The columns of `documents` a batch writes, in the order of [`document`].
pub(crate) const DOCUMENT_COLUMNS: &str = "unique_id, set_id, version, seq, lifecycle, status, \
    target_unique_id, type_code, class_code, format_code, title, patient_ins, patient_ins_oid, \
    author_person_id, author_organisation_id, creation_time, service_start, service_stop, \
    confidentiality, visibility, origin, cda_packed, cda_sha256, cda_size, source_feed, source_sender, \
    source_control_id, source_position, source_topic, source_partition, source_offset, stored_at, \
    source_content_hash, practice_setting";

/// A new document version's row. `visibility` is its TRE_A07 codes as a JSON array.
pub(crate) fn document<'a>(
    d: &'a NewDoc<'_>,
    p: &'a PackedCda,
    visibility: &'a str,
    now: &'a str,
) -> [Val<'a>; 34] {
    let m = &d.doc.meta;
    let s = &m.source;
    let mut row = [
        Text(Some(&m.unique_id)),
        Text(Some(&m.set_id)),
        Int(Some(i64::from(m.version))),
        Int(Some(d.seq)),
        Text(Some(m.lifecycle.as_str())),
        Text(Some(d.status.as_str())),
        Text(d.replaces.as_deref().or(m.target_unique_id.as_deref())),
        Text(Some(&m.type_code)),
        Text(Some(&m.class_code)),
        Text(Some(&m.format_code)),
        Text(Some(&m.title)),
        Text(Some(&m.patient.ins)),
        Text(Some(&m.patient.ins_oid)),
        Text(m.author.person_id.as_deref()),
        Text(m.author.organisation_id.as_deref()),
        Text(Some(&m.creation_time)),
        Text(m.service_start.as_deref()),
        Text(m.service_stop.as_deref()),
        Text(Some(&m.confidentiality)),
        Text(Some(visibility)),
        Text(Some(match m.origin {
            dmpflow_schemas::CdaOrigin::Generated => "generated",
            dmpflow_schemas::CdaOrigin::Received => "received",
        })),
        Bytes(Some(&p.bytes)),
        Text(Some(&p.sha256)),
        Int(Some(p.size)),
        // source_feed .. source_offset (7), filled below
        Text(None),
        Text(None),
        Text(None),
        Text(None),
        Text(None),
        Text(None),
        Text(None),
        Text(Some(now)),
        Text(stored_hash(s)),
        Text(m.practice_setting.as_deref()),
    ];
    row[24..31].copy_from_slice(&source(s));
    row
}

/// The seven `source_*` columns (feed, sender, control id, position, topic, partition,
/// offset) of a document or quarantine row: the message it came from.
fn source(s: &SourceRef) -> [Val<'_>; 7] {
    [
        Text(s.feed.map(|f| f.as_str())),
        Text(Some(&s.sender)),
        Text((!s.control_id.is_empty()).then_some(s.control_id.as_str())),
        Int(Some(i64::from(s.position))),
        Text(s.topic.as_deref()),
        Int(s.partition.map(i64::from)),
        Int(s.offset),
    ]
}

/// The names of [`ENTRY_COLUMNS`], one by one (the keys of the shared path's JSON).
pub(crate) fn entry_column_names() -> [&'static str; 16] {
    let mut names = [""; 16];
    for (n, c) in names.iter_mut().zip(ENTRY_COLUMNS.split(',')) {
        *n = c.trim();
    }
    names
}

/// The columns of `entries`, in the order of [`entry`] (and the keys of the JSON objects
/// `batch/write.rs` sends on the shared path).
pub(crate) const ENTRY_COLUMNS: &str = "document_unique_id, position, kind, code, code_system, \
    label, value, value_type, unit, interpretation, reference_low, reference_high, \
    reference_text, status, time, quantity";

/// One structured entry's row: entry `position` of document `unique_id`.
pub(crate) fn entry<'a>(unique_id: &'a str, position: usize, e: &'a Entry) -> [Val<'a>; 16] {
    let position = Int(Some(position as i64));
    match e {
        Entry::LabObservation {
            loinc,
            label,
            value,
            value_type,
            unit,
            interpretation,
            reference_low,
            reference_high,
            reference_text,
            status,
            time,
        } => [
            Text(Some(unique_id)),
            position,
            Text(Some("lab_observation")),
            Text(Some(loinc)),
            Text(None),
            Text(Some(label)),
            Text(Some(value)),
            Text(Some(value_type)),
            Text(unit.as_deref()),
            Text(interpretation.as_deref()),
            Text(reference_low.as_deref()),
            Text(reference_high.as_deref()),
            Text(reference_text.as_deref()),
            Text(Some(status)),
            Text(time.as_deref()),
            Text(None),
        ],
        Entry::Dispensation {
            code,
            code_system,
            label,
            quantity,
            unit,
            time,
        } => [
            Text(Some(unique_id)),
            position,
            Text(Some("dispensation")),
            Text(Some(code)),
            Text(Some(code_system)),
            Text(Some(label)),
            Text(None),
            Text(None),
            Text(unit.as_deref()),
            Text(None),
            Text(None),
            Text(None),
            Text(None),
            Text(None),
            Text(Some(time)),
            Text(Some(quantity)),
        ],
    }
}

/// The columns of `quarantine` a batch writes, in the order of [`quarantine`].
pub(crate) const QUARANTINE_COLUMNS: &str = "reason, detail, item_key, unique_id, payload, \
    source_feed, source_sender, source_control_id, source_position, source_topic, \
    source_partition, source_offset, status, created_at, patient_ins, cda_packed";

/// A new (open) quarantine entry's row.
pub(crate) fn quarantine<'a>(r: &'a NewQuarantine<'_>, now: &'a str) -> [Val<'a>; 16] {
    let mut row = [
        Text(Some(&r.reason)),
        Text(Some(&r.detail)),
        Text(Some(&r.key)),
        Text(r.unique_id.as_deref()),
        Text(Some(&r.payload)),
        // source_feed .. source_offset (7), filled below
        Text(None),
        Text(None),
        Text(None),
        Text(None),
        Text(None),
        Text(None),
        Text(None),
        Text(Some("open")),
        Text(Some(now)),
        Text(r.patient_ins.as_deref()),
        Bytes(r.cda_packed.as_deref()),
    ];
    row[5..12].copy_from_slice(&source(r.source));
    row
}

/// The columns of `audit` written, in the order of [`audit`].
pub(crate) const AUDIT_COLUMNS: &str = "at, action, unique_id, patient_ins, source_feed, \
    source_sender, source_control_id, source_position, source_topic, source_partition, \
    source_offset, detail, source_content_hash";

/// One audit row.
pub(crate) fn audit<'a>(r: &'a AuditRow<'_>, now: &'a str) -> [Val<'a>; 13] {
    let s = r.source;
    [
        Text(Some(now)),
        Text(Some(r.action)),
        Text(r.unique_id.as_deref()),
        Text(r.patient_ins.as_deref()),
        Text(s.and_then(|s| s.feed).map(|f| f.as_str())),
        Text(s.map(|s| s.sender.as_str())),
        Text(s.and_then(|s| (!s.control_id.is_empty()).then_some(s.control_id.as_str()))),
        Int(s.map(|s| i64::from(s.position))),
        Text(s.and_then(|s| s.topic.as_deref())),
        Int(s.and_then(|s| s.partition).map(i64::from)),
        Int(s.and_then(|s| s.offset)),
        Text(Some(&r.detail)),
        Text(s.and_then(stored_hash)),
    ]
}

/// Rows in PostgreSQL's binary `COPY` format (`COPY t (cols) FROM STDIN (FORMAT binary)`):
/// a signature and header, then per row its field count and each field as a length and its
/// bytes (-1 for NULL), then -1. TEXT is sent as its UTF-8 bytes, BIGINT as 8 big-endian
/// bytes, BYTEA as is: no escaping, no parsing of text on either side. Written here (about
/// forty lines) rather than with a crate: sqlx sends the bytes (`copy_in_raw`) but has no
/// encoder, and the format is fixed (PostgreSQL docs, "COPY", Binary Format).
pub(crate) struct CopyRows {
    buf: Vec<u8>,
}

/// Bytes of encoded rows the native write path sends at a time ([`CopyRows::pending`]).
pub(crate) const COPY_CHUNK: usize = 256 * 1024;

impl CopyRows {
    pub(crate) fn new() -> CopyRows {
        // Room for a chunk and the row that crosses its end (a larger row grows it).
        let mut buf = Vec::with_capacity(COPY_CHUNK + COPY_CHUNK / 4);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        CopyRows { buf }
    }

    /// Appends one row.
    pub(crate) fn row(&mut self, vals: &[Val<'_>]) {
        let fields = i16::try_from(vals.len()).expect("a row has fewer than 32768 columns");
        self.buf.extend_from_slice(&fields.to_be_bytes());
        for v in vals {
            let bytes: Option<&[u8]> = match v {
                Text(t) => t.map(str::as_bytes),
                Bytes(b) => *b,
                Int(Some(i)) => {
                    self.buf.extend_from_slice(&8i32.to_be_bytes());
                    self.buf.extend_from_slice(&i.to_be_bytes());
                    continue;
                }
                Int(None) => None,
            };
            match bytes {
                None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    // A field over 1 GB is refused by PostgreSQL anyway; normalize's limits
                    // keep every field far below.
                    let len = i32::try_from(b.len()).expect("a field under 2 GB");
                    self.buf.extend_from_slice(&len.to_be_bytes());
                    self.buf.extend_from_slice(b);
                }
            }
        }
    }

    /// The bytes encoded since the last [`CopyRows::sent`] (the header first).
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The pending bytes were sent: the buffer is reused for the next rows, so a batch of
    /// any size is encoded in one buffer of a chunk's size, instead of one that grows (and
    /// is copied at each doubling) to the size of every CDA of the batch.
    pub(crate) fn sent(&mut self) {
        self.buf.clear();
    }

    /// The bytes to send, trailer included.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_copy_layout() {
        let mut c = CopyRows::new();
        c.row(&[
            Text(Some("é")),
            Int(Some(-2)),
            Bytes(Some(&[0, 1])),
            Text(None),
            Int(None),
        ]);
        // Sent in two pieces (as `batch/pg.rs` streams a large batch), the same bytes.
        let first = c.pending().to_vec();
        c.sent();
        let mut b = first;
        b.extend_from_slice(&c.finish());
        let mut want = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[0, 5]);
        want.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]);
        want.extend_from_slice(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        want.extend_from_slice(&[0, 0, 0, 2, 0, 1]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(b, want);
    }

    #[test]
    fn column_lists_match_the_rows() {
        let count = |cols: &str| cols.split(',').count();
        assert_eq!(count(DOCUMENT_COLUMNS), 34);
        assert_eq!(count(ENTRY_COLUMNS), 16);
        assert_eq!(count(QUARANTINE_COLUMNS), 16);
        assert_eq!(count(AUDIT_COLUMNS), 13);
        assert_eq!(entry_column_names()[0], "document_unique_id");
        assert_eq!(entry_column_names()[15], "quantity");
    }
}
