//! The FHIR server end to end: a real SQLite store with the demo patient registry and
//! hand-made documents, the server on 127.0.0.1:0 in this process, dev tokens for each
//! role, requests over plain HTTP/1.1. Checks the access rules as a client sees them and
//! that every answered access left exactly one trace row.

use std::path::PathBuf;
use std::time::Duration;

use dmpflow_consult::auth::{RoleMapping, Verifier, generate_dev_keypair, mint_dev_token};
use dmpflow_consult::authz::Principal;
use dmpflow_consult::server::{AppState, serve};
use dmpflow_schemas::{
    CdaOrigin, Document, DocumentMeta, Entry, Feed, Lifecycle, PartyRef, PatientIdentity, SourceRef,
};
use dmpflow_store::{Store, StoreItem};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OID: &str = "1.2.250.1.213.1.4.10";
/// Two patients of demo/patients.csv.
const INS_1: &str = "138127505614358";
const INS_2: &str = "104026912303122";
const AUTHOR: &str = "810000000001";
const OTHER_PRO: &str = "810000000099";
const ISS: &str = "https://dev.dmpflow.test";
const AUD: &str = "dmpflow-consult";

fn cda(uid: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\">\
         <id root=\"{uid}\"/><title>Compte rendu — résultats</title></ClinicalDocument>\n"
    )
}

fn document(uid: &str, ins: &str, created: &str, visibility: &[&str], n: u32) -> Document {
    Document {
        meta: DocumentMeta {
            unique_id: uid.into(),
            set_id: format!("{uid}.s"),
            version: 1,
            lifecycle: Lifecycle::Initial,
            target_unique_id: None,
            type_code: "11502-2".into(),
            class_code: "10".into(),
            format_code: "urn:ihe:lab:xd-lab:2008".into(),
            title: "CR de biologie".into(),
            patient: PatientIdentity {
                ins: ins.into(),
                ins_oid: OID.into(),
                ipp: None,
                ipp_authority: None,
                birth_name: "X".into(),
                first_names: vec!["Y".into()],
                birth_date: "1938-12-09".into(),
                sex: "M".into(),
                birth_place: None,
                identity_status: vec!["QUAL".into()],
                other_ins: Vec::new(),
            },
            author: PartyRef {
                person_id: Some(AUTHOR.into()),
                organisation_id: Some("1123456789".into()),
            },
            creation_time: created.into(),
            service_start: Some(created.into()),
            service_stop: None,
            confidentiality: "N".into(),
            visibility: visibility.iter().map(|s| (*s).to_owned()).collect(),
            practice_setting: Some("ETABLISSEMENT".into()),
            ignored_attachments: 0,
            origin: CdaOrigin::Generated,
            source: SourceRef {
                feed: Some(Feed::Lab),
                sender: "LABO^FINESS".into(),
                control_id: format!("M{n}"),
                position: 0,
                topic: None,
                partition: None,
                offset: None,
                content_hash: String::new(),
            },
        },
        cda: dmpflow_schemas::Cda::Xml(cda(uid)),
        entries: vec![Entry::LabObservation {
            loinc: "2345-7".into(),
            label: "Glucose".into(),
            value: "5.1".into(),
            value_type: "NM".into(),
            unit: Some("mmol/L".into()),
            interpretation: Some("N".into()),
            reference_low: Some("3.9".into()),
            reference_high: Some("5.5".into()),
            reference_text: None,
            status: "F".into(),
            time: Some(created.into()),
        }],
    }
}

struct Fixture {
    addr: std::net::SocketAddr,
    store: Store,
    key: String,
    mapping: RoleMapping,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Fixture {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let csv = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/patients.csv")).unwrap();
    store.import_patients_csv(&csv[..]).await.unwrap();
    let docs = [
        document("1.2.250.1.9.1", INS_1, "20260301101500+0100", &[], 1),
        document(
            "1.2.250.1.9.2",
            INS_1,
            "20260302101500+0100",
            &["MASQUE_PS"],
            2,
        ),
        document("1.2.250.1.9.3", INS_1, "20260303101500+0100", &[], 3),
        document("1.2.250.1.9.4", INS_2, "20260304101500+0100", &[], 4),
    ];
    for d in docs {
        store
            .write_batch(&[StoreItem::Document(d)], &[])
            .await
            .unwrap();
    }
    let pair = generate_dev_keypair().unwrap();
    let mapping = RoleMapping::default();
    let verifier = Verifier::dev(&pair.public_pem, ISS, AUD, Duration::from_secs(30)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(
        store.clone(),
        verifier,
        mapping.clone(),
        &format!("http://{addr}/fhir"),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async {
        let _ = rx.await;
    }));
    Fixture {
        addr,
        store,
        key: pair.private_pem,
        mapping,
        _stop: tx,
    }
}

struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

impl Fixture {
    fn token(&self, p: &Principal) -> String {
        mint_dev_token(
            &self.key,
            p,
            &self.mapping,
            ISS,
            AUD,
            Duration::from_secs(300),
        )
        .unwrap()
    }

    async fn get(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Answer {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let mut body = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = unchunk(&body);
        }
        Answer {
            status,
            headers: head,
            body,
        }
    }
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn patient(ins: &str) -> Principal {
    Principal::Patient { ins: ins.into() }
}

fn professional(id: &str) -> Principal {
    Principal::Professional {
        id: id.into(),
        profession: "10".into(),
        organisation: Some("1123456789".into()),
    }
}

fn docs_query(ins: &str) -> String {
    format!("/fhir/DocumentReference?patient.identifier=urn%3Aoid%3A{OID}%7C{ins}")
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| x["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn consultation_end_to_end() {
    let f = start().await;
    let mut traces = 0;
    let mut keep: Vec<(&str, Value)> = Vec::new();

    // No token, a bad token: 401, OperationOutcome, no trace (no one to attribute it to).
    let a = f.get(&docs_query(INS_1), None, &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["resourceType"], "OperationOutcome");
    assert_eq!(
        f.get(&docs_query(INS_1), Some("x.y.z"), &[]).await.status,
        401
    );
    assert_eq!(f.store.trace_count().await.unwrap(), traces);

    // The patient sees all their documents, newest first (the masked one included).
    let tp = f.token(&patient(INS_1));
    let a = f.get(&docs_query(INS_1), Some(&tp), &[]).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let b = a.json();
    assert_eq!(b["total"], 3);
    assert_eq!(ids(&b), ["1.2.250.1.9.3", "1.2.250.1.9.2", "1.2.250.1.9.1"]);
    traces += 1;
    keep.push(("patient-search", b));

    // Another patient: 403, traced as a denial.
    let a = f
        .get(&docs_query(INS_1), Some(&f.token(&patient(INS_2))), &[])
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.json()["issue"][0]["details"]["coding"][0]["code"],
        "consult.not_own_record"
    );
    traces += 1;
    keep.push(("forbidden", a.json()));

    // A professional who is not the author: the masked document is absent and not counted.
    let other = f.token(&professional(OTHER_PRO));
    let a = f.get(&docs_query(INS_1), Some(&other), &[]).await;
    assert_eq!(a.status, 200);
    let b = a.json();
    assert_eq!(b["total"], 2);
    assert_eq!(ids(&b), ["1.2.250.1.9.3", "1.2.250.1.9.1"]);
    traces += 1;
    // ... and reading it by id answers exactly like a missing document.
    let hidden = f
        .get("/fhir/DocumentReference/1.2.250.1.9.2", Some(&other), &[])
        .await;
    let missing = f
        .get("/fhir/DocumentReference/1.2.250.1.9.404", Some(&other), &[])
        .await;
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.body, missing.body);
    traces += 1; // the hidden read is traced (deny); the missing one has no patient
    let hidden_bin = f.get("/fhir/Binary/1.2.250.1.9.2", Some(&other), &[]).await;
    assert_eq!(hidden_bin.status, 404);
    traces += 1;

    // The author sees it.
    let author = f.token(&professional(AUTHOR));
    let a = f.get(&docs_query(INS_1), Some(&author), &[]).await;
    assert_eq!(a.json()["total"], 3);
    traces += 1;

    // Break-the-glass: permitted, traced with the flag and the reason; masking still holds.
    let a = f
        .get(
            &docs_query(INS_1),
            Some(&other),
            &[("X-Break-Glass-Reason", "patient inconscient")],
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["total"], 2);
    traces += 1;
    let rows = f.store.traces_for_patient(INS_1).await.unwrap();
    let last = rows.last().unwrap();
    assert_eq!(last.purpose, "break_glass");
    assert_eq!(last.purpose_reason.as_deref(), Some("patient inconscient"));
    assert_eq!(last.reason, "consult.permit.break_glass");
    assert_eq!(last.outcome, "permit");

    // Read and Binary: the CDA exactly as stored, ETag its sha256.
    let a = f
        .get("/fhir/DocumentReference/1.2.250.1.9.1", Some(&tp), &[])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["id"], "1.2.250.1.9.1");
    traces += 1;
    keep.push(("read", a.json()));
    let a = f.get("/fhir/Binary/1.2.250.1.9.1", Some(&tp), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, cda("1.2.250.1.9.1").as_bytes());
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/hl7-cda+xml")
    );
    {
        use sha2::{Digest, Sha256};
        let sha: String = Sha256::digest(&a.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a.header("etag"), Some(format!("\"{sha}\"")));
    }
    traces += 1;

    // Unknown query parameter: 400 OperationOutcome.
    let a = f
        .get(
            &format!("{}&colour=blue", docs_query(INS_1)),
            Some(&tp),
            &[],
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["resourceType"], "OperationOutcome");
    keep.push(("bad-request", a.json()));

    // Observations: the masked document's result is absent for the other professional.
    let obs =
        format!("/fhir/Observation?patient.identifier=urn%3Aoid%3A{OID}%7C{INS_1}&code=2345-7");
    let a = f.get(&obs, Some(&other), &[]).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["total"], 2);
    traces += 1;
    keep.push(("observations", a.json()));

    // AuditEvent: the patient reads their traces; a professional may not.
    let audit = format!("/fhir/AuditEvent?patient.identifier=urn%3Aoid%3A{OID}%7C{INS_1}");
    assert_eq!(f.get(&audit, Some(&other), &[]).await.status, 403);
    traces += 1;
    let a = f.get(&audit, Some(&tp), &[]).await;
    assert_eq!(a.status, 200);
    // Every earlier trace was about INS_1's DMP; this read's own is written after the list.
    assert_eq!(a.json()["total"].as_i64().unwrap(), traces);
    traces += 1;
    keep.push(("audit", a.json()));

    // Metadata is public.
    let a = f.get("/fhir/metadata", None, &[]).await;
    assert_eq!(a.status, 200);
    keep.push(("metadata", a.json()));

    // One trace row per answered access of a known patient, no more.
    assert_eq!(f.store.trace_count().await.unwrap(), traces);

    validate(&keep);
}

/// Writes the bodies to a temp dir and runs HAPI's validator on them (exit 0 = valid).
fn validate(bodies: &[(&str, Value)]) {
    let dir = std::env::temp_dir().join(format!("dmpflow-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, v) in bodies {
        std::fs::write(dir.join(format!("{name}.json")), v.to_string()).unwrap();
    }
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "scripts", "fhir-validate"]
        .iter()
        .collect();
    let out = std::process::Command::new(script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fhir-validate failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
