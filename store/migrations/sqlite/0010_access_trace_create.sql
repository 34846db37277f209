-- ITI-65 (a professional providing a document over FHIR) is traced too, as action 'create':
-- the patient reads who put what into their DMP next to who read it. SQLite cannot alter a
-- CHECK constraint: the table is rebuilt with its rows, index and append-only triggers
-- (dropped first so that moving the rows is not refused). Kept parallel with
-- ../postgres/0010_access_trace_create.sql.
DROP TRIGGER access_trace_no_update;
DROP TRIGGER access_trace_no_delete;
CREATE TABLE access_trace_v2 (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at    TEXT NOT NULL,
    actor_role     TEXT NOT NULL CHECK (actor_role IN ('patient', 'representative', 'professional')),
    actor_id       TEXT NOT NULL,
    actor_org      TEXT,
    patient_ins    TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('search', 'read', 'create')),
    query          TEXT,
    document_ids   TEXT NOT NULL DEFAULT '[]',   -- JSON array of uniqueIds answered
    purpose        TEXT NOT NULL CHECK (purpose IN ('normal', 'break_glass')),
    purpose_reason TEXT,
    outcome        TEXT NOT NULL CHECK (outcome IN ('permit', 'deny')),
    reason         TEXT NOT NULL
);
INSERT INTO access_trace_v2 (id, recorded_at, actor_role, actor_id, actor_org, patient_ins,
    action, query, document_ids, purpose, purpose_reason, outcome, reason)
SELECT id, recorded_at, actor_role, actor_id, actor_org, patient_ins, action, query,
    document_ids, purpose, purpose_reason, outcome, reason FROM access_trace;
DROP TABLE access_trace;
ALTER TABLE access_trace_v2 RENAME TO access_trace;
CREATE INDEX access_trace_patient ON access_trace (patient_ins, id);

CREATE TRIGGER access_trace_no_update BEFORE UPDATE ON access_trace
BEGIN
    SELECT RAISE(ABORT, 'access_trace is append-only');
END;
CREATE TRIGGER access_trace_no_delete BEFORE DELETE ON access_trace
BEGIN
    SELECT RAISE(ABORT, 'access_trace is append-only');
END;
