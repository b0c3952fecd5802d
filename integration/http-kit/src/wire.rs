//! HTTP/1.1 message framing for the client: head parsing and body reading
//! (Content-Length, chunked, until close).

use std::io::{self, BufRead, Read};

/// Largest accepted header block (start line and headers), in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest accepted request body, in bytes; larger requests get a 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Why a message could not be read.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The peer closed the connection before sending any byte of a message.
    Closed,
    Io(io::Error),
    HeadTooLarge,
    BodyTooLarge,
    Malformed(&'static str),
}

impl From<io::Error> for WireError {
    fn from(error: io::Error) -> Self {
        WireError::Io(error)
    }
}

impl From<WireError> for io::Error {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Closed => {
                io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response")
            }
            WireError::Io(error) => error,
            WireError::HeadTooLarge => io::Error::new(io::ErrorKind::InvalidData, "header block too large"),
            WireError::BodyTooLarge => io::Error::new(io::ErrorKind::InvalidData, "body too large"),
            WireError::Malformed(what) => io::Error::new(io::ErrorKind::InvalidData, what),
        }
    }
}

/// A parsed start line plus headers (names lowercased, order kept).
#[derive(Debug)]
pub(crate) struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads a start line and header block, skipping blank lines before the
/// start line (RFC 9112 §2.2). Bare LF line endings are tolerated.
pub(crate) fn read_head(reader: &mut impl BufRead) -> Result<Head, WireError> {
    let mut consumed = 0usize;
    let mut start_line = None;
    let mut headers = Vec::new();
    loop {
        let line = match read_line(reader, MAX_HEAD_BYTES - consumed) {
            Ok(line) => line,
            Err(WireError::Closed) if consumed > 0 => {
                return Err(WireError::Malformed("connection closed inside the header block"));
            }
            Err(error) => return Err(error),
        };
        consumed += line.raw_len;
        let text = String::from_utf8_lossy(&line.content).into_owned();
        match &start_line {
            None if text.is_empty() => continue,
            None => start_line = Some(text),
            Some(_) if text.is_empty() => break,
            Some(_) => headers.push(parse_header_line(&text)?),
        }
    }
    let start_line = start_line.ok_or(WireError::Malformed("missing start line"))?;
    Ok(Head { start_line, headers })
}

fn parse_header_line(line: &str) -> Result<(String, String), WireError> {
    if line.starts_with([' ', '\t']) {
        return Err(WireError::Malformed("obsolete header line folding"));
    }
    let (name, value) = line.split_once(':').ok_or(WireError::Malformed("header line without a colon"))?;
    let name_is_token = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(&b));
    if !name_is_token {
        return Err(WireError::Malformed("invalid header name"));
    }
    Ok((name.to_ascii_lowercase(), value.trim_matches([' ', '\t']).to_string()))
}

struct Line {
    content: Vec<u8>,
    raw_len: usize,
}

/// Reads one line of at most `limit` bytes, without its line ending.
fn read_line(reader: &mut impl BufRead, limit: usize) -> Result<Line, WireError> {
    let mut raw = Vec::new();
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    let read = reader.by_ref().take(limit_u64).read_until(b'\n', &mut raw)?;
    if read == 0 {
        return Err(if limit == 0 { WireError::HeadTooLarge } else { WireError::Closed });
    }
    if raw.last() != Some(&b'\n') {
        return Err(if read >= limit {
            WireError::HeadTooLarge
        } else {
            WireError::Malformed("connection closed mid-line")
        });
    }
    let raw_len = raw.len();
    raw.pop();
    if raw.last() == Some(&b'\r') {
        raw.pop();
    }
    Ok(Line { content: raw, raw_len })
}

/// Values of every header named `name` (already lowercased), in order.
pub(crate) fn header_values<'a, 'n>(
    headers: &'a [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// True when the last transfer coding is `chunked`.
fn is_chunked(headers: &[(String, String)]) -> Option<bool> {
    let codings: Vec<String> = header_values(headers, "transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    codings.last().map(|last| last == "chunked")
}

/// The Content-Length, rejecting unparsable or conflicting values.
fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, WireError> {
    let mut length = None;
    for value in header_values(headers, "content-length").flat_map(|v| v.split(',')) {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WireError::Malformed("invalid content-length"));
        }
        let parsed: usize = value.parse().map_err(|_| WireError::Malformed("content-length out of range"))?;
        if length.is_some_and(|previous| previous != parsed) {
            return Err(WireError::Malformed("conflicting content-length values"));
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// Response framing; `bodiless` covers HEAD requests and 1xx/204/304.
pub(crate) fn response_framing(
    headers: &[(String, String)],
    bodiless: bool,
) -> Result<BodyFraming, WireError> {
    if bodiless {
        return Ok(BodyFraming::Empty);
    }
    match is_chunked(headers) {
        Some(true) => Ok(BodyFraming::Chunked),
        Some(false) => Ok(BodyFraming::UntilClose),
        None => Ok(match content_length(headers)? {
            Some(0) => BodyFraming::Empty,
            Some(length) => BodyFraming::Length(length),
            None => BodyFraming::UntilClose,
        }),
    }
}

/// Reads a body framed as `framing`, failing with `BodyTooLarge` past `limit`.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    framing: BodyFraming,
    limit: usize,
) -> Result<Vec<u8>, WireError> {
    match framing {
        BodyFraming::Empty => Ok(Vec::new()),
        BodyFraming::Length(length) if length > limit => Err(WireError::BodyTooLarge),
        BodyFraming::Length(length) => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            Ok(body)
        }
        BodyFraming::Chunked => read_chunked(reader, limit),
        BodyFraming::UntilClose => {
            let mut body = Vec::new();
            let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
            reader.by_ref().take(limit_u64 + 1).read_to_end(&mut body)?;
            if body.len() > limit {
                return Err(WireError::BodyTooLarge);
            }
            Ok(body)
        }
    }
}

fn read_chunked(reader: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader, MAX_HEAD_BYTES).map_err(eof_inside_body)?;
        let text = String::from_utf8_lossy(&line.content);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| WireError::Malformed("invalid chunk size"))?;
        if size == 0 {
            // Trailer fields are read and discarded up to the blank line.
            loop {
                let trailer = read_line(reader, MAX_HEAD_BYTES).map_err(eof_inside_body)?;
                if trailer.content.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len().saturating_add(size) > limit {
            return Err(WireError::BodyTooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let terminator = read_line(reader, 2).map_err(eof_inside_body)?;
        if !terminator.content.is_empty() {
            return Err(WireError::Malformed("chunk not followed by CRLF"));
        }
    }
}

fn eof_inside_body(error: WireError) -> WireError {
    match error {
        WireError::Closed => WireError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed inside a chunked body",
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_duplicates_and_lowercases_names() {
        let mut input = &b"\r\nGET / HTTP/1.1\r\nX-A: 1\r\nx-a:  2 \r\nHost: h\n\r\nrest"[..];
        let head = read_head(&mut input).unwrap();
        assert_eq!(head.start_line, "GET / HTTP/1.1");
        assert_eq!(
            head.headers,
            vec![
                ("x-a".to_string(), "1".to_string()),
                ("x-a".to_string(), "2".to_string()),
                ("host".to_string(), "h".to_string()),
            ]
        );
        assert_eq!(input, b"rest");
    }

    #[test]
    fn head_limit_and_malformed_lines() {
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(read_head(&mut big.as_bytes()), Err(WireError::HeadTooLarge)));
        let folded = b"GET / HTTP/1.1\r\nx: 1\r\n  folded\r\n\r\n";
        assert!(matches!(read_head(&mut &folded[..]), Err(WireError::Malformed(_))));
        let spaced = b"GET / HTTP/1.1\r\nx : 1\r\n\r\n";
        assert!(matches!(read_head(&mut &spaced[..]), Err(WireError::Malformed(_))));
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let mut input = &b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-trailer: y\r\n\r\nnext"[..];
        let body = read_body(&mut input, BodyFraming::Chunked, 100).unwrap();
        assert_eq!(body, b"Wikipedia");
        assert_eq!(input, b"next");
        let mut too_big = &b"a\r\n0123456789\r\n0\r\n\r\n"[..];
        assert!(matches!(read_body(&mut too_big, BodyFraming::Chunked, 5), Err(WireError::BodyTooLarge)));
    }
}
