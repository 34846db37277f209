//! The CDA body of a document as one type, [`Cda`]: the XML, or the XML packed (compressed
//! bytes with the hash and size of what they inflate to), never both. Its codec lives here
//! and nowhere else: [`PackedCda::pack`] (zstd, level 1, SHA-256, size),
//! [`PackedCda::unpack`] (inflate within a size bound, check the hash; gzip of earlier
//! builds still read), and how a body appears in a document's JSON.
//!
//! Why one type: the body used to be two fields (`cda` XML, `packed` bytes), "`cda` empty
//! while the document travels packed". Both could be set at once, and a quarantined CDA
//! was packed by normalize, inflated by the store to sit as XML inside the quarantine's
//! JSON, then packed again on release. With one type a body is packed once, by normalize,
//! and kept packed to the documents table, quarantine included.
//!
//! The JSON is unchanged (topics, quarantine rows and dead letters of earlier builds read,
//! and earlier builds read ours): an XML body is `"cda": "<xml>"`; a packed one is `"cda":
//! ""` plus `"packed": {"sha256": .., "size": ..}`, its bytes never inside JSON (`wire`
//! carries them after the payload head, the quarantine table in a column of their own).

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;

use flate2::read::GzDecoder;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::{Document, DocumentMeta, Entry};

/// A document's CDA R2 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cda {
    /// The XML (UTF-8): what normalize writes or receives, and the embedded tools read.
    /// Empty in a payload head whose XML follows it (`wire::split`).
    Xml(String),
    /// The XML packed, as normalize packs it once for every later hop and for storage.
    /// `bytes` is empty in a payload head whose bytes follow it (`wire::split`).
    Packed(PackedCda),
}

impl Default for Cda {
    fn default() -> Cda {
        Cda::Xml(String::new())
    }
}

impl From<String> for Cda {
    fn from(xml: String) -> Cda {
        Cda::Xml(xml)
    }
}

impl From<&str> for Cda {
    fn from(xml: &str) -> Cda {
        Cda::Xml(xml.to_owned())
    }
}

impl From<PackedCda> for Cda {
    fn from(p: PackedCda) -> Cda {
        Cda::Packed(p)
    }
}

impl Cda {
    /// Packs an XML body in place; a packed one is left as it is (packing is done once).
    pub fn pack(&mut self) {
        if let Cda::Xml(xml) = self {
            *self = Cda::Packed(PackedCda::pack(xml));
        }
    }

    /// The body packed: an XML body is packed now, a packed one passed on untouched.
    pub fn into_packed(self) -> PackedCda {
        match self {
            Cda::Xml(xml) => PackedCda::pack(&xml),
            Cda::Packed(p) => p,
        }
    }

    /// The XML, when the body is XML.
    pub fn as_xml(&self) -> Option<&str> {
        match self {
            Cda::Xml(xml) => Some(xml),
            Cda::Packed(_) => None,
        }
    }

    /// The packed body, when it is packed.
    pub fn as_packed(&self) -> Option<&PackedCda> {
        match self {
            Cda::Xml(_) => None,
            Cda::Packed(p) => Some(p),
        }
    }

    /// The XML, whatever the form: borrowed from an XML body, inflated and checked from a
    /// packed one.
    pub fn xml(&self) -> Result<Cow<'_, str>, &'static str> {
        match self {
            Cda::Xml(xml) => Ok(Cow::Borrowed(xml)),
            Cda::Packed(p) => p.unpack().map(Cow::Owned),
        }
    }

    /// The body as XML: an XML body as it is, a packed one inflated and checked.
    pub fn into_xml(self) -> Result<String, &'static str> {
        match self {
            Cda::Xml(xml) => Ok(xml),
            Cda::Packed(p) => p.unpack(),
        }
    }

    /// Size of the XML in bytes, without inflating a packed body.
    pub fn xml_len(&self) -> usize {
        match self {
            Cda::Xml(xml) => xml.len(),
            Cda::Packed(p) => usize::try_from(p.size).unwrap_or(0),
        }
    }
}

/// A CDA as stored: compressed (a zstd frame; gzip in rows and topics written before the
/// switch to zstd), with the hash and size of the XML it inflates to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedCda {
    /// The compressed bytes. Never inside JSON: `wire` carries them after the payload head.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// SHA-256 of the XML, lowercase hex.
    pub sha256: String,
    /// Size of the XML in bytes.
    pub size: i64,
}

/// How packed CDA bytes are compressed. Told by the bytes themselves (a zstd frame and a
/// gzip member both open with a magic number), so rows and topics written with gzip by an
/// earlier build stay readable without a column or a field to say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// What the pipeline writes (`PackedCda::pack`).
    Zstd,
    /// What builds before zstd wrote; read, never written.
    Gzip,
}

impl Packing {
    /// The compression of `bytes`, if they open like a zstd frame or a gzip member.
    pub fn of(bytes: &[u8]) -> Option<Packing> {
        if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Packing::Zstd)
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Some(Packing::Gzip)
        } else {
            None
        }
    }
}

thread_local! {
    // One zstd context per thread, reused: building one per document (allocating and
    // zeroing its tables) cost as much as compressing a lab report.
    static PACKER: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// The largest CDA `unpack` inflates: far above any real document (normalize refuses
/// messages over its own limit long before), low enough that a corrupt or hostile frame
/// cannot exhaust memory.
pub const MAX_UNPACKED_CDA: u64 = 256 << 20;

impl PackedCda {
    /// Compresses (zstd, level 1) and hashes one CDA. Level 1: CDA XML still shrinks ~4.8
    /// times (gzip's fastest level: 3.8) at about twice its speed, and the pipeline
    /// compresses thousands of documents a second (bench/ANALYSIS.md).
    pub fn pack(xml: &str) -> PackedCda {
        let bytes = PACKER.with(|packer| {
            let mut packer = packer.borrow_mut();
            let packer = match &mut *packer {
                Some(p) => p,
                none => none.insert(
                    zstd::bulk::Compressor::new(1).expect("a zstd context needs only memory"),
                ),
            };
            packer
                .compress(xml.as_bytes())
                .expect("zstd compresses any input into a Vec")
        });
        PackedCda {
            bytes,
            sha256: sha256_hex(xml.as_bytes()),
            size: xml.len() as i64,
        }
    }

    /// Inflates the bytes and checks them against the hash: see [`unpack`].
    pub fn unpack(&self) -> Result<String, &'static str> {
        unpack(&self.bytes, &self.sha256)
    }
}

/// [`PackedCda::pack`] as a function (`dmpflow_store::pack_cda` re-exports it).
pub fn pack(xml: &str) -> PackedCda {
    PackedCda::pack(xml)
}

/// Inflates a packed CDA (zstd, or gzip written by earlier builds), at most
/// [`MAX_UNPACKED_CDA`] bytes of UTF-8, and checks it against its hash.
pub fn unpack(packed: &[u8], sha256: &str) -> Result<String, &'static str> {
    let mut xml = String::new();
    let read = match Packing::of(packed) {
        Some(Packing::Zstd) => zstd::stream::read::Decoder::new(packed)
            .map_err(|_| "zstd frame invalid")?
            .take(MAX_UNPACKED_CDA + 1)
            .read_to_string(&mut xml)
            .map_err(|_| "zstd frame or UTF-8 invalid")?,
        Some(Packing::Gzip) => GzDecoder::new(packed)
            .take(MAX_UNPACKED_CDA + 1)
            .read_to_string(&mut xml)
            .map_err(|_| "gzip stream or UTF-8 invalid")?,
        None => return Err("packed CDA is neither zstd nor gzip"),
    };
    if read as u64 > MAX_UNPACKED_CDA {
        return Err("packed CDA inflates beyond the size limit");
    }
    if sha256_hex(xml.as_bytes()) != sha256 {
        return Err("sha256 mismatch");
    }
    Ok(xml)
}

/// SHA-256 of `bytes`, lowercase hex: the form `PackedCda::sha256` holds.
pub fn sha256_hex(bytes: &[u8]) -> String {
    lower_hex(&Sha256::digest(bytes))
}

/// `bytes` as lowercase hex, two digits a byte: the form of every hash dmpflow keeps (a
/// `format!("{b:02x}")` per byte was 32 allocations per hash).
pub fn lower_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0x0f)] as char);
    }
    s
}

/// A document's JSON, borrowed: the fields and their order as `Document` had them when
/// its body was two fields, so every payload and row keeps its bytes.
#[derive(Serialize)]
#[serde(rename = "Document")]
struct DocumentOut<'a> {
    meta: &'a DocumentMeta,
    cda: &'a str,
    entries: &'a [Entry],
    #[serde(skip_serializing_if = "Option::is_none")]
    packed: Option<&'a PackedCda>,
}

/// A document's JSON as read: `cda` required, `packed` optional, as before.
#[derive(Deserialize)]
#[serde(rename = "Document")]
struct DocumentIn {
    meta: DocumentMeta,
    cda: String,
    entries: Vec<Entry>,
    #[serde(default)]
    packed: Option<PackedCda>,
}

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (cda, packed) = match &self.cda {
            Cda::Xml(xml) => (xml.as_str(), None),
            Cda::Packed(p) => ("", Some(p)),
        };
        DocumentOut {
            meta: &self.meta,
            cda,
            entries: &self.entries,
            packed,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Document, D::Error> {
        let d = DocumentIn::deserialize(deserializer)?;
        let cda = match d.packed {
            Some(p) if d.cda.is_empty() => Cda::Packed(p),
            // XML inline beside a packed head: quarantine cases of earlier builds, whose
            // route inflated the CDA into the case and left the head. The XML is the
            // document (`wire::split` refuses this form on the document topics).
            Some(_) | None => Cda::Xml(d.cda),
        };
        Ok(Document {
            meta: d.meta,
            cda,
            entries: d.entries,
        })
    }
}

/// Whether a document's JSON has a `packed` head, whatever its `cda`: what `wire` asks of a
/// plain-JSON payload, where a packed head has no bytes to go with it.
pub(crate) fn json_has_packed_head(json: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        packed: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(json).is_ok_and(|p| p.packed.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cda_round_trip_and_corruption() {
        let cda = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">é</ClinicalDocument>".repeat(50);
        let p = PackedCda::pack(&cda);
        assert_eq!(Packing::of(&p.bytes), Some(Packing::Zstd));
        assert!(p.bytes.len() < cda.len());
        assert_eq!(p.size, cda.len() as i64);
        assert_eq!(p.unpack().unwrap(), cda);
        assert_eq!(unpack(&p.bytes, &"0".repeat(64)), Err("sha256 mismatch"));
        assert!(unpack(&p.bytes[..10], &p.sha256).is_err());
        assert!(unpack(b"<ClinicalDocument/>", &p.sha256).is_err());
        // The context is reused: a second, different document packs just as well.
        let other = cda.replace('é', "è");
        let q = PackedCda::pack(&other);
        assert_eq!(q.unpack().unwrap(), other);
    }

    #[test]
    fn gzip_written_by_earlier_builds_still_unpacks() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let cda = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">ü</ClinicalDocument>".repeat(20);
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(cda.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(Packing::of(&gz), Some(Packing::Gzip));
        let sha = sha256_hex(cda.as_bytes());
        assert_eq!(unpack(&gz, &sha).unwrap(), cda);
        assert_eq!(unpack(&gz, &"0".repeat(64)), Err("sha256 mismatch"));
    }

    #[test]
    fn a_frame_inflating_beyond_the_limit_is_refused() {
        // 300 MB of zeros packs into a few kilobytes: a bomb must not be inflated whole.
        let zeros = vec![0u8; (MAX_UNPACKED_CDA + (44 << 20)) as usize];
        let bomb = zstd::bulk::compress(&zeros, 1).unwrap();
        drop(zeros);
        assert!(bomb.len() < 1 << 20);
        assert_eq!(
            unpack(&bomb, &"0".repeat(64)),
            Err("packed CDA inflates beyond the size limit")
        );
    }

    #[test]
    fn a_body_is_packed_once_and_read_back_in_either_form() {
        let xml = "<ClinicalDocument>résultat</ClinicalDocument>";
        let mut body = Cda::from(xml);
        assert_eq!(body.xml().unwrap(), xml);
        assert_eq!(body.xml_len(), xml.len());
        body.pack();
        let packed = body.as_packed().cloned().expect("packed");
        // Packing again passes the bytes on: no second compression.
        body.pack();
        assert_eq!(body.as_packed(), Some(&packed));
        assert_eq!(body.clone().into_packed(), packed);
        assert_eq!(body.as_xml(), None);
        assert_eq!(body.xml().unwrap(), xml);
        assert_eq!(body.xml_len(), xml.len());
        assert_eq!(body.into_xml().unwrap(), xml);
        assert_eq!(
            Cda::from(xml).into_packed(),
            packed,
            "level 1 is deterministic"
        );
    }

    #[test]
    fn the_json_of_a_body_is_that_of_the_two_fields_it_replaces() {
        let meta: DocumentMeta = serde_json::from_value(serde_json::json!({
            "unique_id": "1.2.3", "set_id": "1.2.3.s", "version": 1, "lifecycle": "initial",
            "target_unique_id": null, "type_code": "11502-2", "class_code": "10",
            "format_code": "f", "title": "t", "patient": {
                "ins": "1", "ins_oid": "o", "ipp": null, "ipp_authority": null,
                "birth_name": "N", "first_names": [], "birth_date": "2000-01-01", "sex": "F",
                "birth_place": null, "identity_status": []},
            "author": {"person_id": null, "organisation_id": null},
            "creation_time": "2024", "service_start": null, "service_stop": null,
            "confidentiality": "N", "visibility": [], "origin": "generated",
            "source": {"feed": null, "sender": "", "control_id": "", "position": 0,
                "topic": null, "partition": null, "offset": null}
        }))
        .unwrap();
        let meta_json = serde_json::to_string(&meta).unwrap();
        let xml = Document {
            meta: meta.clone(),
            cda: Cda::from("<x/>"),
            entries: Vec::new(),
        };
        let json = serde_json::to_string(&xml).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"meta":{meta_json},"cda":"<x/>","entries":[]}}"#)
        );
        assert_eq!(serde_json::from_str::<Document>(&json).unwrap(), xml);
        let mut packed = xml.clone();
        packed.cda.pack();
        let json = serde_json::to_string(&packed).unwrap();
        let p = packed.cda.as_packed().unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"meta":{meta_json},"cda":"","entries":[],"packed":{{"sha256":"{}","size":4}}}}"#,
                p.sha256
            )
        );
        let back: Document = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.cda,
            Cda::Packed(PackedCda {
                bytes: Vec::new(),
                ..p.clone()
            }),
            "the bytes never travel inside JSON"
        );
        assert!(json_has_packed_head(json.as_bytes()));
        // Both fields set (quarantine cases of earlier builds): the XML is the body.
        let both = json.replace(r#""cda":"""#, r#""cda":"<x/>""#);
        assert_eq!(serde_json::from_str::<Document>(&both).unwrap(), xml);
        assert!(json_has_packed_head(both.as_bytes()));
        assert!(!json_has_packed_head(
            serde_json::to_string(&xml).unwrap().as_bytes()
        ));
    }
}
