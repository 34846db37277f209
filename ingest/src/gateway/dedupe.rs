//! Resend detection: a sender that lost our ACK resends the same bytes, and answering it
//! AA from memory spares the feed topic a second record. Bounded (FIFO eviction), so past
//! the cache (or after a restart) a duplicate reaches the topic and normalize's
//! deterministic uniqueIds plus the idempotent store absorb it.

use std::collections::{HashSet, VecDeque};

/// What identifies a message for resend detection: the full SHA-256 of its raw bytes
/// (which hold MSH-3, MSH-4 and MSH-10). A match answers AA without a write, so a
/// collision would acknowledge a message never written: a 64-bit unkeyed hash made one
/// reachable by a sender who chooses the bytes; 256 bits make it infeasible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub(super) fn of(raw: &[u8]) -> Fingerprint {
        use sha2::Digest;
        Fingerprint(sha2::Sha256::digest(raw).into())
    }
}

/// A bounded set of recently acknowledged message fingerprints (FIFO eviction).
pub(super) struct Recent {
    set: HashSet<Fingerprint>,
    order: VecDeque<Fingerprint>,
    cap: usize,
}

impl Recent {
    /// A cache of at most `cap` fingerprints; 0 remembers nothing (dedupe disabled).
    pub(super) fn new(cap: usize) -> Recent {
        Recent {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }
    pub(super) fn contains(&self, k: Fingerprint) -> bool {
        self.set.contains(&k)
    }
    pub(super) fn insert(&mut self, k: Fingerprint) {
        if self.cap == 0 || !self.set.insert(k) {
            return;
        }
        self.order.push_back(k);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    #[test]
    fn recent_cache_is_bounded() {
        let mut r = Recent::new(2);
        r.insert(fp(1));
        r.insert(fp(2));
        r.insert(fp(3));
        assert!(!r.contains(fp(1)) && r.contains(fp(2)) && r.contains(fp(3)));
    }

    #[test]
    fn a_zero_cache_remembers_nothing() {
        let mut r = Recent::new(0);
        r.insert(fp(1));
        assert!(!r.contains(fp(1)));
    }

    #[test]
    fn resend_detection_keys_on_the_whole_digest() {
        // Two fingerprints equal in their first 64 bits (what a 64-bit hash would have
        // kept) but different after: the second is not taken for a resend of the first.
        let mut a = [7u8; 32];
        let mut b = [7u8; 32];
        a[31] = 1;
        b[31] = 2;
        let mut r = Recent::new(10);
        r.insert(Fingerprint(a));
        assert!(r.contains(Fingerprint(a)));
        assert!(
            !r.contains(Fingerprint(b)),
            "equal 64-bit prefix is not a match"
        );

        // Same sender and MSH-10, different content: different fingerprints; the exact
        // same bytes again: the same one (a true resend).
        let m1 = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|ID-1|P|2.5\rPID|1||A\r";
        let m2 = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|ID-1|P|2.5\rPID|1||B\r";
        let mut r = Recent::new(10);
        r.insert(Fingerprint::of(m1));
        assert!(r.contains(Fingerprint::of(m1)));
        assert!(!r.contains(Fingerprint::of(m2)));
        assert_eq!(
            Fingerprint::of(m1).0.len(),
            32,
            "the full SHA-256, not a truncation"
        );
    }
}
