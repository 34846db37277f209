//! The INS identifier OIDs, shared by every crate that reads or checks an INS (normalize
//! reading PID-3, route's OID policy, the registry's CSV import), so the list lives once.

/// INS-NIR (production).
pub const OID_NIR: &str = "1.2.250.1.213.1.4.8";
/// INS-NIA (identifier awaiting a NIR).
pub const OID_NIA: &str = "1.2.250.1.213.1.4.9";
/// INS-NIR of the ANS test environment.
pub const OID_NIR_TEST: &str = "1.2.250.1.213.1.4.10";
/// INS-NIR of the ANS demonstration environment.
pub const OID_NIR_DEMO: &str = "1.2.250.1.213.1.4.11";

/// Every OID an INS may carry. Whether the test and demo ones are accepted is route's
/// policy (`RouteConfig::accept_test_oids`), not a property of the identifier.
pub const INS_OIDS: [&str; 4] = [OID_NIR, OID_NIA, OID_NIR_TEST, OID_NIR_DEMO];
