//! The read side's own queries (issue #13): document metadata as the consultation server
//! needs it (authors and the replaced version besides what `queries` lists), and the
//! `access_trace` table, append-only, that records every search and read of a DMP.
//!
//! The trace is written by the server before it answers; a failed write fails the request,
//! so nothing is ever shown that was not traced first.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::model::{DocumentDetail, TraceRow};
use crate::queries::{DOCUMENT_COLUMNS, PATIENT_INS_MATCH, document_row};
use crate::util::now_rfc3339;
use crate::{Store, StoreError};

/// The extra columns `DocumentDetail` carries beside a `DocumentRow`.
/// `patient_masking` is the set's latest patient decision (`document_masking`), if any.
const META_COLUMNS: &str = "author_person_id, author_organisation_id, target_unique_id, \
     patient_ins_oid, (SELECT m.change FROM document_masking m WHERE m.set_id = d.set_id \
     ORDER BY m.id DESC LIMIT 1) AS patient_masking";

fn meta_row(r: &AnyRow) -> Result<DocumentDetail, sqlx::Error> {
    let row = document_row(r)?;
    let target: Option<String> = r.try_get("target_unique_id")?;
    let replaces = if row.lifecycle == "replace" {
        target
    } else {
        None
    };
    let masking: Option<String> = r.try_get("patient_masking")?;
    Ok(DocumentDetail {
        row,
        patient_masked: masking.map(|m| m == "mask"),
        author_person_id: r.try_get("author_person_id")?,
        author_organisation_id: r.try_get("author_organisation_id")?,
        patient_ins_oid: r.try_get("patient_ins_oid")?,
        // Only a replacement replaces; a deletion's target is the version it withdrew,
        // which the deleted version's own status already says.
        replaces,
    })
}

fn trace_row(r: &AnyRow) -> Result<TraceRow, sqlx::Error> {
    let ids: String = r.try_get("document_ids")?;
    Ok(TraceRow {
        id: r.try_get("id")?,
        recorded_at: r.try_get("recorded_at")?,
        actor_role: r.try_get("actor_role")?,
        actor_id: r.try_get("actor_id")?,
        actor_org: r.try_get("actor_org")?,
        patient_ins: r.try_get("patient_ins")?,
        action: r.try_get("action")?,
        query: r.try_get("query")?,
        document_ids: serde_json::from_str(&ids).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        purpose: r.try_get("purpose")?,
        purpose_reason: r.try_get("purpose_reason")?,
        outcome: r.try_get("outcome")?,
        reason: r.try_get("reason")?,
    })
}

impl Store {
    /// Every stored version of the patient's documents (merged INS included, as
    /// [`Store::documents_for_patient`]), with what the authorisation rules and the FHIR
    /// DocumentReference need. Order: creation time, set, version.
    pub async fn document_metas_for_patient(
        &self,
        ins: &str,
    ) -> Result<Vec<DocumentDetail>, StoreError> {
        let filter = format!("{PATIENT_INS_MATCH} ORDER BY creation_time, set_id, seq");
        self.metas("document_metas_for_patient", &filter, ins).await
    }

    /// Every stored version of one set (one document's history), in order: what a read by
    /// id needs to find the set's head, without loading the whole DMP.
    pub async fn document_metas_for_set(
        &self,
        set_id: &str,
    ) -> Result<Vec<DocumentDetail>, StoreError> {
        self.metas(
            "document_metas_for_set",
            "d.set_id = $1 ORDER BY seq",
            set_id,
        )
        .await
    }

    /// The versions `filter` (a WHERE clause with its ORDER BY, one `$1`) selects.
    async fn metas(
        &self,
        op: &'static str,
        filter: &str,
        bind: &str,
    ) -> Result<Vec<DocumentDetail>, StoreError> {
        let err = |e| StoreError::from_sqlx(op, e);
        let sql =
            format!("SELECT {DOCUMENT_COLUMNS}, {META_COLUMNS} FROM documents d WHERE {filter}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(bind)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(meta_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    /// One document version by uniqueId, whatever its patient or status.
    pub async fn document_meta(
        &self,
        unique_id: &str,
    ) -> Result<Option<DocumentDetail>, StoreError> {
        let err = |e| StoreError::from_sqlx("document_meta", e);
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, {META_COLUMNS} FROM documents d WHERE d.unique_id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(unique_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(meta_row).transpose().map_err(err)
    }

    /// Appends one access trace row and answers its id. `id` and `recorded_at` of `row`
    /// are ignored: the database numbers the row and the store stamps it now.
    pub async fn append_trace(&self, row: &TraceRow) -> Result<i64, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| StoreError::from_sqlx("append_trace", e))?;
        insert_trace(&mut conn, row).await
    }

    /// The patient's decision to mask a document's set from professionals (or unmask it),
    /// and its trace row, in one transaction: the decision is never taken untraced, and the
    /// read side honours it from the commit on. Answers the trace row's id.
    pub async fn record_masking(
        &self,
        change: &MaskingChange,
        trace: &TraceRow,
    ) -> Result<i64, StoreError> {
        let err = |e| StoreError::from_sqlx("record_masking", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO document_masking (recorded_at, set_id, patient_ins, change, actor_role, \
             actor_id) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now_rfc3339())
        .bind(&change.set_id)
        .bind(&change.patient_ins)
        .bind(if change.masked { "mask" } else { "unmask" })
        .bind(&trace.actor_role)
        .bind(&trace.actor_id)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let id = insert_trace(&mut tx, trace).await?;
        tx.commit().await.map_err(err)?;
        Ok(id)
    }

    /// The access traces of a patient's DMP, oldest first.
    pub async fn traces_for_patient(&self, ins: &str) -> Result<Vec<TraceRow>, StoreError> {
        let err = |e| StoreError::from_sqlx("traces_for_patient", e);
        let rows = sqlx::query(
            "SELECT id, recorded_at, actor_role, actor_id, actor_org, patient_ins, action, query, \
             document_ids, purpose, purpose_reason, outcome, reason \
             FROM access_trace WHERE patient_ins = $1 ORDER BY id",
        )
        .bind(ins)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(trace_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    /// Number of access trace rows (all patients), for tests and the ops view.
    pub async fn trace_count(&self) -> Result<i64, StoreError> {
        self.count_rows("trace_count", "access_trace").await
    }
}

/// A patient's masking decision on one document set (issue #14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskingChange {
    pub set_id: String,
    /// The DMP the set belongs to (after a merge, the survivor's INS).
    pub patient_ins: String,
    /// `true`: hidden from professionals (MASQUE_PS); `false`: shown again.
    pub masked: bool,
}

async fn insert_trace(conn: &mut sqlx::AnyConnection, row: &TraceRow) -> Result<i64, StoreError> {
    let err = |e| StoreError::from_sqlx("append_trace", e);
    let ids = serde_json::to_string(&row.document_ids).map_err(|e| StoreError::Data {
        op: "append_trace",
        detail: e.to_string(),
    })?;
    sqlx::query(
        "INSERT INTO access_trace (recorded_at, actor_role, actor_id, actor_org, patient_ins, \
         action, query, document_ids, purpose, purpose_reason, outcome, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(now_rfc3339())
    .bind(&row.actor_role)
    .bind(&row.actor_id)
    .bind(&row.actor_org)
    .bind(&row.patient_ins)
    .bind(&row.action)
    .bind(&row.query)
    .bind(ids)
    .bind(&row.purpose)
    .bind(&row.purpose_reason)
    .bind(&row.outcome)
    .bind(&row.reason)
    .fetch_one(&mut *conn)
    .await
    .map_err(err)?
    .try_get(0)
    .map_err(err)
}
