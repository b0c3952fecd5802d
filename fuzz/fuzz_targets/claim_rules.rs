//! Claim rules: a route requirement compiled from fuzzed JSON, evaluated
//! against a fuzzed claim set and a reference reading of the rules.
//! Input and assertions: [`baton_fuzz::claim_rules`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::claim_rules::check(data));
