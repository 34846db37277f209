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

/// Feed topic of the documents feed (issue #12): finished CDA of any CI-SIS model.
pub const FEED_DOCUMENTS: &str = "dmp.feed.documents";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_feed_has_its_topic() {
        assert_eq!(feed_topic(Feed::Documents), FEED_DOCUMENTS);
        assert_eq!("documents".parse::<Feed>(), Ok(Feed::Documents));
        assert!(Feed::ALL.contains(&Feed::Documents));
    }
}
