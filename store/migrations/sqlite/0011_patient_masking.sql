-- The patient masks a document from professionals, or unmasks it (issue #14, the portal):
-- each decision is a row of document_masking, append-only like access_trace. The read side
-- takes the set's latest row over the sender's TRE_A07 codes; the change is also traced as
-- an access (action 'mask' / 'unmask'). Kept parallel with
-- ../postgres/0011_patient_masking.sql.
CREATE TABLE document_masking (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at  TEXT NOT NULL,
    set_id       TEXT NOT NULL,
    patient_ins  TEXT NOT NULL,
    change       TEXT NOT NULL CHECK (change IN ('mask', 'unmask')),
    actor_role   TEXT NOT NULL CHECK (actor_role IN ('patient', 'representative')),
    actor_id     TEXT NOT NULL
);
CREATE INDEX document_masking_set ON document_masking (set_id, id);
CREATE TRIGGER document_masking_no_update BEFORE UPDATE ON document_masking
BEGIN
    SELECT RAISE(ABORT, 'document_masking is append-only');
END;
CREATE TRIGGER document_masking_no_delete BEFORE DELETE ON document_masking
BEGIN
    SELECT RAISE(ABORT, 'document_masking is append-only');
END;

-- SQLite cannot alter a CHECK: access_trace is rebuilt with its rows, ids and triggers (as
-- in 0010). DROP TABLE does not fire the append-only DELETE trigger.
CREATE TABLE access_trace_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at    TEXT NOT NULL,
    actor_role     TEXT NOT NULL
        CHECK (actor_role IN ('patient', 'representative', 'professional', 'anonymous')),
    actor_id       TEXT NOT NULL,
    actor_org      TEXT,
    patient_ins    TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('search', 'read', 'create', 'mask', 'unmask')),
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
