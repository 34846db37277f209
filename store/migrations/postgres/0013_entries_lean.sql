-- The entries table's write cost (issue #15). Each entry row of a batch's COPY paid for two
-- things nothing needed:
--   * entries_code, an index on the code alone: no query reads entries by code across
--     patients (the results pages go from the patient's documents to their entries by the
--     primary key, then filter on the code), yet every row of a lab report added a key to it;
--   * the foreign key to documents: a trigger per row looking up (and key-share locking) the
--     document the same transaction had just written. The store writes a document's entries
--     only with the document, in the same transaction and from the same plan list
--     (store/src/batch: documents, then entry_rows of those very documents); no role may
--     delete a document (0012), and the primary key (document_unique_id, position) still
--     refuses an entry twice. store/tests/postgres.rs checks after every scenario that no entry
--     is orphaned.
-- Measured with bench/stage-cpu, 3 alternated rounds: PostgreSQL's CPU during the store
-- stage 100 -> 76 us per message (bench/ANALYSIS.md "Session 12").
-- Kept parallel with ../sqlite/0013_entries_lean.sql (which keeps the foreign key).
ALTER TABLE entries DROP CONSTRAINT entries_document_unique_id_fkey;
DROP INDEX entries_code;
