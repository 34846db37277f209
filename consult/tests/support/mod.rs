//! What the server tests share: a store (SQLite in memory, or a fresh PostgreSQL database)
//! holding the demo patient registry, the FHIR server on 127.0.0.1:0 in this process, dev
//! tokens for each role (and the portal's dev login), a plain HTTP/1.1 client, document and registry-update builders,
//! and the HAPI FHIR validator run over collected bodies.

#![allow(dead_code)] // each test binary uses its own part of it

pub mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use dmpflow_consult::auth::{
    DevKeyPair, RoleMapping, Verifier, generate_dev_keypair, mint_dev_token,
};
use dmpflow_consult::authz::Principal;
use dmpflow_consult::server::portal::{DevLogin, Portal};
use dmpflow_consult::server::{AppState, serve};
use dmpflow_schemas::{
    CdaOrigin, Document, DocumentMeta, Entry, Feed, Lifecycle, PartyRef, PatientChange,
    PatientIdentity, PatientUpdate, SourceRef, UpdateTimes,
};
use dmpflow_store::{Store, StoreItem};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const OID: &str = "1.2.250.1.213.1.4.10";
/// Patients of demo/patients.csv.
pub const INS_1: &str = "138127505614358";
pub const INS_2: &str = "104026912303122";
pub const INS_3: &str = "164091305573443";
pub const AUTHOR: &str = "810000000001";
pub const OTHER_PRO: &str = "810000000099";
/// The dev issuer and audience `serve --auth-dev-key` uses, so the portal's dev login
/// (which mints with them) is served by the same fixture.
const ISS: &str = dmpflow_consult::server::DEV_ISSUER;
const AUD: &str = dmpflow_consult::server::DEV_AUDIENCE;

pub fn cda(uid: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\">\
         <id root=\"{uid}\"/><title>Compte rendu — résultats</title></ClinicalDocument>\n"
    )
}

/// A document version to store. `n` numbers its source message (unique per fixture).
pub struct Doc<'a> {
    pub uid: &'a str,
    pub set: &'a str,
    pub lifecycle: Lifecycle,
    pub ins: &'a str,
    pub created: &'a str,
    pub visibility: &'a [&'a str],
    pub author: &'a str,
    pub n: u32,
}

impl<'a> Doc<'a> {
    /// An initial version, by the usual author, its set named after it.
    pub fn new(uid: &'a str, ins: &'a str, created: &'a str, n: u32) -> Doc<'a> {
        Doc {
            uid,
            set: uid,
            lifecycle: Lifecycle::Initial,
            ins,
            created,
            visibility: &[],
            author: AUTHOR,
            n,
        }
    }

    pub fn masked(mut self, flags: &'a [&'a str]) -> Self {
        self.visibility = flags;
        self
    }

    /// The next version of `set`: a replacement or a deletion.
    pub fn version_of(mut self, set: &'a str, lifecycle: Lifecycle) -> Self {
        self.set = set;
        self.lifecycle = lifecycle;
        self
    }

    pub fn build(&self) -> Document {
        Document {
            meta: DocumentMeta {
                unique_id: self.uid.into(),
                set_id: format!("{}.s", self.set),
                version: if self.lifecycle == Lifecycle::Initial {
                    1
                } else {
                    2
                },
                lifecycle: self.lifecycle,
                target_unique_id: None,
                type_code: "11502-2".into(),
                class_code: "10".into(),
                format_code: "urn:ihe:lab:xd-lab:2008".into(),
                title: "CR de biologie".into(),
                patient: identity(self.ins),
                author: PartyRef {
                    person_id: Some(self.author.into()),
                    organisation_id: Some("1123456789".into()),
                },
                creation_time: self.created.into(),
                service_start: Some(self.created.into()),
                service_stop: None,
                confidentiality: "N".into(),
                visibility: self.visibility.iter().map(|s| (*s).to_owned()).collect(),
                practice_setting: Some("ETABLISSEMENT".into()),
                ignored_attachments: 0,
                origin: CdaOrigin::Generated,
                source: SourceRef {
                    feed: Some(Feed::Lab),
                    sender: "LABO^FINESS".into(),
                    control_id: format!("M{}", self.n),
                    position: 0,
                    topic: None,
                    partition: None,
                    offset: None,
                    content_hash: format!("h{}", self.n),
                },
            },
            cda: dmpflow_schemas::Cda::Xml(cda(self.uid)),
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
                time: Some(self.created.into()),
            }],
        }
    }
}

/// The identity a document carries (its traits do not matter to the read side).
fn identity(ins: &str) -> PatientIdentity {
    PatientIdentity {
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
    }
}

pub struct Fixture {
    pub addr: std::net::SocketAddr,
    pub store: Store,
    key: String,
    public_key: String,
    mapping: RoleMapping,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The PostgreSQL database to drop after a passed test.
    pg_db: Option<String>,
}

pub enum Backend {
    Sqlite,
    Postgres(&'static str),
}

impl Fixture {
    /// A store of the demo registry and the server on it.
    pub async fn start(backend: Backend) -> Fixture {
        let (store, pg_db) = match backend {
            Backend::Sqlite => (Store::connect("sqlite::memory:").await.unwrap(), None),
            Backend::Postgres(test) => {
                let (s, db) = dmpflow_store::testing::fresh_postgres("dmpflow_serve", test).await;
                (s, Some(db))
            }
        };
        let csv =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/patients.csv")).unwrap();
        store.import_patients_csv(&csv[..]).await.unwrap();
        let pair = generate_dev_keypair().unwrap();
        let mapping = RoleMapping::default();
        let (addr, tx, server) = spawn_server(&store, &pair, &mapping).await;
        Fixture {
            addr,
            store,
            key: pair.private_pem,
            public_key: pair.public_pem,
            mapping,
            stop: Some(tx),
            server: Some(server),
            pg_db,
        }
    }

    /// Another server instance on the same store and keys (as behind a load balancer);
    /// it stops when the sender is dropped.
    pub async fn another_instance(
        &self,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let pair = DevKeyPair {
            private_pem: self.key.clone(),
            public_pem: self.public_key.clone(),
        };
        let (addr, tx, _) = spawn_server(&self.store, &pair, &self.mapping).await;
        (addr, tx)
    }

    /// Stops the server and drops the PostgreSQL database (call once the test passed).
    pub async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            s.await.unwrap().unwrap();
        }
        if let Some(db) = self.pg_db.take() {
            dmpflow_store::testing::dispose(self.store.clone(), db).await;
        }
    }

    pub async fn put(&self, docs: &[Doc<'_>]) {
        for d in docs {
            self.store
                .write_batch(&[StoreItem::Document(d.build())], &[])
                .await
                .unwrap();
        }
    }

    /// An identity-feed update of `ins` (same traits as its registry record): ZFA-1 DMP
    /// status and ZFA-11 consultation consent.
    pub async fn set_dmp(&self, ins: &str, status: Option<&str>, consent: Option<bool>) {
        let rec = self.store.get_patient(ins).await.unwrap().unwrap();
        let update = PatientUpdate {
            change: PatientChange::Upsert,
            patient: PatientIdentity {
                ins: rec.ins.clone(),
                ins_oid: rec.ins_oid.clone(),
                ipp: None,
                ipp_authority: None,
                birth_name: rec.birth_name.clone(),
                first_names: rec.first_names.clone(),
                birth_date: rec.birth_date.clone(),
                sex: rec.sex.clone(),
                birth_place: rec.birth_place.clone(),
                identity_status: vec![rec.identity_status.clone()],
                other_ins: Vec::new(),
            },
            feeding_opposed: None,
            dmp_status: status.map(str::to_owned),
            consultation_consent: consent,
            times: UpdateTimes {
                message: Some("2026-06-01T10:00:00".into()),
                ..UpdateTimes::default()
            },
            event: "A31".into(),
            source: SourceRef {
                feed: Some(Feed::Identity),
                sender: "HOP^FINESS".into(),
                control_id: format!("ADT-{ins}-{status:?}-{consent:?}"),
                position: 0,
                topic: None,
                partition: None,
                offset: None,
                content_hash: format!("adt-{ins}-{status:?}-{consent:?}"),
            },
        };
        self.store.apply_patient_update(&update).await.unwrap();
        let rec = self.store.get_patient(ins).await.unwrap().unwrap();
        assert_eq!(rec.dmp_status.as_deref(), status, "the update was applied");
        assert_eq!(rec.consultation_consent, consent);
    }

    pub fn token(&self, p: &Principal) -> String {
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

    pub async fn get(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Answer {
        self.get_at(self.addr, path, token, extra).await
    }

    /// [`Fixture::get`] on the server at `addr`.
    pub async fn get_at(
        &self,
        addr: std::net::SocketAddr,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut headers: Vec<(&str, String)> =
            extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        if let Some(t) = token {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        send(addr, "GET", path, &headers, b"").await
    }

    /// A form POST (`application/x-www-form-urlencoded`) with extra headers (cookies).
    pub async fn post_form(&self, path: &str, headers: &[(&str, String)], form: &str) -> Answer {
        let mut h = headers.to_vec();
        h.push((
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        ));
        send(self.addr, "POST", path, &h, form.as_bytes()).await
    }
}

/// One HTTP/1.1 request on its own connection, the whole answer read.
pub async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
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

impl Fixture {
    /// A search as `who`, expected 200: the Bundle.
    pub async fn bundle(&self, path: &str, who: &str) -> Value {
        let a = self.get(path, Some(who), &[]).await;
        assert_eq!(
            a.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        a.json()
    }

    pub async fn traces(&self) -> i64 {
        self.store.trace_count().await.unwrap()
    }
}

type Served = tokio::task::JoinHandle<std::io::Result<()>>;

/// A server on 127.0.0.1:0 over `store`, accepting dev tokens of `public_pem`.
async fn spawn_server(
    store: &Store,
    pair: &DevKeyPair,
    mapping: &RoleMapping,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    Served,
) {
    let verifier = Verifier::dev(&pair.public_pem, ISS, AUD, Duration::from_secs(30)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(
        store.clone(),
        verifier,
        mapping.clone(),
        &format!("http://{addr}/fhir"),
    )
    .with_portal(Portal::new(
        Some(DevLogin::new(pair.private_pem.clone())),
        None,
        false,
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = rx.await;
    }));
    (addr, tx, server)
}

pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.all_headers(name).into_iter().next()
    }
    /// Every value of header `name` (Set-Cookie comes several times).
    pub fn all_headers(&self, name: &str) -> Vec<String> {
        self.headers
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The reason code of an OperationOutcome answer.
    pub fn reason(&self) -> String {
        self.json()["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
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

pub fn patient(ins: &str) -> Principal {
    Principal::Patient { ins: ins.into() }
}

pub fn representative(of: &str) -> Principal {
    Principal::Representative {
        represented_ins: of.into(),
        id: "REP-0001".into(),
    }
}

pub fn professional(id: &str) -> Principal {
    Principal::Professional {
        id: id.into(),
        profession: "10".into(),
        organisation: Some("1123456789".into()),
    }
}

pub fn docs_query(ins: &str) -> String {
    format!("/fhir/DocumentReference?patient.identifier=urn%3Aoid%3A{OID}%7C{ins}")
}

pub fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| x["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The FHIR resources a test collected, to validate in one validator run.
pub type Bodies = Vec<(String, Value)>;

/// Writes the bodies to a temp dir and runs HAPI's validator on them (exit 0 = valid).
pub fn validate(bodies: &Bodies) {
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
