-- The patient masks a document from professionals, or unmasks it (issue #14, the portal):
-- each decision is a row of document_masking, append-only like access_trace (a change of
-- visibility is evidence of what professionals could see, and when). The read side takes the
-- set's latest row over the sender's TRE_A07 codes (a patient's word is newer than the
-- sender's); the sender's codes stay as they were stored. The change is also traced as an
-- access (action 'mask' / 'unmask') so the patient's history shows it. Kept parallel with
-- ../sqlite/0011_patient_masking.sql.
CREATE TABLE document_masking (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at  TEXT NOT NULL,
    set_id       TEXT NOT NULL,
    patient_ins  TEXT NOT NULL,
    change       TEXT NOT NULL CHECK (change IN ('mask', 'unmask')),
    actor_role   TEXT NOT NULL CHECK (actor_role IN ('patient', 'representative')),
    actor_id     TEXT NOT NULL
);
CREATE INDEX document_masking_set ON document_masking (set_id, id);

CREATE FUNCTION document_masking_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'document_masking is append-only';
END;
$$;
CREATE TRIGGER document_masking_append_only BEFORE UPDATE OR DELETE ON document_masking
    FOR EACH ROW EXECUTE FUNCTION document_masking_append_only();

ALTER TABLE access_trace DROP CONSTRAINT access_trace_action_check;
ALTER TABLE access_trace ADD CONSTRAINT access_trace_action_check
    CHECK (action IN ('search', 'read', 'create', 'mask', 'unmask'));
