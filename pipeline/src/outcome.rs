//! One outcome per message a stage handled, and the one place that reports a batch's
//! outcomes: metrics and log lines are emitted by [`emit`], after the batch is durable
//! (its outputs acknowledged, its database transaction committed), as vector's internal
//! events are. Nothing here carries patient data: feeds, reason codes, topic coordinates,
//! the sender and its control id.

use dmpflow_schemas::reasons::Reason;
use dmpflow_store::ItemOutcome;
use tracing::{debug, info, warn};

use crate::metrics::{FeedLabel, StageLabel, metrics};

/// What became of one message (or of one item of it) in a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// normalize: a document for the DMP.
    Document,
    /// normalize: an identity update; route: an identity update applied to the registry.
    Patient,
    /// route: the document's patient is known and may be fed.
    Routed,
    /// store outcomes (the document lifecycle and the registry).
    Stored,
    Replaced,
    Deleted,
    Duplicate,
    PatientUpsert,
    PatientMerge,
    /// Identity vigilance holds it, with a reason code.
    Quarantined(String),
    /// Written to the dead-letter queue, with a reason code.
    DeadLettered(String),
    /// Nothing for the DMP (`Reason::is_skip`): not an error.
    Skipped(String),
}

impl Kind {
    /// The `outcome` label of `dmpflow_messages_total` (stable: dashboards use it).
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Document => "document",
            Kind::Patient => "patient",
            Kind::Routed => "routed",
            Kind::Stored => "stored",
            Kind::Replaced => "replaced",
            Kind::Deleted => "deleted",
            Kind::Duplicate => "duplicate",
            Kind::PatientUpsert => "patient_upsert",
            Kind::PatientMerge => "patient_merge",
            Kind::Quarantined(_) => "quarantined",
            Kind::DeadLettered(_) => "dead_lettered",
            Kind::Skipped(_) => "skipped",
        }
    }

    /// The reason code, for the outcomes that have one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Kind::Quarantined(r) | Kind::DeadLettered(r) | Kind::Skipped(r) => Some(r),
            _ => None,
        }
    }

    /// A store outcome as an outcome.
    pub fn of_store(o: &ItemOutcome) -> Kind {
        match o {
            ItemOutcome::Stored => Kind::Stored,
            ItemOutcome::Replaced { .. } => Kind::Replaced,
            ItemOutcome::Deleted { .. } => Kind::Deleted,
            ItemOutcome::Duplicate => Kind::Duplicate,
            ItemOutcome::PatientUpdated => Kind::PatientUpsert,
            ItemOutcome::PatientMerged => Kind::PatientMerge,
            ItemOutcome::Quarantined(r) => Kind::Quarantined(r.as_str().to_string()),
        }
    }
}

/// Where a message was read: logged with dead letters so an operator finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One outcome: the message's feed, what became of it, and which input of the batch it
/// comes from (an input whose output can never be written is dead-lettered instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub origin: usize,
    pub feed: String,
    pub kind: Kind,
    pub at: Option<At>,
}

/// A message processed under a control id seen before with other content
/// (`hl7.control_id.reused`): who sent it, never what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlIdReuse {
    pub feed: String,
    pub sender: String,
    pub control_id: String,
    pub position: u32,
}

/// Everything a batch reports once it is durable.
#[derive(Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// (feed, count) of attachments a message carried beside its documents, left aside.
    pub attachments_ignored: Vec<(String, u64)>,
    pub control_id_reused: Vec<ControlIdReuse>,
    /// Ingest times (ms) of the documents the batch stored, for the end-to-end latency.
    pub ingest_times_ms: Vec<i64>,
    /// Messages skipped because the database already holds them (exactly-once).
    pub already_stored: usize,
    /// Seconds the store's transaction took, and how many items it wrote.
    pub store_commit: Option<(f64, usize)>,
}

impl Report {
    pub fn push(&mut self, origin: usize, feed: impl Into<String>, kind: Kind, at: Option<At>) {
        self.outcomes.push(Outcome {
            origin,
            feed: feed.into(),
            kind,
            at,
        });
    }

    /// Drops the outcomes of inputs dead-lettered instead, which the report of the stage
    /// that read them counts (a fused stage's second report).
    pub fn forget(&mut self, origins: &[(usize, String, At)]) {
        self.outcomes
            .retain(|o| !origins.iter().any(|(i, _, _)| *i == o.origin));
    }

    /// The inputs whose outputs could never be written were dead-lettered instead: their
    /// outcomes become that one dead letter.
    pub fn dead_lettered_instead(&mut self, origins: &[(usize, String, At)], reason: Reason) {
        if origins.is_empty() {
            return;
        }
        self.forget(origins);
        for (origin, feed, at) in origins {
            self.push(
                *origin,
                feed.clone(),
                Kind::DeadLettered(reason.as_str().into()),
                Some(at.clone()),
            );
        }
        self.outcomes.sort_by_key(|o| o.origin);
    }
}

/// How a batch's outcomes are reported: the Kafka stages export metrics and log; the
/// embedded chain only counts (its summary is its report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporting {
    Live,
    Quiet,
}

/// Reports a durable batch: metrics, then one log line per dead letter and reused control
/// id. A skip's reason goes to `dmpflow_skipped_total`, not to the rejects: it is not an
/// error.
pub fn emit(stage: &'static str, report: &Report, reporting: Reporting) {
    if reporting == Reporting::Quiet {
        return;
    }
    let m = metrics();
    for (feed, n) in &report.attachments_ignored {
        m.attachments_ignored(feed, *n);
    }
    for o in &report.outcomes {
        m.message(stage, &o.feed, o.kind.label());
        match &o.kind {
            Kind::Skipped(r) => {
                m.skip(&o.feed, r);
                if let Some(at) = &o.at {
                    debug!(stage, topic = %at.topic, partition = at.partition, offset = at.offset, reason = %r, "skipped");
                }
            }
            Kind::DeadLettered(r) => {
                m.reject(stage, r);
                match &o.at {
                    Some(at) => {
                        warn!(stage, topic = %at.topic, partition = at.partition, offset = at.offset, reason = %r, "dead-lettered")
                    }
                    None => warn!(stage, reason = %r, "dead-lettered"),
                }
            }
            Kind::Quarantined(r) => m.reject(stage, r),
            _ => {}
        }
    }
    for r in &report.control_id_reused {
        m.control_id_reused
            .get_or_create(&FeedLabel {
                feed: r.feed.clone(),
            })
            .inc();
        warn!(
            stage,
            reason = Reason::Hl7ControlIdReused.as_str(),
            feed = %r.feed,
            sender = %r.sender,
            control_id = %r.control_id,
            position = r.position,
            "control id seen before with other content: processed as a new message"
        );
    }
    if let Some((seconds, items)) = report.store_commit {
        m.store_commit_seconds.observe(seconds);
        m.store_batch_size.observe(items as f64);
    }
    if !report.ingest_times_ms.is_empty() {
        let now = crate::runtime::now_ms();
        let h = m.end_to_end_seconds.get_or_create(&StageLabel { stage });
        for t in &report.ingest_times_ms {
            h.observe(((now - t).max(0) as f64) / 1000.0);
        }
    }
    if report.already_stored > 0 {
        info!(
            stage,
            skipped = report.already_stored,
            "messages already stored were skipped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Option<At> {
        Some(At {
            topic: "t".into(),
            partition: 0,
            offset,
        })
    }

    #[test]
    fn an_input_dead_lettered_instead_loses_its_other_outcomes() {
        let mut r = Report::default();
        r.push(0, "lab", Kind::Document, at(0));
        r.push(1, "lab", Kind::Document, at(1));
        r.push(1, "lab", Kind::Document, at(1));
        r.push(2, "lab", Kind::Skipped("hl7.event.skipped".into()), at(2));
        r.dead_lettered_instead(&[(1, "lab".into(), at(1).unwrap())], Reason::RecordTooLarge);
        let kinds: Vec<_> = r
            .outcomes
            .iter()
            .map(|o| (o.origin, o.kind.label()))
            .collect();
        assert_eq!(
            kinds,
            [(0, "document"), (1, "dead_lettered"), (2, "skipped")]
        );
        assert_eq!(r.outcomes[1].kind.reason(), Some("kafka.record.too_large"));
    }

    #[test]
    fn a_fused_stage_second_report_forgets_an_input_dead_lettered_instead() {
        // Route's report inside normalize: the input's dead letter is counted once, by
        // normalize's report; route's outcomes for it go, the others stay.
        let mut route = Report::default();
        route.push(0, "lab", Kind::Routed, at(0));
        route.push(1, "lab", Kind::Quarantined("ins.unknown".into()), at(1));
        route.forget(&[(1, "lab".into(), at(1).unwrap())]);
        let kinds: Vec<_> = route
            .outcomes
            .iter()
            .map(|o| (o.origin, o.kind.label()))
            .collect();
        assert_eq!(kinds, [(0, "routed")]);
    }

    #[test]
    fn store_outcomes_keep_their_dashboard_labels() {
        assert_eq!(
            Kind::of_store(&ItemOutcome::PatientUpdated).label(),
            "patient_upsert"
        );
        assert_eq!(Kind::of_store(&ItemOutcome::Duplicate).label(), "duplicate");
    }

    // Issue #12 item 2: attachments left aside beside a document are counted by feed,
    // and are not message outcomes.
    #[test]
    fn attachments_left_aside_are_counted_not_taken_for_messages() {
        let mut r = Report::default();
        r.attachments_ignored.push(("attach-test".into(), 3));
        r.push(0, "attach-test", Kind::Document, None);
        emit("normalize", &r, Reporting::Live);
        let text = metrics().encode();
        assert!(
            text.contains("dmpflow_attachments_ignored_total{feed=\"attach-test\"} 3"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"attachments_ignored\""), "{text}");
    }

    // Issue #12 item 5: an item the store processed under a reused control id is counted
    // by feed (the log line names sender and control id only); the others are not.
    #[test]
    fn a_reused_control_id_is_counted_by_feed() {
        let mut r = Report::default();
        r.control_id_reused.push(ControlIdReuse {
            feed: "reuse-test-b".into(),
            sender: "GAM^CHU".into(),
            control_id: "C1".into(),
            position: 0,
        });
        emit("store", &r, Reporting::Live);
        let text = metrics().encode();
        assert!(
            text.contains("dmpflow_control_id_reused_total{feed=\"reuse-test-b\"} 1"),
            "{text}"
        );
        assert!(!text.contains("feed=\"reuse-test-a\""), "{text}");
    }

    #[test]
    fn quiet_reporting_exports_nothing() {
        let mut r = Report::default();
        r.push(0, "quiet-test", Kind::Document, None);
        emit("normalize", &r, Reporting::Quiet);
        assert!(!metrics().encode().contains("quiet-test"));
    }
}
