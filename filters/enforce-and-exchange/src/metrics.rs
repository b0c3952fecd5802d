//! Counters: claim-enforcement's (`wasmcustom.baton_ce.*`) and
//! obo-credential-injection's (`wasmcustom.baton_obo.*`), as each filter
//! counts alone.

use baton_filter_kit::host::Counter;
use claim_enforcement::metrics::ALL as ENFORCE;
use obo_credential_injection::metrics::ALL as EXCHANGE;

const COUNT: usize = ENFORCE.len() + EXCHANGE.len();

/// Every counter of both engines, registered when the VM starts.
pub const ALL: &[Counter] = &{
    let mut all = [ENFORCE[0]; COUNT];
    let mut i = 0;
    while i < ENFORCE.len() {
        all[i] = ENFORCE[i];
        i += 1;
    }
    let mut j = 0;
    while j < EXCHANGE.len() {
        all[ENFORCE.len() + j] = EXCHANGE[j];
        j += 1;
    }
    all
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_of_both_engines_is_registered_once() {
        assert_eq!(ALL.len(), ENFORCE.len() + EXCHANGE.len());
        for counter in ENFORCE.iter().chain(EXCHANGE) {
            assert_eq!(ALL.iter().filter(|c| *c == counter).count(), 1, "{}", counter.name());
        }
    }
}
