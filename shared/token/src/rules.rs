//! Access rules on verified claims: scopes, claim conditions and step-up
//! (RFC 9470), and what to answer when they fail.
//!
//! Rules arrive as configuration (`*Spec` types, camelCase, unknown fields
//! refused) and are compiled once into checked values.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::Deserialize;
use serde_json::Value;

use crate::claims::Claims;

/// Required scopes. Both lists may be given; both must then hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopeRequirement {
    /// Every one of these scopes must be granted.
    #[serde(default)]
    pub all_of: Vec<String>,
    /// At least one of these scopes must be granted.
    #[serde(default)]
    pub any_of: Vec<String>,
}

impl ScopeRequirement {
    fn is_satisfied_by(&self, claims: &Claims) -> bool {
        self.all_of.iter().all(|scope| claims.has_scope(scope))
            && (self.any_of.is_empty() || self.any_of.iter().any(|scope| claims.has_scope(scope)))
    }

    /// The scopes to name in an `insufficient_scope` challenge.
    pub fn named(&self) -> impl Iterator<Item = &str> {
        self.all_of.iter().chain(self.any_of.iter()).map(String::as_str)
    }
}

/// Step-up requirement (RFC 9470): a strong enough and recent enough login.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepUpRequirement {
    /// `acr` must be one of these (when not empty).
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// `auth_time` must be at most this many seconds ago.
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
}

impl StepUpRequirement {
    fn is_satisfied_by(&self, claims: &Claims, now: u64) -> bool {
        let acr_ok = self.acr_values.is_empty()
            || claims.acr.as_ref().is_some_and(|acr| self.acr_values.contains(acr));
        let age_ok = match self.max_age_seconds {
            None => true,
            Some(max_age) => claims.auth_time.is_some_and(|auth_time| {
                // Exact: every u64 and i64 fits in i128, so no value is
                // clamped and no difference saturates.
                let (now, auth_time) = (i128::from(now), i128::from(auth_time));
                // An auth_time in the future is as untrustworthy as a stale one.
                auth_time <= now && now - auth_time <= i128::from(max_age)
            }),
        };
        acr_ok && age_ok
    }
}

/// One claim condition as configured: the claim and exactly one test.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimConditionSpec {
    /// Claim name, or a JSON Pointer (`/realm_access/roles`) into the claims.
    pub claim: String,
    /// The claim equals this JSON value (`null` included).
    #[serde(default, deserialize_with = "present_value")]
    pub equals: Option<Value>,
    /// The claim equals one of these values.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// The claim is an array containing this value (or equals it).
    #[serde(default, deserialize_with = "present_value")]
    pub contains: Option<Value>,
    /// The claim is present (`true`) or absent (`false`).
    #[serde(default)]
    pub present: Option<bool>,
}

/// Reads a member that is present, even when its value is `null`, as `Some`.
fn present_value<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// What a claim must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimTest {
    /// Exact JSON equality.
    Equals(Value),
    /// Equal to one of the values.
    OneOf(Vec<Value>),
    /// An array that contains the value; a single value counts as a
    /// one-element array (IdPs send `"groups": "admins"` for one group).
    Contains(Value),
    /// Present or absent.
    Present(bool),
}

/// A compiled claim condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimCondition {
    /// Claim name or JSON Pointer.
    pub claim: String,
    /// The test.
    pub test: ClaimTest,
}

/// Why a rule could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// `claim` is empty.
    EmptyClaim,
    /// Not exactly one of `equals`, `oneOf`, `contains`, `present`.
    TestCount {
        /// The claim concerned.
        claim: String,
    },
    /// `oneOf` is empty: the rule could never pass.
    EmptyOneOf {
        /// The claim concerned.
        claim: String,
    },
    /// A scope list holds an empty or space-containing scope.
    InvalidScope(String),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::EmptyClaim => f.write_str("claim must not be empty"),
            RuleError::TestCount { claim } => {
                write!(f, "condition on {claim:?} needs exactly one of equals, oneOf, contains, present")
            }
            RuleError::EmptyOneOf { claim } => write!(f, "condition on {claim:?} has an empty oneOf"),
            RuleError::InvalidScope(scope) => write!(f, "scope {scope:?} is empty or contains a space"),
        }
    }
}

impl TryFrom<ClaimConditionSpec> for ClaimCondition {
    type Error = RuleError;

    fn try_from(spec: ClaimConditionSpec) -> Result<Self, RuleError> {
        if spec.claim.is_empty() {
            return Err(RuleError::EmptyClaim);
        }
        let mut tests = Vec::new();
        if let Some(value) = spec.equals {
            tests.push(ClaimTest::Equals(value));
        }
        if let Some(values) = spec.one_of {
            if values.is_empty() {
                return Err(RuleError::EmptyOneOf { claim: spec.claim });
            }
            tests.push(ClaimTest::OneOf(values));
        }
        if let Some(value) = spec.contains {
            tests.push(ClaimTest::Contains(value));
        }
        if let Some(present) = spec.present {
            tests.push(ClaimTest::Present(present));
        }
        match (tests.pop(), tests.is_empty()) {
            (Some(test), true) => Ok(ClaimCondition { claim: spec.claim, test }),
            _ => Err(RuleError::TestCount { claim: spec.claim }),
        }
    }
}

impl ClaimCondition {
    /// Whether the claims satisfy this condition.
    pub fn is_satisfied_by(&self, claims: &Claims) -> bool {
        let value = claims.select(&self.claim);
        match (&self.test, value) {
            (ClaimTest::Present(expected), value) => value.is_some() == *expected,
            (_, None) => false,
            (ClaimTest::Equals(expected), Some(value)) => value == expected,
            (ClaimTest::OneOf(allowed), Some(value)) => allowed.contains(value),
            (ClaimTest::Contains(expected), Some(Value::Array(items))) => items.contains(expected),
            (ClaimTest::Contains(expected), Some(value)) => value == expected,
        }
    }
}

/// Everything a route requires of a verified token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessRequirement {
    /// Scopes.
    pub scopes: ScopeRequirement,
    /// Claim conditions, all of which must hold.
    pub claims: Vec<ClaimCondition>,
    /// Step-up.
    pub step_up: Option<StepUpRequirement>,
}

/// The outcome of applying an [`AccessRequirement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDecision {
    /// Every requirement holds.
    Granted,
    /// Scopes are missing: 403 `insufficient_scope`.
    InsufficientScope,
    /// A claim condition failed: 403 `insufficient_scope`.
    ClaimMismatch {
        /// The claim whose condition failed (a name from configuration).
        claim: String,
    },
    /// The login is too weak or too old: 401 `insufficient_user_authentication`.
    StepUpRequired,
}

impl AccessDecision {
    /// A short, stable label for metrics and audit lines.
    pub fn reason(&self) -> &'static str {
        match self {
            AccessDecision::Granted => "granted",
            AccessDecision::InsufficientScope => "insufficient_scope",
            AccessDecision::ClaimMismatch { .. } => "claim_mismatch",
            AccessDecision::StepUpRequired => "step_up_required",
        }
    }

    /// A description for the challenge and error body.
    pub fn description(&self) -> String {
        match self {
            AccessDecision::Granted => String::from("granted"),
            AccessDecision::InsufficientScope => String::from("token lacks a required scope"),
            AccessDecision::ClaimMismatch { claim } => {
                format!("token claim {claim} does not satisfy the route policy")
            }
            AccessDecision::StepUpRequired => {
                String::from("a stronger or more recent authentication is required")
            }
        }
    }
}

impl AccessRequirement {
    /// Compiles scope lists, claim conditions and step-up from configuration.
    pub fn compile(
        scopes: ScopeRequirement,
        claims: Vec<ClaimConditionSpec>,
        step_up: Option<StepUpRequirement>,
    ) -> Result<Self, RuleError> {
        for scope in scopes.named() {
            if scope.is_empty() || scope.contains(' ') {
                return Err(RuleError::InvalidScope(String::from(scope)));
            }
        }
        let claims = claims.into_iter().map(ClaimCondition::try_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { scopes, claims, step_up })
    }

    /// Applies the requirement. Scopes and claims are checked before step-up:
    /// when a token lacks a scope, a fresh login would not help, so the
    /// client is told the final answer (403) rather than sent to log in again.
    pub fn evaluate(&self, claims: &Claims, now: u64) -> AccessDecision {
        if !self.scopes.is_satisfied_by(claims) {
            return AccessDecision::InsufficientScope;
        }
        if let Some(failed) = self.claims.iter().find(|condition| !condition.is_satisfied_by(claims)) {
            return AccessDecision::ClaimMismatch { claim: failed.claim.clone() };
        }
        if let Some(step_up) = &self.step_up
            && !step_up.is_satisfied_by(claims, now)
        {
            return AccessDecision::StepUpRequired;
        }
        AccessDecision::Granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;
    use alloc::string::ToString;
    use alloc::vec;

    const NOW: u64 = 1_800_000_000;

    fn claims(json: &str) -> Claims {
        Claims::from_object(parse_object(json.as_bytes()).unwrap()).unwrap()
    }

    fn spec(json: &str) -> ClaimConditionSpec {
        serde_json::from_str(json).unwrap()
    }

    fn scopes(all: &[&str], any: &[&str]) -> ScopeRequirement {
        ScopeRequirement {
            all_of: all.iter().map(|s| s.to_string()).collect(),
            any_of: any.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn scopes_all_of_and_any_of_across_scope_and_scp() {
        let c = claims(r#"{"scope":"read write","scp":["admin"]}"#);
        let rule =
            |all: &[&str], any: &[&str]| AccessRequirement::compile(scopes(all, any), vec![], None).unwrap();
        assert_eq!(rule(&["read", "admin"], &[]).evaluate(&c, NOW), AccessDecision::Granted);
        assert_eq!(rule(&["read", "delete"], &[]).evaluate(&c, NOW), AccessDecision::InsufficientScope);
        assert_eq!(rule(&[], &["delete", "write"]).evaluate(&c, NOW), AccessDecision::Granted);
        assert_eq!(rule(&[], &["delete", "purge"]).evaluate(&c, NOW), AccessDecision::InsufficientScope);
        assert_eq!(rule(&["read"], &["purge"]).evaluate(&c, NOW), AccessDecision::InsufficientScope);
        // Scope names are whole words: "rea" is not granted by "read".
        assert_eq!(rule(&["rea"], &[]).evaluate(&c, NOW), AccessDecision::InsufficientScope);
    }

    #[test]
    fn claim_conditions() {
        let c = claims(
            r#"{"tenant":"acme","roles":["trader","viewer"],"group":"ops","level":3,"org":{"id":"o1"}}"#,
        );
        let check = |json: &str| ClaimCondition::try_from(spec(json)).unwrap().is_satisfied_by(&c);
        assert!(check(r#"{"claim":"tenant","equals":"acme"}"#));
        assert!(!check(r#"{"claim":"tenant","equals":"evil"}"#));
        assert!(check(r#"{"claim":"level","equals":3}"#));
        assert!(!check(r#"{"claim":"level","equals":"3"}"#));
        assert!(check(r#"{"claim":"tenant","oneOf":["x","acme"]}"#));
        assert!(!check(r#"{"claim":"roles","oneOf":["trader"]}"#));
        assert!(check(r#"{"claim":"roles","contains":"trader"}"#));
        assert!(!check(r#"{"claim":"roles","contains":"admin"}"#));
        assert!(check(r#"{"claim":"group","contains":"ops"}"#));
        assert!(check(r#"{"claim":"/org/id","equals":"o1"}"#));
        assert!(check(r#"{"claim":"tenant","present":true}"#));
        assert!(check(r#"{"claim":"impersonator","present":false}"#));
        assert!(!check(r#"{"claim":"missing","equals":null}"#));
    }

    #[test]
    fn condition_specs_are_checked() {
        assert_eq!(ClaimCondition::try_from(spec(r#"{"claim":""}"#)), Err(RuleError::EmptyClaim));
        assert!(matches!(
            ClaimCondition::try_from(spec(r#"{"claim":"a"}"#)),
            Err(RuleError::TestCount { .. })
        ));
        assert!(matches!(
            ClaimCondition::try_from(spec(r#"{"claim":"a","equals":1,"present":true}"#)),
            Err(RuleError::TestCount { .. })
        ));
        assert!(matches!(
            ClaimCondition::try_from(spec(r#"{"claim":"a","oneOf":[]}"#)),
            Err(RuleError::EmptyOneOf { .. })
        ));
        assert!(serde_json::from_str::<ClaimConditionSpec>(r#"{"claim":"a","equal":1}"#).is_err());
        assert!(matches!(
            AccessRequirement::compile(scopes(&["a b"], &[]), vec![], None),
            Err(RuleError::InvalidScope(_))
        ));
    }

    #[test]
    fn step_up_acr_and_max_age() {
        let step_up =
            StepUpRequirement { acr_values: vec!["mfa".into(), "hwk".into()], max_age_seconds: Some(300) };
        let rule = AccessRequirement::compile(ScopeRequirement::default(), vec![], Some(step_up)).unwrap();
        let at = |acr: &str, auth_time: u64| {
            claims(&alloc::format!(r#"{{"acr":"{acr}","auth_time":{auth_time}}}"#))
        };
        assert_eq!(rule.evaluate(&at("mfa", NOW - 300), NOW), AccessDecision::Granted);
        assert_eq!(rule.evaluate(&at("mfa", NOW - 301), NOW), AccessDecision::StepUpRequired);
        assert_eq!(rule.evaluate(&at("pwd", NOW - 10), NOW), AccessDecision::StepUpRequired);
        assert_eq!(rule.evaluate(&at("mfa", NOW + 100), NOW), AccessDecision::StepUpRequired);
        assert_eq!(rule.evaluate(&claims(r#"{"acr":"mfa"}"#), NOW), AccessDecision::StepUpRequired);
    }

    #[test]
    fn step_up_age_is_exact_at_the_extremes() {
        // Found by fuzz/fuzz_targets/claim_rules.rs: the age saturated at
        // i64::MAX, so an auth_time of i64::MIN passed a max_age of i64::MAX.
        let rule = |max_age| {
            AccessRequirement::compile(
                ScopeRequirement::default(),
                vec![],
                Some(StepUpRequirement { acr_values: vec![], max_age_seconds: Some(max_age) }),
            )
            .unwrap()
        };
        let oldest = claims(r#"{"auth_time":-9223372036854775808}"#);
        assert_eq!(rule(i64::MAX as u64).evaluate(&oldest, NOW), AccessDecision::StepUpRequired);
        assert_eq!(rule(u64::MAX).evaluate(&oldest, NOW), AccessDecision::Granted);
        let newest = claims(r#"{"auth_time":9223372036854775807}"#);
        assert_eq!(rule(0).evaluate(&newest, i64::MAX as u64), AccessDecision::Granted);
        assert_eq!(rule(u64::MAX).evaluate(&newest, i64::MAX as u64 - 1), AccessDecision::StepUpRequired);
        assert_eq!(rule(0).evaluate(&claims(r#"{"auth_time":0}"#), u64::MAX), AccessDecision::StepUpRequired);
        assert_eq!(rule(u64::MAX).evaluate(&claims(r#"{"auth_time":0}"#), u64::MAX), AccessDecision::Granted);
    }

    #[test]
    fn scope_failure_wins_over_step_up() {
        let rule = AccessRequirement::compile(
            scopes(&["transfer"], &[]),
            vec![],
            Some(StepUpRequirement { acr_values: vec!["mfa".into()], max_age_seconds: None }),
        )
        .unwrap();
        assert_eq!(rule.evaluate(&claims(r#"{"acr":"pwd"}"#), NOW), AccessDecision::InsufficientScope);
        assert_eq!(
            rule.evaluate(&claims(r#"{"acr":"pwd","scope":"transfer"}"#), NOW),
            AccessDecision::StepUpRequired
        );
    }
}
