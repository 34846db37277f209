//! dmpflow-consult: the read side of the DMP, for professional software and the patient's
//! portal. The rules that make a DMP trustworthy are pure here (values in, decisions out,
//! as `dmpflow_route` is for identity vigilance); the HTTP server that applies them is an
//! edge built on top. It also takes documents in (ITI-65), as an HL7 v2 MDM^T02 (`mdm`)
//! written to a feed topic through a writer the binary gives it.

pub mod auth;
pub mod authz;
pub mod fhir;
pub mod mdm;
pub mod server;
