//! HL7 v2 reader (owned by the reader work; placeholder).
