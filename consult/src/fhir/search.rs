//! The search parameters of ITI-67 (DocumentReference), Observation and AuditEvent
//! searches, parsed and checked before anything touches the store. Pure: the server hands
//! over the already percent-decoded `(name, value)` pairs in order.
//!
//! An unknown or unsupported parameter is refused (`search.param.unknown`), never silently
//! dropped: a dropped filter would widen the answer, and on a DMP that means showing more
//! than was asked for.

use dmpflow_schemas::ins::INS_OIDS;
use time::OffsetDateTime;

use super::datetime;
use super::outcome::{Issue, IssueType, Severity};

pub const DEFAULT_COUNT: u32 = 20;
pub const MAX_COUNT: u32 = 100;

/// Why a query was refused: maps onto an OperationOutcome issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchError {
    /// Stable reason code: `search.param.unknown`, `search.param.invalid`,
    /// `search.param.repeated`, `search.patient.missing`.
    pub reason: &'static str,
    pub param: String,
    pub detail: String,
}

impl SearchError {
    fn new(reason: &'static str, param: &str, detail: impl Into<String>) -> Self {
        SearchError {
            reason,
            param: param.to_owned(),
            detail: detail.into(),
        }
    }

    /// The OperationOutcome issue (diagnostics name the parameter, never its value).
    pub fn issue(&self) -> Issue {
        Issue {
            severity: Severity::Error,
            code: if self.reason == "search.param.unknown" {
                IssueType::NotSupported
            } else {
                IssueType::Invalid
            },
            reason: self.reason.into(),
            diagnostics: Some(self.detail.clone()),
            expression: Some(self.param.clone()),
        }
    }
}

/// A token value: `system|code`, `|code` (no system: `Some("")`), or `code` (any system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub system: Option<String>,
    pub code: String,
}

/// Comparison prefix of a date parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Gt,
    Lt,
    Ge,
    Le,
}

/// One date condition. Per FHIR, the value stands for its whole span `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateParam {
    pub prefix: Prefix,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl DateParam {
    /// Whether a point in time satisfies the condition.
    pub fn matches(&self, t: OffsetDateTime) -> bool {
        match self.prefix {
            Prefix::Eq => t >= self.start && t < self.end,
            Prefix::Gt => t >= self.end,
            Prefix::Ge => t >= self.start,
            Prefix::Lt => t < self.start,
            Prefix::Le => t < self.end,
        }
    }
}

/// The paging part shared by every search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    pub count: u32,
    pub page: Option<String>,
}

/// A parsed ITI-67 query. Lists within one field are ORs (comma-separated values);
/// `date` and `period` conditions are ANDs (repeated parameters make a range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentQuery {
    pub patient: super::PatientId,
    /// Store words: current, superseded, deleted. Empty: any.
    pub status: Vec<&'static str>,
    pub types: Vec<Token>,
    pub categories: Vec<Token>,
    pub date: Vec<DateParam>,
    pub period: Vec<DateParam>,
    pub authors: Vec<Token>,
    pub paging: Paging,
}

/// A parsed Observation query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationQuery {
    pub patient: super::PatientId,
    pub codes: Vec<Token>,
    pub date: Vec<DateParam>,
    pub paging: Paging,
}

/// A parsed AuditEvent query (the patient's access traces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub patient: super::PatientId,
    pub date: Vec<DateParam>,
    pub paging: Paging,
}

fn invalid(param: &str, why: impl Into<String>) -> SearchError {
    SearchError::new("search.param.invalid", param, why)
}

fn tokens(param: &str, v: &str) -> Result<Vec<Token>, SearchError> {
    v.split(',')
        .map(|t| {
            let (system, code) = match t.split_once('|') {
                Some((s, c)) => (Some(s.to_owned()), c),
                None => (None, t),
            };
            if code.is_empty() || code.contains('|') {
                return Err(invalid(
                    param,
                    format!("'{param}' takes [system|]code values"),
                ));
            }
            Ok(Token {
                system,
                code: code.to_owned(),
            })
        })
        .collect()
}

fn patient(param: &str, v: &str) -> Result<super::PatientId, SearchError> {
    let why = || invalid(param, "expected urn:oid:<INS OID>|<15-character INS>");
    let (system, ins) = v.split_once('|').ok_or_else(why)?;
    let oid = system.strip_prefix("urn:oid:").ok_or_else(why)?;
    if !INS_OIDS.contains(&oid)
        || ins.len() != 15
        || !ins.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(why());
    }
    Ok(super::PatientId {
        oid: oid.to_owned(),
        ins: ins.to_owned(),
    })
}

fn date(param: &str, v: &str) -> Result<DateParam, SearchError> {
    let (prefix, rest) = match v.get(..2) {
        Some("eq") => (Prefix::Eq, &v[2..]),
        Some("gt") => (Prefix::Gt, &v[2..]),
        Some("lt") => (Prefix::Lt, &v[2..]),
        Some("ge") => (Prefix::Ge, &v[2..]),
        Some("le") => (Prefix::Le, &v[2..]),
        Some(p) if p.bytes().all(|b| b.is_ascii_alphabetic()) => {
            return Err(invalid(
                param,
                format!("'{param}': prefix '{p}' not supported (eq, gt, lt, ge, le)"),
            ));
        }
        _ => (Prefix::Eq, v),
    };
    let stamp =
        datetime::parse_fhir(rest).map_err(|e| invalid(param, format!("'{param}': {e}")))?;
    let (start, end) = stamp.range();
    Ok(DateParam { prefix, start, end })
}

/// Collects parameters, refusing repeats of those that may appear once.
struct Seen(Vec<String>);

impl Seen {
    fn once(&mut self, name: &str) -> Result<(), SearchError> {
        if self.0.iter().any(|n| n == name) {
            return Err(SearchError::new(
                "search.param.repeated",
                name,
                format!("'{name}' may appear once"),
            ));
        }
        self.0.push(name.to_owned());
        Ok(())
    }
}

/// `_count`, `_page` and `_format`: `Ok(true)` when `name` was one of them.
fn common(name: &str, v: &str, seen: &mut Seen, paging: &mut Paging) -> Result<bool, SearchError> {
    match name {
        "_count" => {
            seen.once(name)?;
            let n: u32 = v
                .parse()
                .map_err(|_| invalid(name, "'_count' takes a positive integer"))?;
            if n == 0 {
                return Err(invalid(name, "'_count' takes a positive integer"));
            }
            // FHIR lets a server return fewer than asked: cap rather than refuse.
            paging.count = n.min(MAX_COUNT);
        }
        "_page" => {
            seen.once(name)?;
            let ok = !v.is_empty()
                && v.len() <= 256
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b));
            if !ok {
                return Err(invalid(
                    name,
                    "'_page' takes the token of a next/previous link",
                ));
            }
            paging.page = Some(v.to_owned());
        }
        "_format" => {
            seen.once(name)?;
            if !["json", "application/json", "application/fhir+json"].contains(&v) {
                return Err(invalid(name, "only JSON is served"));
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn unknown(name: &str, known: &str) -> SearchError {
    SearchError::new(
        "search.param.unknown",
        name,
        format!("unknown search parameter '{name}' (supported: {known})"),
    )
}

fn required(p: Option<super::PatientId>) -> Result<super::PatientId, SearchError> {
    p.ok_or_else(|| {
        SearchError::new(
            "search.patient.missing",
            "patient.identifier",
            "'patient.identifier' is required",
        )
    })
}

fn new_paging() -> Paging {
    Paging {
        count: DEFAULT_COUNT,
        page: None,
    }
}

/// Parses an ITI-67 query.
pub fn parse_document_query(pairs: &[(String, String)]) -> Result<DocumentQuery, SearchError> {
    const KNOWN: &str = "patient.identifier, status, type, category, date, period, author.identifier, _count, _page";
    let mut seen = Seen(Vec::new());
    let mut paging = new_paging();
    let (mut pat, mut status, mut types, mut categories) =
        (None, Vec::new(), Vec::new(), Vec::new());
    let (mut dates, mut periods, mut authors) = (Vec::new(), Vec::new(), Vec::new());
    for (name, v) in pairs {
        let name = name.as_str();
        if common(name, v, &mut seen, &mut paging)? {
            continue;
        }
        match name {
            "patient.identifier" => {
                seen.once(name)?;
                pat = Some(patient(name, v)?);
            }
            "status" => {
                for s in v.split(',') {
                    status.push(match s {
                        "current" => "current",
                        "superseded" => "superseded",
                        "entered-in-error" => "deleted",
                        _ => {
                            return Err(invalid(
                                name,
                                "'status' takes current, superseded or entered-in-error",
                            ));
                        }
                    });
                }
            }
            "type" => types.extend(tokens(name, v)?),
            "category" => categories.extend(tokens(name, v)?),
            "author.identifier" => authors.extend(tokens(name, v)?),
            "date" => dates.push(date(name, v)?),
            "period" => periods.push(date(name, v)?),
            _ => return Err(unknown(name, KNOWN)),
        }
    }
    Ok(DocumentQuery {
        patient: required(pat)?,
        status,
        types,
        categories,
        date: dates,
        period: periods,
        authors,
        paging,
    })
}

/// Parses an Observation query.
pub fn parse_observation_query(
    pairs: &[(String, String)],
) -> Result<ObservationQuery, SearchError> {
    const KNOWN: &str = "patient.identifier, code, date, _count, _page";
    let mut seen = Seen(Vec::new());
    let mut paging = new_paging();
    let (mut pat, mut codes, mut dates) = (None, Vec::new(), Vec::new());
    for (name, v) in pairs {
        let name = name.as_str();
        if common(name, v, &mut seen, &mut paging)? {
            continue;
        }
        match name {
            "patient.identifier" => {
                seen.once(name)?;
                pat = Some(patient(name, v)?);
            }
            "code" => codes.extend(tokens(name, v)?),
            "date" => dates.push(date(name, v)?),
            _ => return Err(unknown(name, KNOWN)),
        }
    }
    Ok(ObservationQuery {
        patient: required(pat)?,
        codes,
        date: dates,
        paging,
    })
}

/// Parses an AuditEvent query.
pub fn parse_audit_query(pairs: &[(String, String)]) -> Result<AuditQuery, SearchError> {
    const KNOWN: &str = "patient.identifier, date, _count, _page";
    let mut seen = Seen(Vec::new());
    let mut paging = new_paging();
    let (mut pat, mut dates) = (None, Vec::new());
    for (name, v) in pairs {
        let name = name.as_str();
        if common(name, v, &mut seen, &mut paging)? {
            continue;
        }
        match name {
            "patient.identifier" => {
                seen.once(name)?;
                pat = Some(patient(name, v)?);
            }
            "date" => dates.push(date(name, v)?),
            _ => return Err(unknown(name, KNOWN)),
        }
    }
    Ok(AuditQuery {
        patient: required(pat)?,
        date: dates,
        paging,
    })
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
