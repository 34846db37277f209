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
        let (mut normalized, heads) = self.normalize.decide_keeping_heads(batch, true);
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
        let documents = in_memory(to_route, &mut HashMap::new());
        let inputs = documents
            .iter()
            .zip(routed_heads)
            .map(|(m, head)| match head {
                Some(meta) => Input::Peeked(Box::new(meta)),
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
