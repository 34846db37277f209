-- A document row keeps its packed CDA inline up to a page: PostgreSQL only (see
-- ../postgres/0014_documents_inline.sql); SQLite has no TOAST table. Kept so that both
-- backends share one migration history.
SELECT 1;
