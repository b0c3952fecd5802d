//! Strict JSON objects for JOSE headers and claim sets.
//!
//! RFC 7515 §5.2 lets a parser either reject duplicate member names or keep
//! the last one. Keeping one silently is how two components end up reading
//! two different `sub` values from one token, so the top level of a header or
//! claim set is parsed with duplicates refused. Nesting depth is bounded by
//! serde_json's recursion limit (128).

use alloc::string::String;
use core::cell::Cell;
use core::fmt;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Why a JSON object was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON (syntax, encoding, or nesting deeper than the limit).
    Syntax,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// The same member name appears twice at the top level.
    DuplicateMember,
}

/// Parses `bytes` as one JSON object whose top-level member names are unique.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let saw_duplicate = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictObject { saw_duplicate: &saw_duplicate }.deserialize(&mut deserializer);
    match parsed.and_then(|map| deserializer.end().map(|()| map)) {
        Ok(map) => Ok(map),
        Err(_) if saw_duplicate.get() => Err(JsonError::DuplicateMember),
        Err(err) if err.is_data() => Err(JsonError::NotAnObject),
        Err(_) => Err(JsonError::Syntax),
    }
}

/// Deserializes a top-level object, flagging a repeated member name.
struct StrictObject<'a> {
    saw_duplicate: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for StrictObject<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StrictObject<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                self.saw_duplicate.set(true);
                return Err(de::Error::custom("duplicate member"));
            }
            let value = access.next_value::<Value>()?;
            map.insert(key, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_an_object() {
        let map = parse_object(br#"{"a":1,"b":{"a":2}}"#).unwrap();
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn refuses_duplicate_top_level_members() {
        assert_eq!(parse_object(br#"{"sub":"alice","sub":"admin"}"#), Err(JsonError::DuplicateMember));
    }

    #[test]
    fn refuses_non_objects_and_bad_syntax() {
        assert_eq!(parse_object(b"[1,2]"), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"\"x\""), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(br#"{"a":1"#), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"{\"a\":\"\xff\"}"), Err(JsonError::Syntax));
        assert_eq!(parse_object(br#"{"a":1} x"#), Err(JsonError::Syntax));
    }

    #[test]
    fn refuses_very_deep_nesting() {
        let mut deep = alloc::vec::Vec::new();
        deep.extend_from_slice(br#"{"a":"#);
        deep.extend(core::iter::repeat_n(b'[', 1000));
        deep.extend(core::iter::repeat_n(b']', 1000));
        deep.push(b'}');
        assert_eq!(parse_object(&deep), Err(JsonError::Syntax));
    }
}
