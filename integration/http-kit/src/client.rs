//! A one-request-per-connection client that sends requests byte-exact.

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;

use crate::wire::{self, WireError};

/// Responses larger than this are refused (mock servers may send oversized
/// bodies on purpose; a runaway stream must not eat the test's memory).
const MAX_RESPONSE_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A request to send with [`send`]. Headers are written exactly as given:
/// casing kept, duplicates kept, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request target: path plus optional `?query`.
    pub target: String,
    /// Header fields as they will appear on the wire.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl ClientRequest {
    /// A request without headers or body.
    pub fn new(method: &str, target: &str) -> Self {
        ClientRequest {
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// A `POST` request with a `content-type` header and body.
    pub fn post(target: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", target).header("content-type", content_type).body(body)
    }

    /// A `POST` of an `application/x-www-form-urlencoded` body.
    pub fn post_form(target: &str, pairs: &[(&str, &str)]) -> Self {
        Self::post(target, "application/x-www-form-urlencoded", crate::form_urlencode(pairs))
    }

    /// Appends a header (duplicates allowed, casing kept).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The exact bytes [`send`] writes for this request to `addr`: `Host`
    /// added only if absent, `content-length` added for a non-empty body
    /// when neither it nor `transfer-encoding` is given, and
    /// `connection: close` added unless a `connection` header is given.
    pub fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let has = |name: &str| self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !has("host") {
            head.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() && !has("content-length") && !has("transfer-encoding") {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        if !has("connection") {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A response read by [`send`] or [`send_raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    /// Status code.
    pub status: u16,
    /// Header fields with lowercased names, order and duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked coding removed).
    pub body: Vec<u8>,
}

impl ClientResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::header_values(&self.headers, name).next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        wire::header_values(&self.headers, name).collect()
    }

    /// The body as UTF-8, with invalid sequences replaced.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Sends `request` to `addr` on a fresh connection and reads the response.
/// `timeout` bounds connecting and each read or write. A body cut short
/// (fewer bytes than its content-length) is an `UnexpectedEof` error.
pub fn send(addr: SocketAddr, request: &ClientRequest, timeout: Duration) -> io::Result<ClientResponse> {
    let is_head = request.method.eq_ignore_ascii_case("HEAD");
    exchange(addr, &request.to_bytes(addr), is_head, timeout)
}

/// Writes `bytes` verbatim (e.g. a malformed request) and reads the response.
pub fn send_raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> io::Result<ClientResponse> {
    exchange(addr, bytes, bytes.starts_with(b"HEAD "), timeout)
}

/// Sends `request` for `addr` over a connection the caller opened (a TLS
/// stream, say) and reads the response; timeouts are the stream's.
pub fn send_on(
    stream: impl Read + Write,
    addr: SocketAddr,
    request: &ClientRequest,
) -> io::Result<ClientResponse> {
    exchange_on(stream, &request.to_bytes(addr), request.method.eq_ignore_ascii_case("HEAD"))
}

fn exchange(addr: SocketAddr, bytes: &[u8], is_head: bool, timeout: Duration) -> io::Result<ClientResponse> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    exchange_on(stream, bytes, is_head)
}

fn exchange_on(mut stream: impl Read + Write, bytes: &[u8], is_head: bool) -> io::Result<ClientResponse> {
    stream.write_all(bytes)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    Ok(read_response(&mut reader, is_head)?)
}

fn read_response(reader: &mut impl io::BufRead, is_head: bool) -> Result<ClientResponse, WireError> {
    loop {
        let head = wire::read_head(reader)?;
        let status = parse_status_line(&head.start_line)?;
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let bodiless = is_head || status < 200 || status == 204 || status == 304;
        let framing = wire::response_framing(&head.headers, bodiless)?;
        let body = wire::read_body(reader, framing, MAX_RESPONSE_BODY_BYTES)?;
        return Ok(ClientResponse { status, headers: head.headers, body });
    }
}

fn parse_status_line(line: &str) -> Result<u16, WireError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(WireError::Malformed("malformed status line"));
    }
    code.parse().map_err(|_| WireError::Malformed("malformed status code"))
}
