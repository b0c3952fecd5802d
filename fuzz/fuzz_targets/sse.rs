//! Server-sent events as the runtime reads an answer stream, in chunks.
//! Input and assertions: [`baton_fuzz::sse`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::sse::check(data));
