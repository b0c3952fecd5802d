//! End-to-end tests of the mock IdP over HTTP on 127.0.0.1, using
//! http-kit's client. One binary with modules keeps link time down.
// Helpers outside #[test] functions fail loudly too: they are test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth_code;
mod client_auth;
mod common;
mod discovery;
mod exchange;
mod faults;
mod login;
mod quirks;
