//! HL7 v2 message → typed records and DMP metadata (placeholder).
