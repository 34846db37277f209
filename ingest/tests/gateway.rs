//! The MLLP gateway in-process: `gateway::run` on a listener bound to 127.0.0.1:0, against
//! the real Kafka of `scripts/stack up` (its bootstrap from the environment or the
//! workspace's `.stack.env`). A test FAILS when Kafka is unreachable: an ACK test that
//! skipped would prove nothing. Each test writes to feed topics of its own prefix, so
//! reading a topic back shows exactly what that test's gateway wrote.
//!
//! What is checked: AA only once the record is in the topic (key, bytes, feed header); AR
//! for a message type the feed does not take, decided by normalize's table (an ORU^R01
//! without a document on the pharmacy feed, by `--feed` and by a `--route` row); AR
//! `hl7.message.too_large` for a frame over `max_frame`, the connection still usable; a
//! resend of identical bytes answered AA without a second record; TLS; and shutdown by the
//! token ending `run` cleanly, its connections closed and its listener dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmpflow_ingest::encode_frame;
use dmpflow_ingest::gateway::{self, Config, Gateway, Limits, Routing};
use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::kafka;
use dmpflow_pipeline::metrics::Health;
use dmpflow_schemas::Feed;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsConnector, rustls};
use tokio_util::sync::CancellationToken;

// ------------------------------------------------------------------ Kafka

/// The stack's bootstrap: `DMPFLOW_KAFKA_BOOTSTRAP`, else the workspace's `.stack.env`.
fn bootstrap() -> String {
    if let Ok(bs) = std::env::var("DMPFLOW_KAFKA_BOOTSTRAP") {
        return bs;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.stack.env");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("no DMPFLOW_KAFKA_BOOTSTRAP and {path}: {e}: run `scripts/stack up` first")
    });
    let vars: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
        .collect();
    vars.get("DMPFLOW_KAFKA_BOOTSTRAP")
        .unwrap_or_else(|| panic!("no DMPFLOW_KAFKA_BOOTSTRAP in {path}"))
        .to_string()
}

/// Fails unless the broker answers a metadata request (never skips).
fn require_kafka() -> String {
    let bs = bootstrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .create()
        .expect("creating a Kafka client");
    c.fetch_metadata(None, Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!("Kafka at {bs} does not answer ({e}): run `scripts/stack up` first")
        });
    bs
}

/// A short value unique to this test run.
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// Settings whose feed topics are this test's own, and those topics created with the
/// record limit `dmpflow topics create` gives them (the gateway checks it at start).
async fn settings_with_topics(tag: &str, feeds: &[Feed]) -> Settings {
    let bs = require_kafka();
    let mut s = Settings::default();
    s.kafka.bootstrap = bs.clone();
    s.topics.feed_prefix = format!("t.gw.{tag}.{}.feed.", unique());
    s.topics.partitions = 2;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .create()
        .unwrap();
    let max_bytes = kafka::limits::topic_max_message_bytes(&s).to_string();
    let names: Vec<String> = feeds.iter().map(|f| s.topics.feed(*f)).collect();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            NewTopic::new(n, s.topics.partitions, TopicReplication::Fixed(1))
                .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(&new, &opts).await.unwrap() {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
    s
}

/// One record as read back: key, payload, `dmp.feed` header.
type Record = (Option<String>, Vec<u8>, Option<String>);

/// Every record of a topic, from the beginning to the high watermarks.
async fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let (bs, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || read_topic_blocking(&bs, &topic))
        .await
        .unwrap()
}

fn read_topic_blocking(bootstrap: &str, topic: &str) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("t.gw.reader.{}", unique()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut want: BTreeMap<i32, i64> = BTreeMap::new();
    for p in md.topics()[0].partitions() {
        // Right after the topic is created its leader may not be known yet: retry briefly.
        let mut tries = 0;
        let (lo, hi) = loop {
            match c.fetch_watermarks(topic, p.id(), Duration::from_secs(10)) {
                Ok(w) => break w,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("watermarks of {topic}/{}: {e}; retrying", p.id());
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("watermarks of {topic}/{}: {e}", p.id()),
            }
        };
        if hi > lo {
            want.insert(p.id(), hi);
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo))
                .unwrap();
        }
    }
    let mut out = Vec::new();
    if want.is_empty() {
        return out;
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !want.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            let feed = m.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == dmpflow_schemas::headers::FEED)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                m.payload().unwrap_or(&[]).to_vec(),
                feed,
            ));
            if want
                .get(&m.partition())
                .is_some_and(|hi| m.offset() + 1 >= *hi)
            {
                want.remove(&m.partition());
            }
        }
    }
    out
}

// ------------------------------------------------------------------ the gateway

/// A gateway served by `gateway::run` in this process.
struct Running {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    health: Health,
    settings: Settings,
}

fn limits(max_frame: usize) -> Limits {
    Limits {
        max_frame,
        read_timeout: Duration::from_secs(10),
        frame_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(60),
        max_connections: 16,
        max_connections_per_peer: 8,
    }
}

async fn start(settings: &Settings, routing: Routing, max_frame: usize) -> Running {
    start_with(settings, routing, max_frame, None).await
}

async fn start_with(
    settings: &Settings,
    routing: Routing,
    max_frame: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Running {
    let shutdown = CancellationToken::new();
    let health = Health::default();
    let config = Config {
        routing,
        limits: limits(max_frame),
        ack_timeout: Duration::from_secs(10),
        dedupe_cache: 1000,
        tls,
        health: health.clone(),
    };
    let gw = Gateway::new(settings, config, &shutdown)
        .await
        .expect("the gateway starts on the stack's Kafka");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(gateway::run(listener, Arc::new(gw), shutdown.clone()));
    Running {
        addr,
        shutdown,
        task,
        health,
        settings: settings.clone(),
    }
}

impl Running {
    fn topic(&self, feed: Feed) -> String {
        self.settings.topics.feed(feed)
    }

    /// Cancels the token: `run` must end, cleanly, well within its shutdown bound.
    async fn stop(self) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("run ends after shutdown");
        ended.expect("run did not panic").expect("run ends Ok");
        assert!(!self.health.is_ready(), "not ready once stopped");
    }
}

// ------------------------------------------------------------------ MLLP client

/// Sends one framed message and reads one framed ACK (None: closed without an ACK).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> Option<Ack> {
    s.write_all(&encode_frame(msg)).await.ok()?;
    s.flush().await.ok()?;
    read_ack(s).await
}

async fn read_ack<S: AsyncRead + Unpin>(s: &mut S) -> Option<Ack> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == [0x1C, 0x0D]) {
            assert_eq!(buf[0], 0x0B, "an ACK starts with the MLLP start block");
            return Some(Ack::parse(&buf[1..end]));
        }
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An ACK's segments, split on `|`.
struct Ack(Vec<Vec<String>>);

impl Ack {
    fn parse(raw: &[u8]) -> Ack {
        let text = String::from_utf8_lossy(raw);
        Ack(text
            .split('\r')
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect())
    }
    fn seg(&self, name: &str) -> Option<&Vec<String>> {
        self.0.iter().find(|s| s[0] == name)
    }
    /// MSA-1 and MSA-2.
    fn msa(&self) -> (&str, &str) {
        let msa = self.seg("MSA").expect("an MSA segment");
        (msa[1].as_str(), msa[2].as_str())
    }
    /// ERR-5.1, the reason code.
    fn reason(&self) -> &str {
        let err = self.seg("ERR").expect("an ERR segment");
        err[5].split('^').next().unwrap()
    }
}

const INS: &str = "180037512345697";

/// A lab ORU^R01 (structured results, no embedded document) with MSH-10 `id`.
fn lab_oru(id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|SIL-TEST|LABO-TEST|DMPFLOW|DMP|20241105143000||ORU^R01^ORU_R01|{id}|P|2.5|||||FRA|UNICODE UTF-8\r\
PID|1||{INS}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||DURAND^CLAIRE||19800315|F\r\
OBR|1|CMD-{id}^SIL-TEST||24362-6^Ionogramme sanguin^LN|||20241105080000\r\
OBX|1|NM|2823-3^Potassium^LN||4.2|mmol/L|3.5-5.1|N|||F\r"
    )
    .into_bytes()
}

/// A pharmacy RDS^O13 (dispensation) with MSH-10 `id`.
fn pharmacy_rds(id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PUI-TEST|PHARMA|DMPFLOW|DMP|20241105143000||RDS^O13^RDS_O13|{id}|P|2.5|||||FRA|UNICODE UTF-8\r\
PID|1||{INS}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||DURAND^CLAIRE||19800315|F\r\
ORC|RE|CMD-{id}\r\
RXD|1|3400935955838^DOLIPRANE 1000MG CPR^CIP|20241105|2|CPR\r"
    )
    .into_bytes()
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aa_once_written_and_a_resend_is_not_written_again() {
    let settings = settings_with_topics("aa", &[Feed::Lab]).await;
    let gw = start(&settings, Routing::Feed(Feed::Lab), 1 << 20).await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let id = format!("aa-{}", unique());
    let msg = lab_oru(&id);
    let ack = exchange(&mut c, &msg).await.expect("an ACK");
    assert_eq!(ack.msa(), ("AA", id.as_str()));
    // Answered, so run is serving (it sets ready first, in its own task).
    assert!(gw.health.is_ready(), "ready while serving");
    // AA is answered after Kafka acknowledged the write: the record is there already.
    let topic = gw.topic(Feed::Lab);
    let got = read_topic(&settings.kafka.bootstrap, &topic).await;
    assert_eq!(
        got,
        vec![(Some(INS.to_string()), msg.clone(), Some("lab".to_string()))],
        "one record: the message byte for byte, keyed by the INS, with its feed"
    );
    // The sender lost our ACK and resends the same bytes: AA from memory, no second record.
    let again = exchange(&mut c, &msg).await.expect("an ACK to the resend");
    assert_eq!(again.msa(), ("AA", id.as_str()));
    // Same MSH-10, other content: not a resend, written.
    let mut changed = msg.clone();
    let at = changed.len() - 6;
    changed[at] = b'9';
    let other = exchange(&mut c, &changed).await.expect("an ACK");
    assert_eq!(other.msa(), ("AA", id.as_str()));
    let got = read_topic(&settings.kafka.bootstrap, &topic).await;
    let payloads: Vec<&Vec<u8>> = got.iter().map(|(_, p, _)| p).collect();
    assert_eq!(payloads.len(), 2, "the resend was not written again");
    assert!(payloads.contains(&&msg) && payloads.contains(&&changed));
    drop(c);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pharmacy_feed_refuses_an_oru_without_a_document_as_normalize_does() {
    let settings = settings_with_topics("pharmacy", &[Feed::Pharmacy]).await;
    // By --feed and by a --route row alike: the feed's types are normalize's table.
    let routings = [
        Routing::Feed(Feed::Pharmacy),
        Routing::from_flags(None, &["ORU=pharmacy".into(), "RDS=pharmacy".into()]).unwrap(),
    ];
    for routing in routings {
        let label = format!("{routing:?}");
        let gw = start(&settings, routing, 1 << 20).await;
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        let oru = format!("oru-{}", unique());
        let ack = exchange(&mut c, &lab_oru(&oru)).await.expect("an ACK");
        assert_eq!(ack.msa(), ("AR", oru.as_str()), "{label}");
        assert_eq!(ack.reason(), "hl7.message_type.unsupported", "{label}");
        assert!(ack.seg("ERR").unwrap()[3].starts_with("200^"), "{label}");
        // What the pharmacy feed does take is written.
        let rds = format!("rds-{}", unique());
        let ack = exchange(&mut c, &pharmacy_rds(&rds)).await.expect("an ACK");
        assert_eq!(ack.msa(), ("AA", rds.as_str()), "{label}");
        drop(c);
        gw.stop().await;
    }
    let got = read_topic(
        &settings.kafka.bootstrap,
        &settings.topics.feed(Feed::Pharmacy),
    )
    .await;
    let ids: Vec<bool> = got
        .iter()
        .map(|(_, p, _)| p.starts_with(b"MSH|^~\\&|PUI-TEST"))
        .collect();
    assert_eq!(ids, vec![true, true], "only the two RDS were written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_gets_ar_too_large_and_the_connection_goes_on() {
    let settings = settings_with_topics("large", &[Feed::Lab]).await;
    let gw = start(&settings, Routing::Feed(Feed::Lab), 4096).await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let big_id = format!("big-{}", unique());
    let mut big = lab_oru(&big_id);
    big.extend(format!("NTE|1||{}\r", "x".repeat(64 << 10)).into_bytes());
    let ack = exchange(&mut c, &big)
        .await
        .expect("an ACK, not a cut connection");
    assert_eq!(ack.msa(), ("AR", big_id.as_str()));
    assert_eq!(ack.reason(), "hl7.message.too_large");
    // The rest of the frame was dropped unread; the next message is answered as usual.
    let id = format!("small-{}", unique());
    let ack = exchange(&mut c, &lab_oru(&id)).await.expect("an ACK");
    assert_eq!(ack.msa(), ("AA", id.as_str()));
    let got = read_topic(&settings.kafka.bootstrap, &gw.topic(Feed::Lab)).await;
    assert_eq!(got.len(), 1, "only the small message was written");
    drop(c);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_by_the_token_ends_run_and_closes_connections() {
    let settings = settings_with_topics("shutdown", &[Feed::Lab]).await;
    let gw = start(&settings, Routing::Feed(Feed::Lab), 1 << 20).await;
    // One connection that was served, then sits idle between messages (the idle timeout
    // is a minute: only the shutdown can close it within the bound checked below).
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let id = format!("last-{}", unique());
    let ack = exchange(&mut c, &lab_oru(&id)).await.expect("an ACK");
    assert_eq!(ack.msa(), ("AA", id.as_str()));
    let addr = gw.addr;
    let t0 = Instant::now();
    gw.stop().await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "an idle connection does not hold the shutdown"
    );
    // The connection is closed by the gateway, and nothing listens any more.
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
        .await
        .expect("closed by the gateway");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "listener dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_get_the_same_answers() {
    let settings = settings_with_topics("tls", &[Feed::Lab]).await;
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("t.gw.tls.{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, signing_key.serialize_pem()).unwrap();
    let acceptor = gateway::tls_acceptor(Some(&cert_pem), Some(&key_pem))
        .unwrap()
        .expect("an acceptor");
    let gw = start_with(&settings, Routing::Feed(Feed::Lab), 1 << 20, Some(acceptor)).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let id = format!("tls-{}", unique());
    let ack = exchange(&mut c, &lab_oru(&id))
        .await
        .expect("an ACK over TLS");
    assert_eq!(ack.msa(), ("AA", id.as_str()));
    // A plain-TCP client speaking MLLP gets no ACK: the handshake fails, the connection closes.
    let mut plain = TcpStream::connect(gw.addr).await.unwrap();
    assert!(exchange(&mut plain, &lab_oru("plain")).await.is_none());
    let got = read_topic(&settings.kafka.bootstrap, &gw.topic(Feed::Lab)).await;
    assert_eq!(got.len(), 1);
    drop(c);
    gw.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
