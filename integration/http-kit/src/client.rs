//! A one-request-per-connection client that sends requests byte-exact.
//!
//! Requests are written by hand, because that is the point: a standard
//! client normalises header casing, merges or refuses duplicate and framing
//! headers, and tests send exactly those through Envoy on purpose. The
//! response head is parsed by `httparse`, chunk sizes too.

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::{MAX_HEAD_BYTES, header_values};

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
        header_values(&self.headers, name).next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
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
    loop {
        let (status, headers) = read_head(&mut reader)?;
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let bodiless = is_head || status < 200 || status == 204 || status == 304;
        let body = if bodiless { Vec::new() } else { read_body(&mut reader, &headers)? };
        return Ok(ClientResponse { status, headers, body });
    }
}

/// Most header fields a response may have.
const MAX_RESPONSE_HEADERS: usize = 256;

/// Reads and parses a status line and header block (names lowercased).
fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut head = Vec::new();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            let what = if head.is_empty() { "before a response" } else { "inside the response head" };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("connection closed {what}")));
        }
        let already = head.len();
        head.extend_from_slice(available);
        let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(&head).map_err(invalid)? {
            httparse::Status::Complete(length) => {
                reader.consume(length - already);
                let headers = response
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                return Ok((response.code.unwrap_or_default(), headers));
            }
            httparse::Status::Partial if head.len() > MAX_HEAD_BYTES => {
                return Err(invalid("head too large"));
            }
            httparse::Status::Partial => reader.consume(head.len() - already),
        }
    }
}

/// Reads a body delimited by chunked coding, Content-Length or the close.
fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let last_coding = header_values(headers, "transfer-encoding").flat_map(|v| v.split(',')).last();
    if last_coding.is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked")) {
        read_chunked(reader, &mut body)?;
    } else if let (None, Some(length)) = (last_coding, header_values(headers, "content-length").next()) {
        let length: usize = length.trim().parse().map_err(|_| invalid("invalid content-length"))?;
        if length > MAX_RESPONSE_BODY_BYTES {
            return Err(invalid("body too large"));
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.by_ref().take(MAX_RESPONSE_BODY_BYTES as u64 + 1).read_to_end(&mut body)?;
        if body.len() > MAX_RESPONSE_BODY_BYTES {
            return Err(invalid("body too large"));
        }
    }
    Ok(body)
}

/// Decodes a chunked body; trailer fields are read and dropped.
fn read_chunked(reader: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let size_line = read_line(reader)?;
        let size = match httparse::parse_chunk_size(&size_line) {
            Ok(httparse::Status::Complete((_, size))) => usize::try_from(size).unwrap_or(usize::MAX),
            _ => return Err(invalid("invalid chunk size")),
        };
        if size == 0 {
            while !is_blank(&read_line(reader)?) {}
            return Ok(());
        }
        if body.len().saturating_add(size) > MAX_RESPONSE_BODY_BYTES {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !is_blank(&read_line(reader)?) {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

/// One line with its line ending; a line cut short by the close is an error.
fn read_line(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.by_ref().take(MAX_HEAD_BYTES as u64).read_until(b'\n', &mut line)?;
    match line.ends_with(b"\n") {
        true => Ok(line),
        false if line.len() >= MAX_HEAD_BYTES => Err(invalid("line too long in a chunked body")),
        false => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a chunked body")),
    }
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn head_keeps_duplicates_and_lowercases_names() {
        let mut input = &b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a:  2 \r\nContent-Length: 4\n\r\nrest"[..];
        let (status, headers) = read_head(&mut input).unwrap();
        assert_eq!(status, 200);
        let expected = [("x-a", "1"), ("x-a", "2"), ("content-length", "4")];
        assert_eq!(headers, expected.map(|(n, v)| (n.to_string(), v.to_string())));
        assert_eq!(input, b"rest");
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let headers = [("transfer-encoding".to_string(), "chunked".to_string())];
        let mut input = &b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-trailer: y\r\n\r\nnext"[..];
        assert_eq!(read_body(&mut input, &headers).unwrap(), b"Wikipedia");
        assert_eq!(input, b"next");
        let mut cut = &b"4\r\nWi"[..];
        assert_eq!(read_body(&mut cut, &headers).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut bad = &b"zz\r\n"[..];
        assert_eq!(read_body(&mut bad, &headers).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
