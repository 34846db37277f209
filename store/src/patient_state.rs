//! What one identity update makes of a registry record, as a pure function (no IO): the
//! #16 trait rules (unstated traits keep their value, FICTI/DOUTE/PROV win, a record
//! without traits is never QUAL/VALI/RECUP) and the #12 ordering rule, value by value.
//!
//! Ordering rule. Each value the registry holds carries the sender's date of it: the
//! opposition ZFA-10, the DMP status ZFA-2, the consultation consent ZFA-12, each else the
//! message's MSH-7; the traits, the identity status and the INS OID together carry the
//! MSH-7 of the last message that set them. An update whose date for a value is older
//! than the date held leaves that value alone (an old A08 replayed after a newer A31
//! reverts nothing). Equal dates apply: of two messages stamped the same second, the one
//! that came later on the patient's partition wins. An update without a date for a value
//! (neither the ZFA date nor MSH-7) cannot be ordered and applies, as before #12, keeping
//! the date held. A value the update does not state (ZFA NA, no ZFA) never changes
//! anything, whatever its date.

use dmpflow_route as route;
use dmpflow_schemas::{PatientRecord, PatientUpdate};

/// Statuses that need the traits they vouch for: a record without them is kept PROV.
const TRAIT_BACKED: [&str; 3] = ["QUAL", "VALI", "RECUP"];
const STATUSES: [&str; 4] = ["QUAL", "VALI", "RECUP", "PROV"];

/// The registry status to keep from PID-32 values: a disqualifying one (FICTI, DOUTE,
/// PROV, route's rule) wherever it stands, else the strongest one present, else the first.
/// So "VALI~FICTI" never makes a record qualified.
pub(crate) fn registry_status(values: &[String]) -> Option<&str> {
    if let Some(d) = route::status::disqualifying(values) {
        return Some(d);
    }
    STATUSES
        .iter()
        .find(|s| values.iter().any(|v| v == *s))
        .copied()
        .or_else(|| values.first().map(String::as_str))
}

/// One registry value an update changed, for `patient_history`. Trait rows carry no
/// values (see the migration): `old`/`new` are `None` for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub field: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
    /// The sender's date of the new value, when it has one.
    pub at: Option<String>,
}

/// A date, or `None` when the sender left it empty.
fn date(d: Option<&String>) -> Option<&str> {
    d.map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// Whether a value dated `incoming` may replace one dated `held` (see the module doc).
fn not_older(incoming: Option<&str>, held: Option<&str>) -> bool {
    match (incoming, held) {
        (Some(i), Some(h)) => i >= h,
        _ => true,
    }
}

fn opposition_label(stated: bool, opposed: bool) -> Option<String> {
    stated.then(|| if opposed { "IO" } else { "INO" }.to_string())
}

fn consent_label(c: Option<bool>) -> Option<String> {
    c.map(|c| if c { "IC" } else { "INC" }.to_string())
}

/// The record after `u`, and what changed, from `held` (`None`: the registry has no
/// record of `u.patient.ins`). `merged_into` is left as held: merges are applied apart.
pub(crate) fn apply(
    held: Option<&PatientRecord>,
    u: &PatientUpdate,
) -> (PatientRecord, Vec<Change>) {
    let p = &u.patient;
    let blank = PatientRecord {
        ins: p.ins.clone(),
        ..PatientRecord::default()
    };
    let old = held.unwrap_or(&blank);
    let mut next = old.clone();
    let message = date(u.times.message.as_ref());

    // Traits, identity status and OID: one group, dated by MSH-7.
    if held.is_none() || not_older(message, date(old.traits_at.as_ref())) {
        let name = p.birth_name.trim();
        if !name.is_empty() {
            next.birth_name = name.to_string();
        }
        let first: Vec<String> = p
            .first_names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if !first.is_empty() {
            next.first_names = first;
        }
        let birth = p.birth_date.trim();
        if !birth.is_empty() {
            next.birth_date = birth.to_string();
        }
        // U is HL7 "unknown", also what an empty PID-8 reads as: it never replaces M or F.
        let sex = p.sex.trim();
        if !sex.is_empty() && sex != "U" {
            next.sex = sex.to_string();
        } else if next.sex.is_empty() {
            next.sex = "U".to_string();
        }
        if let Some(place) = p
            .birth_place
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            next.birth_place = Some(place.to_string());
        }
        next.ins_oid = p.ins_oid.clone();
        if let Some(s) = registry_status(&p.identity_status) {
            next.identity_status = s.to_string();
        }
        let complete = !next.birth_name.is_empty()
            && !next.first_names.is_empty()
            && !next.birth_date.is_empty();
        if next.identity_status.is_empty()
            || (!complete && TRAIT_BACKED.contains(&next.identity_status.as_str()))
        {
            next.identity_status = "PROV".to_string();
        }
        next.traits_at = message.map(str::to_string).or(next.traits_at);
    }

    if let Some(v) = u.feeding_opposed {
        let at = date(u.times.feeding_opposed.as_ref()).or(message);
        if not_older(at, date(old.feeding_opposed_at.as_ref())) {
            next.feeding_opposed = v;
            next.feeding_opposed_stated = true;
            next.feeding_opposed_at = at.map(str::to_string).or(next.feeding_opposed_at);
        }
    }
    if let Some(s) = u
        .dmp_status
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let at = date(u.times.dmp_status.as_ref()).or(message);
        if not_older(at, date(old.dmp_status_at.as_ref())) {
            next.dmp_status = Some(s.to_string());
            next.dmp_status_at = at.map(str::to_string).or(next.dmp_status_at);
        }
    }
    if let Some(c) = u.consultation_consent {
        let at = date(u.times.consultation_consent.as_ref()).or(message);
        if not_older(at, date(old.consultation_consent_at.as_ref())) {
            next.consultation_consent = Some(c);
            next.consultation_consent_at = at.map(str::to_string).or(next.consultation_consent_at);
        }
    }

    let changes = changes(old, &next);
    (next, changes)
}

/// The history rows from `old` to `next`: values for the consent, opposition, statuses
/// and OID, names only for the traits.
pub(crate) fn changes(old: &PatientRecord, next: &PatientRecord) -> Vec<Change> {
    let mut out = Vec::new();
    let mut valued = |field, o: Option<String>, n: Option<String>, at: &Option<String>| {
        if o != n {
            out.push(Change {
                field,
                old: o,
                new: n,
                at: at.clone(),
            });
        }
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    valued(
        "identity_status",
        some(&old.identity_status),
        some(&next.identity_status),
        &next.traits_at,
    );
    valued(
        "ins_oid",
        some(&old.ins_oid),
        some(&next.ins_oid),
        &next.traits_at,
    );
    valued(
        "feeding_opposed",
        opposition_label(old.feeding_opposed_stated, old.feeding_opposed),
        opposition_label(next.feeding_opposed_stated, next.feeding_opposed),
        &next.feeding_opposed_at,
    );
    valued(
        "dmp_status",
        old.dmp_status.clone(),
        next.dmp_status.clone(),
        &next.dmp_status_at,
    );
    valued(
        "consultation_consent",
        consent_label(old.consultation_consent),
        consent_label(next.consultation_consent),
        &next.consultation_consent_at,
    );
    let traits: [(&'static str, bool); 5] = [
        ("birth_name", old.birth_name != next.birth_name),
        ("first_names", old.first_names != next.first_names),
        ("birth_date", old.birth_date != next.birth_date),
        ("sex", old.sex != next.sex),
        ("birth_place", old.birth_place != next.birth_place),
    ];
    for (field, differs) in traits {
        if differs {
            out.push(Change {
                field,
                old: None,
                new: None,
                at: next.traits_at.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmpflow_schemas::{PatientChange, PatientIdentity, SourceRef, UpdateTimes};

    fn update(msh7: &str) -> PatientUpdate {
        PatientUpdate {
            change: PatientChange::Upsert,
            patient: PatientIdentity {
                ins: "279035121518989".into(),
                ins_oid: "1.2.250.1.213.1.4.8".into(),
                birth_name: "DUPONT".into(),
                first_names: vec!["MARIE".into()],
                birth_date: "1979-03-05".into(),
                sex: "F".into(),
                identity_status: vec!["VALI".into()],
                ..Default::default()
            },
            feeding_opposed: None,
            dmp_status: None,
            consultation_consent: None,
            times: UpdateTimes {
                message: Some(msh7.into()),
                ..Default::default()
            },
            event: "A31".into(),
            source: SourceRef::default(),
        }
    }

    // Issue #12 item 1: per value, an older date never overwrites a newer one.
    #[test]
    fn an_older_value_never_overwrites_a_newer_one() {
        let mut a31 = update("2024-03-06T11:00:00");
        a31.feeding_opposed = Some(true);
        a31.times.feeding_opposed = Some("2024-03-06T10:00:00".into());
        a31.dmp_status = Some("ACTIF".into());
        a31.consultation_consent = Some(true);
        let (held, _) = apply(None, &a31);
        assert_eq!(held.feeding_opposition(), Some(true));
        assert_eq!(
            held.feeding_opposed_at.as_deref(),
            Some("2024-03-06T10:00:00")
        );
        assert_eq!(held.dmp_status_at.as_deref(), Some("2024-03-06T11:00:00"));

        // An A08 sent earlier, delivered later: older MSH-7, older ZFA dates.
        let mut a08 = update("2024-03-05T09:00:00");
        a08.patient.birth_name = "ANCIEN".into();
        a08.patient.identity_status = vec!["PROV".into()];
        a08.feeding_opposed = Some(false);
        a08.dmp_status = Some("FERME".into());
        a08.consultation_consent = Some(false);
        let (after, changes) = apply(Some(&held), &a08);
        assert_eq!(after, held);
        assert!(changes.is_empty());

        // A newer MSH-7 but an older ZFA-10: the traits move, the opposition stays.
        let mut late = update("2024-03-07T09:00:00");
        late.patient.birth_name = "NOUVEAU".into();
        late.feeding_opposed = Some(false);
        late.times.feeding_opposed = Some("2024-03-01T00:00:00".into());
        let (after, changes) = apply(Some(&held), &late);
        assert_eq!(after.birth_name, "NOUVEAU");
        assert!(after.feeding_opposed);
        let fields: Vec<_> = changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["birth_name"]);
        assert_eq!(changes[0].old, None, "trait values stay out of the history");
    }

    // Issue #12 item 1/3: NA (None) leaves the stored value; INO after IO is recorded.
    #[test]
    fn not_collected_changes_nothing_and_ino_releases() {
        let mut io = update("2024-03-06T11:00:00");
        io.feeding_opposed = Some(true);
        let (held, changes) = apply(None, &io);
        assert!(changes.iter().any(|c| c.field == "feeding_opposed"
            && c.old.is_none()
            && c.new.as_deref() == Some("IO")));
        let na = update("2024-03-07T11:00:00");
        let (after, changes) = apply(Some(&held), &na);
        assert!(after.feeding_opposed && after.feeding_opposed_stated);
        assert!(changes.is_empty());
        let mut ino = update("2024-03-08T11:00:00");
        ino.feeding_opposed = Some(false);
        let (after, changes) = apply(Some(&held), &ino);
        assert_eq!(after.feeding_opposition(), Some(false));
        assert_eq!(
            changes,
            [Change {
                field: "feeding_opposed",
                old: Some("IO".into()),
                new: Some("INO".into()),
                at: Some("2024-03-08T11:00:00".into()),
            }]
        );
    }

    // Documented choice: an update without any date applies and keeps the dates held.
    #[test]
    fn an_undated_update_applies_and_keeps_the_dates_held() {
        let mut io = update("2024-03-06T11:00:00");
        io.feeding_opposed = Some(true);
        let (held, _) = apply(None, &io);
        let mut undated = update("");
        undated.times.message = None;
        undated.feeding_opposed = Some(false);
        let (after, _) = apply(Some(&held), &undated);
        assert!(!after.feeding_opposed);
        assert_eq!(
            after.feeding_opposed_at.as_deref(),
            Some("2024-03-06T11:00:00")
        );
    }

    // The #16 rules still hold on a fresh record: no traits, no qualified status.
    #[test]
    fn a_record_without_traits_is_prov() {
        let mut u = update("2024-03-06T11:00:00");
        u.patient.birth_date.clear();
        let (rec, _) = apply(None, &u);
        assert_eq!(rec.identity_status, "PROV");
        assert_eq!(rec.sex, "F");
        u.patient.identity_status = vec!["VALI".into(), "FICTI".into()];
        u.patient.birth_date = "1979-03-05".into();
        assert_eq!(apply(None, &u).0.identity_status, "FICTI");
    }

    #[test]
    fn keeps_the_strongest_status() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(registry_status(&v(&["PROV", "VALI"])), Some("PROV"));
        assert_eq!(registry_status(&v(&["VALI", "FICTI"])), Some("FICTI"));
        assert_eq!(registry_status(&v(&["QUAL", "doute"])), Some("DOUTE"));
        assert_eq!(registry_status(&v(&["RECUP", "VALI"])), Some("VALI"));
        assert_eq!(registry_status(&v(&["XYZ"])), Some("XYZ"));
        assert_eq!(registry_status(&[]), None);
    }
}
