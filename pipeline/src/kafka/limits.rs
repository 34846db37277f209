//! Record size limits: before a process writes anything, every record it may write must fit
//! both its producer's `message.max.bytes` and each output topic's `max.message.bytes` (read
//! from the broker). An inconsistent set refuses the start with the numbers and the setting
//! to change, rather than failing on the first large document hours later.

use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::error::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;

/// librdkafka's `message.max.bytes` when `[kafka.client]` does not set it.
pub const LIBRDKAFKA_DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// librdkafka refuses a `message.max.bytes` above this.
const LIBRDKAFKA_CEILING_MESSAGE_MAX_BYTES: usize = 1_000_000_000;
/// Room a record needs on top of its largest payload: key, headers (a dead letter's error
/// text), the wire head of a document (its metadata) and the record batch framing.
pub const RECORD_OVERHEAD_BYTES: usize = 1 << 20;

/// The largest payload a pipeline stage writes: a document whose CDA is up to
/// `limits.max_cda_bytes` (packed; zstd may not shrink incompressible content), or a dead
/// letter carrying a raw message of up to `limits.max_message_bytes`.
pub fn stage_largest_payload(settings: &Settings) -> usize {
    settings
        .limits
        .max_cda_bytes
        .max(settings.limits.max_message_bytes)
}

/// The `max.message.bytes` `dmpflow topics create` gives every topic: the largest stage
/// payload plus [`RECORD_OVERHEAD_BYTES`]. The MLLP gateway's default `--max-frame` (16 MiB)
/// fits it too.
pub fn topic_max_message_bytes(settings: &Settings) -> usize {
    stage_largest_payload(settings).saturating_add(RECORD_OVERHEAD_BYTES)
}

/// What [`check_record_limits`] found and decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLimits {
    /// Largest record this process may write: its largest payload + [`RECORD_OVERHEAD_BYTES`].
    pub needed: usize,
    /// The producer's `message.max.bytes` to use (at least `needed`).
    pub producer_max_bytes: usize,
    /// True when `[kafka.client]` did not set `message.max.bytes` and it was raised from
    /// librdkafka's default; [`RecordLimits::apply`] then sets it.
    pub raised: bool,
    /// Each topic's `max.message.bytes` as the broker reports it.
    pub topics: Vec<(String, usize)>,
}

impl RecordLimits {
    /// Sets the producer limit decided here into the settings every client is built from
    /// (a no-op when the operator's own value already fits).
    pub fn apply(&self, settings: &mut Settings) {
        if self.raised {
            settings.kafka.client.insert(
                "message.max.bytes".into(),
                self.producer_max_bytes.to_string(),
            );
        }
    }
}

/// Checks, before a process writes anything, that a record of `largest_payload` bytes (plus
/// [`RECORD_OVERHEAD_BYTES`]) fits both the producer's `message.max.bytes` and every one of
/// `topics`' `max.message.bytes` (read from the broker). `source` names the setting the
/// payload bound comes from, for the error message (e.g. `--max-frame`).
///
/// - a topic that accepts less: refuse to start (error naming the topic, both numbers and
///   the settings to change). Raising a topic's limit is the operator's decision;
/// - the producer: if `[kafka.client] "message.max.bytes"` is set and too small, refuse to
///   start; if it is not set, the returned limits raise it (call [`RecordLimits::apply`]).
///
/// Broker unavailable: retried until `shutdown`. A topic that does not exist: error (run
/// `dmpflow topics create`).
pub async fn check_record_limits(
    settings: &Settings,
    topics: &[&str],
    largest_payload: usize,
    source: &str,
    shutdown: &CancellationToken,
) -> Result<RecordLimits> {
    // The first request of every long-running process: refused credentials or an untrusted
    // certificate end it here, with the cause (the admin request below would only time out).
    let s = settings.clone();
    tokio::task::spawn_blocking(move || super::check_credentials(&s)).await??;
    let found = describe_topic_limits(settings, topics, shutdown).await?;
    let operator = settings
        .kafka
        .client
        .get("message.max.bytes")
        .map(|v| {
            v.trim().parse::<usize>().map_err(|_| {
                anyhow::anyhow!("[kafka.client] \"message.max.bytes\" is not a number of bytes")
            })
        })
        .transpose()?;
    let limits = decide_record_limits(operator, found, largest_payload, source)?;
    info!(
        needed = limits.needed,
        producer_max_bytes = limits.producer_max_bytes,
        raised = limits.raised,
        "record size limits checked"
    );
    Ok(limits)
}

/// The decision of [`check_record_limits`], without IO.
pub fn decide_record_limits(
    operator: Option<usize>,
    topics: Vec<(String, usize)>,
    largest_payload: usize,
    source: &str,
) -> Result<RecordLimits> {
    let needed = largest_payload.saturating_add(RECORD_OVERHEAD_BYTES);
    for (topic, max) in &topics {
        if *max < needed {
            anyhow::bail!(
                "topic {topic} accepts records of at most {max} bytes (its max.message.bytes), \
                 but this process may write records of up to {needed} bytes ({source} = \
                 {largest_payload} + {RECORD_OVERHEAD_BYTES} for headers and framing): raise \
                 the topic's max.message.bytes to at least {needed} (kafka-configs.sh --alter \
                 --entity-type topics --entity-name {topic} --add-config \
                 max.message.bytes={needed}) or lower {source}"
            );
        }
    }
    if needed > LIBRDKAFKA_CEILING_MESSAGE_MAX_BYTES {
        anyhow::bail!(
            "{source} = {largest_payload} needs records of {needed} bytes, over the Kafka \
             client's ceiling of {LIBRDKAFKA_CEILING_MESSAGE_MAX_BYTES}: lower {source}"
        );
    }
    let (producer_max_bytes, raised) = match operator {
        Some(set) if set < needed => anyhow::bail!(
            "[kafka.client] \"message.max.bytes\" = {set} is below the {needed} bytes a record \
             of this process may need ({source} = {largest_payload} + \
             {RECORD_OVERHEAD_BYTES}): remove it (dmpflow then sets it) or raise it, or lower \
             {source}"
        ),
        Some(set) => (set, false),
        None => (
            needed.max(LIBRDKAFKA_DEFAULT_MESSAGE_MAX_BYTES),
            needed > LIBRDKAFKA_DEFAULT_MESSAGE_MAX_BYTES,
        ),
    };
    Ok(RecordLimits {
        needed,
        producer_max_bytes,
        raised,
        topics,
    })
}

/// Each topic's `max.message.bytes` as the broker reports it (its own setting or the
/// broker's default).
async fn describe_topic_limits(
    settings: &Settings,
    topics: &[&str],
    shutdown: &CancellationToken,
) -> Result<Vec<(String, usize)>> {
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let admin = super::admin(settings)?;
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut backoff = Duration::from_millis(200);
    let mut missing_since: Option<Instant> = None;
    loop {
        let attempt: Result<Vec<(String, usize)>, (bool, String)> = match admin
            .describe_configs(&specs, &opts)
            .await
        {
            Err(e) => Err((true, format!("describing the topics' configuration: {e}"))),
            Ok(results) => {
                let mut out = Vec::with_capacity(results.len());
                let mut failure = None;
                for (topic, r) in topics.iter().zip(results) {
                    let max = match r {
                        Ok(res) => res
                            .get("max.message.bytes")
                            .and_then(|e| e.value.as_deref())
                            .and_then(|v| v.parse::<usize>().ok()),
                        // The broker describes a topic it does not know with no entries
                        // rather than an error: both mean the topic is missing.
                        Err(RDKafkaErrorCode::UnknownTopicOrPartition) => None,
                        Err(e) => {
                            failure = Some((
                                false,
                                format!("describing topic {topic}'s configuration: {e}"),
                            ));
                            break;
                        }
                    };
                    if let Some(m) = max {
                        out.push((topic.to_string(), m));
                        continue;
                    }
                    // Right after `topics create` the topic may not be known to every
                    // broker yet: wait a little before calling it missing.
                    let since = *missing_since.get_or_insert_with(Instant::now);
                    failure = Some((
                        since.elapsed() < Duration::from_secs(10),
                        format!(
                            "topic {topic} does not exist (run `dmpflow topics create`), or this Kafka principal may not describe it (ACL)"
                        ),
                    ));
                    break;
                }
                match failure {
                    Some(f) => Err(f),
                    None => Ok(out),
                }
            }
        };
        match attempt {
            Ok(found) => return Ok(found),
            Err((false, why)) => anyhow::bail!("{why}"),
            Err((true, why)) => {
                warn!(error = %why, "checking the topics' record size limits; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => anyhow::bail!("shutdown while checking the topics' record size limits"),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn topics(max: usize) -> Vec<(String, usize)> {
        vec![("dmp.documents".into(), max), ("dmp.dlq".into(), max)]
    }

    #[test]
    fn producer_limit_is_raised_when_the_operator_did_not_set_it() {
        let l =
            decide_record_limits(None, topics(17 * MIB), 16 * MIB, "limits.max_cda_bytes").unwrap();
        assert_eq!(l.needed, 17 * MIB);
        assert_eq!(l.producer_max_bytes, 17 * MIB);
        assert!(l.raised);
        let mut s = Settings::default();
        l.apply(&mut s);
        assert_eq!(s.kafka.client["message.max.bytes"], (17 * MIB).to_string());
    }

    #[test]
    fn a_topic_that_accepts_less_refuses_the_start_and_names_the_numbers() {
        // The broker's default max.message.bytes (1048588) against the 16 MiB default.
        let e = decide_record_limits(None, topics(1_048_588), 16 * MIB, "--max-frame")
            .unwrap_err()
            .to_string();
        assert!(e.contains("topic dmp.documents"), "{e}");
        assert!(e.contains("1048588"), "{e}");
        assert!(e.contains(&(17 * MIB).to_string()), "{e}");
        assert!(e.contains("--max-frame"), "{e}");
    }

    #[test]
    fn an_operator_producer_limit_below_the_need_refuses_the_start() {
        let e = decide_record_limits(Some(1_000_000), topics(64 * MIB), 16 * MIB, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("message.max.bytes"), "{e}");
        assert!(e.contains("1000000"), "{e}");
        let ok = decide_record_limits(Some(32 * MIB), topics(64 * MIB), 16 * MIB, "x").unwrap();
        assert_eq!(ok.producer_max_bytes, 32 * MIB);
        assert!(!ok.raised);
    }

    #[test]
    fn topics_are_created_to_fit_the_stage_records() {
        let s = Settings::default();
        assert_eq!(
            topic_max_message_bytes(&s),
            16 * MIB + RECORD_OVERHEAD_BYTES
        );
        let l = decide_record_limits(
            None,
            topics(topic_max_message_bytes(&s)),
            stage_largest_payload(&s),
            "limits",
        );
        assert!(l.is_ok());
    }
}
