-- The stored CDA is compressed with zstd now (gzip rows of earlier builds stay as they are:
-- the bytes say which, see dmpflow_schemas::Packing), so the column loses its gzip name.
ALTER TABLE documents RENAME COLUMN cda_gz TO cda_packed;
-- The bytes are already compressed: EXTERNAL stores them out of line without PostgreSQL
-- first trying pglz on them, which failed on every row and was ~15% of the database's CPU
-- under load (bench/ANALYSIS.md).
ALTER TABLE documents ALTER COLUMN cda_packed SET STORAGE EXTERNAL;
