//! Settings of every command, merged in one place with a clear precedence:
//! flags > environment (`DMPFLOW_*`) > TOML file (`--config`) > `.stack.env` written by
//! `scripts/stack up` > built-in defaults. Kafka client settings are passed through
//! verbatim (`[kafka.client]` in TOML, `DMPFLOW_KAFKA__<key>` in the environment) so TLS
//! and SASL need no code change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub topics: TopicSettings,
    /// postgres://... or sqlite://path
    pub database_url: String,
    pub limits: Limits,
    /// Accept the test/demo INS OIDs (.10/.11). Off in production.
    pub accept_test_oids: bool,
    /// Address of /metrics and /health/*.
    pub metrics_addr: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap: String,
    /// Consumer groups are `<group_prefix>.<stage>`.
    pub group_prefix: String,
    /// Extra librdkafka settings, passed through unchanged (security.protocol, sasl.*, ssl.*).
    pub client: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicSettings {
    /// Feed topics are `<feed_prefix><feed>`.
    pub feed_prefix: String,
    pub documents: String,
    pub routed: String,
    pub quarantine: String,
    pub dlq: String,
    pub partitions: i32,
    pub replication: i32,
    /// Retention of every topic, in ms (-1 = forever).
    pub retention_ms: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Messages handled per batch by a stage (its in-flight bound).
    pub batch_messages: usize,
    /// Bytes handled per batch by a stage.
    pub batch_bytes: usize,
    /// How long a stage waits to fill a batch before handling what it has.
    pub batch_linger_ms: u64,
    /// librdkafka prefetch bound per consumer (queued.max.messages.kbytes).
    pub consumer_queue_kbytes: usize,
    /// librdkafka producer queue bound (queue.buffering.max.kbytes).
    pub producer_queue_kbytes: usize,
    /// Largest HL7 message accepted by normalize.
    pub max_message_bytes: usize,
    /// Largest CDA document normalize builds (checked before building): a message that
    /// would make a larger one is dead-lettered `cda.too_large`. Also sizes the records of
    /// the stages, hence the topics' `max.message.bytes` (see `runtime::check_record_limits`).
    pub max_cda_bytes: usize,
    /// Most entries (results, lines, observations) one document may carry; over it the
    /// message is dead-lettered `cda.too_large`.
    pub max_entries: usize,
    /// Upper bound for a graceful shutdown.
    pub shutdown_timeout_ms: u64,
    /// Store consumers one `run` process starts in the store group (each owns some of the
    /// partitions and writes its own transactions). The store waits on the database most
    /// of the time, so two writers nearly double its rate on PostgreSQL. On SQLite, which
    /// has a single writer, it is always 1.
    pub store_consumers: usize,
    /// Normalize consumers one `run` process starts in the normalize group. Normalize is
    /// CPU work (HL7 → CDA → zstd); on the 2-core reference machine a second one gained no
    /// throughput (the cores were already busy with the other stages, Kafka and PostgreSQL)
    /// and cost ~60 MB of RSS, hence 1. More cores: raise it.
    pub normalize_consumers: usize,
    /// Every this many seconds the route stage re-routes the open `ins.unknown` quarantine
    /// cases whose patient the registry knows by now (a document that ran ahead of its
    /// patient's identity message is then filed without anyone releasing it). 0: never.
    pub quarantine_retry_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kafka: KafkaSettings::default(),
            topics: TopicSettings::default(),
            database_url: "sqlite://dmpflow.db".into(),
            limits: Limits::default(),
            accept_test_oids: false,
            metrics_addr: "127.0.0.1:9464".into(),
        }
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            bootstrap: "127.0.0.1:9092".into(),
            group_prefix: "dmpflow".into(),
            client: BTreeMap::new(),
        }
    }
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            feed_prefix: "dmp.feed.".into(),
            documents: dmpflow_schemas::topics::DOCUMENTS.into(),
            routed: dmpflow_schemas::topics::ROUTED.into(),
            quarantine: dmpflow_schemas::topics::QUARANTINE.into(),
            dlq: dmpflow_schemas::topics::DLQ.into(),
            partitions: 4,
            replication: 1,
            retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            batch_messages: 500,
            batch_bytes: 16 << 20,
            batch_linger_ms: 20,
            consumer_queue_kbytes: 16 << 10,
            producer_queue_kbytes: 64 << 10,
            max_message_bytes: 16 << 20,
            // normalize's own defaults, so the library and the service agree.
            max_cda_bytes: dmpflow_normalize::Config::default().max_cda_bytes,
            max_entries: dmpflow_normalize::Config::default().max_entries,
            shutdown_timeout_ms: 15_000,
            store_consumers: 2,
            normalize_consumers: 1,
            quarantine_retry_seconds: 5,
        }
    }
}

impl Settings {
    /// How many store consumers `run` starts: `limits.store_consumers` (at least 1), and 1
    /// on SQLite.
    pub fn store_consumers(&self) -> usize {
        if self.database_url.starts_with("sqlite:") {
            1
        } else {
            self.limits.store_consumers.max(1)
        }
    }
}

impl TopicSettings {
    pub fn feed(&self, feed: dmpflow_schemas::Feed) -> String {
        format!("{}{}", self.feed_prefix, feed.as_str())
    }
    pub fn feeds(&self) -> Vec<String> {
        dmpflow_schemas::Feed::ALL
            .iter()
            .map(|f| self.feed(*f))
            .collect()
    }
    pub fn feed_of(&self, topic: &str) -> Option<dmpflow_schemas::Feed> {
        topic.strip_prefix(&self.feed_prefix)?.parse().ok()
    }
}

/// Reads `KEY=VALUE` lines (the env file of `scripts/stack up`); `#` starts a comment.
pub fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches('"').trim_matches('\'');
                out.insert(k.trim().to_string(), v.to_string());
            }
        }
    }
    out
}

/// Finds `.stack.env` in the current directory or its parents.
pub fn find_stack_env() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join(".stack.env");
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

impl Settings {
    /// Loads settings: defaults, then `.stack.env`, then the TOML file, then the environment.
    /// Flags are applied by the caller afterwards.
    pub fn load(file: Option<&Path>) -> Result<Settings> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Settings::default(),
        };
        // The stack's env file only fills what the TOML file did not set explicitly.
        if let Some(env_file) = find_stack_env() {
            let vars = read_env_file(&env_file);
            if file.is_none() {
                s.apply_vars(&vars);
            }
        }
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("DMPFLOW_"))
            .collect();
        s.apply_vars(&env);
        Ok(s)
    }

    fn apply_vars(&mut self, vars: &BTreeMap<String, String>) {
        for (k, v) in vars {
            match k.as_str() {
                "DMPFLOW_KAFKA_BOOTSTRAP" => self.kafka.bootstrap = v.clone(),
                "DMPFLOW_DATABASE_URL" => self.database_url = v.clone(),
                "DMPFLOW_GROUP_PREFIX" => self.kafka.group_prefix = v.clone(),
                "DMPFLOW_METRICS_ADDR" => self.metrics_addr = v.clone(),
                "DMPFLOW_ACCEPT_TEST_OIDS" => self.accept_test_oids = v == "1" || v == "true",
                "DMPFLOW_FEED_PREFIX" => self.topics.feed_prefix = v.clone(),
                "DMPFLOW_TOPIC_DOCUMENTS" => self.topics.documents = v.clone(),
                "DMPFLOW_TOPIC_ROUTED" => self.topics.routed = v.clone(),
                "DMPFLOW_TOPIC_QUARANTINE" => self.topics.quarantine = v.clone(),
                "DMPFLOW_TOPIC_DLQ" => self.topics.dlq = v.clone(),
                "DMPFLOW_NORMALIZE_CONSUMERS" => {
                    if let Ok(n) = v.parse() {
                        self.limits.normalize_consumers = n
                    }
                }
                "DMPFLOW_STORE_CONSUMERS" => {
                    if let Ok(n) = v.parse() {
                        self.limits.store_consumers = n
                    }
                }
                "DMPFLOW_BATCH_MESSAGES" => {
                    if let Ok(n) = v.parse() {
                        self.limits.batch_messages = n
                    }
                }
                _ => {
                    if let Some(key) = k.strip_prefix("DMPFLOW_KAFKA__") {
                        // DMPFLOW_KAFKA__SECURITY_PROTOCOL -> security.protocol
                        let key = key.to_ascii_lowercase().replace('_', ".");
                        self.kafka.client.insert(key, v.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_passes_kafka_settings_through() {
        let s: Settings = toml::from_str(
            r#"
            database_url = "postgres://x@127.0.0.1/db"
            [kafka]
            bootstrap = "10.0.0.1:9093"
            [kafka.client]
            "security.protocol" = "SASL_SSL"
            [topics]
            partitions = 12
            "#,
        )
        .unwrap();
        assert_eq!(s.kafka.bootstrap, "10.0.0.1:9093");
        assert_eq!(s.kafka.client["security.protocol"], "SASL_SSL");
        assert_eq!(s.topics.partitions, 12);
        assert_eq!(s.topics.documents, "dmp.documents");
        assert_eq!(s.limits.batch_messages, 500);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("databse_url = 'x'").is_err());
    }

    #[test]
    fn env_vars_map_to_settings() {
        let mut s = Settings::default();
        let mut vars = BTreeMap::new();
        vars.insert("DMPFLOW_KAFKA__SASL_MECHANISM".into(), "PLAIN".into());
        vars.insert("DMPFLOW_DATABASE_URL".into(), "sqlite://x.db".into());
        s.apply_vars(&vars);
        assert_eq!(s.kafka.client["sasl.mechanism"], "PLAIN");
        assert_eq!(s.database_url, "sqlite://x.db");
    }

    #[test]
    fn feed_topics_round_trip() {
        let t = TopicSettings::default();
        assert_eq!(t.feed(dmpflow_schemas::Feed::Lab), "dmp.feed.lab");
        assert_eq!(
            t.feed_of("dmp.feed.pharmacy"),
            Some(dmpflow_schemas::Feed::Pharmacy)
        );
        assert_eq!(t.feed_of("dmp.documents"), None);
    }
}
