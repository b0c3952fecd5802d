//! Where in a JSON document a parse error happened, as a field path
//! (`routes[0].match.pathPrefix`): serde_json reports a line and column,
//! and a configuration error must name the field.
//!
//! The document is scanned up to the error position, keeping the stack of
//! objects (with the member being read) and arrays (with the element
//! index) that are open there.

/// One open container.
enum Frame {
    Object { key: Option<String> },
    Array { index: usize, started: bool },
}

/// The byte offset of serde_json's `line` (1-based) and `column` (1-based,
/// the last byte read).
pub fn offset(text: &[u8], line: usize, column: usize) -> usize {
    let mut current = 1;
    let mut start = 0;
    for (i, b) in text.iter().enumerate() {
        if current == line {
            break;
        }
        if *b == b'\n' {
            current += 1;
            start = i + 1;
        }
    }
    (start + column).min(text.len())
}

/// The path open at byte `end` of `text`. With `member_done`, the member
/// being read there is left out (a missing-field error is about the object,
/// not the last member before its closing brace).
pub fn path_at(text: &[u8], end: usize, member_done: bool) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let end = end.min(text.len());
    while i < end {
        match text[i] {
            b'{' => {
                begin_value(&mut stack);
                stack.push(Frame::Object { key: None });
            }
            b'[' => {
                begin_value(&mut stack);
                stack.push(Frame::Array { index: 0, started: false });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key }) => *key = None,
                Some(Frame::Array { index, started }) => {
                    *index += 1;
                    *started = false;
                }
                None => {}
            },
            b'"' => {
                let (text_value, next) = read_string(text, i);
                i = next;
                match stack.last_mut() {
                    Some(Frame::Object { key }) if key.is_none() => *key = Some(text_value),
                    _ => begin_value(&mut stack),
                }
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {}
            _ => begin_value(&mut stack),
        }
        i += 1;
    }
    if member_done && let Some(Frame::Object { key }) = stack.last_mut() {
        *key = None;
    }
    render(&stack)
}

/// A scalar or container starts: in an array, that is the current element.
fn begin_value(stack: &mut [Frame]) {
    if let Some(Frame::Array { started, .. }) = stack.last_mut() {
        *started = true;
    }
}

/// The string starting at `start` (a quote), decoded loosely (escapes kept
/// as their character), and the offset after its closing quote.
fn read_string(text: &[u8], start: usize) -> (String, usize) {
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'"' => return (String::from_utf8_lossy(&out).into_owned(), i + 1),
            b'\\' if i + 1 < text.len() => {
                out.push(text[i + 1]);
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), text.len())
}

fn render(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Object { key: Some(key) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None } => {}
            Frame::Array { index, started } => {
                if *started {
                    path.push_str(&format!("[{index}]"));
                }
            }
        }
    }
    if path.is_empty() { ".".to_string() } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, marker: &str, member_done: bool) -> String {
        let end = text.find(marker).map_or(text.len(), |i| i + marker.len());
        path_at(text.as_bytes(), end, member_done)
    }

    #[test]
    fn members_and_elements() {
        let doc = r#"{"routes":[{"match":{"pathprefix":"/x"}},{"name":"b","methods":["GET",5]}]}"#;
        assert_eq!(at(doc, r#""pathprefix""#, false), "routes[0].match.pathprefix");
        assert_eq!(at(doc, "5", false), "routes[1].methods[1]");
        assert_eq!(at(doc, r#""b""#, false), "routes[1].name");
        assert_eq!(at(doc, "", false), ".");
        assert_eq!(at(r#"{"rutes":[]}"#, r#""rutes""#, false), "rutes");
    }

    #[test]
    fn a_finished_member_names_its_object() {
        let doc = "{\"providers\": [\n  {\"name\": \"a\"}\n]}";
        assert_eq!(at(doc, "\"a\"", true), "providers[0]");
        assert_eq!(at(doc, "\"a\"", false), "providers[0].name");
    }

    #[test]
    fn strings_with_brackets_and_escapes_do_not_confuse_it() {
        let doc = r#"{"a":"[{,\"}","b":{"c\"d":1}}"#;
        assert_eq!(at(doc, "1", false), r#"b.c"d"#);
    }

    #[test]
    fn line_and_column_to_offset() {
        let text = b"{\n  \"a\": 1\n}";
        assert_eq!(offset(text, 2, 5), 7, "column 5 of line 2 is the closing quote of \"a\"");
        assert_eq!(&text[..7], b"{\n  \"a\"");
        assert_eq!(offset(text, 1, 1), 1);
        assert_eq!(offset(text, 9, 9), text.len());
    }
}
