//! Finding 9 and its siblings: an IdP refusing the gateway itself (its
//! client, its grant, its secret, the actor's client credentials) is the
//! gateway's fault: 502 and an error log line naming the target and the
//! IdP's error, never a 401 that blames the caller's token. Every refusal's
//! audit line names the target, the mode and the user.

use baton_harness::{Envoy, body_json};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{ClientRegistration, MockIdp, MockIdpConfig, Quirks};
use serde_json::json;

use crate::world::{Broker, FINPORT_AUDIENCE, TransferGateway};

/// `delegation-broker.yaml` with an IdP configured by `change`, and the
/// broker's secret as given.
fn broker(change: impl FnOnce(&mut MockIdpConfig), secret: &str) -> (MockIdp, EchoBackend, Envoy) {
    let mut config = MockIdpConfig::default();
    change(&mut config);
    let Broker { idp, backend, envoy } = Broker::start_with(config, secret);
    (idp, backend, envoy)
}

fn app_token(idp: &MockIdp) -> String {
    let mut claims = idp.standard_claims("alice", FINPORT_AUDIENCE, 300);
    claims["scope"] = json!("openid portfolio:read");
    claims["client_id"] = json!("finport-app");
    claims["azp"] = json!("finport-app");
    format!("Bearer {}", idp.mint(claims))
}

/// The broker's audit lines that refused a request.
fn denials(envoy: &Envoy) -> Vec<String> {
    envoy
        .filter_logs()
        .into_iter()
        .filter(|line| line.contains(" audit ") && line.contains("decision=deny"))
        .collect()
}

#[test]
fn a_grant_the_broker_may_not_use_is_the_brokers_fault() {
    // A real IdP's way of saying so: invalid_request, not unauthorized_client.
    let (idp, backend, envoy) = broker(
        |config| {
            config.quirks =
                Quirks { unregistered_grant_error: "invalid_request".into(), ..Quirks::default() };
            config.clients.retain(|c| c.client_id != "agent-broker");
            config.clients.push(
                ClientRegistration::confidential("agent-broker", mock_idp::DEMO_BROKER_SECRET)
                    .with_grant_types(&["client_credentials"]),
            );
        },
        mock_idp::DEMO_BROKER_SECRET,
    );
    let alice = app_token(&idp);
    for host in ["ledger.internal", "reports.internal"] {
        let refused =
            envoy.send(&ClientRequest::get("/api").header("host", host).header("authorization", &alice));
        assert_eq!(refused.status, 502, "{host}: {}", refused.body_str());
        assert_eq!(body_json(&refused)["error"], "server_error", "{host}");
        assert!(refused.header("www-authenticate").is_none(), "{host}: the caller's token was blamed");
    }
    assert!(backend.requests().is_empty());
    let errors: Vec<String> = envoy.filter_logs().into_iter().filter(|l| l.contains("grant type")).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().all(|l| l.contains("idp=finport-idp") && l.contains("client registration")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|l| l.contains("call for ledger"))
            && errors.iter().any(|l| l.contains("call for reports"))
    );
    let denials = denials(&envoy);
    assert_eq!(denials.len(), 2, "{denials:?}");
    for line in &denials {
        assert!(
            line.contains("mode=") && line.contains("sub=alice") && line.contains("status=502"),
            "{line}"
        );
    }
    assert!(
        denials.iter().any(|l| l.contains("target=ledger"))
            && denials.iter().any(|l| l.contains("target=reports"))
    );
    assert_eq!(envoy.counter("baton_obo.denied.gateway_refused"), 2);
}

#[test]
fn a_wrong_broker_secret_fails_every_target_as_the_brokers_fault() {
    let (idp, backend, envoy) = broker(|_| {}, "not-the-secret");
    let alice = app_token(&idp);
    // The market-data target and the portfolio target's actor are the
    // broker's own client credentials; the ledger is a plain exchange.
    for host in ["market.internal", "portfolio.internal", "ledger.internal"] {
        let refused =
            envoy.send(&ClientRequest::get("/api").header("host", host).header("authorization", &alice));
        assert_eq!(refused.status, 502, "{host}: {}", refused.body_str());
        assert!(refused.header("www-authenticate").is_none(), "{host}");
    }
    assert!(backend.requests().is_empty());
    let denials = denials(&envoy);
    assert_eq!(denials.len(), 3, "{denials:?}");
    for line in denials {
        assert!(
            line.contains("target=") && line.contains("sub=alice") && line.contains("status=502"),
            "{line}"
        );
    }
}

#[test]
fn the_bank_refusing_the_gateways_client_is_the_gateways_fault() {
    // The bank knows the gateway under another secret.
    let gateway = TransferGateway::start_with(|bank| {
        for client in &mut bank.clients {
            client.client_secret = Some("rotated-at-the-bank".into());
        }
    });
    let challenge = gateway.send_as("alice", &crate::world::transfer(None));
    let link = crate::world::auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    let hops = gateway.open_link_as(&mut baton_harness::RedirectWalk::new(), &link, "alice");
    let page = &hops.last().unwrap().response;
    assert_eq!(page.status, 502, "{}", page.body_str());
    assert!(page.body_str().contains("not allowed to complete this authorization"));
    assert!(
        gateway
            .envoy
            .filter_logs()
            .iter()
            .any(|l| l.contains("idp=FinPort Bank") && l.contains("invalid_client"))
    );
    assert_eq!(gateway.envoy.counter("baton_itac.gateway_refused"), 1);
}
