//! Which feed topic a message goes to, decided from MSH-9: one fixed feed, or a table of
//! `TYPE[^EVENT]=FEED` rows (first match wins). Either way the feed must be one that
//! normalize maps the message on: the gateway asks `dmpflow_normalize::mapping::accepts`,
//! the table normalize itself maps by, instead of keeping a copy that could disagree (an
//! AA for a message normalize then dead-letters would tell the sender it is done when the
//! DMP never gets it).

use anyhow::{Context, Result};
use dmpflow_hl7::Message;
use dmpflow_pipeline::config::Settings;
use dmpflow_schemas::Feed;

/// Where a message goes, decided from MSH-9.
#[derive(Debug, Clone)]
pub enum Routing {
    /// Every message to this feed; its message types are checked (others get AR).
    Feed(Feed),
    /// (type, optional event, feed), first match wins.
    Table(Vec<(String, Option<String>, Feed)>),
}

impl Routing {
    /// From `--feed` or the `--route TYPE[^EVENT]=FEED` values (a fixed feed wins; clap
    /// makes the two exclusive). An empty table is returned as is: the caller says which
    /// flags are missing.
    pub fn from_flags(feed: Option<Feed>, routes: &[String]) -> Result<Routing> {
        if let Some(f) = feed {
            return Ok(Routing::Feed(f));
        }
        let mut table = Vec::new();
        for r in routes {
            let (ty, feed) = r
                .split_once('=')
                .with_context(|| format!("--route {r}: expected TYPE[^EVENT]=FEED"))?;
            let feed: Feed = feed.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let (typ, event) = match ty.split_once('^') {
                Some((t, e)) => (t.to_string(), Some(e.to_string())),
                None => (ty.to_string(), None),
            };
            table.push((typ, event, feed));
        }
        Ok(Routing::Table(table))
    }

    /// The feed of every message when there is only one (known even for a message refused
    /// before its MSH-9 is read, so the metrics can name it).
    pub fn fixed_feed(&self) -> Option<Feed> {
        match self {
            Routing::Feed(f) => Some(*f),
            Routing::Table(_) => None,
        }
    }

    /// The feed topics this gateway may write to, each once.
    pub fn topics(&self, settings: &Settings) -> Vec<String> {
        let mut feeds: Vec<Feed> = match self {
            Routing::Feed(f) => vec![*f],
            Routing::Table(t) => t.iter().map(|(_, _, f)| *f).collect(),
        };
        feeds.sort_by_key(|f| f.as_str());
        feeds.dedup();
        feeds.into_iter().map(|f| settings.topics.feed(f)).collect()
    }

    /// The feed of a message of type `typ^event`: the fixed feed, or the first `--route`
    /// row matching MSH-9, provided normalize maps the message on that feed
    /// (`dmpflow_normalize::mapping::accepts`, the same table, not a copy). None: AR.
    pub fn feed_for(&self, typ: &str, event: &str, msg: &Message<'_>) -> Option<Feed> {
        let feed = match self {
            Routing::Feed(f) => *f,
            Routing::Table(t) => {
                t.iter()
                    .find(|(ty, ev, _)| ty == typ && ev.as_deref().is_none_or(|e| e == event))?
                    .2
            }
        };
        dmpflow_normalize::mapping::accepts(feed, typ, event, msg).then_some(feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmpflow_hl7::ReadOptions;

    #[test]
    fn routing_by_feed_and_by_table() {
        let opts = ReadOptions::default();
        let raw = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\r".to_vec();
        let m = Message::parse(&raw, &opts).unwrap();
        let f = Routing::Feed(Feed::Lab);
        assert_eq!(f.feed_for("ORU", "R01", &m), Some(Feed::Lab));
        assert_eq!(f.feed_for("ADT", "A28", &m), None);
        // The documents feed takes an ORU only when it carries a CDA (normalize's table).
        let docs = Routing::Feed(Feed::Documents);
        assert_eq!(docs.feed_for("ORU", "R01", &m), None);
        assert_eq!(docs.feed_for("MDM", "T02", &m), Some(Feed::Documents));
        let cda = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\rOBX|1|ED|11490-0^LDL^LN||^text^XML^Base64^PGEvPg==||||||F\r".to_vec();
        let with_cda = Message::parse(&cda, &opts).unwrap();
        assert_eq!(
            docs.feed_for("ORU", "R01", &with_cda),
            Some(Feed::Documents)
        );
        // Pharmacy: its own RDS^O13, and an ORU only with a finished document.
        let pharmacy = Routing::Feed(Feed::Pharmacy);
        assert_eq!(pharmacy.feed_for("ORU", "R01", &m), None);
        assert_eq!(
            pharmacy.feed_for("ORU", "R01", &with_cda),
            Some(Feed::Pharmacy)
        );
        assert_eq!(pharmacy.feed_for("RDS", "O13", &m), Some(Feed::Pharmacy));
        // Identity: every ADT event normalize maps or skips (A03 is counted, not refused).
        let id = Routing::Feed(Feed::Identity);
        assert_eq!(id.feed_for("ADT", "A01", &m), Some(Feed::Identity));
        assert_eq!(id.feed_for("ADT", "A03", &m), Some(Feed::Identity));
        assert_eq!(id.feed_for("ORU", "R01", &m), None);
        let routes = ["ADT=identity".to_string(), "RDS^O13=pharmacy".to_string()];
        let t = Routing::from_flags(None, &routes).unwrap();
        assert_eq!(t.feed_for("ADT", "A31", &m), Some(Feed::Identity));
        assert_eq!(t.feed_for("RDS", "O13", &m), Some(Feed::Pharmacy));
        assert_eq!(t.feed_for("RDS", "O11", &m), None);
    }

    #[test]
    fn a_route_row_does_not_override_normalize() {
        // The row matches MSH-9, but normalize maps neither on that feed: AR, not an AA
        // for a message normalize would dead-letter as hl7.message_type.unsupported.
        let m = Message::parse(
            b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\r",
            &ReadOptions::default(),
        )
        .unwrap();
        let routes = ["ORU=pharmacy".to_string(), "ADT=identity".to_string()];
        let t = Routing::from_flags(None, &routes).unwrap();
        assert_eq!(t.feed_for("ORU", "R01", &m), None);
        assert_eq!(
            t.feed_for("ADT", "A29", &m),
            None,
            "an event identity refuses"
        );
        assert_eq!(t.feed_for("ADT", "A28", &m), Some(Feed::Identity));
    }

    #[test]
    fn route_flags_are_checked() {
        let e = Routing::from_flags(None, &["ORU".to_string()]).unwrap_err();
        assert!(e.to_string().contains("expected TYPE[^EVENT]=FEED"), "{e}");
        assert!(Routing::from_flags(None, &["ORU=nowhere".to_string()]).is_err());
        assert!(matches!(
            Routing::from_flags(Some(Feed::Lab), &[]).unwrap(),
            Routing::Feed(Feed::Lab)
        ));
        let t = Routing::from_flags(None, &["ORU=lab".into(), "ORU^R01=imaging".into()]);
        let mut s = Settings::default();
        s.topics.feed_prefix = "p.".into();
        assert_eq!(t.unwrap().topics(&s), vec!["p.imaging", "p.lab"]);
    }
}
