//! Tests of the search-parameter parser (kept apart so search.rs stays readable).

use super::*;

const PAT: &str = "urn:oid:1.2.250.1.213.1.4.10|279035121518989";

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn full_iti67_query() {
    let d = parse_document_query(&q(&[
        ("patient.identifier", PAT),
        ("status", "current,entered-in-error"),
        ("type", "http://loinc.org|11502-2"),
        ("category", "urn:oid:1.2.250.1.213.1.1.4.1|10"),
        ("date", "ge2024-01-01"),
        ("date", "lt2024-04"),
        ("period", "2024-03-06"),
        (
            "author.identifier",
            "urn:oid:1.2.250.1.71.4.2.1|801234534765",
        ),
        ("_count", "500"),
        ("_page", "b2Zmc2V0OjIw"),
    ]))
    .unwrap();
    assert_eq!(d.patient.oid, "1.2.250.1.213.1.4.10");
    assert_eq!(d.status, ["current", "deleted"]);
    assert_eq!(
        d.types[0],
        Token {
            system: Some("http://loinc.org".into()),
            code: "11502-2".into()
        }
    );
    assert_eq!(d.date.len(), 2);
    assert_eq!(
        d.paging,
        Paging {
            count: MAX_COUNT,
            page: Some("b2Zmc2V0OjIw".into())
        }
    );
    let t = datetime::parse("2024-03-31T12:00:00Z").unwrap().range().0;
    assert!(d.date.iter().all(|c| c.matches(t)));
    let april = datetime::parse("2024-04-01T00:30:00+02:00")
        .unwrap()
        .range()
        .0;
    assert!(!d.date[1].matches(april));
}

#[test]
fn defaults() {
    let d = parse_document_query(&q(&[("patient.identifier", PAT)])).unwrap();
    assert_eq!(d.paging.count, DEFAULT_COUNT);
    assert!(d.status.is_empty() && d.paging.page.is_none());
}

#[test]
fn date_prefixes_compare_against_the_span() {
    let at = |s: &str| datetime::parse(s).unwrap().range().0;
    let p = date("date", "gt2024-03-06").unwrap();
    assert!(!p.matches(at("2024-03-06T23:59:59+01:00")));
    assert!(p.matches(at("2024-03-07T00:00:00+01:00")));
    let p = date("date", "le2024-03-06").unwrap();
    assert!(p.matches(at("2024-03-06T23:59:59+01:00")));
    let p = date("date", "2024-03-06").unwrap();
    assert_eq!(p.prefix, Prefix::Eq);
    assert!(date("date", "sa2024-03-06").is_err());
    assert!(date("date", "ge20240306").is_err());
}

#[test]
fn refusals_are_explicit() {
    let err = |pairs: &[(&str, &str)]| parse_document_query(&q(pairs)).unwrap_err();
    assert_eq!(
        err(&[("patient.identifier", PAT), ("foo", "1")]).reason,
        "search.param.unknown"
    );
    assert_eq!(
        err(&[("patient.identifier", PAT), ("patient", "Patient/1")]).reason,
        "search.param.unknown"
    );
    assert_eq!(
        err(&[("status", "current")]).reason,
        "search.patient.missing"
    );
    assert_eq!(
        err(&[("patient.identifier", PAT), ("patient.identifier", PAT)]).reason,
        "search.param.repeated"
    );
    for bad in [
        ("patient.identifier", "279035121518989"),
        ("patient.identifier", "urn:oid:1.2.3|279035121518989"),
        ("patient.identifier", "urn:oid:1.2.250.1.213.1.4.8|123"),
    ] {
        assert_eq!(err(&[bad]).reason, "search.param.invalid", "{bad:?}");
    }
    for bad in [
        ("status", "final"),
        ("type", "a|b|c"),
        ("type", ""),
        ("_count", "0"),
        ("_count", "x"),
        ("_page", "a b"),
        ("_format", "xml"),
        ("date", "yesterday"),
    ] {
        assert_eq!(
            err(&[("patient.identifier", PAT), bad]).reason,
            "search.param.invalid",
            "{bad:?}"
        );
    }
    let e = err(&[("patient.identifier", PAT), ("foo", "1")]);
    let issue = e.issue();
    assert_eq!(issue.code, IssueType::NotSupported);
    assert!(!issue.diagnostics.unwrap().contains("279035121518989"));
}

#[test]
fn observation_and_audit_queries() {
    let o = parse_observation_query(&q(&[
        ("patient.identifier", PAT),
        ("code", "http://loinc.org|2345-7"),
        ("date", "ge2024"),
    ]))
    .unwrap();
    assert_eq!(o.codes[0].code, "2345-7");
    assert!(
        parse_observation_query(&q(&[("patient.identifier", PAT), ("status", "final")])).is_err()
    );
    let a = parse_audit_query(&q(&[("patient.identifier", PAT), ("_count", "5")])).unwrap();
    assert_eq!(a.paging.count, 5);
    assert_eq!(
        parse_audit_query(&q(&[("type", "x")])).unwrap_err().reason,
        "search.param.unknown"
    );
}
