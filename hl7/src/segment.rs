//! Reading inside one segment: fields, repetitions, components and subcomponents of a
//! parsed [`Message`](crate::Message), split lazily on access with the message's
//! delimiters. Accessors are 1-based like the HL7 specification; an absent element is an
//! empty value, never a panic.

use std::borrow::Cow;

use crate::{Delimiters, decode};

/// Part `n` (0-based) of `s` split on `sep`, or None when there are fewer parts.
#[inline]
fn nth_part(s: &str, sep: char, n: usize) -> Option<&str> {
    if !sep.is_ascii() {
        return s.split(sep).nth(n);
    }
    nth_ascii_part(s, sep as u8, None, n)
}

/// Part `n` (0-based) of `s` split on the ASCII `sep`, reading no further than the first
/// `stop` when one is given: with `Some(stop)` it is what
/// `nth_part(nth_part(s, stop, 0)?, sep, n)` returns, in one pass (a field's components are
/// read this way, instead of scanning the whole field for a repetition first and then again
/// for its components).
///
/// A plain byte loop: HL7 fields are short, and a per-part `memchr` call (what `str::split`
/// does) costs more than it saves there.
#[inline]
fn nth_ascii_part(s: &str, sep: u8, stop: Option<u8>, n: usize) -> Option<&str> {
    let b = s.as_bytes();
    let mut start = 0;
    let mut idx = 0;
    for (i, &c) in b.iter().enumerate() {
        let stops = Some(c) == stop;
        if c == sep || stops {
            if idx == n {
                // Both separators are ASCII, so both ends are char boundaries.
                return Some(&s[start..i]);
            }
            if stops {
                return None;
            }
            idx += 1;
            start = i + 1;
        }
    }
    (idx == n).then(|| &s[start..])
}

/// One segment: its raw text (without the terminator) and the message delimiters.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'m> {
    raw: &'m str,
    /// Offsets of the field separators in `raw`.
    seps: &'m [u32],
    d: &'m Delimiters,
    index: usize,
}

impl<'m> Segment<'m> {
    /// A segment of a parsed message: `raw` without its terminator, `seps` the offsets of
    /// its field separators in `raw` (found by the message's one pass over the text).
    pub(crate) fn new(raw: &'m str, seps: &'m [u32], d: &'m Delimiters, index: usize) -> Self {
        Segment {
            raw,
            seps,
            d,
            index,
        }
    }

    /// The three-character segment name.
    pub fn name(&self) -> &'m str {
        &self.raw[..3]
    }

    /// 0-based position in the message.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn raw(&self) -> &'m str {
        self.raw
    }

    fn is_msh(&self) -> bool {
        // Batch headers follow the MSH layout too.
        matches!(self.name(), "MSH" | "FHS" | "BHS")
    }

    /// Field `n` (1-based). For MSH, field 1 is the field separator and field 2 the
    /// encoding characters, both returned literally (never split).
    pub fn field(&self, n: usize) -> Value<'m> {
        let fs = self.d.field;
        if n == 0 {
            return Value::empty(self.d);
        }
        if self.is_msh() {
            match n {
                1 => {
                    // A later bare `MSH` segment has no separator: empty, never a panic.
                    let l = fs.len_utf8();
                    return Value::literal(self.raw.get(3..3 + l).unwrap_or(""), self.d);
                }
                2 => {
                    let v = self.part(1).unwrap_or("");
                    return Value::literal(v, self.d);
                }
                _ => {}
            }
            let v = self.part(n - 1);
            return v.map_or(Value::empty(self.d), |v| {
                Value::new(v, Level::Field, self.d)
            });
        }
        match self.part(n) {
            Some(v) => Value::new(v, Level::Field, self.d),
            None => Value::empty(self.d),
        }
    }

    /// The `n`th piece of the segment split on the field separator (0 = the name), as
    /// `raw.split(fs).nth(n)`, from the separator offsets found at parse time.
    fn part(&self, n: usize) -> Option<&'m str> {
        let start = match n {
            0 => 0,
            _ => *self.seps.get(n - 1)? as usize + self.d.field.len_utf8(),
        };
        let end = self.seps.get(n).map_or(self.raw.len(), |&e| e as usize);
        Some(&self.raw[start..end])
    }

    /// Number of fields present (the highest 1-based field index).
    pub fn field_count(&self) -> usize {
        let n = self.seps.len();
        if self.is_msh() { n + 1 } else { n }
    }

    /// Fields 1..=field_count, in order.
    pub fn fields(&self) -> impl Iterator<Item = Value<'m>> + '_ {
        (1..=self.field_count()).map(move |n| self.field(n))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Field,
    Repetition,
    Component,
    Sub,
}

/// A field, repetition, component or subcomponent value: a raw slice of the message and
/// the delimiters needed to split it further or to decode it.
///
/// Navigation follows HL7's rule that a simple value is its own first part: `component(1)`
/// of a field takes its first repetition; `sub(1)` of a subcomponent is itself.
#[derive(Debug, Clone, Copy)]
pub struct Value<'m> {
    raw: &'m str,
    level: Level,
    /// MSH-1/MSH-2: never split.
    literal: bool,
    d: &'m Delimiters,
}

impl<'m> Value<'m> {
    fn new(raw: &'m str, level: Level, d: &'m Delimiters) -> Self {
        Value {
            raw,
            level,
            literal: false,
            d,
        }
    }
    fn empty(d: &'m Delimiters) -> Self {
        Value::new("", Level::Sub, d)
    }
    fn literal(raw: &'m str, d: &'m Delimiters) -> Self {
        Value {
            raw,
            level: Level::Sub,
            literal: true,
            d,
        }
    }

    /// The value as in the message (escapes not resolved).
    pub fn raw(&self) -> &'m str {
        self.raw
    }

    /// The value with escapes resolved (borrowed when there are none).
    pub fn decoded(&self) -> Cow<'m, str> {
        if self.literal {
            Cow::Borrowed(self.raw)
        } else {
            decode(self.raw, self.d)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    fn nth(&self, sep: char, n: usize, level: Level) -> Value<'m> {
        if n == 0 {
            return Value::empty(self.d);
        }
        if self.literal || self.level >= level {
            // Already at or below this level: it is its own first part.
            return if n == 1 { *self } else { Value::empty(self.d) };
        }
        match nth_part(self.raw, sep, n - 1) {
            Some(v) => Value::new(v, level, self.d),
            None => Value::empty(self.d),
        }
    }

    /// Repetition `i` (1-based) of a field.
    pub fn repetition(&self, i: usize) -> Value<'m> {
        self.nth(self.d.repetition, i, Level::Repetition)
    }

    /// Component `n` (1-based); of a field, taken from its first repetition.
    pub fn component(&self, n: usize) -> Value<'m> {
        let (comp, rep) = (self.d.component, self.d.repetition);
        if self.level < Level::Repetition && !self.literal && comp.is_ascii() && rep.is_ascii() {
            if n == 0 {
                return Value::empty(self.d);
            }
            return match nth_ascii_part(self.raw, comp as u8, Some(rep as u8), n - 1) {
                Some(v) => Value::new(v, Level::Component, self.d),
                None => Value::empty(self.d),
            };
        }
        let base = if self.level < Level::Repetition {
            self.repetition(1)
        } else {
            *self
        };
        base.nth(self.d.component, n, Level::Component)
    }

    /// Subcomponent `n` (1-based); of a field or repetition, taken from its first component.
    pub fn sub(&self, n: usize) -> Value<'m> {
        let base = if self.level < Level::Component {
            self.component(1)
        } else {
            *self
        };
        base.nth(self.d.subcomponent, n, Level::Sub)
    }

    fn parts(self, sep: char, level: Level) -> impl Iterator<Item = Value<'m>> + use<'m> {
        let d = self.d;
        let split = !(self.literal || self.level >= level);
        let whole = self;
        let mut it = if split {
            Some(self.raw.split(sep))
        } else {
            None
        };
        let mut once = (!split).then_some(whole);
        std::iter::from_fn(move || match it.as_mut() {
            Some(s) => s.next().map(|v| Value::new(v, level, d)),
            None => once.take(),
        })
    }

    /// The repetitions of a field (an empty field has one empty repetition).
    pub fn repetitions(&self) -> impl Iterator<Item = Value<'m>> + use<'m> {
        self.parts(self.d.repetition, Level::Repetition)
    }

    /// The components of a repetition (of a field: of its first repetition).
    pub fn components(&self) -> impl Iterator<Item = Value<'m>> + use<'m> {
        let base = if self.level < Level::Repetition {
            self.repetition(1)
        } else {
            *self
        };
        base.parts(self.d.component, Level::Component)
    }

    /// The subcomponents of a component.
    pub fn subs(&self) -> impl Iterator<Item = Value<'m>> + use<'m> {
        let base = if self.level < Level::Component {
            self.component(1)
        } else {
            *self
        };
        base.parts(self.d.subcomponent, Level::Sub)
    }
}

impl std::fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.decoded())
    }
}

#[cfg(test)]
mod tests {
    use crate::message::tests::{ORU, parse};

    proptest::proptest! {
        /// The one-pass component read of a field is the two-step one (first repetition,
        /// then its component), on any text over the separators and a few other bytes.
        #[test]
        fn one_pass_component_is_repetition_then_component(
            s in "[a^~&é|]{0,24}",
            n in 0usize..6,
        ) {
            let two_step = super::nth_part(s.split('~').next().unwrap_or(""), '^', n);
            proptest::prop_assert_eq!(super::nth_ascii_part(&s, b'^', Some(b'~'), n), two_step);
        }
    }

    #[test]
    fn navigates_fields_repetitions_components_subs() {
        let m = parse(ORU).unwrap();
        assert!(m.is_borrowed());
        assert_eq!(m.segment_count(), 3);
        let msh = m.segment("MSH").unwrap();
        assert_eq!(msh.field(1).raw(), "|");
        assert_eq!(msh.field(2).raw(), "^~\\&");
        assert_eq!(msh.field(2).component(1).raw(), "^~\\&");
        assert_eq!(msh.field(2).component(2).raw(), "");
        assert_eq!(msh.field(9).component(2).raw(), "R01");
        assert_eq!(msh.field(10).raw(), "42");
        let pid = m.segment("PID").unwrap();
        let ins = pid.field(3).repetition(2);
        assert_eq!(ins.component(1).raw(), "279035121518989");
        assert_eq!(ins.component(4).sub(2).raw(), "1.2.250.1.213.1.4.10");
        assert_eq!(ins.component(5).raw(), "INS");
        assert_eq!(pid.field(3).repetitions().count(), 2);
        assert_eq!(pid.field(3).component(1).raw(), "123");
        assert_eq!(pid.field(5).component(3).raw(), "Jean Paul");
        assert_eq!(pid.field(99).raw(), "");
        assert_eq!(pid.field(3).repetition(9).component(1).raw(), "");
        let obx: Vec<_> = m.segments("OBX").collect();
        assert_eq!(obx[0].field(5).raw(), "5.6");
        assert_eq!(obx[0].field(11).raw(), "F");
        assert_eq!(obx[0].field_count(), 11);
        assert_eq!(obx[0].field(5).sub(1).raw(), "5.6");
        assert_eq!(obx[0].field(5).component(2).raw(), "");
    }

    #[test]
    fn multibyte_repetition_separator() {
        let s = "MSH|^˜\\&|A|B||||ORU^R01|1|P|2.5\rPID|||a^^^^PI˜b^^^^INS\r";
        let m = parse(s).unwrap();
        assert_eq!(m.delimiters().repetition, '˜');
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.field(3).repetition(2).component(5).raw(), "INS");
        assert_eq!(m.segment("MSH").unwrap().field(2).raw(), "^˜\\&");
    }

    #[test]
    fn decoded_accessor_resolves_escapes() {
        let m = parse("MSH|^~\\&|A\rNTE|1||H\\E\\mo \\T\\ co\\.br\\fin\\X4F\\").unwrap();
        assert_eq!(
            m.segment("NTE").unwrap().field(3).decoded(),
            "H\\mo & co\nfinO"
        );
    }
}
