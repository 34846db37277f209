-- Least-privilege roles (issue #17): PostgreSQL only (../postgres/0012_roles.sql grants
-- the pipeline and reader roles their rights). SQLite has no roles: a file's rights are
-- the file system's. Kept so that both backends share one migration history.
SELECT 1;
