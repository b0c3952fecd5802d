//! Minimal HTTP/1.1 over `std::net`, without an async runtime.
//!
//! Built for Baton's test tooling, where full control over the wire matters:
//! tests send duplicate headers, odd casing and truncated bodies, and mock
//! servers must be able to delay, close or truncate a response on purpose.
//! It is not a general purpose HTTP implementation: no TLS, no HTTP/2, no
//! pipelining beyond sequential keep-alive.

mod client;
mod encoding;
mod request;
mod response;
mod server;
mod wire;

pub use client::{ClientRequest, ClientResponse, send, send_on, send_raw};
pub use encoding::{form_urlencode, parse_urlencoded, percent_decode, percent_encode};
pub use request::Request;
pub use response::{Reply, Response, reason_phrase};
pub use server::{Handler, Server};
pub use wire::{MAX_BODY_BYTES, MAX_HEAD_BYTES};
