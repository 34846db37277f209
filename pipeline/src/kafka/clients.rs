//! One constructor per kind of Kafka client dmpflow uses. Each takes its settings from
//! [`super::config`] for its [`Role`] (so `[kafka.client]` reaches every one of them, and a
//! refused key stops every one of them) and turns librdkafka's errors into messages fit to
//! print.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

use super::{Role, StageConsumer, StageContext, config};
use crate::config::Settings;

/// A Kafka client creation error fit to print. rdkafka's `ClientConfig` error carries the
/// refused setting's value, and librdkafka's own description may quote it too: for a
/// secret key (`sasl.password`, `ssl.key.password`, ...) only the key is kept.
pub fn client_error(e: KafkaError) -> anyhow::Error {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) => {
            if crate::config::is_secret_key(&key) {
                anyhow::anyhow!(
                    "Kafka client setting {key} is refused by librdkafka (its value is not shown)"
                )
            } else {
                anyhow::anyhow!("Kafka client setting {key}: {desc}")
            }
        }
        other => other.into(),
    }
}

/// A client of `role` without a context of its own; `what` names it in errors.
fn create<T: FromClientConfig>(settings: &Settings, role: Role<'_>, what: &str) -> Result<T> {
    let made = config(settings, role, &[]).and_then(|cfg| cfg.create().map_err(client_error));
    made.with_context(|| format!("creating {what}"))
}

/// The consumer of pipeline stage `name`, in the group `<group_prefix>.<name>`, subscribed
/// to `topics`; offsets committed by dmpflow only. `overrides` sit over the role's defaults
/// and under `[kafka.client]` (see [`group_consumer`]).
pub fn stage_consumer(
    settings: &Settings,
    name: &str,
    topics: &[String],
    overrides: &[(&str, &str)],
) -> Result<Arc<StageConsumer>> {
    let group = format!("{}.{}", settings.kafka.group_prefix, name);
    let consumer = group_consumer(settings, &group, overrides)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .with_context(|| format!("subscribing to {names:?}"))?;
    Ok(Arc::new(consumer))
}

/// A stage consumer in `group` (a full group id), not subscribed: for `replay`, which
/// `assign`s its window under a group of its own. `overrides` sit over the role's defaults
/// and under `[kafka.client]`, and may not touch a refused key.
pub fn group_consumer(
    settings: &Settings,
    group: &str,
    overrides: &[(&str, &str)],
) -> Result<StageConsumer> {
    config(settings, Role::StageConsumer { group }, overrides)
        .and_then(|cfg| {
            cfg.create_with_context(StageContext::default())
                .map_err(client_error)
        })
        .with_context(|| format!("creating the Kafka consumer of group {group}"))
}

/// A plain consumer for the tools, in the group `<group_prefix>.<name>` but committing
/// nothing: it `assign`s partitions and reads, leaving everybody's offsets as they were.
pub fn reader(settings: &Settings, name: &str) -> Result<BaseConsumer> {
    let group = format!("{}.{}", settings.kafka.group_prefix, name);
    let what = format!("the Kafka reader {group}");
    create(settings, Role::Reader { group: &group }, &what)
}

/// The context of the metadata client: it keeps librdkafka's last error report (a failed
/// SASL authentication, a certificate that does not verify, ...). A metadata request that
/// fails for such a cause says only "broker transport failure"; the cause comes as an error
/// event, which only a poll delivers. librdkafka's reports name neither passwords nor keys.
#[derive(Default)]
pub struct LastError(std::sync::Mutex<Option<(bool, String)>>);

impl rdkafka::ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!("librdkafka: {error}: {reason}");
        let setting = is_setting_error(&error, reason);
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((setting, reason.to_string()));
    }
}

/// Whether librdkafka's report is a setting to fix rather than an outage: the SASL
/// credentials were refused, or the broker's certificate does not verify against the CA
/// (a handshake cut short by a restarting broker is not about the certificate).
fn is_setting_error(error: &KafkaError, reason: &str) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(C::Authentication) => true,
        Some(C::SSL) => {
            let r = reason.to_ascii_lowercase();
            r.contains("certificate") || r.contains("verify")
        }
        _ => false,
    }
}

impl LastError {
    fn get(&self) -> Option<(bool, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl rdkafka::consumer::ConsumerContext for LastError {}

/// A client for metadata requests only (`topics list`, the readiness probe).
pub type MetadataClient = BaseConsumer<LastError>;

/// A client for metadata requests only (`topics list`, the readiness probe).
pub fn metadata_client(settings: &Settings) -> Result<MetadataClient> {
    config(settings, Role::Metadata, &[])
        .and_then(|cfg| {
            cfg.create_with_context(LastError::default())
                .map_err(client_error)
        })
        .context("creating the Kafka metadata client")
}

/// The cluster's metadata; a failure names the cause librdkafka reported when it reported
/// one (e.g. "SASL authentication error: Authentication failed ... invalid credentials",
/// "SSL handshake failed: ... certificate verify failed"), else the request's own error.
pub fn fetch_metadata(
    c: &MetadataClient,
    timeout: Duration,
) -> Result<rdkafka::metadata::Metadata> {
    let e = match c.fetch_metadata(None, timeout) {
        Ok(md) => return Ok(md),
        Err(e) => e,
    };
    Err(match reported_cause(c) {
        Some((_, cause)) => anyhow::anyhow!("fetching metadata: {e}; librdkafka reports: {cause}"),
        None => anyhow::Error::new(e).context("fetching metadata"),
    })
}

/// librdkafka's last error report on `c`, after up to a second of polling for it.
fn reported_cause(c: &MetadataClient) -> Option<(bool, String)> {
    for _ in 0..20 {
        if let Some(cause) = c.context().get() {
            return Some(cause);
        }
        // Delivers the pending error events to the context (no message can come: the
        // client subscribes to nothing).
        let _ = c.poll(Duration::from_millis(50));
    }
    c.context().get()
}

/// The startup check of a long-running process (`run`, `mllp`, `dlq replay`): one metadata
/// request, so that refused credentials or an untrusted certificate stop it at once with
/// the cause, instead of being retried for ever like an unavailable broker. A broker that
/// is merely unreachable passes: the caller's retries wait for it, as before.
pub fn check_credentials(settings: &Settings) -> Result<()> {
    let c = metadata_client(settings)?;
    let e = match c.fetch_metadata(None, Duration::from_secs(10)) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    match reported_cause(&c) {
        Some((true, cause)) => Err(anyhow::anyhow!(
            "the Kafka cluster refused this client's settings ({e}); librdkafka reports: {cause}"
        )),
        _ => Ok(()),
    }
}

/// The admin client (creating topics, reading their configuration).
pub fn admin(settings: &Settings) -> Result<AdminClient<DefaultClientContext>> {
    create(settings, Role::Admin, "the Kafka admin client")
}

/// The idempotent producer of the tools (`load`), acks=all: "acknowledged" means
/// replicated to the in-sync replicas.
pub fn producer(settings: &Settings) -> Result<FutureProducer> {
    producer_with(settings, "lz4", 5, 30_000)
}

/// The producer of the pipeline stages. No Kafka compression: what they write is mostly
/// documents whose CDA normalize already compressed (zstd, see `schemas::wire`), and LZ4
/// over that costs CPU for nothing. `[kafka.client] "compression.type"` still overrides it.
pub fn stage_producer(settings: &Settings) -> Result<FutureProducer> {
    producer_with(settings, "none", 5, 30_000)
}

/// The MLLP gateway's producer. A sender waits for each ACK: linger 1 ms, and a delivery
/// that outlives the ACK bound fails rather than arriving after an AE was answered.
pub fn gateway_producer(settings: &Settings, ack_timeout: Duration) -> Result<FutureProducer> {
    producer_with(settings, "lz4", 1, ack_timeout.as_millis())
}

/// The idempotent acks=all producer with its compression, linger and delivery timeout
/// chosen by the caller. `[kafka.client]` settings win over these.
pub fn producer_with(
    settings: &Settings,
    compression: &str,
    linger_ms: u64,
    message_timeout_ms: u128,
) -> Result<FutureProducer> {
    let role = Role::Producer {
        compression,
        linger_ms,
        message_timeout_ms,
    };
    create(settings, role, "the Kafka producer")
}

/// The transactional producer whose id is `<group_prefix>.<name>`: the same id in two
/// processes fences the older one, so two `dlq replay` runs cannot interleave.
pub fn transactional_producer(settings: &Settings, name: &str) -> Result<FutureProducer> {
    let id = format!("{}.{}", settings.kafka.group_prefix, name);
    let role = Role::TransactionalProducer {
        transactional_id: &id,
    };
    create(
        settings,
        role,
        &format!("the transactional Kafka producer {id}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Creating a client contacts no broker: these run without Kafka. A stream consumer
    // needs a Tokio runtime to be created in, hence `tokio::test`.

    fn with_client(key: &str, value: &str) -> Settings {
        let mut s = Settings::default();
        s.kafka.client.insert(key.into(), value.into());
        s
    }

    /// Each constructor, its client dropped once made.
    type Make = fn(&Settings) -> Result<()>;
    const MAKERS: [(&str, Make); 9] = [
        ("stage consumer", |s| {
            stage_consumer(s, "n", &["t".to_string()], &[]).map(drop)
        }),
        ("group consumer", |s| {
            group_consumer(s, "g", &[("fetch.wait.max.ms", "100")]).map(drop)
        }),
        ("reader", |s| reader(s, "r").map(drop)),
        ("metadata", |s| metadata_client(s).map(drop)),
        ("admin", |s| admin(s).map(drop)),
        ("producer", |s| producer(s).map(drop)),
        ("stage producer", |s| stage_producer(s).map(drop)),
        ("gateway producer", |s| {
            gateway_producer(s, Duration::from_secs(1)).map(drop)
        }),
        ("transactional", |s| {
            transactional_producer(s, "t").map(drop)
        }),
    ];

    #[tokio::test]
    async fn every_role_s_defaults_are_accepted_by_librdkafka() {
        for (what, make) in MAKERS {
            make(&Settings::default()).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        }
    }

    #[tokio::test]
    async fn every_constructor_refuses_a_refused_key_and_passes_the_others_on() {
        let refused = with_client("isolation.level", "read_uncommitted");
        // An unknown key reaches librdkafka, which names it: proof it was passed on.
        let unknown = with_client("dmpflow.no.such.key", "1");
        for (what, make) in MAKERS {
            let e = format!("{:#}", make(&refused).unwrap_err());
            assert!(e.contains("\"isolation.level\""), "{what}: {e}");
            assert!(!e.contains("read_uncommitted"), "{what}: {e}");
            let e = format!("{:#}", make(&unknown).unwrap_err());
            assert!(e.contains("dmpflow.no.such.key"), "{what}: {e}");
        }
    }

    /// CPU time of the calling thread so far, from the kernel's scheduler statistics.
    fn thread_cpu() -> Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
            .expect("/proc/thread-self/schedstat (Linux) gives a thread's CPU time");
        let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok());
        Duration::from_nanos(ns.expect("schedstat starts with the ns spent on a CPU"))
    }

    /// A poll with less than a millisecond left waits for it instead of spinning: rdkafka
    /// 0.39 truncated the time left to a 0 ms poll and looped on it until the deadline
    /// passed, which each producer's polling thread did at the end of most of its 100 ms
    /// polls (vendor/README.md; bench/ANALYSIS.md "Session 22"). Fails on the published
    /// crate: spinning, the thread is on a CPU for most of each 0.9 ms poll.
    #[test]
    fn a_sub_millisecond_poll_waits_instead_of_spinning() {
        let producer = stage_producer(&Settings::default()).unwrap();
        let (wall, cpu) = (std::time::Instant::now(), thread_cpu());
        for _ in 0..300 {
            producer.poll(Duration::from_micros(900));
        }
        let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
        // Waiting, each poll is one wake-up: microseconds of CPU out of its ~1 ms.
        assert!(
            cpu < wall / 5,
            "300 polls of 0.9 ms took {cpu:?} of CPU in {wall:?}: the poll spins"
        );
    }

    #[test]
    fn a_secret_value_librdkafka_refuses_is_not_printed() {
        // librdkafka refuses an unknown key; one named like a secret is shown without
        // librdkafka's description, which may quote the value.
        let e = format!(
            "{:#}",
            admin(&with_client("sasl.password.x", "hunter2")).unwrap_err()
        );
        assert!(
            e.contains("sasl.password.x") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
