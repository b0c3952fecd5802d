//! `WWW-Authenticate` challenges and error bodies built from fuzzed values,
//! read back with an independent RFC 7235 parser.
//! Input and assertions: [`baton_fuzz::www_authenticate`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::www_authenticate::check(data));
