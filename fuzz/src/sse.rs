//! Target `sse`: server-sent events as the runtime reads an answer stream
//! (`baton_filter_kit::sse`, and the carry of `Runtime::answer_events`).
//!
//! Input: byte 0 and 1 choose two places where the stream is cut into
//! chunks; the rest is the stream.
//!
//! Asserts: the complete prefix is made of whole events, each one event on
//! its own and ending with an empty line; read in chunks, carrying the
//! incomplete end from one chunk to the next, the same events come out as
//! from the whole stream, and what goes on is the stream, byte for byte;
//! each event's data is what an independent reading of the WHATWG rules
//! finds; an event given new data reads back as that data, and is complete.

use baton_filter_kit::sse::{complete_prefix, data, events, with_data};

/// The target's one call: checks `data` as the module documentation says.
pub fn check(input: &[u8]) {
    let [a, b, stream @ ..] = input else {
        return;
    };
    let prefix = complete_prefix(stream);
    assert!(prefix <= stream.len());
    let whole = events(&stream[..prefix]);
    assert_eq!(whole.concat(), &stream[..prefix], "the complete prefix is whole events");
    for event in &whole {
        assert_eq!(events(event), vec![*event], "one event on its own");
        assert_eq!(data(event), reference_data(event), "{:?}", String::from_utf8_lossy(event));
        if let Some(text) = data(event) {
            let rewritten = with_data(event, &format!("{text}\r\nmore"));
            assert_eq!(complete_prefix(&rewritten), rewritten.len(), "a rewritten event is complete");
            assert_eq!(data(&rewritten), Some(format!("{text}\nmore")));
        }
    }

    // In chunks, as the runtime reads them.
    let mut cuts = [usize::from(*a) % (stream.len() + 1), usize::from(*b) % (stream.len() + 1)];
    cuts.sort_unstable();
    let chunks = [&stream[..cuts[0]], &stream[cuts[0]..cuts[1]], &stream[cuts[1]..]];
    let mut carry: Vec<u8> = Vec::new();
    let mut seen_events: Vec<Vec<u8>> = Vec::new();
    let mut forwarded: Vec<u8> = Vec::new();
    for chunk in chunks {
        let mut seen = std::mem::take(&mut carry);
        seen.extend_from_slice(chunk);
        let ready = complete_prefix(&seen);
        for event in events(&seen[..ready]) {
            seen_events.push(event.to_vec());
            forwarded.extend_from_slice(event);
        }
        carry = seen[ready..].to_vec();
    }
    forwarded.extend_from_slice(&carry);
    assert_eq!(forwarded, stream, "what goes on is the stream");
    let whole: Vec<Vec<u8>> = whole.iter().map(|event| event.to_vec()).collect();
    assert_eq!(seen_events, whole, "the same events, whatever the chunks");
}

/// The WHATWG reading, written apart: lines end at CRLF, LF or CR; a line
/// `data` or `data:value` (one leading space dropped) adds its value; the
/// values join with LF.
fn reference_data(event: &[u8]) -> Option<String> {
    let text = event.iter().map(|&b| b as char).collect::<String>();
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut values: Vec<String> = Vec::new();
    for line in normalized.split('\n') {
        let (name, value) = match line.find(':') {
            Some(0) => continue,
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, ""),
        };
        if name == "data" {
            values.push(value.strip_prefix(' ').unwrap_or(value).to_string());
        }
    }
    if values.is_empty() {
        return None;
    }
    // The reading above went through Latin-1 characters; the data is the
    // original bytes, which must be UTF-8.
    let bytes: Vec<u8> = values.join("\n").chars().map(|c| c as u8).collect();
    String::from_utf8(bytes).ok()
}
