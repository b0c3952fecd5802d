//! The configuration targets: each filter's `config::parse` on arbitrary
//! bytes, through [`check_config`] and the filter's own invariants.

pub mod claim_enforcement;
pub mod in_task_auth_code;
pub mod obo_credential_injection;

use crate::has_float;

/// What every configuration target checks, around `parse` (a filter's
/// `config::parse`):
/// - nothing panics, and parsing the same bytes twice gives the same
///   configuration or the same error;
/// - an error names what is wrong (`message`), and displays;
/// - an accepted configuration passes `invariants` (the filter's own
///   invariants), and its meaning depends on the JSON value only: the same
///   value written compactly or pretty-printed (members sorted) compiles to
///   the same configuration. `forget_fingerprint` blanks the one field
///   derived from the bytes themselves.
pub fn check_config<T: std::fmt::Debug, E: std::fmt::Debug + std::fmt::Display + PartialEq>(
    data: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, E>,
    message: impl Fn(&E) -> &str,
    forget_fingerprint: impl Fn(&mut T),
    invariants: impl Fn(&T),
) {
    let first = parse(data);
    let config = match (first, parse(data)) {
        (Err(error), Err(again)) => {
            assert_eq!(error, again, "the same bytes give the same error");
            assert!(!message(&error).is_empty());
            assert!(!error.to_string().is_empty());
            return;
        }
        (Ok(mut config), Ok(mut again)) => {
            forget_fingerprint(&mut config);
            forget_fingerprint(&mut again);
            assert_eq!(format!("{config:?}"), format!("{again:?}"));
            config
        }
        (first, second) => panic!("the same bytes parsed differently: {first:?} / {second:?}"),
    };
    invariants(&config);
    let value: serde_json::Value = serde_json::from_slice(data).expect("an accepted configuration is JSON");
    if has_float(&value) {
        // Written out again, a float may come back one ulp off (see has_float).
        return;
    }
    let compact = serde_json::to_vec(&value).expect("serializes");
    let pretty = serde_json::to_vec_pretty(&value).expect("serializes");
    for text in [compact, pretty] {
        let mut again = match parse(&text) {
            Ok(again) => again,
            Err(error) => panic!("the same configuration, reformatted, is refused: {error}"),
        };
        forget_fingerprint(&mut again);
        assert_eq!(format!("{config:?}"), format!("{again:?}"), "reformatting changed the configuration");
    }
}
