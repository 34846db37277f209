-- Issue #12: a message is a resend only when its sender, MSH-10, position AND content (the
-- hash of the message without MSH-7) are the same; a sender that reuses an MSH-10 for other
-- content gets its documents stored. The documents' message key gains the content hash.
-- Rows of earlier builds keep a NULL hash (the store then compares the control id alone);
-- NULLs are distinct in a UNIQUE constraint, so they never collide with the new rows.
ALTER TABLE documents ADD COLUMN source_content_hash TEXT;
ALTER TABLE documents DROP CONSTRAINT documents_source_unique;
ALTER TABLE documents ADD CONSTRAINT documents_source_unique
    UNIQUE (source_control_id, source_sender, source_position, source_content_hash);

ALTER TABLE audit ADD COLUMN source_content_hash TEXT;
