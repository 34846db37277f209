//! The `searchset` Bundle of an ITI-67 (or Observation / AuditEvent) search: `total`, the
//! self/next/previous links, and one `match` entry per resource.
//!
//! Paging is by `_count` and an opaque `_page` token the server mints (e.g. an encoded
//! keyset position): the links repeat the query's own parameters, so a client follows
//! them without rebuilding the query, and the token stays meaningless to it.

use serde_json::{Value, json};

/// Where the links of one page point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// The server's FHIR base, e.g. `https://dmp.example/fhir` (no trailing slash).
    pub base: String,
    /// `DocumentReference`, `Observation` ...
    pub resource_type: String,
    /// The search parameters other than `_count` and `_page`, in the order received.
    pub params: Vec<(String, String)>,
    pub count: u32,
    /// Token of this page (`None`: the first page).
    pub page: Option<String>,
    pub next: Option<String>,
    pub previous: Option<String>,
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Paging {
    /// The URL of the page whose token is `page`.
    pub fn url(&self, page: Option<&str>) -> String {
        let mut q: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect();
        q.push(format!("_count={}", self.count));
        if let Some(p) = page {
            q.push(format!("_page={}", encode_component(p)));
        }
        format!("{}/{}?{}", self.base, self.resource_type, q.join("&"))
    }
}

/// Builds the searchset. `resources` are full resources with `resourceType` and `id`;
/// each entry's `fullUrl` is `{base}/{type}/{id}`.
pub fn searchset(total: u64, paging: &Paging, resources: Vec<Value>) -> Value {
    let mut links = vec![json!({ "relation": "self", "url": paging.url(paging.page.as_deref()) })];
    if let Some(n) = &paging.next {
        links.push(json!({ "relation": "next", "url": paging.url(Some(n)) }));
    }
    if let Some(p) = &paging.previous {
        // An empty token means "the first page", which has none.
        let token = (!p.is_empty()).then_some(p.as_str());
        links.push(json!({ "relation": "previous", "url": paging.url(token) }));
    }
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let full_url = format!(
                "{}/{}/{}",
                paging.base,
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            );
            json!({ "fullUrl": full_url, "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    });
    if !entries.is_empty() {
        b["entry"] = json!(entries);
    }
    b
}

#[cfg(test)]
pub(crate) fn example_paging() -> Paging {
    Paging {
        base: "https://dmp.example/fhir".into(),
        resource_type: "DocumentReference".into(),
        params: vec![
            (
                "patient.identifier".into(),
                "urn:oid:1.2.250.1.213.1.4.10|279035121518989".into(),
            ),
            ("status".into(), "current".into()),
        ],
        count: 20,
        page: Some("b2Zmc2V0OjIw".into()),
        next: Some("b2Zmc2V0OjQw".into()),
        previous: Some(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_repeat_the_query_and_carry_the_token() {
        let b = searchset(
            45,
            &example_paging(),
            vec![json!({"resourceType": "DocumentReference", "id": "1.2.3"})],
        );
        assert_eq!(b["total"], 45);
        assert_eq!(
            b["link"][0]["url"],
            "https://dmp.example/fhir/DocumentReference?patient.identifier=urn%3Aoid%3A1.2.250.1.213.1.4.10%7C279035121518989&status=current&_count=20&_page=b2Zmc2V0OjIw"
        );
        assert_eq!(b["link"][1]["relation"], "next");
        assert!(
            b["link"][1]["url"]
                .as_str()
                .unwrap()
                .ends_with("_page=b2Zmc2V0OjQw")
        );
        assert!(b["link"][2]["url"].as_str().unwrap().ends_with("_count=20"));
        assert_eq!(
            b["entry"][0]["fullUrl"],
            "https://dmp.example/fhir/DocumentReference/1.2.3"
        );
        assert_eq!(b["entry"][0]["search"]["mode"], "match");
    }

    #[test]
    fn empty_result_has_no_entry() {
        let mut p = example_paging();
        p.next = None;
        p.previous = None;
        let b = searchset(0, &p, vec![]);
        assert!(b.get("entry").is_none());
        assert_eq!(b["link"].as_array().unwrap().len(), 1);
    }
}
