-- Least-privilege roles (issue #17), granted where they exist: `scripts/stack up --secure`
-- (and a production cluster) creates them; elsewhere (the plain stack, a developer's
-- database) this migration changes nothing. Run by the owner, who owns every table.
--   dmpflow_pipeline (dmpflow run, mllp, patients import, quarantine release): read and write
--     the working tables; the evidence tables (audit, patient_history) only INSERT and
--     SELECT, so a compromised stage cannot rewrite history; no access_trace; no DDL (it owns
--     nothing, and PostgreSQL 15 gives PUBLIC no CREATE on schema public).
--   dmpflow_reader (dmpflow serve): SELECT everything but write nothing, except its own
--     access trace and the patients' masking decisions made through the portal (INSERT
--     only; the triggers of 0009 and 0011 refuse UPDATE/DELETE to everyone).
--   The pipeline has no business with access_trace or document_masking (the read side's).
-- Both may read _sqlx_migrations: the store checks there that the schema is current before
-- it starts, since only the owner may migrate. A migration that adds a table must grant on
-- it here likewise (tests/secure_stack.rs checks that both roles can reach every table).
-- Kept parallel with ../sqlite/0012_roles.sql (a no-op: SQLite has no roles).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'dmpflow_pipeline') THEN
        GRANT SELECT, INSERT, UPDATE ON patients, documents, quarantine, consumer_offsets
            TO dmpflow_pipeline;
        GRANT SELECT, INSERT ON entries, audit, patient_history TO dmpflow_pipeline;
        GRANT SELECT ON _sqlx_migrations TO dmpflow_pipeline;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'dmpflow_reader') THEN
        GRANT SELECT ON patients, documents, entries, audit, quarantine, consumer_offsets,
            patient_history, access_trace, document_masking, _sqlx_migrations
            TO dmpflow_reader;
        GRANT INSERT ON access_trace, document_masking TO dmpflow_reader;
    END IF;
END
$$;
