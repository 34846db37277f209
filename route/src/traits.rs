//! The five strict traits (birth name, birth first names, birth date, sex, birth place)
//! compared between a document and the patient registry, after the normalisation the
//! identity-vigilance rules allow: case, accents, hyphens, apostrophes and spacing.
//!
//! Accents are removed with a hand table over Latin-1 and Latin Extended-A rather than a
//! transliteration crate (`deunicode`, `unicode-normalization`): the comparison decides
//! whether health data lands in someone's record, so its rule must be closed, reviewable
//! in one screen and unchanged by a dependency upgrade. Characters outside the table are
//! only upper-cased and kept, so they match nothing but themselves (no guessed
//! transliteration of other scripts). Combining marks (decomposed input) are dropped.

use dmpflow_schemas::{PatientIdentity, PatientRecord};

/// The ASCII form of a Latin-1 / Latin Extended-A letter, upper-cased; `None` for any
/// other character.
fn fold(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'à'..='å' | '\u{100}'..='\u{105}' => "A",
        'Æ' | 'æ' => "AE",
        'Ç' | 'ç' | '\u{106}'..='\u{10D}' => "C",
        'Ð' | 'ð' | '\u{10E}'..='\u{111}' => "D",
        'È'..='Ë' | 'è'..='ë' | '\u{112}'..='\u{11B}' => "E",
        '\u{11C}'..='\u{123}' => "G",
        '\u{124}'..='\u{127}' => "H",
        'Ì'..='Ï' | 'ì'..='ï' | '\u{128}'..='\u{131}' => "I",
        '\u{132}' | '\u{133}' => "IJ",
        '\u{134}' | '\u{135}' => "J",
        '\u{136}'..='\u{138}' => "K",
        '\u{139}'..='\u{142}' => "L",
        'Ñ' | 'ñ' | '\u{143}'..='\u{14B}' => "N",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' | '\u{14C}'..='\u{151}' => "O",
        'Œ' | 'œ' => "OE",
        '\u{154}'..='\u{159}' => "R",
        'ß' => "SS",
        '\u{15A}'..='\u{161}' | '\u{17F}' => "S",
        '\u{162}'..='\u{167}' => "T",
        'Þ' | 'þ' => "TH",
        'Ù'..='Ü' | 'ù'..='ü' | '\u{168}'..='\u{173}' => "U",
        '\u{174}' | '\u{175}' => "W",
        'Ý' | 'ý' | 'ÿ' | '\u{176}'..='\u{178}' => "Y",
        '\u{179}'..='\u{17E}' => "Z",
        _ => return None,
    })
}

/// Hyphens and apostrophes of every common spelling; they become a space.
fn is_joiner(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'
            | '\u{2011}'
            | '\u{2012}'
            | '\u{2013}'
            | '\u{2014}'
            | '\u{2212}'
            | '\''
            | '\u{2018}'
            | '\u{2019}'
            | '\u{02BC}'
            | '`'
            | '\u{B4}'
    )
}

/// Normalises one name for comparison: upper case, accents removed, hyphens and
/// apostrophes turned into spaces, runs of whitespace collapsed, trimmed.
pub fn normalize_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Start as if a space was just written, so leading separators are dropped.
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || is_joiner(c) {
            pending_space = !out.is_empty();
            continue;
        }
        // Combining diacritical marks (decomposed "E\u{301}"): the base letter is kept.
        if ('\u{300}'..='\u{36F}').contains(&c) {
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
        } else if let Some(a) = fold(c) {
            out.push_str(a);
        } else {
            out.extend(c.to_uppercase());
        }
    }
    out
}

/// The list of birth first names, normalised. Whitespace separates first names (the INS
/// convention for the list, and how PID-5.3 often carries it in one component); a hyphen
/// or apostrophe stays inside its name (as a space), so the compound "Jean-Pierre" is one
/// name and never matches "Jean" followed by "Pierre".
pub fn first_name_list(names: &[String]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| n.split_whitespace())
        .map(normalize_name)
        .filter(|n| !n.is_empty())
        .collect()
}

/// Which trait differs. Names only; the values are patient data and stay out of details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trait {
    BirthName,
    FirstNames,
    BirthDate,
    Sex,
    BirthPlace,
}

impl Trait {
    pub fn as_str(self) -> &'static str {
        match self {
            Trait::BirthName => "birth_name",
            Trait::FirstNames => "first_names",
            Trait::BirthDate => "birth_date",
            Trait::Sex => "sex",
            Trait::BirthPlace => "birth_place",
        }
    }
}

/// The traits of the document that do not match the registry record, in a fixed order.
/// A trait missing on either side counts as a mismatch (never assume), except the birth
/// place, which is compared only when both sides carry it (it is unknown for many
/// people born abroad and optional in the messages).
pub fn mismatched_traits(doc: &PatientIdentity, reg: &PatientRecord) -> Vec<Trait> {
    let mut out = Vec::new();

    let (dn, rn) = (
        normalize_name(&doc.birth_name),
        normalize_name(&reg.birth_name),
    );
    if dn.is_empty() || dn != rn {
        out.push(Trait::BirthName);
    }

    // The document may carry only the first birth first name (or the first few): its
    // list must be a non-empty prefix of the registry's.
    let (df, rf) = (
        first_name_list(&doc.first_names),
        first_name_list(&reg.first_names),
    );
    if df.is_empty() || !rf.starts_with(&df) {
        out.push(Trait::FirstNames);
    }

    let date = doc.birth_date.trim();
    if date.is_empty() || date != reg.birth_date.trim() {
        out.push(Trait::BirthDate);
    }

    // Exact: U (unknown) matches only U, and case is not a spelling variant here.
    let sex = doc.sex.trim();
    if sex.is_empty() || sex != reg.sex.trim() {
        out.push(Trait::Sex);
    }

    let place = |p: &Option<String>| {
        p.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_uppercase)
    };
    if let (Some(d), Some(r)) = (place(&doc.birth_place), place(&reg.birth_place))
        && d != r
    {
        out.push(Trait::BirthPlace);
    }

    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn case_and_accents() {
        assert_eq!(normalize_name("Hélène"), "HELENE");
        assert_eq!(normalize_name("ÉLOÏSE"), "ELOISE");
        assert_eq!(normalize_name("Cœur"), "COEUR");
        assert_eq!(normalize_name("ŒDIPE"), "OEDIPE");
        assert_eq!(normalize_name("Straße"), "STRASSE");
        assert_eq!(normalize_name("François"), "FRANCOIS");
        assert_eq!(normalize_name("Æsa"), "AESA");
        assert_eq!(normalize_name("Łukasz Dvořák"), "LUKASZ DVORAK");
        assert_eq!(normalize_name("Ÿvon ÿ"), "YVON Y");
        // Decomposed accents (NFD) give the same result as composed ones.
        assert_eq!(normalize_name("He\u{301}le\u{300}ne"), "HELENE");
    }

    #[test]
    fn hyphens_apostrophes_and_spaces() {
        assert_eq!(normalize_name("Dupont-Durand"), "DUPONT DURAND");
        assert_eq!(normalize_name("D'Artagnan"), "D ARTAGNAN");
        assert_eq!(normalize_name("D\u{2019}Artagnan"), "D ARTAGNAN");
        assert_eq!(normalize_name("  de   la  Tour  "), "DE LA TOUR");
        assert_eq!(normalize_name("Saint - Exupéry"), "SAINT EXUPERY");
        assert_eq!(normalize_name("--"), "");
        assert_eq!(normalize_name("Le\tGoff"), "LE GOFF");
    }

    #[test]
    fn other_scripts_are_kept_not_guessed() {
        assert_eq!(normalize_name("Σοφία"), "ΣΟΦΊΑ");
        assert_ne!(normalize_name("Σοφία"), normalize_name("Sofia"));
    }

    #[test]
    fn first_names_as_a_list() {
        assert_eq!(
            first_name_list(&v(&["Jean Pierre  Marie"])),
            v(&["JEAN", "PIERRE", "MARIE"])
        );
        assert_eq!(
            first_name_list(&v(&["Jean-Pierre", "Éloïse"])),
            v(&["JEAN PIERRE", "ELOISE"])
        );
        assert_eq!(first_name_list(&v(&["", " - "])), Vec::<String>::new());
    }

    fn reg() -> PatientRecord {
        PatientRecord {
            ins: "279035121518989".into(),
            ins_oid: crate::OID_NIR.into(),
            birth_name: "PAT-TROIS".into(),
            first_names: v(&["DOMINIQUE", "MARIE-HÉLÈNE"]),
            birth_date: "1979-03-28".into(),
            sex: "F".into(),
            birth_place: Some("63220".into()),
            identity_status: "QUAL".into(),
            feeding_opposed: false,
            merged_into: None,
            ..Default::default()
        }
    }

    fn doc() -> PatientIdentity {
        PatientIdentity {
            ins: "279035121518989".into(),
            ins_oid: crate::OID_NIR.into(),
            birth_name: "Pat Trois".into(),
            first_names: v(&["Dominique"]),
            birth_date: "1979-03-28".into(),
            sex: "F".into(),
            birth_place: Some("63220".into()),
            identity_status: v(&["VALI"]),
            other_ins: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn matching_identity_has_no_mismatch() {
        assert!(mismatched_traits(&doc(), &reg()).is_empty());
        let mut d = doc();
        d.first_names = v(&["dominique marie-helene"]);
        assert!(mismatched_traits(&d, &reg()).is_empty());
        d.first_names = v(&["DOMINIQUE", "Marie Hélène"]);
        // "Marie Hélène" (two names) is not the compound "Marie-Hélène" (one name).
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::FirstNames]);
    }

    #[test]
    fn first_names_must_be_a_prefix() {
        let mut d = doc();
        d.first_names = v(&["Marie-Hélène"]);
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::FirstNames]);
        d.first_names = v(&["Dominique", "Marie-Hélène", "Anne"]);
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::FirstNames]);
        d.first_names = v(&[]);
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::FirstNames]);
        d.first_names = v(&["Domi"]);
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::FirstNames]);
        let mut r = reg();
        r.first_names = v(&["JEAN-PIERRE"]);
        d.first_names = v(&["Jean"]);
        assert_eq!(mismatched_traits(&d, &r), [Trait::FirstNames]);
    }

    #[test]
    fn each_trait_is_reported() {
        let mut d = doc();
        d.birth_name = "PAT-QUATRE".into();
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::BirthName]);
        let mut d = doc();
        d.birth_name = " ".into();
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::BirthName]);
        let mut d = doc();
        d.birth_date = "1979-03-29".into();
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::BirthDate]);
        let mut d = doc();
        d.sex = "M".into();
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::Sex]);
        let mut d = doc();
        d.birth_place = Some("75056".into());
        assert_eq!(mismatched_traits(&d, &reg()), [Trait::BirthPlace]);
        let mut d = doc();
        d.birth_name = "X".into();
        d.sex = "U".into();
        assert_eq!(
            mismatched_traits(&d, &reg()),
            [Trait::BirthName, Trait::Sex]
        );
    }

    #[test]
    fn sex_u_matches_only_u() {
        let mut d = doc();
        let mut r = reg();
        d.sex = "U".into();
        r.sex = "U".into();
        assert!(mismatched_traits(&d, &r).is_empty());
        r.sex = "F".into();
        assert_eq!(mismatched_traits(&d, &r), [Trait::Sex]);
        d.sex = "F".into();
        r.sex = "U".into();
        assert_eq!(mismatched_traits(&d, &r), [Trait::Sex]);
    }

    #[test]
    fn birth_place_only_when_both_sides_have_it() {
        let mut d = doc();
        d.birth_place = None;
        assert!(mismatched_traits(&d, &reg()).is_empty());
        d.birth_place = Some("".into());
        assert!(mismatched_traits(&d, &reg()).is_empty());
        let mut r = reg();
        r.birth_place = None;
        assert!(mismatched_traits(&doc(), &r).is_empty());
        // Corsica commune codes compare case-insensitively (2a063 is 2A063).
        let mut d = doc();
        let mut r = reg();
        d.birth_place = Some("2a004".into());
        r.birth_place = Some("2A004".into());
        assert!(mismatched_traits(&d, &r).is_empty());
    }
}
