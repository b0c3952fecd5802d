//! Compact JWT parsing, claim decoding and signature verification with a
//! fixed key set, and the filters' verification pipeline, on arbitrary bytes.
//! Input and assertions: [`baton_fuzz::jwt_parse`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::jwt_parse::check(data));
