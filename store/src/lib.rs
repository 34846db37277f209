//! store: the patient DMP on PostgreSQL or SQLite (placeholder).
