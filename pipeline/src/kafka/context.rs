//! The client context of the stage consumers: it lets a stage know that its group
//! rebalanced (so it drops per-partition state) and whether it holds an assignment (the
//! readiness check), and logs assignments by topic coordinates only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use tracing::{info, warn};

/// Consumer context: remembers that a rebalance happened so stages can drop per-partition
/// state, and logs assignments (topic coordinates only).
#[derive(Default)]
pub struct StageContext {
    pub rebalanced: AtomicBool,
    /// True while the consumer holds an assignment from its group (possibly empty: a
    /// member with more instances than partitions is a standby, still ready).
    pub assigned: AtomicBool,
    /// Bumped at every assignment change: offsets recorded under one generation were
    /// held continuously since (see `driver::Source::idle`).
    pub generation: AtomicU64,
    /// An asynchronous offset commit failed (e.g. "not coordinator" while the group's
    /// coordinator moves after a broker restart): the driver commits again when idle.
    pub commit_failed: AtomicBool,
}

impl ClientContext for StageContext {}

impl ConsumerContext for StageContext {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = tpl.count(), "partitions assigned");
                self.assigned.store(true, Ordering::SeqCst);
            }
            Rebalance::Revoke(tpl) => {
                info!(partitions = tpl.count(), "partitions revoked");
                self.assigned.store(false, Ordering::SeqCst);
            }
            Rebalance::Error(e) => {
                warn!(error = %e, "rebalance error");
                self.assigned.store(false, Ordering::SeqCst);
            }
        }
        self.rebalanced.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        if let Err(e) = result {
            warn!(error = %e, "offset commit failed; committing again when idle");
            self.commit_failed.store(true, Ordering::SeqCst);
        }
    }
}

/// The consumer of a pipeline stage (and of `replay`), polled from async code.
pub type StageConsumer = StreamConsumer<StageContext>;
