//! ITI-65 (`POST /fhir`) at the HTTP edge, without Kafka: the server in this process on
//! 127.0.0.1:0 with a SQLite store, dev tokens, and an in-memory `FeedWriter` that records
//! what would have been produced (or plays Kafka not acknowledging). Checks who may
//! provide, the body bound, the refusals that must write nothing, the answer and the trace,
//! and that what is written is an HL7 v2 message normalize turns back into the very CDA.
//! The path through real Kafka and the stages is the root crate's `tests/iti65.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dmpflow_consult::auth::{RoleMapping, Verifier, generate_dev_keypair, mint_dev_token};
use dmpflow_consult::authz::Principal;
use dmpflow_consult::server::{
    AppState, Coordinates, FeedWriter, MAX_BODY_BYTES, WriteError, WriteFuture, serve,
};
use dmpflow_schemas::{Cda, Feed, Normalized};
use dmpflow_store::Store;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ISS: &str = "https://dev.dmpflow.test";
const AUD: &str = "dmpflow-consult";
/// The patient of demo/cancer.hl7's first document (in demo/patients.csv).
const INS: &str = "246013306364358";
const OID: &str = "1.2.250.1.213.1.4.10";

type Written = Arc<Mutex<Vec<(Feed, String, Vec<u8>)>>>;

struct Fake {
    written: Written,
    available: bool,
}

impl FeedWriter for Fake {
    fn write<'a>(&'a self, feed: Feed, key: &'a str, payload: &'a [u8]) -> WriteFuture<'a> {
        Box::pin(async move {
            if !self.available {
                return Err(WriteError::Unavailable);
            }
            let mut w = self.written.lock().unwrap();
            w.push((feed, key.to_owned(), payload.to_vec()));
            Ok(Coordinates {
                partition: 0,
                offset: w.len() as i64 - 1,
            })
        })
    }
}

struct Fixture {
    addr: std::net::SocketAddr,
    store: Store,
    key: String,
    written: Written,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// `provider`: None = started without --provide; Some(available).
async fn start(provider: Option<bool>) -> Fixture {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let csv = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/patients.csv")).unwrap();
    store.import_patients_csv(&csv[..]).await.unwrap();
    let pair = generate_dev_keypair().unwrap();
    let verifier = Verifier::dev(&pair.public_pem, ISS, AUD, Duration::from_secs(30)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Written::default();
    let mut state = AppState::new(
        store.clone(),
        verifier,
        RoleMapping::default(),
        &format!("http://{addr}/fhir"),
    );
    if let Some(available) = provider {
        let fake = Fake {
            written: written.clone(),
            available,
        };
        state = state.with_provider(Box::new(fake), dmpflow_normalize::Config::default());
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async {
        let _ = rx.await;
    }));
    Fixture {
        addr,
        store,
        key: pair.private_pem,
        written,
        _stop: tx,
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn reason(&self) -> String {
        self.json()["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Fixture {
    fn token(&self, p: &Principal) -> String {
        mint_dev_token(
            &self.key,
            p,
            &RoleMapping::default(),
            ISS,
            AUD,
            Duration::from_secs(300),
        )
        .unwrap()
    }

    /// POST /fhir; `length` overrides Content-Length (the body is then not sent).
    async fn post(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
        length: Option<usize>,
    ) -> Answer {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        let mut req = format!(
            "POST /fhir HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            length.unwrap_or(body.len())
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        if length.is_none() {
            s.write_all(body).await.unwrap();
        }
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        Answer {
            status: head[9..12].parse().unwrap(),
            body: raw[split + 4..].to_vec(),
        }
    }
}

fn professional() -> Principal {
    Principal::Professional {
        id: "810000000001".into(),
        profession: "10".into(),
        organisation: Some("1123456789".into()),
    }
}

/// The first document of demo/cancer.hl7.
fn demo_cda() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/cancer.hl7"))
        .unwrap();
    let obx = text
        .split(['\r', '\n'])
        .find(|s| s.starts_with("OBX|1|ED|"))
        .unwrap();
    let b64 = obx.split('|').nth(5).unwrap().split('^').nth(4).unwrap();
    String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
}

fn bundle(ins: &str, cda: &str) -> Vec<u8> {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "fullUrl": "urn:uuid:5d4b8a5e-1f0c-4a57-9d1e-8b2f3c4d5e60",
          "request": { "method": "POST", "url": "List" },
          "resource": { "resourceType": "List", "status": "current", "mode": "working" } },
        { "fullUrl": "urn:uuid:0c287d32-01e3-4d87-9953-9fcc9404eb21",
          "request": { "method": "POST", "url": "DocumentReference" },
          "resource": { "resourceType": "DocumentReference", "status": "current",
            "subject": { "identifier": { "system": format!("urn:oid:{OID}"), "value": ins } },
            "content": [{ "attachment": { "contentType": "application/hl7-cda+xml",
                "url": "urn:uuid:7e0f4a3e-6f2f-4bd0-a6b6-6cfa3a5e0d01" } }] } },
        { "fullUrl": "urn:uuid:7e0f4a3e-6f2f-4bd0-a6b6-6cfa3a5e0d01",
          "request": { "method": "POST", "url": "Binary" },
          "resource": { "resourceType": "Binary", "contentType": "application/hl7-cda+xml",
            "data": STANDARD.encode(cda) } }
    ]})
    .to_string()
    .into_bytes()
}

const FHIR: &str = "application/fhir+json";

#[tokio::test]
async fn who_may_provide_and_what_is_refused_before_writing() {
    let f = start(Some(true)).await;
    let body = bundle(INS, &demo_cda());
    let pro = f.token(&professional());

    let a = f.post(None, FHIR, &body, None).await;
    assert_eq!((a.status, a.reason().as_str()), (401, "auth.token.missing"));
    let patient = f.token(&Principal::Patient { ins: INS.into() });
    let a = f.post(Some(&patient), FHIR, &body, None).await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (403, "provide.role.not_professional")
    );
    let a = f.post(Some(&pro), "text/plain", &body, None).await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (415, "provide.content_type")
    );
    // Refused from Content-Length alone: not a byte of the body is sent.
    let a = f
        .post(Some(&pro), FHIR, b"", Some(MAX_BODY_BYTES + 1))
        .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (413, "provide.body.too_large")
    );
    // Identity vigilance: the subject is another patient of the registry.
    let a = f
        .post(
            Some(&pro),
            FHIR,
            &bundle("138127505614358", &demo_cda()),
            None,
        )
        .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (422, "provide.patient.mismatch")
    );
    let a = f
        .post(Some(&pro), FHIR, &bundle(INS, "<not a cda"), None)
        .await;
    assert_eq!((a.status, a.reason().as_str()), (422, "cda.xml.invalid"));
    let mut not_tx: Value = serde_json::from_slice(&body).unwrap();
    not_tx["type"] = json!("batch");
    let a = f
        .post(Some(&pro), FHIR, not_tx.to_string().as_bytes(), None)
        .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (400, "provide.bundle.not_transaction")
    );
    assert!(f.written.lock().unwrap().is_empty(), "nothing written");
    // Every refused call is traced (the unauthenticated one as anonymous), none of them on
    // a patient's DMP: a refused submission names no patient we can trust.
    assert_eq!(
        f.store.trace_count().await.unwrap(),
        7,
        "one trace per call"
    );
    assert!(f.store.traces_for_patient(INS).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_provided_cda_is_written_as_an_mdm_that_normalizes_back_to_it() {
    let f = start(Some(true)).await;
    let cda = demo_cda();
    let pro = f.token(&professional());
    let a = f.post(Some(&pro), FHIR, &bundle(INS, &cda), None).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let r = a.json();
    assert_eq!(r["type"], "transaction-response");
    assert_eq!(r["entry"][0]["response"]["status"], "200 OK", "the List");
    assert_eq!(r["entry"][1]["response"]["status"], "201 Created");
    let location = r["entry"][1]["response"]["location"].as_str().unwrap();
    assert!(
        location.starts_with(&format!("http://{}/fhir/DocumentReference/", f.addr)),
        "{location}"
    );

    let written = f.written.lock().unwrap().clone();
    let [(feed, key, mdm)] = written.as_slice() else {
        panic!("one write expected, got {}", written.len());
    };
    assert_eq!((*feed, key.as_str()), (Feed::Documents, INS));
    let items = dmpflow_normalize::normalize(Feed::Documents, mdm, &Default::default()).unwrap();
    let [Normalized::Document(d)] = items.as_slice() else {
        panic!("one document");
    };
    assert_eq!(d.cda, Cda::Xml(cda.clone()));
    assert!(location.ends_with(&d.meta.unique_id.replace('^', "%5E")));

    // One trace row: the professional created a document in this patient's DMP.
    let traces = f.store.traces_for_patient(INS).await.unwrap();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].action, "create");
    assert_eq!(traces[0].actor_role, "professional");
    assert_eq!(traces[0].outcome, "permit");
    assert_eq!(
        traces[0].document_ids,
        std::slice::from_ref(&d.meta.unique_id)
    );

    // A second submission of the same CDA is a new message (fresh MSH-10): the store
    // files it as a duplicate of the same uniqueId.
    let a = f.post(Some(&pro), FHIR, &bundle(INS, &cda), None).await;
    assert_eq!(a.status, 200);
    let written = f.written.lock().unwrap().clone();
    assert_eq!(written.len(), 2);
    assert_ne!(
        written[0].2, written[1].2,
        "each submission its own control id"
    );
}

#[tokio::test]
async fn kafka_not_acknowledging_is_503_and_no_provider_is_501() {
    let f = start(Some(false)).await;
    let pro = f.token(&professional());
    let a = f
        .post(Some(&pro), FHIR, &bundle(INS, &demo_cda()), None)
        .await;
    assert_eq!((a.status, a.reason().as_str()), (503, "kafka.unavailable"));

    let f = start(None).await;
    let pro = f.token(&professional());
    let a = f
        .post(Some(&pro), FHIR, &bundle(INS, &demo_cda()), None)
        .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (501, "provide.not_configured")
    );
    // The refusal is traced, on no patient's DMP.
    assert_eq!(f.store.trace_count().await.unwrap(), 1);
    assert!(f.store.traces_for_patient(INS).await.unwrap().is_empty());
}
