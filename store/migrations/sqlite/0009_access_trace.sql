-- Who consulted which DMP, when, why and with what answer (issue #13): one row per search or
-- read of the FHIR server, written before the answer leaves. Append-only: the triggers
-- refuse UPDATE and DELETE so that a trace, once written, is evidence. Kept parallel with
-- ../postgres/0008_access_trace.sql (column types only differ).
CREATE TABLE access_trace (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at    TEXT NOT NULL,
    actor_role     TEXT NOT NULL CHECK (actor_role IN ('patient', 'representative', 'professional')),
    actor_id       TEXT NOT NULL,
    actor_org      TEXT,
    patient_ins    TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('search', 'read')),
    query          TEXT,
    document_ids   TEXT NOT NULL DEFAULT '[]',   -- JSON array of uniqueIds answered
    purpose        TEXT NOT NULL CHECK (purpose IN ('normal', 'break_glass')),
    purpose_reason TEXT,
    outcome        TEXT NOT NULL CHECK (outcome IN ('permit', 'deny')),
    reason         TEXT NOT NULL
);
CREATE INDEX access_trace_patient ON access_trace (patient_ins, id);

CREATE TRIGGER access_trace_no_update BEFORE UPDATE ON access_trace
BEGIN
    SELECT RAISE(ABORT, 'access_trace is append-only');
END;
CREATE TRIGGER access_trace_no_delete BEFORE DELETE ON access_trace
BEGIN
    SELECT RAISE(ABORT, 'access_trace is append-only');
END;
