//! The one recipe that configures every Kafka client dmpflow creates, whatever its role.
//! A client's librdkafka settings are laid in three layers, each over the one before:
//!
//! 1. its role's defaults ([`Role`]): what makes a stage consumer commit only by hand, a
//!    producer idempotent with acks=all, a stage fetch in bulk;
//! 2. what dmpflow derives from its settings: `bootstrap.servers` from `kafka.bootstrap`,
//!    the group id, the memory bounds from `[limits]` (`queued.max.messages.kbytes`,
//!    `queue.buffering.max.kbytes`), the transactional id; then a caller's overrides;
//! 3. the operator's `[kafka.client]` (`DMPFLOW_KAFKA__<key>`), LAST, so TLS, SASL,
//!    `client.id`, `message.max.bytes`, timeouts and fetch tuning reach every client
//!    unchanged, whatever its role.
//!
//! Except the keys of [`REFUSED`]: dmpflow's guarantees (nothing committed before it is
//! durable, "acknowledged" meaning replicated, nothing read twice by one group's members)
//! rest on their values, so neither silently overriding the operator nor silently letting
//! them win is right. Such a key is refused with an error that names it and says why, never
//! its value (it may be a secret).

use anyhow::Result;
use rdkafka::config::ClientConfig;

use crate::config::Settings;

/// What a client is for. Each role brings its own librdkafka defaults (see [`config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// A consumer in `group` whose offsets dmpflow commits itself, once a batch's outputs
    /// are durable: the pipeline stages (group `<group_prefix>.<stage>`) and `replay` (a
    /// group of its own).
    StageConsumer { group: &'a str },
    /// A consumer that `assign`s partitions and commits nothing (the `dlq` tools), so that
    /// reading changes nobody's offsets. `group` only because librdkafka wants one.
    Reader { group: &'a str },
    /// A client that only asks the broker for metadata (`topics list`, the readiness probe).
    Metadata,
    /// The idempotent acks=all producer, with the compression, linger and delivery timeout
    /// of its use (the stages, `load`, the MLLP gateway).
    Producer {
        compression: &'a str,
        linger_ms: u64,
        message_timeout_ms: u128,
    },
    /// The transactional producer of `dlq replay`: a fixed id fences a second replay.
    TransactionalProducer { transactional_id: &'a str },
    /// The admin client: topics and their configuration.
    Admin,
}

/// Offsets move only by dmpflow's explicit commits, and only committed data is read.
const COMMIT_BY_HAND: [(&str, &str); 3] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("isolation.level", "read_committed"),
];

/// "Acknowledged" means written to every in-sync replica, once, in order.
const DURABLE_SENDS: [(&str, &str); 2] = [("enable.idempotence", "true"), ("acks", "all")];

impl Role<'_> {
    /// Layer 1: the librdkafka settings that make a client fit its role.
    fn defaults(&self) -> Vec<(&'static str, String)> {
        let fixed = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
            pairs.iter().map(|&(k, v)| (k, v.to_string())).collect()
        };
        match *self {
            Role::StageConsumer { .. } => {
                let mut v = fixed(&COMMIT_BY_HAND);
                v.extend(fixed(&[
                    // A new group starts at the oldest retained message: nothing written
                    // before its first commit is skipped.
                    ("auto.offset.reset", "earliest"),
                    ("session.timeout.ms", "10000"),
                    ("heartbeat.interval.ms", "1000"),
                    // Fetch in bulk: the broker answers once 256 KiB are there or after
                    // 10 ms. With librdkafka's defaults (1 byte, up to 500 ms) a trickle of
                    // messages made every consumer send a fetch per few messages; at 2k
                    // msg/s the broker then spent a fifth of the machine answering them, and
                    // p99 end-to-end went from ~0.5 s to 1-2 s (bench/ANALYSIS.md). A stage
                    // waits `batch_linger_ms` for its batch anyway.
                    ("fetch.wait.max.ms", "10"),
                    ("fetch.min.bytes", "262144"),
                ]));
                v
            }
            Role::Reader { .. } => fixed(&COMMIT_BY_HAND),
            Role::Producer {
                compression,
                linger_ms,
                message_timeout_ms,
            } => {
                let mut v = fixed(&DURABLE_SENDS);
                v.extend([
                    ("linger.ms", linger_ms.to_string()),
                    ("compression.type", compression.to_string()),
                    ("message.timeout.ms", message_timeout_ms.to_string()),
                ]);
                v
            }
            // No queue bound: a chunk of replayed letters may be large, and a full queue
            // would fail the replay instead of waiting.
            Role::TransactionalProducer { .. } => fixed(&DURABLE_SENDS),
            Role::Metadata | Role::Admin => Vec::new(),
        }
    }

    /// Layer 2: what dmpflow derives from its settings for this role.
    fn derived(&self, settings: &Settings) -> Vec<(&'static str, String)> {
        let mut v = vec![("bootstrap.servers", settings.kafka.bootstrap.clone())];
        let limits = &settings.limits;
        match *self {
            Role::StageConsumer { group } => v.extend([
                ("group.id", group.to_string()),
                (
                    "queued.max.messages.kbytes",
                    limits.consumer_queue_kbytes.to_string(),
                ),
            ]),
            Role::Reader { group } => v.push(("group.id", group.to_string())),
            Role::Producer { .. } => v.push((
                "queue.buffering.max.kbytes",
                limits.producer_queue_kbytes.to_string(),
            )),
            Role::TransactionalProducer { transactional_id } => {
                v.push(("transactional.id", transactional_id.to_string()))
            }
            Role::Metadata | Role::Admin => {}
        }
        v
    }
}

/// The librdkafka keys `[kafka.client]` may not set, each with why dmpflow must control
/// it. The same list holds for every role: a setting `run` refuses is refused by every
/// command, so a configuration that works for one works for all. Aliases are listed too
/// (librdkafka would take them for the key they stand for).
pub const REFUSED: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "dmpflow sets it from kafka.bootstrap (DMPFLOW_KAFKA_BOOTSTRAP, --bootstrap); set it \
         there, so that every client has one source for it",
    ),
    (
        "metadata.broker.list",
        "an alias of bootstrap.servers, which dmpflow sets from kafka.bootstrap \
         (DMPFLOW_KAFKA_BOOTSTRAP, --bootstrap); set it there",
    ),
    (
        "group.id",
        "dmpflow names each consumer group itself (<kafka.group_prefix>.<stage>, and groups \
         of their own for replay and the DLQ tools); one group for every consumer would mix \
         the stages' offsets. Set kafka.group_prefix (DMPFLOW_GROUP_PREFIX) instead",
    ),
    (
        "group.instance.id",
        "every consumer of a process would share one static member id: two consumers of \
         the same group in one process (limits.store_consumers) would fence each other",
    ),
    (
        "enable.auto.commit",
        "dmpflow commits offsets itself, only once a batch's outputs are durable; an \
         automatic commit could mark messages done before they are written, and a crash \
         would then lose them",
    ),
    (
        "auto.commit.enable",
        "the old name of enable.auto.commit: dmpflow commits offsets itself, only once a \
         batch's outputs are durable",
    ),
    (
        "enable.auto.offset.store",
        "only dmpflow's explicit commits may record progress; an automatic offset store \
         moves the consumer's position ahead of what is durable",
    ),
    (
        "auto.offset.reset",
        "a stage group without a committed offset must start at the oldest retained \
         message: any other reset would skip the messages written before its first commit \
         (or after its offsets expired)",
    ),
    (
        "isolation.level",
        "consumers must read committed data only: otherwise the messages of an aborted \
         `dlq replay` transaction would be handled",
    ),
    (
        "enable.partition.eof",
        "dmpflow's readers take a consumer error for a failure: end-of-partition events \
         would fail `dlq list` and cut the stages' batches short",
    ),
    (
        "enable.idempotence",
        "producer retries must never duplicate or reorder records, and the transactional \
         producer of `dlq replay` requires it",
    ),
    (
        "acks",
        "\"acknowledged\" must mean written to every in-sync replica (acks=all): the \
         gateway's ACKs and the stages' commits rest on it",
    ),
    (
        "request.required.acks",
        "an alias of acks: \"acknowledged\" must mean written to every in-sync replica \
         (acks=all)",
    ),
    (
        "transactional.id",
        "only `dlq replay` is transactional, with a fixed id that fences a second replay; on \
         any other producer it would make every send outside a transaction fail",
    ),
];

/// Refuses any of `keys` that is in [`REFUSED`], naming each with its reason and where it
/// came from (`source`), never its value. Compared without case or surrounding blanks, so
/// a near spelling cannot slip past.
fn refuse<'k>(source: &str, keys: impl IntoIterator<Item = &'k str>) -> Result<()> {
    let found: Vec<String> = keys
        .into_iter()
        .filter_map(|key| {
            let k = key.trim().to_ascii_lowercase();
            let (_, why) = REFUSED.iter().find(|(r, _)| *r == k)?;
            let env = format!(
                "DMPFLOW_KAFKA__{}",
                k.to_ascii_uppercase().replace('.', "_")
            );
            Some(format!("\"{k}\" ({env}) is refused: {why}"))
        })
        .collect();
    anyhow::ensure!(
        found.is_empty(),
        "{source} {}. Remove {} (the value{} not shown)",
        found.join("; "),
        if found.len() == 1 { "it" } else { "them" },
        if found.len() == 1 { " is" } else { "s are" },
    );
    Ok(())
}

/// The settings of a client in `role`: its defaults, then what dmpflow derives, then
/// `overrides` (the caller's own, e.g. `replay`'s), then `[kafka.client]`. A key of
/// [`REFUSED`] in `[kafka.client]` or in `overrides` is an error.
pub fn config(
    settings: &Settings,
    role: Role<'_>,
    overrides: &[(&str, &str)],
) -> Result<ClientConfig> {
    refuse(
        "[kafka.client]",
        settings.kafka.client.keys().map(String::as_str),
    )?;
    refuse(
        "a dmpflow override (a bug: the role fixes these keys)",
        overrides.iter().map(|(k, _)| *k),
    )?;
    Ok(layered(settings, role, overrides))
}

/// The three layers, unchecked: each `set` overwrites what an earlier layer set.
fn layered(settings: &Settings, role: Role<'_>, overrides: &[(&str, &str)]) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    for (k, v) in role.defaults().into_iter().chain(role.derived(settings)) {
        cfg.set(k, v);
    }
    for (k, v) in overrides {
        cfg.set(*k, *v);
    }
    for (k, v) in &settings.kafka.client {
        cfg.set(k, v);
    }
    cfg
}

/// Transitional, for `replay`'s consumer until it calls [`super::group_consumer`]: the
/// bootstrap servers and `[kafka.client]`, UNCHECKED against [`REFUSED`] (it cannot fail),
/// for a caller that sets its own role settings afterwards. `replay` still meets the check
/// before it writes anything, when its record limits are read with the admin client.
pub fn client_config(settings: &Settings) -> ClientConfig {
    layered(settings, Role::Metadata, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_client(pairs: &[(&str, &str)]) -> Settings {
        let mut s = Settings::default();
        for (k, v) in pairs {
            s.kafka.client.insert(k.to_string(), v.to_string());
        }
        s
    }

    const STAGE: Role<'static> = Role::StageConsumer {
        group: "g.normalize",
    };

    fn every_role() -> [Role<'static>; 6] {
        [
            STAGE,
            Role::Reader {
                group: "g.dlq-reader",
            },
            Role::Metadata,
            Role::Producer {
                compression: "lz4",
                linger_ms: 5,
                message_timeout_ms: 30_000,
            },
            Role::TransactionalProducer {
                transactional_id: "g.dlq-replay",
            },
            Role::Admin,
        ]
    }

    #[test]
    fn defaults_then_derived_then_overrides_then_kafka_client() {
        let mut s = Settings::default();
        s.limits.consumer_queue_kbytes = 4096;
        // A role default, overridden by the caller, then by the operator.
        let cfg = config(&s, STAGE, &[("fetch.wait.max.ms", "50")]).unwrap();
        assert_eq!(
            cfg.get("fetch.wait.max.ms"),
            Some("50"),
            "override > default"
        );
        assert_eq!(cfg.get("fetch.min.bytes"), Some("262144"), "default kept");
        assert_eq!(
            cfg.get("queued.max.messages.kbytes"),
            Some("4096"),
            "derived"
        );
        s.kafka
            .client
            .insert("fetch.wait.max.ms".into(), "99".into());
        s.kafka
            .client
            .insert("queued.max.messages.kbytes".into(), "2048".into());
        let cfg = config(&s, STAGE, &[("fetch.wait.max.ms", "50")]).unwrap();
        assert_eq!(
            cfg.get("fetch.wait.max.ms"),
            Some("99"),
            "[kafka.client] last"
        );
        assert_eq!(
            cfg.get("queued.max.messages.kbytes"),
            Some("2048"),
            "[kafka.client] > derived"
        );
        // A producer default and a derived bound, each tuned by the operator.
        let mut s = with_client(&[
            ("compression.type", "zstd"),
            ("queue.buffering.max.kbytes", "1024"),
        ]);
        s.limits.producer_queue_kbytes = 8192;
        let producer = Role::Producer {
            compression: "none",
            linger_ms: 5,
            message_timeout_ms: 30_000,
        };
        let cfg = config(&s, producer, &[]).unwrap();
        assert_eq!(cfg.get("compression.type"), Some("zstd"));
        assert_eq!(cfg.get("queue.buffering.max.kbytes"), Some("1024"));
        assert_eq!(cfg.get("linger.ms"), Some("5"));
    }

    #[test]
    fn tunable_settings_reach_every_role() {
        let s = with_client(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.password", "s3cret"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("client.id", "dmpflow-test"),
            ("message.max.bytes", "17825792"),
            ("session.timeout.ms", "6000"),
        ]);
        for role in every_role() {
            let cfg = config(&s, role, &[]).unwrap();
            for (k, v) in &s.kafka.client {
                assert_eq!(cfg.get(k), Some(v.as_str()), "{role:?}: {k}");
            }
            assert_eq!(
                cfg.get("bootstrap.servers"),
                Some(s.kafka.bootstrap.as_str()),
                "{role:?}"
            );
        }
    }

    #[test]
    fn a_refused_key_is_an_error_naming_it_and_why_never_its_value() {
        for (key, _) in REFUSED {
            let s = with_client(&[("security.protocol", "SSL"), (key, "s3cret-value")]);
            for role in every_role() {
                let e = format!("{:#}", config(&s, role, &[]).unwrap_err());
                assert!(e.contains(&format!("\"{key}\"")), "{role:?}: {e}");
                assert!(e.contains("[kafka.client]"), "{e}");
                assert!(!e.contains("s3cret-value"), "never the value: {e}");
                assert!(
                    !e.contains("security.protocol"),
                    "only the refused key: {e}"
                );
            }
        }
        // The reason, and the environment spelling of the key.
        let e = config(&with_client(&[("enable.auto.commit", "true")]), STAGE, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DMPFLOW_KAFKA__ENABLE_AUTO_COMMIT"), "{e}");
        assert!(e.contains("only once a batch's outputs are durable"), "{e}");
        // Case and blanks do not slip past; several are all named at once.
        let s = with_client(&[("Group.Id", "x"), (" acks ", "1")]);
        let e = config(&s, Role::Admin, &[]).unwrap_err().to_string();
        assert!(e.contains("\"group.id\"") && e.contains("\"acks\""), "{e}");
    }

    #[test]
    fn an_override_may_not_set_a_refused_key_either() {
        let e = config(
            &Settings::default(),
            STAGE,
            &[("enable.auto.commit", "true")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("enable.auto.commit") && e.contains("override"),
            "{e}"
        );
    }

    fn assert_has(cfg: &ClientConfig, what: &str, pairs: &[(&str, &str)]) {
        for (k, v) in pairs {
            assert_eq!(cfg.get(k), Some(*v), "{what}: {k}");
        }
    }

    #[test]
    fn each_role_gets_its_defaults() {
        let mut s = Settings::default();
        s.kafka.bootstrap = "k1:9092".into();
        s.limits.consumer_queue_kbytes = 1234;
        s.limits.producer_queue_kbytes = 5678;
        let get = |role: Role<'_>| config(&s, role, &[]).unwrap();

        let c = get(STAGE);
        assert_has(
            &c,
            "stage consumer",
            &[
                ("group.id", "g.normalize"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
                ("fetch.wait.max.ms", "10"),
                ("fetch.min.bytes", "262144"),
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "1000"),
                ("queued.max.messages.kbytes", "1234"),
                ("bootstrap.servers", "k1:9092"),
            ],
        );

        let r = get(Role::Reader {
            group: "g.dlq-reader",
        });
        assert_has(
            &r,
            "reader",
            &[
                ("group.id", "g.dlq-reader"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
            ],
        );
        assert_eq!(r.get("fetch.min.bytes"), None, "a reader does not batch");

        let p = get(Role::Producer {
            compression: "lz4",
            linger_ms: 1,
            message_timeout_ms: 2500,
        });
        assert_has(
            &p,
            "producer",
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "1"),
                ("compression.type", "lz4"),
                ("message.timeout.ms", "2500"),
                ("queue.buffering.max.kbytes", "5678"),
            ],
        );
        assert_eq!(p.get("group.id"), None);

        let t = get(Role::TransactionalProducer {
            transactional_id: "g.dlq-replay",
        });
        assert_has(
            &t,
            "transactional producer",
            &[
                ("transactional.id", "g.dlq-replay"),
                ("enable.idempotence", "true"),
                ("acks", "all"),
            ],
        );
        assert_eq!(t.get("queue.buffering.max.kbytes"), None);

        for role in [Role::Admin, Role::Metadata] {
            let c = get(role);
            assert_eq!(c.get("bootstrap.servers"), Some("k1:9092"));
            for k in ["group.id", "acks", "enable.auto.commit", "linger.ms"] {
                assert_eq!(c.get(k), None, "{role:?}: {k}");
            }
        }
    }

    #[test]
    fn the_transitional_base_is_bootstrap_and_kafka_client() {
        let s = with_client(&[("client.id", "x"), ("group.id", "unchecked")]);
        let c = client_config(&s);
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(c.get("client.id"), Some("x"));
        assert_eq!(c.get("group.id"), Some("unchecked"));
        assert_eq!(c.get("acks"), None);
    }
}
