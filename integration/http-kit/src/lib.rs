//! HTTP/1.1 for Baton's test tooling.
//!
//! The server ([`Server`]) is hyper's HTTP/1.1 connection on a tokio runtime
//! the server owns; handlers are plain blocking functions. For the faults a
//! mock server injects on purpose (close without answering, a truncated
//! body, arbitrary bytes) hyper hands the connection back and those bytes are
//! written to the socket as they are.
//!
//! The client ([`send`]) writes requests byte-exact over `std::net`: tests
//! send duplicate headers, odd casing and framing headers on purpose. No TLS
//! of its own, no HTTP/2, no pipelining.

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
