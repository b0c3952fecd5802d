//! Responses and the [`Reply`] a handler returns.

use core::time::Duration;

/// An HTTP response to send. The server adds `content-length` (or chunked
/// coding for [`Reply::Chunked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields, sent in order with the given casing.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with the given content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("content-type".to_string(), content_type.to_string())],
            body: body.into(),
        }
    }

    /// An `application/json` response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, text: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", text)
    }

    /// A response without body or content type.
    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// Appends a header (duplicates allowed).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What a handler wants done with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send the response.
    Respond(Response),
    /// Wait, then send the response. The wait ends early if the server stops.
    Delayed(Duration, Response),
    /// Close the connection without answering.
    Close,
    /// Send the head with the full content-length, then half the body, then close.
    Truncated(Response),
    /// Write these bytes verbatim, then close.
    Raw(Vec<u8>),
    /// Send with `transfer-encoding: chunked`: the response body (if any) as
    /// the first chunk, then each chunk after its delay. Suits
    /// `text/event-stream` and streaming tests; the connection stays usable.
    Chunked(Response, Vec<(Duration, Vec<u8>)>),
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::Respond(response)
    }
}

/// The standard reason phrase for a status code ("" when unknown).
pub fn reason_phrase(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status).ok().and_then(|status| status.canonical_reason()).unwrap_or("")
}
