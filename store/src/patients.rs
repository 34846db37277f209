//! The patient registry: identity-feed updates (A28/A31 upsert, A40 merge, A47 identifier
//! change), lookups for route, and the bulk CSV import: the SQL side. The CSV format and
//! what an import line does to a record are `patient_csv.rs`; what an identity message
//! does to one is `patient_state.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use dmpflow_route as route;
use dmpflow_schemas::{PatientChange, PatientRecord, PatientUpdate};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::audit::{AuditRow, insert_audits};
use crate::history::{HistoryRows, insert_history};
use crate::patient_csv::{self, CSV_HEADER, parse_line};
use crate::patient_state::{self, Change};
use crate::tx::Tx;
use crate::util::{in_list, now_rfc3339, values_sql};
use crate::{CsvLineError, ImportSummary, ItemOutcome, Store, StoreError, StoreItem};

const IMPORT_CHUNK: usize = 500;
/// Registry rows locked, read or written per statement for a run of upserts: 17 values a
/// row stays under SQLite's 32,766 and PostgreSQL's 65,535 parameters.
const UPSERT_CHUNK: usize = 500;
/// Stop collecting errors after this many: the file needs fixing anyway.
const MAX_CSV_ERRORS: usize = 1000;

/// The registry columns `record_from_row` reads.
const RECORD_COLUMNS: &str = "ins, ins_oid, birth_name, first_names, birth_date, sex, birth_place, \
     identity_status, feeding_opposed, merged_into, feeding_opposed_stated, feeding_opposed_at, \
     dmp_status, dmp_status_at, consultation_consent, consultation_consent_at, traits_at";

/// Refuses a merge or identifier change that would take over another person's registry
/// entry: the defensive twin of route's check, run inside the write transaction on what
/// the registry holds now, whoever calls the store.
async fn guard_collision(tx: &mut Tx, u: &PatientUpdate, old_ins: &str) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlx("patient update", e);
    let sql = format!("SELECT {RECORD_COLUMNS} FROM patients WHERE ins IN ($1, $2)");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(u.patient.ins.as_str())
        .bind(old_ins)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
    for row in &rows {
        let rec = record_from_row(row).map_err(err)?;
        let bad = route::other_identity(&u.patient, &rec);
        if !bad.is_empty() {
            let side = if rec.ins == u.patient.ins {
                "the target INS"
            } else {
                "the retired INS"
            };
            let names: Vec<&str> = bad.iter().map(|t| t.as_str()).collect();
            return Err(StoreError::IdentityCollision(format!(
                "{side} holds another identity (differs: {})",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Applies the batch's identity updates in order inside its transaction, with what each
/// changed in `patient_history`: a merge or an identifier change on its own
/// ([`apply_in_tx`]), each run of updates that change only their own record together
/// ([`apply_upserts_in_tx`]: a handful of statements for the run instead of three or four
/// per update).
pub(crate) async fn apply_all_in_tx(
    tx: &mut Tx,
    updates: &[&PatientUpdate],
    now: &str,
) -> Result<(), StoreError> {
    let mut rest = updates;
    while let Some(first) = rest.first() {
        let run = rest.iter().take_while(|u| own_record_only(u)).count();
        if run == 0 {
            apply_in_tx(tx, first, now).await?;
            rest = &rest[1..];
        } else {
            apply_upserts_in_tx(tx, &rest[..run], now).await?;
            rest = &rest[run..];
        }
    }
    Ok(())
}

/// An update that changes its own patient's record and no other: no merge, no identifier
/// change (or one from the INS itself, which [`apply_in_tx`] treats so too).
fn own_record_only(u: &PatientUpdate) -> bool {
    route::retired_ins(u).is_none_or(|(ins, _)| ins == u.patient.ins)
}

/// A run of updates that change only their own record, as [`apply_in_tx`] applies them one
/// after another: the same rule ([`patient_state::apply`], each update on the record the
/// one before left), the same history rows in the same order, the same records in the end.
/// The run's records are locked and read in one statement each, applied in memory, and the
/// changed ones written in one upsert.
async fn apply_upserts_in_tx(
    tx: &mut Tx,
    updates: &[&PatientUpdate],
    now: &str,
) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlx("patient update", e);
    let mut ins: Vec<&str> = updates.iter().map(|u| u.patient.ins.as_str()).collect();
    ins.sort_unstable();
    ins.dedup();
    let mut records: HashMap<String, PatientRecord> = HashMap::with_capacity(ins.len());
    for chunk in ins.chunks(UPSERT_CHUNK) {
        // As `locked_record`: the no-op UPDATE takes the row locks, then the rows are read.
        let list = in_list(1, chunk.len());
        let sql = format!("UPDATE patients SET updated_at = updated_at WHERE ins IN ({list})");
        let mut lock = sqlx::query(AssertSqlSafe(sql));
        for i in chunk {
            lock = lock.bind(*i);
        }
        lock.execute(&mut **tx).await.map_err(err)?;
        let sql = format!("SELECT {RECORD_COLUMNS} FROM patients WHERE ins IN ({list})");
        let mut read = sqlx::query(AssertSqlSafe(sql));
        for i in chunk {
            read = read.bind(*i);
        }
        for row in read.fetch_all(&mut **tx).await.map_err(err)? {
            let rec = record_from_row(&row).map_err(err)?;
            records.insert(rec.ins.clone(), rec);
        }
    }
    // Written in INS order, as they were locked.
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    let mut history = Vec::with_capacity(updates.len());
    for u in updates {
        let ins = u.patient.ins.as_str();
        let held = records.get(ins);
        let (next, changes) = patient_state::apply(held, u);
        if held != Some(&next) {
            records.insert(ins.to_string(), next);
            changed.insert(ins);
        }
        history.push(HistoryRows {
            ins: ins.to_string(),
            event: event_of(u),
            source: Some(&u.source),
            changes,
        });
    }
    let changed: Vec<&PatientRecord> = changed.iter().map(|i| &records[*i]).collect();
    write_records(tx, &changed, now).await?;
    insert_history(tx, &history, now).await
}

/// Applies one identity update inside the batch transaction, and writes what it changed
/// to `patient_history` in that same transaction.
///
/// What the record becomes is [`patient_state::apply`]'s rule: fields the message does
/// not state keep their registry value (an empty birth name, first-name list or birth
/// date, an absent birth place, a sex of U); a record left without birth name, first names
/// or birth date is never QUAL/VALI/RECUP but PROV; and a value the message dates older
/// than the one held (ZFA dates, else MSH-7) is left alone. A merge or identifier change
/// onto or from another person's entry is refused ([`StoreError::IdentityCollision`])
/// before anything is written; the merge pointer itself is applied whatever the dates (it
/// is no state that a message could overwrite with an older value).
async fn apply_in_tx(tx: &mut Tx, u: &PatientUpdate, now: &str) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlx("patient update", e);
    let p = &u.patient;
    let retired = route::retired_ins(u)
        .map(|(ins, oid)| (ins.to_string(), oid.to_string()))
        .filter(|(ins, _)| *ins != p.ins);
    if let Some((old_ins, _)) = &retired {
        guard_collision(tx, u, old_ins).await?;
    }
    let event = event_of(u);
    let mut history = Vec::new();
    let held = locked_record(tx, &p.ins).await?;
    let (next, changes) = patient_state::apply(held.as_ref(), u);
    if held.as_ref() != Some(&next) {
        write_records(tx, &[&next], now).await?;
    }
    history.push(HistoryRows {
        ins: p.ins.clone(),
        event,
        source: Some(&u.source),
        changes,
    });

    if let Some((old_ins, old_oid)) = retired {
        // The disappearing INS points to the survivor; a stub keeps the pointer when the
        // registry never knew the old INS (traits empty, status PROV: nothing to match on).
        let before: Option<Option<String>> =
            sqlx::query("SELECT merged_into FROM patients WHERE ins = $1")
                .bind(old_ins.as_str())
                .fetch_optional(&mut **tx)
                .await
                .map_err(err)?
                .map(|r| r.try_get("merged_into"))
                .transpose()
                .map_err(err)?;
        sqlx::query(
            "INSERT INTO patients (ins, ins_oid, birth_name, first_names, birth_date, sex, birth_place, \
             identity_status, feeding_opposed, dmp_status, merged_into, updated_at) \
             VALUES ($1, $2, '', '[]', '', 'U', NULL, 'PROV', 0, NULL, $3, $4) \
             ON CONFLICT (ins) DO UPDATE SET merged_into = excluded.merged_into, updated_at = excluded.updated_at",
        )
        .bind(old_ins.as_str())
        .bind(old_oid.as_str())
        .bind(p.ins.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        let pointer = |ins: String, old: Option<String>, new: Option<&str>| HistoryRows {
            ins,
            event,
            source: Some(&u.source),
            changes: vec![Change {
                field: "merged_into",
                old,
                new: new.map(str::to_string),
                at: u.times.message.clone(),
            }],
        };
        let before = before.flatten();
        if before.as_deref() != Some(p.ins.as_str()) {
            history.push(pointer(old_ins.clone(), before, Some(&p.ins)));
        }
        // Records merged earlier into the old INS follow it, so lookups need one hop only.
        let moved = sqlx::query(
            "UPDATE patients SET merged_into = $1, updated_at = $2 \
             WHERE merged_into = $3 AND ins <> $1 RETURNING ins",
        )
        .bind(p.ins.as_str())
        .bind(now)
        .bind(old_ins.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        for r in moved {
            let ins: String = r.try_get(0).map_err(err)?;
            history.push(pointer(ins, Some(old_ins.clone()), Some(&p.ins)));
        }
        // A survivor that pointed to the old INS (merge in the other direction before) is
        // a survivor again.
        let revived = sqlx::query(
            "UPDATE patients SET merged_into = NULL WHERE ins = $1 AND merged_into = $2 RETURNING ins",
        )
        .bind(p.ins.as_str())
        .bind(old_ins.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        if !revived.is_empty() {
            history.push(pointer(p.ins.clone(), Some(old_ins.clone()), None));
        }
    }
    insert_history(tx, &history, now).await
}

/// The event the history names: the ADT event, else what kind of update it was.
fn event_of(u: &PatientUpdate) -> &str {
    match (&u.change, u.event.trim()) {
        (_, e) if !e.is_empty() => e,
        (PatientChange::Upsert, _) => "update",
        (PatientChange::Merge { .. }, _) => "merge",
        (PatientChange::IdentifierChange { .. }, _) => "identifier_change",
    }
}

/// The registry record of `ins`, locked for the rest of the transaction when it exists:
/// the no-op UPDATE takes PostgreSQL's row lock (SQLite's write lock covers the database),
/// so a concurrent update of the same patient waits and then reads this one's result.
async fn locked_record(tx: &mut Tx, ins: &str) -> Result<Option<PatientRecord>, StoreError> {
    let err = |e| StoreError::from_sqlx("patient update", e);
    sqlx::query("UPDATE patients SET updated_at = updated_at WHERE ins = $1")
        .bind(ins)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    let sql = format!("SELECT {RECORD_COLUMNS} FROM patients WHERE ins = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(ins)
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
    row.as_ref().map(record_from_row).transpose().map_err(err)
}

/// Writes whole records (all but `merged_into`, which only merges move; a new record has
/// none), one statement per [`UPSERT_CHUNK`]. The records are distinct INS: one statement
/// may not upsert a row twice.
async fn write_records(tx: &mut Tx, recs: &[&PatientRecord], now: &str) -> Result<(), StoreError> {
    for chunk in recs.chunks(UPSERT_CHUNK) {
        let names = names_json(chunk.iter().copied());
        let sql = values_sql(
            "INSERT INTO patients (ins, ins_oid, birth_name, first_names, birth_date, sex, birth_place, \
             identity_status, feeding_opposed, dmp_status, updated_at, feeding_opposed_stated, \
             feeding_opposed_at, dmp_status_at, consultation_consent, consultation_consent_at, \
             traits_at)",
            17,
            chunk.len(),
            "ON CONFLICT (ins) DO UPDATE SET ins_oid = excluded.ins_oid, \
             birth_name = excluded.birth_name, first_names = excluded.first_names, \
             birth_date = excluded.birth_date, sex = excluded.sex, birth_place = excluded.birth_place, \
             identity_status = excluded.identity_status, feeding_opposed = excluded.feeding_opposed, \
             dmp_status = excluded.dmp_status, updated_at = excluded.updated_at, \
             feeding_opposed_stated = excluded.feeding_opposed_stated, \
             feeding_opposed_at = excluded.feeding_opposed_at, dmp_status_at = excluded.dmp_status_at, \
             consultation_consent = excluded.consultation_consent, \
             consultation_consent_at = excluded.consultation_consent_at, traits_at = excluded.traits_at",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (r, names) in chunk.iter().zip(&names) {
            q = bind_identity(q, r, names)
                .bind(r.dmp_status.as_deref())
                .bind(now)
                .bind(i16::from(r.feeding_opposed_stated))
                .bind(r.feeding_opposed_at.as_deref())
                .bind(r.dmp_status_at.as_deref())
                .bind(r.consultation_consent.map(i16::from))
                .bind(r.consultation_consent_at.as_deref())
                .bind(r.traits_at.as_deref());
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("patient update", e))?;
    }
    Ok(())
}

/// Each record's first names as the `first_names` column holds them (a JSON list).
fn names_json<'r>(recs: impl IntoIterator<Item = &'r PatientRecord>) -> Vec<String> {
    recs.into_iter()
        .map(|r| serde_json::to_string(&r.first_names).expect("strings serialise"))
        .collect()
}

/// Binds the columns every registry write starts with, in this order: `ins, ins_oid,
/// birth_name, first_names` (`names`: the JSON list), `birth_date, sex, birth_place,
/// identity_status, feeding_opposed`.
fn bind_identity<'q>(
    q: Query<'q, Any, AnyArguments>,
    r: &'q PatientRecord,
    names: &'q str,
) -> Query<'q, Any, AnyArguments> {
    q.bind(r.ins.as_str())
        .bind(r.ins_oid.as_str())
        .bind(r.birth_name.as_str())
        .bind(names)
        .bind(r.birth_date.as_str())
        .bind(r.sex.as_str())
        .bind(r.birth_place.as_deref())
        .bind(r.identity_status.as_str())
        .bind(i16::from(r.feeding_opposed))
}

/// [`RECORD_COLUMNS`] as PostgreSQL's native driver reads them like the `Any` driver does:
/// its 0/1 flags are SMALLINT, which the native driver decodes only as `i16`.
static RECORD_COLUMNS_PG: LazyLock<String> = LazyLock::new(|| {
    const FLAGS: [&str; 3] = [
        "feeding_opposed",
        "feeding_opposed_stated",
        "consultation_consent",
    ];
    RECORD_COLUMNS
        .split(", ")
        .map(|c| {
            if FLAGS.contains(&c) {
                format!("CAST({c} AS BIGINT) AS {c}")
            } else {
                c.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
});

/// One registry record from a row of [`RECORD_COLUMNS`] (or [`RECORD_COLUMNS_PG`]), from
/// either driver.
fn record_from_row<R>(r: &R) -> Result<PatientRecord, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let first_names: String = r.try_get("first_names")?;
    Ok(PatientRecord {
        ins: r.try_get("ins")?,
        ins_oid: r.try_get("ins_oid")?,
        birth_name: r.try_get("birth_name")?,
        first_names: serde_json::from_str(&first_names)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        birth_date: r.try_get("birth_date")?,
        sex: r.try_get("sex")?,
        birth_place: r.try_get("birth_place")?,
        identity_status: r.try_get("identity_status")?,
        feeding_opposed: r.try_get::<i64, _>("feeding_opposed")? != 0,
        merged_into: r.try_get("merged_into")?,
        feeding_opposed_stated: r.try_get::<i64, _>("feeding_opposed_stated")? != 0,
        feeding_opposed_at: r.try_get("feeding_opposed_at")?,
        dmp_status: r.try_get("dmp_status")?,
        dmp_status_at: r.try_get("dmp_status_at")?,
        consultation_consent: r
            .try_get::<Option<i64>, _>("consultation_consent")?
            .map(|c| c != 0),
        consultation_consent_at: r.try_get("consultation_consent_at")?,
        traits_at: r.try_get("traits_at")?,
    })
}

impl Store {
    /// The registry record of `ins`, if any. A merged record has `merged_into` set.
    pub async fn get_patient(&self, ins: &str) -> Result<Option<PatientRecord>, StoreError> {
        let err = |e| StoreError::from_sqlx("get_patient", e);
        let sql = format!("SELECT {RECORD_COLUMNS} FROM patients WHERE ins = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(ins)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(record_from_row).transpose().map_err(err)
    }

    /// The registry records of every INS in `ins` that has one, in one query per 500 (route
    /// reads a whole batch's patients at once instead of one round trip per document).
    pub async fn get_patients(
        &self,
        ins: &[&str],
    ) -> Result<HashMap<String, PatientRecord>, StoreError> {
        let err = |e| StoreError::from_sqlx("get_patients", e);
        let mut out = HashMap::with_capacity(ins.len());
        // On PostgreSQL, natively: one statement whatever the count (the list as one array),
        // rows read without the `Any` layer's conversion (a tenth of route's CPU went to
        // this lookup through it, bench/ANALYSIS.md "Session 12").
        if let Some(pg) = &self.pg {
            static SQL: LazyLock<String> = LazyLock::new(|| {
                format!(
                    "SELECT {} FROM patients WHERE ins = ANY($1)",
                    *RECORD_COLUMNS_PG
                )
            });
            let rows = sqlx::query(AssertSqlSafe(SQL.as_str()))
                .bind(ins)
                .fetch_all(pg)
                .await
                .map_err(err)?;
            for row in &rows {
                let rec = record_from_row(row).map_err(err)?;
                out.insert(rec.ins.clone(), rec);
            }
            return Ok(out);
        }
        for chunk in ins.chunks(500) {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM patients WHERE ins IN ({})",
                in_list(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for i in chunk {
                q = q.bind(*i);
            }
            for row in q.fetch_all(&self.pool).await.map_err(err)? {
                let rec = record_from_row(&row).map_err(err)?;
                out.insert(rec.ins.clone(), rec);
            }
        }
        Ok(out)
    }

    /// The first `limit` registry records with current documents, by INS (not merged):
    /// the identities the portal's dev login offers on demo data. Reads the patients'
    /// primary key in order and stops at `limit` (an index probe per patient, so it stays
    /// cheap on a large store).
    pub async fn patients_with_documents(
        &self,
        limit: i64,
    ) -> Result<Vec<PatientRecord>, StoreError> {
        let err = |e| StoreError::from_sqlx("patients_with_documents", e);
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM patients p WHERE p.merged_into IS NULL AND EXISTS \
             (SELECT 1 FROM documents d WHERE d.patient_ins = p.ins AND d.status = 'current') \
             ORDER BY p.ins LIMIT $1"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(record_from_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    /// Applies one identity update on its own (upsert, A40 merge, A47 identifier change).
    /// Idempotent by its message key. The runtime should rather put updates in
    /// `write_batch` as [`StoreItem::Patient`] to commit them with their offsets.
    pub async fn apply_patient_update(
        &self,
        update: &PatientUpdate,
    ) -> Result<ItemOutcome, StoreError> {
        let mut out = self
            .write_batch(&[StoreItem::Patient(update.clone())], &[])
            .await?;
        Ok(out.pop().expect("one item, one outcome"))
    }

    /// Imports (upserts) the patient registry from CSV with the header [`CSV_HEADER`]:
    /// first names space-separated, sex M/F/U, status PROV/RECUP/VALI/QUAL, opposition
    /// true/false, birth place may be empty. All or nothing: if any line is invalid,
    /// nothing is written and [`StoreError::Csv`] lists the lines (numbers count the
    /// header as line 1; messages name columns, never values). `merged_into` and
    /// `dmp_status` of existing records are kept.
    pub async fn import_patients_csv<R: AsyncBufRead + Unpin>(
        &self,
        reader: R,
    ) -> Result<ImportSummary, StoreError> {
        let mut lines = reader.lines();
        let mut errors = Vec::new();
        let header = lines.next_line().await?.unwrap_or_default();
        if header.trim_start_matches('\u{feff}').trim_end() != CSV_HEADER {
            return Err(StoreError::Csv(vec![CsvLineError {
                line: 1,
                message: format!("header must be exactly {CSV_HEADER}"),
            }]));
        }
        // Written as we go inside one transaction (bounded memory), rolled back if any
        // line turns out bad.
        let mut tx = self.begin("import_patients_csv").await?;
        let now = now_rfc3339();
        let mut summary = ImportSummary::default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut pending: Vec<PatientRecord> = Vec::with_capacity(IMPORT_CHUNK);
        let mut n = 1;
        while let Some(line) = lines.next_line().await? {
            n += 1;
            if line.trim().is_empty() {
                continue;
            }
            summary.lines += 1;
            match parse_line(&line) {
                Err(message) => errors.push(CsvLineError { line: n, message }),
                Ok(rec) => {
                    if let Some(first) = seen.insert(rec.ins.clone(), n) {
                        errors.push(CsvLineError {
                            line: n,
                            message: format!("column ins: same INS as line {first}"),
                        });
                    } else if errors.is_empty() {
                        pending.push(rec);
                    }
                }
            }
            if errors.len() >= MAX_CSV_ERRORS {
                break;
            }
            if errors.is_empty() && pending.len() == IMPORT_CHUNK {
                upsert_records(&mut tx, &pending, &now, &mut summary).await?;
                pending.clear();
            }
        }
        if !errors.is_empty() {
            // Dropping the transaction rolls it back.
            return Err(StoreError::Csv(errors));
        }
        upsert_records(&mut tx, &pending, &now, &mut summary).await?;
        insert_audits(
            &mut tx,
            &[AuditRow {
                action: "patient_import",
                unique_id: None,
                patient_ins: None,
                source: None,
                detail: format!(
                    "{} lines, {} inserted, {} updated",
                    summary.lines, summary.inserted, summary.updated
                ),
            }],
            &now,
        )
        .await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("import_patients_csv", e))?;
        Ok(summary)
    }
}

async fn upsert_records(
    tx: &mut Tx,
    recs: &[PatientRecord],
    now: &str,
    summary: &mut ImportSummary,
) -> Result<(), StoreError> {
    if recs.is_empty() {
        return Ok(());
    }
    let err = |e| StoreError::from_sqlx("import_patients_csv", e);
    // What the registry holds now: to count updates and to write the history of the
    // values the file changes (an opposition lifted by an import releases held documents).
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM patients WHERE ins IN ({})",
        in_list(1, recs.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for r in recs {
        q = q.bind(r.ins.as_str());
    }
    let mut held = HashMap::new();
    for row in q.fetch_all(&mut **tx).await.map_err(err)? {
        let rec = record_from_row(&row).map_err(err)?;
        held.insert(rec.ins.clone(), rec);
    }
    summary.updated += held.len();
    summary.inserted += recs.len() - held.len();
    let history: Vec<HistoryRows> = recs
        .iter()
        .map(|r| {
            let blank = PatientRecord {
                ins: r.ins.clone(),
                ..PatientRecord::default()
            };
            let old = held.get(&r.ins).unwrap_or(&blank);
            let next = patient_csv::imported(old, r);
            // The file dates nothing: the rows carry no sender's date.
            let changes = patient_state::changes(old, &next)
                .into_iter()
                .map(|c| Change { at: None, ..c })
                .collect();
            HistoryRows {
                ins: r.ins.clone(),
                event: "import",
                source: None,
                changes,
            }
        })
        .collect();

    let names = names_json(recs);
    let sql = values_sql(
        "INSERT INTO patients (ins, ins_oid, birth_name, first_names, birth_date, sex, birth_place, \
         identity_status, feeding_opposed, updated_at, feeding_opposed_stated)",
        11,
        recs.len(),
        "ON CONFLICT (ins) DO UPDATE SET ins_oid = excluded.ins_oid, birth_name = excluded.birth_name, \
         first_names = excluded.first_names, birth_date = excluded.birth_date, sex = excluded.sex, \
         birth_place = excluded.birth_place, identity_status = excluded.identity_status, \
         feeding_opposed = excluded.feeding_opposed, updated_at = excluded.updated_at, \
         feeding_opposed_stated = 1",
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for (r, names) in recs.iter().zip(&names) {
        q = bind_identity(q, r, names).bind(now).bind(1i16);
    }
    q.execute(&mut **tx).await.map_err(err)?;
    insert_history(tx, &history, now).await
}
