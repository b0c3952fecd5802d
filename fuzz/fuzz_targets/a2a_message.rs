//! A2A JSON-RPC messages (v0.3 and v1.0) through in-task-auth-code: parsing,
//! rewriting, the decision on a message, the agent's answer.
//! Input and assertions: [`baton_fuzz::a2a_message`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::a2a_message::check(data));
