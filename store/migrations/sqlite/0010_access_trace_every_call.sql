-- Every call of the FHIR server leaves a trace (issue #13), not only those of an
-- authenticated caller about a known patient: an unauthenticated call is traced with the
-- role 'anonymous' (actor_id and patient_ins empty: nothing in it can be attributed), a call
-- whose patient is unknown (bad query, missing document) with patient_ins ''. A document
-- provided over ITI-65 is traced with action 'create'. Kept parallel with
-- ../postgres/0010_access_trace_every_call.sql.
--
-- SQLite cannot alter a CHECK: the table is rebuilt with its rows, ids and triggers. DROP
-- TABLE does not fire the append-only DELETE trigger (SQLite runs no trigger for it).
CREATE TABLE access_trace_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at    TEXT NOT NULL,
    actor_role     TEXT NOT NULL
        CHECK (actor_role IN ('patient', 'representative', 'professional', 'anonymous')),
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
INSERT INTO access_trace_new SELECT * FROM access_trace;
DROP TABLE access_trace;
ALTER TABLE access_trace_new RENAME TO access_trace;
CREATE INDEX access_trace_patient ON access_trace (patient_ins, id);

CREATE TRIGGER access_trace_no_update BEFORE UPDATE ON access_trace
BEGIN
    SELECT RAISE(ABORT, 'access_trace is append-only');
END;
CREATE TRIGGER access_trace_no_delete BEFORE DELETE ON access_trace
BEGIN
    SELECT RAISE(ABORT, 'access_trace is append-only');
END;
