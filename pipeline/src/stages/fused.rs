//! Normalize with route fused into it (`limits.route_in_normalize`): each feed batch is
//! normalized, and the documents and identity updates it yields are routed at once, in the
//! same task, instead of taking one more Kafka hop through `dmp.documents` (a produce, a
//! fetch, an offset commit and the broker's work per document).
//!
//! Nothing else changes: the stage reads in the normalize group (its committed offsets
//! carry over when the setting is switched either way), reports normalize's outcomes as
//! `normalize` and route's as `route`, and the route stage keeps serving `dmp.documents`
//! (what was there before the switch, `replay --stage normalize`). Serialisation per
//! patient stays what the keys give: a feed message is keyed by the INS of PID-3, as the
//! documents it yields are, so one member of the group handles one patient's messages of a
//! feed in order, as one route consumer handled one partition of `dmp.documents`.

use std::collections::HashMap;

use anyhow::Result;
use rdkafka::message::OwnedMessage;

use super::driver::in_memory;
use super::route::Input;
use super::{BatchCtx, Handled, NormalizeStage, RouteStage, Stage, at};

pub struct NormalizeRouteStage {
    normalize: NormalizeStage,
    route: RouteStage,
}

impl NormalizeRouteStage {
    pub fn new(normalize: NormalizeStage, route: RouteStage) -> NormalizeRouteStage {
        NormalizeRouteStage { normalize, route }
    }
}

impl Stage for NormalizeRouteStage {
    /// The normalize group's name: the same consumer group, metrics and logs.
    fn name(&self) -> &'static str {
        self.normalize.name()
    }

    async fn handle(&mut self, batch: &[OwnedMessage], ctx: &BatchCtx<'_>) -> Result<Handled> {
        // Normalize keeps each document's head beside its output: route decides on those
        // values rather than parse back the JSON head just encoded (the peek was ~4% of this
        // stage's CPU, bench/ANALYSIS.md "Session 15").
        let (mut normalized, heads) = self.normalize.decide_yielding(batch, true).await;
        let documents_topic = self.normalize.documents_topic();
        // What normalize meant for `dmp.documents` goes to route, in memory and in order;
        // its dead letters stay outputs of this batch.
        let outputs = std::mem::take(&mut normalized.produced.outputs);
        let origins = std::mem::take(&mut normalized.produced.origins);
        let mut to_route = Vec::new();
        let mut routed_from = Vec::new();
        let mut routed_heads = Vec::new();
        for ((output, origin), head) in outputs.into_iter().zip(origins).zip(heads) {
            if output.topic == documents_topic {
                to_route.push(output);
                routed_from.push(origin);
                routed_heads.push(head);
            } else {
                normalized.produced.push(origin, output);
            }
        }
        if to_route.is_empty() {
            return Ok(normalized);
        }
        // A document's payload goes to route beside its head rather than inside its
        // in-memory message: routed as it is (nearly always), it leaves as the routed output
        // without a copy (bench/ANALYSIS.md "Session 18").
        let mut payloads = Vec::with_capacity(to_route.len());
        for (output, head) in to_route.iter_mut().zip(&routed_heads) {
            payloads.push(head.is_some().then(|| std::mem::take(&mut output.payload)));
        }
        let documents = in_memory(to_route, &mut HashMap::new());
        let inputs = documents
            .iter()
            .zip(routed_heads)
            .zip(payloads)
            .map(|((m, head), payload)| match head {
                Some(meta) => Input::Peeked(Box::new(meta), payload),
                None => Input::of(m),
            })
            .collect();
        let mut routed = self.route.handle_inputs(&documents, inputs, ctx).await?;
        // Route's outputs and outcomes point back to the feed message they come from: a
        // record that can never be written dead-letters that input, and an operator finds
        // a quarantine or a dead letter at the feed's coordinates, not in memory.
        for (output, origin) in routed
            .produced
            .outputs
            .into_iter()
            .zip(routed.produced.origins)
        {
            normalized.produced.push(routed_from[origin], output);
        }
        for o in &mut routed.report.outcomes {
            o.origin = routed_from[o.origin];
            o.at = Some(at(&batch[o.origin]));
        }
        normalized.also.push((self.route.name(), routed.report));
        Ok(normalized)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dmpflow_schemas::{Cda, Feed, Normalized, wire};
    use dmpflow_store::Store;
    use rdkafka::Timestamp;
    use rdkafka::message::Message;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::Settings;

    const PID: &str = "PID|1||201019999900109^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||";

    fn on(settings: &Settings, feed: Feed, raw: String, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(raw.into_bytes()),
            None,
            settings.topics.feed(feed),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    /// A lab ORU for the registry's patient, under the birth name `family`.
    fn lab(settings: &Settings, family: &str, id: &str, offset: i64) -> OwnedMessage {
        let raw = format!(
            "MSH|^~\\&|SIL|LABO|DMPFLOW|DMP|20241105143000||ORU^R01^ORU_R01|{id}|P|2.5|||||FRA|UNICODE UTF-8\r\
             {PID}{family}^Noel^Noel^^^^L||20010115|M||||||||||||||||||||||||VALI\r\
             PV1|1|O\r\
             ORC|NW|{id}-CMD^SIL|||||||20241105143000\r\
             OBR|1|{id}-CMD^SIL||24362-6^Ionogramme sanguin^LN|||20241105080000|||||||||10003456789^DUPONT^CLAIRE||||||20241105143000|||F|||||||801234567866&BIOLO&ANNE\r\
             OBX|1|NM|2823-3^Potassium^LN||4.2|mmol/L|3.5-5.1|N|||F|||20241105080000\r"
        );
        on(settings, Feed::Lab, raw, offset)
    }

    // The fused stage hands normalize's payloads to route instead of copying them: a
    // document routed as it came leaves with exactly the bytes normalize encoded, and one
    // that route does not pass as it came (here a trait mismatch, quarantined) is read from
    // those handed bytes, its CDA whole in the case.
    #[tokio::test]
    async fn handed_payloads_leave_whole_routed_or_quarantined() {
        let settings = Arc::new(Settings {
            accept_test_oids: true,
            ..Settings::default()
        });
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let mut stage = NormalizeRouteStage::new(
            NormalizeStage::new(settings.clone()),
            RouteStage::new(settings.clone(), store),
        );
        let shutdown = CancellationToken::new();
        let ctx = BatchCtx::detached(&shutdown);
        let identity = format!(
            "MSH|^~\\&|GAM|CHU|PFI|X|20240501090000||ADT^A01^ADT_A01|C1|P|2.5\r\
             {PID}CELESTIN^Noel^Noel^^^^L||20010115|M||||||||||||||||||||||||VALI\r"
        );
        let first = stage
            .handle(&[on(&settings, Feed::Identity, identity, 1)], &ctx)
            .await
            .unwrap();
        assert!(first.produced.outputs.is_empty(), "the patient is applied");

        let batch = [
            lab(&settings, "CELESTIN", "L1", 2),
            lab(&settings, "DURAND", "L2", 3),
        ];
        // What normalize alone encodes for each message: the bytes handed over.
        let encoded = NormalizeStage::new(settings.clone()).decide(&batch);
        let handled = stage.handle(&batch, &ctx).await.unwrap();
        let outputs = &handled.produced.outputs;
        assert_eq!(handled.produced.origins, [0, 1]);
        assert_eq!(outputs[0].topic, settings.topics.routed);
        assert_eq!(outputs[0].payload, encoded.produced.outputs[0].payload);

        assert_eq!(outputs[1].topic, settings.topics.quarantine);
        let case = wire::decode_quarantined(&outputs[1].payload).unwrap();
        let Normalized::Document(d) = case.item else {
            panic!("a document's case")
        };
        let Cda::Packed(packed) = &d.cda else {
            panic!("the case keeps its CDA packed")
        };
        let sent = wire::decode(&encoded.produced.outputs[1].payload).unwrap();
        let Normalized::Document(sent) = sent else {
            unreachable!()
        };
        assert_eq!(
            packed.unpack().unwrap(),
            sent.cda.into_xml().unwrap(),
            "the quarantined CDA is the one normalize packed"
        );
        assert!(batch.iter().all(|m| m.payload().is_some()));
    }
}
