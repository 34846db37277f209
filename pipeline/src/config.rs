//! Settings of every command, merged in one place with a clear precedence:
//! flags > environment (`DMPFLOW_*`) > TOML file (`--config`) > env file (`--env-file`, or
//! `.stack.env` written by `scripts/stack up` in the current directory) > built-in defaults.
//! Unknown `DMPFLOW_*` names and values that do not parse are startup errors that name the
//! variable; nothing printed from here carries a secret (URL userinfo and secret query
//! parameters, secret librdkafka values, TOML line text). Kafka client settings are passed through
//! verbatim (`[kafka.client]` in TOML, `DMPFLOW_KAFKA__<key>` in the environment) to every
//! Kafka client, so TLS and SASL need no code change; the few keys dmpflow must control for
//! correctness are refused when a client is made (`kafka::REFUSED`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Clone, Deserialize)]
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

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap: String,
    /// Consumer groups are `<group_prefix>.<stage>`.
    pub group_prefix: String,
    /// Extra librdkafka settings, passed through unchanged to every client, over dmpflow's
    /// own (security.protocol, sasl.*, ssl.*, client.id, message.max.bytes, timeouts); the
    /// keys of `kafka::REFUSED` are refused instead.
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
    /// librdkafka producer queue bound (queue.buffering.max.kbytes) of the process's one
    /// stage producer, which all its stages share.
    pub producer_queue_kbytes: usize,
    /// Largest HL7 message accepted by normalize.
    pub max_message_bytes: usize,
    /// Largest CDA document normalize builds (checked before building): a message that
    /// would make a larger one is dead-lettered `cda.too_large`. Also sizes the records of
    /// the stages, hence the topics' `max.message.bytes` (see `kafka::limits`).
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
    /// Normalize consumers one `run` process starts in the normalize group. Unset: 2 when
    /// normalize routes what it yields itself on PostgreSQL (the fused task normalizes then
    /// routes, one after the other; a second consumer gives the parallelism of the two stages
    /// back: +7% sustained rate, -30% latency, same memory on the 2-core reference machine,
    /// bench/ANALYSIS.md), else 1 (unfused, a second one cost 30% of the rate there: it feeds
    /// route faster than route drains). More cores: raise it.
    pub normalize_consumers: Option<usize>,
    /// The normalize stage routes what it yields itself (`stages::fused`), instead of
    /// producing it to `dmp.documents` for the route stage: one Kafka hop fewer per
    /// document. It then needs the database (the registry). The route stage still serves
    /// `dmp.documents` (what is there from before, `replay --stage normalize`). Unset: on for
    /// `run --stage all` (one process with every stage's access anyway), off for `run --stage
    /// normalize` (a split deployment keeps normalize away from the database and the routed
    /// topics: least privilege). See [`Settings::for_stage`].
    pub route_in_normalize: Option<bool>,
    /// Every this many seconds the route stage re-routes the open `ins.unknown` quarantine
    /// cases whose patient the registry knows by now (a document that ran ahead of its
    /// patient's identity message is then filed without anyone releasing it). 0: never.
    pub quarantine_retry_seconds: u64,
}

/// The settings with their secrets hidden (database URL userinfo and query, secret
/// `[kafka.client]` values).
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("kafka", &self.kafka)
            .field("topics", &self.topics)
            .field("database_url", &redact_url(&self.database_url))
            .field("limits", &self.limits)
            .field("accept_test_oids", &self.accept_test_oids)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
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
            normalize_consumers: None,
            route_in_normalize: None,
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

    /// Whether normalize routes what it yields itself: `limits.route_in_normalize` as
    /// resolved by [`Settings::for_stage`] (unset and unresolved: off).
    pub fn route_in_normalize(&self) -> bool {
        self.limits.route_in_normalize.unwrap_or(false)
    }

    /// How many normalize consumers `run` starts: `limits.normalize_consumers` (at least 1),
    /// unset 2 when normalize routes itself on PostgreSQL, else 1.
    pub fn normalize_consumers(&self) -> usize {
        let fused_on_postgres =
            self.route_in_normalize() && !self.database_url.starts_with("sqlite:");
        self.limits
            .normalize_consumers
            .unwrap_or(if fused_on_postgres { 2 } else { 1 })
            .max(1)
    }

    /// The settings of a `run` of every stage in one process (`all`) or of one of them: an
    /// unset `limits.route_in_normalize` is on for every stage in one process, off otherwise.
    /// What the operator set is kept either way.
    pub fn for_stage(&self, all_in_one_process: bool) -> Settings {
        let mut s = self.clone();
        s.limits.route_in_normalize =
            Some(s.limits.route_in_normalize.unwrap_or(all_in_one_process));
        s
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
/// A file that cannot be read is an error: it was named on purpose (or found in the
/// current directory), and silently running without it would use other settings.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the env file {}", path.display()))?;
    let mut out = BTreeMap::new();
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
    Ok(out)
}

/// The env file to apply: `explicit` (`--env-file` / `DMPFLOW_ENV_FILE`) if given, else
/// `.stack.env` in the current directory only. Never a parent directory's: a file planted
/// higher up the tree must not be able to change the database or enable the test OIDs.
pub fn env_file_to_load(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let local = PathBuf::from(".stack.env");
            local.is_file().then_some(local)
        }
    }
}

/// Every `DMPFLOW_*` name something reads. An unknown one is a startup error: a typo
/// (`DMPFLOW_DATABSE_URL`) must not silently leave the default in place.
/// The names the binary reads itself (here, through clap `env =`, or `DMPFLOW_LOG`) come
/// first; then those only the scripts, tests and benches read, which share the
/// environment (and `.stack.env`) with the binary. `DMPFLOW_KAFKA__<key>` is a prefix.
pub const KNOWN_VARS: &[&str] = &[
    // Settings (apply_vars).
    "DMPFLOW_KAFKA_BOOTSTRAP",
    "DMPFLOW_DATABASE_URL",
    "DMPFLOW_GROUP_PREFIX",
    "DMPFLOW_METRICS_ADDR",
    "DMPFLOW_ACCEPT_TEST_OIDS",
    "DMPFLOW_FEED_PREFIX",
    "DMPFLOW_TOPIC_DOCUMENTS",
    "DMPFLOW_TOPIC_ROUTED",
    "DMPFLOW_TOPIC_QUARANTINE",
    "DMPFLOW_TOPIC_DLQ",
    "DMPFLOW_NORMALIZE_CONSUMERS",
    "DMPFLOW_ROUTE_IN_NORMALIZE",
    "DMPFLOW_STORE_CONSUMERS",
    "DMPFLOW_BATCH_MESSAGES",
    "DMPFLOW_MAX_MESSAGE_BYTES",
    "DMPFLOW_MAX_CDA_BYTES",
    "DMPFLOW_MAX_ENTRIES",
    // Read by main (clap `env =`, the log filter, the env file).
    "DMPFLOW_CONFIG",
    "DMPFLOW_ENV_FILE",
    "DMPFLOW_LOG",
    // Read by `dmpflow mllp` (clap `env =` in src/mllp.rs).
    "DMPFLOW_MLLP_TLS_CERT",
    "DMPFLOW_MLLP_TLS_KEY",
    "DMPFLOW_MLLP_METRICS_ADDR",
    // Read by `dmpflow serve` (clap `env =` in src/consult.rs).
    "DMPFLOW_SERVE_METRICS_ADDR",
    // Written by `scripts/stack up` into .stack.env, read by the scripts and tests.
    "DMPFLOW_KAFKA_BROKERS",
    "DMPFLOW_KAFKA_BASE_PORT",
    "DMPFLOW_KAFKA_READY_TIMEOUT",
    "DMPFLOW_PG_PORT",
    "DMPFLOW_STACK_DIR",
    "DMPFLOW_SIDE_STACK_DIR",
    "DMPFLOW_STACK_ENV_FILE",
    // Written by `scripts/stack up --secure` into .stack-secure.env; scripts/secure-test.
    "DMPFLOW_STACK_SECURE",
    "DMPFLOW_STACK_ROLES",
    "DMPFLOW_STACK_CA",
    "DMPFLOW_SECURE_STACK_ENV_FILE",
    // scripts/fault-test, scripts/bench and the tests.
    "DMPFLOW_FAULTS_OK",
    "DMPFLOW_FAULT_SEED",
    "DMPFLOW_FAULT_SCALE",
    "DMPFLOW_FAULT_TIMEOUT",
    "DMPFLOW_FAULT_KILLS",
    "DMPFLOW_BENCH_WRITE_LAB",
    "DMPFLOW_BENCH_WALL",
    "DMPFLOW_BENCH_SECS",
    "DMPFLOW_MLLP_TEST_MESSAGES",
    "DMPFLOW_MLLP_TEST_CONNS",
];

/// Prefix of the librdkafka pass-through variables.
const KAFKA_PASS_THROUGH: &str = "DMPFLOW_KAFKA__";

/// A librdkafka key whose value is a secret: never printed (`Debug` of the settings,
/// errors). `sasl.password`, `ssl.key.password`, `ssl.keystore.password`,
/// `sasl.oauthbearer.client.secret`, `ssl.key.pem`, `sasl.oauthbearer.config`, ...
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "pem",
        "sasl.oauthbearer.config",
        "sasl.jaas.config",
    ]
    .iter()
    .any(|w| k.contains(w))
}

impl Settings {
    /// Loads settings: defaults, then the env file (`env_file`, else `./.stack.env`),
    /// then the TOML file, then the environment. Flags are applied by the caller
    /// afterwards. The env file loaded is logged (its path only).
    pub fn load(file: Option<&Path>, env_file: Option<&Path>) -> Result<Settings> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                parse_toml(&text, path)?
            }
            None => Settings::default(),
        };
        if let Some(path) = env_file_to_load(env_file) {
            let vars: BTreeMap<String, String> = read_env_file(&path)?
                .into_iter()
                .filter(|(k, _)| k.starts_with("DMPFLOW_"))
                .collect();
            check_names(&vars).with_context(|| format!("in the env file {}", path.display()))?;
            // The stack's `./.stack.env` is for the dev stack: with `--config`, the TOML
            // file is the deployment's settings and it is left out. An `--env-file` named
            // on purpose applies over the TOML file.
            if file.is_none() || env_file.is_some() {
                s.apply_vars(&vars)
                    .with_context(|| format!("in the env file {}", path.display()))?;
                tracing::info!(path = %path.display(), "env file loaded");
            } else {
                tracing::info!(path = %path.display(), "env file not applied: --config given");
            }
        }
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("DMPFLOW_"))
            .collect();
        check_names(&env).context("in the environment")?;
        s.apply_vars(&env).context("in the environment")?;
        Ok(s)
    }

    fn apply_vars(&mut self, vars: &BTreeMap<String, String>) -> Result<()> {
        for (k, v) in vars {
            match k.as_str() {
                "DMPFLOW_KAFKA_BOOTSTRAP" => self.kafka.bootstrap = v.clone(),
                "DMPFLOW_DATABASE_URL" => self.database_url = v.clone(),
                "DMPFLOW_GROUP_PREFIX" => self.kafka.group_prefix = v.clone(),
                "DMPFLOW_METRICS_ADDR" => self.metrics_addr = v.clone(),
                "DMPFLOW_ACCEPT_TEST_OIDS" => self.accept_test_oids = parse_bool(k, v)?,
                "DMPFLOW_FEED_PREFIX" => self.topics.feed_prefix = v.clone(),
                "DMPFLOW_TOPIC_DOCUMENTS" => self.topics.documents = v.clone(),
                "DMPFLOW_TOPIC_ROUTED" => self.topics.routed = v.clone(),
                "DMPFLOW_TOPIC_QUARANTINE" => self.topics.quarantine = v.clone(),
                "DMPFLOW_TOPIC_DLQ" => self.topics.dlq = v.clone(),
                "DMPFLOW_NORMALIZE_CONSUMERS" => {
                    self.limits.normalize_consumers = Some(parse_number(k, v)?)
                }
                "DMPFLOW_ROUTE_IN_NORMALIZE" => {
                    self.limits.route_in_normalize = Some(parse_bool(k, v)?)
                }
                "DMPFLOW_STORE_CONSUMERS" => self.limits.store_consumers = parse_number(k, v)?,
                "DMPFLOW_BATCH_MESSAGES" => self.limits.batch_messages = parse_number(k, v)?,
                "DMPFLOW_MAX_MESSAGE_BYTES" => self.limits.max_message_bytes = parse_number(k, v)?,
                "DMPFLOW_MAX_CDA_BYTES" => self.limits.max_cda_bytes = parse_number(k, v)?,
                "DMPFLOW_MAX_ENTRIES" => self.limits.max_entries = parse_number(k, v)?,
                _ => {
                    if let Some(key) = k.strip_prefix(KAFKA_PASS_THROUGH) {
                        // DMPFLOW_KAFKA__SECURITY_PROTOCOL -> security.protocol
                        let key = key.to_ascii_lowercase().replace('_', ".");
                        anyhow::ensure!(!key.is_empty(), "{k}: no librdkafka key after the prefix");
                        self.kafka.client.insert(key, v.clone());
                    }
                    // Other known names are read elsewhere (check_names refused the rest).
                }
            }
        }
        Ok(())
    }
}

/// Refuses any `DMPFLOW_*` name that is not in [`KNOWN_VARS`] (nor a `DMPFLOW_KAFKA__`
/// pass-through), naming it (names are never secret; values may be).
fn check_names(vars: &BTreeMap<String, String>) -> Result<()> {
    let unknown: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("DMPFLOW_"))
        .filter(|k| !k.starts_with(KAFKA_PASS_THROUGH) && !KNOWN_VARS.contains(k))
        .collect();
    anyhow::ensure!(
        unknown.is_empty(),
        "unknown variable{} {}: not a dmpflow setting (see README, Settings)",
        if unknown.len() > 1 { "s" } else { "" },
        unknown.join(", ")
    );
    Ok(())
}

/// `true`/`false`/`1`/`0`, in any case. Anything else (`yes`, `on`, empty) is an error
/// naming the variable: a boolean that enables the test OIDs must not be guessed.
fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => anyhow::bail!("{name} must be true, false, 1 or 0"),
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{name} must be a non-negative whole number"))
}

/// Checks `DMPFLOW_LOG` (a tracing filter such as `info,rdkafka=warn`): an invalid one is
/// a startup error naming the variable, not a silent fallback to the default.
pub fn log_filter() -> Result<tracing_subscriber::EnvFilter> {
    match std::env::var("DMPFLOW_LOG") {
        Ok(v) => log_filter_from(Some(&v)),
        Err(std::env::VarError::NotPresent) => log_filter_from(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("DMPFLOW_LOG is not valid UTF-8")
        }
    }
}

/// The filter for a `DMPFLOW_LOG` value (None: unset, the default filter).
fn log_filter_from(value: Option<&str>) -> Result<tracing_subscriber::EnvFilter> {
    use tracing_subscriber::EnvFilter;
    match value {
        Some(v) => EnvFilter::builder()
            .parse(v)
            .map_err(|e| anyhow::anyhow!("DMPFLOW_LOG is not a valid log filter: {e}")),
        None => Ok(EnvFilter::new("info,rdkafka=warn,sqlx=warn")),
    }
}

/// Parses the TOML settings. A syntax or type error names the file, the line and column,
/// the section and key when it can tell, and the parser's complaint with any quoted value
/// removed. Never the text of the line: it may hold a password.
pub fn parse_toml(text: &str, path: &Path) -> Result<Settings> {
    toml::from_str::<Settings>(text).map_err(|e| {
        let (line, col, section, key) = match e.span() {
            Some(span) => locate(text, span.start),
            None => (0, 0, None, None),
        };
        let mut where_ = format!("{}", path.display());
        if line > 0 {
            where_.push_str(&format!(", line {line}, column {col}"));
        }
        if let Some(sec) = section {
            where_.push_str(&format!(", section [{sec}]"));
        }
        if let Some(k) = key {
            where_.push_str(&format!(", key {k}"));
        }
        anyhow::anyhow!(
            "parsing config file {where_}: {}",
            hide_quoted(e.message().trim())
        )
    })
}

/// 1-based line and column of byte `at`, the last `[section]` header above it, and the
/// key its line assigns (a bare or quoted key name before `=`; never the value).
fn locate(text: &str, at: usize) -> (usize, usize, Option<String>, Option<String>) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        .filter(|s| is_key_text(s));
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && is_key_text(k));
    (line, col, section, key)
}

/// Key names are letters, digits, `_`, `-`, `.` and quotes: anything else on the left of
/// an `=` is not a key (the inside of a multi-line string, say) and is not printed.
fn is_key_text(s: &str) -> bool {
    s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
}

/// Replaces every double-quoted part of a parser message (serde quotes the offending
/// value: `invalid type: string "hunter2", expected usize`) with `"…"`.
fn hide_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// A URL (or a scheme-less `user:pw@host:port/db`) fit to print: the userinfo is replaced by
/// `***` and the value of every query parameter that may be a secret (`password`,
/// `sslpassword`, `sslkey`, any `*password*`, `*secret*`, `*token*`) by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    // The authority ends at the first '/'; its userinfo at the last '@' in it (a password
    // may hold a raw '@').
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let authority = &before_query[..authority_end];
    let mut out = String::from(scheme);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("***");
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(q) = query {
        out.push('?');
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "sslkey"
        || k == "passfile"
        || ["password", "secret", "token"]
            .iter()
            .any(|w| k.contains(w))
}

/// `[kafka.client]` with the values of secret keys hidden: the derived `Debug` of the
/// settings would print `sasl.password` in clear.
impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client: BTreeMap<&str, &str> = self
            .client
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_key(k) { "***" } else { v.as_str() };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap", &self.bootstrap)
            .field("group_prefix", &self.group_prefix)
            .field("client", &client)
            .finish()
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
        s.apply_vars(&vars).unwrap();
        assert_eq!(s.kafka.client["sasl.mechanism"], "PLAIN");
        assert_eq!(s.database_url, "sqlite://x.db");
    }

    #[test]
    fn route_in_normalize_is_on_for_all_stages_in_one_process_unless_set() {
        let pg = |pairs: &[(&str, &str)]| {
            let mut all = vec![("DMPFLOW_DATABASE_URL", "postgres://h/db")];
            all.extend_from_slice(pairs);
            apply(&all).unwrap()
        };
        // Unset: fused with two normalize consumers for `--stage all`, the split chain with
        // one for `--stage normalize` (least privilege) and for what did not resolve it.
        let s = pg(&[]);
        assert!(!s.route_in_normalize());
        assert_eq!(s.normalize_consumers(), 1);
        let all = s.for_stage(true);
        assert!(all.route_in_normalize());
        assert_eq!(all.normalize_consumers(), 2);
        let alone = s.for_stage(false);
        assert!(!alone.route_in_normalize());
        assert_eq!(alone.normalize_consumers(), 1);
        // What the operator set wins, both ways.
        let off = pg(&[("DMPFLOW_ROUTE_IN_NORMALIZE", "false")]).for_stage(true);
        assert!(!off.route_in_normalize());
        assert_eq!(off.normalize_consumers(), 1);
        let on = pg(&[("DMPFLOW_ROUTE_IN_NORMALIZE", "true")]).for_stage(false);
        assert!(on.route_in_normalize());
        let three = pg(&[("DMPFLOW_NORMALIZE_CONSUMERS", "3")]).for_stage(true);
        assert_eq!(three.normalize_consumers(), 3);
        let one = pg(&[("DMPFLOW_NORMALIZE_CONSUMERS", "1")]).for_stage(true);
        assert_eq!(one.normalize_consumers(), 1);
        // SQLite has one writer: fused, but one normalize consumer.
        let lite = apply(&[("DMPFLOW_DATABASE_URL", "sqlite://x.db")])
            .unwrap()
            .for_stage(true);
        assert!(lite.route_in_normalize());
        assert_eq!(lite.normalize_consumers(), 1);
        // TOML sets them the same way.
        let t: Settings =
            toml::from_str("[limits]\nroute_in_normalize = false\nnormalize_consumers = 2\n")
                .unwrap();
        let t = t.for_stage(true);
        assert!(!t.route_in_normalize());
        assert_eq!(t.normalize_consumers(), 2);
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

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn apply(pairs: &[(&str, &str)]) -> Result<Settings> {
        let v = vars(pairs);
        check_names(&v)?;
        let mut s = Settings::default();
        s.apply_vars(&v)?;
        Ok(s)
    }

    // Item 12: names, numbers and booleans.

    #[test]
    fn an_unknown_dmpflow_variable_is_an_error_naming_it() {
        let e = apply(&[("DMPFLOW_DATABSE_URL", "postgres://u:pw@h/db")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DMPFLOW_DATABSE_URL"), "{e}");
        assert!(!e.contains("pw"), "never the value: {e}");
        // Names read elsewhere (scripts, clap env, the stack file) are known.
        for name in [
            "DMPFLOW_STACK_DIR",
            "DMPFLOW_PG_PORT",
            "DMPFLOW_KAFKA_BROKERS",
            "DMPFLOW_FAULTS_OK",
            "DMPFLOW_MLLP_TLS_KEY",
            "DMPFLOW_LOG",
            "DMPFLOW_CONFIG",
            "DMPFLOW_ENV_FILE",
        ] {
            apply(&[(name, "x")]).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn every_dmpflow_name_the_repository_uses_is_known() {
        // The scripts, tests and benches share the environment with the binary: a name one
        // of them sets must not make `dmpflow` refuse to start.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut found = std::collections::BTreeSet::new();
        let mut stack = vec![
            root.join("scripts"),
            root.join(".ci"),
            root.join("tests"),
            root.join("src"),
            root.join("bench"),
            root.join("store/tests"),
        ];
        while let Some(p) = stack.pop() {
            if p.ends_with("src/config.rs") {
                // This file: its tests spell unknown names on purpose.
                continue;
            }
            if p.is_dir() {
                for e in std::fs::read_dir(&p).unwrap().flatten() {
                    stack.push(e.path());
                }
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                let mut rest = text.as_str();
                while let Some(i) = rest.find("DMPFLOW_") {
                    let name: String = rest[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    rest = &rest[i + name.len().max(1)..];
                    found.insert(name);
                }
            }
        }
        let unknown: Vec<&String> = found
            .iter()
            .filter(|n| n.len() > "DMPFLOW_".len())
            .filter(|n| !n.starts_with(KAFKA_PASS_THROUGH) && !n.ends_with('_'))
            .filter(|n| !KNOWN_VARS.contains(&n.as_str()))
            .collect();
        assert!(unknown.is_empty(), "add to KNOWN_VARS: {unknown:?}");
    }

    #[test]
    fn unparsable_numbers_are_errors_naming_the_variable() {
        for name in [
            "DMPFLOW_BATCH_MESSAGES",
            "DMPFLOW_STORE_CONSUMERS",
            "DMPFLOW_NORMALIZE_CONSUMERS",
            "DMPFLOW_MAX_CDA_BYTES",
            "DMPFLOW_MAX_ENTRIES",
            "DMPFLOW_MAX_MESSAGE_BYTES",
        ] {
            for bad in ["", "ten", "-1", "1e6", "12MB"] {
                let e = apply(&[(name, bad)]).unwrap_err().to_string();
                assert!(e.contains(name), "{name}={bad:?}: {e}");
            }
        }
        let s = apply(&[
            ("DMPFLOW_MAX_CDA_BYTES", "1048576"),
            ("DMPFLOW_MAX_ENTRIES", " 200 "),
            ("DMPFLOW_BATCH_MESSAGES", "25"),
        ])
        .unwrap();
        assert_eq!(s.limits.max_cda_bytes, 1 << 20);
        assert_eq!(s.limits.max_entries, 200);
        assert_eq!(s.limits.batch_messages, 25);
    }

    #[test]
    fn booleans_are_true_false_1_0_in_any_case_and_nothing_else() {
        for (v, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("False", false),
            ("0", false),
        ] {
            let s = apply(&[("DMPFLOW_ACCEPT_TEST_OIDS", v)]).unwrap();
            assert_eq!(s.accept_test_oids, want, "{v}");
        }
        for bad in ["yes", "no", "on", "", "2"] {
            let e = apply(&[("DMPFLOW_ACCEPT_TEST_OIDS", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("DMPFLOW_ACCEPT_TEST_OIDS"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn an_invalid_log_filter_is_an_error_naming_the_variable() {
        let e = log_filter_from(Some("info,[=bogus"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("DMPFLOW_LOG"), "{e}");
        assert!(log_filter_from(Some("info,rdkafka=warn")).is_ok());
        assert!(log_filter_from(None).is_ok(), "unset: the default filter");
    }

    #[test]
    fn only_the_current_directorys_stack_env_or_an_explicit_one_is_read() {
        // A .stack.env in a parent directory is not found from a subdirectory (the
        // current directory is process-wide, so the rule is checked on paths).
        let explicit = Path::new("/etc/dmpflow/prod.env");
        assert_eq!(
            env_file_to_load(Some(explicit)),
            Some(explicit.to_path_buf())
        );
        let found = env_file_to_load(None);
        assert!(
            found.is_none() || found == Some(PathBuf::from(".stack.env")),
            "{found:?}"
        );
        // A named file that is missing is an error, not a silent default.
        assert!(read_env_file(Path::new("/nonexistent/dmpflow.env")).is_err());
    }

    #[test]
    fn env_file_values_are_checked_like_the_environment() {
        let dir = std::env::temp_dir().join(format!("dmpflow-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.env");
        std::fs::write(
            &f,
            "# comment\nDMPFLOW_DATABASE_URL=sqlite://a.db\nKAFKA_VERSION=4\nDMPFLOW_ACCEPT_TEST_OIDS=yes\n",
        )
        .unwrap();
        let e = format!("{:#}", Settings::load(None, Some(&f)).unwrap_err());
        assert!(
            e.contains("DMPFLOW_ACCEPT_TEST_OIDS") && e.contains("x.env"),
            "{e}"
        );
        std::fs::write(&f, "DMPFLOW_DATABASE_URL=sqlite://a.db\nKAFKA_VERSION=4\n").unwrap();
        // The process environment may carry DMPFLOW_DATABASE_URL (scripts/test): compare
        // only when it does not.
        let s = Settings::load(None, Some(&f)).unwrap();
        if std::env::var("DMPFLOW_DATABASE_URL").is_err() {
            assert_eq!(s.database_url, "sqlite://a.db");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Item 11: secrets never printed.

    #[test]
    fn urls_lose_userinfo_and_secret_query_parameters() {
        let cases = [
            (
                "postgres://dmpflow:s3cret@db:5432/dmp",
                "postgres://***@db:5432/dmp",
            ),
            ("postgres://dmpflow@db/dmp", "postgres://***@db/dmp"),
            ("postgres://u:p@ss@db/dmp", "postgres://***@db/dmp"),
            ("dmpflow:s3cret@db:5432/dmp", "***@db:5432/dmp"),
            (
                "postgres://db/dmp?user=u&password=s3cret&sslmode=require",
                "postgres://db/dmp?user=u&password=***&sslmode=require",
            ),
            (
                "postgres://db/dmp?sslpassword=s3cret&sslkey=/k.pem&api_token=s3cret&MySecret=s3cret",
                "postgres://db/dmp?sslpassword=***&sslkey=***&api_token=***&MySecret=***",
            ),
            ("db:5432/dmp?password=s3cret", "db:5432/dmp?password=***"),
            ("sqlite://dmpflow.db", "sqlite://dmpflow.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ];
        for (url, want) in cases {
            let got = redact_url(url);
            assert_eq!(got, want, "{url}");
            assert!(!got.contains("s3cret"), "{got}");
        }
    }

    #[test]
    fn secret_librdkafka_values_are_not_in_the_settings_debug() {
        let mut s = Settings {
            database_url: "postgres://u:s3cret@h/db?password=s3cret".into(),
            ..Settings::default()
        };
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
        ] {
            s.kafka.client.insert(k.into(), "s3cret".into());
        }
        s.kafka
            .client
            .insert("security.protocol".into(), "SASL_SSL".into());
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("SASL_SSL") && shown.contains("sasl.password"),
            "{shown}"
        );
    }

    #[test]
    fn a_toml_error_names_file_line_column_and_key_but_never_the_text() {
        let text = "database_url = \"postgres://u:pw@h/db\"\n[kafka.client]\n\"sasl.password\" = \"hunter2\nnext = 1\n";
        let e = parse_toml(text, Path::new("/etc/dmpflow.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/dmpflow.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("[kafka.client]"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("pw@"), "{e}");

        // A type error: serde quotes the value; it is hidden.
        let text = "[limits]\nbatch_messages = \"hunter2\"\n";
        let e = parse_toml(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("batch_messages"), "{e}");
        assert!(e.contains("[limits]"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");

        // An unknown key is named (key names are not secret).
        let e = parse_toml(
            "databse_url = 'postgres://u:pw@h/db'\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("databse_url") && !e.contains("pw@"), "{e}");
    }
}
