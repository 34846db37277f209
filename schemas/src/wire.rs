//! The byte layout of the `dmp.documents` and `dmp.routed` payloads.
//!
//! A document travels as its JSON head (`Normalized` with an empty `cda`), one `\n`, then
//! its CDA: the compressed bytes when the body is `Cda::Packed` and the head has `packed`
//! (what the stages write: normalize compresses each CDA once with zstd, the store keeps
//! those very bytes; gzip written by earlier builds is still read, see `Packing`), else the
//! XML as raw UTF-8 (what a producer outside the pipeline may write):
//!
//! ```text
//! {"type":"document","meta":{...},"cda":"","entries":[...],"packed":{"sha256":"..","size":31245}}\n<zstd frame>
//! {"type":"document","meta":{...},"cda":"","entries":[...]}\n<?xml version="1.0" ...
//! ```
//!
//! Why not plain JSON: the CDA is 15-60 KB of XML full of `"` and newlines, and carried as
//! a JSON string it was escaped by normalize, unescaped and re-escaped by route and
//! unescaped by store (an eighth of the pipeline's CPU, bench/ANALYSIS.md), then compressed
//! by the store. Split this way, route reads only the small head and passes the CDA bytes
//! through untouched, and every hop carries a payload about five times smaller. Why `\n`:
//! serde_json never writes a raw newline (one inside a string is written `\n`), so the
//! first newline always ends the head.
//!
//! Patient updates, and anything written before this layout, are one plain JSON value
//! without a newline; `decode` reads every form, so topics written by an older build, dead
//! letters and replays keep working.

use crate::cda_body;
use crate::{Cda, Document, DocumentMeta, Entry, Normalized, PackedCda, Packing, Quarantined};

/// A payload that is not a `Normalized` item in any layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

/// Reads a JSON value from bytes: checked as UTF-8 once (std's check, vectorised), then read
/// as a `&str`. serde_json's `from_slice` validates the UTF-8 of every string itself, byte by
/// byte as it reads: the same lab head (5 KB, 16 results) read 1.4-1.7x faster this way
/// (criterion, both readers in one run, twice: bench/ANALYSIS.md "Session 12"). Bytes that are not
/// UTF-8 are no JSON text either (RFC 8259 §8.1), so nothing that was read before is refused.
fn from_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Where a payload's head ends: its first `\n`, if any (serde_json never writes one, so it
/// is the separator). `memchr` scans a word or a vector register at a time; a byte-by-byte
/// `position` over a lab report's 5 KB head was 3% of the store's CPU in `perf`
/// (bench/ANALYSIS.md "Session 23").
fn head_end(payload: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', payload)
}

/// The payload of `item`: a packed document with its compressed bytes after the head, an
/// unpacked one with its XML.
pub fn encode(item: &Normalized) -> Vec<u8> {
    match item {
        Normalized::Document(d) => match &d.cda {
            Cda::Packed(p) => write_document(d, &p.bytes),
            Cda::Xml(xml) => write_document(d, xml.as_bytes()),
        },
        Normalized::Patient(_) => serde_json::to_vec(item).expect("Normalized serialises"),
    }
}

/// The payload of a `head` read by `split`, with the CDA bytes `split` returned: how route
/// forwards a document without reading its CDA. A head that still holds its XML inline (a
/// plain-JSON payload) is encoded whole.
pub fn join(head: &Normalized, cda: &[u8]) -> Vec<u8> {
    match head {
        Normalized::Document(d) if is_head(&d.cda) => write_document(d, cda),
        _ => encode(head),
    }
}

/// Whether a document body is only a head's (its CDA kept apart, after the head): a packed
/// body (`split` leaves its bytes out) or an empty XML one.
fn is_head(cda: &Cda) -> bool {
    match cda {
        Cda::Xml(xml) => xml.is_empty(),
        Cda::Packed(_) => true,
    }
}

/// The head as `Normalized::Document` serialises it, with `cda` empty, borrowed rather than
/// cloned (a test checks both read back the same).
#[derive(serde::Serialize)]
struct DocumentHead<'a> {
    r#type: &'static str,
    meta: &'a DocumentMeta,
    cda: &'static str,
    entries: &'a [Entry],
    #[serde(skip_serializing_if = "Option::is_none")]
    packed: Option<&'a PackedCda>,
}

fn write_document(d: &Document, cda: &[u8]) -> Vec<u8> {
    let head = DocumentHead {
        r#type: "document",
        meta: &d.meta,
        cda: "",
        entries: &d.entries,
        packed: d.cda.as_packed(),
    };
    head_then_bytes(&head, cda)
}

/// The split layout: `head` as JSON, one `\n`, then `tail` as it is.
fn head_then_bytes(head: &impl serde::Serialize, tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tail.len() + 2048);
    serde_json::to_writer(&mut out, head).expect("a payload head serialises");
    out.push(b'\n');
    out.extend_from_slice(tail);
    out
}

/// Reads a payload into the item and, for a document in the split layout, the CDA bytes
/// kept apart: compressed when the head has `packed` (the body is then `Cda::Packed` with
/// its `bytes` left empty), else XML (the body is then an empty `Cda::Xml`). A plain-JSON
/// payload returns its item whole and an empty slice.
pub fn split(payload: &[u8]) -> Result<(Normalized, &[u8]), WireError> {
    let Some(nl) = head_end(payload) else {
        let item: Normalized = from_json(payload)
            .map_err(|e| WireError(format!("payload is not a dmpflow item: {e}")))?;
        // A `packed` head promises bytes after it; plain JSON has none, and its inline
        // `cda` (if any) would be ignored in favour of the empty bytes: the CDA would be
        // lost on the next `join` (found by fuzz/ wire_decoder). Inline XML beside a
        // packed head reads as XML (quarantine cases of earlier builds, `cda_body`), so the
        // JSON itself is asked whether it had the head.
        if let Normalized::Document(d) = &item
            && match &d.cda {
                Cda::Packed(_) => true,
                Cda::Xml(xml) => !xml.is_empty() && cda_body::json_has_packed_head(payload),
            }
        {
            return Err(WireError(
                "payload is a packed document head without its CDA bytes".into(),
            ));
        }
        return Ok((item, &[]));
    };
    let item: Normalized = from_json(&payload[..nl])
        .map_err(|e| WireError(format!("payload head is not a dmpflow item: {e}")))?;
    let cda = &payload[nl + 1..];
    match &item {
        Normalized::Document(d) if !is_head(&d.cda) => Err(WireError(
            "payload has both an inline CDA and CDA bytes after its head".into(),
        )),
        Normalized::Document(d) if matches!(d.cda, Cda::Packed(_)) => {
            if Packing::of(cda).is_none() {
                return Err(WireError("payload CDA is neither zstd nor gzip".into()));
            }
            Ok((item, cda))
        }
        Normalized::Document(_) => {
            std::str::from_utf8(cda)
                .map_err(|e| WireError(format!("payload CDA is not UTF-8: {e}")))?;
            Ok((item, cda))
        }
        Normalized::Patient(_) => Err(WireError(
            "payload is a patient update followed by other bytes".into(),
        )),
    }
}

/// The metadata of a document payload in the split layout, read without its entries, when
/// the rest of its head and its CDA bytes pass every check of [`split`]; `None` for
/// anything else (a patient update, plain JSON, a payload `split` refuses), which the
/// caller then reads with [`split`] to get the item or the error.
///
/// Route's fast path: a document routed to the INS it already names leaves route exactly
/// as it came, so route reads only what it decides on and forwards the payload's own bytes
/// (no entries read, no head written again). The entries are still checked to be JSON;
/// whether they are entries is checked by the store, which reads them, and refuses the
/// payload (`payload.invalid`) as route would have.
pub fn peek_meta(payload: &[u8]) -> Option<DocumentMeta> {
    // The fields of a document head, as `Document` reads them, entries skipped.
    #[derive(serde::Deserialize)]
    struct Head {
        r#type: String,
        meta: DocumentMeta,
        cda: String,
        #[allow(dead_code)] // read to check it is JSON, never used
        entries: serde::de::IgnoredAny,
        #[serde(default)]
        packed: Option<PackedCda>,
    }
    let nl = head_end(payload)?;
    let head: Head = from_json(&payload[..nl]).ok()?;
    let tail = &payload[nl + 1..];
    // As `split`: a document (not a patient update) whose body is only a head (no inline
    // XML), followed by zstd/gzip bytes when packed, by UTF-8 XML otherwise.
    let checked = head.r#type == "document"
        && head.cda.is_empty()
        && match head.packed {
            Some(_) => Packing::of(tail).is_some(),
            None => std::str::from_utf8(tail).is_ok(),
        };
    checked.then_some(head.meta)
}

/// Reads a payload in any layout into the whole item: a packed document with its compressed
/// bytes (`Cda::Packed`), any other document with its XML (`Cda::Xml`).
pub fn decode(payload: &[u8]) -> Result<Normalized, WireError> {
    let (mut item, cda) = split(payload)?;
    if let Normalized::Document(d) = &mut item
        && !cda.is_empty()
    {
        match &mut d.cda {
            Cda::Packed(p) => p.bytes = cda.to_vec(),
            // `split` checked it is UTF-8.
            Cda::Xml(xml) => *xml = String::from_utf8(cda.to_vec()).expect("checked by split"),
        }
    }
    Ok(item)
}

/// The payload of a quarantine case on `dmp.quarantine`. A packed document keeps its
/// compressed bytes after the JSON head, as on the other topics (`cda` is the tail `split`
/// returned; when empty, the body's own bytes): route never inflates a CDA just to
/// quarantine it, and a flood of quarantines (an identity feed running late) weighs on
/// Kafka and memory no more than the documents themselves. Anything else is one plain
/// JSON value, as before.
pub fn encode_quarantined(case: &Quarantined, cda: &[u8]) -> Vec<u8> {
    let packed = match &case.item {
        Normalized::Document(d) => d.cda.as_packed(),
        Normalized::Patient(_) => None,
    };
    match packed {
        Some(p) => head_then_bytes(case, if cda.is_empty() { &p.bytes } else { cda }),
        None => serde_json::to_vec(case).expect("a quarantine case serialises"),
    }
}

/// Reads a `dmp.quarantine` payload in either layout; a packed document gets its bytes
/// (`Cda::Packed`).
pub fn decode_quarantined(payload: &[u8]) -> Result<Quarantined, WireError> {
    let Some(nl) = head_end(payload) else {
        let case: Quarantined = from_json(payload)
            .map_err(|e| WireError(format!("payload is not a quarantine case: {e}")))?;
        // A packed head without bytes: the CDA is missing. (With the XML inline beside the
        // head, cases of earlier builds, the body reads as that XML: see `cda_body`.)
        if let Normalized::Document(d) = &case.item
            && matches!(d.cda, Cda::Packed(_))
        {
            return Err(WireError(
                "quarantine case is a packed document head without its CDA bytes".into(),
            ));
        }
        return Ok(case);
    };
    let mut case: Quarantined = from_json(&payload[..nl])
        .map_err(|e| WireError(format!("payload head is not a quarantine case: {e}")))?;
    let tail = &payload[nl + 1..];
    match &mut case.item {
        Normalized::Document(d) if is_head(&d.cda) => match &mut d.cda {
            Cda::Packed(p) if Packing::of(tail).is_some() => {
                p.bytes = tail.to_vec();
                Ok(case)
            }
            Cda::Packed(_) => Err(WireError("quarantined CDA is neither zstd nor gzip".into())),
            Cda::Xml(_) => Err(WireError(
                "quarantine case has CDA bytes but no packed head".into(),
            )),
        },
        _ => Err(WireError(
            "quarantine case followed by bytes it has no room for".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        CdaOrigin, DocumentMeta, Lifecycle, PartyRef, PatientChange, PatientIdentity,
        PatientUpdate, SourceRef,
    };

    fn document(cda: &str) -> Normalized {
        Normalized::Document(Box::new(Document {
            meta: DocumentMeta {
                unique_id: "1.2.250.1.999.1".into(),
                set_id: "1.2.250.1.999.2".into(),
                version: 1,
                lifecycle: Lifecycle::Initial,
                target_unique_id: None,
                type_code: "11502-2".into(),
                class_code: "10".into(),
                format_code: "urn:asip:ci-sis:cr-bio:2024".into(),
                title: "CR d'examens biologiques".into(),
                patient: patient(),
                author: PartyRef::default(),
                creation_time: "20240101120000+0100".into(),
                service_start: None,
                service_stop: None,
                confidentiality: "N".into(),
                visibility: vec![],
                practice_setting: None,
                ignored_attachments: 0,
                origin: CdaOrigin::Generated,
                source: SourceRef::default(),
            },
            cda: cda.into(),
            entries: vec![],
        }))
    }

    fn upsert() -> Normalized {
        Normalized::Patient(Box::new(PatientUpdate {
            change: PatientChange::Upsert,
            patient: patient(),
            feeding_opposed: None,
            dmp_status: None,
            consultation_consent: None,
            times: Default::default(),
            event: String::new(),
            source: SourceRef::default(),
        }))
    }

    fn patient() -> PatientIdentity {
        PatientIdentity {
            ins: "1".into(),
            birth_date: "2000-01-01".into(),
            ..PatientIdentity::default()
        }
    }

    const CDA: &str = "<?xml version=\"1.0\"?>\n<ClinicalDocument>\n  <title>Résultat \"d'examen\" &amp; {}\\n</title>\n</ClinicalDocument>";

    #[test]
    fn a_document_round_trips_with_its_cda_raw_after_the_head() {
        let doc = document(CDA);
        let bytes = encode(&doc);
        let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(&bytes[nl + 1..], CDA.as_bytes(), "CDA carried unescaped");
        assert_eq!(decode(&bytes).unwrap(), doc);
        let (head, cda) = split(&bytes).unwrap();
        assert_eq!(cda, CDA.as_bytes());
        let Normalized::Document(h) = &head else {
            panic!("head is a document")
        };
        assert_eq!(h.cda, Cda::Xml(String::new()));
        assert_eq!(
            join(&head, cda),
            bytes,
            "route's pass-through is the same payload"
        );
        let mut head_json = serde_json::to_vec(&head).unwrap();
        head_json.push(b'\n');
        assert_eq!(
            &bytes[..=nl],
            head_json,
            "borrowed head = Normalized with empty cda"
        );
    }

    #[test]
    fn a_packed_document_carries_its_compressed_bytes_after_the_head() {
        // A zstd frame (what the stages write) and a gzip member (what earlier builds wrote);
        // both may hold a newline byte, which must not end anything.
        for packed in [
            vec![0x28, 0xb5, 0x2f, 0xfd, 0, 1, b'\n', 0xff],
            vec![0x1f, 0x8b, 8, 0, 1, 2, 3, b'\n', 0xff],
        ] {
            let Normalized::Document(mut d) = document("") else {
                unreachable!()
            };
            d.cda = Cda::Packed(PackedCda {
                bytes: packed.clone(),
                sha256: "ab".repeat(32),
                size: 31245,
            });
            let doc = Normalized::Document(d);
            let bytes = encode(&doc);
            assert!(bytes.ends_with(&packed), "packed bytes raw after the head");
            assert_eq!(decode(&bytes).unwrap(), doc);
            let (head, tail) = split(&bytes).unwrap();
            assert_eq!(tail, packed);
            let Normalized::Document(h) = &head else {
                panic!("head is a document")
            };
            assert!(
                h.cda
                    .as_packed()
                    .is_some_and(|p| p.bytes.is_empty() && p.size == 31245)
            );
            assert_eq!(join(&head, tail), bytes);
            // A packed head followed by something that is neither zstd nor gzip is refused.
            let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
            let mut bad = bytes[..=nl].to_vec();
            bad.extend_from_slice(b"<ClinicalDocument/>");
            assert!(decode(&bad).is_err());
        }
    }

    #[test]
    fn peek_meta_reads_what_split_accepts_and_nothing_else() {
        let meta = |n: &Normalized| match n {
            Normalized::Document(d) => d.meta.clone(),
            Normalized::Patient(_) => unreachable!(),
        };
        // A packed document and an XML one: the same metadata as `split`.
        let xml = document("<ClinicalDocument/>");
        let Normalized::Document(mut d) = document("") else {
            unreachable!()
        };
        d.cda = Cda::Packed(PackedCda::pack("<ClinicalDocument/>"));
        let packed = Normalized::Document(d);
        for item in [&xml, &packed] {
            let bytes = encode(item);
            assert_eq!(peek_meta(&bytes), Some(meta(item)));
            assert_eq!(meta(&split(&bytes).unwrap().0), meta(item));
            // What `split` refuses, peek does not read: a packed head before XML, an XML
            // head before bytes that are not UTF-8, an inline CDA beside bytes.
            let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
            let mut bad = bytes[..=nl].to_vec();
            bad.extend_from_slice(if item == &packed {
                b"<ClinicalDocument/>".as_slice()
            } else {
                b"\xff\xfe".as_slice()
            });
            assert!(split(&bad).is_err());
            assert_eq!(peek_meta(&bad), None);
        }
        let inline = String::from_utf8(serde_json::to_vec(&xml).unwrap()).unwrap() + "\n<x/>";
        assert!(split(inline.as_bytes()).is_err());
        assert_eq!(peek_meta(inline.as_bytes()), None);
        // Not a document in the split layout: plain JSON, a patient update, garbage.
        assert_eq!(peek_meta(&serde_json::to_vec(&xml).unwrap()), None);
        let update = upsert();
        let mut upd = encode(&update);
        upd.extend_from_slice(b"\n<x/>");
        assert_eq!(peek_meta(&upd), None);
        assert_eq!(peek_meta(b"{\"type\":\"document\"\n"), None);
        assert_eq!(peek_meta(b"\n"), None);
        // Entries that are JSON but not entries: peek reads the head (route forwards it),
        // `split` and the store's `decode` refuse it.
        let bytes = encode(&packed);
        let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
        let head = std::str::from_utf8(&bytes[..nl]).unwrap();
        assert!(head.contains("\"entries\":[]"));
        let odd = [
            head.replace("\"entries\":[]", "\"entries\":[{\"kind\":1}]")
                .as_bytes(),
            &bytes[nl..],
        ]
        .concat();
        assert_eq!(peek_meta(&odd), Some(meta(&packed)));
        assert!(split(&odd).is_err());
        assert!(decode(&odd).is_err());
    }

    #[test]
    fn a_packed_head_without_its_bytes_is_refused_not_emptied() {
        // fuzz/regressions/wire_decoder/plain-json-document-with-packed-head
        let mut d = document("");
        let Normalized::Document(inner) = &mut d else {
            unreachable!()
        };
        inner.cda = Cda::Packed(PackedCda {
            bytes: Vec::new(),
            sha256: "00".into(),
            size: 4,
        });
        let head_only = serde_json::to_vec(&d).unwrap();
        // Both the XML inline and a packed head: what earlier builds could write, no longer
        // something a `Document` can hold, so written as they wrote it.
        let both = String::from_utf8(head_only.clone())
            .unwrap()
            .replace(r#""cda":"""#, r#""cda":"<x/>""#)
            .into_bytes();
        for plain in [&head_only, &both] {
            assert!(split(plain).is_err());
            assert!(decode(plain).is_err());
        }
        let case = |item: &[u8]| {
            format!(
                r#"{{"reason":"ins.unknown","detail":"","item":{}}}"#,
                std::str::from_utf8(item).unwrap()
            )
            .into_bytes()
        };
        // Inline XML next to a packed head (earlier builds): the XML is kept, unpacked.
        let back = decode_quarantined(&case(&both)).unwrap();
        let Normalized::Document(b) = back.item else {
            unreachable!()
        };
        assert_eq!(b.cda, Cda::Xml("<x/>".into()));
        // Neither XML nor bytes: refused.
        assert!(decode_quarantined(&case(&head_only)).is_err());
    }

    #[test]
    fn a_quarantined_packed_document_keeps_its_bytes_apart() {
        let Normalized::Document(mut d) = document("") else {
            unreachable!()
        };
        let zst = vec![0x28, 0xb5, 0x2f, 0xfd, 7, b'\n', 9];
        d.cda = Cda::Packed(PackedCda {
            bytes: Vec::new(),
            sha256: "cd".repeat(32),
            size: 77,
        });
        let case = Quarantined {
            reason: "ins.unknown".into(),
            detail: "no such patient".into(),
            item: Normalized::Document(d),
        };
        let bytes = encode_quarantined(&case, &zst);
        assert!(bytes.ends_with(&zst));
        let back = decode_quarantined(&bytes).unwrap();
        let Normalized::Document(b) = &back.item else {
            panic!("document expected")
        };
        assert_eq!(b.cda.as_packed().unwrap().bytes, zst);
        assert_eq!(back.reason, "ins.unknown");
        // A case whose body holds its bytes is laid out the same.
        assert_eq!(encode_quarantined(&back, &[]), bytes);
        // A head followed by bytes that are not a packed CDA is refused, not half-read.
        let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
        let mut bad = bytes[..=nl].to_vec();
        bad.extend_from_slice(b"<ClinicalDocument/>");
        assert!(decode_quarantined(&bad).is_err());
        // Cases without packed bytes (an inline CDA, a patient update) stay one JSON value,
        // and what earlier builds wrote still reads.
        let inline = Quarantined {
            reason: "ins.unknown".into(),
            detail: String::new(),
            item: document(CDA),
        };
        let plain = encode_quarantined(&inline, &[]);
        assert!(!plain.contains(&b'\n'));
        assert_eq!(decode_quarantined(&plain).unwrap(), inline);
        assert_eq!(
            decode_quarantined(&serde_json::to_vec(&inline).unwrap()).unwrap(),
            inline
        );
    }

    #[test]
    fn plain_json_of_an_older_build_still_decodes() {
        let doc = document(CDA);
        let legacy = serde_json::to_vec(&doc).unwrap();
        assert!(!legacy.contains(&b'\n'));
        assert_eq!(decode(&legacy).unwrap(), doc);
        let (head, cda) = split(&legacy).unwrap();
        assert!(cda.is_empty());
        assert_eq!(
            decode(&join(&head, cda)).unwrap(),
            doc,
            "forwarded in the new layout"
        );
    }

    #[test]
    fn patient_updates_are_plain_json() {
        let p = upsert();
        let bytes = encode(&p);
        assert!(!bytes.contains(&b'\n'));
        assert_eq!(decode(&bytes).unwrap(), p);
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"\nxx");
        assert!(decode(&trailing).is_err());
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        let doc = encode(&document(CDA));
        let nl = doc.iter().position(|&b| b == b'\n').unwrap();
        let mut bad_utf8 = doc.clone();
        bad_utf8.extend_from_slice(&[0xff, 0xfe]);
        let mut both = serde_json::to_vec(&document(CDA)).unwrap();
        both.extend_from_slice(b"\n<x/>");
        for bad in [
            b"".as_slice(),
            b"not json",
            b"{\"type\":\"document\"}\n<x/>",
            &doc[..nl - 3],
            &bad_utf8,
            &both,
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_head_that_is_not_utf8_is_refused_by_every_reader() {
        // The head is read as text after one UTF-8 check (`from_json`): a byte that is not
        // UTF-8 inside a string of the head must still be refused, as serde_json's own
        // per-string check refused it, by split, peek and the quarantine reader alike.
        let doc = encode(&document(CDA));
        let at = doc
            .windows(7)
            .position(|w| w == b"\"title\"")
            .expect("the head has a title")
            + 9;
        let mut bad = doc.clone();
        bad[at] = 0xff;
        let err = split(&bad).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        assert!(peek_meta(&bad).is_none());
        assert!(decode_quarantined(&bad).is_err());
        // The same payload with that byte back reads as before.
        assert!(split(&doc).is_ok() && peek_meta(&doc).is_some());
    }
}
