//! The normalize stage: each HL7 v2 message of a feed topic becomes the documents and
//! identity updates it carries (wire-encoded, the CDA packed once here), or one dead letter
//! with its reason. Pure CPU, no IO of its own.

use std::sync::Arc;

use anyhow::Result;
use dmpflow_schemas::{DocumentMeta, Normalized, headers as h, wire};
use rdkafka::message::{Message, OwnedMessage};

use super::{BatchCtx, Handled, Stage, at, carried_headers, coordinates, normalize_config};
use crate::chain;
use crate::config::Settings;
use crate::outcome::Kind;
use crate::runtime::{self, Output};

pub struct NormalizeStage {
    settings: Arc<Settings>,
    cfg: dmpflow_normalize::Config,
}

impl NormalizeStage {
    pub fn new(settings: Arc<Settings>) -> NormalizeStage {
        let cfg = normalize_config(&settings);
        NormalizeStage { settings, cfg }
    }

    /// The topic normalize writes documents and identity updates to.
    pub fn documents_topic(&self) -> &str {
        &self.settings.topics.documents
    }

    /// One batch, decided: what to produce and one outcome per message. No IO.
    pub fn decide(&self, batch: &[OwnedMessage]) -> Handled {
        self.decide_keeping_heads(batch, false).0
    }

    /// [`Self::decide`], and, when `keep` is set, beside each output (same index) the head
    /// of the document it carries (`None` for an identity update or a dead letter): the
    /// fused stage routes on those values instead of parsing back the JSON just encoded.
    pub(super) fn decide_keeping_heads(
        &self,
        batch: &[OwnedMessage],
        keep: bool,
    ) -> (Handled, Vec<Option<DocumentMeta>>) {
        let mut decided = Default::default();
        self.decide_range(batch, 0..batch.len(), keep, &mut decided);
        decided
    }

    /// [`Self::decide_keeping_heads`] as the live stages run it: the worker thread is handed
    /// back to the runtime every [`YIELD_EVERY`] messages. A batch is tens of milliseconds
    /// of CPU; without a yield, the tasks waiting for that worker (the store's `COPY` to
    /// PostgreSQL, the offsets, the other stages' produce acknowledgements) waited for the
    /// whole batch, and PostgreSQL sat in the store's transactions waiting for its next
    /// rows (bench/ANALYSIS.md "Session 18").
    pub(super) async fn decide_yielding(
        &self,
        batch: &[OwnedMessage],
        keep: bool,
    ) -> (Handled, Vec<Option<DocumentMeta>>) {
        let mut decided = Default::default();
        for start in (0..batch.len()).step_by(YIELD_EVERY) {
            if start > 0 {
                tokio::task::yield_now().await;
            }
            let end = batch.len().min(start + YIELD_EVERY);
            self.decide_range(batch, start..end, keep, &mut decided);
        }
        decided
    }

    /// The messages of `batch` in `range`, decided into `decided` (outputs and outcomes, and
    /// the heads when `keep` is set).
    fn decide_range(
        &self,
        batch: &[OwnedMessage],
        range: std::ops::Range<usize>,
        keep: bool,
        (out, heads): &mut (Handled, Vec<Option<DocumentMeta>>),
    ) {
        for origin in range {
            self.decide_one(origin, &batch[origin], keep, out, heads);
        }
        debug_assert!(!keep || heads.len() == out.produced.outputs.len());
    }

    /// One message of the batch (at `origin`), decided into `out` (and its heads).
    fn decide_one(
        &self,
        origin: usize,
        m: &OwnedMessage,
        keep: bool,
        out: &mut Handled,
        heads: &mut Vec<Option<DocumentMeta>>,
    ) {
        const STAGE: &str = "normalize";
        let settings = &self.settings;
        let Some(feed) = settings.topics.feed_of(m.topic()) else {
            return;
        };
        let raw = m.payload().unwrap_or_default();
        match chain::normalize_message(feed, raw, &coordinates(m), &self.cfg) {
            Ok(items) => {
                for mut item in items {
                    // The CDA is packed once, here: every later hop carries the zstd
                    // bytes, and the store keeps them as they are (a quarantine case
                    // too, filed with them when released).
                    if let Normalized::Document(d) = &mut item {
                        d.cda.pack();
                    }
                    let payload = wire::encode(&item);
                    out.produced.push(
                        origin,
                        Output {
                            topic: settings.topics.documents.clone(),
                            key: Some(chain::patient_key(&item).to_string()),
                            payload,
                            headers: carried_headers(m, feed.as_str()),
                        },
                    );
                    if let Normalized::Document(d) = &item
                        && d.meta.ignored_attachments > 0
                    {
                        out.report
                            .attachments_ignored
                            .push((feed.as_str().into(), u64::from(d.meta.ignored_attachments)));
                    }
                    let kind = match item {
                        Normalized::Document(d) => {
                            // dmpflow_end_to_end_seconds{stage="normalize"}: produce to
                            // this stage's outputs acknowledged, the upstream share of
                            // the store's end to end (observed once the batch is durable).
                            if let Some(t) = runtime::ingest_time_ms(m) {
                                out.report.ingest_times_ms.push(t);
                            }
                            if keep {
                                heads.push(Some(d.meta));
                            }
                            Kind::Document
                        }
                        Normalized::Patient(_) => {
                            if keep {
                                heads.push(None);
                            }
                            Kind::Patient
                        }
                    };
                    out.report.push(origin, feed.as_str(), kind, Some(at(m)));
                }
            }
            // Nothing for the DMP (an ADT movement): no output, so the batch's commit
            // moves past it; counted once the batch is durable, like the others.
            Err(reject) if reject.reason.is_skip() => out.report.push(
                origin,
                feed.as_str(),
                Kind::Skipped(reject.reason.as_str().into()),
                Some(at(m)),
            ),
            Err(reject) => {
                let mut headers =
                    runtime::dlq_headers(m, STAGE, reject.reason.as_str(), &reject.detail);
                if !headers.iter().any(|(k, _)| *k == h::FEED) {
                    headers.push((h::FEED, feed.as_str().into()));
                }
                out.produced.push(
                    origin,
                    Output {
                        topic: settings.topics.dlq.clone(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: raw.to_vec(),
                        headers,
                    },
                );
                if keep {
                    heads.push(None);
                }
                out.report.push(
                    origin,
                    feed.as_str(),
                    Kind::DeadLettered(reject.reason.as_str().into()),
                    Some(at(m)),
                );
            }
        }
    }
}

/// Messages normalized between two yields to the runtime (`decide_yielding`): ~1 ms of
/// CPU at this machine's ~70 µs a message, against ~5 µs for a yield.
const YIELD_EVERY: usize = 16;

impl Stage for NormalizeStage {
    fn name(&self) -> &'static str {
        "normalize"
    }

    // CPU work for tens of milliseconds, run on this worker and handed back to the runtime
    // every YIELD_EVERY messages, so the tasks queued behind it run in between.
    // (`block_in_place` was tried: it hands the worker to another thread at every call;
    // measured peak RSS over a backlog and a 2k msg/s overload: 463 MB with it, 358 MB
    // without, same throughput.)
    async fn handle(&mut self, batch: &[OwnedMessage], _ctx: &BatchCtx<'_>) -> Result<Handled> {
        Ok(self.decide_yielding(batch, false).await.0)
    }
}

#[cfg(test)]
mod tests {
    use dmpflow_schemas::Feed;
    use rdkafka::Timestamp;

    use super::*;
    use crate::metrics::metrics;
    use crate::outcome::{Reporting, emit};

    fn on_identity(settings: &Settings, event: &str, offset: i64) -> OwnedMessage {
        let raw = format!(
            "MSH|^~\\&|GAM|CHU|PFI|X|20240501090000||ADT^{event}^ADT_A01|C{offset}|P|2.5\r\
             PID|1||201019999900109^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||CELESTIN^Noel^Noel^^^^L||20010115|M\r\
             ZFA|ACTIF|20240501|||||||IO|20240501|NA\r"
        );
        OwnedMessage::new(
            Some(raw.into_bytes()),
            None,
            settings.topics.feed(Feed::Identity),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    /// A lab ORU (a document), a message the lab feed refuses (a dead letter) and an
    /// identity update, in one batch.
    fn mixed_batch(settings: &Settings) -> Vec<OwnedMessage> {
        let lab = "MSH|^~\\&|SIL|LABO|DMPFLOW|DMP|20241105143000||ORU^R01^ORU_R01|L1|P|2.5|||||FRA|UNICODE UTF-8\r\
PID|1||201019999900109^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||CELESTIN^Noel^Noel^^^^L||20010115|M||||||||||||||||||||||||VALI\r\
PV1|1|O\r\
ORC|NW|L1-CMD^SIL|||||||20241105143000\r\
OBR|1|L1-CMD^SIL||24362-6^Ionogramme sanguin^LN|||20241105080000|||||||||10003456789^DUPONT^CLAIRE||||||20241105143000|||F|||||||801234567866&BIOLO&ANNE\r\
OBX|1|NM|2823-3^Potassium^LN||4.2|mmol/L|3.5-5.1|N|||F|||20241105080000\r";
        let on_lab = |raw: &str, offset| {
            OwnedMessage::new(
                Some(raw.as_bytes().to_vec()),
                None,
                settings.topics.feed(Feed::Lab),
                Timestamp::NotAvailable,
                0,
                offset,
                None,
            )
        };
        vec![
            on_lab(lab, 1),
            on_lab("not HL7 at all", 2),
            on_identity(settings, "A01", 3),
        ]
    }

    // The fused stage routes on the heads normalize hands over instead of peeking the
    // payloads: they must be what route's peek would read from those payloads, and come
    // one per output, in order.
    #[test]
    fn the_heads_handed_to_route_are_what_its_peek_reads() {
        let settings = Arc::new(Settings {
            accept_test_oids: true,
            ..Settings::default()
        });
        let stage = NormalizeStage::new(settings.clone());
        let batch = mixed_batch(&settings);
        let (handled, heads) = stage.decide_keeping_heads(&batch, true);
        let outputs = &handled.produced.outputs;
        let topics: Vec<&str> = outputs.iter().map(|o| o.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                settings.topics.documents.as_str(),
                settings.topics.dlq.as_str(),
                settings.topics.documents.as_str()
            ]
        );
        assert_eq!(heads.len(), outputs.len());
        let peeked = wire::peek_meta(&outputs[0].payload).expect("a packed document peeks");
        assert_eq!(heads[0].as_ref(), Some(&peeked));
        assert_eq!(heads[1], None, "a dead letter carries no head");
        assert_eq!(
            heads[2], None,
            "an identity update carries no document head"
        );
        // Without `keep`, the same decision and no heads.
        let (plain, none) = stage.decide_keeping_heads(&batch, false);
        assert!(none.is_empty());
        assert_eq!(plain.produced.origins, handled.produced.origins);
    }

    // Issue #12 item 1: an ADT movement on the identity feed is skipped (no dead letter,
    // no output, counted as skipped), and the batch goes on with the next message.
    #[test]
    fn a_skipped_event_is_reported_and_never_dead_lettered() {
        let settings = Arc::new(Settings::default());
        let stage = NormalizeStage::new(settings.clone());
        let batch = [
            on_identity(&settings, "A03", 7),
            on_identity(&settings, "A01", 8),
        ];
        let handled = stage.decide(&batch);
        let produced = &handled.produced;
        assert_eq!(produced.outputs.len(), 1, "only the A01 yields something");
        assert_eq!(produced.outputs[0].topic, settings.topics.documents);
        assert_eq!(produced.origins, [1]);
        let kinds: Vec<_> = handled
            .report
            .outcomes
            .iter()
            .map(|o| (o.origin, o.feed.as_str(), o.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (0, "identity", Kind::Skipped("hl7.event.skipped".into())),
                (1, "identity", Kind::Patient),
            ]
        );
        emit("normalize", &handled.report, Reporting::Live);
        let text = metrics().encode();
        assert!(
            text.contains(
                "dmpflow_skipped_total{feed=\"identity\",reason=\"hl7.event.skipped\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("stage=\"normalize\",reason=\"hl7.event.skipped\""),
            "a skip is not a reject: {text}"
        );
    }

    // A batch hands its worker back to the runtime every YIELD_EVERY messages (the store's
    // COPY and the produce acknowledgements waited for whole batches before). On a
    // one-thread runtime a task spawned before the batch can only run if the batch yields:
    // it must have run by the time the batch is done, and the batch decides what `decide`
    // decides.
    #[test]
    fn a_batch_lets_the_tasks_behind_it_run() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use tokio_util::sync::CancellationToken;

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let settings = Arc::new(Settings::default());
            let mut stage = NormalizeStage::new(settings.clone());
            let batch: Vec<_> = (0..3 * YIELD_EVERY as i64)
                .map(|offset| on_identity(&settings, "A01", offset))
                .collect();
            let ran = Arc::new(AtomicBool::new(false));
            let flag = ran.clone();
            tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
            let shutdown = CancellationToken::new();
            let ctx = BatchCtx::detached(&shutdown);
            let handled = stage.handle(&batch, &ctx).await.unwrap();
            assert!(
                ran.load(Ordering::SeqCst),
                "the task behind the batch waited for all of it"
            );
            let plain = stage.decide(&batch);
            assert_eq!(handled.produced.origins, plain.produced.origins);
            assert_eq!(handled.produced.outputs.len(), batch.len());
            for (a, b) in handled.produced.outputs.iter().zip(&plain.produced.outputs) {
                assert_eq!(a.payload, b.payload);
            }
        });
    }
}
