-- The entries table's write cost (issue #15): entries_code, an index on the code alone that no
-- query reads (see ../postgres/0013_entries_lean.sql), is dropped. The foreign key to
-- documents stays here: SQLite cannot drop a constraint without rebuilding the table, and it
-- is the embedded and test backend, not the one that carries the volume.
DROP INDEX entries_code;
