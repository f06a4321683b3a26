//! Replay protection for sealed requests.
//!
//! Every OHTTP request carries a fresh HPKE encapsulated key, so its first
//! bytes are unique. The enclave refuses any request whose timestamp is outside
//! the replay window, and remembers the fingerprint of every request inside the
//! window, so a replay — by a hostile gateway or anyone else — is refused too.
//! Fingerprints older than the window can be forgotten: their requests would
//! be refused as stale anyway.

use std::collections::{HashMap, VecDeque};

use cloister_seal::ENCAPSULATION_PREFIX_LEN;

/// Fingerprint of one sealed request.
pub type Fingerprint = [u8; ENCAPSULATION_PREFIX_LEN];

/// Outcome of presenting a request to the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen and fresh: serve it.
    Fresh,
    /// Seen before.
    Replay,
    /// Issued too long ago or too far in the future.
    Stale,
}

/// Remembers fingerprints for the replay window.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    seen: HashMap<Fingerprint, u64>,
    order: VecDeque<(u64, Fingerprint)>,
}

impl ReplayGuard {
    /// A guard with a window of `window_ms` either side of now.
    pub fn new(window_ms: u64) -> Self {
        ReplayGuard {
            window_ms,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Checks a request issued at `issued_at_ms`, seen at `now_ms`, and records it.
    pub fn check(&mut self, fp: &Fingerprint, issued_at_ms: u64, now_ms: u64) -> Verdict {
        // Forget what has fallen out of the window.
        while let Some(&(t, old)) = self.order.front() {
            if now_ms.saturating_sub(t) > 2 * self.window_ms {
                self.order.pop_front();
                self.seen.remove(&old);
            } else {
                break;
            }
        }
        if self.seen.contains_key(fp) {
            return Verdict::Replay;
        }
        if issued_at_ms.abs_diff(now_ms) > self.window_ms {
            return Verdict::Stale;
        }
        self.seen.insert(*fp, now_ms);
        self.order.push_back((now_ms, *fp));
        Verdict::Fresh
    }

    /// Number of remembered fingerprints.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_stale_and_expiry() {
        let mut g = ReplayGuard::new(1000);
        let a = [1u8; ENCAPSULATION_PREFIX_LEN];
        let b = [2u8; ENCAPSULATION_PREFIX_LEN];
        assert_eq!(g.check(&a, 10_000, 10_000), Verdict::Fresh);
        assert_eq!(g.check(&a, 10_000, 10_001), Verdict::Replay);
        assert_eq!(g.check(&b, 8_000, 10_000), Verdict::Stale);
        assert_eq!(g.check(&b, 12_500, 10_000), Verdict::Stale);
        assert_eq!(g.len(), 1);
        // Long after, the fingerprint is forgotten, but the request is stale.
        assert_eq!(g.check(&a, 10_000, 13_000), Verdict::Stale);
        assert!(g.is_empty());
    }
}
