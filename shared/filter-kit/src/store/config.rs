//! A filter's `store` section: where etcd is (an Envoy cluster), under which
//! prefix Baton's keys live, and the keys that seal and name them.
//!
//! ```json
//! "store": {
//!   "etcd": {"cluster": "etcd", "authority": "etcd.internal", "prefix": "baton/", "timeoutMs": 500},
//!   "sealingKeys": [{"id": "k2", "secretEnv": "BATON_STORE_K2"}, {"id": "k1", "secretEnv": "BATON_STORE_K1"}],
//!   "currentKey": "k2"
//! }
//! ```
//!
//! A secret is the base64 of at least 32 random bytes (`openssl rand -base64
//! 32`), given inline as `secret` or, better, through the VM environment
//! variable `secretEnv` names (as `clientSecret` / `clientSecretEnv`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use baton_token::Secret;
use serde::Deserialize;

use super::callout::EtcdEndpoint;
use super::seal::{KeyError, MIN_SECRET_BYTES, StoreKeys};
use crate::config::{ConfigError, find_named, secret_setting};

/// Longest call timeout to etcd: a store slower than this is down.
pub const MAX_TIMEOUT_MS: u64 = 10_000;
/// Longest key prefix.
pub const MAX_PREFIX_BYTES: usize = 64;

/// The `store` section, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreSpec {
    etcd: EtcdSpec,
    sealing_keys: Vec<SealingKeySpec>,
    current_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EtcdSpec {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SealingKeySpec {
    id: String,
    #[serde(default)]
    secret: Option<Secret>,
    #[serde(default)]
    secret_env: Option<String>,
}

fn default_prefix() -> String {
    "baton/".to_string()
}

fn default_timeout_ms() -> u64 {
    500
}

/// The store, compiled.
#[derive(Debug)]
pub struct StoreConfig {
    /// How etcd is called.
    pub endpoint: EtcdEndpoint,
    /// What every key Baton writes starts with.
    pub prefix: String,
    /// Sealing and naming keys.
    pub keys: StoreKeys,
}

impl StoreConfig {
    /// The store key of entry `kind` for `parts`: the prefix and a keyed
    /// hash under the current key (see [`StoreKeys::name`]).
    pub fn key(&self, kind: &str, parts: &[&[u8]]) -> Vec<u8> {
        format!("{}{}", self.prefix, self.keys.name(kind, parts)).into_bytes()
    }

    /// As [`StoreConfig::key`] under key `key_id`; `None` when it is not
    /// configured (see [`StoreKeys::name_under`]).
    pub fn key_under(&self, key_id: &str, kind: &str, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let name = self.keys.name_under(key_id, kind, parts)?;
        Some(format!("{}{name}", self.prefix).into_bytes())
    }
}

/// Compiles a `store` section found at `field` (e.g. `store`).
pub fn compile_store(spec: StoreSpec, field: &str) -> Result<StoreConfig, ConfigError> {
    let etcd = spec.etcd;
    if etcd.cluster.is_empty() {
        return Err(ConfigError::new(format!("{field}.etcd.cluster"), "must not be empty"));
    }
    let authority = etcd.authority.unwrap_or_else(|| etcd.cluster.clone());
    if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            format!("{field}.etcd.authority"),
            "must be a host name, with no spaces",
        ));
    }
    let prefix_valid = !etcd.prefix.is_empty()
        && etcd.prefix.len() <= MAX_PREFIX_BYTES
        && etcd.prefix.bytes().all(|b| b.is_ascii_graphic());
    if !prefix_valid {
        return Err(ConfigError::new(
            format!("{field}.etcd.prefix"),
            format!("must be 1 to {MAX_PREFIX_BYTES} printable characters without spaces"),
        ));
    }
    if etcd.timeout_ms == 0 || etcd.timeout_ms > MAX_TIMEOUT_MS {
        return Err(ConfigError::new(
            format!("{field}.etcd.timeoutMs"),
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    let keys = compile_keys(spec.sealing_keys, &spec.current_key, field)?;
    Ok(StoreConfig {
        endpoint: EtcdEndpoint { cluster: etcd.cluster, authority, timeout_ms: etcd.timeout_ms },
        prefix: etcd.prefix,
        keys,
    })
}

fn compile_keys(specs: Vec<SealingKeySpec>, current: &str, field: &str) -> Result<StoreKeys, ConfigError> {
    let mut keys: Option<StoreKeys> = None;
    let mut ids = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let field = format!("{field}.sealingKeys[{index}]");
        let source = if spec.secret_env.is_some() { "secretEnv" } else { "secret" };
        let secret =
            secret_setting(spec.secret.map(|s| s.expose().to_string()), spec.secret_env, &field, "secret")?
                .ok_or_else(|| ConfigError::new(format!("{field}.secret"), "give secret or secretEnv"))?;
        let material = STANDARD.decode(secret.trim()).map_err(|_| {
            ConfigError::new(
                format!("{field}.{source}"),
                format!(
                    "must be base64 of at least {MIN_SECRET_BYTES} random bytes (openssl rand -base64 32)"
                ),
            )
        })?;
        if ids.contains(&spec.id) {
            return Err(ConfigError::new(format!("{field}.id"), format!("duplicate key id {:?}", spec.id)));
        }
        let added = match keys.as_mut() {
            Some(keys) => keys.add(&spec.id, &material),
            None => StoreKeys::single(&spec.id, &material).map(|first| keys = Some(first)),
        };
        added.map_err(|err| match err {
            KeyError::InvalidId => ConfigError::new(format!("{field}.id"), err.to_string()),
            KeyError::ShortSecret(_) => ConfigError::new(format!("{field}.{source}"), err.to_string()),
        })?;
        ids.push(spec.id);
    }
    let Some(mut keys) = keys else {
        return Err(ConfigError::new(format!("{field}.sealingKeys"), "at least one key is required"));
    };
    find_named(ids.iter().map(String::as_str), current, &format!("{field}.currentKey"), "sealing key")?;
    keys.set_current(current);
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;

    // 32 bytes, base64.
    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    fn compile(json: &str) -> Result<StoreConfig, ConfigError> {
        compile_store(from_json::<StoreSpec>(json.as_bytes())?, "store")
    }

    fn base() -> String {
        format!(
            r#"{{"etcd":{{"cluster":"etcd"}},"sealingKeys":[{{"id":"k1","secret":"{K1}"}},{{"id":"k2","secret":"{K2}"}}],"currentKey":"k2"}}"#
        )
    }

    #[test]
    fn a_store_compiles_with_defaults() {
        let store = compile(&base()).unwrap();
        assert_eq!(
            store.endpoint,
            EtcdEndpoint { cluster: "etcd".into(), authority: "etcd".into(), timeout_ms: 500 }
        );
        assert_eq!(store.prefix, "baton/");
        assert_eq!(store.keys.current_id(), "k2");
        assert!(store.keys.has("k1"));
        let key = String::from_utf8(store.key("token", &[b"alice"])).unwrap();
        assert!(key.starts_with("baton/") && key.len() == 6 + 64, "{key}");
        assert!(!key.contains("alice"));
        assert_ne!(store.key_under("k1", "token", &[b"alice"]), Some(key.into_bytes()));
        let debug = format!("{store:?}");
        assert!(!debug.contains(K1) && !debug.contains("0123456789"), "{debug}");
    }

    #[test]
    fn a_secret_from_the_environment() {
        // `set_var` is unsafe in edition 2024 (and unsafe code is denied):
        // the test reads a variable surely absent, and one surely no key.
        let from = |variable: &str| {
            compile(&base().replacen(
                &format!(r#""secret":"{K1}""#),
                &format!(r#""secretEnv":"{variable}""#),
                1,
            ))
            .unwrap_err()
        };
        let absent = from("BATON_TEST_STORE_SECRET_ABSENT");
        assert_eq!(absent.field, "store.sealingKeys[0].secretEnv");
        assert!(absent.message.contains("BATON_TEST_STORE_SECRET_ABSENT"), "{absent}");
        let not_a_key = from("PATH");
        assert_eq!(not_a_key.field, "store.sealingKeys[0].secretEnv");
        assert!(not_a_key.message.contains("base64"), "{not_a_key}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (base().replace(r#""cluster":"etcd""#, r#""cluster":"""#), "store.etcd.cluster"),
            (
                base().replace(r#""cluster":"etcd""#, r#""cluster":"etcd","authority":"a b""#),
                "store.etcd.authority",
            ),
            (base().replace(r#""cluster":"etcd""#, r#""cluster":"etcd","prefix":"""#), "store.etcd.prefix"),
            (
                base().replace(r#""cluster":"etcd""#, r#""cluster":"etcd","timeoutMs":0"#),
                "store.etcd.timeoutMs",
            ),
            (
                base().replace(r#""cluster":"etcd""#, r#""cluster":"etcd","timeoutMs":60000"#),
                "store.etcd.timeoutMs",
            ),
            (base().replace(r#""currentKey":"k2""#, r#""currentKey":"k3""#), "store.currentKey"),
            (base().replace(r#""id":"k2""#, r#""id":"k1""#), "store.sealingKeys[1].id"),
            (base().replace(r#""id":"k2""#, r#""id":"k 2""#), "store.sealingKeys[1].id"),
            (base().replace(K2, "c2hvcnQ="), "store.sealingKeys[1].secret"),
            (base().replace(K2, "not base64!"), "store.sealingKeys[1].secret"),
            (base().replace(&format!(r#","secret":"{K2}""#), ""), "store.sealingKeys[1].secret"),
            (base().replace(&format!(r#""secret":"{K2}""#), r#""secret":"""#), "store.sealingKeys[1].secret"),
            (
                base()
                    .replace(&format!(r#""secret":"{K2}""#), &format!(r#""secret":"{K2}","secretEnv":"X""#)),
                "store.sealingKeys[1].secret",
            ),
        ];
        for (json, field) in cases {
            let err = compile(&json).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
        }
        let none = r#"{"etcd":{"cluster":"etcd"},"sealingKeys":[],"currentKey":"k1"}"#;
        assert_eq!(compile(none).unwrap_err().field, "store.sealingKeys");
        let err = compile(&base().replace(r#""currentKey":"k2""#, r#""currentKey":"k3""#)).unwrap_err();
        assert!(err.message.contains("known: k1, k2"), "{err}");
        let err = compile(&base().replace(K2, "c2hvcnQ=")).unwrap_err();
        assert!(err.message.contains("at least 32 bytes") && !err.message.contains("c2hvcnQ"), "{err}");
        // A misspelled field is refused, not ignored.
        let err = compile(
            &base()
                .replace("timeoutMs", "x")
                .replace(r#""cluster":"etcd""#, r#""cluster":"etcd","timeout":5"#),
        )
        .unwrap_err();
        assert!(err.message.starts_with("unknown field `timeout`"), "{err}");
    }
}
