//! ingest: splitting files and streams into HL7 messages (placeholder).
