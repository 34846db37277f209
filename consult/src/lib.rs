//! dmpflow-consult: the read side of the DMP, for professional software and the patient's
//! portal. The rules that make a DMP trustworthy are pure here (values in, decisions out,
//! as `dmpflow_route` is for identity vigilance); the HTTP server that applies them is an
//! edge built on top.

pub mod auth;
pub mod authz;
pub mod fhir;
pub mod render;
pub mod server;
