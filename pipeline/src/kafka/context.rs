//! The client context of the stage consumers: it lets a stage know that its group
//! rebalanced (so it drops per-partition state) and whether it holds an assignment (the
//! readiness check), and logs assignments by topic coordinates only.

use std::sync::atomic::{AtomicBool, Ordering};

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
    }
}

/// The consumer of a pipeline stage (and of `replay`), polled from async code.
pub type StageConsumer = StreamConsumer<StageContext>;
