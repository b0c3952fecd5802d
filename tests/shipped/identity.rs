//! Finding 1 and its siblings: a filter acts on a user's identity only when
//! this Envoy verified it on this request. A token the filter cannot verify
//! names nobody, gets nobody's stored credential, is never exchanged and
//! is never forwarded: at the A2A gateway, the ingress and the broker.

use baton_harness::body_json;
use mock_idp::{MockIdp, SigningKey, b64url};
use serde_json::json;

use crate::world::{
    Broker, FINPORT_AUDIENCE, Ingress, TransferGateway, bearer_claims, finport_idp, message, transfer,
    user_token,
};

/// Tokens that claim to be alice (of the users' IdP `idp`) without this
/// Envoy being able to verify that they are: what each covers, and the
/// bearer credential. `other` is another IdP that really signs for alice.
fn forged_alice(idp: &MockIdp, other: &MockIdp) -> Vec<(&'static str, String)> {
    let real = user_token(idp, "alice");
    let segments: Vec<&str> = real.split('.').collect();
    let es256 = idp.active_key("ES256").unwrap();
    let header = json!({"alg": "ES256", "kid": es256.kid(), "typ": "at+jwt"});
    let mut claims = idp.standard_claims("alice", FINPORT_AUDIENCE, 300);
    claims["scope"] = json!("openid portfolio:read");
    claims["client_id"] = json!("finport-app");
    claims["roles"] = json!(["viewer"]);
    let payload = b64url(claims.to_string().as_bytes());
    let stranger = SigningKey::es256(es256.kid()).unwrap();
    let mut bob_claims = claims.clone();
    bob_claims["sub"] = json!("bob");
    let mut expired = claims.clone();
    expired["exp"] = json!(mock_idp::now_secs() - 600);
    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("ledger-api");
    let mut other_claims = other.standard_claims("alice", FINPORT_AUDIENCE, 300);
    other_claims["scope"] = json!("openid portfolio:read");
    other_claims["client_id"] = json!("finport-app");
    vec![
        (
            "the review's token: {alg: ES256}.{sub: alice}.<garbage>",
            format!(
                "{}.{}.{}",
                b64url(br#"{"alg":"ES256"}"#),
                b64url(br#"{"sub":"alice"}"#),
                b64url(b"not a signature at all, just bytes")
            ),
        ),
        (
            "alice's claims under a garbage signature",
            format!("{}.{payload}.{}", segments[0], b64url(&[7u8; 64])),
        ),
        (
            "alice's claims under bob's valid signature (spliced)",
            format!("{}.{payload}.{}", segments[0], user_token(idp, "bob").rsplit('.').next().unwrap()),
        ),
        ("alg none", format!("{}.{payload}.", b64url(br#"{"alg":"none","typ":"at+jwt"}"#))),
        (
            "HS256 keyed with the IdP's public key (algorithm confusion)",
            mock_idp::sign_hs256(
                es256.public_key_pem().as_bytes(),
                &json!({"alg": "HS256", "kid": es256.kid(), "typ": "at+jwt"}),
                &claims,
            ),
        ),
        ("signed by another key under the IdP's kid", stranger.sign_compact(&header, &claims)),
        ("bob's real token with alice's payload", format!("{}.{payload}.{}", segments[0], segments[2])),
        ("expired", idp.mint(expired)),
        ("for another audience", idp.mint(other_audience)),
        ("another IdP's valid token for alice", other.mint(other_claims)),
        ("bob's real token, claims edited to alice", {
            let bob = idp.mint(bob_claims);
            let parts: Vec<&str> = bob.split('.').collect();
            format!("{}.{payload}.{}", parts[0], parts[2])
        }),
    ]
}

#[test]
fn in_task_takes_the_user_only_from_a_token_it_verified() {
    let gateway = TransferGateway::start();
    // alice's own task holds her bank token (positive control).
    let alice_task = gateway.authorized_task("alice");
    let seen_before = gateway.agent.requests().len();
    let mut failures = Vec::new();
    for (name, token) in forged_alice(&gateway.idp, &gateway.bank) {
        let bearer = format!("Bearer {token}");
        // In alice's authorized task: her bank token must not be injected.
        let in_task = gateway.post(Some(&bearer), &transfer(Some(&alice_task)), &[]);
        // On a message that needs nothing: the agent must not hear "alice".
        let free = gateway.post(
            Some(&bearer),
            &message(None, json!([{"kind": "data", "data": {"operation": "balance"}}])),
            &[("x-baton-user", "alice")],
        );
        for (what, response) in [("transfer in alice's task", &in_task), ("balance", &free)] {
            let challenge = response.header("www-authenticate").unwrap_or_default();
            if response.status != 401 || !challenge.contains("invalid_token") {
                failures.push(format!(
                    "{name}, {what}: {} {challenge} {}",
                    response.status,
                    response.body_str()
                ));
            }
        }
    }
    let seen = gateway.agent.requests();
    assert!(failures.is_empty(), "forged identities were not refused:\n{}", failures.join("\n"));
    assert_eq!(seen.len(), seen_before, "a request with a forged identity reached the agent");
    assert_eq!(gateway.envoy.counter("baton_itac.primary_refused"), 22);

    // Without a token nobody is named, whatever the headers say.
    let anonymous = gateway.post(
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get",
                                              "params": {"id": alice_task}}),
        &[("x-baton-user", "alice")],
    );
    assert_eq!(anonymous.status, 200, "{}", anonymous.body_str());
    let last = gateway.agent.requests().pop().unwrap();
    assert_eq!(last.header("x-baton-user"), None, "an unverified caller was named");
    assert_eq!(last.header("authorization"), None);
    let no_user = gateway.post(None, &transfer(Some(&alice_task)), &[("x-baton-user", "alice")]);
    assert_eq!(no_user.status, 401, "{}", no_user.body_str());

    // alice herself still gets her task's token.
    let answer = gateway.send_as("alice", &transfer(Some(&alice_task)));
    assert_eq!(body_json(&answer)["result"]["status"]["state"], "completed", "{}", answer.body_str());
    let claims = bearer_claims(&gateway.agent.requests().pop().unwrap()).unwrap();
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some(gateway.bank.issuer().as_str()), Some("alice"))
    );
}

#[test]
fn the_ingress_forwards_no_identity_it_did_not_verify() {
    let world = Ingress::start();
    let (idp, ingress, backend) = (&world.idp, &world.envoy, &world.backend);
    let other = finport_idp();
    let forged = forged_alice(idp, &other);
    for (name, token) in &forged {
        let refused = ingress.get(
            "/portfolio/summary",
            &[("authorization", &format!("Bearer {token}")), ("x-user-id", "alice")],
        );
        assert_eq!(refused.status, 401, "{name}: {}", refused.body_str());
        assert!(refused.header("www-authenticate").is_some_and(|c| c.contains("invalid_token")), "{name}");
    }
    assert!(backend.requests().is_empty(), "a forged identity reached the backend");
    assert_eq!(ingress.counter("baton_ce.denied.invalid_token"), forged.len() as u64);
    // alice's real token passes, with her verified id and nothing else.
    let real = ingress.get(
        "/portfolio/summary",
        &[("authorization", &format!("Bearer {}", world.viewer("alice"))), ("x-user-id", "bob")],
    );
    assert_eq!(real.status, 200, "{}", real.body_str());
    assert_eq!(backend.requests()[0].header_all("x-user-id"), ["alice"]);
}

#[test]
fn the_broker_exchanges_no_token_it_did_not_verify() {
    let broker = Broker::start();
    let other = finport_idp();
    // Requests carrying a caller's token (the broker's own client
    // credentials it fetches in the background are not).
    let exchanges = || {
        broker
            .idp
            .token_requests()
            .iter()
            .filter(|r| r.grant_type.as_deref() != Some("client_credentials"))
            .count()
    };
    let forged = forged_alice(&broker.idp, &other);
    for (name, token) in &forged {
        for host in ["portfolio.internal", "ledger.internal", "market.internal", "reports.internal"] {
            let refused = broker.call("GET", host, Some(&format!("Bearer {token}")));
            assert_eq!(refused.status, 401, "{name} to {host}: {}", refused.body_str());
        }
    }
    assert!(broker.backend.requests().is_empty(), "a forged token got an upstream token");
    assert_eq!(exchanges(), 0, "a forged token was sent to the IdP");
    assert_eq!(broker.envoy.counter("baton_obo.denied.invalid_token"), 4 * forged.len() as u64);
}
