//! Read side of the store (patient documents, CDA, results over time, counts) and the
//! quarantine operations the ops CLI uses.
//!
//! Patient lookups follow merges one hop: documents filed under an INS that was merged
//! into the asked one (A40/A47) are part of the asked patient's record. The merge code
//! keeps chains flat, so one hop is enough.

use dmpflow_schemas::{Cda, Normalized, PackedCda, cda_body};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::model::{
    AuditEntry, DocStatus, DocumentRow, QuarantineRow, QuarantineStatus, ResultRow,
};
use crate::util::now_rfc3339;
use crate::{Store, StoreError};

/// `d.patient_ins` is the asked INS or one merged into it. One `IN` over a UNION, not
/// `patient_ins = $1 OR patient_ins IN (SELECT ...)`: PostgreSQL cannot use an index for an
/// OR with a subquery arm, and planned a parallel sequential scan of the whole documents
/// table for every patient lookup (about 2 s per ITI-67 search at 1 M documents, bench read
/// step); this form is a nested loop over `documents_patient` (~0.1 ms warm). SQLite reads
/// it the same way.
pub(crate) const PATIENT_INS_MATCH: &str = "d.patient_ins IN (SELECT CAST($1 AS TEXT) \
     UNION ALL SELECT ins FROM patients WHERE merged_into = $1)";

pub(crate) fn document_row(r: &AnyRow) -> Result<DocumentRow, sqlx::Error> {
    let status: String = r.try_get("status")?;
    let visibility: String = r.try_get("visibility")?;
    Ok(DocumentRow {
        unique_id: r.try_get("unique_id")?,
        set_id: r.try_get("set_id")?,
        version: r.try_get("version")?,
        seq: r.try_get("seq")?,
        lifecycle: r.try_get("lifecycle")?,
        status: DocStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode("unknown document status".into()))?,
        type_code: r.try_get("type_code")?,
        class_code: r.try_get("class_code")?,
        format_code: r.try_get("format_code")?,
        practice_setting: r.try_get("practice_setting")?,
        title: r.try_get("title")?,
        patient_ins: r.try_get("patient_ins")?,
        creation_time: r.try_get("creation_time")?,
        service_start: r.try_get("service_start")?,
        service_stop: r.try_get("service_stop")?,
        confidentiality: r.try_get("confidentiality")?,
        visibility: serde_json::from_str(&visibility)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        origin: r.try_get("origin")?,
        source_feed: r.try_get("source_feed")?,
        cda_size: r.try_get("cda_size")?,
        stored_at: r.try_get("stored_at")?,
    })
}

/// The columns [`document_row`] reads.
pub(crate) const DOCUMENT_COLUMNS: &str = "unique_id, set_id, version, seq, lifecycle, status, \
     type_code, class_code, format_code, practice_setting, title, patient_ins, creation_time, \
     service_start, service_stop, confidentiality, visibility, origin, source_feed, cda_size, \
     stored_at";

fn quarantine_row(r: &AnyRow) -> Result<QuarantineRow, sqlx::Error> {
    let payload: String = r.try_get("payload")?;
    let status: String = r.try_get("status")?;
    let mut item: Normalized =
        serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    with_packed_bytes(&mut item, r.try_get("cda_packed")?)?;
    Ok(QuarantineRow {
        id: r.try_get("id")?,
        reason: r.try_get("reason")?,
        detail: r.try_get("detail")?,
        unique_id: r.try_get("unique_id")?,
        item,
        source_feed: r.try_get("source_feed")?,
        source_topic: r.try_get("source_topic")?,
        source_partition: r.try_get("source_partition")?,
        source_offset: r.try_get("source_offset")?,
        status: if status == "open" {
            QuarantineStatus::Open
        } else {
            QuarantineStatus::Released
        },
        created_at: r.try_get("created_at")?,
        released_at: r.try_get("released_at")?,
    })
}

/// Puts a quarantine row's `cda_packed` bytes back into its packed document: the row keeps
/// the CDA as normalize packed it, the JSON only its head. A row without bytes holds its
/// XML inline (an XML body, or any row of builds before the column): nothing to put back.
fn with_packed_bytes(item: &mut Normalized, bytes: Option<Vec<u8>>) -> Result<(), sqlx::Error> {
    let body = match item {
        Normalized::Document(d) => Some(&mut d.cda),
        Normalized::Patient(_) => None,
    };
    let mismatch = |what: &str| sqlx::Error::Decode(format!("quarantine row: {what}").into());
    match (body, bytes) {
        (Some(Cda::Packed(p)), Some(bytes)) => p.bytes = bytes,
        (Some(Cda::Packed(_)), None) => return Err(mismatch("packed CDA head without its bytes")),
        (_, Some(_)) => return Err(mismatch("CDA bytes without a packed document")),
        (_, None) => {}
    }
    Ok(())
}

const QUARANTINE_COLUMNS: &str = "SELECT id, reason, detail, unique_id, payload, cda_packed, source_feed, \
     source_topic, source_partition, source_offset, status, created_at, released_at FROM quarantine";

impl Store {
    /// Every stored version of the patient's documents (all statuses), oldest first by
    /// creation time, then set and version order.
    pub async fn documents_for_patient(&self, ins: &str) -> Result<Vec<DocumentRow>, StoreError> {
        let err = |e| StoreError::from_sqlx("documents_for_patient", e);
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE {PATIENT_INS_MATCH} \
             ORDER BY creation_time, set_id, seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ins)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(document_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    /// The CDA of a document, decompressed and checked against its sha256.
    pub async fn get_document_cda(&self, unique_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_document_cda_checked(unique_id)
            .await?
            .map(|(xml, _)| xml))
    }

    /// The CDA exactly as stored and its SHA-256 (hex), checked against each other: the
    /// hash is the one the document was stored with, so a reader can use it as an ETag
    /// without hashing again.
    pub async fn get_document_cda_checked(
        &self,
        unique_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let err = |e| StoreError::from_sqlx("get_document_cda", e);
        let Some(row) =
            sqlx::query("SELECT cda_packed, cda_sha256 FROM documents WHERE unique_id = $1")
                .bind(unique_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
        else {
            return Ok(None);
        };
        let packed: Vec<u8> = row.try_get(0).map_err(err)?;
        let sha: String = row.try_get(1).map_err(err)?;
        let unique_id = unique_id.to_owned();
        // Inflating is CPU work; keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            cda_body::unpack(&packed, &sha)
                .map(|xml| (xml, sha))
                .map_err(|why| StoreError::CorruptCda { unique_id, why })
        })
        .await
        .map_err(|_| StoreError::Data {
            op: "get_document_cda",
            detail: "decompression task failed".into(),
        })?
        .map(Some)
    }

    /// The CDA of a document as stored: its compressed bytes (zstd, or gzip of an earlier
    /// build) with the hash and size of the XML, not inflated. What was filed, byte for
    /// byte: a released quarantine case is stored with the bytes normalize made.
    pub async fn get_document_packed(
        &self,
        unique_id: &str,
    ) -> Result<Option<PackedCda>, StoreError> {
        let err = |e| StoreError::from_sqlx("get_document_packed", e);
        let row = sqlx::query(
            "SELECT cda_packed, cda_sha256, cda_size FROM documents WHERE unique_id = $1",
        )
        .bind(unique_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(|row| -> Result<PackedCda, sqlx::Error> {
            Ok(PackedCda {
                bytes: row.try_get(0)?,
                sha256: row.try_get(1)?,
                size: row.try_get(2)?,
            })
        })
        .transpose()
        .map_err(err)
    }

    /// The patient's lab results for one LOINC code over time (observation time, else the
    /// document's creation time), from current documents only: a replaced report's values
    /// were corrected and a deleted one's withdrawn.
    pub async fn results_for_loinc(
        &self,
        ins: &str,
        loinc: &str,
    ) -> Result<Vec<ResultRow>, StoreError> {
        self.lab_results("results_for_loinc", ins, Some(loinc))
            .await
    }

    /// Every lab result of the patient's current documents, in the same order (time,
    /// document, position): the portal's results page groups them per analyte.
    pub async fn results_for_patient(&self, ins: &str) -> Result<Vec<ResultRow>, StoreError> {
        self.lab_results("results_for_patient", ins, None).await
    }

    async fn lab_results(
        &self,
        op: &'static str,
        ins: &str,
        loinc: Option<&str>,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let err = |e| StoreError::from_sqlx(op, e);
        // `$2` NULL: every code (one statement for both, so both read the same way).
        let sql = format!(
            "SELECT e.document_unique_id, e.code, e.label, e.value, e.value_type, e.unit, \
             e.interpretation, e.reference_low, e.reference_high, e.reference_text, e.status, \
             COALESCE(e.time, d.creation_time) AS t \
             FROM entries e JOIN documents d ON d.unique_id = e.document_unique_id \
             WHERE {PATIENT_INS_MATCH} AND e.kind = 'lab_observation' \
             AND (CAST($2 AS TEXT) IS NULL OR e.code = $2) \
             AND d.status = 'current' \
             ORDER BY t, e.document_unique_id, e.position"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ins)
            .bind(loinc)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(ResultRow {
                    document_unique_id: r.try_get(0)?,
                    loinc: r.try_get(1)?,
                    label: r.try_get(2)?,
                    value: r.try_get(3)?,
                    value_type: r.try_get(4)?,
                    unit: r.try_get(5)?,
                    interpretation: r.try_get(6)?,
                    reference_low: r.try_get(7)?,
                    reference_high: r.try_get(8)?,
                    reference_text: r.try_get(9)?,
                    status: r.try_get(10)?,
                    time: r.try_get(11)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(err)
    }

    /// Message outcomes per feed, from the audit trail: `(feed, outcome, count)` with
    /// outcome one of stored, replaced, deleted, quarantined, patient_upsert,
    /// patient_merge; feed is "none" when the source had no feed.
    pub async fn counts_by_feed_and_outcome(
        &self,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let err = |e| StoreError::from_sqlx("counts_by_feed_and_outcome", e);
        let rows = sqlx::query(
            "SELECT COALESCE(source_feed, 'none') AS feed, action, COUNT(*) AS n FROM audit \
             WHERE action IN ('stored', 'replaced', 'deleted', 'quarantined', 'patient_upsert', 'patient_merge') \
             GROUP BY COALESCE(source_feed, 'none'), action ORDER BY feed, action",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(err)
    }

    /// Quarantine entries, oldest first, optionally only those with `status`.
    pub async fn quarantine_list(
        &self,
        status: Option<QuarantineStatus>,
    ) -> Result<Vec<QuarantineRow>, StoreError> {
        let err = |e| StoreError::from_sqlx("quarantine_list", e);
        let rows = match status {
            Some(s) => {
                let sql = format!("{QUARANTINE_COLUMNS} WHERE status = $1 ORDER BY id");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(s.as_str())
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                let sql = format!("{QUARANTINE_COLUMNS} ORDER BY id");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(err)?;
        rows.iter()
            .map(quarantine_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    /// One quarantine entry.
    pub async fn quarantine_get(&self, id: i64) -> Result<Option<QuarantineRow>, StoreError> {
        let err = |e| StoreError::from_sqlx("quarantine_get", e);
        let sql = format!("{QUARANTINE_COLUMNS} WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(quarantine_row).transpose().map_err(err)
    }

    /// Open `ins.unknown` cases whose patient the registry knows by now, oldest first, at
    /// most `limit`: what the route stage re-routes by itself (`dmpflow::pipeline::release_case`).
    pub async fn quarantine_waiting_known(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        self.case_ids(
            "quarantine_waiting_known",
            "SELECT q.id FROM quarantine q WHERE q.status = 'open' AND q.reason = 'ins.unknown' \
             AND EXISTS (SELECT 1 FROM patients p WHERE p.ins = q.patient_ins) \
             ORDER BY q.id LIMIT $1",
            limit,
        )
        .await
    }

    /// The case ids a sweep query (`LIMIT $1`) lists.
    async fn case_ids(
        &self,
        what: &'static str,
        sql: &'static str,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let err = |e| StoreError::from_sqlx(what, e);
        let rows = sqlx::query(sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    /// Open `patient.opposed` cases whose patient no longer opposes (a later ZFA-9 `INO`,
    /// or a CSV import saying so), oldest first, at most `limit`: the route stage re-routes
    /// them by itself like the `ins.unknown` ones. The opposition that counts is that of the
    /// record the case's INS was merged into, if any (merges keep chains one hop long).
    pub async fn quarantine_opposition_lifted(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        self.case_ids(
            "quarantine_opposition_lifted",
            "SELECT q.id FROM quarantine q WHERE q.status = 'open' AND q.reason = 'patient.opposed' \
             AND EXISTS (SELECT 1 FROM patients p LEFT JOIN patients s ON s.ins = p.merged_into \
               WHERE p.ins = q.patient_ins AND COALESCE(s.feeding_opposed, p.feeding_opposed) = 0) \
             ORDER BY q.id LIMIT $1",
            limit,
        )
        .await
    }

    /// Records why an open case still fails after a re-route (its reason may have changed,
    /// e.g. from `ins.unknown` to `identity.traits.mismatch`). Returns false if the case is
    /// not open.
    pub async fn quarantine_set_reason(
        &self,
        id: i64,
        reason: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE quarantine SET reason = $1, detail = $2 WHERE id = $3 AND status = 'open'",
        )
        .bind(reason)
        .bind(detail)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("quarantine_set_reason", e))?
        .rows_affected()
            == 1;
        Ok(done)
    }

    /// Marks an open entry released (audited). Returns false if it does not exist or was
    /// already released. The caller re-routes the item; a re-routed item that is stored, or
    /// quarantined again, is accepted because it is no longer open.
    pub async fn quarantine_mark_released(&self, id: i64) -> Result<bool, StoreError> {
        const OP: &str = "quarantine_mark_released";
        let err = |e| StoreError::from_sqlx(OP, e);
        let now = now_rfc3339();
        let mut tx = self.begin(OP).await?;
        let done = sqlx::query(
            "UPDATE quarantine SET status = 'released', released_at = $1 WHERE id = $2 AND status = 'open'",
        )
        .bind(now.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected()
            == 1;
        if done {
            sqlx::query(
                "INSERT INTO audit (at, action, unique_id, source_feed, source_sender, source_control_id, \
                 source_position, source_topic, source_partition, source_offset, detail) \
                 SELECT $1, 'released', unique_id, source_feed, source_sender, source_control_id, \
                 source_position, source_topic, source_partition, source_offset, 'quarantine ' || CAST(id AS TEXT) \
                 FROM quarantine WHERE id = $2",
            )
            .bind(now.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(done)
    }

    /// The audit trail of one document, oldest first.
    pub async fn audit_for_document(&self, unique_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let err = |e| StoreError::from_sqlx("audit_for_document", e);
        let rows = sqlx::query(
            "SELECT id, at, action, unique_id, source_topic, source_partition, source_offset, detail \
             FROM audit WHERE unique_id = $1 ORDER BY id",
        )
        .bind(unique_id)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    action: r.try_get(2)?,
                    unique_id: r.try_get(3)?,
                    source_topic: r.try_get(4)?,
                    source_partition: r.try_get(5)?,
                    source_offset: r.try_get(6)?,
                    detail: r.try_get(7)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(err)
    }

    /// Number of stored document versions (all statuses).
    pub async fn document_count(&self) -> Result<i64, StoreError> {
        self.count_rows("document_count", "documents").await
    }

    /// `SELECT COUNT(*)` of one table; `table` is always a constant of this crate.
    pub(crate) async fn count_rows(
        &self,
        op: &'static str,
        table: &'static str,
    ) -> Result<i64, StoreError> {
        let err = |e| StoreError::from_sqlx(op, e);
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .map_err(err)?
            .try_get(0)
            .map_err(err)
    }
}
