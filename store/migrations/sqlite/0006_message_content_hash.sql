-- Issue #12: a message is a resend only when its sender, MSH-10, position AND content (the
-- hash of the message without MSH-7) are the same; a sender that reuses an MSH-10 for other
-- content gets its documents stored. The documents' message key gains the content hash.
-- Rows of earlier builds keep a NULL hash (the store then compares the control id alone).
--
-- SQLite cannot drop a table constraint: the table is rebuilt (copy, drop, rename), and
-- `entries` with it, since its foreign key must follow the new table (renaming a parent
-- table rewrites the REFERENCES of its children; dropping it with children left is refused).
CREATE TABLE documents_0006 (
    unique_id              TEXT PRIMARY KEY CHECK (unique_id <> ''),
    set_id                 TEXT NOT NULL CHECK (set_id <> ''),
    version                INTEGER NOT NULL,
    seq                    INTEGER NOT NULL,     -- 1, 2, ... within the set, assigned by the store
    lifecycle              TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('current', 'superseded', 'deleted')),
    target_unique_id       TEXT,
    type_code              TEXT NOT NULL,
    class_code             TEXT NOT NULL,
    format_code            TEXT NOT NULL,
    title                  TEXT NOT NULL,
    patient_ins            TEXT NOT NULL,
    patient_ins_oid        TEXT NOT NULL,
    author_person_id       TEXT,
    author_organisation_id TEXT,
    creation_time          TEXT NOT NULL,
    service_start          TEXT,
    service_stop           TEXT,
    confidentiality        TEXT NOT NULL,
    visibility             TEXT NOT NULL,        -- JSON array of TRE_A07 codes
    origin                 TEXT NOT NULL,
    cda_packed             BLOB NOT NULL,        -- zstd (gzip in rows of early builds) of the UTF-8 CDA
    cda_sha256             TEXT NOT NULL,        -- hex, of the uncompressed CDA
    cda_size               INTEGER NOT NULL,     -- bytes, uncompressed
    source_feed            TEXT,
    source_sender          TEXT NOT NULL,
    source_control_id      TEXT,                 -- NULL when the message had none
    source_position        INTEGER NOT NULL,
    source_topic           TEXT,
    source_partition       INTEGER,
    source_offset          INTEGER,
    stored_at              TEXT NOT NULL,
    source_content_hash    TEXT,                 -- NULL in rows of builds before 0006
    -- Message idempotency: a sender's resend (same MSH-10, same content) never stores
    -- twice. control_id first so that the per-batch lookup by control id uses this index.
    CONSTRAINT documents_source_unique UNIQUE (source_control_id, source_sender, source_position, source_content_hash)
);
INSERT INTO documents_0006 (unique_id, set_id, version, seq, lifecycle, status, target_unique_id, type_code, class_code, format_code, title, patient_ins, patient_ins_oid, author_person_id, author_organisation_id, creation_time, service_start, service_stop, confidentiality, visibility, origin, cda_packed, cda_sha256, cda_size, source_feed, source_sender, source_control_id, source_position, source_topic, source_partition, source_offset, stored_at)
    SELECT unique_id, set_id, version, seq, lifecycle, status, target_unique_id, type_code, class_code, format_code, title, patient_ins, patient_ins_oid, author_person_id, author_organisation_id, creation_time, service_start, service_stop, confidentiality, visibility, origin, cda_packed, cda_sha256, cda_size, source_feed, source_sender, source_control_id, source_position, source_topic, source_partition, source_offset, stored_at FROM documents;
CREATE TABLE entries_0006 (
    document_unique_id TEXT NOT NULL REFERENCES documents_0006 (unique_id),
    position           INTEGER NOT NULL,
    kind               TEXT NOT NULL,            -- lab_observation | dispensation
    code               TEXT NOT NULL,            -- LOINC, or CIP13/UCD13
    code_system        TEXT,
    label              TEXT NOT NULL,
    value              TEXT,
    value_type         TEXT,
    unit               TEXT,
    interpretation     TEXT,
    reference_low      TEXT,
    reference_high     TEXT,
    reference_text     TEXT,
    status             TEXT,
    time               TEXT,
    quantity           TEXT,
    PRIMARY KEY (document_unique_id, position)
);
INSERT INTO entries_0006 SELECT * FROM entries;
DROP TABLE entries;
DROP TABLE documents;
ALTER TABLE documents_0006 RENAME TO documents;
ALTER TABLE entries_0006 RENAME TO entries;
CREATE INDEX entries_code ON entries (code);
CREATE INDEX documents_patient ON documents (patient_ins);
CREATE INDEX documents_set ON documents (set_id, seq);

ALTER TABLE audit ADD COLUMN source_content_hash TEXT;
