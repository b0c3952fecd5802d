//! Backoff for the background renewal of client-credentials tokens: while
//! the IdP fails, each grant is tried again after 1, 2, 4 ... up to 60
//! seconds instead of on every timer tick. A request that needs the token
//! still asks at once (and waits for a single call).

use std::collections::HashMap;

use baton_token::TokenHash;

/// Longest wait between background attempts, seconds.
const MAX_DELAY_SECS: u64 = 60;

/// Failed renewals by grant key.
#[derive(Debug, Default)]
pub struct RenewalBackoff {
    failures: HashMap<TokenHash, (u32, u64)>,
}

/// Seconds to wait after `failures` failures in a row.
fn delay_secs(failures: u32) -> u64 {
    1u64.checked_shl(failures.saturating_sub(1)).unwrap_or(MAX_DELAY_SECS).min(MAX_DELAY_SECS)
}

impl RenewalBackoff {
    /// Whether the grant may be renewed in the background at `now`.
    pub fn may_try(&self, key: &TokenHash, now: u64) -> bool {
        self.failures.get(key).is_none_or(|(count, at)| now >= at.saturating_add(delay_secs(*count)))
    }

    /// A renewal failed at `now`.
    pub fn failed(&mut self, key: &TokenHash, now: u64) {
        let entry = self.failures.entry(*key).or_insert((0, now));
        *entry = (entry.0.saturating_add(1), now);
    }

    /// A renewal succeeded: back to normal.
    pub fn succeeded(&mut self, key: &TokenHash) {
        self.failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_minute_and_reset_on_success() {
        assert_eq!([1, 2, 3, 4, 6, 7, 8, 40].map(delay_secs), [1, 2, 4, 8, 32, 60, 60, 60]);
        let key = TokenHash::of(b"grant");
        let mut backoff = RenewalBackoff::default();
        assert!(backoff.may_try(&key, 100));
        backoff.failed(&key, 100);
        assert!(!backoff.may_try(&key, 100));
        assert!(backoff.may_try(&key, 101));
        backoff.failed(&key, 101);
        backoff.failed(&key, 101);
        assert!(!backoff.may_try(&key, 104));
        assert!(backoff.may_try(&key, 105));
        backoff.succeeded(&key);
        assert!(backoff.may_try(&key, 105));
        assert!(backoff.may_try(&TokenHash::of(b"other"), 0));
    }
}
