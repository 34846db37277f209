//! Reading internally tagged JSON (`{"type":"document", ...}`, `{"kind":"lab_observation",
//! ...}`) without serde's buffering.
//!
//! Why by hand: `#[serde(tag = "...")]` cannot know where the tag is, so serde's derived
//! `Deserialize` first copies the whole object into its private `Content` tree (every key
//! and string allocated), then reads the variant from that copy; a `Normalized` document
//! holding tagged `Entry`s is buffered twice. A lab document's head (16 results) took 34 µs
//! to read that way (`cargo bench -p dmpflow-bench --bench normalize -- wire`), as much as
//! route's own work. Our writers (serde's derived `Serialize` of the same types) always put
//! the tag first, so the variant is known after the first key and the rest of the object is
//! read straight into the variant's type ([`MapAccessDeserializer`]). An object whose tag
//! comes later (a producer outside the pipeline, a hand-written payload) is still read: its
//! members are buffered as `serde_json::Value`s, the slow path serde always took.
//!
//! The JSON is unchanged: what earlier builds wrote reads the same, and what this build
//! writes is what they read (the tests of `lib.rs` and `wire` read both ways).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

/// One internally tagged enum: its tag's name, its variants' names, and how to read a
/// variant's fields from the rest of the object.
pub(crate) trait Tagged: Sized {
    /// What the enum is called in errors ("a dmpflow item", "an entry").
    const EXPECTING: &'static str;
    const TAG: &'static str;
    const VARIANTS: &'static [&'static str];
    /// The variant named `variant`, its fields read from `fields` (the object without its
    /// tag). `variant` is one of [`Tagged::VARIANTS`].
    fn variant<'de, D: Deserializer<'de>>(variant: usize, fields: D) -> Result<Self, D::Error>;
}

/// `T::deserialize`, for a `T` that is [`Tagged`].
pub(crate) fn deserialize<'de, T: Tagged, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(TaggedVisitor(PhantomData))
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} (an object with \"{}\")", T::EXPECTING, T::TAG)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let first = map.next_key_seed(KeySeed(T::TAG))?;
        match first {
            None => Err(de::Error::missing_field(T::TAG)),
            Some(Key::Tag) => {
                let v = map.next_value_seed(VariantSeed(T::VARIANTS))?;
                T::variant(v, MapAccessDeserializer::new(map))
            }
            // The tag is not first: buffer the members, then read as above.
            Some(Key::Other(first)) => {
                let mut members = serde_json::Map::new();
                let mut variant = None;
                let mut key = Some(Key::Other(first));
                while let Some(k) = key {
                    match k {
                        Key::Tag if variant.is_some() => {
                            return Err(de::Error::duplicate_field(T::TAG));
                        }
                        Key::Tag => variant = Some(map.next_value_seed(VariantSeed(T::VARIANTS))?),
                        // A member named twice is refused, as the variant's derived
                        // `Deserialize` refuses it on the fast path (a map would keep the last).
                        Key::Other(k) if members.contains_key(&k) => {
                            return Err(de::Error::custom(format_args!("duplicate field `{k}`")));
                        }
                        Key::Other(k) => {
                            members.insert(k, map.next_value()?);
                        }
                    }
                    key = map.next_key_seed(KeySeed(T::TAG))?;
                }
                let v = variant.ok_or_else(|| de::Error::missing_field(T::TAG))?;
                T::variant(v, serde_json::Value::Object(members)).map_err(de::Error::custom)
            }
        }
    }
}

/// A key of the object: the tag, or another member's name.
enum Key {
    Tag,
    Other(String),
}

struct KeySeed(&'static str);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
        Ok(if s == self.0 {
            Key::Tag
        } else {
            Key::Other(s.to_owned())
        })
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Key, E> {
        Ok(if s == self.0 { Key::Tag } else { Key::Other(s) })
    }
}

/// The tag's value: the index of the variant it names.
struct VariantSeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for VariantSeed {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for VariantSeed {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "one of {:?}", self.0)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
        self.0
            .iter()
            .position(|v| *v == s)
            .ok_or_else(|| de::Error::unknown_variant(s, self.0))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Entry, Normalized, PatientChange};

    fn lab() -> Entry {
        Entry::LabObservation {
            loinc: "2345-7".into(),
            label: "Glucose \"à jeun\"".into(),
            value: "5.4".into(),
            value_type: "NM".into(),
            unit: Some("mmol/L".into()),
            interpretation: None,
            reference_low: Some("3.9".into()),
            reference_high: Some("5.8".into()),
            reference_text: None,
            status: "F".into(),
            time: None,
        }
    }

    fn dispensation() -> Entry {
        Entry::Dispensation {
            code: "3400930000000".into(),
            code_system: "1.2.250.1.213.2.3.2".into(),
            label: "X".into(),
            quantity: "2".into(),
            unit: None,
            time: "2026-11-30T10:00:00".into(),
        }
    }

    #[test]
    fn tag_first_as_written_round_trips() {
        for e in [lab(), dispensation()] {
            let json = serde_json::to_string(&e).unwrap();
            assert!(json.starts_with("{\"kind\":"), "{json}");
            assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        }
    }

    #[test]
    fn tag_anywhere_reads_the_same() {
        for e in [lab(), dispensation()] {
            let mut v = serde_json::to_value(&e).unwrap();
            let obj = v.as_object_mut().unwrap();
            let kind = obj.remove("kind").unwrap();
            // serde_json's Map keeps keys sorted: the tag now comes after "code"/"interpretation".
            let mut text = serde_json::to_string(obj).unwrap();
            text.pop();
            text.push_str(&format!(",\"kind\":{kind}}}"));
            assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e, "{text}");
        }
    }

    #[test]
    fn absent_options_are_none_and_unknown_members_ignored() {
        let e: Entry = serde_json::from_str(
            r#"{"kind":"lab_observation","loinc":"1","label":"l","value":"v","value_type":"ST","status":"F","extra":[1,{"a":2}]}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            Entry::LabObservation {
                unit: None,
                time: None,
                ..
            }
        ));
    }

    #[test]
    fn bad_tags_are_errors_that_say_why() {
        let err = |s: &str| serde_json::from_str::<Entry>(s).unwrap_err().to_string();
        assert!(err(r#"{"kind":"x","code":"1"}"#).contains("unknown variant `x`"));
        assert!(err(r#"{"code":"1"}"#).contains("missing field `kind`"));
        assert!(err(r#"{}"#).contains("missing field `kind`"));
        assert!(
            err(r#"{"code":"1","kind":"dispensation","kind":"dispensation"}"#)
                .contains("duplicate field `kind`")
        );
        assert!(err(r#"{"kind":"dispensation","code":"1"}"#).contains("missing field"));
        // A member twice: refused whether the tag comes first or not.
        let twice =
            r#""code":"1","code":"2","code_system":"s","label":"l","quantity":"1","time":"t""#;
        assert!(
            err(&format!(r#"{{"kind":"dispensation",{twice}}}"#))
                .contains("duplicate field `code`")
        );
        assert!(
            err(&format!(r#"{{{twice},"kind":"dispensation"}}"#))
                .contains("duplicate field `code`")
        );
        assert!(err(r#"{"kind":3}"#).contains("invalid type"));
        assert!(err(r#"[]"#).contains("invalid type"));
    }

    #[test]
    fn normalized_reads_both_variants_in_any_order() {
        let update = crate::PatientUpdate {
            change: PatientChange::Merge {
                from_ins: "1".into(),
                from_oid: "o".into(),
            },
            patient: crate::PatientIdentity {
                ins: "2".into(),
                ins_oid: "o".into(),
                ipp: None,
                ipp_authority: None,
                birth_name: "B".into(),
                first_names: vec!["F".into()],
                birth_date: "2000-01-01".into(),
                sex: "F".into(),
                birth_place: None,
                identity_status: vec![],
                other_ins: vec![],
            },
            feeding_opposed: None,
            dmp_status: None,
            consultation_consent: None,
            times: Default::default(),
            event: "A40".into(),
            source: crate::SourceRef {
                feed: None,
                sender: "s".into(),
                control_id: "c".into(),
                position: 0,
                topic: None,
                partition: None,
                offset: None,
                content_hash: String::new(),
            },
        };
        let item = Normalized::Patient(Box::new(update));
        let first = serde_json::to_string(&item).unwrap();
        assert!(first.starts_with("{\"type\":\"patient\","), "{first}");
        let late = format!(
            "{{{},\"type\":\"patient\"}}",
            &first["{\"type\":\"patient\",".len()..first.len() - 1]
        );
        for text in [first, late] {
            assert_eq!(
                serde_json::from_str::<Normalized>(&text).unwrap(),
                item,
                "{text}"
            );
        }
    }
}
