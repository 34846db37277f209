//! Log hygiene on a real run (issue #17): `dmpflow mllp` and `dmpflow run --stage all` at
//! `DMPFLOW_LOG=debug`, over a corpus whose patients have distinctive names, INS and birth
//! dates, through stored documents, gateway rejects (AR), quarantines, dead letters, a
//! broker restart and a database restart. The test fails if any of those values appears in
//! either process's stdout or stderr, or in their `/metrics`.
//!
//! It restarts the broker and PostgreSQL of the SECURE stack (`scripts/stack up --secure`),
//! which is why it is `#[ignore]`d and run by `scripts/secure-test` (that stack is the
//! runner's own; the plain one may be shared). It FAILS, never skips, without that stack.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The distinctive values: none of them may be printed or exported.
const KNOWN_NAME: (&str, &str) = ("ZORGLUBIAN", "QUENTINETTE");
const KNOWN_BIRTH: (&str, &str) = ("19370412", "1937-04-12");
const UNKNOWN_NAME: (&str, &str) = ("XYLOPHANTE", "BERENGERE");
const UNKNOWN_BIRTH: (&str, &str) = ("19410923", "1941-09-23");

/// A valid INS (NIR with its key) from a 13-digit body.
fn ins_of(body: &str) -> String {
    let n: u64 = body.parse().unwrap();
    format!("{body}{:02}", 97 - n % 97)
}

fn secure_settings() -> Vec<(String, String)> {
    let path = repo_root().join(".stack-secure.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run `scripts/stack up --secure` first",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .filter(|(k, _)| k.starts_with("DMPFLOW_KAFKA") || k == "DMPFLOW_DATABASE_URL")
        .collect()
}

/// An ORU^R01 of `lab_oru` with another patient's name, INS and birth date.
fn oru(ins: &str, name: (&str, &str), birth: &str, run: &str, n: usize) -> String {
    lab_oru(ins, run, n)
        .replace(
            "DURAND^CLAIRE^CLAIRE MARIE",
            &format!("{}^{}^{}", name.0, name.1, name.1),
        )
        .replace("||19800315|", &format!("||{birth}|"))
}

fn stack(args: &[&str]) {
    let status = Command::new(repo_root().join("scripts/stack"))
        .args(args)
        .arg("--secure")
        .stdout(Stdio::null())
        .status()
        .expect("scripts/stack");
    assert!(status.success(), "scripts/stack {args:?} --secure failed");
}

fn metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn spawn(env: &[(String, String)], args: &[&str], out: &PathBuf, err: &PathBuf) -> Child {
    dmpflow_clean(env)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .expect("starting dmpflow")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the secure stack's broker and database; run by scripts/secure-test"]
async fn no_patient_data_in_the_output_or_metrics_of_run_and_mllp_at_debug() {
    let known_ins = ins_of("1370475056001");
    let unknown_ins = ins_of("2410975056002");
    let forbidden = [
        KNOWN_NAME.0,
        KNOWN_NAME.1,
        KNOWN_BIRTH.0,
        KNOWN_BIRTH.1,
        UNKNOWN_NAME.0,
        UNKNOWN_NAME.1,
        UNKNOWN_BIRTH.0,
        UNKNOWN_BIRTH.1,
        &known_ins,
        &unknown_ins,
    ];

    // The `tests` principal on topics and groups of its own, a fresh database.
    let secure = secure_settings();
    let url = secure
        .iter()
        .find(|(k, _)| k == "DMPFLOW_DATABASE_URL")
        .unwrap()
        .1
        .clone();
    // Nor may the secrets of the settings (the SCRAM password, the database password).
    let sasl_password = secure
        .iter()
        .find(|(k, _)| k == "DMPFLOW_KAFKA__SASL_PASSWORD")
        .unwrap()
        .1
        .clone();
    let db_password = url
        .split_once('@')
        .and_then(|(userinfo, _)| userinfo.rsplit_once(':'))
        .unwrap()
        .1
        .to_string();
    let mut forbidden: Vec<&str> = forbidden.to_vec();
    forbidden.extend([sasl_password.as_str(), db_password.as_str()]);
    let run = unique();
    let prefix = format!("t{run}");
    let db = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url)
            .await
            .expect("the secure stack's PostgreSQL");
        let name = format!("dmpflow_h_{run}");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        let (path, query) = url.split_once('?').unwrap();
        format!("{}/{name}?{query}", path.rsplit_once('/').unwrap().0)
    };
    let mut env = isolated_env(&prefix, &db);
    env.retain(|(k, _)| k != "DMPFLOW_KAFKA_BOOTSTRAP" && k != "DMPFLOW_LOG");
    env.extend(
        secure
            .iter()
            .filter(|(k, _)| k != "DMPFLOW_DATABASE_URL")
            .cloned(),
    );
    env.push(("DMPFLOW_LOG".into(), "debug".into()));
    run_ok(&env, &["topics", "create", "--partitions", "2"]);
    let dir = std::env::temp_dir().join(format!("dmpflow-hygiene-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = format!(
        "ins,ins_oid,birth_name,first_names,birth_date,sex,birth_place,identity_status,feeding_opposed\n{known_ins},{TEST_OID},{},{},{},F,75056,QUAL,false\n",
        KNOWN_NAME.0, KNOWN_NAME.1, KNOWN_BIRTH.1
    );
    std::fs::write(dir.join("patients.csv"), csv).unwrap();
    run_ok(
        &env,
        &[
            "patients",
            "import",
            dir.join("patients.csv").to_str().unwrap(),
        ],
    );

    let (run_port, gw_port, gw_metrics) = (free_port(), free_port(), free_port());
    let p = |n: &str| dir.join(n);
    let mut pipeline = spawn(
        &env,
        &[
            "run",
            "--stage",
            "all",
            "--metrics-addr",
            &format!("127.0.0.1:{run_port}"),
        ],
        &p("run.out"),
        &p("run.err"),
    );
    let mut gateway = spawn(
        &env,
        &[
            "mllp",
            "--feed",
            "lab",
            "--listen",
            &format!("127.0.0.1:{gw_port}"),
            "--metrics-addr",
            &format!("127.0.0.1:{gw_metrics}"),
        ],
        &p("mllp.out"),
        &p("mllp.err"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", gw_port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut n = 0;
    let mut next = |ins: &str, name, birth| {
        n += 1;
        oru(ins, name, birth, &run, n)
    };
    let mut acks = Vec::new();
    // Stored, quarantined (a patient the registry does not know), rejected by the gateway
    // (an ADT on the lab feed), dead-lettered (an ORU without its result: normalize has
    // no document to make of it).
    for _ in 0..10 {
        acks.push(mllp_send(
            gw_port,
            &next(&known_ins, KNOWN_NAME, KNOWN_BIRTH.0),
        ));
    }
    for _ in 0..3 {
        acks.push(mllp_send(
            gw_port,
            &next(&unknown_ins, UNKNOWN_NAME, UNKNOWN_BIRTH.0),
        ));
    }
    let adt = next(&unknown_ins, UNKNOWN_NAME, UNKNOWN_BIRTH.0)
        .replace("ORU^R01^ORU_R01", "ADT^A08^ADT_A01");
    assert_eq!(
        mllp_send(gw_port, &adt),
        "AR",
        "an ADT on the lab feed is rejected"
    );
    let no_result: String = next(&known_ins, KNOWN_NAME, KNOWN_BIRTH.0)
        .split('\r')
        .filter(|s| !s.starts_with("OBR") && !s.starts_with("OBX"))
        .map(|s| format!("{s}\r"))
        .collect();
    let dead = mllp_send(gw_port, &no_result);

    // The broker restarts, then the database: the processes ride both out.
    stack(&["restart-kafka"]);
    for _ in 0..5 {
        acks.push(mllp_send(
            gw_port,
            &next(&known_ins, KNOWN_NAME, KNOWN_BIRTH.0),
        ));
    }
    stack(&["restart-pg"]);
    for _ in 0..5 {
        acks.push(mllp_send(
            gw_port,
            &next(&known_ins, KNOWN_NAME, KNOWN_BIRTH.0),
        ));
    }
    assert!(acks.iter().all(|a| a == "AA"), "{acks:?}");

    let stored_ok = wait_until(Duration::from_secs(180), || async {
        stored(&db).await >= 20
    })
    .await;
    let quarantined = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        let q: (i64, Option<i64>) = sqlx::query_as("SELECT count(*), min(id) FROM quarantine")
            .fetch_one(&mut c)
            .await
            .unwrap();
        q
    };
    let (quarantined, first_case) = quarantined;
    // The control: `quarantine show` prints a case's patient on purpose, so the corpus does
    // carry the values this test looks for, in the spelling it looks for.
    let shown = run_ok(
        &env,
        &[
            "quarantine",
            "show",
            &first_case.expect("a quarantine case").to_string(),
        ],
    );
    assert!(
        shown.contains(UNKNOWN_NAME.0) && shown.contains(&unknown_ins),
        "quarantine show prints the case's patient"
    );
    let dead_letters = topic_count(&format!("{prefix}.dlq"));
    let exported = format!("{}\n{}", metrics(run_port), metrics(gw_metrics));
    assert!(terminate(&mut gateway).success(), "mllp exits 0 on SIGTERM");
    assert!(terminate(&mut pipeline).success(), "run exits 0 on SIGTERM");

    let mut outputs = vec![("/metrics".to_string(), exported)];
    for f in ["run.out", "run.err", "mllp.out", "mllp.err"] {
        outputs.push((f.to_string(), std::fs::read_to_string(p(f)).unwrap()));
    }
    let debug_lines: usize = outputs
        .iter()
        .map(|(_, t)| t.matches("DEBUG").count())
        .sum();
    eprintln!(
        "log hygiene: stored {}, quarantined {quarantined}, dead letters {dead_letters}, \
         no-result message {dead}, {debug_lines} DEBUG lines, {} bytes of output checked",
        stored(&db).await,
        outputs.iter().map(|(_, t)| t.len()).sum::<usize>()
    );
    for (what, text) in &outputs {
        for value in &forbidden {
            assert!(
                !text.contains(value),
                "{what} contains patient data (a name, INS or birth date) or a secret; see {}",
                dir.display()
            );
        }
    }
    assert!(stored_ok, "20 documents stored within 180 s");
    assert!(
        quarantined >= 3,
        "the unknown patient's documents are quarantined"
    );
    assert!(
        dead_letters >= 1 || dead == "AR",
        "the message without a result is dead-lettered or rejected"
    );
    assert!(debug_lines > 0, "DMPFLOW_LOG=debug gives debug events");
}
