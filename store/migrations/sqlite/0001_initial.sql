-- dmpflow store schema, SQLite flavour. Kept line-for-line parallel with
-- ../postgres/0001_initial.sql: only the column types differ (INTEGER/BLOB/AUTOINCREMENT
-- here, BIGINT/SMALLINT/BYTEA/identity there). Timestamps are RFC 3339 UTC text written by the
-- store so that both backends read them back the same way through sqlx's Any driver.
-- Booleans are INTEGER 0/1 for the same reason.

-- The patient registry (identity feed, CSV import); route reads it.
CREATE TABLE patients (
    ins              TEXT PRIMARY KEY,
    ins_oid          TEXT NOT NULL,
    birth_name       TEXT NOT NULL,
    first_names      TEXT NOT NULL,              -- JSON array, in birth order
    birth_date       TEXT NOT NULL,
    sex              TEXT NOT NULL,
    birth_place      TEXT,
    identity_status  TEXT NOT NULL,
    feeding_opposed  INTEGER NOT NULL DEFAULT 0 CHECK (feeding_opposed IN (0, 1)),
    dmp_status       TEXT,
    merged_into      TEXT,
    updated_at       TEXT NOT NULL
);
CREATE INDEX patients_merged_into ON patients (merged_into);

-- One row per stored document version.
CREATE TABLE documents (
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
    cda_gz                 BLOB NOT NULL,         -- gzip of the UTF-8 CDA
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
    -- Message idempotency: a sender's retry of the same MSH-10 never stores twice.
    -- control_id first so that the per-batch lookup by control id uses this index.
    CONSTRAINT documents_source_unique UNIQUE (source_control_id, source_sender, source_position)
);
CREATE INDEX documents_patient ON documents (patient_ins);
CREATE INDEX documents_set ON documents (set_id, seq);

-- Structured data of a document (lab observations, dispensation lines).
CREATE TABLE entries (
    document_unique_id TEXT NOT NULL REFERENCES documents (unique_id),
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
CREATE INDEX entries_code ON entries (code);

-- What the store did and why. Ids and source coordinates only, no patient data beyond the
-- INS needed to find a patient row.
CREATE TABLE audit (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    at                TEXT NOT NULL,
    action            TEXT NOT NULL,
    unique_id         TEXT,
    patient_ins       TEXT,
    source_feed       TEXT,
    source_sender     TEXT,
    source_control_id TEXT,
    source_position   INTEGER,
    source_topic      TEXT,
    source_partition  INTEGER,
    source_offset     INTEGER,
    detail            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_source ON audit (source_control_id, source_sender, source_position);
CREATE INDEX audit_unique_id ON audit (unique_id);

-- Items waiting for an operator (identity vigilance, unknown lifecycle targets).
CREATE TABLE quarantine (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    reason            TEXT NOT NULL,
    detail            TEXT NOT NULL,
    item_key          TEXT NOT NULL,            -- doc:<uniqueId> or msg:<sender>/<control id>/<position>
    unique_id         TEXT,
    payload           TEXT NOT NULL,            -- JSON of the Normalized item
    source_feed       TEXT,
    source_sender     TEXT,
    source_control_id TEXT,
    source_position   INTEGER,
    source_topic      TEXT,
    source_partition  INTEGER,
    source_offset     INTEGER,
    status            TEXT NOT NULL CHECK (status IN ('open', 'released')),
    created_at        TEXT NOT NULL,
    released_at       TEXT
);
-- An item waits at most once; after release it may come back (re-routed and still wrong).
CREATE UNIQUE INDEX quarantine_open_item ON quarantine (item_key) WHERE status = 'open';
CREATE INDEX quarantine_status ON quarantine (status, id);

-- Kafka positions of the store's consumer, committed in the same transaction as the rows.
CREATE TABLE consumer_offsets (
    group_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, "partition")
);
