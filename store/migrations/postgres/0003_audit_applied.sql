-- The store's "already applied?" lookup reads audit rows of deletions and patient updates
-- only (stored documents are looked up in `documents`). Those are a small share of the
-- audit, so a partial index on them stays small and is chosen for every batch; the full
-- audit_source index lost to a sequential scan of the whole audit in measured runs.
CREATE INDEX audit_applied ON audit (source_control_id)
    WHERE action IN ('deleted', 'patient_upsert', 'patient_merge');
