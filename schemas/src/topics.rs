//! Default topic names of the design. They are configuration; these are the defaults.

use crate::Feed;

pub const DOCUMENTS: &str = "dmp.documents";
pub const ROUTED: &str = "dmp.routed";
pub const QUARANTINE: &str = "dmp.quarantine";
pub const DLQ: &str = "dmp.dlq";

/// `dmp.feed.<feed>`.
pub fn feed_topic(feed: Feed) -> String {
    format!("dmp.feed.{}", feed.as_str())
}
