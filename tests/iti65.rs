//! ITI-65 end to end on the real stack (`scripts/stack up`: Kafka and PostgreSQL; the test
//! FAILS, never skips, when either cannot be reached): `dmpflow serve --provide` takes a
//! real CI-SIS CDA (the ANS CR d'imagerie example, its patient imported into the registry
//! as its header states them) in a transaction Bundle, `dmpflow run --stage all` carries it through
//! normalize → route → store, and ITI-67 then finds it once and ITI-68 returns its exact
//! bytes. The same Bundle posted twice is stored once: each submission is a new MDM^T02
//! (its own MSH-10), and the store files the second as a duplicate of the CDA's uniqueId.
//! A Bundle whose subject is another patient is refused (422) and writes nothing.
//!
//! Isolated like the other root tests: its own topics, groups and database
//! (`common::isolated_env`); the server and the stages are the dmpflow binary.

mod common;

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::harness::{group_lag, watermarks};
use common::*;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OTHER_INS: &str = "138127505614358";

/// A real CI-SIS document: the CR d'imagerie example of the ANS test kit.
fn cisis_cda() -> Vec<u8> {
    let p = repo_root().join("../shared/cisis/examples/IMG_CR_IMG_2024.01.xml");
    std::fs::read(&p).unwrap_or_else(|e| panic!("missing CI-SIS example {}: {e}", p.display()))
}

/// The registry row of the document's own patient, read from its header by normalize's
/// reader (the traits route will compare), qualified.
fn patient_row(cda: &[u8]) -> (String, String, String) {
    let xml = std::str::from_utf8(cda).unwrap();
    let h = dmpflow_normalize::mapping::read_received_cda(xml, &Default::default()).unwrap();
    let p = h.patient;
    let csv = format!(
        "ins,ins_oid,birth_name,first_names,birth_date,sex,birth_place,identity_status,feeding_opposed\n\
         {},{},{},{},{},{},{},QUAL,false\n",
        p.ins,
        p.ins_oid,
        p.birth_name,
        p.first_names.join(" "),
        p.birth_date,
        p.sex,
        p.birth_place.unwrap_or_default()
    );
    (p.ins, p.ins_oid, csv)
}

fn bundle(oid: &str, ins: &str, cda: &[u8]) -> Vec<u8> {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "fullUrl": "urn:uuid:0c287d32-01e3-4d87-9953-9fcc9404eb21",
          "request": { "method": "POST", "url": "DocumentReference" },
          "resource": { "resourceType": "DocumentReference", "status": "current",
            "subject": { "identifier": { "system": format!("urn:oid:{oid}"), "value": ins } },
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

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTP/1.1 request, `Connection: close`, the body read to the end.
async fn http(port: u16, method: &str, path: &str, token: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked answer"
    );
    Answer {
        status: head[9..12].parse().unwrap(),
        body: raw[split + 4..].to_vec(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Messages on the store's input topics the database has not recorded as done.
async fn store_lag(pool: &sqlx::PgPool, prefix: &str) -> i64 {
    let group = format!("{prefix}.g.store");
    let mut lag = 0;
    for topic in [format!("{prefix}.routed"), format!("{prefix}.quarantine")] {
        let rows = sqlx::query(
            "SELECT \"partition\", next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
        )
        .bind(&group)
        .bind(&topic)
        .fetch_all(pool)
        .await
        .unwrap();
        let done: HashMap<i64, i64> = rows
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
            .collect();
        for (p, (_, hi)) in watermarks(&topic) {
            lag += hi - done.get(&(p as i64)).copied().unwrap_or(0);
        }
    }
    lag
}

#[tokio::test]
async fn a_cda_provided_over_fhir_is_stored_once_and_readable() {
    require_kafka();
    let db = fresh_database("iti65").await;
    let run = unique();
    let prefix = format!("t{run}");
    let env = isolated_env(&prefix, &db);
    run_ok(&env, &["topics", "create", "--partitions", "2"]);
    let cda = cisis_cda();
    let (ins, oid, csv) = patient_row(&cda);
    let dir = std::env::temp_dir().join(format!("dmpflow-iti65-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let patients = dir.join("patients.csv");
    std::fs::write(&patients, csv).unwrap();
    run_ok(&env, &["patients", "import", patients.to_str().unwrap()]);

    // Dev authentication: the key pair on disk, tokens from `dmpflow token`.
    let pair = dmpflow_consult::auth::generate_dev_keypair().unwrap();
    let (public, private) = (dir.join("dev.pub.pem"), dir.join("dev.key.pem"));
    std::fs::write(&public, &pair.public_pem).unwrap();
    std::fs::write(&private, &pair.private_pem).unwrap();
    let key = private.to_str().unwrap();
    let token = |args: &[&str]| {
        let mut a = vec!["token", "--key", key];
        a.extend_from_slice(args);
        run_ok(&env, &a).trim().to_owned()
    };
    let pro = token(&[
        "--role",
        "professional",
        "--id",
        "810000000001",
        "--organisation",
        "1123456789",
    ]);
    let patient = token(&["--role", "patient", "--ins", &ins]);

    let port = free_port();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let _serve = Killed(
        dmpflow()
            .envs(env.iter().cloned())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--auth-dev-key",
                public.to_str().unwrap(),
                "--provide",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting dmpflow serve"),
    );
    let up = wait_until(Duration::from_secs(60), || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    assert!(
        up,
        "dmpflow serve --provide did not listen (log: {})",
        dir.join("serve.log").display()
    );

    // Provided twice: two 200s, two messages on the feed topic.
    let mut location = String::new();
    for _ in 0..2 {
        let a = http(port, "POST", "/fhir", &pro, &bundle(&oid, &ins, &cda)).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let r = a.json();
        assert_eq!(r["type"], "transaction-response");
        assert_eq!(r["entry"][0]["response"]["status"], "201 Created");
        location = r["entry"][0]["response"]["location"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    // Another patient of the registry as subject: refused, nothing written.
    let a = http(port, "POST", "/fhir", &pro, &bundle(&oid, OTHER_INS, &cda)).await;
    assert_eq!(a.status, 422);
    assert_eq!(
        a.json()["issue"][0]["details"]["coding"][0]["code"],
        "provide.patient.mismatch"
    );
    let feed = format!("{prefix}.feed.documents");
    assert_eq!(topic_count(&feed), 2, "two acknowledged writes, no more");

    // The pipeline drains them.
    let stages = Killed(spawn_stage(
        &env,
        "all",
        free_port(),
        &format!("dmpflow-iti65-{run}-run.log"),
    ));
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let drained = wait_until(Duration::from_secs(120), || async {
        group_lag(
            &format!("{prefix}.g.normalize"),
            std::slice::from_ref(&feed),
        ) == 0
            && group_lag(
                &format!("{prefix}.g.route"),
                &[format!("{prefix}.documents")],
            ) == 0
            && topic_count(&format!("{prefix}.routed")) == 2
            && store_lag(&pool, &prefix).await == 0
    })
    .await;
    assert!(
        drained,
        "the pipeline did not drain both messages (log: {})",
        std::env::temp_dir()
            .join(format!("dmpflow-iti65-{run}-run.log"))
            .display()
    );
    drop(stages);
    assert_eq!(topic_count(&format!("{prefix}.dlq")), 0, "no dead letter");
    assert_eq!(
        topic_count(&format!("{prefix}.quarantine")),
        0,
        "no quarantine"
    );
    assert_eq!(stored(&db).await, 1, "stored once");

    // ITI-67 finds it once, at the location the provide answered.
    let query = format!("/fhir/DocumentReference?patient.identifier=urn%3Aoid%3A{oid}%7C{ins}");
    let a = http(port, "GET", &query, &patient, b"").await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let found = a.json();
    assert_eq!(found["total"], 1);
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        location.ends_with(&format!("/DocumentReference/{id}")),
        "{location} / {id}"
    );
    // ITI-68 returns the very bytes provided.
    let a = http(port, "GET", &format!("/fhir/Binary/{id}"), &patient, b"").await;
    assert_eq!(a.status, 200);
    assert!(
        a.body == cda,
        "ITI-68 returned other bytes than those provided"
    );

    // The provide left its trace (create, by the professional) in the patient's DMP.
    let store = dmpflow_store::Store::connect(&db).await.unwrap();
    let traces = store.traces_for_patient(&ins).await.unwrap();
    let creates: Vec<_> = traces.iter().filter(|t| t.action == "create").collect();
    assert_eq!(creates.len(), 2, "one create trace per accepted submission");
    assert!(
        creates
            .iter()
            .all(|t| t.actor_role == "professional" && t.document_ids == [id.clone()])
    );
    store.close().await;
    pool.close().await;
}
