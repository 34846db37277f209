-- The stored CDA is compressed with zstd now (gzip rows of earlier builds stay as they are:
-- the bytes say which, see dmpflow_schemas::Packing), so the column loses its gzip name.
ALTER TABLE documents RENAME COLUMN cda_gz TO cda_packed;
