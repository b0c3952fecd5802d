//! obo-credential-injection's plugin configuration on arbitrary bytes.
//! Input and assertions: [`baton_fuzz::config::obo_credential_injection`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::config::obo_credential_injection::check(data));
