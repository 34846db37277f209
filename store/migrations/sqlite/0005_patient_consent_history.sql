-- Issue #12: the registry keeps the PAM-FR ZFA values with the dates the sender collected
-- them, so that an older message never overwrites a newer state, and the history of every
-- change (who changed what, from which message).
--
-- feeding_opposed stays the value route reads (1 = the patient opposes); the new
-- feeding_opposed_stated says whether anyone ever stated it (0 = not collected). Rows that
-- already oppose were stated by someone; a 0 of an older build may be "not collected".
ALTER TABLE patients ADD COLUMN feeding_opposed_stated INTEGER NOT NULL DEFAULT 0
    CHECK (feeding_opposed_stated IN (0, 1));
UPDATE patients SET feeding_opposed_stated = 1 WHERE feeding_opposed = 1;
-- Dates are the sender's 'YYYY-MM-DDTHH:MM:SS' (ZFA-2/10/12, else MSH-7), compared as text.
ALTER TABLE patients ADD COLUMN feeding_opposed_at TEXT;
ALTER TABLE patients ADD COLUMN dmp_status_at TEXT;
-- ZFA-11: 1 IC, 0 INC, NULL not collected. For the read side.
ALTER TABLE patients ADD COLUMN consultation_consent INTEGER
    CHECK (consultation_consent IN (0, 1));
ALTER TABLE patients ADD COLUMN consultation_consent_at TEXT;
-- MSH-7 of the last identity message that set the strict traits and the identity status.
ALTER TABLE patients ADD COLUMN traits_at TEXT;

-- Append-only: one row per registry value an identity message changed, written in the
-- transaction of the change. Trait rows name the trait only (old_value/new_value NULL):
-- the traits themselves are in `patients`, and a history that cannot be rectified should
-- not keep copies of them.
CREATE TABLE patient_history (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    at                TEXT NOT NULL,            -- store time, RFC 3339 UTC
    ins               TEXT NOT NULL,
    event             TEXT NOT NULL,            -- ADT event (A28, A31, A40, ...) or 'import'
    field             TEXT NOT NULL,
    old_value         TEXT,
    new_value         TEXT,
    value_time        TEXT,                     -- the sender's date of the new value
    source_feed       TEXT,
    source_sender     TEXT,
    source_control_id TEXT,
    source_position   INTEGER,
    source_topic      TEXT,
    source_partition  INTEGER,
    source_offset     INTEGER
);
CREATE INDEX patient_history_ins ON patient_history (ins, id);

-- The route stage also re-routes open `patient.opposed` cases once the patient's record no
-- longer opposes (a later INO). Cases of builds before 0004 lack patient_ins.
UPDATE quarantine SET patient_ins = json_extract(payload, '$.meta.patient.ins')
    WHERE status = 'open' AND reason = 'patient.opposed' AND patient_ins IS NULL;
CREATE INDEX quarantine_opposed_patient ON quarantine (patient_ins)
    WHERE status = 'open' AND reason = 'patient.opposed';
