//! Token endpoint answers (RFC 6749 §5.1/§5.2, RFC 8693 §2.2): status,
//! expectation and body from the fuzzer; and the request side's form
//! encoding with fuzzed values.
//!
//! Input: byte 0 picks the status (index into `STATUSES`, or no response),
//! byte 1 the expectation (bit 0: token exchange; bits 1-2: the requested
//! token type), the rest is the body.
//!
//! Asserts: nothing panics; a token comes only from a 200 and is a
//! non-empty, header-safe string with type `Bearer` or `N_A`, a capped
//! lifetime, and the issued type the exchange asked for; it survives a
//! serialize/parse round trip unchanged; errors come from the right
//! statuses (`Rejected` only for 4xx but 429, `Unavailable` carries the
//! status, `InvalidResponse` only for 200) with a reason and a message;
//! in-task-auth-code's reading of a code exchange agrees with the parse.
//! Form encoding: any values decode back to exactly what was encoded, and
//! the HTTP Basic header decodes to the form-encoded id and secret.

use crate::fixtures::{NOW, in_task_config};
use crate::reference::{form_decode, standard_base64_decode};
use baton_filter_kit::test_host::TestHost;
use baton_token::oauth::{
    ClientAuth, Grant, MAX_EXPIRES_IN_SECS, OAuthErrorCode, ResponseExpectation, TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT, TokenEndpointError, TokenRequest, TokenResponse, form_urlencode,
};
use baton_token::secret::Secret;
use in_task_auth_code::decision::{Engine, ExchangeOutcome, code_exchange};
use serde_json::{Value, json};

const STATUSES: [u16; 16] = [200, 400, 401, 403, 404, 429, 500, 502, 503, 201, 204, 302, 418, 499, 599, 100];

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    let [selector, flags, body @ ..] = data else {
        return;
    };
    let status = STATUSES.get(usize::from(*selector) % (STATUSES.len() + 1)).copied();
    let requested = [None, Some(TOKEN_TYPE_ACCESS_TOKEN), Some(TOKEN_TYPE_JWT), Some(TOKEN_TYPE_ID_TOKEN)]
        [usize::from(flags >> 1 & 3)];
    let expect = ResponseExpectation { requested_token_type: requested, token_exchange: flags & 1 == 1 };

    let parsed = TokenResponse::parse(status, body, expect);
    assert_eq!(parsed, TokenResponse::parse(status, body, expect), "parsing is deterministic");
    match &parsed {
        Ok(response) => check_token(response, status, expect),
        Err(error) => check_error(error, status, body),
    }
    check_in_task_reading(status, body);
    check_form_encoding(body);
}

fn check_token(response: &TokenResponse, status: Option<u16>, expect: ResponseExpectation<'_>) {
    assert_eq!(status, Some(200));
    let token = response.access_token.expose();
    assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()), "{token:?}");
    assert!(response.token_type == "Bearer" || response.token_type == "N_A");
    assert!(response.expires_in.is_none_or(|seconds| seconds <= MAX_EXPIRES_IN_SECS));
    if expect.token_exchange {
        assert!(response.issued_token_type.is_some());
    }
    if let (Some(requested), Some(issued)) = (expect.requested_token_type, &response.issued_token_type) {
        assert_eq!(requested, issued);
    }
    // Written out again (as an IdP would), it reads the same.
    let mut again = json!({"access_token": token, "token_type": response.token_type});
    if let Some(issued) = &response.issued_token_type {
        again["issued_token_type"] = json!(issued);
    }
    if let Some(seconds) = response.expires_in {
        again["expires_in"] = json!(seconds);
    }
    if let Some(scope) = &response.scope {
        again["scope"] = json!(scope);
    }
    let text = serde_json::to_vec(&again).expect("serializes");
    assert_eq!(TokenResponse::parse(Some(200), &text, expect).as_ref(), Ok(response));
}

fn check_error(error: &TokenEndpointError, status: Option<u16>, body: &[u8]) {
    assert!(!error.reason().is_empty() && !error.to_string().is_empty());
    match error {
        TokenEndpointError::Rejected { code, status: got, description } => {
            // The IdP's description reaches logs: printable ASCII, capped.
            assert!(
                description
                    .as_ref()
                    .is_none_or(|text| text.len() <= 200
                        && text.bytes().all(|b| b.is_ascii() && !b.is_ascii_control())),
                "{description:?}"
            );
            assert_eq!(Some(*got), status);
            assert!((400..500).contains(got) && *got != 429, "{got}");
            let sent = serde_json::from_slice::<Value>(body).ok();
            let sent =
                sent.as_ref().and_then(|b| b.get("error")).and_then(Value::as_str).expect("an error code");
            match code {
                OAuthErrorCode::Other(kept) => {
                    assert!(kept.chars().count() <= 64);
                    assert!(sent.starts_with(kept.as_str()));
                }
                known => assert_eq!(known.as_str(), sent),
            }
        }
        TokenEndpointError::Unavailable { status: got } => assert_eq!(*got, status),
        TokenEndpointError::InvalidResponse(why) => {
            assert_eq!(status, Some(200));
            assert!(!why.is_empty());
        }
        other => panic!("unexpected error {other:?}"),
    }
}

/// in-task-auth-code turns the answer to its code exchange into a token, a
/// refusal (the code was bad: a new challenge) or unavailability (503).
fn check_in_task_reading(status: Option<u16>, body: &[u8]) {
    let engine = Engine::new(in_task_config());
    let host = TestHost::new(NOW);
    let call =
        code_exchange(&engine.config().idp, 0, "state", &Secret::new("code"), &Secret::new("v".repeat(43)));
    let outcome = engine.exchange_outcome(&host, &call, status, body);
    match (TokenResponse::parse(status, body, ResponseExpectation::default()), outcome) {
        (Ok(response), ExchangeOutcome::Token { access, id_token }) => {
            assert_eq!(access, response.access_token);
            assert_eq!(id_token, response.id_token);
        }
        // Only invalid_grant is the code's fault; the RFC's other codes are
        // the gateway's own (502), unknown codes unavailability (503).
        (
            Err(TokenEndpointError::Rejected { code: OAuthErrorCode::InvalidGrant, .. }),
            ExchangeOutcome::Refused(reason),
        ) => assert!(!reason.is_empty()),
        (Err(TokenEndpointError::Rejected { code, .. }), ExchangeOutcome::GatewayRefused(reason)) => {
            assert!(!matches!(code, OAuthErrorCode::InvalidGrant | OAuthErrorCode::Other(_)));
            assert!(!reason.is_empty());
        }
        (
            Err(TokenEndpointError::Rejected { code: OAuthErrorCode::Other(_), .. }),
            ExchangeOutcome::Unavailable(_),
        ) => {}
        (
            Err(TokenEndpointError::Unavailable { .. } | TokenEndpointError::InvalidResponse(_)),
            ExchangeOutcome::Unavailable(reason),
        ) => {
            assert!(!reason.is_empty());
        }
        (parsed, outcome) => panic!("in-task-auth-code read {parsed:?} as {outcome:?}"),
    }
}

/// The request side: fuzzed values in every form parameter and in the
/// client credentials.
fn check_form_encoding(body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    let (left, right) =
        text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    let request = TokenRequest {
        grant: Grant::TokenExchange {
            subject_token: Secret::new(left),
            subject_token_type: TOKEN_TYPE_ACCESS_TOKEN.into(),
            requested_token_type: None,
            actor: Some((Secret::new(right), TOKEN_TYPE_JWT.into())),
        },
        audiences: vec![left.to_string(), right.to_string()],
        resources: vec![text.to_string()],
        scope: Some(right.to_string()),
        extra: vec![(left.to_string(), right.to_string())],
    };
    let auth = ClientAuth::Basic { client_id: left.to_string(), secret: Secret::new(right) };
    let encoded = request.encode(&auth);
    let form = encoded.body.expose();
    assert!(
        form.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._*+%&=".contains(&b)),
        "only unreserved characters, escapes and separators: {form:?}"
    );
    let pairs = form_decode(form).expect("the body decodes");
    let expected: Vec<(String, String)> = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", left),
        ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN),
        ("actor_token", right),
        ("actor_token_type", TOKEN_TYPE_JWT),
        ("audience", left),
        ("audience", right),
        ("resource", &text),
        ("scope", right),
        (left, right),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(pairs, expected);

    // HTTP Basic (RFC 6749 §2.3.1): base64 of form-encoded id ":" secret.
    let header = encoded.authorization.expect("Basic");
    let b64 = header.expose().strip_prefix("Basic ").expect("Basic scheme");
    let raw = standard_base64_decode(b64).expect("standard padded base64");
    let raw = String::from_utf8(raw).expect("ASCII");
    let (id, secret) = raw.split_once(':').expect("id:secret");
    assert_eq!(form_decode(&format!("a={id}")), Some(vec![("a".into(), left.to_string())]));
    assert_eq!(form_decode(&format!("a={secret}")), Some(vec![("a".into(), right.to_string())]));
    assert_eq!(form_urlencode(&[("a", left)]), format!("a={id}"));
}
