//! A JWT claim set (RFC 7519 §4) with the registered and OAuth claims typed,
//! and the whole object kept for rules and forwarding.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{Map, Value};

/// The deepest `act` chain accepted (RFC 8693 §4.1 nests one object per hop).
pub const MAX_ACTOR_DEPTH: usize = 16;

/// A claim had the wrong JSON type for its registered meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidClaim(pub &'static str);

/// The `aud` claim: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Audience {
    /// No `aud` claim.
    #[default]
    Absent,
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is among the token's audiences.
    pub fn contains(&self, audience: &str) -> bool {
        self.iter().any(|candidate| candidate == audience)
    }

    /// The audiences, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&String>, &[String]) = match self {
            Audience::Absent => (None, &[]),
            Audience::One(aud) => (Some(aud), &[]),
            Audience::Many(auds) => (None, auds.as_slice()),
        };
        one.into_iter().chain(many.iter()).map(String::as_str)
    }
}

/// An actor (RFC 8693 §4.1 `act`, §4.4 `may_act`): who acts, and who acted
/// before them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// The acting party's subject.
    pub sub: Option<String>,
    /// The issuer of the acting party's identity.
    pub iss: Option<String>,
    /// The acting party's OAuth client id.
    pub client_id: Option<String>,
    /// The actor before this one, when delegation was chained.
    pub act: Option<Box<Actor>>,
}

impl Actor {
    fn from_value(value: &Value, depth: usize, name: &'static str) -> Result<Self, InvalidClaim> {
        let Value::Object(object) = value else {
            return Err(InvalidClaim(name));
        };
        if depth >= MAX_ACTOR_DEPTH {
            return Err(InvalidClaim(name));
        }
        let act = match object.get("act") {
            None => None,
            Some(inner) => Some(Box::new(Actor::from_value(inner, depth + 1, name)?)),
        };
        Ok(Actor {
            sub: string_member(object, "sub").map_err(|_| InvalidClaim(name))?,
            iss: string_member(object, "iss").map_err(|_| InvalidClaim(name))?,
            client_id: string_member(object, "client_id").map_err(|_| InvalidClaim(name))?,
            act,
        })
    }

    /// The chain of subjects, current actor first.
    pub fn chain(&self) -> Vec<&str> {
        let mut subjects = Vec::new();
        let mut next = Some(self);
        while let Some(actor) = next {
            subjects.push(actor.sub.as_deref().unwrap_or("?"));
            next = actor.act.as_deref();
        }
        subjects
    }
}

/// A parsed claim set.
///
/// The registered claims that Baton decides on are typed (a wrong type is an
/// error, never a silent `None`); [`Claims::object`] keeps every member as
/// JSON for claim rules and forwarding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claims {
    /// Issuer.
    pub iss: Option<String>,
    /// Subject.
    pub sub: Option<String>,
    /// Audience(s).
    pub aud: Audience,
    /// Expiry, seconds since the epoch (fractions truncated).
    pub exp: Option<i64>,
    /// Not before.
    pub nbf: Option<i64>,
    /// Issued at.
    pub iat: Option<i64>,
    /// Token id.
    pub jti: Option<String>,
    /// Scopes from `scope` (space-separated string, RFC 8693 §4.2), or an
    /// array as some IdPs send.
    pub scope: Vec<String>,
    /// Scopes from `scp` (array, or a space-separated string as Entra sends).
    pub scp: Vec<String>,
    /// OAuth client the token was issued to (RFC 9068, RFC 8693 §4.3).
    pub client_id: Option<String>,
    /// Authorized party (OIDC).
    pub azp: Option<String>,
    /// Current actor and its chain (RFC 8693 §4.1).
    pub act: Option<Actor>,
    /// Who may act for the subject (RFC 8693 §4.4).
    pub may_act: Option<Actor>,
    /// Authentication context class (OIDC, RFC 9470).
    pub acr: Option<String>,
    /// Authentication methods.
    pub amr: Vec<String>,
    /// Time of the user's authentication (OIDC, RFC 9470 `max_age`).
    pub auth_time: Option<i64>,
    /// Confirmation (RFC 7800): proof-of-possession key binding.
    pub cnf: Option<Map<String, Value>>,
    object: Map<String, Value>,
}

/// The claim names with a typed field in [`Claims`].
pub const REGISTERED: [&str; 17] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "scp",
    "client_id",
    "azp",
    "act",
    "may_act",
    "acr",
    "amr",
    "auth_time",
    "cnf",
];

impl Claims {
    /// Reads a claim set from its (duplicate-free) JSON object.
    pub fn from_object(object: Map<String, Value>) -> Result<Self, InvalidClaim> {
        Ok(Claims {
            iss: string_member(&object, "iss")?,
            sub: string_member(&object, "sub")?,
            aud: audience(&object)?,
            exp: numeric_date(&object, "exp")?,
            nbf: numeric_date(&object, "nbf")?,
            iat: numeric_date(&object, "iat")?,
            jti: string_member(&object, "jti")?,
            scope: scope_list(&object, "scope")?,
            scp: scope_list(&object, "scp")?,
            client_id: string_member(&object, "client_id")?,
            azp: string_member(&object, "azp")?,
            act: actor(&object, "act")?,
            may_act: actor(&object, "may_act")?,
            acr: string_member(&object, "acr")?,
            amr: string_list(&object, "amr")?,
            auth_time: numeric_date(&object, "auth_time")?,
            cnf: match object.get("cnf") {
                None => None,
                Some(Value::Object(cnf)) => Some(cnf.clone()),
                Some(_) => return Err(InvalidClaim("cnf")),
            },
            object,
        })
    }

    /// Every claim, as received.
    pub fn object(&self) -> &Map<String, Value> {
        &self.object
    }

    /// A claim by top-level name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.object.get(name)
    }

    /// A claim by name, or by JSON Pointer (RFC 6901) when the selector starts
    /// with `/`, e.g. `/realm_access/roles`. (Not serde_json's
    /// `Value::pointer`: the claims are a map, and going through it cost each
    /// filter's `.wasm` 1.7 KB of string searching.)
    pub fn select(&self, selector: &str) -> Option<&Value> {
        if let Some(pointer) = selector.strip_prefix('/') {
            let mut segments = pointer.split('/');
            let first = unescape_pointer(segments.next()?);
            let mut current = self.object.get(first.as_str())?;
            for segment in segments {
                let segment = unescape_pointer(segment);
                current = match current {
                    Value::Object(map) => map.get(segment.as_str())?,
                    Value::Array(items) => items.get(array_index(&segment)?)?,
                    _ => return None,
                };
            }
            Some(current)
        } else {
            self.object.get(selector)
        }
    }

    /// All granted scopes: `scope` then `scp`.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.iter().chain(self.scp.iter()).map(String::as_str)
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|granted| granted == scope)
    }

    /// The OAuth client the token was issued to: `client_id`, else `azp`.
    pub fn client(&self) -> Option<&str> {
        self.client_id.as_deref().or(self.azp.as_deref())
    }
}

/// An array index as RFC 6901 §4 spells it: `0`, or digits without a
/// leading zero (so `01`, `+1` and ` 1` name no element, as in every other
/// JSON Pointer implementation, serde_json's included).
fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment == "0"
        || (segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() && !segment.starts_with('0'));
    if canonical { segment.parse().ok() } else { None }
}

fn unescape_pointer(segment: &str) -> String {
    if segment.contains('~') { segment.replace("~1", "/").replace("~0", "~") } else { segment.to_string() }
}

fn string_member(object: &Map<String, Value>, name: &'static str) -> Result<Option<String>, InvalidClaim> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(InvalidClaim(name)),
    }
}

fn string_list(object: &Map<String, Value>, name: &'static str) -> Result<Vec<String>, InvalidClaim> {
    match object.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(value) => Ok(value.clone()),
                _ => Err(InvalidClaim(name)),
            })
            .collect(),
        Some(_) => Err(InvalidClaim(name)),
    }
}

fn scope_list(object: &Map<String, Value>, name: &'static str) -> Result<Vec<String>, InvalidClaim> {
    match object.get(name) {
        Some(Value::String(value)) => {
            Ok(value.split(' ').filter(|s| !s.is_empty()).map(ToString::to_string).collect())
        }
        _ => string_list(object, name),
    }
}

fn audience(object: &Map<String, Value>) -> Result<Audience, InvalidClaim> {
    match object.get("aud") {
        None => Ok(Audience::Absent),
        Some(Value::String(aud)) => Ok(Audience::One(aud.clone())),
        Some(Value::Array(_)) => Ok(Audience::Many(string_list(object, "aud")?)),
        Some(_) => Err(InvalidClaim("aud")),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, fractions allowed.
fn numeric_date(object: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, InvalidClaim> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(whole) = number.as_i64() {
                Ok(Some(whole))
            } else if let Some(float) = number.as_f64() {
                if float.is_finite() && float.abs() < 1e15 {
                    // Truncation toward negative infinity keeps `exp` strict.
                    let whole = float as i64;
                    Ok(Some(if (whole as f64) > float { whole - 1 } else { whole }))
                } else {
                    Err(InvalidClaim(name))
                }
            } else {
                // A u64 above i64::MAX: no real date, refuse rather than wrap.
                Err(InvalidClaim(name))
            }
        }
        Some(_) => Err(InvalidClaim(name)),
    }
}

fn actor(object: &Map<String, Value>, name: &'static str) -> Result<Option<Actor>, InvalidClaim> {
    object.get(name).map(|value| Actor::from_value(value, 0, name)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    fn claims(json: &str) -> Result<Claims, InvalidClaim> {
        Claims::from_object(parse_object(json.as_bytes()).unwrap())
    }

    #[test]
    fn reads_registered_claims() {
        let c = claims(
            r#"{"iss":"https://idp","sub":"alice","aud":["api","ledger"],"exp":1700000300,
                "nbf":1700000000,"iat":1700000000.9,"jti":"j1","scope":"read  write",
                "scp":["admin"],"client_id":"app","azp":"web","acr":"mfa","amr":["pwd","otp"],
                "auth_time":1699999999,"cnf":{"jkt":"abc"},"tenant":"t1"}"#,
        )
        .unwrap();
        assert_eq!(c.iss.as_deref(), Some("https://idp"));
        assert!(c.aud.contains("ledger") && !c.aud.contains("other"));
        assert_eq!(c.exp, Some(1_700_000_300));
        assert_eq!(c.iat, Some(1_700_000_000));
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["read", "write", "admin"]);
        assert_eq!(c.amr, ["pwd", "otp"]);
        assert_eq!(c.client(), Some("app"));
        assert!(c.cnf.is_some());
        assert_eq!(c.get("tenant"), Some(&Value::String("t1".into())));
    }

    #[test]
    fn negative_fractional_dates_round_down() {
        assert_eq!(claims(r#"{"exp":-1.5}"#).unwrap().exp, Some(-2));
    }

    #[test]
    fn refuses_ill_typed_registered_claims() {
        assert_eq!(claims(r#"{"exp":"tomorrow"}"#), Err(InvalidClaim("exp")));
        assert_eq!(claims(r#"{"exp":1e300}"#), Err(InvalidClaim("exp")));
        assert_eq!(claims(r#"{"exp":18446744073709551615}"#), Err(InvalidClaim("exp")));
        assert_eq!(claims(r#"{"aud":7}"#), Err(InvalidClaim("aud")));
        assert_eq!(claims(r#"{"aud":["a",7]}"#), Err(InvalidClaim("aud")));
        assert_eq!(claims(r#"{"sub":{"id":1}}"#), Err(InvalidClaim("sub")));
        assert_eq!(claims(r#"{"act":"svc"}"#), Err(InvalidClaim("act")));
        assert_eq!(claims(r#"{"cnf":[1]}"#), Err(InvalidClaim("cnf")));
    }

    #[test]
    fn reads_nested_actor_chain() {
        let c = claims(r#"{"sub":"alice","act":{"sub":"portfolio","act":{"sub":"broker"}}}"#).unwrap();
        assert_eq!(c.act.unwrap().chain(), ["portfolio", "broker"]);
    }

    #[test]
    fn refuses_overly_deep_actor_chain() {
        let mut json = alloc::string::String::from(r#"{"act":"#);
        for _ in 0..MAX_ACTOR_DEPTH + 1 {
            json.push_str(r#"{"sub":"x","act":"#);
        }
        json.push_str("{}");
        for _ in 0..MAX_ACTOR_DEPTH + 1 {
            json.push('}');
        }
        json.push('}');
        assert_eq!(claims(&json), Err(InvalidClaim("act")));
    }

    #[test]
    fn selects_by_name_and_json_pointer() {
        let c =
            claims(r#"{"realm_access":{"roles":["admin"]},"a/b":{"c~d":1},"https://x/roles":"r"}"#).unwrap();
        assert_eq!(c.select("/realm_access/roles/0"), Some(&Value::String("admin".into())));
        assert_eq!(c.select("/a~1b/c~0d"), Some(&Value::from(1)));
        assert_eq!(c.select("https://x/roles"), Some(&Value::String("r".into())));
        assert_eq!(c.select("/realm_access/missing"), None);
        assert_eq!(c.select("/realm_access/roles/9"), None);
    }

    #[test]
    fn json_pointer_array_indexes_follow_rfc_6901() {
        // Found by fuzz/fuzz_targets/claim_rules.rs: "/roles/01" selected
        // roles[1], where RFC 6901 (and serde_json, which in-task-auth-code
        // uses for its message conditions) select nothing.
        let c = claims(r#"{"roles":["a","b","c","d","e","f","g","h","i","j","k"]}"#).unwrap();
        assert_eq!(c.select("/roles/1"), Some(&Value::String("b".into())));
        assert_eq!(c.select("/roles/10"), Some(&Value::String("k".into())));
        assert_eq!(c.select("/roles/0"), Some(&Value::String("a".into())));
        for not_an_index in ["01", "00", "+1", "-0", " 1", "1 ", "", "1e0", "0x1"] {
            assert_eq!(c.select(&alloc::format!("/roles/{not_an_index}")), None, "{not_an_index:?}");
        }
        let object = serde_json::json!({"roles": ["a", "b"]});
        for pointer in ["/roles/1", "/roles/01", "/roles/+1", "/roles/"] {
            assert_eq!(
                claims(&object.to_string()).unwrap().select(pointer),
                object.pointer(pointer),
                "{pointer}"
            );
        }
    }
}
