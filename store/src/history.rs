//! The registry's history (`patient_history`, append-only): one row per registry value an
//! identity message changed, with the message that changed it (sender, control id, Kafka
//! coordinates), written in the transaction of the change; and the operator's read of it.

use dmpflow_schemas::SourceRef;
use sqlx::{AssertSqlSafe, Row};

use crate::patient_state::Change;
use crate::tx::Tx;
use crate::util::values_sql;
use crate::{Store, StoreError};

const HISTORY_CHUNK: usize = 200;

/// One change of the registry, as `Store::patient_history` returns it. Trait rows
/// (`birth_name`, `first_names`, `birth_date`, `sex`, `birth_place`) say that the trait
/// changed, without its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientHistoryRow {
    pub id: i64,
    /// When the store wrote the change (RFC 3339 UTC).
    pub at: String,
    pub ins: String,
    /// The ADT event (A28, A31, A08, A40, ...), `update`/`merge`/`identifier_change`
    /// when the message did not say, or `import` for `patients import` (no source then).
    pub event: String,
    pub field: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    /// The sender's date of the new value (ZFA date, else MSH-7), when it had one.
    pub value_time: Option<String>,
    pub source_sender: Option<String>,
    pub source_control_id: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i64>,
    pub source_offset: Option<i64>,
}

/// The history rows of one message, for one INS.
pub(crate) struct HistoryRows<'a> {
    pub ins: String,
    pub event: &'a str,
    /// The message; `None` for the CSV import (event `import`).
    pub source: Option<&'a SourceRef>,
    pub changes: Vec<Change>,
}

pub(crate) async fn insert_history(
    tx: &mut Tx,
    rows: &[HistoryRows<'_>],
    now: &str,
) -> Result<(), StoreError> {
    let flat: Vec<(&HistoryRows, &Change)> = rows
        .iter()
        .flat_map(|r| r.changes.iter().map(move |c| (r, c)))
        .collect();
    for chunk in flat.chunks(HISTORY_CHUNK) {
        let sql = values_sql(
            "INSERT INTO patient_history (at, ins, event, field, old_value, new_value, value_time, \
             source_feed, source_sender, source_control_id, source_position, source_topic, \
             source_partition, source_offset)",
            14,
            chunk.len(),
            "",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (r, c) in chunk {
            let s = r.source;
            q = q
                .bind(now)
                .bind(r.ins.as_str())
                .bind(r.event)
                .bind(c.field)
                .bind(c.old.as_deref())
                .bind(c.new.as_deref())
                .bind(c.at.as_deref())
                .bind(s.and_then(|s| s.feed).map(|f| f.as_str()))
                .bind(s.map(|s| s.sender.as_str()))
                .bind(s.and_then(|s| (!s.control_id.is_empty()).then_some(s.control_id.as_str())))
                .bind(s.map(|s| i64::from(s.position)))
                .bind(s.and_then(|s| s.topic.as_deref()))
                .bind(s.and_then(|s| s.partition).map(i64::from))
                .bind(s.and_then(|s| s.offset));
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("patient history", e))?;
    }
    Ok(())
}

impl Store {
    /// The registry history of `ins`, oldest first: every value an identity message (or a
    /// merge onto or from it) changed, and which message did.
    pub async fn patient_history(&self, ins: &str) -> Result<Vec<PatientHistoryRow>, StoreError> {
        let err = |e| StoreError::from_sqlx("patient_history", e);
        let rows = sqlx::query(
            "SELECT id, at, ins, event, field, old_value, new_value, value_time, source_sender, \
             source_control_id, source_topic, source_partition, source_offset \
             FROM patient_history WHERE ins = $1 ORDER BY id",
        )
        .bind(ins)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(PatientHistoryRow {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    ins: r.try_get("ins")?,
                    event: r.try_get("event")?,
                    field: r.try_get("field")?,
                    old_value: r.try_get("old_value")?,
                    new_value: r.try_get("new_value")?,
                    value_time: r.try_get("value_time")?,
                    source_sender: r.try_get("source_sender")?,
                    source_control_id: r.try_get("source_control_id")?,
                    source_topic: r.try_get("source_topic")?,
                    source_partition: r.try_get("source_partition")?,
                    source_offset: r.try_get("source_offset")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(err)
    }
}
