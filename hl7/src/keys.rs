//! The Kafka key of a message: what keeps one patient's messages in order on a feed topic,
//! computed the same way by the MLLP gateway and by every loader.
//!
//! The key is the INS of PID-3 (the repetition whose identifier type, CX-5, is `INS`) when
//! there is one; otherwise the sender, MSH-3^MSH-4, so at least one sender's messages stay
//! in order. A message that does not parse is keyed by its sender as [`Msh`] reads it
//! (`^` when not even that can be read): the key never fails.

use crate::{Message, Msh, ReadOptions};

/// The key of a parsed message: the INS of PID-3, else `MSH-3^MSH-4` (raw field text).
pub fn message_key(msg: &Message<'_>) -> String {
    if let Some(pid) = msg.segment("PID") {
        for rep in pid.field(3).repetitions() {
            let id = rep.component(1);
            if rep.component(5).raw() == "INS" && !id.is_empty() {
                return id.raw().to_string();
            }
        }
    }
    match msg.segment("MSH") {
        Some(msh) => format!("{}^{}", msh.field(3).raw(), msh.field(4).raw()),
        // A parsed message starts with MSH; this only keeps the function total.
        None => "^".to_string(),
    }
}

/// The key of raw bytes: parsed with the default limits but `max_bytes`, [`message_key`]
/// when they parse, else the sender from the raw MSH ([`sender_key`]), so a loader keys
/// like the gateway.
pub fn key_of_raw(raw: &[u8], max_bytes: usize) -> String {
    let opts = ReadOptions {
        max_message_bytes: max_bytes,
        ..ReadOptions::default()
    };
    match Message::parse(raw, &opts) {
        Ok(m) => message_key(&m),
        Err(_) => sender_key(raw),
    }
}

/// `MSH-3^MSH-4` read tolerantly from raw bytes ([`Msh::read`], decoded in the MSH-18
/// charset), or `^` when there is no MSH line whose separator is a visible ASCII character.
pub fn sender_key(raw: &[u8]) -> String {
    match Msh::read(raw) {
        Some(h) if h.field_separator().is_ascii_graphic() => {
            format!("{}^{}", h.sending_application(), h.sending_facility())
        }
        _ => "^".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_INS: &[u8] = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\rPID|1||123^^^X^PI~277076322082910^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS\r";

    #[test]
    fn key_is_the_ins_else_the_sender() {
        // The gateway's key test (it was in src/mllp.rs; the gateway keys through this).
        assert_eq!(key_of_raw(WITH_INS, 1 << 20), "277076322082910");
        let without = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\rPID|1||123^^^X^PI\r";
        assert_eq!(key_of_raw(without, 1 << 20), "SIL^LAB");
        // No PID at all, and an INS repetition with no identifier.
        assert_eq!(key_of_raw(b"MSH|^~\\&|A|B\r", 1 << 20), "A^B");
        let empty_ins = b"MSH|^~\\&|A|B\rPID|1||^^^X^INS~9^^^X^PI\r";
        assert_eq!(key_of_raw(empty_ins, 1 << 20), "A^B");
    }

    #[test]
    fn the_first_ins_repetition_wins_and_other_separators_work() {
        let raw = b"MSH#$~\\&#SIL#LAB\rPID#1##1$$$X$INS~2$$$X$INS\r";
        assert_eq!(key_of_raw(raw, 1 << 20), "1");
    }

    #[test]
    fn unparseable_messages_are_keyed_by_their_sender() {
        // Refused by the parser (segment name, size limit, charset), sender still read.
        let bad_segment = b"MSH|^~\\&|SIL|LAB\rpid|1||277076322082910^^^X^INS\r";
        assert_eq!(key_of_raw(bad_segment, 1 << 20), "SIL^LAB");
        assert_eq!(key_of_raw(WITH_INS, 10), "SIL^LAB");
        let koi8 = b"MSH|^~\\&|SIL|LAB||||||||||||||KOI8-R\rPID|1\r";
        assert_eq!(key_of_raw(koi8, 1 << 20), "SIL^LAB");
        // Latin-1 sender names are decoded as the ACK reads them.
        let latin = b"MSH|^~\\&|SIL|LAB\xc9||||||||||||||8859/1\rNTE|1||\x01\r";
        assert_eq!(key_of_raw(latin, 1 << 20), "SIL^LABÉ");
        // An MLLP frame's start block and a BOM are skipped, as the parser does.
        let framed = b"\x0b\xef\xbb\xbfMSH|^~\\&|SIL|LAB\rpid\r";
        assert_eq!(key_of_raw(framed, 1 << 20), "SIL^LAB");
    }

    #[test]
    fn nothing_readable_is_the_empty_sender() {
        for raw in [
            &b""[..],
            b"hello",
            b"PID|1||277076322082910^^^X^INS",
            b"MSH \rPID",
            b"MSH\xc9^~\\&\xc9SIL\xc9LAB",
        ] {
            assert_eq!(key_of_raw(raw, 1 << 20), "^", "{raw:?}");
        }
    }
}
