//! `application/x-www-form-urlencoded` both ways, compared with rust-url's
//! reading and an independent strict one.
//! Input and assertions: [`baton_fuzz::form`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::form::check(data));
