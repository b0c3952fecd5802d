//! HTTP/1.1 for Baton's test tooling: a server on hyper, and a client that
//! writes requests byte-exact.
//!
//! The server ([`Server`]) is hyper's HTTP/1.1 connection on a tokio runtime
//! the server owns; handlers are plain blocking functions. For the faults a
//! mock server injects on purpose (close without answering, a truncated
//! body, arbitrary bytes) hyper hands the connection back and those bytes are
//! written to the socket as they are.
//!
//! The client ([`send`]) writes the request exactly as built (casing,
//! duplicates and framing headers kept: tests send odd requests through
//! Envoy on purpose) and reads the response with `httparse`. No TLS of its
//! own ([`send_on`] takes a caller's stream), no HTTP/2, no pipelining.

mod client;
mod encoding;
mod request;
mod response;
mod server;

pub use client::{ClientRequest, ClientResponse, send, send_on, send_raw};
pub use encoding::{form_urlencode, parse_urlencoded, percent_decode, percent_encode};
pub use request::Request;
pub use response::{Reply, Response, reason_phrase};
pub use server::{Handler, Server};

/// Largest accepted header block (start line and headers), in bytes; larger
/// requests get a 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest accepted request body, in bytes; larger requests get a 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Values of every header named `name` (case-insensitive), in order.
pub(crate) fn header_values<'a, 'n>(
    headers: &'a [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}
