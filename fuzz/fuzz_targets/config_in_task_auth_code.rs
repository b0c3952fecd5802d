//! in-task-auth-code's plugin configuration on arbitrary bytes, and the
//! authorization URLs an accepted one makes.
//! Input and assertions: [`baton_fuzz::config::in_task_auth_code`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz::config::in_task_auth_code::check(data));
