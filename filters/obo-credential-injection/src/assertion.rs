//! Identity assertions signed by the gateway (the trusted subsystem
//! pattern): for upstreams in the gateway's own trust domain, the filter
//! itself states who the caller is in a short-lived JWT, instead of asking
//! the IdP for a token per audience. Its keys' public halves are served as
//! a JWKS so upstreams can verify.

use baton_filter_kit::config::{ConfigError, secret_setting};
use baton_token::claims::Claims;
use baton_token::secret::Secret;
use baton_token::sign::{SignError, SigningAlgorithm, SigningKey};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Claims the assertion sets itself; a copied claim cannot be renamed to one.
const RESERVED: [&str; 8] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "act"];

/// `identityAssertion`, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssertionSpec {
    issuer: String,
    #[serde(default)]
    actor: Option<String>,
    keys: Vec<KeySpec>,
    active_kid: String,
    #[serde(default = "default_lifetime")]
    lifetime_seconds: u64,
    #[serde(default = "default_typ")]
    typ: String,
    #[serde(default)]
    claims: Vec<ClaimCopySpec>,
    #[serde(default = "default_jwks_path")]
    jwks_path: String,
}

fn default_lifetime() -> u64 {
    60
}
fn default_typ() -> String {
    "at+jwt".to_string()
}
fn default_jwks_path() -> String {
    "/.well-known/baton/jwks.json".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeySpec {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    pem: Option<String>,
    #[serde(default)]
    pem_env: Option<String>,
    #[serde(default)]
    jwk: Option<Value>,
    #[serde(default)]
    jwk_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClaimCopySpec {
    from: String,
    #[serde(default)]
    to: Option<String>,
}

/// The compiled issuer of assertions.
#[derive(Debug)]
pub struct AssertionIssuer {
    /// `iss` of every assertion.
    pub issuer: String,
    /// `act.sub`: the gateway.
    actor: String,
    keys: Vec<SigningKey>,
    active: usize,
    /// Longest lifetime, seconds (never beyond the source token's `exp`).
    pub lifetime_secs: u64,
    typ: String,
    /// (source claim, assertion claim).
    claims: Vec<(String, String)>,
    /// Where the JWKS is served.
    pub jwks_path: String,
    jwks: String,
}

fn load_key(spec: KeySpec, field: &str) -> Result<SigningKey, ConfigError> {
    let pem = secret_setting(spec.pem, spec.pem_env, field, "pem")?;
    let jwk_text = secret_setting(None, spec.jwk_env, field, "jwk")?;
    let bad = |why: SignError| ConfigError::new(field, why.to_string());
    match (pem, spec.jwk, jwk_text) {
        (Some(pem), None, None) => {
            let Some(kid) = spec.kid else {
                return Err(ConfigError::new(format!("{field}.kid"), "required with pem"));
            };
            let alg = spec.alg.as_deref().and_then(SigningAlgorithm::from_name).ok_or_else(|| {
                ConfigError::new(format!("{field}.alg"), "ES256 or EdDSA is required with pem")
            })?;
            SigningKey::from_pem(&kid, alg, &pem).map_err(bad)
        }
        (None, jwk, text) if jwk.is_some() != text.is_some() => {
            let jwk = match (jwk, text) {
                (Some(jwk), _) => jwk,
                (None, Some(text)) => serde_json::from_str(&text)
                    .map_err(|_| ConfigError::new(format!("{field}.jwkEnv"), "is not a JSON JWK"))?,
                (None, None) => Value::Null,
            };
            let key = SigningKey::from_jwk(spec.kid.as_deref(), &jwk).map_err(bad)?;
            if let Some(alg) = spec.alg
                && alg != key.algorithm().name()
            {
                return Err(ConfigError::new(format!("{field}.alg"), "does not match the key"));
            }
            Ok(key)
        }
        _ => Err(ConfigError::new(field, "give exactly one of pem, pemEnv, jwk, jwkEnv")),
    }
}

/// Compiles `identityAssertion`.
pub fn compile(spec: AssertionSpec) -> Result<AssertionIssuer, ConfigError> {
    const FIELD: &str = "identityAssertion";
    if spec.issuer.is_empty() {
        return Err(ConfigError::new(format!("{FIELD}.issuer"), "must not be empty"));
    }
    if spec.keys.is_empty() {
        return Err(ConfigError::new(format!("{FIELD}.keys"), "at least one key is required"));
    }
    let mut keys: Vec<SigningKey> = Vec::with_capacity(spec.keys.len());
    for (index, key) in spec.keys.into_iter().enumerate() {
        let key = load_key(key, &format!("{FIELD}.keys[{index}]"))?;
        if keys.iter().any(|k| k.kid() == key.kid()) {
            return Err(ConfigError::new(format!("{FIELD}.keys[{index}].kid"), "duplicate kid"));
        }
        keys.push(key);
    }
    let Some(active) = keys.iter().position(|k| k.kid() == spec.active_kid) else {
        return Err(ConfigError::new(format!("{FIELD}.activeKid"), "names none of the keys"));
    };
    if !(10..=3600).contains(&spec.lifetime_seconds) {
        return Err(ConfigError::new(format!("{FIELD}.lifetimeSeconds"), "must be between 10 and 3600"));
    }
    if spec.typ.is_empty() || spec.typ.chars().any(|c| c.is_control() || c == '"') {
        return Err(ConfigError::new(format!("{FIELD}.typ"), "must be a media type such as at+jwt or JWT"));
    }
    if !spec.jwks_path.starts_with('/') || spec.jwks_path.contains('?') {
        return Err(ConfigError::new(format!("{FIELD}.jwksPath"), "must be a path starting with /"));
    }
    let mut claims = Vec::with_capacity(spec.claims.len());
    for (index, copy) in spec.claims.into_iter().enumerate() {
        let to = copy.to.unwrap_or_else(|| copy.from.clone());
        if copy.from.is_empty() || RESERVED.contains(&to.as_str()) {
            return Err(ConfigError::new(
                format!("{FIELD}.claims[{index}]"),
                "copies a claim to a name the assertion sets itself (iss, sub, aud, exp, iat, nbf, jti, act)",
            ));
        }
        claims.push((copy.from, to));
    }
    let jwks = json!({"keys": keys.iter().map(SigningKey::public_jwk).collect::<Vec<_>>()}).to_string();
    Ok(AssertionIssuer {
        actor: spec.actor.unwrap_or_else(|| spec.issuer.clone()),
        issuer: spec.issuer,
        keys,
        active,
        lifetime_secs: spec.lifetime_seconds,
        typ: spec.typ,
        claims,
        jwks_path: spec.jwks_path,
        jwks,
    })
}

/// A signed assertion and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The compact JWS.
    pub token: Secret,
    /// Its `exp`.
    pub expires_at: u64,
}

impl AssertionIssuer {
    /// The public keys, as served at `jwks_path`.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The key assertions are signed with now.
    pub fn active_kid(&self) -> &str {
        self.keys.get(self.active).map_or("", SigningKey::kid)
    }

    /// Signs the assertion that `subject` (validated) calls `audiences`
    /// through `caller` (the calling client, when known).
    pub fn mint(
        &self,
        subject: &Claims,
        audiences: &[String],
        caller: Option<&str>,
        now: u64,
        jti: &str,
    ) -> Result<Assertion, SignError> {
        let key = self.keys.get(self.active).ok_or_else(|| SignError("no active key".into()))?;
        let source_exp = subject.exp.and_then(|exp| u64::try_from(exp).ok());
        let expires_at = source_exp.map_or(now + self.lifetime_secs, |exp| exp.min(now + self.lifetime_secs));
        let mut payload = Map::new();
        for (from, to) in &self.claims {
            if let Some(value) = subject.select(from) {
                payload.insert(to.clone(), value.clone());
            }
        }
        payload.insert("iss".into(), json!(self.issuer));
        if let Some(sub) = &subject.sub {
            payload.insert("sub".into(), json!(sub));
        }
        payload
            .insert("aud".into(), if audiences.len() == 1 { json!(audiences[0]) } else { json!(audiences) });
        let mut act = json!({"sub": self.actor});
        if let Some(caller) = caller {
            act["act"] = json!({"sub": caller});
        }
        payload.insert("act".into(), act);
        payload.insert("iat".into(), json!(now));
        payload.insert("exp".into(), json!(expires_at));
        payload.insert("jti".into(), json!(jti));
        let token = key.sign_compact(&self.typ, &Value::Object(payload))?;
        Ok(Assertion { token: Secret::new(token), expires_at })
    }
}

#[cfg(test)]
#[path = "assertion_tests.rs"]
mod tests;
