//! Server-sent events (the WHATWG `text/event-stream` format) as they pass:
//! where complete events end in the bytes seen so far, an event's `data`,
//! and the event with new `data`. A2A and MCP stream their answers this
//! way; a filter reads each event as it completes and forwards it at once.
//!
//! Lines end in CRLF, LF or CR; an empty line ends an event. A CR at the
//! very end of the bytes seen may be the first half of a CRLF, so an event
//! is complete only once the byte after it is known or the stream ended.

/// The complete events at the start of `bytes`, each with its lines and
/// the empty line that ends it; what follows them is not complete yet.
pub fn events(bytes: &[u8]) -> Vec<&[u8]> {
    let mut found = Vec::new();
    let mut rest = bytes;
    loop {
        let end = first_event_end(rest);
        // An event ended by a CR at the very end may yet be ended by CRLF.
        if end == 0 || (end == rest.len() && rest[end - 1] == b'\r') {
            return found;
        }
        found.push(&rest[..end]);
        rest = &rest[end..];
    }
}

/// The length of the prefix of `bytes` made of complete events (0 when
/// none is complete yet).
pub fn complete_prefix(bytes: &[u8]) -> usize {
    events(bytes).iter().map(|event| event.len()).sum()
}

/// The end of the first complete event in `bytes`, or 0.
fn first_event_end(bytes: &[u8]) -> usize {
    let mut line_start = 0;
    let mut at = 0;
    while at < bytes.len() {
        let terminator = match bytes[at] {
            b'\n' => 1,
            b'\r' if bytes.get(at + 1) == Some(&b'\n') => 2,
            b'\r' => 1,
            _ => {
                at += 1;
                continue;
            }
        };
        let empty_line = at == line_start;
        at += terminator;
        line_start = at;
        if empty_line {
            return at;
        }
    }
    0
}

/// The lines of one event, without their terminators.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|byte| *byte == b'\n' || *byte == b'\r').unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = match (rest.get(end), rest.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(_), _) => 1,
            (None, _) => 0,
        };
        rest = &rest[end + skip..];
        Some(line)
    })
}

/// A field line's name and value (`name: value`, one leading space of the
/// value dropped); `None` for a comment (`:`) or an empty line.
fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    if line.is_empty() || line[0] == b':' {
        return None;
    }
    match line.iter().position(|byte| *byte == b':') {
        Some(colon) => {
            let value = &line[colon + 1..];
            Some((&line[..colon], value.strip_prefix(b" ").unwrap_or(value)))
        }
        None => Some((line, b"")),
    }
}

/// The event's data: its `data` lines joined with LF, as a client reads
/// them; `None` when it has none or they are not UTF-8.
pub fn data(event: &[u8]) -> Option<String> {
    let mut joined: Option<Vec<u8>> = None;
    for (name, value) in lines(event).filter_map(field) {
        if name == b"data" {
            match &mut joined {
                Some(text) => {
                    text.push(b'\n');
                    text.extend_from_slice(value);
                }
                None => joined = Some(value.to_vec()),
            }
        }
    }
    String::from_utf8(joined?).ok()
}

/// `event` with its data replaced by `new_data` (one `data` line per line
/// of it, lines ending in CRLF, LF or CR as a client reads them) where the
/// first `data` line stood; its other fields (`event`, `id`, `retry`) and
/// comments stay as they were.
pub fn with_data(event: &[u8], new_data: &str) -> Vec<u8> {
    let new_data = new_data.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::with_capacity(event.len() + new_data.len());
    let mut written = false;
    for line in lines(event) {
        if line.is_empty() {
            continue;
        }
        if field(line).is_some_and(|(name, _)| name == b"data") {
            if !written {
                for data_line in new_data.split('\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(data_line.as_bytes());
                    out.push(b'\n');
                }
                written = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_complete_at_its_empty_line_in_every_line_ending() {
        assert_eq!(complete_prefix(b"data: a\n\ndata: b\n"), 9);
        assert_eq!(complete_prefix(b"data: a\r\n\r\ndata: b"), 11);
        assert_eq!(complete_prefix(b"data: a\r\rdata"), 9);
        assert_eq!(complete_prefix(b"data: a\n"), 0);
        // A CR at the end may be half of a CRLF: not complete yet.
        assert_eq!(complete_prefix(b"data: a\r\n\r"), 0);
        assert_eq!(complete_prefix(b"data: a\r\n\r\n"), 11);
        assert_eq!(complete_prefix(b""), 0);
    }

    #[test]
    fn events_split_where_they_end() {
        let bytes = b"data: a\n\n: keep-alive\n\nevent: x\r\ndata: b\r\n\r\n";
        let found = events(&bytes[..complete_prefix(bytes)]);
        assert_eq!(found, vec![&b"data: a\n\n"[..], b": keep-alive\n\n", b"event: x\r\ndata: b\r\n\r\n"]);
        assert_eq!(data(found[0]).as_deref(), Some("a"));
        assert_eq!(data(found[1]), None);
        assert_eq!(data(found[2]).as_deref(), Some("b"));
    }

    #[test]
    fn data_lines_join_as_a_client_reads_them() {
        assert_eq!(data(b"data: {\"a\":\ndata:1}\n\n").as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(data(b"data\n\n").as_deref(), Some(""));
        assert_eq!(data(b"data:  two spaces\n\n").as_deref(), Some(" two spaces"));
        assert_eq!(data(b"id: 7\n\n"), None);
    }

    #[test]
    fn new_data_keeps_the_other_fields() {
        let event = b"event: message\r\nid: 7\r\ndata: old\r\ndata: more\r\n\r\n";
        let rewritten = with_data(event, "{\"new\":true}");
        assert_eq!(rewritten, b"event: message\nid: 7\ndata: {\"new\":true}\n\n");
        assert_eq!(data(&rewritten).as_deref(), Some("{\"new\":true}"));
        assert_eq!(complete_prefix(&rewritten), rewritten.len());
    }
}
