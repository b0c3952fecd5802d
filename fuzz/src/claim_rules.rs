//! Claim rules: a route requirement compiled from fuzzed configuration JSON
//! (`{"scopes": …, "claims": […], "stepUp": …}`, as claim-enforcement and
//! in-task-auth-code read it), evaluated against a fuzzed claim set.
//!
//! Input: `requirement JSON \0 claims JSON \0 now (decimal)`.
//!
//! Asserts: nothing panics; compiling refuses exactly what a reference
//! reading of the rules refuses; evaluation is deterministic, does not
//! change when a claim set without floats is serialized and read again, and
//! equals a reference evaluation written from the documentation (scopes from
//! `scope` and `scp`, claims selected by name or RFC 6901 JSON Pointer, `acr`
//! and `auth_time` with exact arithmetic); the decision's reason and
//! description are never empty.

use crate::fixtures::NOW;
use crate::{fields, has_float};
use baton_token::claims::Claims;
use baton_token::json;
use baton_token::rules::{
    AccessDecision, AccessRequirement, ClaimConditionSpec, RuleError, ScopeRequirement, StepUpRequirement,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A route's `require` object, as the filters' configurations spell it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Require {
    #[serde(default)]
    scopes: ScopeRequirement,
    #[serde(default)]
    claims: Vec<ClaimConditionSpec>,
    #[serde(default)]
    step_up: Option<StepUpRequirement>,
}

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    let parts = fields(data, 3);
    let Ok(require) = serde_json::from_slice::<Require>(parts[0]) else {
        return;
    };
    // The host clock, seconds since the epoch: any u64.
    let now = parts
        .get(2)
        .and_then(|text| std::str::from_utf8(text).ok())
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(NOW);

    let compiled =
        AccessRequirement::compile(require.scopes.clone(), require.claims.clone(), require.step_up.clone());
    let expected_error = reference_compile_error(&require);
    let requirement = match (compiled, expected_error) {
        (Ok(requirement), None) => requirement,
        (Err(error), Some(expected)) => {
            assert_eq!(error, expected);
            assert!(!error.to_string().is_empty());
            return;
        }
        (got, expected) => panic!("compile: got {got:?}, reference {expected:?}"),
    };

    let Some(claims_json) = parts.get(1) else {
        return;
    };
    let Ok(object) = json::parse_object(claims_json) else {
        return;
    };
    let Ok(claims) = Claims::from_object(object.clone()) else {
        return;
    };

    let decision = requirement.evaluate(&claims, now);
    assert_eq!(decision, requirement.evaluate(&claims, now), "evaluation is deterministic");
    assert!(!decision.reason().is_empty() && !decision.description().is_empty());

    // Only float-free claim sets are compared after a round trip (see
    // has_float). Baton never re-serializes claims it decides on: the
    // shared cache keeps the payload as received.
    if !has_float(&Value::Object(object.clone())) {
        let text = serde_json::to_vec(claims.object()).expect("claims serialize");
        let reread = Claims::from_object(json::parse_object(&text).expect("serialized claims parse"))
            .expect("serialized claims are valid");
        assert_eq!(reread, claims);
        assert_eq!(requirement.evaluate(&reread, now), decision, "a serialized claim set decides the same");
    }

    assert_eq!(decision, reference_evaluate(&require, &object, &claims, now), "requirement: {require:?}");
}

fn reference_compile_error(require: &Require) -> Option<RuleError> {
    let scopes = require.scopes.all_of.iter().chain(require.scopes.any_of.iter());
    if let Some(bad) = scopes.into_iter().find(|scope| scope.is_empty() || scope.contains(' ')) {
        return Some(RuleError::InvalidScope(bad.clone()));
    }
    for spec in &require.claims {
        if spec.claim.is_empty() {
            return Some(RuleError::EmptyClaim);
        }
        if spec.one_of.as_ref().is_some_and(Vec::is_empty) {
            return Some(RuleError::EmptyOneOf { claim: spec.claim.clone() });
        }
        let tests = usize::from(spec.equals.is_some())
            + usize::from(spec.one_of.is_some())
            + usize::from(spec.contains.is_some())
            + usize::from(spec.present.is_some());
        if tests != 1 {
            return Some(RuleError::TestCount { claim: spec.claim.clone() });
        }
    }
    None
}

/// Scopes granted by one claim: a space-separated string or an array of strings.
fn granted(object: &Map<String, Value>, name: &str) -> Vec<String> {
    match object.get(name) {
        Some(Value::String(text)) => text.split(' ').filter(|s| !s.is_empty()).map(String::from).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(String::from).collect(),
        _ => Vec::new(),
    }
}

/// A claim by name, or by JSON Pointer (RFC 6901, serde_json's reading).
fn select<'a>(object: &'a Map<String, Value>, whole: &'a Value, selector: &str) -> Option<&'a Value> {
    if selector.starts_with('/') { whole.pointer(selector) } else { object.get(selector) }
}

fn reference_evaluate(
    require: &Require,
    object: &Map<String, Value>,
    claims: &Claims,
    now: u64,
) -> AccessDecision {
    let scopes: Vec<String> = [granted(object, "scope"), granted(object, "scp")].concat();
    let has = |scope: &String| scopes.contains(scope);
    let any_of = &require.scopes.any_of;
    if !require.scopes.all_of.iter().all(has) || !(any_of.is_empty() || any_of.iter().any(has)) {
        return AccessDecision::InsufficientScope;
    }

    let whole = Value::Object(object.clone());
    for spec in &require.claims {
        let value = select(object, &whole, &spec.claim);
        let holds = if let Some(present) = spec.present {
            value.is_some() == present
        } else if let Some(expected) = &spec.equals {
            value == Some(expected)
        } else if let Some(allowed) = &spec.one_of {
            value.is_some_and(|value| allowed.contains(value))
        } else if let Some(expected) = &spec.contains {
            match value {
                Some(Value::Array(items)) => items.contains(expected),
                other => other == Some(expected),
            }
        } else {
            unreachable!("compiled conditions have one test")
        };
        if !holds {
            return AccessDecision::ClaimMismatch { claim: spec.claim.clone() };
        }
    }

    if let Some(step_up) = &require.step_up {
        let acr = object.get("acr").and_then(Value::as_str);
        let acr_ok = step_up.acr_values.is_empty()
            || acr.is_some_and(|acr| step_up.acr_values.iter().any(|v| v == acr));
        let age_ok = match step_up.max_age_seconds {
            None => true,
            Some(max_age) => claims.auth_time.is_some_and(|auth_time| {
                let (now, auth_time, max_age) = (i128::from(now), i128::from(auth_time), i128::from(max_age));
                auth_time <= now && now - auth_time <= max_age
            }),
        };
        if !(acr_ok && age_ok) {
            return AccessDecision::StepUpRequired;
        }
    }
    AccessDecision::Granted
}
