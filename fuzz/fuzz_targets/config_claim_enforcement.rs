//! claim-enforcement's plugin configuration on arbitrary bytes.
//! Input and assertions: [`baton_fuzz::config::claim_enforcement`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::config::claim_enforcement::check(data));
