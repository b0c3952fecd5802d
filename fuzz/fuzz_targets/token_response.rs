//! Token endpoint answers (RFC 6749 §5, RFC 8693 §2.2) from a fuzzed status,
//! expectation and body, and token requests with fuzzed values.
//! Input and assertions: [`baton_fuzz::token_response`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::token_response::check(data));
