//! `dmpflow quarantine`: list, show and release identity-vigilance cases. A release takes
//! case ids or a filter (reason, feed, age), so an operator who fixed the cause of many
//! cases at once (a registry import, test OIDs accepted on a dev stack) releases them in
//! one command, after seeing how many and confirming; each case still goes through
//! `pipeline::release_case`, the path the route stage's sweeper uses.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use dmpflow_route::RouteConfig;
use dmpflow_schemas::{Cda, Feed, Normalized};
use dmpflow_store::{QuarantineRow, QuarantineStatus, Store};

use dmpflow_pipeline::chain::{self as pipeline, Release};
use dmpflow_pipeline::config::Settings;

/// A release of more cases than this asks for confirmation (or `--yes`).
pub const CONFIRM_ABOVE: usize = 10;

#[derive(clap::Subcommand)]
pub enum QuarantineAction {
    /// Open quarantine cases (add --all for released ones too), optionally filtered.
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: Filter,
    },
    /// One case with its reason, the document metadata and its CDA: PATIENT DATA, printed
    /// on purpose (like `dlq show --payload`); use with care.
    Show { id: i64 },
    /// Re-route cases after their cause was fixed (the registry, the OID settings); a case
    /// that now passes is stored and closed, one that still fails stays open with its
    /// current reason. Name case ids, or select open cases by --reason/--feed/--since.
    Release(ReleaseArgs),
}

/// Which cases: every given criterion must hold.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Filter {
    /// Only cases with this reason code (e.g. ins.oid.rejected, ins.unknown).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only cases that came from this feed.
    #[arg(long)]
    pub feed: Option<Feed>,
    /// Only cases created at or after TIME (RFC 3339, or relative: 30m, 2h, 1d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.reason.is_none() && self.feed.is_none() && self.since.is_none()
    }

    /// The filter with `--since` resolved to ms since the epoch (relative to now).
    fn resolve(&self) -> Result<Selection> {
        Ok(Selection {
            reason: self.reason.clone(),
            feed: self.feed,
            since_ms: self
                .since
                .as_deref()
                .map(dmpflow_pipeline::timefmt::parse_time)
                .transpose()?,
        })
    }
}

/// A resolved filter.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub reason: Option<String>,
    pub feed: Option<Feed>,
    pub since_ms: Option<i64>,
}

impl Selection {
    /// Whether a case matches. A case whose creation time cannot be read never matches a
    /// `--since` (a release never takes a case it cannot date).
    pub fn matches(&self, row: &QuarantineRow) -> bool {
        self.reason.as_deref().is_none_or(|r| row.reason == r)
            && self
                .feed
                .is_none_or(|f| row.source_feed.as_deref() == Some(f.as_str()))
            && self
                .since_ms
                .is_none_or(|s| created_ms(&row.created_at).is_some_and(|t| t >= s))
    }
}

/// A case's `created_at` (RFC 3339, as the store writes it) in ms since the epoch.
fn created_ms(created_at: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[derive(clap::Args)]
pub struct ReleaseArgs {
    /// Case ids, as `quarantine list` prints them; or none, and a filter.
    #[arg(conflicts_with_all = ["reason", "feed", "since"])]
    pub ids: Vec<i64>,
    #[command(flatten)]
    pub filter: Filter,
    /// Print the cases that would be released and their count; release nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Release more than 10 cases without asking (required when no terminal can ask).
    #[arg(long)]
    pub yes: bool,
    /// Accept the test INS OIDs (1.2.250.1.213.1.4.10 / .11) while re-routing, as
    /// DMPFLOW_ACCEPT_TEST_OIDS=1 does: the demo and test stacks only, never production.
    #[arg(long)]
    pub accept_test_oids: bool,
}

async fn open_store(url: &str) -> Result<Store> {
    Store::connect(url).await.with_context(|| {
        format!(
            "opening the store {}",
            dmpflow_pipeline::config::redact_url(url)
        )
    })
}

pub async fn quarantine(settings: &Settings, action: QuarantineAction) -> Result<ExitCode> {
    let store = open_store(&settings.database_url).await?;
    match action {
        QuarantineAction::List { all, filter } => {
            let status = (!all).then_some(QuarantineStatus::Open);
            let selection = filter.resolve()?;
            let rows: Vec<QuarantineRow> = store
                .quarantine_list(status)
                .await?
                .into_iter()
                .filter(|r| selection.matches(r))
                .collect();
            print_rows(&rows);
            println!("{} cases", rows.len());
            Ok(ExitCode::SUCCESS)
        }
        QuarantineAction::Show { id } => {
            let Some(q) = store.quarantine_get(id).await? else {
                anyhow::bail!("no quarantine case {id}");
            };
            println!(
                "case {} [{}] {}: {}",
                q.id,
                q.status.as_str(),
                q.reason,
                q.detail
            );
            println!(
                "created {}  source {:?} {:?}/{:?}@{:?}",
                q.created_at, q.source_feed, q.source_topic, q.source_partition, q.source_offset
            );
            // Shown with its XML, as cases always were: a packed CDA is inflated for the
            // operator (the case itself keeps its bytes).
            let mut item = q.item;
            if let Normalized::Document(d) = &mut item
                && d.cda.as_packed().is_some()
            {
                let xml = std::mem::take(&mut d.cda)
                    .into_xml()
                    .map_err(|why| anyhow::anyhow!("case {id}: its CDA is corrupt: {why}"))?;
                d.cda = Cda::Xml(xml);
            }
            println!("{}", serde_json::to_string_pretty(&item)?);
            Ok(ExitCode::SUCCESS)
        }
        QuarantineAction::Release(args) => release(settings, &store, args).await,
    }
}

fn print_rows(rows: &[QuarantineRow]) {
    println!(
        "{:<6} {:<28} {:<8} {:<10} created",
        "id", "reason", "feed", "status"
    );
    for r in rows {
        println!(
            "{:<6} {:<28} {:<8} {:<10} {}",
            r.id,
            r.reason,
            r.source_feed.as_deref().unwrap_or("-"),
            r.status.as_str(),
            r.created_at
        );
    }
}

async fn release(settings: &Settings, store: &Store, args: ReleaseArgs) -> Result<ExitCode> {
    let cfg = RouteConfig {
        accept_test_oids: args.accept_test_oids || settings.accept_test_oids,
    };
    // One named case keeps the answer it always had (an unknown id is an error).
    if let [id] = args.ids[..] {
        if args.dry_run {
            let Some(q) = store
                .quarantine_get(id)
                .await?
                .filter(|q| q.status == QuarantineStatus::Open)
            else {
                anyhow::bail!("no open quarantine case {id}")
            };
            print_rows(std::slice::from_ref(&q));
            println!("1 case would be released (dry run: nothing released)");
            return Ok(ExitCode::SUCCESS);
        }
        return release_one(store, &cfg, id).await;
    }
    let ids: Vec<i64> = if !args.ids.is_empty() {
        args.ids.clone()
    } else {
        anyhow::ensure!(
            !args.filter.is_empty(),
            "name case ids, or select cases with --reason, --feed and/or --since \
             (see `dmpflow quarantine list`)"
        );
        let selection = args.filter.resolve()?;
        let rows: Vec<QuarantineRow> = store
            .quarantine_list(Some(QuarantineStatus::Open))
            .await?
            .into_iter()
            .filter(|r| selection.matches(r))
            .collect();
        if args.dry_run {
            print_rows(&rows);
        }
        rows.iter().map(|r| r.id).collect()
    };
    let n = ids.len();
    if args.dry_run {
        println!("{n} cases would be released (dry run: nothing released)");
        return Ok(ExitCode::SUCCESS);
    }
    if n == 0 {
        println!("no open case matches: nothing released");
        return Ok(ExitCode::SUCCESS);
    }
    if n > CONFIRM_ABOVE && !args.yes {
        confirm(n)?;
    }
    let mut tally = Tally::default();
    for id in ids {
        let outcome = pipeline::release_case(store, &cfg, id).await?;
        tally.add(&outcome);
    }
    tally.print();
    Ok(if tally.all_filed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Asks on the terminal before releasing `n` cases; without a terminal, refuses (a script
/// says `--yes`).
fn confirm(n: usize) -> Result<()> {
    let stdin = std::io::stdin();
    anyhow::ensure!(
        stdin.is_terminal(),
        "{n} cases match (more than {CONFIRM_ABOVE}): nothing released; check them with \
         --dry-run, then confirm with --yes (no terminal to ask on)"
    );
    eprint!("release {n} quarantine cases? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    anyhow::ensure!(
        matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"),
        "not confirmed: nothing released"
    );
    Ok(())
}

async fn release_one(store: &Store, cfg: &RouteConfig, id: i64) -> Result<ExitCode> {
    match pipeline::release_case(store, cfg, id).await? {
        Release::Filed(how) => {
            println!("case {id} released: {how}");
            Ok(ExitCode::SUCCESS)
        }
        Release::PatientApplied => {
            println!("case {id} released: patient update applied");
            Ok(ExitCode::SUCCESS)
        }
        Release::StillFails { reason, detail } => {
            println!("case {id} still fails: {reason} ({detail}); left open");
            Ok(ExitCode::from(1))
        }
        Release::NotFiled(what) => {
            println!("case {id} not released: the store answered {what}; left open");
            Ok(ExitCode::from(1))
        }
        Release::NotOpen => anyhow::bail!("no open quarantine case {id}"),
    }
}

/// What a release of several cases gave, for its summary.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    /// `stored`, `replaced`, `deleted`, `patient` → cases closed that way.
    pub filed: BTreeMap<&'static str, usize>,
    /// reason code → cases route still refuses (left open, reason updated).
    pub still_failing: BTreeMap<String, usize>,
    /// what the store answered (`duplicate`, ...) → cases route passed but the store did
    /// not file (left open).
    pub not_filed: BTreeMap<&'static str, usize>,
    /// Cases no longer open when their turn came (released meanwhile, e.g. by route's
    /// sweeper).
    pub not_open: usize,
}

impl Tally {
    pub fn add(&mut self, outcome: &Release) {
        match outcome {
            Release::Filed(how) => *self.filed.entry(how).or_default() += 1,
            Release::PatientApplied => *self.filed.entry("patient").or_default() += 1,
            Release::StillFails { reason, .. } => {
                *self.still_failing.entry(reason.clone()).or_default() += 1
            }
            Release::NotFiled(what) => *self.not_filed.entry(what).or_default() += 1,
            Release::NotOpen => self.not_open += 1,
        }
    }

    pub fn all_filed(&self) -> bool {
        self.still_failing.is_empty() && self.not_filed.is_empty()
    }

    fn print(&self) {
        fn sum<K>(m: &BTreeMap<K, usize>) -> usize {
            m.values().sum()
        }
        // "name n, name n" in parentheses, nothing when empty.
        let list = |m: Vec<(String, usize)>| {
            if m.is_empty() {
                return String::new();
            }
            let items: Vec<String> = m.into_iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!(" ({})", items.join(", "))
        };
        let owned = |m: &BTreeMap<&'static str, usize>| {
            m.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        println!("released {}{}", sum(&self.filed), list(owned(&self.filed)));
        println!(
            "still failing {}{}; left open",
            sum(&self.still_failing),
            list(self.still_failing.clone().into_iter().collect())
        );
        println!(
            "not filed {}{}; left open",
            sum(&self.not_filed),
            list(owned(&self.not_filed))
        );
        if self.not_open > 0 {
            println!("{} already released meanwhile", self.not_open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmpflow_schemas::{Normalized, PatientChange, PatientUpdate};

    fn update() -> Normalized {
        Normalized::Patient(Box::new(PatientUpdate {
            change: PatientChange::Upsert,
            patient: Default::default(),
            feeding_opposed: None,
            dmp_status: None,
            consultation_consent: None,
            times: Default::default(),
            event: String::new(),
            source: Default::default(),
        }))
    }

    fn row(id: i64, reason: &str, feed: Option<&str>, created_at: &str) -> QuarantineRow {
        QuarantineRow {
            id,
            reason: reason.into(),
            detail: String::new(),
            unique_id: None,
            item: update(),
            source_feed: feed.map(str::to_string),
            source_topic: None,
            source_partition: None,
            source_offset: None,
            status: QuarantineStatus::Open,
            created_at: created_at.into(),
            released_at: None,
        }
    }

    #[test]
    fn a_selection_matches_reason_feed_and_age_together() {
        let at = |s: &str| created_ms(s).unwrap();
        let rows = [
            row(
                1,
                "ins.oid.rejected",
                Some("lab"),
                "2026-11-28T08:00:00.000001Z",
            ),
            row(
                2,
                "ins.oid.rejected",
                Some("imaging"),
                "2026-11-28T10:00:00Z",
            ),
            row(3, "ins.unknown", Some("lab"), "2026-11-28T10:00:00Z"),
            row(4, "ins.oid.rejected", None, "2026-11-28T11:00:00Z"),
            row(5, "ins.oid.rejected", Some("lab"), "not a time"),
        ];
        let ids = |s: &Selection| -> Vec<i64> {
            rows.iter().filter(|r| s.matches(r)).map(|r| r.id).collect()
        };
        assert_eq!(ids(&Selection::default()), [1, 2, 3, 4, 5]);
        let oid = Selection {
            reason: Some("ins.oid.rejected".into()),
            ..Default::default()
        };
        assert_eq!(ids(&oid), [1, 2, 4, 5]);
        let lab = Selection {
            feed: Some(Feed::Lab),
            ..oid.clone()
        };
        assert_eq!(ids(&lab), [1, 5]);
        let recent = Selection {
            since_ms: Some(at("2026-11-28T09:00:00Z")),
            ..oid.clone()
        };
        // A case that cannot be dated is never taken by --since.
        assert_eq!(ids(&recent), [2, 4]);
        let exact = Selection {
            since_ms: Some(at("2026-11-28T10:00:00Z")),
            feed: Some(Feed::Lab),
            reason: None,
        };
        assert_eq!(ids(&exact), [3]);
    }

    #[test]
    fn a_tally_counts_each_outcome_and_fails_unless_all_were_filed() {
        let mut t = Tally::default();
        t.add(&Release::Filed("stored"));
        t.add(&Release::Filed("stored"));
        t.add(&Release::PatientApplied);
        t.add(&Release::NotOpen);
        assert!(t.all_filed());
        t.add(&Release::StillFails {
            reason: "ins.unknown".into(),
            detail: String::new(),
        });
        t.add(&Release::NotFiled("duplicate"));
        assert!(!t.all_filed());
        assert_eq!(t.filed["stored"], 2);
        assert_eq!(t.filed["patient"], 1);
        assert_eq!(t.still_failing["ins.unknown"], 1);
        assert_eq!(t.not_filed["duplicate"], 1);
        assert_eq!(t.not_open, 1);
    }
}
