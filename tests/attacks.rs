//! The JWT attack catalog, run inside a real Envoy against every place a
//! Baton filter accepts a token: claim-enforcement's bearer token,
//! obo-credential-injection's subject token, and a bank token handed to
//! in-task-auth-code in an A2A message. Each row names the RFC 8725 section
//! or the known vulnerability class it covers, and must be refused with its
//! status and error, reach no upstream, cost no token-endpoint call, and
//! make no request to any address a token names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/bank.rs"]
mod bank;
#[path = "common/support.rs"]
mod support;

use std::io::ErrorKind;
use std::net::TcpListener;

use baton_harness::{Envoy, EnvoySpec, body_json};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse};
use mock_idp::{DEMO_BROKER_SECRET, Endpoint, MockIdp, SigningKey, b64url, now_secs};
use serde_json::{Value, json};
use support::*;

/// One attack: a credential and what it must get.
struct Attack {
    name: String,
    /// The RFC 8725 section or vulnerability class it covers.
    covers: &'static str,
    /// The token as sent (after `Bearer `).
    token: String,
    /// The OAuth error code the refusal carries.
    error: &'static str,
}

/// Where tokens in the catalog point an unwary verifier: a listener that
/// must never be connected to.
struct Trap {
    listener: TcpListener,
    url: String,
}

impl Trap {
    fn new() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        Trap { listener, url }
    }

    fn connections(&self) -> usize {
        let mut count = 0;
        loop {
            match self.listener.accept() {
                Ok(_) => count += 1,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return count,
                Err(error) => panic!("trap listener: {error}"),
            }
        }
    }
}

/// `segment1.segment2` signed with `key` over exactly those bytes.
fn sign_segments(key: &SigningKey, header_segment: &str, payload_segment: &str) -> String {
    let input = format!("{header_segment}.{payload_segment}");
    format!("{input}.{}", b64url(&key.sign_bytes(input.as_bytes())))
}

/// Raw header and payload bytes, encoded canonically and signed with `key`.
fn sign_raw(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    sign_segments(key, &b64url(header), &b64url(payload))
}

/// A payload whose canonical base64url has a `-` or `_` (so the standard
/// alphabet spells it differently) and whose length leaves unused bits.
fn awkward_payload(claims: &Value) -> Vec<u8> {
    for pad in 0..512 {
        let mut claims = claims.clone();
        claims["pad"] = json!("~".repeat(pad % 7) + &"?".repeat(pad / 7));
        let bytes = claims.to_string().into_bytes();
        let encoded = b64url(&bytes);
        if (encoded.contains('-') || encoded.contains('_')) && encoded.len() % 4 == 2 {
            return bytes;
        }
    }
    panic!("no awkward payload found");
}

/// The same 6-bit value with its unused low bits set: decodes to the same
/// bytes in a lax decoder, so only a canonical check refuses it.
fn with_dirty_trailing_bits(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(segment.len() % 4, 2, "one trailing byte: four unused bits");
    let last = segment.as_bytes()[segment.len() - 1];
    let value = ALPHABET.iter().position(|c| *c == last).unwrap();
    let dirty = ALPHABET[value | 0b0101] as char;
    assert_ne!(dirty as u8, last);
    format!("{}{dirty}", &segment[..segment.len() - 1])
}

/// The catalog for tokens that `idp` issues for `audience`.
fn catalog(idp: &MockIdp, audience: &str, claims: &Value, trap: &Trap) -> Vec<Attack> {
    let now = now_secs();
    let es256 = idp.active_key("ES256").unwrap();
    let kid = es256.kid().to_string();
    let header = json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"});
    let valid = idp.mint(claims.clone());
    let segments: Vec<&str> = valid.split('.').collect();
    let (header_b64, payload_b64, signature_b64) = (segments[0], segments[1], segments[2]);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut changed = claims.clone();
        change(&mut changed);
        idp.mint(changed)
    };
    let with_header = |overrides: Value| idp.mint_with("ES256", overrides, claims.clone()).unwrap();
    // A key the IdP never published, reusing the real kid.
    let stranger = SigningKey::es256(&kid).unwrap();
    let attacker = SigningKey::es256("attacker").unwrap();
    let attacker_signed = |header: Value| attacker.sign_compact(&header, claims);
    let claims_text = claims.to_string();

    let mut attacks = Vec::new();
    let mut add = |name: &str, covers: &'static str, token: String, error: &'static str| {
        attacks.push(Attack { name: name.to_string(), covers, token, error });
    };

    for alg in ["none", "None", "NONE", "nOnE"] {
        let unsigned =
            format!("{}.{payload_b64}.", b64url(json!({"alg": alg, "typ": "at+jwt"}).to_string().as_bytes()));
        add(&format!("alg {alg}"), "RFC 8725 §2.1, §3.1 (CVE-2015-9235 class)", unsigned, "invalid_token");
    }
    let confusion = json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"});
    add(
        "HS256 keyed with the ES256 public key (PEM)",
        "RFC 8725 §2.1, §3.1 algorithm confusion (CVE-2016-10555 class)",
        mock_idp::sign_hs256(es256.public_key_pem().as_bytes(), &confusion, claims),
        "invalid_token",
    );
    add(
        "HS256 keyed with the ES256 public key (DER)",
        "RFC 8725 §2.1, §3.1 algorithm confusion",
        mock_idp::sign_hs256(es256.public_key_der(), &confusion, claims),
        "invalid_token",
    );
    if let Some(rsa) = idp.active_key("RS256") {
        let confusion = json!({"alg": "HS256", "kid": rsa.kid(), "typ": "at+jwt"});
        add(
            "HS256 keyed with the RSA public key (PEM)",
            "RFC 8725 §2.1, §3.1 algorithm confusion (CVE-2016-10555 class)",
            mock_idp::sign_hs256(rsa.public_key_pem().as_bytes(), &confusion, claims),
            "invalid_token",
        );
    }
    add(
        "signature stripped, dot kept",
        "RFC 8725 §3.1",
        format!("{header_b64}.{payload_b64}."),
        "invalid_token",
    );
    add("signature segment missing", "RFC 7515 §7.1", format!("{header_b64}.{payload_b64}"), "invalid_token");
    add(
        "signature from another key with the same kid",
        "RFC 8725 §3.1",
        stranger.sign_compact(&header, claims),
        "invalid_token",
    );
    let mut elevated = claims.clone();
    elevated["sub"] = json!("admin");
    add(
        "payload tampered after signing",
        "RFC 7515 §5.2",
        format!("{header_b64}.{}.{signature_b64}", b64url(elevated.to_string().as_bytes())),
        "invalid_token",
    );
    add(
        "signature of another token spliced on",
        "RFC 7515 §5.2",
        format!(
            "{header_b64}.{payload_b64}.{}",
            with(&|c| c["jti"] = json!("other")).split('.').nth(2).unwrap()
        ),
        "invalid_token",
    );
    for (name, bad_kid) in [
        ("kid of no published key", "no-such-key"),
        ("kid path traversal", "../../../../../../dev/null"),
        ("kid SQL-like", "x' UNION SELECT 'secret' --"),
        ("kid with CR LF", "k1\r\nx-injected: 1"),
    ] {
        add(
            name,
            "RFC 8725 §3.10 (kid injection class, e.g. CVE-2018-1000531)",
            attacker_signed(json!({"alg": "ES256", "kid": bad_kid, "typ": "at+jwt"})),
            "invalid_token",
        );
    }
    add(
        "jku to an attacker's key set",
        "RFC 8725 §3.10, jku/x5u spoofing (SSRF class)",
        attacker_signed(json!({"alg": "ES256", "kid": "attacker", "typ": "at+jwt", "jku": trap.url})),
        "invalid_token",
    );
    add(
        "x5u to an attacker's certificate",
        "RFC 8725 §3.10, SSRF class",
        attacker_signed(json!({"alg": "ES256", "kid": "attacker", "typ": "at+jwt", "x5u": trap.url})),
        "invalid_token",
    );
    add(
        "embedded jwk of the attacker's key",
        "RFC 8725 §3.10 (CVE-2018-0114 class)",
        attacker_signed(json!({"alg": "ES256", "typ": "at+jwt", "jwk": attacker.public_jwk()})),
        "invalid_token",
    );
    add(
        "embedded jwk of the attacker's key, real kid",
        "RFC 8725 §3.10 (CVE-2018-0114 class)",
        attacker_signed(json!({"alg": "ES256", "kid": kid, "typ": "at+jwt", "jwk": attacker.public_jwk()})),
        "invalid_token",
    );
    add(
        "crit names an unknown extension",
        "RFC 7515 §4.1.11",
        with_header(json!({"crit": ["baton-unknown"], "baton-unknown": true})),
        "invalid_token",
    );
    add("expired", "RFC 7519 §4.1.4", with(&|c| c["exp"] = json!(now - 600)), "invalid_token");
    add("nbf in the future", "RFC 7519 §4.1.5", with(&|c| c["nbf"] = json!(now + 3600)), "invalid_token");
    add(
        "iat far in the future",
        "RFC 8725 §3.10 (forged clock)",
        with(&|c| c["iat"] = json!(now + 86_400)),
        "invalid_token",
    );
    add("wrong iss", "RFC 8725 §3.8", with(&|c| c["iss"] = json!("https://evil.example")), "invalid_token");
    add("wrong aud", "RFC 8725 §3.9", with(&|c| c["aud"] = json!("someone-else")), "invalid_token");
    add(
        "aud array without ours",
        "RFC 8725 §3.9",
        with(&|c| c["aud"] = json!(["someone-else", format!("{audience}-x"), audience.to_uppercase()])),
        "invalid_token",
    );
    add(
        "exp missing",
        "RFC 8725 §3.10 (tokens that never expire)",
        with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        "invalid_token",
    );
    add(
        "exp as a string",
        "RFC 7519 §2 NumericDate",
        with(&|c| c["exp"] = json!((now + 300).to_string())),
        "invalid_token",
    );
    add(
        "typ JWT where at+jwt is required",
        "RFC 8725 §3.11, RFC 9068 §4",
        with_header(json!({"typ": "JWT"})),
        "invalid_token",
    );
    add(
        "typ missing where at+jwt is required",
        "RFC 8725 §3.11",
        with_header(json!({"typ": null})),
        "invalid_token",
    );
    add(
        "duplicate alg in the header",
        "RFC 7515 §4, RFC 8725 §3.4 (parser differential)",
        sign_raw(
            &es256,
            format!(r#"{{"alg":"none","kid":"{kid}","typ":"at+jwt","alg":"ES256"}}"#).as_bytes(),
            claims_text.as_bytes(),
        ),
        "invalid_token",
    );
    add(
        "duplicate sub in the payload",
        "RFC 7519 §4, RFC 8725 §3.4 (parser differential)",
        sign_raw(
            &es256,
            header.to_string().as_bytes(),
            format!(r#"{},"sub":"admin"}}"#, &claims_text[..claims_text.len() - 1]).as_bytes(),
        ),
        "invalid_token",
    );
    let awkward = awkward_payload(claims);
    let canonical = b64url(&awkward);
    add(
        "payload in the standard base64 alphabet",
        "RFC 7515 §2 (base64url only; non-canonical encodings)",
        sign_segments(&es256, header_b64, &canonical.replace('-', "+").replace('_', "/")),
        "invalid_token",
    );
    add(
        "payload with base64 padding",
        "RFC 7515 §2 (no padding)",
        sign_segments(&es256, header_b64, &format!("{canonical}==")),
        "invalid_token",
    );
    add(
        "payload with non-zero unused bits",
        "RFC 4648 §3.5 (canonical encoding)",
        sign_segments(&es256, header_b64, &with_dirty_trailing_bits(&canonical)),
        "invalid_token",
    );
    add(
        "five segments (JWE-shaped)",
        "RFC 8725 §3.2 (JWS/JWE confusion)",
        format!("{}.{payload_b64}.aXY.Y2lwaGVy.dGFn", b64url(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)),
        "invalid_token",
    );
    add("four segments", "RFC 7515 §7.1", format!("{valid}.{signature_b64}"), "invalid_token");
    add(
        "oversized (20 KiB, signed by the IdP)",
        "RFC 8725 §3.10 (resource exhaustion)",
        with(&|c| c["blob"] = json!("A".repeat(20 * 1024))),
        "invalid_token",
    );
    add(
        "huge claim array (attacker-signed)",
        "RFC 8725 §3.10 (resource exhaustion before the signature check)",
        attacker.sign_compact(&json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"}), &{
            let mut huge = claims.clone();
            huge["roles"] = json!((0..3000).collect::<Vec<u32>>());
            huge
        }),
        "invalid_token",
    );
    let nested = format!(
        r#"{},"deep":{}{}}}"#,
        &claims_text[..claims_text.len() - 1],
        "[".repeat(4000),
        "]".repeat(4000)
    );
    add(
        "deeply nested JSON (4000 levels, signed by the IdP)",
        "RFC 8725 §3.10 (parser stack exhaustion)",
        sign_raw(&es256, header.to_string().as_bytes(), nested.as_bytes()),
        "invalid_token",
    );
    let mut not_utf8 = claims_text.clone().into_bytes();
    let at = not_utf8.len() - 1;
    not_utf8.splice(at..at, br#","name":"al"#.iter().copied().chain([0xff, 0xfe]).chain(*br#"ce""#));
    add(
        "payload not UTF-8 (signed by the IdP)",
        "RFC 7519 §7.2 (claims are UTF-8 JSON)",
        sign_raw(&es256, header.to_string().as_bytes(), &not_utf8),
        "invalid_token",
    );
    add(
        "header with an overlong UTF-8 sequence (signed by the IdP)",
        "RFC 7515 §5.2 step 4",
        sign_raw(
            &es256,
            &[
                br#"{"alg":"ES256","kid":""#.as_slice(),
                kid.as_bytes(),
                &[0xc0, 0xaf],
                br#"","typ":"at+jwt"}"#,
            ]
            .concat(),
            claims_text.as_bytes(),
        ),
        "invalid_token",
    );
    add("empty token", "RFC 6750 §2.1", String::new(), "invalid_request");
    attacks
}

/// Checks a refusal's status and challenge; returns why it is wrong, if it is.
fn refusal_problem(response: &ClientResponse, error: &str) -> Option<String> {
    let status = if error == "invalid_request" { 400 } else { 401 };
    let challenge = response.header("www-authenticate").unwrap_or_default();
    if response.status != status || !challenge.contains(&format!(r#"error="{error}""#)) {
        return Some(format!("got {} {challenge:?}: {}", response.status, response.body_str()));
    }
    None
}

/// Runs `attacks` through `send`; panics listing every row that was not
/// refused as it should be, and prints the tally.
fn run(filter: &str, attacks: &[Attack], send: impl Fn(&Attack) -> Option<String>) {
    let failures: Vec<String> = attacks
        .iter()
        .filter_map(|attack| {
            send(attack).map(|problem| format!("{} [{}]: {problem}", attack.name, attack.covers))
        })
        .collect();
    println!("{filter}: {} attacks, {} rejected", attacks.len(), attacks.len() - failures.len());
    assert!(failures.is_empty(), "{filter}: not refused as expected:\n{}", failures.join("\n"));
}

fn assert_no_token_leak(envoy: &Envoy, attacks: &[Attack]) {
    let logs = envoy.logs();
    for attack in attacks {
        if let Some(signature) = attack.token.split('.').nth(2).filter(|s| s.len() > 16) {
            assert!(!logs.contains(signature), "{}: the token reached the log", attack.name);
        }
    }
}

#[test]
fn claim_enforcement_refuses_every_attack() {
    let idp = idp();
    let backend = backend();
    let trap = Trap::new();
    let mut config = ce_config(&idp);
    config["providers"][0]["requiredTyp"] = json!("at+jwt");
    let envoy = envoy_with(config, &idp, &backend, 1);
    let attacks = catalog(&idp, AUDIENCE, &claims(&idp, "alice"), &trap);
    run("claim-enforcement", &attacks, |attack| {
        let response = envoy.get_with_token("/orders", &attack.token);
        refusal_problem(&response, attack.error)
    });

    // A 64 KiB token: Envoy's own header limit (60 KiB) refuses it first.
    let huge = "A".repeat(64 * 1024);
    assert_eq!(envoy.get_with_token("/orders", &huge).status, 431);

    assert!(backend.requests().is_empty(), "a refused request reached the backend");
    assert_eq!(trap.connections(), 0, "a token made the filter call the address it named");
    assert_eq!(envoy.counter("baton_ce.allowed"), 0);
    assert_no_token_leak(&envoy, &attacks);
    // Still serving, and the valid token passes.
    let valid = idp.mint(claims(&idp, "alice"));
    assert_eq!(envoy.get_with_token("/orders", &valid).status, 200);
}

#[test]
fn obo_subject_token_checks_refuse_every_attack() {
    let idp = idp();
    let backend = backend();
    let trap = Trap::new();
    let config = json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 1000,
                  "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET}],
        "subjectToken": {"validation": "jwks", "providers": [{
            "name": "corp", "issuer": idp.issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256", "RS256"],
            "requiredTyp": "at+jwt",
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}]},
        "targets": [{"name": "portfolio", "mode": "tokenExchange", "idp": "corp",
                     "audiences": ["portfolio-agent"], "scope": "portfolio:read"}]
    });
    let spec =
        EnvoySpec::new(backend.addr()).cluster("idp", idp.addr()).filter("obo_credential_injection", config);
    let envoy = Envoy::start(&spec).unwrap();
    let mut user = idp.standard_claims("alice", "agent-broker", 300);
    user["scope"] = json!("portfolio:read");
    let attacks = catalog(&idp, "agent-broker", &user, &trap);
    run("obo-credential-injection", &attacks, |attack| {
        let response = envoy.get_with_token("/api/positions", &attack.token);
        refusal_problem(&response, attack.error)
    });

    assert!(backend.requests().is_empty(), "a refused request reached the upstream");
    assert_eq!(idp.calls(Endpoint::Token), 0, "a refused subject token cost a token exchange");
    assert_eq!(trap.connections(), 0, "a token made the filter call the address it named");
    assert_no_token_leak(&envoy, &attacks);
    let valid = idp.mint(user);
    assert_eq!(envoy.get_with_token("/api/positions", &valid).status, 200);
    assert_eq!(idp.calls(Endpoint::Token), 1);
}

#[test]
fn in_task_bank_token_checks_refuse_every_attack() {
    let bank = bank::bank();
    let agent = EchoBackend::start_a2a_agent().unwrap();
    let trap = Trap::new();
    let mut config = bank::filter_config(&bank);
    config["secondaryIdp"]["providers"][0]["requiredTyp"] = json!("at+jwt");
    let envoy = bank::in_task_envoy(&bank, agent.addr(), config);
    let mut claims = bank.standard_claims("alice", "bank-api", 300);
    claims["scope"] = json!("transfers:write");
    // The empty-token row is a header matter; a message has no header.
    let attacks: Vec<Attack> =
        catalog(&bank, "bank-api", &claims, &trap).into_iter().filter(|a| !a.token.is_empty()).collect();
    let send = |token: &str, task: &str| {
        let message = json!({"kind": "message", "role": "user", "messageId": "m-1", "taskId": task, "contextId": "ctx-1",
            "parts": [{"kind": "data", "data": {"operation": "transfer", "amount": 250, "to": "bob",
                                                 "auth_credentials": {"accessToken": token}}}]});
        let body = json!({"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {"message": message}});
        envoy.send(
            &ClientRequest::post("/", "application/json", body.to_string().into_bytes())
                .header("authorization", &bank::bearer("alice")),
        )
    };
    run("in-task-auth-code", &attacks, |attack| {
        let response = send(&attack.token, "t-attack");
        let body = body_json(&response);
        let challenge = body["result"]["status"]["message"]["parts"]
            .as_array()
            .and_then(|parts| parts.iter().find_map(|p| p.pointer("/data/authChallenge")))
            .cloned()
            .unwrap_or(Value::Null);
        (response.status != 200
            || body["result"]["status"]["state"] != "auth-required"
            || challenge["error"] != attack.error)
            .then(|| format!("got {} {}", response.status, response.body_str()))
    });

    assert!(agent.requests().is_empty(), "a refused bank token reached the agent");
    assert_eq!(bank.calls(Endpoint::Token), 0);
    assert_eq!(trap.connections(), 0, "a token made the filter call the address it named");
    assert_no_token_leak(&envoy, &attacks);
    let valid = bank.mint(claims);
    let accepted = send(&valid, "t-valid");
    assert_eq!(body_json(&accepted)["result"]["status"]["state"], "completed", "{}", accepted.body_str());
    assert_eq!(agent.requests().len(), 1);
}
