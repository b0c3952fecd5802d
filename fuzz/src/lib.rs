//! The fuzz targets' checks, one module per target (`fuzz_targets/<name>.rs`
//! is one call to `<module>::check`), and what they share: the fixed world
//! they run in ([`fixtures`]), independent readings to compare with
//! ([`reference`]), and the input helpers below.

pub mod a2a_message;
pub mod claim_rules;
pub mod config;
pub mod fixtures;
pub mod form;
pub mod jwt_parse;
pub mod reference;
pub mod sse;
pub mod token_response;
pub mod www_authenticate;

/// Splits `data` at the first `count - 1` NUL bytes; missing fields are absent.
pub fn fields(data: &[u8], count: usize) -> Vec<&[u8]> {
    data.splitn(count, |b| *b == 0).collect()
}

/// Whether `value` holds a floating-point number anywhere. serde_json as
/// the filters build it (without `float_roundtrip`) reads some floats to
/// within one ulp rather than exactly, so a value with floats may not
/// survive serialization and a new parse bit for bit; round-trip checks
/// skip them.
pub fn has_float(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(number) => number.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(has_float),
        serde_json::Value::Object(members) => members.values().any(has_float),
        _ => false,
    }
}
